"""Report sentences read naturally for every strategy: an ``as-is`` arm is "used as is" (it trains nothing),
a trained arm is "fine-tuned" after so many epochs, and the gain over scratch is said once."""

from __future__ import annotations

import json

from zooprobe.runs.records import ArmResult, AssessSummary, CandidateResult, FinetuneSummary
from zooprobe.runs.store import EpochRecord, RunStore

from . import test_reports as base
from .test_reports import store  # noqa: F401  (a fixture)

DATA, DATA_HASH, MOBILENET, run_cli = base.DATA, base.DATA_HASH, base.MOBILENET, base.run_cli

AS_IS_REC = {"strategy": "as-is", "cut": None, "train": None, "finetune_arg": "as-is", "expected_accuracy": 0.9,
             "uncertainty": 0.01, "evidence": "nearest class mean as good as the probe"}  # fmt: skip


def _as_is_assessment(store: RunStore) -> str:  # noqa: F811
    run = store.create("assess", DATA, {"models": [MOBILENET]}, data_hash=DATA_HASH)
    doc = base._candidate(
        MOBILENET, "torchvision", 3_504_872, {"value": 0.3, "unit": "GFLOPS", "resolution": 224},
        base._profile(base.MOBILENET_LAYERS, base.MOBILENET_PROFILE), 1, scores={}, consensus=0.0,
        recommendation=AS_IS_REC,
    )  # fmt: skip
    store.put_candidate(run.id, 0, CandidateResult.from_json(doc))
    store.finish(
        run.id, AssessSummary.from_json({"ranking": [MOBILENET], "recommended": {"model": MOBILENET, **AS_IS_REC}})
    )
    return run.id


def _as_is_run(store: RunStore, assess_run: str | None) -> str:  # noqa: F811
    """An as-is arm (epoch 0, 0.807 by nearest class mean) against scratch (0.150, 0.180, 0.200)."""
    config = {"model": MOBILENET, "strategy": "as-is", "arms": ["as-is", "scratch"], "epochs": 3,
              "assess_run": assess_run, "train_examples": 350, "val_examples": 150}  # fmt: skip
    run = store.create("finetune", DATA, config, data_hash=DATA_HASH)
    as_is = [EpochRecord("as-is", 0, None, None, 0.807, 0.8, 0.4, {"method": "nearest class mean"})]
    scratch = [EpochRecord("scratch", e, 1.6, 1.6, acc, acc, 5.0) for e, acc in ((1, 0.15), (2, 0.18), (3, 0.2))]
    for record in [*as_is, *scratch]:
        store.put_epoch(run.id, record)
    arms = {"as-is": ArmResult.from_epochs(as_is), "scratch": ArmResult.from_epochs(scratch, checkpoint_epoch=3)}
    store.finish(run.id, FinetuneSummary.of(arms, "as-is"))
    return run.id


def _decision(*run_ids: str) -> dict[str, object]:
    code, out = run_cli("report", *run_ids, "--format", "json")
    assert code == 0, out
    (decision,) = json.loads(out)["decisions"]
    return dict(decision)


def test_an_as_is_run_is_used_as_is_not_fine_tuned(store: RunStore) -> None:  # noqa: F811
    assess_id = _as_is_assessment(store)
    tune = _as_is_run(store, assess_id)
    decision = _decision(assess_id, tune)
    evidence = [line for line in decision["evidence"] if f"(run {tune})" in line]  # type: ignore[attr-defined]
    assert evidence == [
        f"{MOBILENET} used as is (nearest class mean; nothing trained) reached 0.807 validation accuracy;"
        " trained from scratch, the same architecture reached 0.200 (checkpoint kept: epoch 3, the last):"
        f" +0.607 from pretraining (run {tune})"
    ]
    (caveat,) = [c for c in decision["caveats"] if "predicted" in c]  # type: ignore[attr-defined]
    assert f"for {MOBILENET} and used as is, it reached 0.807, outside twice the uncertainty" in caveat
    assert "(its class means came from 350 training examples, nothing trained;" in caveat and "epochs" not in caveat
    code, md = run_cli("report", assess_id, tune, "--format", "md")
    assert "with strategy 'as-is', expected accuracy 0.900" in md and "; used as is, it reached 0.807 (+0.607" in md
    for awkward in ("with 'as-is'", "accuracy as is", "fine-tuning reached 0.807"):
        assert awkward not in md, awkward


def test_a_trained_arm_reached_its_accuracy_after_its_epochs(store: RunStore) -> None:  # noqa: F811
    assess_id = base.add_assessment(store)
    tune = base.add_finetune(store, assess_id, arm_name="head", arm_epochs=[(1.0, 0.9, 0.85)])
    (line,) = [line for line in _decision(assess_id, tune)["evidence"] if f"(run {tune})" in line]  # type: ignore[attr-defined]
    assert line == (
        f"fine-tuning {MOBILENET} with 'head' reached 0.850 validation accuracy after 1 epoch;"
        f" trained from scratch, the same architecture reached 0.571: +0.279 from pretraining (run {tune})"
    )
