"""The calibrated interval of the expected accuracy: the conformal arithmetic, the shipped calibration,
and the interval as the assessment, the CLI and the reports state it (old runs report as before)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from zooprobe.cli import cli
from zooprobe.cli.assess import render_assessment
from zooprobe.evaluator import interval as iv
from zooprobe.evaluator.decision import rank
from zooprobe.runs.records import AssessSummary, Recommendation
from zooprobe.runs.store import RunStore

from .test_assess import decision_doc, profile
from .test_reports import add_assessment, add_finetune


def synthetic_cases(rng: np.random.Generator, count: int) -> list[dict[str, float | int | str]]:
    """Fine-tuning lands above the probe by a skewed amount proportional to the residual scale."""
    cases: list[dict[str, float | int | str]] = []
    for _ in range(count):
        expected, spread, n = rng.uniform(0.6, 0.98), rng.uniform(0.0, 0.03), int(rng.integers(100, 2000))
        achieved = expected + iv.scale(expected, spread, n) * (rng.gamma(2.0) - 1.0)
        cases.append({"strategy": "full", "expected": expected, "spread": spread, "n": n, "achieved": achieved})
    return cases


def test_conformal_quantiles_cover_80_percent_of_fresh_residuals() -> None:
    rng = np.random.default_rng(0)
    calibration = iv.fit(synthetic_cases(rng, 2000), level=0.8)
    covered = iv.coverage(calibration, synthetic_cases(rng, 5000))
    assert covered is not None and 0.77 <= covered <= 0.83
    low, high = calibration.quantiles["full"]
    assert low < 0 < high and abs(high) > abs(low)  # skewed: fine-tuning lands above more than below
    # ranks of the split-conformal quantiles: floor((n+1)a)-th and ceil((n+1)(1-a))-th smallest
    assert iv.conformal_quantiles(list(range(1, 10)), 0.8) == (1, 9)
    assert iv.conformal_quantiles(list(range(1, 20)), 0.8) == (2, 18)


def test_the_interval_is_clipped_to_0_1_and_contains_the_estimate() -> None:
    calibration = iv.Calibration(0.8, {"*": (-50.0, 50.0), "head": (0.5, 2.0)})
    wide = iv.interval(calibration, "full", 0.99, 0.01, 300)
    assert wide is not None and wide.low >= 0.0 and wide.high == 1.0 and wide.level == 0.8
    assert iv.interval(calibration, "full", 0.02, 0.01, 300).low == 0.0  # type: ignore[union-attr]
    above = iv.interval(calibration, "head", 0.5, 0.0, 100)  # both quantiles above: still holds the estimate
    assert above is not None and above.low == 0.5 < above.high
    # a cut borrows the head's fit when it trains new layers only
    assert calibration.quantiles_for("cut", "new") == (0.5, 2.0) and calibration.quantiles_for("cut", "all") == (
        -50.0,
        50.0,
    )
    # a calibration fitted on fine-tuned cut networks gives a cut its own fit, whatever head's and full's are
    own = iv.Calibration(0.8, {"*": (-50.0, 50.0), "head": (0.5, 2.0), "full": (-20.0, 1.0), "cut:all": (-2.0, 1.5)})
    assert own.quantiles_for("cut", "all") == (-2.0, 1.5) and own.quantiles_for("cut", "new") == (0.5, 2.0)
    fitted = iv.fit([{"strategy": "cut:all", "expected": 0.9, "spread": 0.0, "n": 300, "achieved": 0.9 + d / 100}
                     for d in range(-5, 6)])  # fmt: skip
    assert set(fitted.quantiles) == {"*", "cut:all"}
    span = iv.interval(fitted, "cut", 0.9, 0.0, 300, train="all")
    assert span is not None and span.low == pytest.approx(0.85) and span.high == pytest.approx(0.95)


def test_a_missing_or_broken_calibration_falls_back_to_a_statement() -> None:
    assert iv.load_calibration("not json") is None and iv.load_calibration('{"level": 0.8}') is None
    assert iv.interval(None, "head", 0.9, 0.01, 300) is None
    doc = {"strategy": "head", "expected_accuracy": 0.9, "uncertainty": 0.01}
    iv.attach(doc, 300, None)
    assert "interval_low" not in doc
    assert iv.stated_in(doc) == "0.900 ± 0.010"
    assert "no calibrated interval is stated" in iv.meaning(None) and "fold-to-fold spread" in iv.meaning(None)
    text = render_assessment(
        "assess-x", [], AssessSummary(recommended=Recommendation("head", None, "head", 0.9, 0.01, "e", model="m"))
    )
    assert "expected accuracy 0.900 ± 0.010" in text
    assert "About the expected accuracy: no calibrated interval is stated" in text


def test_the_shipped_calibration_loads_with_its_provenance() -> None:
    calibration = iv.load_calibration()
    assert calibration is not None and calibration.level == 0.8
    assert {"head", "full", "as-is", "*"} <= set(calibration.quantiles)
    assert calibration.provenance["benchmark"] == "benchmarks/bench_ranking.py"
    assert calibration.provenance["targets"] and calibration.provenance["cases"] >= 30
    assert "in 8 of 10 benchmark cases" in iv.meaning(calibration)


def test_the_ranking_states_the_interval_of_each_recommendation() -> None:
    doc = {**decision_doc(profile(0.6, 0.8, 0.9), examples=300), "model": "m", "status": "done"}
    ranked, recommended = rank([doc])
    rec = ranked[0]["recommendation"]
    assert rec["strategy"] == "head" and rec["interval_level"] == 0.8
    assert 0.0 <= rec["interval_low"] <= 0.9 <= rec["interval_high"] <= 1.0
    assert recommended is not None and recommended["interval_high"] == rec["interval_high"]
    typed = Recommendation.from_json(recommended)
    assert typed.interval_level == 0.8 and Recommendation.from_json(typed.to_json()) == typed
    text = render_assessment("assess-x", [], AssessSummary(recommended=typed))
    assert f"expected accuracy 0.900 (80% interval {typed.interval_low:.3f}–{typed.interval_high:.3f})" in text
    assert "in 8 of 10 benchmark cases the fine-tuned accuracy fell inside such an interval" in text
    # records without the fields (runs made before them) keep their exact shape
    assert "interval_low" not in Recommendation("head", None, "head", 0.9, 0.01, "e").to_json()


def test_reports_state_the_interval_and_judge_the_prediction_by_it(zooprobe_home: Path) -> None:
    with RunStore(zooprobe_home) as store:
        interval = {"interval_low": 0.88, "interval_high": 0.97, "interval_level": 0.8}
        assess_id = add_assessment(store, interval=interval)
        finetune_id = add_finetune(store, assess_id)  # reaches 0.893: inside 0.88-0.97, outside 2 x 0.010
    runner = CliRunner()
    out = runner.invoke(cli, ["report", assess_id, finetune_id, "--format", "md"]).output
    assert "expected accuracy 0.947 (80% interval 0.880–0.970); fine-tuning reached 0.893" in out
    assert "About the expected accuracy: the 80% interval is where fine-tuning is expected to land" in out
    assert "| Within interval |" in out and "outside twice the uncertainty" not in out
    doc = json.loads(runner.invoke(cli, ["report", assess_id, finetune_id, "--format", "json"]).output)
    (decision,) = doc["decisions"]
    assert (decision["interval_low"], decision["interval_high"], decision["interval_level"]) == (0.88, 0.97, 0.8)
    assert doc["candidates"][0]["interval_high"] == 0.97 and doc["predictions"][0]["within"] is True
    csv = runner.invoke(cli, ["report", assess_id, finetune_id, "--format", "csv"]).output
    assert "interval_low" in csv.splitlines()[0]
    html = zooprobe_home / "report.html"  # the predicted-vs-achieved plot draws the interval
    done = runner.invoke(cli, ["report", assess_id, finetune_id, "--format", "html", "--out", str(html)])
    assert done.exit_code == 0, done.output
    assert "80% interval 0.880–0.970" in html.read_text()


@pytest.mark.parametrize("fmt", ["md", "json"])
def test_a_run_without_an_interval_reports_as_before(zooprobe_home: Path, fmt: str) -> None:
    with RunStore(zooprobe_home) as store:
        assess_id = add_assessment(store)
        finetune_id = add_finetune(store, assess_id)
    out = CliRunner().invoke(cli, ["report", assess_id, finetune_id, "--format", fmt]).output
    assert "interval" not in out.replace("Within ±2σ", "")
