"""A crash-consistency harness, as SQLite tests itself: SIGKILL at random moments, then check and resume.

``catalog sync --force``, ``assess`` and ``finetune`` run as real processes on tiny configurations
(100 digits at 32 px, MobileNetV2, one epoch) and are killed at a random moment. After each kill:
both stores pass ``PRAGMA integrity_check``, search answers, and continuing the work (``--resume``
for a run that exists, the same command otherwise) gives records equal to an uninterrupted run's,
with no temporary file left behind.

The default run (and CI) makes 20 kills, spread over the three commands. More:
``ZOOPROBE_CRASH_KILLS=60``; the moments are drawn from ``ZOOPROBE_CRASH_SEED`` (printed in every
failure); ``ZOOPROBE_CRASH_SYNC_SOURCES`` names the sources ``catalog sync --force`` re-lists
(default ``tfhub``: its write is the same transaction as every source's, without minutes of live
listing).
"""

from __future__ import annotations

import json
import math
import os
import random
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from zooprobe.cli import cli
from zooprobe.runs.store import RunStore

from .conftest import home_with_catalog, write_digits_npz

SRC = Path(__file__).resolve().parents[1] / "src"
MODEL = "torchvision:mobilenet_v2.IMAGENET1K_V1"
KILLS = int(os.environ.get("ZOOPROBE_CRASH_KILLS", "20"))
SEED = int(os.environ.get("ZOOPROBE_CRASH_SEED", str(time.time_ns() % 2**31)))
SYNC_SOURCES = os.environ.get("ZOOPROBE_CRASH_SYNC_SOURCES", "tfhub").split(",")


def invoke(*args: str) -> str:
    result = CliRunner().invoke(cli, list(args))
    assert result.exit_code == 0, (args, result.output, f"seed {SEED}")
    return result.output


@dataclass
class Command:
    """One command the harness kills: its arguments, and what to compare after it completes."""

    name: str
    args: list[str]
    records: Callable[[Path], Any]
    resume: Callable[[Path], list[str] | None] = lambda home: None  # the continuing command, given a killed home
    in_process: bool = True  # the uninterrupted run in this process (no import time), or as a process
    baseline: Any = None
    seconds: float = 0.0


@dataclass
class Tally:
    kills: int = 0
    finished_first: int = 0
    failures: list[str] = field(default_factory=list)


def catalog_records(home: Path) -> Any:
    db = sqlite3.connect(home / "catalog.sqlite3")
    try:
        entries = db.execute("SELECT id, data FROM entries ORDER BY id").fetchall()
        aliases = db.execute("SELECT id, alias, why FROM aliases ORDER BY id, alias").fetchall()
        sources = db.execute("SELECT source, version, entries FROM sources ORDER BY source").fetchall()
    finally:
        db.close()
    return entries, aliases, sources


def _only_run(home: Path, kind: str) -> str | None:
    if not (home / "runs.sqlite3").exists():
        return None
    with RunStore(home) as store:
        runs = store.list(kind=kind)  # type: ignore[arg-type]
    assert len(runs) <= 1, runs
    return runs[0].id if runs else None


def assess_records(home: Path) -> Any:
    run_id = _only_run(home, "assess")
    assert run_id is not None
    with RunStore(home) as store:
        assert store.get(run_id).status == "done"
        scores = sorted((s.model, s.layer, s.metric, s.value, s.spread) for s in store.scores(run_id))
        candidates = [_timeless(c.to_json()) for c in store.candidates(run_id)]
    return scores, candidates


def finetune_records(home: Path) -> Any:
    run_id = _only_run(home, "finetune")
    assert run_id is not None
    with RunStore(home) as store:
        run = store.get(run_id)
        assert run.status == "done"
        epochs = [_timeless(record.to_json()) for record in store.epochs(run_id)]
        summary = _timeless(run.summary or {})
    # checkpoints lie in the run's own folder: their names must agree, not their homes
    summary["checkpoints"] = {arm: Path(path).name for arm, path in summary.get("checkpoints", {}).items()}
    return epochs, summary


def _timeless(document: Any) -> Any:
    """``document`` without what measures time (seconds, rates): the parts a rerun must reproduce."""
    if isinstance(document, dict):
        return {key: _timeless(value) for key, value in document.items() if key not in ("seconds", "created")}
    if isinstance(document, list | tuple):
        return [_timeless(value) for value in document]
    return document


def same(a: Any, b: Any, where: str = "") -> list[str]:
    """Where ``a`` and ``b`` differ, numbers compared to a relative 1e-5."""
    if isinstance(a, dict) and isinstance(b, dict):
        if a.keys() != b.keys():
            return [f"{where}: keys {sorted(a)} != {sorted(b)}"]
        return [d for key in a for d in same(a[key], b[key], f"{where}.{key}")]
    if isinstance(a, list | tuple) and isinstance(b, list | tuple):
        if len(a) != len(b):
            return [f"{where}: {len(a)} items != {len(b)}"]
        return [d for i, (x, y) in enumerate(zip(a, b, strict=True)) for d in same(x, y, f"{where}[{i}]")]
    if isinstance(a, float) and isinstance(b, float):
        close = math.isclose(a, b, rel_tol=1e-5, abs_tol=1e-7) or (math.isnan(a) and math.isnan(b))
        return [] if close else [f"{where}: {a!r} != {b!r}"]
    return [] if a == b else [f"{where}: {a!r} != {b!r}"]


def integrity(home: Path) -> list[str]:
    problems = []
    for name in ("catalog.sqlite3", "runs.sqlite3"):
        if not (home / name).exists():
            continue
        db = sqlite3.connect(home / name)  # a normal open, as zooprobe's: the WAL is read
        try:
            result = [row[0] for row in db.execute("PRAGMA integrity_check")]
        finally:
            db.close()
        if result != ["ok"]:
            problems.append(f"{name}: {result[:3]}")
    return problems


def temporary_files(home: Path) -> list[Path]:
    return sorted([*home.glob("features/.*.tmp.npy"), *home.glob("runs/*/.*.tmp")])


@pytest.fixture
def harness_home(synced_home: Path, torch_home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A home holding a copy of the synced catalog, and the digits dataset beside it; MobileNetV2 offline."""
    monkeypatch.setenv("TORCH_HOME", str(torch_home))
    home = home_with_catalog(synced_home, tmp_path / "template")
    write_digits_npz(tmp_path / "digits.npz", per_class=10)
    return home


def fresh(template: Path, where: Path) -> Path:
    shutil.copytree(template, where)
    return where


def startup_seconds(env: dict[str, str]) -> float:
    """How long a zooprobe process takes to import what it needs: kills before that test nothing."""
    started = time.perf_counter()
    code = "import zooprobe.cli, torch, torchvision, sklearn"
    subprocess.run([sys.executable, "-c", code], env=env, check=True)
    return time.perf_counter() - started


def kill_at(args: list[str], home: Path, moment: float, env: dict[str, str], log: Path) -> bool:
    """Run zooprobe ``args`` in ``home`` as a process and SIGKILL it ``moment`` seconds after its start;
    False when it ended first (successfully: anything else fails the test)."""
    with open(log, "wb") as output:
        command = [sys.executable, "-m", "zooprobe", *args, "--home", str(home)]
        process = subprocess.Popen(command, env=env, stdout=output, stderr=subprocess.STDOUT)
    try:
        process.wait(timeout=moment)  # not a limit: the moment the harness kills it
    except subprocess.TimeoutExpired:
        process.send_signal(signal.SIGKILL)
        process.wait()
        return True
    assert process.returncode == 0, log.read_text()[-2000:]
    return False


@pytest.mark.slow
def test_kill_9_at_random_moments_leaves_both_stores_intact_and_resumes_to_the_same_records(
    harness_home: Path, tmp_path: Path
) -> None:
    data = str(tmp_path / "digits.npz")
    small = ["--resolution", "32", "--data", data]
    commands = [
        Command(
            "catalog sync --force",
            ["catalog", "sync", "--force", *(f"--source={name}" for name in SYNC_SOURCES)],
            catalog_records,
            in_process=False,  # no torch to import: the process is quick to run once
        ),
        Command(
            "assess",
            ["assess", "--models", MODEL, *small, "--metrics", "logme,probe_accuracy", "--folds", "2"],
            assess_records,
            lambda home: ["assess", "--resume", run] if (run := _only_run(home, "assess")) else None,
        ),
        Command(
            "finetune",
            ["finetune", "--model", MODEL, *small, "--strategy", "head", "--epochs", "1", "--batch-size", "32"],
            finetune_records,
            lambda home: ["finetune", "--resume", run] if (run := _only_run(home, "finetune")) else None,
        ),
    ]
    env = {**os.environ, "PYTHONPATH": str(SRC)}
    startup = startup_seconds(env)
    for command in commands:  # uninterrupted: the records every resumed run must equal
        home = fresh(harness_home, tmp_path / f"baseline-{command.name.split()[0]}")
        started = time.perf_counter()
        if command.in_process:
            invoke(*command.args, "--home", str(home))
        else:
            subprocess.run([sys.executable, "-m", "zooprobe", *command.args, "--home", str(home)], env=env, check=True)
        command.seconds = time.perf_counter() - started
        command.baseline = command.records(home)

    draw = random.Random(SEED)
    tally = Tally()
    for number in range(KILLS):
        command = commands[number % len(commands)]
        home = fresh(harness_home, tmp_path / f"kill-{number}")
        # a moment between most of the imports and about the work's end
        low, high = (0.7 * startup, startup + command.seconds) if command.in_process else (0.0, command.seconds)
        for _ in range(4):  # a run that ends before its moment is counted, and run again with an earlier one
            moment = draw.uniform(low, high)
            shutil.rmtree(home)
            fresh(harness_home, home)
            started = time.perf_counter()
            if kill_at(command.args, home, moment, env, tmp_path / f"kill-{number}.log"):
                tally.kills += 1
                break
            tally.finished_first += 1
            high = 0.95 * (time.perf_counter() - started)
            low = min(low, high / 2)
        context = f"kill {number} of {command.name} at {moment:.1f}s (seed {SEED})"
        problems = integrity(home)
        invoke("search", "mobilenet", "--limit", "3", "--home", str(home))
        resume = command.resume(home) or command.args
        invoke(*resume, "--home", str(home))
        problems += integrity(home)
        problems += [f"left behind: {path}" for path in temporary_files(home)]
        problems += same(command.records(home), command.baseline)
        if problems:
            tally.failures.append(f"{context}: {'; '.join(problems[:5])}")
        shutil.rmtree(home)
    print(
        f"\ncrash harness (seed {SEED}): {tally.kills} kills, {tally.finished_first} runs ended before their moment"
        f" and were run again; {len(tally.failures)} failures; baseline seconds: "
        + ", ".join(f"{c.name} {c.seconds:.1f}" for c in commands)
        + f", startup {startup:.1f}"
    )
    assert not tally.failures, json.dumps(tally.failures, indent=2)
