"""Scoring through the metric door, and a candidate's scores summarised into its layer profile.

Every metric, built-in or a plugin's, is scored the same way: :func:`score_metric` passes it the
run options it declares and records what it returns as a :class:`~zooprobe.runs.store.Score`.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from ..runs.store import Score

if TYPE_CHECKING:
    from ..plugins.metric import Metric
    from .decision import MetricRoles

# The layer name the scores of the source head's probabilities are stored under.
LOGITS = "logits"


def score_metric(metric: Metric, model: str, layer: str, inputs: Any, labels: Any, run: Mapping[str, Any]) -> Score:
    """``metric`` on ``inputs`` at ``layer`` of ``model``, given the ``run`` options it asks for, timed."""
    start = time.perf_counter()
    groups = run.get("groups")
    if groups is not None and "groups" not in metric.options:
        # one row per content: copies would count as independent evidence (LogME, H-score, LEEP)
        import numpy as np

        firsts = np.flatnonzero(groups == np.arange(len(groups)))
        inputs, labels = np.asarray(inputs)[firsts], np.asarray(labels)[firsts]
    result = metric.score(inputs, labels, **run)
    return Score(
        model, layer, metric.name, result.value, result.spread, time.perf_counter() - start, dict(result.details)
    )


def summarise_candidate(
    doc: dict[str, Any],
    cut_points: Sequence[str],
    layers: Sequence[str],
    scores: Sequence[Score],
    roles: MetricRoles,
) -> None:
    """Fill ``doc``'s layer profile (the ``probe`` metric's value and spread at each cut point probed, under the
    document's ``probe_accuracy`` and ``probe_spread`` keys), ``as_is_by_layer`` (the ``as-is`` metric's value and
    spread per cut point), and its best, final and best-layer scores, from the candidate's stored ``scores``."""
    mine = [s for s in scores if s.model == doc["model"]]
    by = {(s.layer, s.metric): s for s in mine}
    last_index = max(len(cut_points) - 1, 1)
    profile: list[dict[str, Any]] = []
    for layer in layers:
        probe = by.get((layer, roles.probe)) if roles.probe else None
        if probe is None or probe.value is None:
            continue
        profile.append(
            {
                "layer": layer,
                "depth": list(cut_points).index(layer) / last_index,
                "final": layer == cut_points[-1],
                "probe_accuracy": probe.value,
                "probe_spread": probe.spread or 0.0,
            }
        )
    doc["layer_profile"] = profile
    doc["as_is_by_layer"] = {
        s.layer: {"accuracy": s.value, "spread": s.spread or 0.0}
        for s in mine
        if s.metric == roles.as_is and s.value is not None
    }
    best_scores: dict[str, float | None] = {}
    for s in mine:
        if s.value is not None and (best_scores.get(s.metric) is None or s.value > best_scores[s.metric]):  # type: ignore[operator]
            best_scores[s.metric] = s.value
    doc["best_scores"] = best_scores
    deepest = layers[-1] if layers else None
    doc["final_layer"] = deepest
    doc["final_scores"] = {s.metric: s.value for s in mine if s.layer in (deepest, LOGITS)}
    if profile:
        best = max(profile, key=lambda point: float(point["probe_accuracy"]))
        doc["best_layer"] = best["layer"]
        doc["probe_accuracy"] = best["probe_accuracy"]
        doc["probe_spread"] = best["probe_spread"]
        doc["scores"] = {s.metric: s.value for s in mine if s.layer in (best["layer"], LOGITS)}
    else:
        doc["best_layer"] = layers[-1] if layers else None
        doc["scores"] = {s.metric: s.value for s in mine if s.layer in (doc["best_layer"], LOGITS)}
