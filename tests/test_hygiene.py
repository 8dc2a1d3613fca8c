"""Duplicate and conflicting examples: refused or dropped when read, never on both sides of a split."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from tests.toy_backbone import toy_cnn, toy_entry
from zooprobe.cli import cli
from zooprobe.data.datasets import Dataset, read_dataset, stratified_split
from zooprobe.data.hygiene import DuplicateExamplesError, content_groups
from zooprobe.evaluator.assess import assess
from zooprobe.evaluator.score_inputs import stratified_folds
from zooprobe.evaluator.scores import knn_accuracy, linear_probe


def _images(folder: Path, count: int, seed: int = 0) -> list[str]:
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    names = []
    for i in range(count):
        Image.fromarray((rng.random((8, 8, 3)) * 255).astype(np.uint8)).save(folder / f"{i}.png")
        names.append(f"{i}.png")
    return names


def _manifest(path: Path, rows: list[tuple[str, str]], header: tuple[str, str] = ("path", "label")) -> str:
    with open(path, "w", newline="") as handle:
        csv.writer(handle).writerows([header, *rows])
    return str(path)


def test_repeated_rows_are_an_error_with_the_count_and_the_first_examples(tmp_path: Path) -> None:
    names = _images(tmp_path, 6)
    rows = [(name, "ab"[i % 2]) for i, name in enumerate(names)]
    manifest = _manifest(tmp_path / "m.csv", rows * 20)
    with pytest.raises(DuplicateExamplesError) as raised:
        read_dataset(manifest)
    message = str(raised.value)
    assert "has 114 duplicate example(s)" in message and "\n" not in message
    assert f"'{tmp_path / '0.png'}' listed 20 times" in message and "--on-duplicates drop" in message
    for policy in ("drop", "keep-first"):
        kept = read_dataset(manifest, on_duplicates=policy)
        assert kept.paths == tuple(str(tmp_path / name) for name in names)
        assert len(kept.skipped) == 114 and kept.skipped[0][1] == f"duplicate of '{tmp_path / '0.png'}'"


def test_a_copy_under_another_name_is_a_duplicate(tmp_path: Path) -> None:
    _images(tmp_path / "cat", 3)
    (tmp_path / "dog").mkdir()
    (tmp_path / "dog" / "d0.png").write_bytes((tmp_path / "cat" / "0.png").read_bytes())
    Image.fromarray(np.full((8, 8, 3), 7, np.uint8)).save(tmp_path / "dog" / "d1.png")
    Image.fromarray(np.full((8, 8, 3), 9, np.uint8)).save(tmp_path / "dog" / "d2.png")
    with pytest.raises(
        DuplicateExamplesError, match=r"1 content\(s\) under two or more labels .*labelled 'cat', 'dog'"
    ):
        read_dataset(str(tmp_path))
    dropped = read_dataset(str(tmp_path), on_duplicates="drop")  # which label is right is unknown: both go
    assert len(dropped) == 4 and all(not p.endswith(("cat/0.png", "dog/d0.png")) for p in dropped.paths or ())
    first = read_dataset(str(tmp_path), on_duplicates="keep-first")
    assert len(first) == 5 and str(tmp_path / "cat" / "0.png") in (first.paths or ())


def test_one_file_under_two_labels_is_an_error(tmp_path: Path) -> None:
    names = _images(tmp_path, 6)
    rows = [(name, "ab"[i % 2]) for i, name in enumerate(names)] + [("2.png", "b")]
    manifest = _manifest(tmp_path / "m.csv", rows)
    with pytest.raises(DuplicateExamplesError, match=rf"'{tmp_path / '2.png'}' labelled 'a', 'b'"):
        read_dataset(manifest)
    assert len(read_dataset(manifest, on_duplicates="drop", on_error="skip")) == 5
    first = read_dataset(manifest, on_duplicates="keep-first")
    assert len(first) == 6 and first.classes[first.labels[2]] == "a"


def test_duplicate_texts_and_arrays_are_found_too(tmp_path: Path) -> None:
    texts = _manifest(tmp_path / "t.csv", [("hello", "a"), ("world", "b"), ("hello", "a"), ("x", "a"), ("y", "b")])
    with pytest.raises(DuplicateExamplesError, match="1 duplicate example"):
        read_dataset(_retitle(texts))
    x = np.arange(6 * 4 * 4, dtype=np.uint8).reshape(6, 4, 4)
    x[3] = x[0]
    np.savez(tmp_path / "d.npz", x=x, y=np.array([0, 1, 0, 0, 1, 1]))
    with pytest.raises(DuplicateExamplesError, match=r"'.*d\.npz\[0\]' = '.*d\.npz\[3\]'"):
        read_dataset(str(tmp_path / "d.npz"))
    assert len(read_dataset(str(tmp_path / "d.npz"), on_duplicates="drop")) == 5


def _retitle(manifest: str) -> str:
    path = Path(manifest)
    path.write_text(path.read_text().replace("path,label", "text,label", 1))
    return manifest


@pytest.mark.parametrize("missing", ["NaN", "nan", " NAN ", ""])
def test_nan_and_empty_labels_are_errors_not_classes(tmp_path: Path, missing: str) -> None:
    names = _images(tmp_path, 5)
    manifest = _manifest(
        tmp_path / "m.csv", [(name, "ab"[i % 2]) for i, name in enumerate(names[:4])] + [("4.png", missing)]
    )
    with pytest.raises(Exception, match="missing label"):
        read_dataset(manifest)
    skipped = read_dataset(manifest, on_error="skip")
    assert skipped.classes == ("a", "b") and len(skipped.skipped) == 1


def test_bad_policy_is_a_one_line_error() -> None:
    with pytest.raises(Exception, match="on_duplicates .*'skip'.*drop, keep-first, error"):
        read_dataset("sklearn:digits", on_duplicates="skip")  # type: ignore[arg-type]


def test_digits_has_no_exact_duplicates_and_still_loads() -> None:
    digits = read_dataset("sklearn:digits")
    assert len(digits) == 1797 and content_groups(digits) is None


def _with_copies(copies: int, count: int = 40, seed: int = 0) -> Dataset:
    rng = np.random.default_rng(seed)
    images = (rng.random((count, 8, 8, 1)) * 255).astype(np.uint8)
    labels = rng.integers(0, 2, count)
    arrays = tuple(image for image in images for _ in range(copies))
    y = np.repeat(labels, copies).astype(np.int64)
    return Dataset("copies", "image", y, ("a", "b"), arrays=arrays, shapes=tuple((8, 8, 1) for _ in arrays))


def test_splits_and_folds_keep_every_copy_on_one_side() -> None:
    plain = _with_copies(1)
    # no duplicates: the same split as dealing each class's examples (nothing changes for clean data)
    train, val = stratified_split(plain, 0.25, seed=3)
    assert len(val) == 10 and len(np.intersect1d(train, val)) == 0
    copies = _with_copies(5)
    groups = content_groups(copies)
    assert groups is not None and len(np.unique(groups)) == 40
    train, val = stratified_split(copies, 0.25, seed=3)
    assert len(train) + len(val) == 200 and not set(groups[train]) & set(groups[val])
    fold_of = stratified_folds(copies.labels, 5, 0, groups)
    assert all(len(set(fold_of[groups == g])) == 1 for g in np.unique(groups))
    np.testing.assert_array_equal(
        stratified_folds(plain.labels, 5, 0, np.arange(40)), stratified_folds(plain.labels, 5, 0)
    )


def test_grouped_probe_and_knn_stay_at_chance_on_copies() -> None:
    rng = np.random.default_rng(0)
    features = rng.normal(size=(32, 64))  # wide enough to fit any labelling of 32 points
    labels = rng.integers(0, 2, 32)
    copied_f, copied_y, groups = np.repeat(features, 20, axis=0), np.repeat(labels, 20), np.repeat(np.arange(32), 20)
    leaked = linear_probe(copied_f, copied_y).accuracy
    grouped = linear_probe(copied_f, copied_y, groups=groups).accuracy
    assert leaked > 0.95 and grouped < 0.75
    assert knn_accuracy(copied_f, copied_y) > 0.95 and knn_accuracy(copied_f, copied_y, groups=groups) < 0.75


def test_assess_scores_copies_in_a_python_dataset_as_one_example(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ZOOPROBE_PLUGINS", "metrics")  # no catalog sync: the candidate comes with its loader
    entry = toy_entry("cnn")
    scores = {}
    for copies in (1, 10):
        result = assess(
            _with_copies(copies, count=32),
            [entry],
            loader=toy_cnn,
            home=tmp_path / f"home{copies}",
            progress=False,
            metrics=["probe_accuracy", "logme", "knn_accuracy"],
            layers="pre_logits",
        )
        scores[copies] = result.candidates[0]["scores"]
    # labels at chance: without grouping the copies took the probe and kNN to 1.0 and LogME from -0.8 to 8
    assert scores[10]["probe_accuracy"] < 0.8 and scores[10]["knn_accuracy"] < 0.8
    assert scores[10]["logme"] == pytest.approx(scores[1]["logme"])


def test_cli_refuses_duplicates_with_exit_2_and_takes_the_option(synced: Path, tmp_path: Path) -> None:
    names = _images(tmp_path, 4)
    manifest = _manifest(tmp_path / "m.csv", [(name, "ab"[i % 2]) for i, name in enumerate(names)] * 3)
    runner = CliRunner()
    # assess checks the candidate ids against the catalog, then reads the data: the duplicates stop it there
    assess = ["assess", "--models", "torchvision:mobilenet_v2.IMAGENET1K_V1", "--home", str(synced)]
    result = runner.invoke(cli, [*assess, "--data", manifest])
    assert result.exit_code == 2 and "8 duplicate example(s)" in result.output, result.output
    assert len(result.output.strip().splitlines()) == 1
    for command in (assess, ["finetune", "--model", "torchvision:x", "--strategy", "head"]):
        bad = runner.invoke(cli, [*command, "--data", manifest, "--on-duplicates", "skip"])
        assert bad.exit_code == 2 and "'drop', 'keep-first', 'error'" in bad.output
