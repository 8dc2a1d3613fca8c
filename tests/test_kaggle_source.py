"""Kaggle source: snapshot and API listing mapped onto entries; real kagglehub.model_download from its cache."""

from __future__ import annotations

import json
from importlib.util import find_spec
from pathlib import Path

import numpy as np
import pytest

from tests.tiny_tf import RESOLUTION, save_tiny_feature_vector
from zooprobe.catalog.schema import Entry
from zooprobe.errors import ZooprobeError
from zooprobe.sources.kaggle_source import KaggleError, KaggleSource, entries_from_models, has_credentials

if find_spec("kagglehub") is None or find_spec("tensorflow_hub") is None:
    pytest.skip("needs the kaggle and tfhub extras: pip install 'zooprobe[kaggle,tfhub]'", allow_module_level=True)

# A ListModels answer in the camelCase JSON the Kaggle API speaks (field names and enum spellings
# from kagglesdk's ApiModel/ApiModelInstance definitions; values from the models' public pages).
LIST_MODELS = {
    "models": [
        {
            "id": 1,
            "ref": "google/inception-v3",
            "title": "Inception V3",
            "subtitle": "Inception V3 trained on ImageNet",
            "author": "google",
            "slug": "inception-v3",
            "tags": [{"name": "image classification"}],
            "instances": [
                {
                    "id": 11,
                    "slug": "feature-vector",
                    "framework": "MODEL_FRAMEWORK_TENSOR_FLOW_2",
                    "versionNumber": 2,
                    "licenseName": "Apache 2.0",
                    "totalUncompressedBytes": 87000000,
                },
                {"id": 12, "slug": "classification", "framework": "MODEL_FRAMEWORK_TF_LITE", "versionNumber": 1},
            ],
        },
        {
            "id": 2,
            "ref": "someone/tiny-net",
            "author": "someone",
            "slug": "tiny-net",
            "instances": [
                {"id": 21, "slug": "v1", "framework": "MODEL_FRAMEWORK_PY_TORCH", "trainingData": ["imagenet-1k"]}
            ],
        },
    ],
    "nextPageToken": "",
}


@pytest.fixture(autouse=True)
def no_kaggle_credentials(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for key in ("KAGGLE_USERNAME", "KAGGLE_KEY", "KAGGLE_API_TOKEN"):
        monkeypatch.delenv(key, raising=False)
    monkeypatch.setenv("KAGGLE_CONFIG_DIR", str(tmp_path / "kaggle-config"))
    monkeypatch.setenv("KAGGLEHUB_CACHE", str(tmp_path / "kagglehub"))
    # kagglehub's TEST environment is http://localhost:7777: nothing listens there, so no call leaves the machine
    monkeypatch.setenv("KAGGLE_API_ENVIRONMENT", "TEST")


def _entry(handle: str) -> Entry:
    name = "/".join(handle.split("/")[:4])
    return Entry(source="kaggle", name=name, architecture="tiny", framework=handle.split("/")[2], handle=handle)


def _fill_cache(root: Path, handle: str) -> Path:
    """kagglehub's cache layout: models/owner/model/framework/variation/version plus a version.complete marker."""
    folder = root / "models" / handle
    folder.mkdir(parents=True)
    (folder.parent / f"{folder.name}.complete").touch()
    return folder


def test_without_credentials_the_snapshot_is_listed(tmp_path: Path) -> None:
    assert not has_credentials()
    entries = {e.name: e for e in KaggleSource().entries()}
    inception = entries["google/inception-v3/tensorFlow2/feature-vector"]
    assert inception.handle == "google/inception-v3/tensorFlow2/feature-vector/2"
    assert (inception.feature_dim, inception.input.default_resolution) == (2048, (299, 299))
    assert "TF-Hub page of the same model" in dict(inception.provenance)["feature_dim"]
    assert KaggleSource().package_version().startswith("snapshot-")  # type: ignore[union-attr]


def test_credentials_from_env_or_kaggle_json(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    config = tmp_path / "kaggle-config"
    config.mkdir()
    (config / "kaggle.json").write_text(json.dumps({"username": "u", "key": "k"}))
    assert has_credentials()
    assert KaggleSource().package_version().startswith("api-")  # type: ignore[union-attr]


def test_listing_maps_api_models_onto_entries() -> None:
    from kagglesdk.models.types.model_api_service import ApiListModelsResponse

    response = ApiListModelsResponse.from_json(json.dumps(LIST_MODELS))
    entries = {e.name: e for e in entries_from_models(response.models, listed_on="2026-01-01")}
    assert set(entries) == {
        "google/inception-v3/tensorFlow2/feature-vector",
        "google/inception-v3/tfLite/classification",
        "someone/tiny-net/pyTorch/v1",
    }
    inception = entries["google/inception-v3/tensorFlow2/feature-vector"]
    assert inception.handle == "google/inception-v3/tensorFlow2/feature-vector/2"
    assert (inception.weights_license, inception.file_size_bytes) == ("Apache 2.0", 87_000_000)
    assert inception.feature_dim == 2048  # carried over from the snapshot's TF-Hub page
    tiny = entries["someone/tiny-net/pyTorch/v1"]
    assert (tiny.framework, tiny.feature_dim, tiny.handle) == ("pyTorch", None, "someone/tiny-net/pyTorch/v1")
    assert [s.dataset for s in tiny.pretraining] == ["imagenet-1k"]


def test_credentials_without_network_fall_back_to_the_snapshot(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("KAGGLE_USERNAME", "someone")
    monkeypatch.setenv("KAGGLE_KEY", "not-a-key")
    names = {e.name for e in KaggleSource().entries()}
    assert "google/nnlm/tensorFlow2/en-dim128" in names
    assert "Kaggle API listing failed" in capsys.readouterr().err


@pytest.mark.usefixtures("trusted_savedmodels")
def test_pinned_savedmodel_resolves_from_kagglehub_cache(tmp_path: Path) -> None:
    from zooprobe.backbones.tf_backbone import import_tensorflow

    handle = "someone/tiny/tensorFlow2/fv/1"
    module = save_tiny_feature_vector(_fill_cache(tmp_path / "kagglehub", handle))
    backbone = KaggleSource().load(_entry(handle))
    images = [np.full((RESOLUTION, RESOLUTION, 3), v, dtype=np.uint8) for v in (0, 90, 255)]
    batch = backbone.preprocess(images)
    features = backbone.extract(batch, ["output"])["output"].numpy()
    expected = module(import_tensorflow().constant(batch.permute(0, 2, 3, 1).numpy())).numpy()
    np.testing.assert_allclose(features, expected, rtol=1e-5, atol=1e-6)
    # and it fine-tunes: a restored copy trains, its kernel receives a gradient from TensorFlow
    import torch

    from zooprobe.finetuning.arms import build_arm_model
    from zooprobe.finetuning.strategy import Strategy

    backbone.check_trainable()
    model = build_arm_model(backbone, Strategy("full", layer="output", train="all"), 3, (RESOLUTION, RESOLUTION)).model
    torch.nn.functional.cross_entropy(model(batch), torch.tensor([0, 1, 2])).backward()
    (kernel,) = model.body_parameters()
    assert kernel.grad is not None and float(kernel.grad.abs().sum()) > 0


def test_keras_variant_loads_with_safe_mode(tmp_path: Path) -> None:
    import keras

    handle = "someone/tiny/keras/fv/3"
    inputs = keras.Input((RESOLUTION, RESOLUTION, 3))
    outputs = keras.layers.GlobalAveragePooling2D()(keras.layers.Conv2D(4, 3, activation="relu")(inputs))
    model = keras.Model(inputs, outputs)
    model.save(_fill_cache(tmp_path / "kagglehub", handle) / "model.keras")
    backbone = KaggleSource().load(_entry(handle))
    batch = backbone.preprocess([np.full((40, 40, 3), 128, dtype=np.uint8)])
    expected = keras.ops.convert_to_numpy(model(batch.permute(0, 2, 3, 1).numpy()))
    np.testing.assert_allclose(backbone.extract(batch, ["output"])["output"].numpy(), expected, rtol=1e-5)
    with pytest.raises(ZooprobeError, match=r"fine-tuning saved \.keras files .* is not supported yet"):
        backbone.check_trainable()


@pytest.mark.parametrize(
    ("handle", "message"),
    [
        ("google/inception-v3", "is not a Kaggle model handle"),
        ("google/inception-v3/tensorFlow2/feature-vector", "cannot reach Kaggle"),
        ("google/inception-v3/tensorFlow2/feature-vector/2", "cannot reach Kaggle"),
    ],
)
def test_bad_handles_and_no_network_are_one_line(handle: str, message: str) -> None:
    with pytest.raises(KaggleError) as info:
        KaggleSource().load(_entry(handle) if handle.count("/") >= 3 else Entry("kaggle", handle, "x", handle=handle))
    assert message in str(info.value) and "\n" not in str(info.value)


@pytest.mark.usefixtures("trusted_savedmodels")
def test_cached_folder_without_a_model_is_refused(tmp_path: Path) -> None:
    handle = "someone/broken/tensorFlow2/fv/1"
    (_fill_cache(tmp_path / "kagglehub", handle) / "variables").mkdir()
    with pytest.raises(ZooprobeError, match="not a SavedModel folder") as info:
        KaggleSource().load(_entry(handle))
    assert "\n" not in str(info.value)


def test_unsupported_framework_names_the_loadable_ones(tmp_path: Path) -> None:
    handle = "someone/tiny/tfLite/fv/1"
    _fill_cache(tmp_path / "kagglehub", handle)
    with pytest.raises(KaggleError, match="loadable: tensorFlow1, tensorFlow2, keras, pyTorch"):
        KaggleSource().load(_entry(handle))


def test_timm_layout_loads_the_downloaded_weights_whatever_its_config_names(tmp_path: Path) -> None:
    # config.json's pretrained_cfg may set preprocessing; a 'file' or 'url' in it must not redirect the load
    import json

    import timm
    import torch
    from safetensors.torch import save_file

    from zooprobe.sources.kaggle_source import _load_timm_layout

    torch.manual_seed(1)
    original = timm.create_model("resnet18", num_classes=4)
    save_file({k: v.contiguous() for k, v in original.state_dict().items()}, tmp_path / "model.safetensors")
    decoy = tmp_path / "elsewhere" / "other.safetensors"
    decoy.parent.mkdir()
    save_file({k: torch.zeros_like(v) for k, v in original.state_dict().items()}, decoy)
    config = {
        "architecture": "resnet18",
        "num_classes": 4,
        "pretrained_cfg": {"file": str(decoy), "url": "http://127.0.0.1:9/x.pth", "mean": [0.5, 0.5, 0.5]},
    }
    (tmp_path / "config.json").write_text(json.dumps(config))
    entry = Entry(source="kaggle", name="someone/net/pyTorch/v1/1", architecture="resnet18")
    loaded = _load_timm_layout(tmp_path, entry).model
    assert torch.equal(loaded.conv1.weight, original.conv1.weight)
    assert torch.equal(loaded.fc.weight, original.fc.weight)  # a 4-class head, kept, not re-initialised
    assert loaded.pretrained_cfg["mean"] == [0.5, 0.5, 0.5]
