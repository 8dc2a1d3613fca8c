"""Transferability metrics by name, from every registered plugin (``register_metrics`` hook).

>>> import zooprobe.metrics
>>> zooprobe.metrics.names()
['hscore', 'knn_accuracy', 'leep', 'logme', 'nce', 'probe_accuracy', 'probe_balanced_accuracy']
>>> zooprobe.metrics.get("logme")(features, labels)   # features: N x D, labels: N integers
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from ..errors import InvalidChoiceError
from .manager import get_plugin_manager, unique_by_name
from .metric import Metric, MetricResult

if TYPE_CHECKING:
    import pluggy


def registered(pm: pluggy.PluginManager | None = None) -> dict[str, Metric]:
    """Every metric of every registered plugin, by name.

    :raises ZooprobeError: when two plugins register a metric of the same name.
    """
    return dict(sorted(_in_plugin_order(pm).items()))


def defaults(pm: pluggy.PluginManager | None = None) -> list[str]:
    """Names of the metrics scored when none are named: those declared ``default``, in their plugin's order."""
    return [name for name, metric in _in_plugin_order(pm).items() if metric.default]


def _in_plugin_order(pm: pluggy.PluginManager | None) -> dict[str, Metric]:
    pm = pm or get_plugin_manager()
    return unique_by_name(pm.hook.register_metrics(), "metric")


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
    """The scoring function of metric ``name``: ``(features, labels, **options) -> float``.

    It returns the value alone; :meth:`Metric.score` of :func:`spec` gives the whole :class:`MetricResult`.
    """
    metric = spec(name, pm)

    @functools.wraps(metric.function)
    def value(features: Any, labels: Any, **options: Any) -> float:
        return MetricResult.of(metric.function(features, labels, **options), metric.name).value

    return value
