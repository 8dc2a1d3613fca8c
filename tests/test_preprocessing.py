"""Images reach a backbone exactly as the weights' own evaluation transform prepares them.

References are the libraries' own pipelines on PIL images: torchvision's ``weights.transforms()``
and timm's ``create_transform(**resolve_data_config(...))``. No weight files are needed except for
the MobileNetV2 feature check.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from zooprobe.backbones.backbone import PRE_LOGITS, TorchBackbone
from zooprobe.backbones.contract import Backbone
from zooprobe.backbones.features import cache_key
from zooprobe.catalog.schema import Entry, InputSpec
from zooprobe.data.datasets import Dataset
from zooprobe.errors import ZooprobeError


@pytest.fixture(scope="module")
def images() -> list[np.ndarray]:
    """scikit-learn's landscape china.jpg, and a portrait crop of flower.jpg with odd sides."""
    from sklearn.datasets import load_sample_image

    china = np.asarray(load_sample_image("china.jpg"))
    portrait = np.ascontiguousarray(load_sample_image("flower.jpg")[3:426, 101:398])
    return [china, portrait]


@pytest.fixture(scope="module")
def torchvision_entries() -> list[Entry]:
    from zooprobe.sources.torchvision_source import TorchvisionSource

    return list(TorchvisionSource().entries())


def _unloaded(entry: Entry) -> Backbone:
    """A backbone with no model: preprocessing needs only the entry."""
    return TorchBackbone(entry=entry, model=None, cut_points=[], classifier=None)  # type: ignore[arg-type]


def _max_difference(backbone: Backbone, transform: Any, image: np.ndarray) -> float:
    from PIL import Image

    expected = transform(Image.fromarray(image))
    got = backbone.preprocess([image])[0]
    assert got.shape == expected.shape, (backbone.entry.id, got.shape, expected.shape)
    return float((got - expected).abs().max())


def test_every_torchvision_weight_is_preprocessed_as_its_own_transforms(
    torchvision_entries: list[Entry], images: list[np.ndarray]
) -> None:
    from torchvision.models import get_model_weights, list_models
    from torchvision.transforms._presets import ImageClassification

    from zooprobe.sources.torchvision_source import TorchvisionSource

    every_weight = {f"torchvision:{m}.{w.name}" for m in list_models() for w in get_model_weights(m)}
    assert {e.id for e in torchvision_entries} == every_weight and len(every_weight) == 166
    compared = 0
    for entry in torchvision_entries:
        weights = get_model_weights(entry.architecture)[entry.name.split(".", 1)[1]]
        if "image-classification" not in entry.tasks:
            # detection, segmentation, video and optical-flow weights have other transforms and are refused
            assert getattr(weights.transforms, "func", weights.transforms) is not ImageClassification
            with pytest.raises(ZooprobeError, match="loads image-classification"):
                TorchvisionSource().load(entry)
            continue
        assert entry.input.crop_pct is not None and entry.input.crop_mode == "center", entry.id
        transform = weights.transforms()
        for image in images:
            assert _max_difference(_unloaded(entry), transform, image) <= 1e-3, entry.id
        compared += 1
    assert compared == 129


def test_mobilenet_v2_stores_torchvision_s_default_resize(torchvision_entries: list[Entry]) -> None:
    entry = next(e for e in torchvision_entries if e.name == "mobilenet_v2.IMAGENET1K_V1")
    # ImageClassification(crop_size=224) resizes to its default 256, and V2 weights say 232
    assert entry.input.default_resolution == (224, 224) and entry.input.crop_pct == 224 / 256
    v2 = next(e for e in torchvision_entries if e.name == "mobilenet_v2.IMAGENET1K_V2")
    assert v2.input.crop_pct == 224 / 232
    assert "class defaults" in dict(entry.provenance)["input"]


def _timm_sample(per_kind: int = 2) -> Iterator[str]:
    """A few timm tags of every (crop mode, interpolation, square or not) combination timm has."""
    import timm
    from timm.models import get_pretrained_cfg

    seen: dict[tuple[Any, ...], int] = {}
    for name in sorted(timm.list_pretrained()):
        cfg = get_pretrained_cfg(name)
        if cfg is None:
            continue
        kind = (cfg.crop_mode, cfg.interpolation, cfg.input_size[1] == cfg.input_size[2])
        seen[kind] = seen.get(kind, 0) + 1
        if seen[kind] <= per_kind:
            yield name


def test_timm_configs_are_preprocessed_as_timm_s_own_transform(images: list[np.ndarray]) -> None:
    import timm
    from timm.data import create_transform, resolve_data_config

    from zooprobe.sources.timm_source import TimmSource

    sample = set(_timm_sample())
    entries = [e for e in TimmSource().entries() if e.name in sample]
    assert len(entries) == len(sample)
    kinds = {(e.input.crop_mode, e.input.interpolation, e.input.crop_pct == 1.0) for e in entries}
    assert {k[0] for k in kinds} == {"center", "squash", "border"}
    assert {k[1] for k in kinds} == {"bicubic", "bilinear"}
    assert any(h != w for h, w in (e.input.default_resolution or (0, 0) for e in entries))
    for entry in entries:
        config = resolve_data_config(pretrained_cfg=timm.models.get_pretrained_cfg(entry.name).to_dict())
        transform = create_transform(**config)
        for image in images:
            assert _max_difference(_unloaded(entry), transform, image) <= 1e-3, entry.id


def test_mobilenet_v2_features_match_torchvision_s_own_pipeline(
    torch_home: Path, torchvision_entries: list[Entry], images: list[np.ndarray], monkeypatch: pytest.MonkeyPatch
) -> None:
    import torch
    from PIL import Image
    from torchvision.models import MobileNet_V2_Weights

    from zooprobe.sources.torchvision_source import load_backbone

    monkeypatch.setenv("TORCH_HOME", str(torch_home))
    backbone = load_backbone(next(e for e in torchvision_entries if e.name == "mobilenet_v2.IMAGENET1K_V1"))
    china = images[0]
    own = MobileNet_V2_Weights.IMAGENET1K_V1.transforms()(Image.fromarray(china))[None]
    expected = backbone.extract(own, [PRE_LOGITS])[PRE_LOGITS][0]
    got = backbone.extract(backbone.preprocess([china]), [PRE_LOGITS])[PRE_LOGITS][0]
    assert float(torch.nn.functional.cosine_similarity(got, expected, dim=0)) >= 0.9999


def _key(backbone: Backbone) -> str:
    dataset = Dataset(name="d", modality="text", labels=np.zeros(1, np.int64), classes=("a",), texts=("x",))
    return cache_key(backbone, dataset, PRE_LOGITS, dataset_hash="0" * 64)


def test_cache_key_changes_with_the_crop_and_the_resize_rule() -> None:
    from dataclasses import replace

    spec = InputSpec(channels=3, default_resolution=(224, 224), mean=(0.5,) * 3, std=(0.5,) * 3)
    entry = Entry(source="x", name="m", architecture="m", input=spec)
    keys = {
        _key(_unloaded(entry)),
        _key(_unloaded(replace(entry, input=replace(spec, crop_pct=0.875)))),
        _key(_unloaded(replace(entry, input=replace(spec, crop_mode="squash")))),
    }

    class OtherRule(TorchBackbone):
        resize_rule = "another resize"

    keys.add(_key(OtherRule(entry=entry, model=None, cut_points=[], classifier=None)))  # type: ignore[arg-type]
    assert len(keys) == 4


def test_cache_keys_of_backbones_that_resize_otherwise_are_unchanged() -> None:
    from zooprobe.backbones.hf_backbone import HFEncoderBackbone

    entry = Entry(source="hf", name="org/m", architecture="bert", modality="text", input=InputSpec(max_tokens=128))
    text = HFEncoderBackbone(
        entry=entry,
        model=None,  # type: ignore[arg-type]
        cut_points=[],
        classifier=None,
        processor=None,
        sentence_transformer=False,
        max_tokens=128,
    )
    # the key this backbone had before crop_mode and the resize rule joined the key
    assert _key(text) == PINNED_TEXT_KEY


PINNED_TEXT_KEY = "5d317e2feeb2957c01c248a59725fba35a89c66010800d4fa7dca3c7e3b88115"
