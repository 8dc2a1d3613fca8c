"""The :class:`Metric` type: a named transferability score a plugin registers, and :class:`MetricResult`.

A metric's function returns a float or a :class:`MetricResult` (a value with an optional spread and
details); higher always means more transferable. Everything assessment needs to know about a
metric is declared on it: what it reads (``input``), which of the run's options it takes
(``options``), the part it plays in the decision (``role``), its weight in the consensus ranking
(``weight``) and whether it is scored by default (``default``). Lookups by name are in
:mod:`zooprobe.plugins.metric_lookup`; :mod:`zooprobe.metrics` is the public face of both.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal, get_args

from ..errors import InvalidChoiceError, ZooprobeError

MetricInput = Literal["features", "probabilities"]
MetricRole = Literal["probe", "as-is", "evidence"]
RunOption = Literal["seed", "folds", "cache", "groups", "device", "threads"]


@dataclass(frozen=True)
class MetricResult:
    """What a metric measured.

    Attributes:
        value: the score, higher is more transferable.
        spread: its uncertainty where the metric measures one (the probe: standard deviation over
            folds), else ``None``.
        details: small JSON-serialisable facts for the report (the probe: the chosen ``c`` and ``folds``).
    """

    value: float
    spread: float | None = None
    details: Mapping[str, Any] = field(default_factory=dict)

    @classmethod
    def of(cls, returned: object, metric: str) -> MetricResult:
        """``returned`` as a :class:`MetricResult`: a plain number becomes one with no spread.

        :raises ZooprobeError: naming the metric, when it returned neither.
        """
        if isinstance(returned, MetricResult):
            return returned
        if isinstance(returned, numbers.Real):
            return cls(float(returned))
        raise ZooprobeError(
            f"metric '{metric}' returned {type(returned).__name__} {returned!r}; a metric returns a float or a"
            " zooprobe.metrics.MetricResult"
        )


@dataclass(frozen=True)
class Metric:
    """A named transferability score.

    Attributes:
        name: unique id, used on the command line (``--metrics logme,knn_accuracy``).
        function: ``(features, labels, **options) -> float | MetricResult``, higher is more transferable.
        input: ``"features"`` (N x D frozen features at a cut point) or ``"probabilities"`` (the
            source head's N x K class probabilities; only for backbones that have a head).
        description: one line for ``--help`` and reports.
        reference: where the metric comes from (paper), or ``""``.
        role: the part the metric plays in the recommendation. ``"probe"``: its value and spread at
            each cut point are the layer profile the strategy is read from (the built-in
            ``probe_accuracy``); ``"as-is"``: the held-out accuracy of the classifier the ``as-is``
            strategy runs on the frozen features, its expected accuracy, and matching the probe at the
            last cut point means nothing needs training (the built-in ``ncm_accuracy``);
            ``"evidence"`` (the default): reported, and ranked by its ``weight``. One chosen metric
            per role ``probe`` and ``as-is``.
        weight: the metric's weight in the consensus ranking (its z-score across candidates at the
            deepest cut point); 0 (the default) reports it without ranking by it.
        default: scored when no metrics are named (``--metrics`` left out).
        options: the run's options the function takes as keywords, passed only when named here:
            ``"seed"`` and ``"folds"`` (of the cross-validation), ``"cache"``, a dict that lives
            for one candidate at one cut point (a fit two metrics share is kept there), and
            ``"groups"``, a group id per example (copies of one content share one) or None: a metric
            that splits or leaves examples out keeps each group on one side. A metric that does not
            ask for ``groups`` is given one row per content when the data holds copies.
            ``"device"``: the torch device to compute on (``cuda``, ``cuda:N``) when the run has an
            accelerator, else None (compute on the CPU, in NumPy). ``"threads"``: how many threads the
            function may run its own independent parts on (the probe's folds): 1 for a candidate's
            scores, which already run beside each other, the CPUs for the raw baseline after them.
        concurrent: the function may run on several threads at once, beside other metrics (it keeps
            no state outside its arguments and ``cache``, and its heavy work releases the interpreter
            lock, as NumPy's does). Such metrics are scored on a pool of threads; the others (the
            default) one at a time, in the thread that scores the candidate.
    """

    name: str
    function: Callable[..., float | MetricResult]
    input: MetricInput
    description: str
    reference: str = ""
    role: MetricRole = "evidence"
    weight: float = 0.0
    default: bool = False
    options: tuple[RunOption, ...] = ()
    concurrent: bool = False

    def __post_init__(self) -> None:
        # assess routes a metric by its input: any other value would leave it silently unscored
        if self.input not in get_args(MetricInput):
            raise InvalidChoiceError(f"input of metric '{self.name}'", str(self.input), list(get_args(MetricInput)))
        if not self.name or not callable(self.function):
            raise ZooprobeError(
                f"metric {self.name!r} needs a non-empty name and a callable function, got {self.function!r}"
            )
        if self.role not in get_args(MetricRole):
            raise InvalidChoiceError(f"role of metric '{self.name}'", str(self.role), list(get_args(MetricRole)))
        for option in self.options:
            if option not in get_args(RunOption):
                raise InvalidChoiceError(f"option of metric '{self.name}'", str(option), list(get_args(RunOption)))
        if not (isinstance(self.weight, numbers.Real) and math.isfinite(self.weight) and self.weight >= 0):
            raise ZooprobeError(
                f"metric '{self.name}' has consensus weight {self.weight!r}; give a finite number >= 0 (0: not ranked)"
            )

    def score(self, inputs: Any, labels: Any, **run: Any) -> MetricResult:
        """Score ``inputs`` against ``labels``, passing the function only the run options it declares."""
        requested = {name: run[name] for name in self.options if name in run}
        return MetricResult.of(self.function(inputs, labels, **requested), self.name)
