"""Fine-tuning streams its batches: the same order whatever the workers, and memory that follows the batch."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from tests.toy_backbone import toy_cnn, toy_entry

# A child process: fine-tune a toy CNN (``full``, one epoch) on COUNT generated 224 px images, then print its
# peak RSS and that of its DataLoader workers, in kB.
_CHILD = r"""
import json, resource, sys
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from zooprobe.backbones.backbone import TorchBackbone, block_cut_points, last_linear
from zooprobe.catalog.schema import InputSpec
from zooprobe.data.dataset import Dataset
from zooprobe.finetuning.strategy import parse_strategy
from zooprobe.finetuning.trainer import Trainer, TrainSettings
from zooprobe.runs.store import RunStore
from tests.toy_backbone import toy_entry

count, root = int(sys.argv[1]), Path(sys.argv[2])
folder = root / f"images-{count}"
folder.mkdir()
rng = np.random.default_rng(0)
paths = []
ramp = np.linspace(0, 1, 224, dtype=np.float32)[None, :, None]
for i in range(count):  # smooth colour ramps: small JPEG files, full-size 224 px images once decoded
    path = folder / f"{i}.jpg"
    pixels = (ramp * rng.integers(0, 256, (1, 1, 3)) + rng.integers(0, 64, (224, 1, 1))).clip(0, 255)
    Image.fromarray(pixels.astype(np.uint8)).save(path, quality=85)
    paths.append(str(path))
labels = np.arange(count, dtype=np.int64) % 2
dataset = Dataset("generated", "image", labels, ("a", "b"), paths=tuple(paths), shapes=((224, 224, 3),) * count)
torch.manual_seed(0)
model = torch.nn.Sequential(  # strided first: the activations stay small at 224 px
    torch.nn.Conv2d(3, 8, 8, stride=8), torch.nn.ReLU(), torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten(),
    torch.nn.Linear(8, 5),
).eval()
entry = toy_entry("streamed")
entry = replace(entry, input=replace(entry.input, default_resolution=(224, 224)))
backbone = TorchBackbone(entry, model, block_cut_points(model, last_linear(model)), last_linear(model))
with RunStore(root / f"home-{count}") as store:
    run = store.create("finetune", "generated", {}, data_hash="x", versions={})
    trainer = Trainer(
        store=store, run_id=run.id, run_dir=store.home / "runs" / run.id, backbone=backbone, dataset=dataset,
        train_idx=np.arange(count - count // 5), val_idx=np.arange(count - count // 5, count),
        settings=TrainSettings(epochs=1, batch_size=32), device="cpu", progress=False, on_epoch=None,
    )
    trainer.run_arm("full", parse_strategy("full"))
    del trainer  # its DataLoaders' persistent workers end and are reaped: their peaks count below
own = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
workers = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
print(json.dumps({"self": own, "workers": workers}))
"""


def _peak_rss(count: int, root: Path) -> dict[str, int]:
    result = subprocess.run(
        [sys.executable, "-c", _CHILD, str(count), str(root)], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stderr[-3000:]
    peaks: dict[str, int] = json.loads(result.stdout.strip().splitlines()[-1])
    return peaks


def test_fine_tuning_memory_follows_the_batch_not_the_dataset(tmp_path: Path) -> None:
    """5,000 images at 224 px (3 GB preprocessed, refused before) peak within 1.2x the RSS of 500, in the
    training process and in its loader workers (about 20 s of CPU)."""
    small, large = _peak_rss(500, tmp_path), _peak_rss(5000, tmp_path)
    assert large["self"] <= 1.2 * small["self"], (small, large)
    assert large["workers"] <= 1.2 * max(small["workers"], 1), (small, large)


@pytest.mark.parametrize("workers", [0, 2])
def test_streamed_batches_are_those_of_the_in_memory_order(tmp_path: Path, workers: int) -> None:
    """The same batches, in the same (seed, epoch) order, as preprocessed tensors in memory would give,
    with or without worker processes; a last batch of one joins the one before."""
    import torch
    from PIL import Image

    from zooprobe.data.dataset import Dataset
    from zooprobe.finetuning.batches import Batches, StreamedBatches

    rng = np.random.default_rng(0)
    paths = []
    for i in range(33):
        path = tmp_path / f"{i}.png"
        Image.fromarray(rng.integers(0, 256, (20, 24, 3), dtype=np.uint8)).save(path)
        paths.append(str(path))
    dataset = Dataset("d", "image", np.arange(33) % 3, ("a", "b", "c"), paths=tuple(paths), shapes=((20, 24, 3),) * 33)
    backbone = toy_cnn(toy_entry("toy"))
    indices = np.arange(33, dtype=np.int64)
    labels = torch.as_tensor(dataset.labels)
    streamed = StreamedBatches(backbone, dataset, indices, labels, 16, torch.device("cpu"), num_workers=workers)
    in_memory = Batches(backbone.preprocess([dataset.load_image(i) for i in range(33)]), labels, 16)
    for seed in (None, 5, 6, 5):
        got, expected = list(streamed.iterate(seed)), list(in_memory.iterate(seed))
        assert [len(y) for _, y in got] == [16, 17]
        for (x, y), (x_expected, y_expected) in zip(got, expected, strict=True):
            assert torch.equal(y, y_expected) and torch.allclose(x, x_expected)
