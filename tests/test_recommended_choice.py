"""``finetune --strategy recommended`` follows the assessment a report names (the largest complete one of the
data, not the newest), says which in its output, and takes another by ``--from-run``."""

from __future__ import annotations

import json
from pathlib import Path

from click.testing import CliRunner

from zooprobe.cli import cli
from zooprobe.reports import build_report
from zooprobe.runs.records import AssessSummary, CandidateResult, DataRatio, Recommendation
from zooprobe.runs.store import RunStore

from .test_finetune import MODEL, weights  # noqa: F401  (a fixture)

OTHER = "timm:resnet18.a1_in1k"
SMALL_ARGS = ["--epochs", "1", "--resolution", "32", "--train-size", "60", "--batch-size", "16"]


def _assessment(store: RunStore, data_hash: str, arg: str, models: list[str], examples: int) -> str:
    """A finished assessment of ``models`` (all assessed, on ``examples``) recommending ``arg`` for MODEL."""
    recommendation = Recommendation(arg.split(":")[0], None, arg, 0.9, 0.01, "a test", model=MODEL)
    run = store.create("assess", "sklearn:digits", {"models": models}, data_hash=data_hash)
    for position, model in enumerate(models):
        result = CandidateResult(
            model,
            status="done",
            data_ratio=DataRatio(target_examples=examples),
            recommendation=recommendation if model == MODEL else None,
        )
        store.put_candidate(run.id, position, result)
    store.finish(run.id, AssessSummary(ranking=models, recommended=recommendation))
    return run.id


def _finetune(*args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(cli, ["finetune", "--data", "sklearn:digits", "--model", MODEL, *args])
    return result.exit_code, result.stdout, result.stderr


def test_recommended_follows_the_largest_complete_assessment_and_from_run_another(weights: Path) -> None:  # noqa: F811
    from zooprobe.data.datasets import read_dataset

    digest = read_dataset("sklearn:digits").content_hash()
    with RunStore(weights) as store:
        larger = _assessment(store, digest, "head", [MODEL, OTHER], 1437)
        newer = _assessment(store, digest, "cut:features.13+mlp:16:train=new", [MODEL], 200)  # smaller, newer
        decided = build_report(store, data="sklearn:digits").decisions[0]
    assert decided.finetune_arg == "head"  # what a report on the data names

    code, out, err = _finetune("--strategy", "recommended", *SMALL_ARGS, "--format", "json")
    assert code == 0, err
    assert list(json.loads(out)["arms"]) == ["head"]
    assert (
        f"strategy 'head' as recommended by assessment {larger} (2 candidate(s) assessed on 1,437 examples;"
        " the largest complete of the 2 assessments of this data that recommend for this model)"
    ) in err

    code, out, err = _finetune("--from-run", newer, *SMALL_ARGS, "--format", "json")  # implies recommended
    assert code == 0, err
    tuned = json.loads(out)
    assert list(tuned["arms"]) == ["cut:features.13+mlp:16:train=new"]
    named = f"as recommended by assessment {newer} (1 candidate(s) assessed on 200 examples; named with --from-run)"
    assert named in err
    with RunStore(weights) as store:
        assert store.get(tuned["run_id"]).config["assess_run"] == newer


def test_from_run_refusals_are_one_line_exit_2(weights: Path) -> None:  # noqa: F811
    with RunStore(weights) as store:
        elsewhere = _assessment(store, "0" * 64, "head", [MODEL], 100)  # an assessment of other data
        only_other = _assessment(store, "0" * 64, "head", [OTHER], 100)
    cases = [
        (["--from-run", "assess-nope"], f"--from-run: unknown run 'assess-nope' (recent assessments: {only_other},"),
        (["--from-run", "assess-nope"], "see run ids with 'zooprobe report --data DATA'"),
        (["--from-run", elsewhere, "--strategy", "full"], "pass --strategy recommended (or drop --from-run)"),
        (["--from-run", elsewhere], f"--from-run: assessment '{elsewhere}' was made on other data"),
    ]
    for args, message in cases:
        code, out, err = _finetune(*args, *SMALL_ARGS)
        assert code == 2, (args, out, err)
        assert message in err and len(err.strip().splitlines()) == 1 and "Traceback" not in err, err
    code, _, err = _finetune("--resume", "finetune-any", "--from-run", elsewhere)
    assert code == 2 and "--from-run (or start a new run without --resume)" in err
