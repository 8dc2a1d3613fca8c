"""Local models load only when named as paths (./, ../, /, ~/, local:), through the hub sources' adapters."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from zooprobe.plugins.local_models import LocalModelError, is_local_spec, local_entry

from .conftest import home_with_catalog, write_digits_npz


def _save_tiny_vit(folder: Path) -> None:
    from transformers import ViTConfig, ViTImageProcessor, ViTModel

    config = ViTConfig(
        hidden_size=16, num_hidden_layers=2, num_attention_heads=2, intermediate_size=32, image_size=32, patch_size=8
    )
    ViTModel(config).save_pretrained(folder)
    ViTImageProcessor(size={"height": 32, "width": 32}).save_pretrained(folder)


@pytest.mark.parametrize(
    ("spec", "local"),
    [("./vit", True), ("../vit", True), ("/abs/vit", True), ("~/vit", True), ("local:vit", True), (".", True)],
)
def test_path_forms_are_local(spec: str, local: bool) -> None:
    assert is_local_spec(spec) is local


@pytest.mark.parametrize("spec", ["evil/vit", "hf:evil/vit", "timm:resnet18", "vit"])
def test_ids_never_name_a_folder(spec: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    _save_tiny_vit(tmp_path / "evil" / "vit")  # a folder of that name under the working directory
    _save_tiny_vit(tmp_path / "vit")
    assert not is_local_spec(spec)


def test_a_transformers_folder_loads_by_any_path_form(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import torch

    import zooprobe

    monkeypatch.chdir(tmp_path)
    _save_tiny_vit(tmp_path / "vit")
    ids = {local_entry(spec).id for spec in ("./vit", str(tmp_path / "vit"), "local:vit")}
    assert ids == {f"local:{(tmp_path / 'vit').resolve()}"}
    backbone = zooprobe.load("./vit")
    assert backbone.entry.source == "local" and backbone.entry.modality == "image"
    features = backbone.extract(backbone.preprocess([np.zeros((32, 32, 3), dtype=np.uint8)]), ["pooled"])
    assert tuple(features["pooled"].shape) == (1, 16)
    assert isinstance(features["pooled"], torch.Tensor)


def test_editing_the_files_changes_the_version(tmp_path: Path) -> None:
    _save_tiny_vit(tmp_path / "vit")
    before = local_entry(str(tmp_path / "vit")).source_version
    (tmp_path / "vit" / "config.json").write_text((tmp_path / "vit" / "config.json").read_text() + "\n")
    assert local_entry(str(tmp_path / "vit")).source_version != before


def test_missing_or_unloadable_paths_are_one_line(tmp_path: Path) -> None:
    with pytest.raises(LocalModelError, match="does not exist") as info:
        local_entry(str(tmp_path / "nowhere"))
    assert "\n" not in str(info.value)
    (tmp_path / "junk").mkdir()
    (tmp_path / "junk" / "weights.pkl").write_bytes(b"\x80\x04K\x01.")
    with pytest.raises(LocalModelError, match="holds nothing zooprobe loads") as info:
        local_entry(str(tmp_path / "junk"))
    assert "\n" not in str(info.value)


def test_pickled_weights_are_refused(tmp_path: Path) -> None:
    _save_tiny_vit(tmp_path / "vit")
    for weights in (tmp_path / "vit").glob("*.safetensors"):
        weights.rename(weights.with_name("pytorch_model.bin"))
    with pytest.raises(LocalModelError, match="no .safetensors weights .only pytorch_model.bin.; zooprobe never"):
        local_entry(str(tmp_path / "vit"))


def test_a_keras_file_loads_in_safe_mode(tmp_path: Path) -> None:
    import keras

    import zooprobe

    inputs = keras.Input((32, 32, 3))
    outputs = keras.layers.GlobalAveragePooling2D()(keras.layers.Conv2D(4, 3, activation="relu")(inputs))
    keras.Model(inputs, outputs).save(tmp_path / "tiny.keras")
    backbone = zooprobe.load(str(tmp_path / "tiny.keras"))
    batch = backbone.preprocess([np.full((32, 32, 3), 128, dtype=np.uint8)])
    assert tuple(backbone.extract(batch, ["output"])["output"].shape) == (1, 4)


def test_own_savedmodel_folder_needs_no_trust_flag(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    import zooprobe
    from tests.tiny_tf import save_tiny_feature_vector

    save_tiny_feature_vector(tmp_path / "sm")
    backbone = zooprobe.load(str(tmp_path / "sm"))
    assert backbone.cut_points == ["output"]
    assert "trusted code" not in capsys.readouterr().err


def test_assess_takes_a_local_path_among_its_models(
    synced: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from zooprobe.evaluator.assess import assess

    home = home_with_catalog(synced, tmp_path / "home")
    monkeypatch.chdir(tmp_path)
    _save_tiny_vit(tmp_path / "vit")
    data = write_digits_npz(tmp_path / "digits.npz", 10)
    result = assess(str(data), models=["./vit"], home=home, progress=False, metrics=["knn_accuracy"])
    (candidate,) = result.results
    assert candidate.status == "done", candidate.skip_reason
    assert candidate.model == f"local:{(tmp_path / 'vit').resolve()}"
