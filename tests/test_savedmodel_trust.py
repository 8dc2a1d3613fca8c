"""TF SavedModels from TF-Hub and Kaggle are code: they load only with --trust-savedmodel (or the allow-list)."""

from __future__ import annotations

from importlib.util import find_spec
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from tests.tiny_tf import RESOLUTION, save_file_writing_model
from zooprobe.backbones.savedmodel_trust import SavedModelTrustError
from zooprobe.catalog.schema import Entry

from .conftest import home_with_catalog, write_digits_npz

if find_spec("kagglehub") is None or find_spec("tensorflow_hub") is None:
    pytest.skip("needs the kaggle and tfhub extras: pip install 'zooprobe[kaggle,tfhub]'", allow_module_level=True)

HANDLE = "someone/writer/tensorFlow2/fv/1"


@pytest.fixture
def hostile(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[Entry, Path]:
    """A Kaggle entry whose cached SavedModel writes a marker file when called."""
    for key in ("KAGGLE_USERNAME", "KAGGLE_KEY", "KAGGLE_API_TOKEN"):
        monkeypatch.delenv(key, raising=False)
    monkeypatch.setenv("KAGGLE_CONFIG_DIR", str(tmp_path / "kaggle-config"))
    monkeypatch.setenv("KAGGLEHUB_CACHE", str(tmp_path / "kagglehub"))
    monkeypatch.setenv("KAGGLE_API_ENVIRONMENT", "TEST")  # nothing listens there: no call leaves the machine
    marker = tmp_path / "written.txt"
    _cache_model(tmp_path / "kagglehub", HANDLE, marker)
    entry = Entry(source="kaggle", name=HANDLE.rsplit("/", 1)[0], architecture="writer", handle=HANDLE)
    return entry, marker


def _cache_model(root: Path, handle: str, marker: Path) -> None:
    folder = root / "models" / handle  # kagglehub's cache layout, marked complete
    folder.mkdir(parents=True)
    (folder.parent / f"{folder.name}.complete").touch()
    save_file_writing_model(folder, marker)


def test_refused_without_trust_and_nothing_written(hostile: tuple[Entry, Path]) -> None:
    from zooprobe.plugins.manager import load_entry

    entry, marker = hostile
    with pytest.raises(SavedModelTrustError, match="--trust-savedmodel") as info:
        load_entry(entry)
    assert "\n" not in str(info.value) and "ZOOPROBE_TRUST_SAVEDMODEL=kaggle" in str(info.value)
    assert not marker.exists()


@pytest.mark.parametrize("how", ["keyword", "allow-list"])
def test_trusted_it_loads_and_says_so(
    hostile: tuple[Entry, Path], how: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from zooprobe.plugins.manager import load_entry

    entry, marker = hostile
    if how == "allow-list":
        monkeypatch.setenv("ZOOPROBE_TRUST_SAVEDMODEL", "tfhub,kaggle")
    backbone = load_entry(entry, trust_savedmodel=how == "keyword")
    assert "as trusted code" in capsys.readouterr().err
    batch = backbone.preprocess([np.zeros((RESOLUTION, RESOLUTION, 3), dtype=np.uint8)])
    assert backbone.extract(batch, ["output"])["output"].shape == (1, 8)
    assert marker.read_text() == "written by the model's graph"  # what trusting it means


def test_the_allow_list_names_sources(hostile: tuple[Entry, Path], monkeypatch: pytest.MonkeyPatch) -> None:
    from zooprobe.plugins.manager import load_entry

    monkeypatch.setenv("ZOOPROBE_TRUST_SAVEDMODEL", "tfhub")
    with pytest.raises(SavedModelTrustError):
        load_entry(hostile[0])
    assert not hostile[1].exists()


def test_assess_skips_the_untrusted_candidate_with_the_flag_in_its_reason(
    hostile: tuple[Entry, Path], synced: Path, tmp_path: Path
) -> None:
    from zooprobe.evaluator.assess import assess

    home = home_with_catalog(synced, tmp_path / "home")
    data = write_digits_npz(tmp_path / "digits.npz", 10)
    result = assess(str(data), models=[hostile[0]], home=home, progress=False, metrics=["knn_accuracy"])
    (candidate,) = result.results
    assert candidate.status == "skipped"
    assert "--trust-savedmodel" in (candidate.skip_reason or "")
    assert not hostile[1].exists()


def test_finetune_exits_2_naming_the_flag(hostile: tuple[Entry, Path], synced: Path, tmp_path: Path) -> None:
    from zooprobe.cli import cli

    home = home_with_catalog(synced, tmp_path / "home")
    # a Kaggle id of the catalog, its handle's files in kagglehub's cache replaced by the hostile model
    listed = "google/inception-v3/tensorFlow2/feature-vector"
    _cache_model(tmp_path / "kagglehub", f"{listed}/2", hostile[1])
    data = write_digits_npz(tmp_path / "digits.npz", 10)
    args = ["finetune", "--data", str(data), "--model", f"kaggle:{listed}", "--strategy", "head", "--home", str(home)]
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 2, result.output
    lines = [line for line in result.output.splitlines() if "--trust-savedmodel" in line]
    assert len(lines) == 1 and "Traceback" not in result.output
    assert not hostile[1].exists()
