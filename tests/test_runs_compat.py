"""A run store written by the release before typed run records still opens, migrates and reports the same."""

from __future__ import annotations

import dataclasses
import json
import shutil
import sqlite3
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from zooprobe.reports import build_report, render
from zooprobe.runs.records import (
    SCRATCH,
    ArmResult,
    AssessSummary,
    CandidateResult,
    EpochRecord,
    FinetuneSummary,
    provisional_gain,
)
from zooprobe.runs.store import SCHEMA_VERSION, RunStore

FIXTURE = Path(__file__).parent / "fixtures" / "runs_v1"
ASSESS_RUN = "assess-20261203-081044-665bef"
FINETUNE_RUN = "finetune-20261203-081046-f1bdc2"
GENERATED = 1_700_000_000.0  # the time the fixture's reports were generated at


@pytest.fixture
def utc(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Local time is UTC, as when the fixture's reports were written (their tables show local times)."""
    monkeypatch.setenv("TZ", "UTC")
    time.tzset()
    yield
    monkeypatch.undo()
    time.tzset()


@pytest.fixture
def old_store(tmp_path: Path) -> Path:
    """A copy of the old store (opening it migrates it; the committed file stays as the old release wrote it)."""
    home = tmp_path / "old-home"
    home.mkdir()
    shutil.copy(FIXTURE / "runs.sqlite3", home / "runs.sqlite3")
    return home


def _user_version(path: Path) -> int:
    db = sqlite3.connect(f"file:{path}?immutable=1", uri=True)  # read as it is: no WAL files beside it
    try:
        return int(db.execute("PRAGMA user_version").fetchone()[0])
    finally:
        db.close()


def test_the_fixture_is_a_version_1_store() -> None:
    assert _user_version(FIXTURE / "runs.sqlite3") == 1


def test_an_old_store_opens_and_migrates_to_the_current_schema(old_store: Path) -> None:
    with RunStore(old_store) as store:
        runs = store.list()
        assert [run.id for run in runs] == [FINETUNE_RUN, ASSESS_RUN]
        assert all(run.status == "done" for run in runs)
        assert len(store.scores(ASSESS_RUN)) == 24  # 2 candidates x (2 cut points x 5 feature metrics + 2 head metrics)
        assert len(store.epochs(FINETUNE_RUN)) == 4
    assert _user_version(old_store / "runs.sqlite3") == SCHEMA_VERSION
    with RunStore(old_store) as store:  # a migrated store opens again as it is
        assert len(store.list()) == 2


@pytest.mark.parametrize("fmt", ["md", "json"])
def test_an_old_store_reports_as_the_old_release_did(old_store: Path, fmt: str, utc: None) -> None:
    with RunStore(old_store) as store:
        report = build_report(store, [ASSESS_RUN, FINETUNE_RUN])
    text = render(dataclasses.replace(report, generated=GENERATED), fmt)
    expected = (FIXTURE / f"report_v1.{fmt}").read_text()
    if fmt == "json":
        assert json.loads(text) == json.loads(expected)
    assert text == expected


def test_the_old_store_reports_the_expected_numbers(old_store: Path) -> None:
    with RunStore(old_store) as store:
        report = build_report(store, [FINETUNE_RUN])  # brings in the assessment it followed
    assert [run.id for run in report.runs] == [ASSESS_RUN, FINETUNE_RUN]
    first, second = report.candidates
    assert (first.rank, first.model, first.best_layer) == (1, "torchvision:mobilenet_v2.IMAGENET1K_V1", "features.14")
    assert round(first.probe_accuracy or 0, 3) == 0.930 and round(second.probe_accuracy or 0, 3) == 0.870
    assert first.finetune_arg == "cut:features.14+mlp:256:train=new"
    (tune,) = report.finetunes
    assert tune.gain_over_scratch == pytest.approx(0.45)
    assert tune.strategy_arm is not None and tune.strategy_arm.final_val_accuracy == pytest.approx(0.55)
    (decision,) = report.decisions
    assert decision.model == first.model and decision.achieved_accuracy == pytest.approx(0.55)
    (check,) = report.predictions
    assert round(check.predicted, 3) == 0.930 and not check.within


# --- the typed records read every release's documents --------------------------------------------


def test_every_stored_candidate_document_reads_back_as_written(old_store: Path) -> None:
    db = sqlite3.connect(old_store / "runs.sqlite3")
    try:
        documents = [json.loads(row[0]) for row in db.execute("SELECT doc FROM candidates ORDER BY position")]
    finally:
        db.close()
    with RunStore(old_store) as store:
        results = store.candidates(ASSESS_RUN)
        run = store.get(ASSESS_RUN)
    assert [result.to_json() for result in results] == documents  # same keys, same order, same values
    assert [json.dumps(result.to_json()) for result in results] == [json.dumps(doc) for doc in documents]
    summary = run.assess_summary
    assert summary is not None and summary.to_json() == run.summary
    assert summary.recommended is not None and summary.recommended.model == results[0].model


def test_documents_missing_keys_get_defaults_and_unknown_keys_are_kept() -> None:
    old = {"model": "m", "recommendation": {"finetune_arg": "head"}, "from_a_newer_release": [1, 2]}
    result = CandidateResult.from_json(old)
    assert (result.status, result.best_layer, result.layer_profile, result.input_check.status) == (
        "pending", None, [], "compatible"
    )  # fmt: skip
    assert result.recommendation is not None and result.recommendation.finetune_arg == "head"
    assert result.to_json()["from_a_newer_release"] == [1, 2]
    assert EpochRecord.from_json({"arm": "head", "epoch": 1}) == EpochRecord("head", 1, None, None, None, None, None)
    arm = ArmResult.from_json({"final_val_accuracy": 0.5})
    assert (arm.best_epoch, arm.checkpoint_epoch, arm.seconds) == (None, None, 0.0)
    assert AssessSummary.from_json({}).recommended is None
    assert FinetuneSummary.from_json({"arms": {"head": {"final_val_accuracy": 0.5}}}).seconds is None


def test_the_finetune_summary_computes_the_gain_once_and_stores_it(old_store: Path) -> None:
    with RunStore(old_store) as store:
        run = store.get(FINETUNE_RUN)
        summary = run.finetune_summary
        assert summary is not None and summary.to_json() == run.summary  # as the old release wrote it
        strategy, scratch = (store.epochs(FINETUNE_RUN, arm) for arm in (run.config["arms"][0], SCRATCH))
    rebuilt = FinetuneSummary.of(
        {run.config["arms"][0]: ArmResult.from_epochs(strategy), SCRATCH: ArmResult.from_epochs(scratch)},
        run.config["arms"][0],
    )
    assert rebuilt.gain_over_scratch == pytest.approx(summary.gain_over_scratch)
    assert provisional_gain(strategy, scratch) == (pytest.approx(summary.gain_over_scratch), 2)
    assert FinetuneSummary.of({"head": rebuilt.arms[SCRATCH]}, "head").gain_over_scratch is None


def test_a_summary_written_while_the_run_goes_on_leaves_it_running(tmp_path: Path) -> None:
    with RunStore(tmp_path) as store:
        run = store.create("assess", "sklearn:digits", {})
        store.put_summary(run.id, AssessSummary(ranking=["m"], pending=["n"], seconds=1.5))
        again = store.get(run.id)
    assert again.status == "running" and again.assess_summary == AssessSummary(["m"], None, [], 1.5, ["n"], {})


def test_the_cli_reports_an_old_store(old_store: Path) -> None:
    from click.testing import CliRunner

    from zooprobe.cli import cli

    result = CliRunner().invoke(
        cli, ["report", ASSESS_RUN, FINETUNE_RUN, "--format", "json", "--home", str(old_store)], catch_exceptions=False
    )
    assert result.exit_code == 0, result.output
    document, expected = json.loads(result.output), json.loads((FIXTURE / "report_v1.json").read_text())
    assert document.pop("generated") > expected.pop("generated")
    assert document == expected
