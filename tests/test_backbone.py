"""Loading real pretrained weights through the sources' own loaders, and extracting features."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

import zooprobe
from zooprobe.errors import InvalidChoiceError, SourceUnavailableError


@pytest.fixture
def mobilenet(torch_home: Path, synced: Path, monkeypatch: pytest.MonkeyPatch) -> zooprobe.backbones.backbone.Backbone:
    monkeypatch.setenv("TORCH_HOME", str(torch_home))
    return zooprobe.load("torchvision:mobilenet_v2.IMAGENET1K_V1")


@pytest.fixture(scope="module")
def china() -> np.ndarray:
    from sklearn.datasets import load_sample_image

    return np.asarray(load_sample_image("china.jpg"))


def test_mobilenet_classifies_china_as_a_building(mobilenet, china: np.ndarray) -> None:  # type: ignore[no-untyped-def]
    import torch
    from torchvision.models import MobileNet_V2_Weights

    batch = mobilenet.preprocess([china])
    with torch.inference_mode():
        probs = mobilenet.model(batch).softmax(-1)[0]
    categories = MobileNet_V2_Weights.IMAGENET1K_V1.meta["categories"]
    top5 = [categories[i] for i in probs.topk(5).indices]
    assert {"palace", "monastery", "stupa"} & set(top5), top5
    assert top5[0] == "palace"


def test_last_cut_point_equals_direct_torchvision(mobilenet, china: np.ndarray) -> None:  # type: ignore[no-untyped-def]
    import torch
    import torch.nn.functional as F
    from torchvision.models import MobileNet_V2_Weights, mobilenet_v2

    batch = mobilenet.preprocess([china, china[::-1].copy()])
    features = mobilenet.extract(batch, ["pre_logits"])["pre_logits"]
    direct = mobilenet_v2(weights=None)
    direct.load_state_dict(MobileNet_V2_Weights.IMAGENET1K_V1.get_state_dict(weights_only=True))
    direct.eval()
    with torch.inference_mode():
        expected = torch.flatten(F.adaptive_avg_pool2d(direct.features(batch), 1), 1)
    assert features.shape == (2, 1280) == (2, mobilenet.entry.feature_dim)
    torch.testing.assert_close(features, expected)


def test_cut_points_are_ordered_blocks(mobilenet) -> None:  # type: ignore[no-untyped-def]
    assert mobilenet.cut_points == [f"features.{i}" for i in range(19)] + ["pre_logits"]


def test_several_cut_points_in_one_pass_match_single_passes(mobilenet, china: np.ndarray) -> None:  # type: ignore[no-untyped-def]
    import torch

    batch = mobilenet.preprocess([china])
    both = mobilenet.extract(batch, ["features.3", "features.14"])
    assert both["features.3"].shape == (1, 24) and both["features.14"].shape == (1, 160)
    torch.testing.assert_close(both["features.3"], mobilenet.extract(batch, ["features.3"])["features.3"])


def test_unknown_cut_point_lists_valid_ones(mobilenet) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(
        InvalidChoiceError,
        match="unknown cut point of torchvision:mobilenet_v2.IMAGENET1K_V1 'features.99'.*features.18",
    ):
        mobilenet.extract(mobilenet.preprocess([np.zeros((8, 8), np.uint8)]), ["features.99"])


def test_grayscale_is_replicated_to_three_channels(mobilenet) -> None:  # type: ignore[no-untyped-def]
    gray = np.arange(64, dtype=np.uint8).reshape(8, 8) * 4
    batch = mobilenet.preprocess([gray])
    assert batch.shape == (1, 3, 224, 224)
    assert bool((batch[0, 0] * 0.229 + 0.485 - (batch[0, 1] * 0.224 + 0.456)).abs().max() < 1e-5)


def test_weights_neither_cached_nor_downloadable_say_where_to_put_them(
    tmp_path: Path, synced: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # An empty torch cache, and a network that refuses the download (a proxy on a closed port).
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    monkeypatch.setenv("https_proxy", "http://127.0.0.1:9")
    monkeypatch.setenv("HTTPS_PROXY", "http://127.0.0.1:9")
    monkeypatch.delenv("no_proxy", raising=False)
    monkeypatch.delenv("NO_PROXY", raising=False)
    cached = tmp_path / "torch" / "hub" / "checkpoints" / "mobilenet_v2-7ebf99e0.pth"
    with pytest.raises(zooprobe.errors.ZooprobeError) as caught:
        zooprobe.load("torchvision:mobilenet_v2.IMAGENET1K_V2")
    message = str(caught.value)
    assert "\n" not in message and f"not in torch's cache ({cached})" in message
    assert "downloading them failed" in message and "set TORCH_HOME" in message


def test_source_without_loader_says_so() -> None:
    class ListingOnly(zooprobe.Source):
        name = "listing"

    entry = zooprobe.Entry(source="listing", name="net.v1", architecture="net")
    with pytest.raises(SourceUnavailableError, match="source 'listing' lists 'listing:net.v1' but cannot load weights"):
        ListingOnly().load(entry)


@pytest.mark.parametrize("family", ["torchvision", "timm"])
def test_swin_blocks_are_pooled_over_height_and_width(family: str) -> None:
    # Swin blocks output (N, H, W, C): pooling dims (2, 3) gave one number per image row, not channel vectors.
    import timm
    import torch
    import torchvision

    from zooprobe.backbones.backbone import TorchBackbone, block_cut_points, last_linear
    from zooprobe.backbones.timm_backbone import classifier_of
    from zooprobe.catalog.schema import Entry, InputSpec

    torch.manual_seed(0)
    if family == "torchvision":
        model, widths = torchvision.models.swin_t(weights=None).eval(), {"features.0": 96, "features.5": 384}
        classifier = last_linear(model)
    else:
        model, widths = timm.create_model("swin_tiny_patch4_window7_224").eval(), {"patch_embed": 96, "layers.2": 384}
        classifier = classifier_of(model)
    entry = Entry(source="x", name="swin", architecture="swin", input=InputSpec(default_resolution=(224, 224)))
    backbone = TorchBackbone(
        entry=entry, model=model, cut_points=block_cut_points(model, classifier), classifier=classifier
    )
    features = backbone.extract(torch.rand(2, 3, 224, 224), [*widths, "norm", "pre_logits"])
    assert {layer: features[layer].shape[1] for layer in widths} == widths
    # the pooled final norm is what the head reads
    assert torch.allclose(features["norm"], features["pre_logits"], atol=1e-5)
