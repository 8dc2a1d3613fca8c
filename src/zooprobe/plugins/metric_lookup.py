"""Transferability metrics by name, from every registered plugin (``register_metrics`` hook).

>>> import zooprobe.metrics
>>> zooprobe.metrics.names()
['hscore', 'knn_accuracy', 'leep', 'logme', 'nce', 'probe_accuracy', 'probe_balanced_accuracy']
>>> zooprobe.metrics.get("logme")(features, labels)   # features: N x D, labels: N integers
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from ..errors import InvalidChoiceError
from .manager import get_plugin_manager, unique_by_name
from .metric import Metric

if TYPE_CHECKING:
    import pluggy


def registered(pm: pluggy.PluginManager | None = None) -> dict[str, Metric]:
    """Every metric of every registered plugin, by name.

    :raises ZooprobeError: when two plugins register a metric of the same name.
    """
    pm = pm or get_plugin_manager()
    metrics = unique_by_name(pm.hook.register_metrics(), "metric")
    return dict(sorted(metrics.items()))


def names(pm: pluggy.PluginManager | None = None) -> list[str]:
    """Names of every registered metric, sorted."""
    return list(registered(pm))


def spec(name: str, pm: pluggy.PluginManager | None = None) -> Metric:
    """The :class:`Metric` called ``name``.

    :raises InvalidChoiceError: naming the valid metrics when ``name`` is unknown.
    """
    metrics = registered(pm)
    if name not in metrics:
        raise InvalidChoiceError("metric", name, list(metrics))
    return metrics[name]


def get(name: str, pm: pluggy.PluginManager | None = None) -> Callable[..., float]:
    """The scoring function of metric ``name``: ``(features, labels, **options) -> float``."""
    return spec(name, pm).function
