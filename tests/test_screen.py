"""Successive halving over cut points: cheap scores everywhere, the probe where the decision reads it."""

from __future__ import annotations

import threading
from typing import Any

import numpy as np
import pytest

from zooprobe.evaluator.builtin_metrics import BUILTIN_METRICS
from zooprobe.evaluator.decision import MetricRoles, recommend
from zooprobe.evaluator.scoring import summarise_candidate
from zooprobe.evaluator.screen import PROBED, CutPointScoring, identical_layers
from zooprobe.plugins.metric import Metric
from zooprobe.runs.store import Score

METRICS = {m.name: m for m in BUILTIN_METRICS if m.input == "features"}
LAYERS = [f"block{i}" for i in range(6)]


def layered_features(strengths: list[float], seed: int = 0) -> tuple[dict[str, Any], Any]:
    """Features of 4 classes at each cut point: class signal of the given strength in 24 noisy dimensions."""
    rng = np.random.default_rng(seed)
    labels = np.arange(240) % 4
    features = {}
    for layer, strength in zip(LAYERS, strengths, strict=True):
        directions = rng.normal(size=(4, 24))
        features[layer] = (strength * directions[labels] + rng.normal(size=(240, 24))).astype(np.float32)
    return features, labels


def scored(
    features: dict[str, Any],
    labels: Any,
    auto: bool,
    done: frozenset[tuple[str, str]] = frozenset(),
    threads: int = 1,
    metrics: dict[str, Metric] = METRICS,
) -> Any:
    scores: list[Score] = []
    run = {"seed": 0, "folds": 3, "groups": None}
    scoring = CutPointScoring("m", metrics, labels, run, done, scores.append, threads)
    probed = scoring.score_features(features, LAYERS, list(metrics), auto=auto)
    return scores, probed


def decided(scores: list[Score]) -> dict[str, Any]:
    doc: dict[str, Any] = {"model": "m", "data_ratio": {"target_examples": 240, "examples_per_class_min": 60}}
    summarise_candidate(doc, LAYERS, LAYERS, scores, MetricRoles.of(METRICS.values()))
    doc["data_ratio"] |= {"small": True, "ratio": 1e-3}
    return doc


def test_the_probe_runs_at_the_deepest_cut_point_and_the_best_by_knn_only() -> None:
    # kNN orders the cut points block2 > block3 > block4 > block1 > block5 > block0
    features, labels = layered_features([0.3, 0.8, 2.0, 1.6, 1.2, 0.6])
    scores, probed = scored(features, labels, auto=True)
    by = {(s.layer, s.metric): s.value for s in scores}
    assert probed == ["block5", "block2", "block3", "block4"] and len(probed) == PROBED + 1
    for layer in LAYERS:  # every cheap score everywhere
        assert all((layer, m) in by for m in ("knn_accuracy", "logme", "hscore", "ncm_accuracy"))
    probe_layers = [layer for layer in LAYERS if (layer, "probe_accuracy") in by]
    assert probe_layers == ["block2", "block3", "block4", "block5"]
    assert ("block0", "probe_balanced_accuracy") not in by  # nor what reads the probe's fit
    # the screened-out cut points are the worst by kNN
    knn = {layer: by[(layer, "knn_accuracy")] for layer in LAYERS}
    assert max(knn["block0"], knn["block1"]) < min(knn[layer] for layer in probe_layers[:-1])


def test_the_screened_decision_is_the_exhaustive_one_where_the_cheap_scores_are_clear() -> None:
    features, labels = layered_features([0.3, 0.8, 2.0, 1.6, 1.2, 0.6])
    screened, _ = scored(features, labels, auto=True)
    exhaustive, probed = scored(features, labels, auto=False)
    assert sorted(probed) == LAYERS  # cut points named by hand: every one probed
    full, fast = decided(exhaustive), decided(screened)
    assert [p["layer"] for p in full["layer_profile"]] == LAYERS
    assert [p["layer"] for p in fast["layer_profile"]] == ["block2", "block3", "block4", "block5"]
    a, b = recommend(full), recommend(fast)
    assert a is not None and b is not None
    assert (a["strategy"], a["cut"], a["expected_accuracy"]) == (b["strategy"], b["cut"], b["expected_accuracy"])
    assert a["strategy"] == "cut" and a["cut"] == "block2"
    # the deepest cut point's scores, which the ranking reads, are the same
    assert full["final_scores"] == fast["final_scores"]


def test_identical_cut_points_are_scored_once_and_share_their_scores() -> None:
    features, labels = layered_features([0.3, 0.8, 2.0, 1.6, 1.2, 0.6])
    features["block4"] = features["block5"].copy()  # as timm's bn2 and pre_logits
    assert identical_layers(features, LAYERS)["block4"] == "block5"
    scores, probed = scored(features, labels, auto=True)
    assert "block4" not in probed
    by = {(s.layer, s.metric): s for s in scores}
    for metric in METRICS:
        twin, deepest = by[("block4", metric)], by[("block5", metric)]
        assert twin.value == deepest.value and twin.spread == deepest.spread and twin.seconds == 0.0


def test_a_resumed_candidate_screens_on_the_knn_it_recorded_before_without_recording_it_again() -> None:
    features, labels = layered_features([0.3, 0.8, 2.0, 1.6, 1.2, 0.6])
    done = frozenset((layer, "knn_accuracy") for layer in LAYERS)
    scores, probed = scored(features, labels, auto=True, done=done)
    assert probed == ["block5", "block2", "block3", "block4"]
    assert not any(s.metric == "knn_accuracy" for s in scores)


def test_scores_on_two_threads_are_those_of_one_thread_recorded_in_the_same_order() -> None:
    features, labels = layered_features([0.3, 0.8, 2.0, 1.6, 1.2, 0.6])
    features["block4"] = features["block5"].copy()
    for auto in (True, False):
        one, probed_one = scored(features, labels, auto=auto)
        two, probed_two = scored(features, labels, auto=auto, threads=2)
        assert probed_two == probed_one
        assert [(s.layer, s.metric, s.value, s.spread, s.extra) for s in two] == [
            (s.layer, s.metric, s.value, s.spread, s.extra) for s in one
        ]


def test_concurrent_metrics_run_on_the_pool_threads_and_the_others_on_the_callers() -> None:
    features, labels = layered_features([0.3, 0.8, 2.0, 1.6, 1.2, 0.6])
    where: dict[str, set[str]] = {}

    def thread_name(metric: str) -> Any:
        def score(inputs: Any, labels: Any) -> float:
            where.setdefault(metric, set()).add(threading.current_thread().name)
            return 0.0

        return score

    metrics = {
        **METRICS,
        "pooled": Metric("pooled", thread_name("pooled"), "features", "where it ran", concurrent=True),
        "alone": Metric("alone", thread_name("alone"), "features", "where it ran"),
    }
    caller = threading.current_thread().name
    scored(features, labels, auto=True, threads=2, metrics=metrics)
    assert where["pooled"] and all(name.startswith("zooprobe-score") for name in where["pooled"])
    assert where["alone"] == {caller}  # not declared safe on threads: one at a time, here
    where.clear()
    scored(features, labels, auto=True, metrics=metrics)
    assert where["pooled"] == where["alone"] == {caller}
    # scores for a CUDA device queue on one stream: one at a time, whatever the threads
    where.clear()
    pooled = {"pooled": metrics["pooled"]}
    on_device = CutPointScoring("m", pooled, labels, {"device": "cuda:0"}, frozenset(), lambda _: None, 2)
    on_device.score_features(features, LAYERS, ["pooled"], auto=True)
    assert where["pooled"] == {caller}


@pytest.mark.parametrize("threads", [1, 2])
def test_a_failing_score_leaves_what_one_thread_recorded_before_it(threads: int) -> None:
    features, labels = layered_features([0.3, 0.8, 2.0, 1.6, 1.2, 0.6])

    def fails_at(layer_width: int) -> Any:
        def score(inputs: Any, labels: Any) -> float:
            if inputs.shape[1] == layer_width and np.array_equal(inputs, features["block3"]):
                raise ValueError("this score failed")
            return 0.0

        return score

    # a cheap score failing at block3: every score of block0-block2 stays, and those before it at block3
    broken = Metric("broken", fails_at(24), "features", "fails at block3", concurrent=True)
    metrics = {**METRICS, "broken": broken}
    recorded: list[Score] = []
    scoring = CutPointScoring("m", metrics, labels, {"seed": 0, "folds": 3}, frozenset(), recorded.append, threads)
    with pytest.raises(ValueError, match="this score failed"):
        scoring.score_features(features, LAYERS, list(metrics), auto=True)
    cheap = [name for name in metrics if metrics[name].role != "probe" and "cache" not in metrics[name].options]
    expected = [(layer, name) for layer in LAYERS[:3] for name in cheap]
    expected += [("block3", name) for name in cheap[: cheap.index("broken")]]
    assert [(s.layer, s.metric) for s in recorded] == expected

    # a probe failing: every cheap score stays
    def probe_fails(inputs: Any, labels: Any) -> float:
        raise ValueError("the probe failed")

    failing_probe = Metric("probe_accuracy", probe_fails, "features", "fails", role="probe", concurrent=True)
    metrics = {**METRICS, "probe_accuracy": failing_probe}
    recorded.clear()
    scoring = CutPointScoring("m", metrics, labels, {"seed": 0, "folds": 3}, frozenset(), recorded.append, threads)
    with pytest.raises(ValueError, match="the probe failed"):
        scoring.score_features(features, LAYERS, list(metrics), auto=True)
    assert {(s.layer, s.metric) for s in recorded} >= {(layer, "knn_accuracy") for layer in LAYERS}
    assert not any(s.metric.startswith("probe") for s in recorded)
