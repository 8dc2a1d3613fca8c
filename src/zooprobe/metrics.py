"""Transferability metrics by name, from every registered plugin (``register_metrics`` hook).

>>> import zooprobe.metrics
>>> zooprobe.metrics.names()
['hscore', 'knn_accuracy', 'leep', 'logme', 'nce', 'probe_accuracy', 'probe_balanced_accuracy']
>>> zooprobe.metrics.get("logme")(features, labels)   # features: N x D, labels: N integers
>>> zooprobe.metrics.spec("probe_accuracy").score(features, labels, folds=5, seed=0)
MetricResult(value=..., spread=..., details={'c': ..., 'folds': 5})

The public face of :mod:`zooprobe.plugins.metric` (the :class:`Metric` type) and
:mod:`zooprobe.plugins.metric_lookup` (the lookups by name).
"""

from __future__ import annotations

from .plugins.metric import Metric, MetricInput, MetricResult, MetricRole, RunOption
from .plugins.metric_lookup import defaults, get, names, registered, spec

__all__ = [
    "Metric",
    "MetricInput",
    "MetricResult",
    "MetricRole",
    "RunOption",
    "defaults",
    "get",
    "names",
    "registered",
    "spec",
]
