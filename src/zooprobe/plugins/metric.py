"""The :class:`Metric` type: a named transferability score a plugin registers.

Every metric returns a float where higher means more transferable. Lookups by name are in
:mod:`zooprobe.plugins.metric_lookup`; :mod:`zooprobe.metrics` is the public face of both.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

from ..errors import InvalidChoiceError, ZooprobeError

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
