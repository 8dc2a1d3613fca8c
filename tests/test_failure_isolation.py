"""One candidate that cannot load or be scored is skipped with its reason; the others are still assessed.

The candidates come from a real source plugin registered with the plugin manager (this module), whose
``load`` raises a different exception type for each candidate, as real loaders do (a corrupt pickle, a
safetensors header, a Keras config, a plugin's own bug).
"""

from __future__ import annotations

import pickle
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from tests.toy_backbone import toy_cnn, toy_entry
from zooprobe import hookimpl
from zooprobe.backbones.backbone import TorchBackbone
from zooprobe.backbones.contract import Backbone
from zooprobe.catalog.schema import Entry
from zooprobe.evaluator.assess import assess
from zooprobe.plugins import manager
from zooprobe.plugins.source import Source

RAISED: dict[str, BaseException] = {
    "oserror": OSError(28, "No space left on device"),
    "runtimeerror": RuntimeError("Error(s) in loading state_dict for Net"),
    "valueerror": ValueError("unsupported checkpoint version 9"),
    "keyerror": KeyError("model_state"),
    "memoryerror": MemoryError(),
    "unpicklingerror": pickle.UnpicklingError("invalid load key, '<'."),
    "typeerror": TypeError("Could not locate class 'Functional'"),
    "attributeerror": AttributeError("'NoneType' object has no attribute 'eval'"),
    "importerror": ImportError("cannot import name 'Conv3x3' from 'toy_layers'"),
    "notimplemented": NotImplementedError("this toy format"),
}
SCORED_BROKEN = "crashzoo:scores-badly"


def _entry(name: str) -> Entry:
    return toy_entry(name, source="crashzoo")


class _ScoresBadly(TorchBackbone):
    def extract(self, batch: Any, layers: Any) -> Any:
        raise KeyError("pre_logits")


class CrashSource(Source):
    """Loads ``good`` (a small CNN) and ``scores-badly``; every other entry raises its exception."""

    name = "crashzoo"

    def entries(self) -> Any:
        for name in ("good", "scores-badly", *RAISED):
            yield _entry(name)

    def load(self, entry: Entry) -> Backbone:
        if entry.name in RAISED:
            raise RAISED[entry.name]
        backbone = toy_cnn(entry)
        return _ScoresBadly(**vars(backbone)) if entry.id == SCORED_BROKEN else backbone


@hookimpl
def register_sources() -> list[Source]:
    return [CrashSource()]


@pytest.fixture
def crashzoo(monkeypatch: pytest.MonkeyPatch) -> None:
    """This module registered as the plugin 'crashzoo', as the built-in sources are (and the only source)."""
    monkeypatch.setitem(manager.DEFAULT_PLUGINS, "crashzoo", __name__)
    monkeypatch.setenv("ZOOPROBE_PLUGINS", "metrics,crashzoo")


def test_each_exception_type_skips_only_its_candidate(crashzoo: None, tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    data = tmp_path / "blobs.npz"
    y = np.repeat([0, 1], 10)
    x = (rng.random((20, 16, 16, 3)) * 80 + y[:, None, None, None] * 120).astype(np.uint8)
    np.savez(data, x=x, y=y)
    models = [_entry(name) for name in (*RAISED, "scores-badly", "good")]
    result = assess(
        str(data), models, home=tmp_path / "home", progress=False, metrics=["knn_accuracy"], layers="pre_logits"
    )
    status = {doc["model"]: (doc["status"], doc["skip_reason"]) for doc in result.candidates}
    assert status["crashzoo:good"] == ("done", None)
    good = next(doc for doc in result.candidates if doc["model"] == "crashzoo:good")
    assert good["rank"] == 1 and good["scores"]
    for name, exc in RAISED.items():
        reason = f"cannot load: {type(exc).__name__}: "
        assert status[f"crashzoo:{name}"][0] == "skipped", name
        assert status[f"crashzoo:{name}"][1].startswith(reason), status[f"crashzoo:{name}"]
        assert "\n" not in status[f"crashzoo:{name}"][1]
    assert status["crashzoo:memoryerror"][1] == "cannot load: MemoryError: MemoryError"
    assert status[SCORED_BROKEN] == ("skipped", "scoring failed: KeyError: 'pre_logits'")
    assert result.summary["skipped"][f"crashzoo:{'oserror'}"] == status["crashzoo:oserror"][1]


def test_an_interrupt_while_loading_still_stops_the_run(
    crashzoo: None, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(RAISED, "oserror", KeyboardInterrupt())
    np.savez(tmp_path / "d.npz", x=(np.arange(512) // 2).astype(np.uint8).reshape(8, 8, 8), y=np.array([0, 1] * 4))
    with pytest.raises(KeyboardInterrupt):
        assess(str(tmp_path / "d.npz"), [_entry("oserror"), _entry("good")], home=tmp_path / "home", progress=False)
