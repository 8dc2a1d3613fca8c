"""Feature extraction over a dataset with the real MobileNetV2, and the feature cache."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from zooprobe.backbones.features import extract_features
from zooprobe.data.datasets import read_dataset

from .test_backbone import mobilenet  # noqa: F401 - fixture


def write_digits(path: Path, count: int = 48, bump: int = 0) -> Path:
    from sklearn.datasets import load_digits

    digits = load_digits()
    x = (digits.images[:count] * 15).astype(np.uint8)
    x[0, 0, 0] += bump
    np.savez(path, x=x, y=digits.target[:count])
    return path


def test_extracts_every_image_at_several_layers(mobilenet, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]  # noqa: F811
    dataset = read_dataset(str(write_digits(tmp_path / "d.npz")))
    feats = extract_features(mobilenet, dataset, ["features.3", "pre_logits"], batch_size=16, progress=False)
    assert feats["features.3"].shape == (48, 24) and feats["pre_logits"].shape == (48, 1280)
    one = mobilenet.extract(mobilenet.preprocess([dataset.load_image(17)]), ["pre_logits"])["pre_logits"]
    np.testing.assert_allclose(feats["pre_logits"][17], one[0].numpy(), rtol=1e-4, atol=1e-5)


def test_progress_off_a_terminal_is_two_lines(mobilenet, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:  # type: ignore[no-untyped-def]  # noqa: F811
    # click prints every new label of a progress bar on its own line when stderr is not a terminal:
    # a log (CI, nohup) gets the label once and a closing rate, not one line per batch.
    dataset = read_dataset(str(write_digits(tmp_path / "d.npz")))
    extract_features(mobilenet, dataset, ["pre_logits"], batch_size=8, cache_dir=tmp_path / "cache", progress=True)
    lines = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert len(lines) == 2, lines
    assert lines[0] == f"extracting {mobilenet.entry.id}"
    assert lines[1].startswith("extracted 48 images in ") and lines[1].endswith("images/s)")


def test_cache_hit_runs_no_model_and_changed_data_recomputes(mobilenet, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]  # noqa: F811
    import torch

    cache = tmp_path / "cache"
    dataset = read_dataset(str(write_digits(tmp_path / "d.npz")))
    first = extract_features(mobilenet, dataset, ["pre_logits"], cache_dir=cache, progress=False)
    assert len(list(cache.glob("*.npy"))) == 1

    class Forbidden(torch.nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            raise AssertionError("the model ran although the features were cached")

    real_model = mobilenet.model
    mobilenet.model = Forbidden()
    again = extract_features(mobilenet, dataset, ["pre_logits"], cache_dir=cache, progress=False)
    np.testing.assert_array_equal(first["pre_logits"], again["pre_logits"])
    mobilenet.model = real_model

    changed = read_dataset(str(write_digits(tmp_path / "d.npz", bump=7)))
    extract_features(mobilenet, changed, ["pre_logits"], cache_dir=cache, progress=False)
    assert len(list(cache.glob("*.npy"))) == 2


def test_interrupted_extraction_leaves_no_cache_file(mobilenet, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]  # noqa: F811
    cache = tmp_path / "cache"
    dataset = read_dataset(str(write_digits(tmp_path / "d.npz")))
    original = dataset.load_image

    def failing(index: int):  # type: ignore[no-untyped-def]
        if index == 40:
            raise KeyboardInterrupt
        return original(index)

    object.__setattr__(dataset, "load_image", failing)
    with pytest.raises(KeyboardInterrupt):
        extract_features(mobilenet, dataset, ["pre_logits"], batch_size=16, cache_dir=cache, progress=False)
    assert list(cache.iterdir()) == []


def test_worker_processes_decode_files_to_the_same_features(mobilenet, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]  # noqa: F811
    from PIL import Image
    from sklearn.datasets import load_digits

    digits = load_digits()
    for i in range(12):
        folder = tmp_path / "images" / str(digits.target[i] % 2)
        folder.mkdir(parents=True, exist_ok=True)
        Image.fromarray((digits.images[i] * 15).astype(np.uint8)).save(folder / f"{i}.png")
    dataset = read_dataset(str(tmp_path / "images"))
    two = extract_features(
        mobilenet, dataset, ["pre_logits"], batch_size=4, num_workers=2, cache_dir=tmp_path / "a", progress=False
    )
    none = extract_features(
        mobilenet, dataset, ["pre_logits"], batch_size=4, num_workers=0, cache_dir=tmp_path / "b", progress=False
    )
    np.testing.assert_array_equal(two["pre_logits"], none["pre_logits"])


def test_channels_last_gives_the_same_features(mobilenet, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]  # noqa: F811
    dataset = read_dataset(str(write_digits(tmp_path / "d.npz", count=20)))
    layers = ["features.3", "pre_logits"]
    fast = extract_features(mobilenet, dataset, layers, cache_dir=tmp_path / "a", progress=False, channels_last=True)
    assert mobilenet.channels_last and mobilenet.device == "cpu"
    assert mobilenet.model.features[0][0].weight.is_contiguous(memory_format=torch_channels_last())
    plain = extract_features(mobilenet, dataset, layers, cache_dir=tmp_path / "b", progress=False, channels_last=False)
    assert not mobilenet.model.features[0][0].weight.is_contiguous(memory_format=torch_channels_last())
    for layer in layers:
        np.testing.assert_allclose(fast[layer], plain[layer], rtol=1e-4, atol=1e-4)


def torch_channels_last() -> object:
    import torch

    return torch.channels_last


def test_device_choice(monkeypatch: pytest.MonkeyPatch) -> None:
    import torch

    from zooprobe.backbones.backbone import pick_device
    from zooprobe.errors import InvalidChoiceError, ZooprobeError

    monkeypatch.delenv("ZOOPROBE_DEVICE", raising=False)
    best = "cuda" if torch.cuda.is_available() else "mps" if torch.backends.mps.is_available() else "cpu"
    assert pick_device() == best
    assert pick_device("cpu") == "cpu"
    monkeypatch.setenv("ZOOPROBE_DEVICE", "cpu")
    assert pick_device() == "cpu"
    with pytest.raises(InvalidChoiceError, match="unknown device 'gpu'.*valid: cpu, cuda, cuda:N, mps"):
        pick_device("gpu")
    if not torch.cuda.is_available():
        with pytest.raises(ZooprobeError, match="device 'cuda:1' is not present here"):
            pick_device("cuda:1")
