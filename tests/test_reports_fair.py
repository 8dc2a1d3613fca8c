"""Reports that say what this run measured: the scratch baseline that predicted one class, the accuracy of
the checkpoint kept, the assessment a ``--data`` report decides by, and the scores the ranking used."""

from __future__ import annotations

import json
from typing import Any

import pytest

from zooprobe.runs.records import ArmResult, AssessSummary, CandidateResult, FinetuneSummary
from zooprobe.runs.store import EpochRecord, RunStore

from .test_reports import (  # noqa: F401  (store: a fixture)
    CUT_ARM,
    DATA,
    DATA_HASH,
    LITE0,
    LITE0_LAYERS,
    LITE0_PROFILE,
    MOBILENET,
    _candidate,
    _profile,
    add_assessment,
    add_finetune,
    run_cli,
    store,
)

# a scratch arm that predicted one class: 0.5 on two balanced classes
ONE_CLASS = [(0.41, 1.7, 0.5), (0.12, 2.4, 0.5), (0.03, 3.1, 0.5)]


def _caveats(*run_ids: str) -> list[str]:
    code, out = run_cli("report", *run_ids, "--format", "json")
    assert code == 0, out
    (decision,) = json.loads(out)["decisions"]
    caveats: list[str] = decision["caveats"]
    return caveats


@pytest.mark.parametrize(
    ("extra", "expected"),
    [
        ({"top_class_share": 1.0, "precise_bn_examples": 160}, "recomputed on 160 training examples (precise BN)"),
        ({"top_class_share": 0.97}, "precise BN was not applied"),
        ({"top_class_share": 1.0, "precise_bn_examples": 0}, "could not be recomputed"),
        ({"top_class_share": 1.0, "running_statistics": False}, "keeps no running normalisation statistics"),
    ],
)
def test_a_one_class_scratch_arm_is_a_caveat_on_the_gain(
    store: RunStore,  # noqa: F811
    extra: dict[str, Any],
    expected: str,
) -> None:
    assess_id = add_assessment(store)
    tune = add_finetune(store, assess_id, scratch_epochs=ONE_CLASS, scratch_extra=extra)
    (caveat,) = [c for c in _caveats(assess_id, tune) if "one class" in c]
    assert f"the scratch baseline of run {tune} predicted one class for" in caveat
    assert "(epoch 3)" in caveat and expected in caveat


def test_no_one_class_caveat_for_a_scratch_arm_that_spreads_its_predictions(store: RunStore) -> None:  # noqa: F811
    assess_id = add_assessment(store)
    spread = add_finetune(store, assess_id, scratch_extra={"top_class_share": 0.6, "precise_bn_examples": 160})
    unrecorded = add_finetune(store, assess_id, scratch_epochs=ONE_CLASS)  # a run before the share was recorded
    for tune in (spread, unrecorded):
        assert not any("one class" in caveat for caveat in _caveats(assess_id, tune))


def _kept_run(store: RunStore, assess_id: str) -> str:  # noqa: F811
    """A cut run whose strategy arm's kept checkpoint (epoch 2, lowest validation loss) scores 1.000 and
    whose last epoch scores 0.958; scratch keeps epoch 3 (0.600)."""
    config = {"model": MOBILENET, "strategy": CUT_ARM, "arms": [CUT_ARM, "scratch"], "epochs": 3,
              "assess_run": assess_id, "train_examples": 200, "val_examples": 48}  # fmt: skip
    run = store.create("finetune", DATA, config, data_hash=DATA_HASH)
    rows = {CUT_ARM: [(0.40, 0.91), (0.05, 1.0), (0.09, 0.958)], "scratch": [(0.9, 0.5), (0.8, 0.55), (0.7, 0.6)]}
    arms = {}
    for arm, values in rows.items():
        records = [EpochRecord(arm, e, 0.1, loss, acc, acc, 1.0) for e, (loss, acc) in enumerate(values, start=1)]
        for record in records:
            store.put_epoch(run.id, record)
        kept = min(records, key=lambda r: r.val_loss or 0.0).epoch
        arms[arm] = ArmResult.from_epochs(records, checkpoint_epoch=kept, checkpoint=f"/runs/{arm}.safetensors")
    store.finish(run.id, FinetuneSummary.of(arms, CUT_ARM))
    return run.id


def test_achieved_is_the_checkpoint_kept_with_the_last_epoch_beside_it(store: RunStore) -> None:  # noqa: F811
    assess_id = add_assessment(store)
    tune = _kept_run(store, assess_id)
    summary = store.get(tune).finetune_summary
    assert summary is not None and summary.arms[CUT_ARM].kept_val_accuracy == 1.0
    assert summary.gain_over_scratch == pytest.approx(1.0 - 0.6)  # kept against kept, not 0.958 - 0.6
    code, out = run_cli("report", assess_id, tune, "--format", "json")
    assert code == 0, out
    doc = json.loads(out)
    (decision,) = doc["decisions"]
    assert (decision["achieved_accuracy"], decision["last_epoch_accuracy"]) == (1.0, 0.958)
    assert any(
        "reached 1.000 validation accuracy after 3 epochs (checkpoint kept: epoch 2, lowest validation loss;"
        " last epoch 3: 0.958); trained from scratch, the same architecture reached 0.600 (checkpoint kept: epoch 3,"
        " the last): +0.400 from pretraining" in line
        for line in decision["evidence"]
    ), decision["evidence"]
    (check,) = doc["predictions"]
    assert check["achieved"] == 1.0
    code, md = run_cli("report", assess_id, tune, "--format", "md")
    assert "fine-tuning reached 1.000 (the checkpoint kept; last epoch 0.958)" in md
    assert f"{CUT_ARM}: validation accuracy of the checkpoint kept (epoch 2, lowest validation loss) 1.0000;" in md
    assert (
        "last epoch 0.9580" in md and "gain over scratch (validation accuracy of the checkpoints kept): +0.4000" in md
    )


def test_a_summary_without_the_kept_accuracy_reports_the_last_epoch(store: RunStore) -> None:  # noqa: F811
    arm = ArmResult.from_json({"final_val_accuracy": 0.9, "checkpoint_epoch": 1})
    assert arm.kept_val_accuracy is None and arm.achieved == 0.9 and "kept_val_accuracy" not in arm.to_json()
    kept = ArmResult.from_epochs([EpochRecord("head", 1, 0.1, 0.2, 0.95, 0.95, 1.0)], checkpoint_epoch=1)
    assert ArmResult.from_json(kept.to_json()).achieved == 0.95


def _smaller_rerun(store: RunStore) -> str:  # noqa: F811
    """A newer assessment of the same data with one candidate (the other skipped), recommending Lite0."""
    run = store.create("assess", DATA, {"models": [LITE0]}, data_hash=DATA_HASH)
    rec = {"strategy": "head", "cut": None, "train": "new", "finetune_arg": "head", "expected_accuracy": 0.896,
           "uncertainty": 0.015, "evidence": "only one"}  # fmt: skip
    macs = {"value": 0.39, "unit": "GMACs", "resolution": 224}
    profile = _profile(LITE0_LAYERS, LITE0_PROFILE)
    doc = _candidate(LITE0, "timm", 4_652_008, macs, profile, 1, scores={}, consensus=0.0, recommendation=rec)
    store.put_candidate(run.id, 0, CandidateResult.from_json(doc))
    recommended = {"model": LITE0, **doc["recommendation"], "evidence": f"{LITE0} is the only candidate assessed"}
    store.finish(run.id, AssessSummary.from_json({"ranking": [LITE0], "recommended": recommended}))
    return run.id


def test_a_data_report_decides_by_the_largest_complete_assessment_not_the_newest(store: RunStore) -> None:  # noqa: F811
    large = add_assessment(store)  # two candidates assessed, recommends MobileNetV2
    small = _smaller_rerun(store)
    code, out = run_cli("report", "--data", DATA, "--format", "json")
    assert code == 0, out
    (decision,) = json.loads(out)["decisions"]
    assert decision["model"] == MOBILENET and decision["finetune_arg"] == CUT_ARM
    assert any(f"decided by assessment {large}, the largest complete one of the 2" in e for e in decision["evidence"])
    # the run the user names decides
    code, out = run_cli("report", small, "--format", "json")
    (decision,) = json.loads(out)["decisions"]
    assert decision["model"] == LITE0 and not any("decided by" in e for e in decision["evidence"])


def test_an_unfinished_assessment_does_not_decide_over_a_complete_one(store: RunStore) -> None:  # noqa: F811
    small = _smaller_rerun(store)
    add_assessment(store, finish=False)  # larger, newer, still running: no recommendation yet
    code, out = run_cli("report", "--data", DATA, "--format", "json")
    (decision,) = json.loads(out)["decisions"]
    assert decision["model"] == LITE0 and any(f"decided by assessment {small}" in e for e in decision["evidence"])


def test_the_candidate_table_shows_the_scores_the_ranking_read_beside_the_best_layers(store: RunStore) -> None:  # noqa: F811
    run = store.create("assess", DATA, {}, data_hash=DATA_HASH)
    for position, (model, ranked_logme, prior) in enumerate([(MOBILENET, 0.413, 71.9), (LITE0, 0.470, 75.5)]):
        doc = _candidate(model, "timm", 1, None, _profile(LITE0_LAYERS, LITE0_PROFILE), position + 1,
                         scores={"logme": 0.473, "leep": -1.5}, prior_top1=prior, final_layer="pre_logits",
                         final_scores={"probe_accuracy": 0.896, "logme": ranked_logme, "leep": -1.5})  # fmt: skip
        store.put_candidate(run.id, position, CandidateResult.from_json(doc))
    store.finish(run.id, AssessSummary())
    code, md = run_cli("report", run.id, "--format", "md")
    assert code == 0, md
    header = next(line for line in md.splitlines() if line.startswith("| Rank"))
    assert "Probe acc. (± spread) @ best layer | Ranked at layer | Probe acc. ranked |" in header
    assert "| logme ranked (best layer) | leep ranked (best layer) | ImageNet top-1 (prior) |" in header
    row = next(line for line in md.splitlines() if line.startswith(f"| 1 | {MOBILENET}"))
    assert "| pre_logits | 0.896 | 0.413 (0.473) | -1.500 | 71.900 |" in row  # the same score: once
    code, out = run_cli("report", run.id, "--format", "csv")
    first = next(line for line in out.splitlines()[1:] if MOBILENET in line)
    assert {"ranked_layer", "ranked_logme", "prior_top1"} <= set(out.splitlines()[0].split(","))
    assert ",0.413," in first and ",71.9," in first


def test_a_run_without_the_ranked_scores_keeps_the_best_layer_table(store: RunStore) -> None:  # noqa: F811
    assess_id = add_assessment(store)  # documents without final_scores, as runs before they were stored
    code, md = run_cli("report", assess_id, "--format", "md")
    assert "| Probe acc. (± spread) | knn_accuracy | logme |" in md and "ranked" not in md


@pytest.mark.parametrize(
    ("arm_epochs", "said", "not_said"),
    [
        ([(1.4, 1.1, 0.70), (0.7, 0.6, 0.85), (0.4, 0.45, 0.893)], "the probe saw the whole data", "above it"),
        (
            [(1.4, 1.1, 0.95), (0.7, 0.6, 0.98), (0.4, 0.45, 0.989)],
            "above it: the assessment's estimate was",
            "had 200",
        ),
    ],
)
def test_a_missed_prediction_is_explained_in_the_direction_it_missed(
    store: RunStore,  # noqa: F811
    arm_epochs: list[tuple[float, float, float]],
    said: str,
    not_said: str,
) -> None:
    assess_id = add_assessment(store)  # predicts 0.947 ± 0.010 for the cut
    tune = add_finetune(store, assess_id, arm_epochs=arm_epochs)
    (missed,) = [c for c in _caveats(assess_id, tune) if "outside twice the uncertainty" in c]
    assert said in missed and not_said not in missed


def test_no_missed_prediction_caveat_within_the_uncertainty(store: RunStore) -> None:  # noqa: F811
    assess_id = add_assessment(store)
    tune = add_finetune(store, assess_id, arm_epochs=[(1.4, 1.1, 0.9), (0.7, 0.6, 0.93), (0.4, 0.45, 0.95)])
    assert not any("outside twice the uncertainty" in c for c in _caveats(assess_id, tune))
