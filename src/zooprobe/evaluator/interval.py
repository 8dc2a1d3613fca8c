"""A calibrated interval for the expected accuracy: where fine-tuning is likely to land, not how stable the probe is.

The assessment's estimate of a strategy's accuracy (the probe at the layer the new head reads, or
nearest class mean for as-is) differs from what fine-tuning then reaches. The fold-to-fold spread
says how stable the estimate is, not how far fine-tuning lands from it. This module turns the
benchmark's own residuals (``benchmarks/bench_ranking.py``: assessed estimate against fine-tuned
accuracy, per candidate, target and strategy) into a split-conformal interval:

- each residual is normalised by a scale the assessment knows before fine-tuning,
  :func:`scale` (the binomial error of an accuracy measured on ``n`` examples plus the fold spread);
- the interval at level ``L`` is ``estimate + [q_low, q_high] * scale``, where ``q_low`` and ``q_high``
  are the conformal quantiles of the normalised residuals at ``(1 - L) / 2`` and ``(1 + L) / 2``
  (:func:`conformal_quantiles`), clipped to [0, 1].

The fitted quantiles ship as ``zooprobe/evaluator/data/interval.json`` with their provenance;
:func:`load_calibration` reads it (``None`` when absent or unreadable: the caller then states the
fold spread only, and says the interval is not calibrated).
"""

from __future__ import annotations

import functools
import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

CALIBRATION_FILE = "interval.json"
# the strategies a "cut" recommendation borrows its calibration from when the calibration has no fit of
# its own for it (files written before the benchmark fine-tuned cut networks): it trains new layers only
# (like "head") or everything (like "full")
BORROWED = {"cut:new": "head", "cut:all": "full"}
FALLBACK_SENTENCE = (
    "no calibrated interval is stated (the run predates it, or the calibration file"
    " zooprobe/evaluator/data/interval.json is missing or unreadable); the ± is the probe's fold-to-fold spread,"
    " which measures how stable the estimate is, not how far fine-tuning will land from it"
)


@dataclass(frozen=True)
class Interval:
    """Where the fine-tuned accuracy is expected to fall: ``low``..``high`` at coverage ``level`` (e.g. 0.8)."""

    low: float
    high: float
    level: float


@dataclass(frozen=True)
class Calibration:
    """Fitted conformal quantiles of normalised residuals per strategy, and where they come from.

    Attributes:
        level: the coverage the quantiles are fitted for (0.8: an 80% interval).
        quantiles: ``{strategy: (q_low, q_high)}``; ``"*"`` holds the pooled fit, used for a strategy not fitted.
        cases: ``{strategy: number of residuals}`` the quantiles were fitted on.
        provenance: the benchmark run, targets, date and measured coverage, as written by the benchmark.
    """

    level: float
    quantiles: Mapping[str, tuple[float, float]]
    cases: Mapping[str, int] = field(default_factory=dict)
    provenance: Mapping[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {
            "level": self.level,
            "quantiles": {k: list(v) for k, v in self.quantiles.items()},
            "cases": dict(self.cases),
            "provenance": dict(self.provenance),
        }

    @classmethod
    def from_json(cls, doc: Mapping[str, Any]) -> Calibration:
        quantiles = {str(k): (float(v[0]), float(v[1])) for k, v in doc["quantiles"].items()}
        return cls(
            float(doc["level"]),
            quantiles,
            {str(k): int(v) for k, v in (doc.get("cases") or {}).items()},
            dict(doc.get("provenance") or {}),
        )

    def quantiles_for(self, strategy: str, train: str | None = None) -> tuple[float, float] | None:
        """The quantiles fitted for ``strategy`` (a ``cut`` by ``train``: ``cut:new`` or ``cut:all``); else those
        it borrows (:data:`BORROWED`), else the pooled fit."""
        key = f"{strategy}:{train}" if strategy == "cut" and train else strategy
        return self.quantiles.get(key) or self.quantiles.get(BORROWED.get(key, key)) or self.quantiles.get("*")


def standard_error(accuracy: float, n: int) -> float:
    """The binomial standard error of an accuracy measured on ``n`` examples (Laplace-smoothed: a perfect
    score on few examples still has one)."""
    n = max(n, 1)
    p = (accuracy * n + 1) / (n + 2)
    return math.sqrt(p * (1 - p) / n)


def scale(expected: float, spread: float | None, n: int | None) -> float:
    """The residual scale known before fine-tuning: the :func:`standard_error` of an accuracy measured on
    ``n`` examples (so a perfect score keeps a width) plus the fold-to-fold ``spread``."""
    return standard_error(expected, int(n or 0)) + max(float(spread or 0.0), 0.0)


def conformal_quantiles(scores: Sequence[float], level: float) -> tuple[float, float]:
    """Split-conformal two-sided quantiles of ``scores`` for coverage ``level``: the
    ``floor((n + 1) * a)``-th smallest and ``ceil((n + 1) * (1 - a))``-th smallest, ``a = (1 - level) / 2``
    (the extremes when there are too few scores for that rank)."""
    if not scores:
        raise ValueError("no residuals to calibrate on")
    ordered = sorted(float(s) for s in scores)
    n = len(ordered)
    alpha = (1 - level) / 2
    # the tolerance keeps (1 - 0.8) / 2 * 20 at rank 2, not 1.9999999999999996
    low_rank = max(math.floor((n + 1) * alpha + 1e-9), 1)
    high_rank = min(math.ceil((n + 1) * (1 - alpha) - 1e-9), n)
    return ordered[low_rank - 1], ordered[high_rank - 1]


def fit(
    cases: Sequence[Mapping[str, Any]], level: float = 0.8, provenance: Mapping[str, Any] | None = None
) -> Calibration:
    """Fit a :class:`Calibration` on benchmark ``cases``: each has ``strategy``, ``expected``, ``spread``, ``n``
    and ``achieved`` (the fine-tuned accuracy of that strategy)."""
    by: dict[str, list[float]] = {"*": []}
    for case in cases:
        r = normalised_residual(case)
        by.setdefault(str(case["strategy"]), []).append(r)
        by["*"].append(r)
    quantiles = {k: conformal_quantiles(v, level) for k, v in by.items() if v}
    return Calibration(level, quantiles, {k: len(v) for k, v in by.items()}, dict(provenance or {}))


def normalised_residual(case: Mapping[str, Any]) -> float:
    """``(achieved - expected) / scale``: how far fine-tuning landed, in units of :func:`scale`."""
    s = scale(float(case["expected"]), case.get("spread"), case.get("n"))
    return (float(case["achieved"]) - float(case["expected"])) / s


def interval(
    calibration: Calibration | None,
    strategy: str,
    expected: float | None,
    spread: float | None,
    n: int | None,
    train: str | None = None,
) -> Interval | None:
    """The calibrated interval around ``expected`` for ``strategy``, clipped to [0, 1] (``None`` without a
    calibration or an estimate)."""
    if calibration is None or expected is None:
        return None
    q = calibration.quantiles_for(strategy, train)
    if q is None:
        return None
    s = scale(expected, spread, n)
    low = min(max(expected + q[0] * s, 0.0), 1.0)
    high = min(max(expected + q[1] * s, 0.0), 1.0)
    return Interval(min(low, expected), max(high, expected), calibration.level)


def coverage(calibration: Calibration, cases: Sequence[Mapping[str, Any]]) -> float | None:
    """The share of ``cases`` whose achieved accuracy falls inside the interval ``calibration`` states for them."""
    hits = []
    for case in cases:
        span = interval(calibration, str(case["strategy"]), float(case["expected"]), case.get("spread"), case.get("n"))
        if span is not None:
            hits.append(span.low <= float(case["achieved"]) <= span.high)
    return sum(hits) / len(hits) if hits else None


def load_calibration(text: str | None = None) -> Calibration | None:
    """The shipped calibration (or one parsed from ``text``); ``None`` when the file is missing or unreadable."""
    if text is None:
        from importlib import resources

        try:
            text = resources.files("zooprobe.evaluator.data").joinpath(CALIBRATION_FILE).read_text(encoding="utf-8")
        except (OSError, ModuleNotFoundError):
            return None
    try:
        return Calibration.from_json(json.loads(text))
    except (ValueError, KeyError, TypeError, IndexError):
        return None


@functools.cache
def shipped() -> Calibration | None:
    """The calibration shipped with zooprobe, read once per process (``None`` when missing or unreadable)."""
    return load_calibration()


def attach(rec: dict[str, Any] | None, examples: int | None, calibration: Calibration | None) -> None:
    """Add the calibrated interval to a recommendation document (``interval_low``, ``interval_high``,
    ``interval_level``), from its strategy, expected accuracy, fold spread and the ``examples`` assessed;
    nothing is added without a calibration."""
    if rec is None:
        return
    span = interval(
        calibration, rec["strategy"], rec.get("expected_accuracy"), rec.get("uncertainty"), examples, rec.get("train")
    )
    if span is not None:
        rec |= {"interval_low": span.low, "interval_high": span.high, "interval_level": span.level}


def stated(
    expected: float | None,
    uncertainty: float | None,
    low: float | None = None,
    high: float | None = None,
    level: float | None = None,
) -> str:
    """The expected accuracy as a user reads it: ``0.980 (80% interval 0.960–0.990)``; without a calibrated
    interval (runs made before it, or no calibration file) as such runs always stated it, ``0.980 ± 0.004``,
    the fold spread, which :func:`meaning` then explains."""
    if expected is None:
        return "-"
    if low is not None and high is not None and level is not None:
        return f"{expected:.3f} ({level:.0%} interval {low:.3f}\u2013{high:.3f})"
    return f"{expected:.3f} ± {uncertainty or 0:.3f}"


def stated_in(rec: Mapping[str, Any]) -> str:
    """:func:`stated` for a recommendation document (as :func:`attach` fills it)."""
    keys = ("expected_accuracy", "uncertainty", "interval_low", "interval_high", "interval_level")
    return stated(*(rec.get(key) for key in keys))


def interval_meaning(rec: Mapping[str, Any]) -> str:
    """:func:`meaning` for a recommendation document: the shipped calibration's when it states an interval."""
    level = rec.get("interval_level")
    return meaning(shipped(), float(level)) if level is not None else meaning()


def meaning(calibration: Calibration | None = None, level: float | None = None) -> str:
    """What an interval at ``level`` (default: the ``calibration``'s) means, in words, with the coverage the
    ``calibration`` measured on benchmark targets left out of its fit; the fallback statement when there is
    neither (no interval stated)."""
    level = level if level is not None else calibration.level if calibration is not None else None
    if level is None:
        return FALLBACK_SENTENCE
    sentence = (
        f"the {level:.0%} interval is where fine-tuning is expected to land: in {round(level * 10)} of 10 benchmark"
        " cases the fine-tuned accuracy fell inside such an interval"
    )
    provenance = calibration.provenance if calibration else {}
    if provenance.get("cases") and provenance.get("targets"):
        sentence += f" ({provenance['cases']} cases on {len(provenance['targets'])} targets)"
    measured = (provenance.get("coverage_leave_one_target_out") or {}).get("all")
    if isinstance(measured, int | float):
        sentence += f"; on benchmark targets left out of the fit it held {measured:.0%} of the time"
    return sentence + "; the ± spread beside the probe is its fold-to-fold stability, not this interval"
