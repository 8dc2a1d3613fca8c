"""The CLI end to end, on the real synced catalog."""

from __future__ import annotations

import csv
import io
import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from zooprobe.cli import cli


def run(*args: str) -> tuple[int, str]:
    """The exit code, and stdout (what a pipe gets) on success, or stdout and stderr on failure."""
    result = CliRunner().invoke(cli, list(args))
    return result.exit_code, result.stdout if result.exit_code == 0 else result.output


def test_search_filters_sort_and_json(synced: Path) -> None:
    code, out = run(
        "search",
        "resnet",
        "--source",
        "timm",
        "--min-top1",
        "80",
        "--max-params",
        "30M",
        "--sort=-top1",
        "--limit",
        "5",
        "--format",
        "json",
        "--fields",
        "id,params,top1",
    )
    assert code == 0, out
    rows = json.loads(out)
    assert len(rows) == 5
    assert all(r["id"].startswith("timm:") and "resnet" in r["id"] for r in rows)
    assert all(r["params"] <= 30e6 and r["top1"] >= 80 for r in rows)
    assert [r["top1"] for r in rows] == sorted((r["top1"] for r in rows), reverse=True)


def test_search_csv_and_table(synced: Path) -> None:
    code, out = run(
        "search",
        "--source",
        "torchvision",
        "--arch",
        "mobilenet_v2",
        "--format",
        "csv",
        "--fields",
        "id,params,compute,compute_unit",
    )
    assert code == 0, out
    rows = list(csv.DictReader(io.StringIO(out)))
    assert {r["id"] for r in rows} == {
        "torchvision:mobilenet_v2.IMAGENET1K_V1",
        "torchvision:mobilenet_v2.IMAGENET1K_V2",
    }
    assert {r["compute_unit"] for r in rows} == {"GFLOPS"}
    code, out = run("search", "--source", "keras", "--arch", "MobileNetV2")
    assert code == 0
    header, line = out.splitlines()
    assert header.split()[:2] == ["ID", "PARAMS"]
    assert line.split()[:2] == ["keras:MobileNetV2", "3.5M"]


def test_search_pretrain_dataset_and_resolution(synced: Path) -> None:
    code, out = run(
        "search",
        "--pretrain-dataset",
        "laion-2b",
        "--resolution",
        "224",
        "--limit",
        "200",
        "--format",
        "json",
        "--fields",
        "id,pretraining,resolution",
    )
    rows = json.loads(out)
    assert rows and all("laion-2b" in r["pretraining"].split(">") and r["resolution"] == 224 for r in rows)


def test_search_in22k_tags_count_as_imagenet_21k(synced: Path) -> None:
    code, out = run("search", "convnext", "--pretrain-dataset", "imagenet-21k", "--sort=-top1", "--format", "json")
    ids = [r["id"] for r in json.loads(out)]
    assert "timm:convnext_base.fb_in22k_ft_in1k" in ids


def test_show_json_and_table(synced: Path) -> None:
    code, out = run("show", "torchvision:resnet50.IMAGENET1K_V2", "--format", "json")
    data = json.loads(out)
    assert data["params"] == 25_557_032
    assert data["compute"] == {"value": 4.089, "unit": "GFLOPS", "resolution": 224}
    assert data["metrics"][0] == {"dataset": "imagenet-1k", "metric": "top1", "value": 80.858, "resolution": None}
    code, out = run("show", "keras:ResNet50")
    assert code == 0 and "where the numbers come from" in out


def test_unknown_id_suggests_and_exits_2(synced: Path) -> None:
    code, out = run("show", "timm:resnet50.a1_in1")
    assert code == 2
    assert "unknown catalog id 'timm:resnet50.a1_in1'; did you mean 'timm:resnet50.a1_in1k'" in out
    assert "Traceback" not in out and len(out.strip().splitlines()) == 1


def test_bad_inputs_exit_2(synced: Path) -> None:
    code, out = run("search", "--fields", "id,parms")
    assert code == 2 and "unknown field 'parms'; did you mean 'params'" in out
    code, out = run("search", "--sort", "top")
    assert code == 2 and "unknown sort field 'top'" in out
    code, out = run("search", "--max-params", "lots")
    assert code == 2 and "cannot read 'lots' as a count" in out
    code, out = run("search", "--source", "timmm")
    assert code == 2 and "did you mean 'timm'" in out


def test_stats(synced: Path) -> None:
    code, out = run("catalog", "stats", "--json")
    data = json.loads(out)
    assert {s["source"] for s in data["sources"]} == {"timm", "torchvision", "keras", "tfhub", "kaggle"}
    assert data["total"] == sum(s["entries"] for s in data["sources"])


def test_first_search_syncs_empty_catalog(zooprobe_home: Path, monkeypatch) -> None:
    monkeypatch.setenv("ZOOPROBE_PLUGINS", "keras")
    result = CliRunner().invoke(cli, ["search", "MobileNetV2", "--fields", "id"])
    assert result.exit_code == 0
    assert "keras:MobileNetV2" in result.stdout
    assert "syncing the offline sources once" in result.stderr


def test_search_path_imports_no_framework(synced: Path) -> None:
    code = (
        "import sys\n"
        "from zooprobe.cli import cli\n"
        "try:\n    cli(['search', 'resnet', '--limit', '3'])\nexcept SystemExit as e:\n    assert e.code == 0, e.code\n"
        "heavy = ('torch', 'torchvision', 'timm', 'keras', 'tensorflow', 'pandas')\n"
        "heavy = sorted(m for m in heavy if m in sys.modules)\n"
        "assert not heavy, heavy\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert len(proc.stdout.splitlines()) == 4 and "resnet" in proc.stdout.lower()


def test_public_api_names_resolve_without_loading_frameworks() -> None:
    code = (
        "import sys, zooprobe; assert all(hasattr(zooprobe, n) for n in zooprobe.__all__);"
        " names = {'assess', 'finetune', 'Backbone', 'Metric', 'Compute', 'search', 'run', 'runs'};"
        " assert names <= set(dir(zooprobe));"
        " heavy = ('torch', 'timm', 'tensorflow', 'keras', 'transformers', 'pandas');"
        " print(sorted(m for m in heavy if m in sys.modules))"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "[]"  # resolving zooprobe.Backbone imports its module, not torch


def test_an_id_of_a_source_never_synced_says_how_to_sync_it(zooprobe_home: Path) -> None:
    from zooprobe.catalog.schema import Entry
    from zooprobe.catalog.store import Catalog

    with Catalog(zooprobe_home) as catalog:  # a catalog whose first sync named another source only
        catalog.replace_source("keras", "3", [Entry(source="keras", name="Tiny", architecture="tiny")], origin="test")
    code, out = run("show", "torchvision:resnet18.IMAGENET1K_V1")
    assert code == 2 and "zooprobe catalog sync --source torchvision" in out


def test_corrupt_catalog_gives_rebuild_hint(zooprobe_home: Path) -> None:
    zooprobe_home.mkdir(parents=True)
    (zooprobe_home / "catalog.sqlite3").write_bytes(b"garbage" * 500)
    code, out = run("search", "x")
    assert code == 2 and "run 'zooprobe catalog rebuild' (" in out
    elsewhere = zooprobe_home.parent / "elsewhere"
    shutil.copytree(zooprobe_home, elsewhere)
    code, out = run("search", "x", "--home", str(elsewhere))
    assert code == 2 and f"run 'zooprobe catalog rebuild --home {elsewhere}'" in out


def strict_json(text: str) -> object:
    """``json.loads`` that fails on NaN and Infinity, which are not JSON."""
    return json.loads(text, parse_constant=lambda name: pytest.fail(f"{name} in the JSON output"))


def one_line_error(out: str) -> str:
    assert "Traceback" not in out and len(out.strip().splitlines()) == 1, out
    return out


def test_id_without_source_suggests_ids(synced: Path) -> None:
    code, out = run("show", "resnet50")
    assert code == 2
    assert "'resnet50' is not a catalog id; ids look like 'source:name'" in one_line_error(out)
    assert "'timm:resnet50." in out and "'torchvision:resnet50.IMAGENET1K_V2'" in out


def test_unmeasured_accuracy_is_missing_not_nan(synced: Path) -> None:
    code, out = run("search", "vgg16", "--source", "torchvision", "--format", "json", "--fields", "id,top1")
    assert code == 0
    rows = {r["id"]: r["top1"] for r in strict_json(out)}  # type: ignore[attr-defined]
    assert rows["torchvision:vgg16.IMAGENET1K_FEATURES"] is None and rows["torchvision:vgg16.IMAGENET1K_V1"] > 70
    code, out = run("show", "torchvision:vgg16.IMAGENET1K_FEATURES", "--format", "json")
    data = strict_json(out)
    assert data["metrics"] == [] and "metrics" not in data["provenance"]  # type: ignore[index]
    code, out = run("search", "vgg16.IMAGENET1K_FEATURES", "--fields", "id,top1")
    assert out.splitlines()[1].split() == ["torchvision:vgg16.IMAGENET1K_FEATURES", "-"]


def test_rebuild_keeps_every_backup(zooprobe_home: Path, monkeypatch) -> None:
    monkeypatch.setenv("ZOOPROBE_PLUGINS", "keras")
    zooprobe_home.mkdir(parents=True)
    (zooprobe_home / "catalog.sqlite3").write_bytes(b"the corrupt original")
    code, out = run("catalog", "rebuild")
    assert code == 0 and f"moved the old catalog to {zooprobe_home / 'catalog.sqlite3.bak'}\n" in out
    code, out = run("catalog", "rebuild")
    assert code == 0
    assert f"moved the old catalog to {zooprobe_home / 'catalog.sqlite3.bak.2'} (1 earlier backup kept" in out
    assert (zooprobe_home / "catalog.sqlite3.bak").read_bytes() == b"the corrupt original"
    assert (zooprobe_home / "catalog.sqlite3.bak.2").stat().st_size > 0
    code, out = run("search", "MobileNetV2", "--fields", "id")
    assert code == 0 and "keras:MobileNetV2" in out


def test_filter_value_absent_from_the_catalog_is_refused(synced: Path) -> None:
    for option, value, expected in (
        ("--task", "image-clasification", "unknown task 'image-clasification'; did you mean 'image-classification'"),
        ("--framework", "pytorh", "unknown framework 'pytorh'; did you mean 'pytorch'"),
        ("--pretrain-dataset", "imagenet21k", "unknown pretraining dataset 'imagenet21k'; did you mean 'imagenet-21k'"),
    ):
        code, out = run("search", option, value)
        assert code == 2 and expected in one_line_error(out)
        assert "(valid: " in out
    code, out = run("search", "--framework", "pytorch", "--task", "image-classification", "--limit", "1")
    assert code == 0 and len(out.splitlines()) == 2


def test_compute_sorts_in_one_unit(synced: Path) -> None:
    code, out = run("search", "--sort=-compute")
    assert code == 2
    expected = "cannot sort by compute: the matches report it in GFLOPS (torchvision) and GMACs (timm)"
    assert expected in one_line_error(out)
    args = ("--source", "torchvision", "--format", "json", "--fields", "id,compute,compute_unit", "--limit", "200")
    code, out = run("search", "--sort=-compute", *args)
    rows = json.loads(out)
    assert code == 0 and {r["compute_unit"] for r in rows} == {"GFLOPS"}
    assert [r["compute"] for r in rows] == sorted((r["compute"] for r in rows), reverse=True)
    result = CliRunner().invoke(cli, ["search", "--sort=gmacs", *args])
    assert result.exit_code == 0
    assert "report compute in GFLOPS, not GMACs, so --sort=gmacs lists them last" in result.stderr
    result = CliRunner().invoke(cli, ["search", "--sort=gmacs", "--source", "timm"])
    assert result.exit_code == 0 and "not GMACs" not in result.stderr


def test_sync_task_without_a_hub_source_is_refused(zooprobe_home: Path) -> None:
    code, out = run("catalog", "sync", "--task", "image-classification")
    assert code == 2
    assert "(sources that take them: hf)" in one_line_error(out)
    assert "zooprobe catalog sync --source hf --task image-classification" in out
    assert not (zooprobe_home / "catalog.sqlite3").exists()  # refused before anything was synced


def test_empty_field_list_is_refused(synced: Path) -> None:
    for value in (",", "", " , "):
        code, out = run("search", "--fields", value)
        assert code == 2 and "names no field; give one or more of id, source" in one_line_error(out)


def test_plugins_lists_metrics_and_takes_format(zooprobe_home: Path) -> None:
    from zooprobe.metrics import names

    code, out = run("plugins")
    assert code == 0 and "metrics (zooprobe assess --metrics NAME,NAME):" in out
    listed = [line.split()[0] for line in out.split("metrics (zooprobe assess")[1].splitlines()[1:]]
    assert listed == names()
    code, out = run("plugins", "--format", "json")
    plugins = {p["name"]: p for p in json.loads(out)}
    assert [m["name"] for m in plugins["metrics"]["metrics"]] == names()
    assert plugins["metrics"]["metrics"][0].keys() == {"name", "input", "description", "reference"}
    assert plugins["timm"]["metrics"] == []
    assert run("plugins", "--json")[1] == out  # the old flag stays, as a hidden alias
    code, help_text = run("plugins", "--help")
    assert "--format [text|json]" in help_text and "--json" not in help_text
    code, out = run("plugins", "--json", "--format", "text")
    assert code == 2 and "contradict" in one_line_error(out)


def test_stats_format_json_and_home_help(synced: Path) -> None:
    code, out = run("catalog", "stats", "--format", "json")
    assert code == 0 and json.loads(out)["total"] > 0
    code, out = run("catalog", "stats", "--format", "text")
    assert code == 0 and out.splitlines()[-1].startswith("total")
    code, help_text = run("catalog", "stats", "--help")
    assert "--format [text|json]" in help_text and "--json" not in help_text
    assert "Catalog directory" not in help_text and "the catalog, runs, reports" in " ".join(help_text.split())
