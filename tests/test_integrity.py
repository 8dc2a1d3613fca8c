"""Damaged stores, stale temporary files, damaged feature files and run locks (issue #19, items 5 and 7)."""

from __future__ import annotations

import hashlib
import json
import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from zooprobe.cli import cli
from zooprobe.errors import StoreError
from zooprobe.runs.lock import RunLockedError
from zooprobe.runs.records import CandidateResult, EpochRecord
from zooprobe.runs.store import RunStore, Score

from .conftest import home_with_catalog, write_digits_npz

SRC = Path(__file__).resolve().parents[1] / "src"


def cli_run(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(cli, list(args))
    return result.exit_code, result.output


def damage_pages(path: Path, table: str, *, every: bool = True) -> list[int]:
    """Overwrite the leaf pages of ``table`` (all of them, or the middle one) with garbage; returns them."""
    db = sqlite3.connect(path)
    try:
        size = db.execute("PRAGMA page_size").fetchone()[0]
        pages = [p for (p,) in db.execute("SELECT pageno FROM dbstat WHERE name = ? AND pagetype = 'leaf'", (table,))]
    finally:
        db.close()
    assert pages and 1 not in pages, pages
    chosen = pages if every else [pages[len(pages) // 2]]
    with open(path, "r+b") as handle:
        for page in chosen:
            handle.seek((page - 1) * size)
            handle.write(bytes((i * 7 + 13) % 256 for i in range(size)))
    return chosen


def fill_runs(home: Path, runs: int = 4, models: int = 30) -> list[str]:
    """A run store with ``runs`` assessments (``models`` candidates, 3 scores each) and a fine-tuning run
    (3 epochs, the checksums of its 2 kept checkpoints)."""
    ids = []
    with RunStore(home) as store:
        for number in range(runs):
            run = store.create("assess", "sklearn:digits", {"models": [f"m{i}" for i in range(models)]})
            for i in range(models):
                store.put_candidate(run.id, i, CandidateResult(model=f"toy:m{i}", status="done", probe_accuracy=0.5))
                for metric in ("logme", "knn", "probe"):
                    store.put_score(run.id, Score(f"toy:m{i}", "pool", metric, i / 100 + number, 0.01, 1.0))
            store.finish(run.id)
            ids.append(run.id)
        run = store.create("finetune", "sklearn:digits", {"model": "toy:m0"})
        for epoch in range(1, 4):
            store.put_epoch(run.id, EpochRecord("full", epoch, 1.0, 1.0, 0.5, 0.5, 1.0))
            store.put_checksum(run.id, "full", epoch, hashlib.sha256(bytes([epoch])).hexdigest())
        store.finish(run.id)
        ids.append(run.id)
    return ids


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


# --- damaged stores ---------------------------------------------------------------------------------


def test_a_damaged_catalog_is_one_line_naming_rebuild_at_every_command(synced: Path, tmp_path: Path) -> None:
    home = home_with_catalog(synced, tmp_path / "home")
    damage_pages(home / "catalog.sqlite3", "entries")
    for args in (
        ["search", "resnet"],
        ["search", "--sort=-top1", "--max-params", "10M"],
        ["show", "timm:resnet50.a1_in1k"],
        ["catalog", "sync", "--force", "--source", "keras"],
        ["assess", "--data", "sklearn:digits", "--query", "mobilenet", "--top", "2"],
    ):
        code, out = cli_run(*args, "--home", str(home))
        assert code == 2, (args, out)
        *progress, last = out.strip().splitlines()  # a sync's progress lines come first
        assert "Traceback" not in out and all(line.startswith("syncing") for line in progress), (args, out)
        assert "is damaged" in last and f"zooprobe catalog rebuild --home {home}" in last, (args, out)


def test_a_damaged_run_store_is_one_line_naming_runs_check(tmp_path: Path) -> None:
    home = tmp_path / "home"
    ids = fill_runs(home)
    damage_pages(home / "runs.sqlite3", "runs")
    with pytest.raises(StoreError, match="runs check"):
        RunStore(home).list()
    for args in (
        ["report", "--latest"],
        ["report", ids[0]],
        ["assess", "--resume", ids[0]],
        ["finetune", "--resume", ids[-1]],
    ):
        code, out = cli_run(*args, "--home", str(home))
        assert code == 2, (args, out)
        assert "Traceback" not in out and len(out.strip().splitlines()) == 1, (args, out)
        assert f"run store {home / 'runs.sqlite3'} is damaged" in out, (args, out)
        assert f"zooprobe runs check --home {home}" in out, (args, out)


def test_runs_check_copies_what_is_readable_and_never_touches_the_original(tmp_path: Path) -> None:
    home = tmp_path / "home"
    ids = fill_runs(home)
    with RunStore(home) as store:
        scores_before = {run_id: store.scores(run_id) for run_id in ids}
        checksums_before = store.checksums(ids[-1], "full")
    assert sorted(checksums_before.values()) == [2, 3]
    code, out = cli_run("runs", "check", "--home", str(home))
    assert code == 0 and "intact" in out and "5 runs" in out, out
    (page,) = damage_pages(home / "runs.sqlite3", "scores", every=False)
    before = digest(home / "runs.sqlite3")

    code, out = cli_run("runs", "check", "--home", str(home), "--format", "json")
    assert code == 1, out
    report = json.loads(out)
    assert digest(home / "runs.sqlite3") == before  # never written
    assert report["intact"] is False and report["problems"] != ["ok"]
    tables = {t["table"]: t for t in report["tables"]}
    assert tables["runs"]["readable"] == 5 and tables["epochs"]["readable"] == 3
    assert tables["checkpoints"]["readable"] == 2
    assert tables["candidates"]["readable"] == 4 * 30
    total = sum(len(s) for s in scores_before.values())
    assert 0 < tables["scores"]["readable"] < total and tables["scores"]["unreadable"] > 0, (page, tables)
    copy = Path(report["copy"])
    assert copy.parent == home and copy.name.startswith("runs.recovered-") and copy.suffix == ".sqlite3"

    db = sqlite3.connect(copy)
    assert db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    db.close()
    switched = tmp_path / "switched"  # the copy, switched to as the output says: a working store
    switched.mkdir()
    copy.rename(switched / "runs.sqlite3")
    with RunStore(switched) as store:
        assert [r.id for r in store.list()] == [r.id for r in reversed([*map(store.get, ids)])]
        for run_id in ids[:-1]:
            kept = store.scores(run_id)
            assert {(s.model, s.metric, s.value) for s in kept} <= {
                (s.model, s.metric, s.value) for s in scores_before[run_id]
            }
        assert len(store.epochs(ids[-1])) == 3
        assert store.checksums(ids[-1], "full") == checksums_before  # checkpoints still verified by hash

    code, out = cli_run("runs", "check", "--home", str(home))  # text: the counts and how to switch
    assert code == 1
    assert "damaged" in out and "copied what is readable to" in out and "to switch to the copy" in out
    assert f"mv {home / 'runs.sqlite3'} {home}/runs.damaged-" in out
    code, out = cli_run("runs", "check", "--home", str(home))  # within the same second: a name of its own
    assert code == 1 and len(list(home.glob("runs.recovered-*.sqlite3"))) == 2


def test_runs_check_copies_a_store_from_before_checkpoint_checksums(tmp_path: Path) -> None:
    home = tmp_path / "home"
    ids = fill_runs(home, runs=2)
    db = sqlite3.connect(home / "runs.sqlite3")
    db.executescript("DROP TABLE checkpoints; PRAGMA user_version = 2;")  # as migration 2 left it
    db.close()
    code, out = cli_run("runs", "check", "--home", str(home))
    assert code == 0 and "0 checkpoints" in out, out
    damage_pages(home / "runs.sqlite3", "scores", every=False)
    code, out = cli_run("runs", "check", "--home", str(home), "--format", "json")
    assert code == 1, out
    report = json.loads(out)
    assert {t["table"]: t["readable"] for t in report["tables"]}["checkpoints"] == 0
    switched = tmp_path / "switched"
    switched.mkdir()
    Path(report["copy"]).rename(switched / "runs.sqlite3")
    with RunStore(switched) as store:
        assert len(store.epochs(ids[-1])) == 3 and store.checksums(ids[-1], "full") == {}


def test_runs_check_without_a_store_says_so(tmp_path: Path) -> None:
    code, out = cli_run("runs", "check", "--home", str(tmp_path / "nothing"))
    assert code == 2 and "no run store at" in out


# --- stale temporary files and damaged feature files -------------------------------------------------


def dead_pid() -> int:
    """The pid of a process that has exited."""
    process = subprocess.Popen([sys.executable, "-c", "pass"])
    process.wait()
    return process.pid


def test_a_new_run_removes_the_temporary_files_of_dead_writers_only(tmp_path: Path) -> None:
    home = tmp_path / "home"
    features, checkpoints = home / "features", home / "runs" / "finetune-x"
    features.mkdir(parents=True)
    checkpoints.mkdir(parents=True)
    gone, alive = dead_pid(), os.getppid()
    stale = [features / f".abc.{gone}.tmp.npy", checkpoints / f".full-epoch1.safetensors.{gone}.tmp"]
    live = [features / f".def.{alive}.tmp.npy", checkpoints / f".full-epoch2.safetensors.{alive}.tmp"]
    other = [features / "abc.npy", features / f".note.{gone}.txt"]
    for path in stale + live + other:
        path.write_bytes(b"x")
    with RunStore(home) as store:
        store.create("assess", "sklearn:digits", {})
    assert not any(path.exists() for path in stale)
    assert all(path.exists() for path in live + other)


def test_a_new_run_removes_the_extraction_locks_of_dead_holders_only(tmp_path: Path) -> None:
    from zooprobe.runs.lock import process_start

    home = tmp_path / "home"
    features = home / "features"
    features.mkdir(parents=True)
    parent = os.getppid()
    dead = {
        "killed.lock": f"{dead_pid()} -\n",  # a kill -9 during extraction
        "reused.lock": f"{parent} 1\n",  # the pid now belongs to another process (it started later)
    }
    alive = {"live.lock": f"{parent} {process_start(parent) or '-'}\n", "mine.lock": f"{os.getpid()} -\n"}
    for name, content in {**dead, **alive}.items():
        (features / name).write_text(content)
    with RunStore(home) as store:
        store.create("assess", "sklearn:digits", {})
    assert sorted(path.name for path in features.iterdir()) == sorted(alive)


def test_a_damaged_feature_file_is_computed_again(tmp_path: Path) -> None:
    from zooprobe.backbones.features import extract_features
    from zooprobe.data.datasets import read_dataset

    from .toy_backbone import toy_cnn, toy_entry

    dataset = read_dataset(str(write_digits_npz(tmp_path / "digits.npz", per_class=4)))
    backbone = toy_cnn(toy_entry("damaged-cache"))
    layer = backbone.cut_points[-1]
    cache = tmp_path / "features"
    first = np.array(extract_features(backbone, dataset, [layer], cache_dir=cache, progress=False)[layer])
    (path,) = cache.glob("*.npy")
    good = path.read_bytes()
    shorter = tmp_path / "shorter.npy"
    np.save(shorter, first[:-1])  # a whole .npy of the wrong shape
    for damaged in (good[: len(good) // 2], b"", os.urandom(len(good)), good + b"\0" * 4, shorter.read_bytes()):
        path.write_bytes(damaged)
        again = extract_features(backbone, dataset, [layer], cache_dir=cache, progress=False)[layer]
        np.testing.assert_allclose(again, first, rtol=1e-6)
        assert path.read_bytes() == good
    assert [p.name for p in cache.iterdir()] == [path.name]  # no temporary file left


# --- run locks ----------------------------------------------------------------------------------------


HOLDER = textwrap.dedent(
    """
    import sys, time
    from pathlib import Path
    from zooprobe.runs.store import RunStore
    store = RunStore(sys.argv[1])
    config = {"models": ["torchvision:mobilenet_v2.IMAGENET1K_V1"], "query": None, "top": None, "metrics": None,
              "layers": "auto", "seed": 0, "folds": 3, "budget": None, "resolution": 32}
    run = store.create("assess", "sklearn:digits", config) if sys.argv[2] == "new" else store.reopen(sys.argv[2])
    print(run.id, flush=True)
    while sys.argv[4] == "wait" and not Path(sys.argv[3]).exists():
        time.sleep(0.02)
    """
)


def holder(home: Path, run: str, release: Path, *, wait: bool = True) -> tuple[subprocess.Popen[str], str]:
    """A real process holding (creating, or resuming) a run until ``release`` exists."""
    release.unlink(missing_ok=True)
    env = {**os.environ, "PYTHONPATH": str(SRC)}
    process = subprocess.Popen(
        [sys.executable, "-c", HOLDER, str(home), run, str(release), "wait" if wait else "exit"],
        env=env,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert process.stdout is not None
    return process, process.stdout.readline().strip()


def test_a_live_run_is_refused_to_a_second_process_and_freed_when_its_holder_ends(synced: Path, tmp_path: Path) -> None:
    home = home_with_catalog(synced, tmp_path / "home")
    release = tmp_path / "release"
    first, run_id = holder(home, "new", release)
    try:
        with RunStore(home) as store, pytest.raises(RunLockedError, match=f"pid {first.pid}"):
            store.reopen(run_id)
        code, out = cli_run("assess", "--resume", run_id, "--home", str(home))
        assert code == 2 and len(out.strip().splitlines()) == 1, out
        assert f"run {run_id} is in use by another zooprobe process (pid {first.pid}" in out
        assert f"zooprobe assess --resume {run_id}" in out
        release.write_text("")  # the holder ends without finishing the run: its exit releases the lock
        first.wait()
        with RunStore(home) as store:
            assert store.get(run_id).status == "running"
            assert store.db.execute("SELECT count(*) FROM run_locks").fetchone()[0] == 0  # released, not left
            store.reopen(run_id)  # free again
        # a second real process resumes it, and is killed: the lock of a dead pid is broken
        second, _ = holder(home, run_id, release)
        with RunStore(home) as store, pytest.raises(RunLockedError, match=f"pid {second.pid}"):
            store.reopen(run_id)
        second.send_signal(signal.SIGKILL)
        second.wait()
        with RunStore(home) as store:
            store.reopen(run_id)
            store.finish(run_id)
    finally:
        release.write_text("")
        first.wait()


def test_the_holder_may_take_its_own_lock_again_and_finishing_releases_it(tmp_path: Path) -> None:
    home = tmp_path / "home"
    with RunStore(home) as store:
        run = store.create("assess", "sklearn:digits", {})
        store.reopen(run.id)  # the same process resuming its own run
        held = store.db.execute("SELECT pid FROM run_locks WHERE run_id = ?", (run.id,)).fetchall()
        assert held == [(os.getpid(),)]
        with RunStore(home) as reader:  # another store of this process, only reading, closes...
            reader.list()
        held = store.db.execute("SELECT pid FROM run_locks WHERE run_id = ?", (run.id,)).fetchall()
        assert held == [(os.getpid(),)]  # ...and the writer's lock stays
        store.finish(run.id)
        assert store.db.execute("SELECT count(*) FROM run_locks").fetchone()[0] == 0


def _stopped_outside_a_transaction(process: subprocess.Popen[bytes], store: Path) -> None:
    """SIGSTOP ``process`` at a moment it holds no SQLite write lock on ``store`` (alive, and not blocking)."""
    while True:
        os.kill(process.pid, signal.SIGSTOP)
        db = sqlite3.connect(store, timeout=0.0, isolation_level=None)  # not a limit: never wait for a lock
        try:
            db.execute("BEGIN IMMEDIATE")
            db.execute("ROLLBACK")
            return
        except sqlite3.OperationalError:
            os.kill(process.pid, signal.SIGCONT)
        finally:
            db.close()


def test_a_second_identical_assess_is_refused_while_the_first_runs(
    synced: Path, torch_home: Path, tmp_path: Path
) -> None:
    """Two identical `zooprobe assess` started seconds apart: the second would join the first's live run."""
    home = home_with_catalog(synced, tmp_path / "home")
    data = str(write_digits_npz(tmp_path / "digits.npz", per_class=10))
    args = ["assess", "--data", data, "--models", "torchvision:mobilenet_v2.IMAGENET1K_V1", "--resolution", "32"]
    args += ["--home", str(home)]
    env = {**os.environ, "PYTHONPATH": str(SRC), "TORCH_HOME": str(torch_home)}
    first = subprocess.Popen([sys.executable, "-m", "zooprobe", *args], env=env, stderr=subprocess.DEVNULL)
    try:
        while True:  # until the first process has started its run (no deadline: a loaded machine is slow)
            assert first.poll() is None
            if (home / "runs.sqlite3").exists():
                with RunStore(home) as store:
                    runs = store.list(kind="assess")
                if runs:
                    break
            time.sleep(0.05)
        _stopped_outside_a_transaction(first, home / "runs.sqlite3")  # alive, and no further: no race
        with RunStore(home) as store:
            assert store.get(runs[0].id).status == "running"
        code, out = cli_run(*args)
        assert code == 2, out
        assert f"run {runs[0].id} is in use by another zooprobe process (pid {first.pid}" in out.splitlines()[-1]
        with RunStore(home) as store:
            assert len(store.list()) == 1  # no second run either
    finally:
        first.kill()  # SIGKILL ends a stopped process too
        first.wait()
