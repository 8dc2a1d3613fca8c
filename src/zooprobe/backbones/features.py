"""Turning a dataset into pooled features at a backbone's cut points, cached (:mod:`.feature_cache`)."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..catalog.store import default_home
from ..data.datasets import Dataset
from .backbone import pick_device
from .contract import Backbone
from .feature_cache import cache_key, cached_file_ok, write_features
from .resize import resized_size

if TYPE_CHECKING:
    import numpy as np
    import numpy.typing as npt


class _PreprocessedBatches:
    """Map-style dataset whose item ``i`` is batch ``i``, preprocessed as one tensor; module-level so spawned
    DataLoader workers can pickle it.

    Preprocessing a batch at once, not image by image, matters: per image, the normalisation's small tensor
    operations and the DataLoader's collation of 3 x 224 x 224 tensors cost MobileNetV2 a quarter of its
    throughput on 2 cores (benchmarks/bench_extract.py), as much as 0.07 s an image on a busy machine
    against 0.002 s in batches.
    """

    def __init__(self, backbone: Backbone, dataset: Dataset, batch_size: int) -> None:
        self.backbone = backbone
        self.dataset = dataset
        self.batch_size = batch_size

    def __len__(self) -> int:
        return -(-len(self.dataset) // self.batch_size)

    def __getitem__(self, index: int) -> Any:
        start = index * self.batch_size
        rows = range(start, min(start + self.batch_size, len(self.dataset)))
        return self.backbone.preprocess([self.image(row) for row in rows])

    def image(self, index: int) -> Any:
        """The decoded image at ``index``, no larger than preprocessing needs."""
        if self.backbone.resize_rule is None or self.dataset.paths is None:
            return self.dataset.load_image(index)
        # decode large files only as large as resize_and_crop needs (memory follows the batch)
        height, width = self.dataset.shapes[index][:2]
        spec = self.backbone.entry.input
        min_size = resized_size(height, width, self.backbone.resolution, spec.crop_pct, spec.crop_mode)
        return self.dataset.load_image(index, min_size)


def preprocessed(backbone: Backbone, dataset: Dataset, indices: Sequence[int]) -> Any:
    """The model input of the images at ``indices``, each preprocessed as :func:`extract_features` does."""
    batches = _PreprocessedBatches(backbone, dataset, max(1, len(indices)))
    return backbone.preprocess([batches.image(int(index)) for index in indices])


def _images_batches(backbone: Backbone, dataset: Dataset, batch_size: int, num_workers: int) -> Any:
    import torch.utils.data

    batches: Any = _PreprocessedBatches(backbone, dataset, batch_size)
    return torch.utils.data.DataLoader(
        batches,
        batch_size=None,  # each item is a whole batch already
        shuffle=False,
        num_workers=num_workers,
        pin_memory=backbone.device.startswith("cuda"),
    )


def extract_features(
    backbone: Backbone,
    dataset: Dataset,
    layers: Sequence[str],
    *,
    batch_size: int = 64,
    num_workers: int | None = None,
    cache_dir: Path | None = None,
    progress: bool = True,
    device: str | None = None,
    channels_last: bool = True,
) -> dict[str, npt.NDArray[np.float32]]:
    """Pooled features (N x D, float32) of every image of ``dataset`` at each of ``layers``.

    Layers already in the cache are read (memory-mapped), the rest are computed together in one
    pass over the data: images decoded ahead by DataLoader workers (into pinned memory for CUDA),
    ``torch.inference_mode``, autocast on CUDA, one forward pass per batch stopping at the deepest
    layer needed.

    Args:
        cache_dir: where feature files live (default ``$ZOOPROBE_HOME/features``).
        num_workers: decoding processes (default: none for datasets held in memory, else up to 2).
        device: cpu, cuda, cuda:N or mps (default ``$ZOOPROBE_DEVICE``, else cuda > mps > cpu);
            the backbone's model moves there.
        channels_last: run convolutions channels-last (measured faster on CPU, see
            ``benchmarks/bench_extract.py``).
    """
    import numpy as np

    if dataset.modality == "text":
        from .text_features import extract_text_features

        return extract_text_features(
            backbone, dataset, layers, batch_size=batch_size, cache_dir=cache_dir, progress=progress
        )
    if dataset.modality != "image":
        raise ValueError(f"dataset '{dataset.name}' holds {dataset.modality}; image backbones need images")
    backbone.check_cut_points(layers)
    cache = cache_dir or default_home() / "features"
    cache.mkdir(parents=True, exist_ok=True)
    digest = dataset.content_hash()
    paths = {layer: cache / f"{cache_key(backbone, dataset, layer, digest)}.npy" for layer in layers}
    missing = [layer for layer in layers if not cached_file_ok(paths[layer], len(dataset))]
    if missing:
        backbone.to(pick_device(device), channels_last=channels_last)
        if num_workers is None:
            num_workers = 0 if dataset.paths is None else min(2, os.cpu_count() or 1)
        batches = ((None, batch) for batch in _images_batches(backbone, dataset, batch_size, num_workers))
        write_features(backbone, len(dataset), missing, paths, progress, batches)
    return {layer: np.load(paths[layer], mmap_mode="r") for layer in layers}
