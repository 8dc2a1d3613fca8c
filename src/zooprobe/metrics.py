"""Transferability metrics by name, from every registered plugin (``register_metrics`` hook).

>>> import zooprobe.metrics
>>> zooprobe.metrics.names()
['hscore', 'knn_accuracy', 'leep', 'logme', 'nce', 'probe_accuracy', 'probe_balanced_accuracy']
>>> zooprobe.metrics.get("logme")(features, labels)   # features: N x D, labels: N integers

The public face of :mod:`zooprobe.plugins.metric` (the :class:`Metric` type) and
:mod:`zooprobe.plugins.metric_lookup` (the lookups by name).
"""

from __future__ import annotations

from .plugins.metric import Metric, MetricInput
from .plugins.metric_lookup import get, names, registered, spec

__all__ = ["Metric", "MetricInput", "get", "names", "registered", "spec"]
