"""Transferability metrics by name, from every registered plugin (``register_metrics`` hook).

>>> import zooprobe.metrics
>>> zooprobe.metrics.names()
['hscore', 'knn_accuracy', 'leep', 'logme', 'nce', 'probe_accuracy', 'probe_balanced_accuracy']
>>> zooprobe.metrics.get("logme")(features, labels)   # features: N x D, labels: N integers

Every metric returns a float where higher means more transferable.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

from .errors import InvalidChoiceError, ZooprobeError

if TYPE_CHECKING:
    import pluggy

MetricInput = Literal["features", "probabilities"]


@dataclass(frozen=True)
class Metric:
    """A named transferability score.

    Attributes:
        name: unique id, used on the command line (``--metrics logme,knn_accuracy``).
        function: ``(features, labels, **options) -> float``, higher is more transferable.
        input: ``"features"`` (N x D frozen features at a cut point) or ``"probabilities"`` (the
            source head's N x K class probabilities; only for backbones that have a head).
        description: one line for ``--help`` and reports.
        reference: where the metric comes from (paper), or ``""``.
    """

    name: str
    function: Callable[..., float]
    input: MetricInput
    description: str
    reference: str = ""

    def __post_init__(self) -> None:
        # assess routes a metric by its input: any other value would leave it silently unscored
        if self.input not in ("features", "probabilities"):
            raise InvalidChoiceError(f"input of metric '{self.name}'", str(self.input), ["features", "probabilities"])
        if not self.name or not callable(self.function):
            raise ZooprobeError(
                f"metric {self.name!r} needs a non-empty name and a callable function, got {self.function!r}"
            )


def registered(pm: pluggy.PluginManager | None = None) -> dict[str, Metric]:
    """Every metric of every registered plugin, by name.

    :raises ZooprobeError: when two plugins register a metric of the same name.
    """
    from .plugins.manager import get_plugin_manager, unique_by_name

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
