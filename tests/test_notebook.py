"""The notebook user's API: the catalog, runs and reports as typed DataFrames with Jupyter's rich display.

The frames are checked against what the CLI and the JSON report say for the same catalog and runs; the
runs are real (MobileNetV2's ImageNet weights on 150 digits at 32 px); examples/quickstart.ipynb runs
headless in a Jupyter kernel.
"""

from __future__ import annotations

import csv
import dataclasses
import io
import json
import math
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

import zooprobe
from zooprobe.catalog.query import QuerySyntaxError
from zooprobe.catalog.schema import Entry
from zooprobe.cli import cli
from zooprobe.errors import InvalidChoiceError, ZooprobeError
from zooprobe.reports import build_report, open_store_readonly, render
from zooprobe.reports.model import Decision
from zooprobe.reports.writers import render_csv, render_markdown

from .conftest import home_with_catalog, write_digits_npz

MOBILENET = "torchvision:mobilenet_v2.IMAGENET1K_V1"
NOTEBOOK = Path(__file__).parent.parent / "examples" / "quickstart.ipynb"
# README "Output fields", in order
DOCUMENTED_FIELDS = (
    "id source architecture family tasks modality framework params params_no_head compute compute_unit top1 top5"
    " resolution feature_dim num_classes pretraining pretrain_examples weights_license file_size_bytes handle"
).split()


def _na(value: Any) -> Any:
    """A frame cell as the JSON value it stands for (``<NA>`` is null)."""
    import pandas as pd

    if isinstance(value, list):
        return value
    return None if pd.isna(value) else value


def _same(frame_value: Any, json_value: Any) -> bool:
    value = _na(frame_value)
    if isinstance(json_value, float) and value is not None:
        return math.isclose(float(value), json_value, rel_tol=0, abs_tol=1e-12)
    return bool(value == json_value)


# --- the catalog -----------------------------------------------------------------------------------


def test_search_gives_the_documented_fields_as_typed_columns_with_the_clis_values(synced: Path) -> None:
    found = zooprobe.search("resnet50", min_top1=80, sort="-top1", limit=8)
    assert list(found.columns) == DOCUMENTED_FIELDS and len(found) == 8
    dtypes = {name: str(dtype) for name, dtype in found.dtypes.items()}
    assert {dtypes[n] for n in ("params", "params_no_head", "resolution", "feature_dim", "pretrain_examples")} == {
        "Int64"
    }
    assert dtypes["compute"] == dtypes["top1"] == "Float64" and dtypes["compute_unit"] == dtypes["id"] == "string"
    assert all(isinstance(stages, list) for stages in found["pretraining"]) and found["top1"].is_monotonic_decreasing

    args = ["search", "resnet50", "--min-top1", "80", "--sort=-top1", "--limit", "8", "--format", "json"]
    printed = json.loads(CliRunner().invoke(cli, [*args, "--fields", ",".join(DOCUMENTED_FIELDS)]).stdout)
    for row, cli_row in zip(found.to_dict("records"), printed, strict=True):
        for name in DOCUMENTED_FIELDS:
            if name == "pretraining":
                assert ">".join(row[name]) == cli_row[name]
            elif name == "tasks":
                assert " ".join(row[name]) == cli_row[name]
            else:
                assert _same(row[name], cli_row[name]), (name, row[name], cli_row[name])


def test_filters_take_the_clis_text_or_typed_values(synced: Path) -> None:
    as_text = zooprobe.search(source="torchvision", max_params="10M", sort="-top1,params", fields="id,params,top1")
    typed = zooprobe.search(
        source="torchvision", max_params=10e6, sort=["-top1", "params"], fields=["id", "params", "top1"]
    )
    assert as_text.equals(typed) and list(typed.columns) == ["id", "params", "top1"]
    assert len(typed) == 20 and (typed["params"] <= 10_000_000).all()
    assert len(zooprobe.search(source="torchvision", max_params="10M", limit=None)) > 20


@pytest.mark.parametrize(
    ("filters", "error", "message"),
    [
        ({"min_topp1": 80}, InvalidChoiceError, "unknown search filter 'min_topp1'; did you mean 'min_top1'"),
        ({"min_params": "lots"}, QuerySyntaxError, "min_params='lots'"),
        (
            {"min_params": [1]},
            QuerySyntaxError,
            "min_params=[1]: expected a number or text; pass e.g. min_params='25M' or 25e6",
        ),
        ({"modality": "smell"}, InvalidChoiceError, "unknown modality 'smell'"),
        ({"sort": "speed"}, QuerySyntaxError, "sort='speed': unknown sort field 'speed'"),
        ({"fields": ["id", "flops"]}, InvalidChoiceError, "unknown field 'flops'"),
        ({"limit": 0}, ZooprobeError, "limit 0 is not a positive whole number"),
    ],
)
def test_bad_search_arguments_are_one_line_errors(
    synced: Path, filters: dict[str, Any], error: type[Exception], message: str
) -> None:
    with pytest.raises(error, match=re.escape(message)) as raised:
        zooprobe.search(**filters)
    assert "\n" not in str(raised.value)


def test_first_search_on_an_empty_catalog_syncs_like_the_clis(
    zooprobe_home: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("ZOOPROBE_PLUGINS", "keras")
    found = zooprobe.search("MobileNetV2", fields=["id"])
    assert "keras:MobileNetV2" in set(found["id"])
    assert "syncing the offline sources once" in capsys.readouterr().err
    zooprobe.search("MobileNetV2")
    assert capsys.readouterr().err == ""  # once


def test_show_returns_the_entry_with_a_one_line_repr(synced: Path) -> None:
    entry = zooprobe.show(MOBILENET)
    assert isinstance(entry, Entry) and entry == Entry.from_dict(entry.to_dict())
    assert repr(entry) == (
        "Entry(id='torchvision:mobilenet_v2.IMAGENET1K_V1', architecture='mobilenet_v2', params=3.5M,"
        " compute=0.301 GFLOPS, top1=71.878, resolution=224, pretraining=imagenet-1k)"
    )
    with pytest.raises(ZooprobeError, match="mobilenet_v2"):
        zooprobe.show("torchvision:mobilenet_v2.IMAGENET1K_V9")


def test_the_catalog_from_python_loads_pandas_but_no_framework(synced: Path) -> None:
    code = (
        "import sys, zooprobe\n"
        "assert 'pandas' not in sys.modules\n"
        "print(len(zooprobe.search('resnet', limit=3)))\n"
        "heavy = ('torch', 'torchvision', 'timm', 'keras', 'tensorflow', 'matplotlib')\n"
        "print(sorted(m for m in heavy if m in sys.modules))"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.split("\n")[:2] == ["3", "[]"]


# --- runs ------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def runs_home(synced_home: Path, torch_home: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """One real assessment and one fine-tuning run (head against scratch) in a home of their own."""
    home = home_with_catalog(synced_home, tmp_path_factory.mktemp("notebook") / "home")
    data = str(write_digits_npz(home / "digits.npz", per_class=15))
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("TORCH_HOME", str(torch_home))
        assessed = zooprobe.assess(
            data, [MOBILENET], resolution=32, folds=2, layers=["features.14", "pre_logits"], home=home, progress=False
        )
        tuned = zooprobe.finetune(
            data,
            MOBILENET,
            "head",
            baseline="scratch",
            epochs=1,
            train_size=50,
            resolution=32,
            home=home,
            progress=False,
        )
    return {"home": home, "assessed": assessed, "tuned": tuned}


def _json_report(home: Path, run_id: str) -> dict[str, Any]:
    with open_store_readonly(home) as store:
        return dict(json.loads(render(build_report(store, [run_id]), "json")))


def test_assess_returns_candidates_and_layers_frames_with_the_json_reports_numbers(runs_home: dict[str, Any]) -> None:
    home, assessed = runs_home["home"], runs_home["assessed"]
    assert isinstance(assessed, zooprobe.AssessRun)
    report = _json_report(home, assessed.run_id)
    frame = assessed.candidates
    metrics = report["metrics"]  # the report's order: its known metrics first, then any other scored
    assert set(metrics) == {"probe_balanced_accuracy", "knn_accuracy", "ncm_accuracy", "logme", "hscore", "nce", "leep"}
    assert list(frame.columns) == [
        *(
            "rank candidate source status skip_reason params compute compute_unit compute_resolution input_check"
        ).split(),
        *("input_adaptations data_ratio target_examples examples_per_class_min data_flags best_layer").split(),
        *("probe_accuracy probe_spread").split(),
        *metrics,
        *"consensus strategy cut finetune_arg expected_accuracy uncertainty".split(),
    ]
    dtypes = {name: str(dtype) for name, dtype in frame.dtypes.items()}
    assert dtypes["rank"] == dtypes["params"] == dtypes["target_examples"] == "Int64"
    assert {dtypes[m] for m in [*metrics, "consensus", "probe_accuracy", "compute"]} == {"Float64"}
    assert dtypes["candidate"] == dtypes["strategy"] == "string" and dtypes["data_flags"] == "object"
    [row] = frame.to_dict("records")
    [stored] = report["candidates"]
    renamed = {
        "candidate": "model",
        "compute": "macs",
        "compute_unit": "macs_unit",
        "compute_resolution": "macs_resolution",
    }
    for column, value in row.items():
        expected = stored["scores"][column] if column in metrics else stored[renamed.get(column, column)]
        assert _same(value, expected), (column, value, expected)
    assert row["rank"] == 1 and row["input_adaptations"] == [
        "grayscale replicated to 3 channels",
        "upsampling from 8x8 to 32x32",
    ]

    layers = assessed.layers
    assert list(layers.columns) == ["candidate", "layer", "depth", "metric", "value", "spread"]
    assert [str(t) for t in layers.dtypes] == ["string", "string", "Float64", "string", "Float64", "Float64"]
    assert set(layers["layer"]) == {"features.14", "pre_logits", "logits"}  # NCE and LEEP read the source head
    assert set(layers["metric"]) == {"probe_accuracy", *metrics}
    [profile] = report["profiles"]
    probe = layers[layers["metric"] == "probe_accuracy"].set_index("layer")
    for point in profile["points"]:
        assert probe.loc[point["layer"], "value"] == point["probe_accuracy"]
        assert probe.loc[point["layer"], "spread"] == point["probe_spread"]
        assert probe.loc[point["layer"], "depth"] == point["depth"]
    assert layers[layers["layer"] == "logits"]["depth"].isna().all()

    recommendation = assessed.recommendation
    [decision] = report["decisions"]
    assert isinstance(recommendation, Decision) and recommendation.model == decision["model"] == MOBILENET
    assert recommendation.finetune_arg == decision["finetune_arg"] == row["finetune_arg"]
    assert recommendation.evidence == decision["evidence"]
    # what zooprobe.assess returned before stays reachable
    assert assessed.recommended is not None and assessed.recommended["model"] == MOBILENET
    assert assessed.summary is assessed.assessment.summary and assessed.resumed is False
    assert assessed.assessment.candidates[0]["model"] == MOBILENET


def test_finetune_returns_the_epochs_frame_and_the_gain_of_the_json_report(runs_home: dict[str, Any]) -> None:
    home, tuned = runs_home["home"], runs_home["tuned"]
    assert isinstance(tuned, zooprobe.FinetuneRun)
    [comparison] = _json_report(home, tuned.run_id)["finetunes"]
    epochs = tuned.epochs
    columns = ["arm", "epoch", "train_loss", "val_loss", "val_accuracy", "val_balanced_accuracy", "seconds", "val_f1"]
    assert list(epochs.columns) == columns
    assert [str(t) for t in epochs.dtypes] == ["string", "Int64", *["Float64"] * 6]
    stored = [
        {name: record[name] if name in record else record["extra"].get(name) for name in columns}
        for arm in comparison["arms"]
        for record in arm["epochs"]
    ]
    assert epochs["val_f1"].isna().all()  # ten classes: no F1 of label 1
    assert [{k: _na(v) for k, v in row.items()} for row in epochs.to_dict("records")] == stored
    assert list(epochs["arm"]) == ["head", "scratch"]
    assert tuned.gain_over_scratch == comparison["gain_over_scratch"] == tuned.summary["gain_over_scratch"]
    assert [r.val_accuracy for r in tuned.arms["head"]] == list(epochs[epochs["arm"] == "head"]["val_accuracy"])


def test_the_epochs_frame_carries_f1_of_label_1_on_a_binary_task(
    synced_home: Path, torch_home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import numpy as np
    from sklearn.datasets import load_digits

    home = home_with_catalog(synced_home, tmp_path / "home")
    digits = load_digits()
    keep = np.flatnonzero(digits.target < 2)[:60]  # zeros and ones: a binary task
    images = (digits.images[keep] * 255 / 16).astype(np.uint8)
    np.savez(tmp_path / "binary.npz", x=images, y=digits.target[keep])
    monkeypatch.setenv("TORCH_HOME", str(torch_home))
    tuned = zooprobe.finetune(
        str(tmp_path / "binary.npz"), MOBILENET, "head", baseline="scratch", epochs=2, resolution=32, home=home,
        progress=False,
    )  # fmt: skip
    epochs = tuned.epochs
    assert str(epochs.dtypes["val_f1"]) == "Float64" and epochs["val_f1"].notna().all()
    recorded = [r.val_f1 for arm in ("head", "scratch") for r in tuned.arms[arm]]
    assert list(epochs["val_f1"]) == recorded and all(0.0 <= f1 <= 1.0 for f1 in recorded)
    assert len(recorded) == 4
    # and the CSV report's epoch rows carry it too
    rows = csv.DictReader(io.StringIO(render_csv(zooprobe.report(tuned.run_id, home=home).report)))
    written = [float(row["val_f1"]) for row in rows if row["table"] == "epochs"]
    assert written == pytest.approx(recorded, abs=1e-6)


def test_a_stored_run_reopens_as_the_same_typed_result(runs_home: dict[str, Any]) -> None:
    import pandas as pd

    home, assessed, tuned = runs_home["home"], runs_home["assessed"], runs_home["tuned"]
    again = zooprobe.run(assessed.run_id, home=home)
    assert isinstance(again, zooprobe.AssessRun) and again.assessment is None
    pd.testing.assert_frame_equal(again.candidates, assessed.candidates)
    pd.testing.assert_frame_equal(again.layers, assessed.layers)
    assert again.recommendation == assessed.recommendation
    with pytest.raises(AttributeError, match="'AssessRun' object has no attribute 'summary'"):
        again.summary  # noqa: B018 - only a returned result carries the call's own record
    tuned_again = zooprobe.run(tuned.run_id, home=home)
    assert isinstance(tuned_again, zooprobe.FinetuneRun)
    pd.testing.assert_frame_equal(tuned_again.epochs, tuned.epochs)
    assert tuned_again.gain_over_scratch == tuned.gain_over_scratch
    with pytest.raises(ZooprobeError, match="unknown run 'assess-nope'"):
        zooprobe.run("assess-nope", home=home)


def test_runs_lists_the_stored_runs(runs_home: dict[str, Any], tmp_path: Path) -> None:
    home, assessed, tuned = runs_home["home"], runs_home["assessed"], runs_home["tuned"]
    listed = zooprobe.runs(home=home)
    assert list(listed.columns) == ["id", "kind", "status", "data", "data_hash", "created", "updated", "error"]
    assert str(listed.dtypes["created"]) == "datetime64[ns, UTC]" and str(listed.dtypes["kind"]) == "string"
    assert list(listed["id"]) == [tuned.run_id, assessed.run_id] and list(listed["status"]) == ["done", "done"]
    assert list(zooprobe.runs(kind="assess", home=home)["id"]) == [assessed.run_id]
    assert zooprobe.runs(home=tmp_path).empty  # no run store: no runs, and none created
    assert not (tmp_path / "runs.sqlite3").exists()


def test_results_display_as_the_html_report_fetching_nothing(runs_home: dict[str, Any]) -> None:
    home, assessed, tuned = runs_home["home"], runs_home["assessed"], runs_home["tuned"]
    page = assessed._repr_html_()
    assert page.startswith('<div class="zooprobe-report"><style>') and page.endswith("</div>")
    assert "<h2>Decision</h2>" in page and "<h2>Candidates</h2>" in page and "Layer profiles" in page
    links = re.findall(r'(?:src|href)="([^"]*)"', page)
    assert links and all(link.startswith("data:image/png;base64,") for link in links)
    style = page.split("<style>")[1].split("</style>")[0]
    rules = [line for line in style.splitlines() if line.strip()]
    assert all(line.startswith(".zooprobe-report") for line in rules)  # the notebook's own page keeps its style
    assert "learning curves" in tuned._repr_html_()
    with open_store_readonly(home) as store:
        rebuilt = dataclasses.replace(build_report(store, [assessed.run_id]), generated=assessed.report.generated)
    assert assessed._repr_markdown_() == render_markdown(rebuilt)
    both = zooprobe.report(assessed.run_id, tuned.run_id, home=home)
    assert "Fine-tuning: " in both._repr_html_() and "Candidates" in both._repr_markdown_()
    assert repr(assessed).startswith(f"<AssessRun {assessed.run_id}: 1 candidate(s), recommends {MOBILENET} with")


# --- the example notebook --------------------------------------------------------------------------


def test_the_example_notebook_is_committed_without_outputs() -> None:
    notebook = json.loads(NOTEBOOK.read_text())
    code = [cell for cell in notebook["cells"] if cell["cell_type"] == "code"]
    assert code and all(cell["outputs"] == [] and cell["execution_count"] is None for cell in code)


def test_the_example_notebook_runs_headless(
    zooprobe_home: Path, torch_home: Path, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    nbformat = pytest.importorskip("nbformat")
    nbclient = pytest.importorskip("nbclient")
    pytest.importorskip("ipykernel")
    monkeypatch.setenv("TORCH_HOME", str(torch_home))  # the kernel inherits the environment
    notebook = nbformat.read(NOTEBOOK, as_version=4)
    # no cell time limit; the kernel's start is given time on a loaded machine
    client = nbclient.NotebookClient(
        notebook,
        timeout=None,
        startup_timeout=600,
        kernel_name="python3",
        resources={"metadata": {"path": str(tmp_path)}},
    )
    client.execute()  # raises CellExecutionError naming the cell that failed
    outputs = [cell["outputs"] for cell in notebook.cells if cell.cell_type == "code"]
    shown = [next((o["data"] for o in out if o.get("output_type") == "execute_result"), {}) for out in outputs]
    found, entry, assessed, candidates = shown[1], shown[2], shown[3], shown[4]
    assert "torchvision:mobilenet_v2.IMAGENET1K_V1" in found["text/html"] and "compute_unit" in found["text/html"]
    assert entry["text/plain"].startswith("Entry(id='torchvision:mobilenet_v2.IMAGENET1K_V1'")
    assert "<h2>Decision</h2>" in assessed["text/html"] and "data:image/png;base64," in assessed["text/html"]
    assert "probe_accuracy" in candidates["text/html"]
    printed = "".join(o.get("text", "") for o in outputs[6]).split("\n")
    [assessed_id] = zooprobe.runs(kind="assess")["id"]
    recommendation = zooprobe.run(assessed_id).recommendation
    assert recommendation is not None and printed[:2] == [recommendation.finetune_arg, *recommendation.evidence[:1]]
    assert "head" in shown[7]["text/html"] and "scratch" in shown[7]["text/html"]  # the epochs
    assert re.fullmatch(r"-?\d\.\d+(e-\d+)?", shown[8]["text/plain"])  # the gain over scratch
