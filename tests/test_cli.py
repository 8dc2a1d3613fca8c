"""The CLI end to end, on the real synced catalog."""

from __future__ import annotations

import csv
import io
import json
import subprocess
import sys
from pathlib import Path

from click.testing import CliRunner

from zooprobe.cli import cli


def run(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(cli, list(args))
    return result.exit_code, result.output


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
        "heavy = sorted(m for m in ('torch', 'torchvision', 'timm', 'keras', 'tensorflow') if m in sys.modules)\n"
        "assert not heavy, heavy\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert len(proc.stdout.splitlines()) == 4 and "resnet" in proc.stdout.lower()


def test_corrupt_catalog_gives_rebuild_hint(zooprobe_home: Path) -> None:
    zooprobe_home.mkdir(parents=True)
    (zooprobe_home / "catalog.sqlite3").write_bytes(b"garbage" * 500)
    code, out = run("search", "x")
    assert code == 2 and "zooprobe catalog rebuild" in out
