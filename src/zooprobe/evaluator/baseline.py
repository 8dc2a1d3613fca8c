"""The raw-feature baseline, read: pretrained features must beat the probe on the data themselves to be worth it.

The baseline (:mod:`.raw_baseline`) is the ``probe`` metric on raw pixels or a bag of words. When
no pretrained candidate probes better than that by more than the noise of the comparison
(:func:`noise`), pretraining has shown nothing on these data: :func:`negative_transfer` says so.

The noise is the larger of the fold-to-fold spreads (combined) and :data:`STANDARD_ERRORS` binomial
standard errors of the difference of two accuracies each measured on the ``n`` examples assessed. At a
few hundred examples the binomial term dominates: on ``benchmarks/bench_ranking.py`` (300 examples) it
fires on digits 5-9 (raw pixels 0.983, best candidate 0.980) and Fashion-MNIST (0.780 against 0.803
± 0.005, where a new head on the best frozen features then reached 0.741 against raw pixels' 0.764),
and not on all digits (0.920 against 0.983, 3.6 standard errors; a frozen head reached 0.965 against
0.940) nor on shapes or textures (0.39-0.41 against 1.00). On sklearn's 1,797 digits at 64 px (the
quickstart: raw 0.957 ± 0.015, MobileNetV2 0.978 ± 0.006) the fold spreads decide, and it does not fire.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

from .interval import standard_error

# No difference under this counts, whatever the folds say (the decision's floor on the spread).
MIN_NOISE = 0.005
# A gain over the baseline smaller than this many standard errors of the difference is not a measured gain.
STANDARD_ERRORS = 2.0


def noise(doc: Mapping[str, Any], baseline: Mapping[str, Any]) -> float:
    """How large a candidate's gain over the baseline must be to count: the larger of the two fold-to-fold
    spreads combined and :data:`STANDARD_ERRORS` binomial standard errors of the difference of the two
    accuracies, each measured on the examples assessed (``data_ratio.target_examples``; without it, the
    spreads alone), and at least :data:`MIN_NOISE`."""
    spread = math.hypot(doc.get("probe_spread") or 0.0, baseline["spread"])
    n = (doc.get("data_ratio") or {}).get("target_examples")
    if n:
        errors = math.hypot(standard_error(doc["probe_accuracy"], n), standard_error(baseline["accuracy"], n))
        spread = max(spread, STANDARD_ERRORS * errors)
    return max(spread, MIN_NOISE)


def no_better(doc: dict[str, Any], baseline: Mapping[str, Any]) -> bool:
    """Whether a candidate's assessed (best-layer probe) accuracy is within :func:`noise` of the baseline's, or
    below it."""
    return bool(doc["probe_accuracy"] - baseline["accuracy"] <= noise(doc, baseline))


def negative_transfer(ranked: Sequence[dict[str, Any]], baseline: Mapping[str, Any] | None) -> str | None:
    """When every probed candidate is :func:`no_better` than ``baseline``, the fact in words; else ``None``."""
    probed = [doc for doc in ranked if doc.get("probe_accuracy") is not None]
    if baseline is None or not probed or not all(no_better(doc, baseline) for doc in probed):
        return None
    best = max(probed, key=lambda doc: float(doc["probe_accuracy"]))
    return (
        f"no pretrained candidate probes better than {baseline['features']} ({baseline['accuracy']:.3f}"
        f" ± {baseline['spread']:.3f}) by more than the noise of the comparison (best: {best['model']},"
        f" {best['probe_accuracy']:.3f} ± {best.get('probe_spread') or 0.0:.3f} at {best.get('best_layer')}, a gain"
        f" of {best['probe_accuracy'] - baseline['accuracy']:+.3f} against a noise of {noise(best, baseline):.3f}:"
        f" the fold spreads or {STANDARD_ERRORS:g} standard errors of the difference, whichever is larger)"
    )
