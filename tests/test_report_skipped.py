"""Files dropped with on_error='skip' are recorded in the run and listed in every report format."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import numpy as np

import zooprobe
from zooprobe.reports import build_report, render
from zooprobe.runs.skipped_files import LISTED, SkippedFiles, skipped_of
from zooprobe.runs.store import RunStore

from .test_toy_framework import (
    TOY_ID,
    toy_home,  # noqa: F401  (a fixture: the toy framework's catalog)
)


def _folder_with_bad_files(root: Path) -> list[Path]:
    """Two classes of 8 small PNGs each, plus three files that are not images (one named with HTML)."""
    from PIL import Image

    rng = np.random.default_rng(0)
    for label in ("cat", "dog"):
        (root / label).mkdir(parents=True)
        for i in range(8):
            pixels = rng.integers(0, 255, (16, 16, 3), dtype=np.uint8) // (2 if label == "cat" else 1)
            Image.fromarray(pixels).save(root / label / f"{i}.png")
    bad = [root / "cat" / "broken.png", root / "dog" / "empty.png", root / "dog" / "<b>x.png"]
    bad[0].write_bytes(b"\x89PNG\r\n\x1a\n not really")
    bad[1].write_bytes(b"")
    bad[2].write_bytes(b"GIF89a?")
    return bad


def test_assess_and_its_reports_list_the_skipped_files(toy_home: Path, tmp_path: Path) -> None:  # noqa: F811
    bad = _folder_with_bad_files(tmp_path / "photos")
    assessment = zooprobe.assess(
        str(tmp_path / "photos"), [TOY_ID], folds=2, home=toy_home, progress=False, on_error="skip"
    )
    with RunStore(toy_home) as store:
        run = store.get(assessment.run_id)
        record = skipped_of(run.config)
        report = build_report(store, [run.id])
    assert record.count == 3 and sorted(path for path, _ in record.files) == sorted(map(str, bad))
    assert all(reason and "\n" not in reason for _, reason in record.files)

    markdown = render(report, "md")
    assert "## Skipped files" in markdown and str(bad[0]) in markdown
    assert "<b>" not in markdown and "&lt;b&gt;x.png" in markdown  # user paths show HTML as text
    html = render(report, "html")
    assert "<h2>Skipped files</h2>" in html and str(bad[1]) in html and "&lt;b&gt;x.png" in html
    (listed,) = json.loads(render(report, "json"))["runs"]
    assert listed["skipped_files"]["count"] == 3 and len(listed["skipped_files"]["files"]) == 3
    rows = [row for row in csv.DictReader(io.StringIO(render(report, "csv"))) if row["table"] == "skipped_files"]
    assert sorted(row["file"] for row in rows) == sorted(map(str, bad)) and all(row["reason"] for row in rows)


def test_long_lists_are_capped_with_a_count() -> None:
    record = SkippedFiles.of((f"/data/{i}.png", "not an image") for i in range(LISTED + 7))
    assert record.count == LISTED + 7 and len(record.files) == LISTED and record.unlisted == 7
    assert SkippedFiles.from_json(json.loads(json.dumps(record.to_json()))) == record


def test_runs_that_dropped_nothing_report_as_before(toy_home: Path) -> None:  # noqa: F811
    assessment = zooprobe.assess("sklearn:digits", [TOY_ID], folds=2, home=toy_home, progress=False)
    with RunStore(toy_home) as store:
        run = store.get(assessment.run_id)
        report = build_report(store, [run.id])
    assert "skipped_files" not in run.config
    assert "Skipped files" not in render(report, "md")
    assert "skipped_files" not in json.loads(render(report, "json"))["runs"][0]
    assert "file" not in next(csv.reader(io.StringIO(render(report, "csv"))))


def test_finetune_records_the_skipped_files(toy_home: Path, tmp_path: Path) -> None:  # noqa: F811
    bad = _folder_with_bad_files(tmp_path / "photos")
    result = zooprobe.finetune(
        str(tmp_path / "photos"), TOY_ID, "head", epochs=1, batch_size=8, on_error="skip", home=toy_home, progress=False
    )
    with RunStore(toy_home) as store:
        run = store.get(result.run_id)
        markdown = render(build_report(store, [run.id]), "md")
    assert skipped_of(run.config).count == 3
    assert str(bad[0]) in markdown.split("## Skipped files", 1)[1]
