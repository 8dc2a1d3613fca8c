"""Reports from a real run store: each format, an empty store, a run in progress, bad input, and the
HTML report rendered by a real headless Chromium with every network request refused."""

from __future__ import annotations

import base64
import csv
import io
import json
import os
import re
import shutil
import stat
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from zooprobe.cli import cli
from zooprobe.runs.records import ArmResult, AssessSummary, CandidateResult, FinetuneSummary
from zooprobe.runs.store import EpochRecord, RunStore, Score

DATA = "sklearn:digits"
DATA_HASH = "9f2c41d07be35a18c6e0"
MOBILENET = "torchvision:mobilenet_v2.IMAGENET1K_V1"
LITE0 = "timm:tf_efficientnet_lite0.in1k"
MINILM = "hf:sentence-transformers/all-MiniLM-L6-v2"
MOBILENET_LAYERS = ["features.3", "features.7", "features.11", "features.14", "features.17", "pre_logits"]
LITE0_LAYERS = ["blocks.1", "blocks.2", "blocks.3", "blocks.4", "blocks.5", "pre_logits"]
# Probe accuracy by cut point, measured on digits at 64 px with 5-fold CV (accuracy, std over folds).
MOBILENET_PROFILE = [(0.912, 0.011), (0.934, 0.009), (0.941, 0.008), (0.947, 0.010), (0.931, 0.012), (0.905, 0.014)]
LITE0_PROFILE = [(0.889, 0.013), (0.921, 0.010), (0.936, 0.011), (0.929, 0.009), (0.917, 0.012), (0.896, 0.015)]
# One fine-tuning run: 'cut' at features.14 against scratch, 200 training digits, 3 epochs.
CUT_ARM = "cut:features.14+mlp:256:train=new"
CUT_EPOCHS = [(1.412, 1.083, 0.712), (0.702, 0.612, 0.846), (0.431, 0.455, 0.893)]
SCRATCH_EPOCHS = [(2.291, 2.214, 0.231), (2.011, 1.862, 0.402), (1.603, 1.448, 0.571)]


def run_cli(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(cli, list(args))
    return result.exit_code, result.output


def _profile(layers: list[str], values: list[tuple[float, float]]) -> list[dict[str, Any]]:
    return [
        {"layer": layer, "depth": round((i + 1) / len(layers), 3), "probe_accuracy": acc, "probe_spread": spread}
        for i, (layer, (acc, spread)) in enumerate(zip(layers, values, strict=True))
    ]


def _candidate(
    model: str, source: str, params: int, macs: dict[str, Any], profile: list[dict[str, Any]], rank: int, **extra: Any
) -> dict[str, Any]:
    best = max(profile, key=lambda p: p["probe_accuracy"])
    return {
        "model": model,
        "source": source,
        "params": params,
        "macs": macs,
        "status": "done",
        "skip_reason": None,
        "input_check": {
            "status": "adapted",
            "adaptations": ["grayscale replicated to 3 channels", "upsampling from 8x8 to 64x64"],
            "reason": None,
        },
        "data_ratio": {
            "source_examples": 1_281_167,
            "target_examples": 1797,
            "examples_per_class_min": 174,
            "ratio": 1797 / 1_281_167,
            "flags": [],
        },
        "best_layer": best["layer"],
        "probe_accuracy": best["probe_accuracy"],
        "probe_spread": best["probe_spread"],
        "layer_profile": profile,
        "rank": rank,
        **extra,
    }


def add_assessment(store: RunStore, *, finish: bool = True, interval: dict[str, float] | None = None) -> str:
    config = {
        "models": [MOBILENET, LITE0, MINILM],
        "query": None,
        "top": None,
        "metrics": ["probe_accuracy", "knn_accuracy", "logme", "hscore", "leep"],
        "layers": "auto",
        "seed": 0,
        "folds": 5,
        "budget": None,
    }
    run = store.create("assess", DATA, config, data_hash=DATA_HASH, versions={"torch": "2.14.1"})
    mobilenet_rec = {
        "strategy": "cut",
        "cut": "features.14",
        "train": "new",
        "finetune_arg": CUT_ARM,
        "expected_accuracy": 0.947,
        "uncertainty": 0.010,
        "evidence": "features.14 beats pre_logits by 0.042, more than the fold spread 0.014",
        **(interval or {}),  # the calibrated interval, in runs that state one
    }
    docs = [
        _candidate(
            MOBILENET, "torchvision", 3_504_872, {"value": 0.3, "unit": "GFLOPS", "resolution": 224},
            _profile(MOBILENET_LAYERS, MOBILENET_PROFILE), 1,
            scores={"probe_accuracy": 0.947, "knn_accuracy": 0.962, "logme": 1.284, "hscore": 38.71, "leep": -1.937},
            consensus=0.71, recommendation=mobilenet_rec,
        ),
        _candidate(
            LITE0, "timm", 4_652_008, {"value": 0.39, "unit": "GMACs", "resolution": 224},
            _profile(LITE0_LAYERS, LITE0_PROFILE), 2,
            scores={"probe_accuracy": 0.936, "knn_accuracy": 0.951, "logme": 1.122, "hscore": 31.05, "leep": -2.104},
            consensus=-0.71,
            recommendation={**mobilenet_rec, "cut": "blocks.3", "finetune_arg": "cut:blocks.3+mlp:256:train=new",
                            "expected_accuracy": 0.936, "uncertainty": 0.011},
        ),
        {
            "model": MINILM, "source": "hf", "params": 22_713_216, "macs": None, "status": "skipped",
            "skip_reason": f"{MINILM} takes text input; the data are image",
            "input_check": {"status": "incompatible", "adaptations": [],
                            "reason": f"{MINILM} takes text input; the data are image"},
            "data_ratio": {"source_examples": None, "target_examples": 1797, "examples_per_class_min": 174,
                           "ratio": None, "flags": ["source size unknown"]},
            "best_layer": None, "probe_accuracy": None, "probe_spread": None, "scores": {}, "consensus": None,
            "rank": None, "layer_profile": [], "recommendation": None,
        },
    ]  # fmt: skip
    for position, doc in enumerate(docs):
        store.put_candidate(run.id, position, CandidateResult.from_json(doc))
        for point in doc["layer_profile"]:
            store.put_score(run.id, Score(doc["model"], point["layer"], "probe_accuracy",
                                          point["probe_accuracy"], point["probe_spread"], 0.4))  # fmt: skip
    if finish:
        summary = {
            "ranking": [MOBILENET, LITE0],
            "recommended": {"model": MOBILENET, **mobilenet_rec, "evidence": f"{MOBILENET} ranks first of 2."},
            "caveats": [f"{MOBILENET}: input upsampling from 8x8 to 64x64"],
            "seconds": 48.2,
        }
        store.finish(run.id, AssessSummary.from_json(summary))
    return run.id


def add_finetune(
    store: RunStore,
    assess_run: str | None,
    *,
    arm_epochs: list[tuple[float, float, float]] = CUT_EPOCHS,
    scratch_epochs: list[tuple[float, float, float]] = SCRATCH_EPOCHS,
    finish: bool = True,
    arm_name: str = CUT_ARM,
    scratch_extra: dict[str, Any] | None = None,
) -> str:
    config = {
        "model": MOBILENET, "strategy": arm_name, "arms": [arm_name, "scratch"], "epochs": 3, "baseline": "scratch",
        "lr": 0.002, "batch_size": 32, "seed": 0, "assess_run": assess_run, "train_examples": 200,
        "val_examples": 360,
    }  # fmt: skip
    run = store.create("finetune", DATA, config, data_hash=DATA_HASH, versions={"torch": "2.14.1"})
    arms = {}
    for arm, rows in ((arm_name, arm_epochs), ("scratch", scratch_epochs)):
        for epoch, (train_loss, val_loss, accuracy) in enumerate(rows, start=1):
            extra = dict(scratch_extra or {}) if arm == "scratch" else {}
            record = EpochRecord(arm, epoch, train_loss, val_loss, accuracy, accuracy - 0.004, 6.1, extra)
            store.put_epoch(run.id, record)
        best = max(range(len(rows)), key=lambda i: rows[i][2])
        arms[arm] = ArmResult(rows[-1][2], rows[best][2], best + 1, seconds=18.3)
    if finish:
        store.finish(run.id, FinetuneSummary.of(arms, arm_name))
    return run.id


@pytest.fixture
def store(zooprobe_home: Path) -> Any:
    with RunStore(zooprobe_home) as runs:
        yield runs


@pytest.fixture
def both_runs(store: RunStore) -> tuple[str, str]:
    assess_id = add_assessment(store)
    return assess_id, add_finetune(store, assess_id)


def test_markdown_has_the_candidate_table_the_comparison_and_the_decision(both_runs: tuple[str, str]) -> None:
    assess_id, finetune_id = both_runs
    code, out = run_cli("report", "--data", DATA, "--format", "md")
    assert code == 0, out
    table = [line for line in out.splitlines() if line.startswith("| ")]
    header = next(line for line in table if line.startswith("| Rank |"))
    assert header == (
        "| Rank | Backbone | Source | Params | Compute | Input check | Data ratio | Probe acc. (± spread)"
        " | knn_accuracy | logme | hscore | leep | Consensus | Strategy | Cut |"
    )  # probe_balanced_accuracy was not scored in this run, so it has no empty column
    first = next(line for line in table if f"| {MOBILENET} |" in line)
    cells = [c.strip() for c in first.strip("|").split("|")]
    assert cells[:8] == [
        "1", MOBILENET, "torchvision", "3.5M", "0.30 GFLOPS @224px",
        "adapted (grayscale replicated to 3 channels; upsampling from 8x8 to 64x64)",
        "1.4e-03, 1,797 ex, min 174/class", "0.947 ± 0.010 @ features.14",
    ]  # fmt: skip
    assert cells[8:] == ["0.962", "1.284", "38.710", "-1.937", "0.710", CUT_ARM, "features.14"]
    lite0 = next(line for line in table if f"| {LITE0} |" in line)
    assert "0.39 GMACs @224px" in lite0 and "| 2 |" in lite0
    skipped = next(line for line in table if f"| {MINILM} |" in line)
    assert "skipped: " in skipped and "takes text input" in skipped
    # The reference layout, every arm side by side, then the gain.
    assert (
        f"| Epoch | {CUT_ARM}: Validation Loss | {CUT_ARM}: Accuracy | scratch: Validation Loss | scratch: Accuracy |"
        in out
    )
    assert "| 3 | 0.4550 | 0.8930 | 1.4480 | 0.5710 |" in out
    assert "gain over scratch (final validation accuracy): +0.3220" in out
    assert f"Start from {MOBILENET} with strategy '{CUT_ARM}', expected accuracy 0.947 ± 0.010;" in out
    assert "fine-tuning reached 0.893 (+0.322 over scratch)" in out
    assert f"{MOBILENET}: input upsampling from 8x8 to 64x64" in out  # the assessment's caveat
    assert "## Layer profile: #1 " + MOBILENET in out and "| features.14 (best) | 0.67 | 0.947 | 0.010 |" in out
    # predicted 0.947 ± 0.010, achieved 0.893: outside twice the uncertainty, said in both places
    assert f"| {MOBILENET} | {CUT_ARM} | 0.947 ± 0.010 | 0.710 | 0.893 ({CUT_ARM}) | -0.054 | no |" in out
    assert "outside twice the uncertainty (fine-tuning had 200 training examples and 3 epochs;" in out
    assert assess_id in out and finetune_id in out and "in progress" not in out.lower()


def test_json_carries_the_stored_numbers(both_runs: tuple[str, str]) -> None:
    assess_id, finetune_id = both_runs
    code, out = run_cli("report", assess_id, finetune_id, "--format", "json")
    assert code == 0, out
    doc = json.loads(out)
    assert [run["id"] for run in doc["runs"]] == [assess_id, finetune_id]
    assert all(run["status"] == "done" and not run["in_progress"] for run in doc["runs"])
    assert doc["metrics"] == ["knn_accuracy", "logme", "hscore", "leep"]
    top = doc["candidates"][0]
    assert (top["model"], top["rank"], top["best_layer"], top["probe_accuracy"]) == (MOBILENET, 1, "features.14", 0.947)
    assert (top["macs"], top["macs_unit"], top["params"]) == (0.3, "GFLOPS", 3_504_872)
    assert top["scores"]["logme"] == 1.284 and top["finetune_arg"] == CUT_ARM
    tune = doc["finetunes"][0]
    assert [arm["name"] for arm in tune["arms"]] == [CUT_ARM, "scratch"]
    assert [e["val_accuracy"] for e in tune["arms"][1]["epochs"]] == [0.231, 0.402, 0.571]
    assert tune["gain_over_scratch"] == pytest.approx(0.893 - 0.571)
    (check,) = doc["predictions"]
    assert (check["predicted"], check["achieved"], check["within"]) == (0.947, 0.893, False)
    assert [p["model"] for p in doc["profiles"]] == [MOBILENET, LITE0]
    (decision,) = doc["decisions"]
    assert decision["model"] == MOBILENET and decision["achieved_accuracy"] == 0.893


def test_another_strategys_result_neither_confirms_nor_refutes_the_recommendation(store: RunStore) -> None:
    assess_id = add_assessment(store)  # recommends CUT_ARM for MobileNetV2, expecting 0.947
    finetune_id = add_finetune(store, assess_id, arm_name="head")
    code, out = run_cli("report", assess_id, finetune_id, "--format", "json")
    assert code == 0, out
    doc = json.loads(out)
    assert doc["predictions"] == []
    (decision,) = doc["decisions"]
    assert decision["finetune_arg"] == CUT_ARM and decision["achieved_accuracy"] is None
    assert any("with 'head' reached 0.893" in line for line in decision["evidence"])


def test_csv_is_one_table_per_kind_of_row(both_runs: tuple[str, str]) -> None:
    code, out = run_cli("report", "--data", DATA_HASH[:8], "--format", "csv")
    assert code == 0, out
    rows = list(csv.DictReader(io.StringIO(out)))
    by_table: dict[str, list[dict[str, str]]] = {}
    for row in rows:
        by_table.setdefault(row["table"], []).append(row)
    assert set(by_table) == {"candidates", "layers", "epochs", "predictions"}
    top = by_table["candidates"][0]
    assert (top["model"], top["macs"], top["macs_unit"], top["logme"], top["rank"]) == (
        MOBILENET, "0.3", "GFLOPS", "1.284", "1",
    )  # fmt: skip
    assert len(by_table["layers"]) == 12  # the two ranked candidates, six cut points each
    scratch = [r for r in by_table["epochs"] if r["arm"] == "scratch"]
    assert [(r["epoch"], r["val_loss"], r["val_accuracy"]) for r in scratch] == [
        ("1", "2.214", "0.231"), ("2", "1.862", "0.402"), ("3", "1.448", "0.571"),
    ]  # fmt: skip
    assert by_table["predictions"][0]["achieved_accuracy"] == "0.893"


def test_html_is_self_contained_with_decodable_plots(both_runs: tuple[str, str], tmp_path: Path) -> None:
    pytest.importorskip("matplotlib")
    from PIL import Image

    out = tmp_path / "report.html"
    code, said = run_cli("report", "--data", DATA, "--format", "html", "--out", str(out))
    assert code == 0, said
    assert said.strip() == f"report written to {out}"
    page = out.read_text()
    assert not re.search(r"(src|href)=\"(?!data:)", page)  # nothing to fetch
    images = re.findall(r'src="data:image/png;base64,([^"]+)"', page)
    assert len(images) == 3  # learning curves, predicted vs achieved, layer profiles
    for encoded in images:
        with Image.open(io.BytesIO(base64.b64decode(encoded))) as image:
            assert image.format == "PNG" and image.width > 300 and image.height > 200
    assert "0.947 ± 0.010 @ features.14" in page and "+0.3220" in page
    assert not list(tmp_path.glob(".report.html.*"))  # the temporary file was renamed into place


def test_html_without_out_goes_to_the_home_reports_folder(both_runs: tuple[str, str], zooprobe_home: Path) -> None:
    pytest.importorskip("matplotlib")
    _, finetune_id = both_runs
    code, said = run_cli("report", "--latest", "--format", "html")
    assert code == 0, said
    # --latest is the fine-tuning run, which names the report; it brings in its assessment
    target = zooprobe_home / "reports" / f"{finetune_id}.html"
    assert said.strip() == f"report written to {target}"
    page = target.read_text()
    assert f"zooprobe report: {finetune_id}" in page and both_runs[0] in page


def test_a_run_in_progress_is_reported_as_such(store: RunStore) -> None:
    assess_id = add_assessment(store)
    finetune_id = add_finetune(store, assess_id, arm_epochs=CUT_EPOCHS[:2], scratch_epochs=SCRATCH_EPOCHS[:1],
                               finish=False)  # fmt: skip
    code, out = run_cli("report", finetune_id, "--format", "md")
    assert code == 0, out
    assert f"In progress: {finetune_id}" in out
    assert f"| {finetune_id} | finetune | {DATA} | in progress |" in out
    assert f"in progress, epochs written so far: {CUT_ARM} 2 of 3, scratch 1 of 3" in out
    assert "| 2 | 0.6120 | 0.8460 | - | - |" in out
    # at the last epoch both arms reached (0.712 - 0.231), not the strategy's epoch 2 against scratch's 1
    assert "gain over scratch (validation accuracy at epoch 1, the last both arms reached): +0.4810" in out
    code, out = run_cli("report", finetune_id, "--format", "json")
    runs = {run["id"]: run for run in json.loads(out)["runs"]}
    assert runs[finetune_id]["in_progress"] is True and runs[assess_id]["in_progress"] is False


def test_an_assessment_in_progress_shows_pending_candidates(store: RunStore) -> None:
    assess_id = add_assessment(store, finish=False)
    code, out = run_cli("report", assess_id)
    assert code == 0, out
    assert f"In progress: {assess_id}" in out
    assert f"No recommendation yet for {DATA}." in out
    assert "still in progress: its numbers are partial (last written " in out
    # a killed process leaves the run 'running' as well: the caveat says how to finish it
    assert f"s ago; if its process is gone, finish it with zooprobe assess --resume {assess_id})" in out


def test_negative_transfer_is_a_caveat(store: RunStore) -> None:
    # Tiny 8x8 digits are unlike ImageNet: here fine-tuning ends below scratch.
    below = [(1.9, 1.7, 0.41), (1.2, 1.1, 0.63), (0.9, 0.95, 0.70)]
    assess_id = add_assessment(store)
    add_finetune(store, assess_id, arm_epochs=below, scratch_epochs=[(1.5, 1.2, 0.6), (0.8, 0.7, 0.78),
                                                                     (0.5, 0.5, 0.86)])  # fmt: skip
    code, out = run_cli("report", "--data", DATA)
    assert code == 0, out
    assert f"negative transfer: '{CUT_ARM}' on {MOBILENET} ended 0.160 below training from scratch" in out
    assert "(-0.160 over scratch)" in out


def test_a_report_never_changes_a_run(both_runs: tuple[str, str], store: RunStore, zooprobe_home: Path) -> None:
    def snapshot() -> list[Any]:
        return [
            (run.to_dict(), store.candidates(run.id), store.scores(run.id), store.epochs(run.id))
            for run in store.list()
        ]

    before = snapshot()
    for fmt in ("md", "csv", "json", "html"):
        code, out = run_cli("report", "--data", DATA, "--format", fmt, "--out", str(zooprobe_home / f"r.{fmt}"))
        assert code == 0, out
    assert snapshot() == before


def test_an_empty_store_says_so_and_creates_nothing(zooprobe_home: Path) -> None:
    code, out = run_cli("report", "--latest")
    assert code == 2
    assert "no runs to report" in out and "zooprobe assess --data DATA" in out and "Traceback" not in out
    assert not (zooprobe_home / "runs.sqlite3").exists()
    RunStore(zooprobe_home).close()  # a store that exists but holds no run
    code, out = run_cli("report")
    assert code == 2 and "no runs to report in" in out


def test_unknown_run_and_unknown_data_exit_2(both_runs: tuple[str, str]) -> None:
    assess_id, finetune_id = both_runs
    code, out = run_cli("report", "assess-20990101-000000-nope00")
    assert code == 2
    assert out.strip() == (
        f"Error: unknown run 'assess-20990101-000000-nope00'; recent runs: {finetune_id}, {assess_id}"
    )
    code, out = run_cli("report", "--data", "sklearn:iris")
    assert code == 2 and f"no runs on data 'sklearn:iris' (runs exist on: {DATA})" in out
    code, out = run_cli("report", assess_id, "--latest")
    assert code == 2 and "choose the runs one way" in out
    code, out = run_cli("report", "--format", "pdf")
    assert code == 2 and "'pdf' is not one of 'md', 'html', 'csv', 'json'" in out


def test_an_unwritable_out_is_one_line_and_changes_nothing(both_runs: tuple[str, str], tmp_path: Path) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("mine")
    code, out = run_cli("report", "--latest", "--format", "json", "--out", str(blocker / "report.json"))
    assert code == 2 and "Traceback" not in out and len(out.strip().splitlines()) == 1
    assert str(blocker) in out and blocker.read_text() == "mine"


def test_written_reports_get_ordinary_permissions_and_keep_an_existing_files(tmp_path: Path) -> None:
    from zooprobe.reports import write_atomic

    mask = os.umask(0o022)
    os.umask(mask)
    fresh = tmp_path / "fresh.md"
    write_atomic(fresh, "new")
    assert stat.S_IMODE(fresh.stat().st_mode) == 0o666 & ~mask
    shared = tmp_path / "shared.md"
    shared.write_text("old")
    shared.chmod(0o664)
    write_atomic(shared, "new")
    assert stat.S_IMODE(shared.stat().st_mode) == 0o664 and shared.read_text() == "new"


# --- the HTML report in a real browser ---------------------------------------------------------------


def _chromium() -> str | None:
    return next((path for name in ("chromium", "chromium-browser") if (path := shutil.which(name))), None)


def test_html_renders_in_headless_chromium_without_network(both_runs: tuple[str, str], tmp_path: Path) -> None:
    pytest.importorskip("matplotlib")
    sync_api = pytest.importorskip("playwright.sync_api")
    executable = _chromium()
    if executable is None:
        pytest.skip("no chromium binary on PATH (Debian: apt-get install -y chromium; .ci/run installs it)")
    out = tmp_path / "report.html"
    code, said = run_cli("report", "--data", DATA, "--format", "html", "--out", str(out))
    assert code == 0, said
    url = out.as_uri()
    requests: list[str] = []
    errors: list[str] = []
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=executable, args=["--no-sandbox"])
        try:
            page = browser.new_page()
            page.on("console", lambda message: errors.append(message.text) if message.type == "error" else None)
            page.on("pageerror", lambda error: errors.append(str(error)))

            def route(request_route: Any) -> None:
                requests.append(request_route.request.url)
                if request_route.request.url == url:
                    request_route.continue_()
                else:
                    request_route.abort()

            page.route("**/*", route)
            page.goto(url, wait_until="load")
            decoded = page.eval_on_selector_all(
                "img", "imgs => imgs.map(i => [i.complete, i.naturalWidth, i.naturalHeight])"
            )
            headings = page.eval_on_selector_all("h2", "hs => hs.map(h => h.textContent)")
            first_row = page.eval_on_selector_all(
                "table:first-of-type tbody tr:first-child td", "tds => tds.map(t => t.textContent)"
            )
            body_height = page.evaluate("document.body.scrollHeight")
        finally:
            browser.close()
    assert requests == [url], requests  # data: images are not requests; anything else would be
    assert errors == []
    assert len(decoded) == 3 and all(ok and width > 300 and height > 200 for ok, width, height in decoded), decoded
    assert headings[:2] == ["Decision", "Candidates"] and "Layer profiles of the top candidates" in headings
    assert first_row[:2] == ["1", MOBILENET] and body_height > 1000


def test_text_reports_import_no_plotting_or_framework(both_runs: tuple[str, str], zooprobe_home: Path) -> None:
    code = (
        "import sys; from zooprobe.cli import cli\n"
        "try:\n    cli(['report', '--data', 'sklearn:digits', '--format', 'md'])\n"
        "except SystemExit:\n    pass\n"
        "print(sorted(m for m in ('matplotlib', 'torch', 'timm', 'keras', 'numpy') if m in sys.modules))"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert "| Rank | Backbone |" in done.stdout
    assert done.stdout.strip().splitlines()[-1] == "[]"


def test_markdown_shows_html_in_user_strings_as_text(store: RunStore) -> None:
    # a data path (and a caveat quoting it) holding markup: a Markdown viewer renders raw HTML
    assess_id = add_assessment(store)
    hostile = '<img src=x onerror="alert(1)">&photos'
    store.db.execute("UPDATE runs SET data = ? WHERE id = ?", (hostile, assess_id))
    store.db.commit()
    code, out = run_cli("report", assess_id)
    assert code == 0, out
    assert "<img" not in out and '&lt;img src=x onerror="alert(1)"&gt;&amp;photos' in out
