"""The ray executor against the local one: same scores and ranking, a killed worker's unit retried, and
one-line errors (exit 2) for Ray missing or a cluster address that does not answer.

One local Ray cluster (2 CPUs, 127.0.0.1) serves the whole module; starting one takes seconds.
"""

from __future__ import annotations

import functools
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

import zooprobe
from zooprobe.backbones.backbone import Backbone
from zooprobe.catalog.schema import Entry
from zooprobe.cli import cli
from zooprobe.errors import InvalidChoiceError
from zooprobe.evaluator.assess import assess
from zooprobe.executors.base import ExecutorError
from zooprobe.executors.select import open_executor
from zooprobe.finetuning.strategy import SCRATCH
from zooprobe.runs.store import EpochRecord, RunStore

from .conftest import write_digits_npz
from .test_finetune import MODEL, SMALL, weights  # noqa: F401  (a fixture)
from .toy_backbone import toy_cnn, toy_entry

ROOT = Path(__file__).resolve().parent.parent
OPTIONS: dict[str, Any] = {"layers": "2,pre_logits", "folds": 3, "seed": 0, "progress": False}


def seeded_cnn(entry: Entry) -> Backbone:
    """The toy CNN with weights that depend on the entry's name: two candidates that rank apart."""
    return toy_cnn(entry, seed=sum(map(ord, entry.name)))


def first_load_waits(marker: Path, entry: Entry) -> Backbone:
    """The first load of ``b`` writes its process id to ``marker`` and waits to be killed; later loads load."""
    if entry.name == "b" and not marker.exists():
        marker.write_text(str(os.getpid()))
        for _ in range(6000):  # the test kills this process; this loop only bounds a broken test
            time.sleep(0.05)
    return seeded_cnn(entry)


@pytest.fixture(scope="module")
def ray_cluster(request: pytest.FixtureRequest) -> Iterator[None]:
    ray = pytest.importorskip("ray")
    # workers are new processes: they import this worktree's zooprobe and these tests' loaders
    paths = [str(ROOT / "src"), str(ROOT), os.environ.get("PYTHONPATH", "")]
    os.environ["PYTHONPATH"] = os.pathsep.join(p for p in paths if p)
    try:  # and find MobileNetV2's weights where the fine-tuning tests put them (a worker's env is fixed at start)
        os.environ["TORCH_HOME"] = str(request.getfixturevalue("torch_home"))
    except pytest.skip.Exception:
        pass
    ray.init(num_cpus=2, include_dashboard=False, address="local", _node_ip_address="127.0.0.1")
    yield
    ray.shutdown()


@pytest.fixture(scope="module")
def digits(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_digits_npz(tmp_path_factory.mktemp("digits") / "digits.npz", per_class=10)


def stored_scores(home: Path, run_id: str) -> dict[tuple[str, str, str], float | None]:
    with RunStore(home) as runs:
        return {(s.model, s.layer, s.metric): s.value for s in runs.scores(run_id)}


def test_ray_scores_and_ranks_as_the_local_executor(ray_cluster: None, digits: Path, tmp_path: Path) -> None:
    from zooprobe.data.datasets import read_dataset

    entries = [toy_entry("a"), toy_entry("b")]
    local = assess(str(digits), entries, loader=seeded_cnn, home=tmp_path / "local", **OPTIONS)
    expected = stored_scores(tmp_path / "local", local.run_id)
    assert sorted(local.summary["ranking"]) == ["toy:a", "toy:b"]
    # a path each worker reads, and a dataset in memory put once in the object store
    for name, data in (("path", str(digits)), ("memory", read_dataset(str(digits)))):
        remote = assess(data, entries, loader=seeded_cnn, home=tmp_path / name, executor="ray", **OPTIONS)
        assert [c["status"] for c in remote.candidates] == ["done", "done"]
        assert remote.summary["ranking"] == local.summary["ranking"]
        got = stored_scores(tmp_path / name, remote.run_id)
        assert got.keys() == expected.keys() and len(got) >= 2 * 2 * 3
        for key, value in expected.items():
            assert got[key] == pytest.approx(value, abs=1e-6), key


@pytest.mark.slow
def test_a_worker_killed_mid_unit_is_retried_and_the_run_completes(
    ray_cluster: None, digits: Path, tmp_path: Path
) -> None:
    marker = tmp_path / "pid"

    def kill_when_waiting() -> None:
        while not marker.exists() or not marker.read_text():
            time.sleep(0.05)
        os.kill(int(marker.read_text()), signal.SIGKILL)

    killer = threading.Thread(target=kill_when_waiting, daemon=True)
    killer.start()
    loader = functools.partial(first_load_waits, marker)
    result = assess(
        str(digits), [toy_entry("a"), toy_entry("b")], loader=loader, home=tmp_path, executor="ray", **OPTIONS
    )
    killer.join()
    assert int(marker.read_text()) != os.getpid()  # the unit ran in a worker, which was killed
    assert [c["status"] for c in result.candidates] == ["done", "done"]
    assert result.summary["pending"] == [] and result.summary["skipped"] == {}
    scores = stored_scores(tmp_path, result.run_id)
    assert {model for model, _, _ in scores} == {"toy:a", "toy:b", "baseline:raw"}  # and the raw-pixel baseline
    assert all(value is not None for value in scores.values())


def test_ray_missing_is_one_line_naming_the_extra(
    synced: Path, digits: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "ray", None)  # as if not installed
    with pytest.raises(ExecutorError, match=r"pip install 'zooprobe\[ray\]'"):
        open_executor("ray")
    before = len(RunStore(synced).list(kind="assess"))
    args = ["assess", "--data", str(digits), "--models", "torchvision:mobilenet_v2.IMAGENET1K_V1"]
    # chosen by the environment variable, as a cluster's job script would
    result = CliRunner().invoke(cli, [*args, "--home", str(synced)], env={"ZOOPROBE_EXECUTOR": "ray"})
    assert result.exit_code == 2, result.output
    assert "pip install 'zooprobe[ray]'" in result.output and len(result.output.strip().splitlines()) == 1
    assert len(RunStore(synced).list(kind="assess")) == before  # no run was started


def test_an_address_that_does_not_answer_is_one_line_naming_it(synced: Path, digits: Path) -> None:
    pytest.importorskip("ray")
    with socket.socket() as probe:  # a port nothing listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    address = f"127.0.0.1:{port}"
    before = len(RunStore(synced).list(kind="assess"))
    args = ["assess", "--data", str(digits), "--models", "torchvision:mobilenet_v2.IMAGENET1K_V1"]
    result = CliRunner().invoke(cli, [*args, "--executor", "ray", "--ray-address", address, "--home", str(synced)])
    assert result.exit_code == 2, result.output
    assert f"no Ray cluster answers at --ray-address {address}" in result.output
    assert len(result.output.strip().splitlines()) == 1
    assert len(RunStore(synced).list(kind="assess")) == before  # no run was started


def test_an_unknown_executor_names_the_choices(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ZOOPROBE_EXECUTOR", "dask")
    with pytest.raises(InvalidChoiceError, match=r"unknown executor 'dask' \(valid: local, ray\)"):
        open_executor()


def test_the_local_executor_imports_no_ray() -> None:
    code = (
        "import sys\n"
        "from zooprobe.executors.select import open_executor\n"
        "import zooprobe.evaluator.assess, zooprobe.cli.assess, zooprobe.finetuning.finetune, zooprobe.cli.finetune\n"
        "open_executor('local').close()\n"
        "print('ray' in sys.modules)\n"
    )
    env = {**os.environ, "ZOOPROBE_EXECUTOR": "local"}
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "False"


def test_unit_counts_reach_the_progress_lines(ray_cluster: None, digits: Path, tmp_path: Path, capfd: Any) -> None:
    options = {**OPTIONS, "progress": True, "layers": "pre_logits", "metrics": ["knn_accuracy"]}
    assess(str(digits), [toy_entry("a")], loader=seeded_cnn, home=tmp_path, executor="ray", **options)
    err = capfd.readouterr().err
    assert "units 1 done, 0 running, 0 failed" in err and "toy:a: scored 1 cut points" in err


@pytest.mark.slow
def test_a_killed_driver_leaves_a_run_the_local_executor_finishes_recomputing_nothing(
    ray_cluster: None, digits: Path, tmp_path: Path
) -> None:
    import ray

    marker, home = tmp_path / "pid", tmp_path / "home"
    driver = (
        "import functools, sys\n"
        f"sys.path.insert(0, {str(ROOT)!r})\n"
        "from tests.test_ray_executor import OPTIONS, first_load_waits\n"
        "from tests.toy_backbone import toy_entry\n"
        "from zooprobe.evaluator.assess import assess\n"
        f"loader = functools.partial(first_load_waits, __import__('pathlib').Path({str(marker)!r}))\n"
        f"assess({str(digits)!r}, [toy_entry('a'), toy_entry('b')], loader=loader, home={str(home)!r},"
        f" executor='ray', ray_address={ray.get_runtime_context().gcs_address!r}, **OPTIONS)\n"
    )
    process = subprocess.Popen([sys.executable, "-c", driver])

    def recorded() -> dict[str, str]:
        if not (home / "runs.sqlite3").exists():
            return {}
        with RunStore(home) as runs:
            return {c.model: c.status for run in runs.list(kind="assess") for c in runs.candidates(run.id)}

    while not (marker.exists() and recorded().get("toy:a") == "done"):  # a recorded, b on its worker
        assert process.poll() is None, "the driver ended before it could be killed"
        time.sleep(0.1)
    process.kill()
    process.wait()
    with RunStore(home) as runs:
        (run,) = runs.list(kind="assess")
        before = {(s.model, s.layer, s.metric): s for s in runs.scores(run.id)}
    assert run.status != "done" and {model for model, _, _ in before} == {"toy:a"}
    loaded: list[str] = []

    def counting(entry: Entry) -> Backbone:
        loaded.append(entry.name)
        return seeded_cnn(entry)

    result = assess(str(digits), [toy_entry("a"), toy_entry("b")], loader=counting, home=home, **OPTIONS)
    assert result.resumed and result.run_id == run.id and loaded == ["b"]  # a is not loaded again
    assert [c["status"] for c in result.candidates] == ["done", "done"]
    with RunStore(home) as runs:
        after = {(s.model, s.layer, s.metric): s for s in runs.scores(run.id)}
    assert {key: after[key] for key in before} == before  # a's scores as they were (same timings too)


# --- fine-tuning arms ---------------------------------------------------------------------------------

ARMS = {**SMALL, "train_size": 40, "baseline": "scratch"}
ENDURING = {**ARMS, "patience": 10}  # no arm stops early: each trains every epoch


def unit_processes(name: str = "train_arm") -> list[int]:
    """The processes running a Ray task called ``name`` (Ray titles a worker ``ray::NAME`` while it runs one)."""
    found = []
    for entry in Path("/proc").iterdir():
        try:
            title = (entry / "cmdline").read_bytes() if entry.name.isdigit() else b""
        except OSError:  # ended while we looked
            continue
        if title.startswith(f"ray::{name}".encode()):
            found.append(int(entry.name))
    return found


def epoch_values(records: list[EpochRecord]) -> list[tuple[Any, ...]]:
    return [
        (r.arm, r.epoch, r.train_loss, r.val_loss, r.val_accuracy, r.val_balanced_accuracy, r.extra) for r in records
    ]


def test_finetune_arms_on_ray_record_what_the_local_executor_records(ray_cluster: None, weights: Path) -> None:  # noqa: F811
    import torch

    # a Ray task of one CPU runs torch on one thread; the same here keeps every sum in the same order
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        local = zooprobe.finetune("sklearn:digits", MODEL, "full", epochs=2, **ARMS)
    finally:
        torch.set_num_threads(threads)
    seen: list[tuple[str, int]] = []
    remote = zooprobe.finetune(
        "sklearn:digits", MODEL, "full", epochs=2, executor="ray", on_epoch=lambda arm, r: seen.append((arm, r.epoch)),
        **ARMS,
    )  # fmt: skip
    assert remote.run_id != local.run_id and sorted(seen) == [("full", 1), ("full", 2), ("scratch", 1), ("scratch", 2)]
    for arm in ("full", "scratch"):
        assert len(remote.arms[arm]) == 2
        assert epoch_values(remote.arms[arm]) == epoch_values(local.arms[arm]), arm
    untimed = [{arm: {**doc, "seconds": 0} for arm, doc in run.summary["arms"].items()} for run in (remote, local)]
    assert untimed[0] == untimed[1] and remote.summary["gain_over_scratch"] == local.summary["gain_over_scratch"]
    checkpoints = remote.summary["checkpoints"]
    assert {Path(path).parent for path in checkpoints.values()} == {weights / "runs" / remote.run_id}
    with RunStore(weights) as runs:
        assert runs.get(remote.run_id).status == "done"


@pytest.mark.slow
def test_a_worker_killed_mid_arm_is_replaced_and_the_run_completes(ray_cluster: None, weights: Path) -> None:  # noqa: F811
    killed: list[int] = []

    def kill_a_worker(arm: str, record: EpochRecord) -> None:
        if not killed:  # the first epoch is in: both arms are training, on two workers
            (pid, *_) = unit_processes() or [0]
            if pid:
                os.kill(pid, signal.SIGKILL)
                killed.append(pid)

    result = zooprobe.finetune(
        "sklearn:digits", MODEL, "full", epochs=3, executor="ray", on_epoch=kill_a_worker, **ENDURING
    )
    assert killed and killed[0] != os.getpid()
    for arm in ("full", SCRATCH):
        assert [r.epoch for r in result.arms[arm]] == [1, 2, 3], arm
    with RunStore(weights) as runs:
        assert runs.get(result.run_id).status == "done"
    assert all(Path(path).exists() for path in result.summary["checkpoints"].values())


@pytest.mark.slow
def test_a_killed_finetune_driver_leaves_a_run_the_local_executor_finishes(ray_cluster: None, weights: Path) -> None:  # noqa: F811
    import ray

    driver = (
        "import zooprobe\n"
        f"zooprobe.finetune('sklearn:digits', {MODEL!r}, 'full', epochs=4, home={str(weights)!r}, executor='ray',"
        f" ray_address={ray.get_runtime_context().gcs_address!r}, **{ENDURING!r})\n"
    )
    env = {**os.environ, "ZOOPROBE_HOME": str(weights)}
    process = subprocess.Popen([sys.executable, "-c", driver], env=env)

    def recorded() -> dict[str, list[int]]:
        if not (weights / "runs.sqlite3").exists():
            return {}
        with RunStore(weights) as runs:
            return {
                arm: [r.epoch for r in runs.epochs(run.id, arm)]
                for run in runs.list(kind="finetune")
                for arm in ("full", SCRATCH)
            }

    while not all(recorded().get(arm) for arm in ("full", SCRATCH)):  # an epoch of each arm recorded
        assert process.poll() is None, "the driver ended before it could be killed"
        time.sleep(0.1)
    process.kill()
    process.wait()
    while unit_processes():  # the cluster ends a dead driver's tasks; none may still write checkpoints
        time.sleep(0.1)
    before = recorded()
    assert all(len(before[arm]) < 4 for arm in before), before
    with RunStore(weights) as runs:
        (run,) = runs.list(kind="finetune")
    assert run.status == "running"
    trained: list[tuple[str, int]] = []
    result = zooprobe.finetune(resume=run.id, progress=False, on_epoch=lambda arm, r: trained.append((arm, r.epoch)))
    assert result.run_id == run.id
    for arm in ("full", SCRATCH):
        assert [r.epoch for r in result.arms[arm]] == [1, 2, 3, 4], arm
        again = [epoch for name, epoch in trained if name == arm]
        assert again and min(again) > max(before[arm]), (arm, before[arm], again)  # nothing recorded is trained again
    with RunStore(weights) as runs:
        assert runs.get(run.id).status == "done"


# --- one candidate's extraction sharded with Ray Data ---------------------------------------------


def test_a_large_dataset_is_extracted_over_the_cluster_into_the_local_cache_files(
    ray_cluster: None, digits: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capfd: Any
) -> None:
    import numpy as np

    options = {**OPTIONS, "metrics": ["knn_accuracy", "logme"]}
    local = assess(str(digits), [toy_entry("a")], loader=seeded_cnn, home=tmp_path / "local", **options)
    monkeypatch.setenv("ZOOPROBE_SHARD_IMAGES", "40")  # the 100 digits count as large
    remote = assess(
        str(digits), [toy_entry("a")], loader=seeded_cnn, home=tmp_path / "ray", executor="ray",
        **{**options, "progress": True},
    )  # fmt: skip
    assert "toy:a: features at 2 cut points extracted over the cluster" in capfd.readouterr().err
    files = {home: sorted((tmp_path / home / "features").glob("*.npy")) for home in ("local", "ray")}
    assert [f.name for f in files["ray"]] == [f.name for f in files["local"]] and len(files["local"]) == 2
    for ours, theirs in zip(files["ray"], files["local"], strict=True):
        sharded, alone = np.load(ours), np.load(theirs)
        assert sharded.shape == alone.shape == (100, sharded.shape[1])
        np.testing.assert_allclose(sharded, alone, rtol=1e-5, atol=1e-6)  # row by row: the dataset's order
    expected = stored_scores(tmp_path / "local", local.run_id)
    got = stored_scores(tmp_path / "ray", remote.run_id)
    assert got.keys() == expected.keys()
    for key, value in expected.items():
        assert got[key] == pytest.approx(value, abs=1e-6), key


def test_finetune_with_ray_missing_is_one_line_and_starts_no_run(
    weights: Path,  # noqa: F811
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setitem(sys.modules, "ray", None)  # as if not installed
    args = ["finetune", "--data", "sklearn:digits", "--model", MODEL, "--strategy", "head", "--resolution", "32"]
    result = CliRunner().invoke(cli, args, env={"ZOOPROBE_EXECUTOR": "ray"})
    assert result.exit_code == 2, result.output
    assert "pip install 'zooprobe[ray]'" in result.output and len(result.output.strip().splitlines()) == 1
    assert RunStore(weights).list(kind="finetune") == []


def test_the_local_executor_streams_a_units_items_before_it_is_done() -> None:
    from zooprobe.executors.base import Job, LocalExecutor

    events: list[tuple[str, Any, Any]] = []

    def unit(number: int, shared: str, emit: Any) -> str:
        emit(f"{shared} {number}a")
        emit(f"{shared} {number}b")
        return f"done {number}"

    job = Job(
        unit, [1, 2], "item", lambda u, r: events.append(("done", u, r)), lambda u, e: None,
        on_item=lambda u, i: events.append(("item", u, i)),
    )  # fmt: skip
    LocalExecutor().run(job)
    assert events == [
        ("item", 1, "item 1a"), ("item", 1, "item 1b"), ("done", 1, "done 1"),
        ("item", 2, "item 2a"), ("item", 2, "item 2b"), ("done", 2, "done 2"),
    ]  # fmt: skip
