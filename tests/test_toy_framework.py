"""A third party adds a framework: an adapter and a source plugin written here, nothing changed in zooprobe.

The "framework" is a plain torch network driven by hand (not zooprobe's torch adapter): NumPy
preprocessing, blocks in a ``ModuleDict``, a source head of its own. The source plugin is installed the
way third parties install one (a distribution with a ``zooprobe`` entry point), and ``zooprobe.assess``
and ``zooprobe.finetune`` run on it through the public API.
"""

from __future__ import annotations

import copy
import math
import sys
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import pytest
import torch

import zooprobe
from zooprobe import Entry, InputSpec, Source
from zooprobe.backbones.contract import PRE_LOGITS, Arm, Backbone, HeadFactory
from zooprobe.runs.store import RunStore

from .test_plugins import install_plugin

TOY_ID = "toyfw:toynet"

PLUGIN = """
from zooprobe import hookimpl

from tests.test_toy_framework import ToySource


@hookimpl
def register_sources():
    return [ToySource()]
"""


def toy_blocks(seed: int) -> torch.nn.ModuleDict:
    """Two convolutional blocks, initialised from ``seed``."""
    torch.manual_seed(seed)
    return torch.nn.ModuleDict(
        {
            "block1": torch.nn.Sequential(torch.nn.Conv2d(1, 8, 3, padding=1), torch.nn.ReLU()),
            "block2": torch.nn.Sequential(torch.nn.Conv2d(8, 16, 3, padding=1, stride=2), torch.nn.ReLU()),
        }
    )


class ToyArmModel(torch.nn.Module):
    """Blocks, a mean over H and W, then a head."""

    def __init__(self, blocks: Sequence[torch.nn.Module], head: torch.nn.Module) -> None:
        super().__init__()
        self.body = torch.nn.Sequential(*blocks)
        self.head = head

    def forward(self, batch: torch.Tensor) -> torch.Tensor:
        logits: torch.Tensor = self.head(self.body(batch).mean(dim=(2, 3)))
        return logits


class ToyBackbone(Backbone):
    """The toy framework's adapter, written against the contract alone."""

    def __init__(self, entry: Entry) -> None:
        self.entry = entry
        self.blocks = toy_blocks(seed=1234)  # the "pretrained" weights
        self.cut_points = [*self.blocks, PRE_LOGITS]
        self.source_head = torch.nn.Linear(16, 10)

    def preprocess(self, examples: Sequence[Any]) -> torch.Tensor:
        """Nearest-neighbour resize to the resolution in NumPy, one grey channel in [0, 1]."""
        height, width = self.resolution
        out = np.zeros((len(examples), 1, height, width), dtype=np.float32)
        for i, example in enumerate(examples):
            image = np.asarray(example, dtype=np.float32)
            if image.ndim == 3:
                image = image.mean(axis=2)
            rows = np.arange(height) * image.shape[0] // height
            cols = np.arange(width) * image.shape[1] // width
            out[i, 0] = image[np.ix_(rows, cols)] / 255.0
        return torch.from_numpy(out)

    def extract(self, batch: torch.Tensor, layers: Sequence[str]) -> dict[str, torch.Tensor]:
        self.check_cut_points(layers)
        pooled: dict[str, torch.Tensor] = {}
        with torch.inference_mode():
            x = batch
            for name, block in self.blocks.items():
                x = block(x)
                pooled[name] = x.mean(dim=(2, 3))
        pooled[PRE_LOGITS] = pooled["block2"]
        return {layer: pooled[layer].float().cpu() for layer in layers}

    @property
    def has_source_head(self) -> bool:
        return True

    def source_probabilities(self, pre_logits: npt.NDArray[np.float32]) -> npt.NDArray[np.float64]:
        with torch.inference_mode():
            logits = self.source_head(torch.from_numpy(np.array(pre_logits, dtype=np.float32)))
        return torch.softmax(logits.double(), dim=1).numpy()

    def build_arm(self, layer: str, make_head: HeadFactory, resolution: tuple[int, int], *, seed: int) -> Arm:
        names = list(self.blocks) if layer == PRE_LOGITS else list(self.blocks)[: list(self.blocks).index(layer) + 1]
        blocks = [copy.deepcopy(self.blocks[name]) for name in names]
        width = blocks[-1][0].out_channels
        head = make_head(width)
        return Arm(ToyArmModel(blocks, head), head)

    def build_scratch_arm(self, layer: str, num_classes: int, resolution: tuple[int, int], *, seed: int) -> Arm:
        head = torch.nn.Linear(16, num_classes)
        return Arm(ToyArmModel(list(toy_blocks(seed).values()), head), head)


class ToySource(Source):
    name = "toyfw"

    def package_version(self) -> str | None:
        return "1.0"

    def entries(self) -> Iterator[Entry]:
        yield Entry(
            source="toyfw",
            name="toynet",
            architecture="toynet",
            framework="toyfw",
            tasks=("image-classification",),
            input=InputSpec(channels=1, default_resolution=(16, 16)),
            num_classes=10,
            params=1_400,
        )

    def load(self, entry: Entry) -> Backbone:
        return ToyBackbone(entry)


@pytest.fixture
def toy_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, zooprobe_home: Path) -> Iterator[Path]:
    """The toy source installed as a third-party plugin, and a catalog synced from it alone."""
    from zooprobe.catalog.store import Catalog
    from zooprobe.plugins.manager import get_sources
    from zooprobe.plugins.sync import sync_sources

    install_plugin(tmp_path, monkeypatch, "toyfw", "1.0", PLUGIN)
    try:
        with Catalog(zooprobe_home) as catalog:
            (result,) = sync_sources(catalog, [get_sources()["toyfw"]])
            assert result.status == "synced"
        yield zooprobe_home
    finally:
        sys.modules.pop("toyfw_plugin", None)


def test_assess_and_finetune_run_on_a_framework_zooprobe_does_not_know(toy_home: Path) -> None:
    assessment = zooprobe.assess("sklearn:digits", [TOY_ID], folds=2, home=toy_home, progress=False)
    (candidate,) = assessment.assessment.candidates  # the stored documents (.candidates is a DataFrame)
    assert candidate["status"] == "done" and candidate["model"] == TOY_ID
    assert [p["layer"] for p in candidate["layer_profile"]] == ["block1", "block2", PRE_LOGITS]
    # the probe, kNN and feature metrics on the adapter's features; LEEP and NCE on its head's probabilities
    assert set(candidate["scores"]) >= {"probe_accuracy", "knn_accuracy", "logme", "hscore", "nce", "leep"}
    assert 0.5 < candidate["probe_accuracy"] <= 1  # 10 digit classes: random features still separate them
    recommended = assessment.recommended
    assert recommended is not None and recommended["model"] == TOY_ID and recommended["finetune_arg"]
    with RunStore(toy_home) as runs:
        stored = {(s.layer, s.metric) for s in runs.scores(assessment.run_id)}
    assert ("logits", "leep") in stored and ("block1", "probe_accuracy") in stored

    result = zooprobe.finetune(
        "sklearn:digits", TOY_ID, "head", epochs=3, baseline="scratch", train_size=300, batch_size=32,
        progress=False, home=toy_home,
    )  # fmt: skip
    assert list(result.arms) == ["head", "scratch"]
    head, scratch = result.arms["head"], result.arms["scratch"]
    assert [r.epoch for r in head] == [1, 2, 3] and [r.epoch for r in scratch] == [1, 2, 3]
    # the new head reads exactly the adapter's pooled features, so it trains on the cached ones
    assert all(r.extra.items() >= {"phase": "head", "trained_on": "features"}.items() for r in head)
    assert all(r.extra["trained_on"] == "images" and r.extra["phase"] == "all" for r in scratch)
    for record in head + scratch:
        assert record.train_loss is not None and math.isfinite(record.train_loss)
        assert record.val_accuracy is not None and 0 <= record.val_accuracy <= 1
    assert isinstance(result.summary["gain_over_scratch"], float)
    assert Path(result.summary["checkpoints"]["head"]).is_file()
