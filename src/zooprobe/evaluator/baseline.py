"""The raw-feature baseline, read: pretrained features must beat the probe on the data themselves to be worth it.

The baseline (:mod:`.raw_baseline`) is the ``probe`` metric on raw pixels or a bag of words. When
no pretrained candidate probes better than that by more than the fold-to-fold spread, pretraining
has shown nothing on these data: :func:`negative_transfer` says so.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

# No difference under this counts, whatever the folds say (the decision's floor on the spread).
MIN_NOISE = 0.005


def no_better(doc: dict[str, Any], baseline: Mapping[str, Any]) -> bool:
    """Whether a candidate's assessed (best-layer probe) accuracy is within noise of the baseline's, or below."""
    spread = max(math.hypot(doc.get("probe_spread") or 0.0, baseline["spread"]), MIN_NOISE)
    return bool(doc["probe_accuracy"] - baseline["accuracy"] <= spread)


def negative_transfer(ranked: Sequence[dict[str, Any]], baseline: Mapping[str, Any] | None) -> str | None:
    """When every probed candidate is :func:`no_better` than ``baseline``, the fact in words; else ``None``."""
    probed = [doc for doc in ranked if doc.get("probe_accuracy") is not None]
    if baseline is None or not probed or not all(no_better(doc, baseline) for doc in probed):
        return None
    best = max(probed, key=lambda doc: float(doc["probe_accuracy"]))
    return (
        f"no pretrained candidate probes better than {baseline['features']} ({baseline['accuracy']:.3f}"
        f" ± {baseline['spread']:.3f}) by more than the fold-to-fold spread (best: {best['model']},"
        f" {best['probe_accuracy']:.3f} ± {best.get('probe_spread') or 0.0:.3f} at {best.get('best_layer')})"
    )
