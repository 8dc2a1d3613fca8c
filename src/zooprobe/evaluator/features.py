"""Turning a dataset into pooled features at a backbone's cut points, with a content-addressed cache.

Cache invariants: a feature file is keyed by (weights identity, preprocessing, dataset content hash,
cut point); it is written in chunks into a temporary ``.npy`` memory map and renamed into place only
when complete, so a killed extraction never leaves a file that looks finished, and memory stays
bounded by one batch whatever the dataset size.
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
import time
from collections.abc import Iterable, Sequence
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..registry.store import default_home
from .backbone import Backbone, blocks_output_channels_last, pick_device
from .datasets import Dataset

if TYPE_CHECKING:
    import numpy as np
    import numpy.typing as npt


def cache_key(backbone: Backbone, dataset: Dataset, layer: str, dataset_hash: str | None = None) -> str:
    """sha256 over the weights' identity, the preprocessing (the entry's input spec and the backbone's
    resize rule), the dataset's content and the cut point."""
    entry = backbone.entry
    preprocessing = asdict(entry.input)
    if preprocessing["crop_mode"] is None:  # keys from before crop_mode existed stay valid where it is unset
        del preprocessing["crop_mode"]
    identity = {
        "entry": entry.id,
        "source_version": entry.source_version,
        "handle": entry.handle,
        "preprocessing": preprocessing,
        "dataset": dataset_hash or dataset.content_hash(),
        "layer": layer,
        # channels-last blocks were once pooled over W and C: their features get keys of their own
        "pooling": "mean over H, W of (N, H, W, C)" if blocks_output_channels_last(backbone.model) else "mean",
    }
    if backbone.resize_rule is not None:  # images resized by an older rule get keys of their own
        identity["resize"] = backbone.resize_rule
    return hashlib.sha256(json.dumps(identity, sort_keys=True, default=str).encode()).hexdigest()


class _PreprocessedImages:
    """Map-style dataset of preprocessed images; module-level so spawned DataLoader workers can pickle it."""

    def __init__(self, backbone: Backbone, dataset: Dataset) -> None:
        self.backbone = backbone
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, index: int) -> Any:
        return self.backbone.preprocess([self.dataset.load_image(index)])[0]


def _images_batches(backbone: Backbone, dataset: Dataset, batch_size: int, num_workers: int) -> Any:
    import torch.utils.data

    images: Any = _PreprocessedImages(backbone, dataset)
    return torch.utils.data.DataLoader(
        images,
        batch_size=batch_size,
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
    missing = [layer for layer in layers if not paths[layer].exists()]
    if missing:
        backbone.to(pick_device(device), channels_last=channels_last)
        _compute(backbone, dataset, missing, paths, batch_size, num_workers, progress)
    return {layer: np.load(paths[layer], mmap_mode="r") for layer in layers}


def _compute(
    backbone: Backbone,
    dataset: Dataset,
    layers: list[str],
    paths: dict[str, Path],
    batch_size: int,
    num_workers: int | None,
    show_progress: bool,
    batches: Iterable[tuple[Any, Any]] | None = None,
    unit: str = "images",
) -> None:
    """Compute ``layers`` into ``paths``; ``batches`` yields (row indices, model input), default the images in order."""
    import click
    import numpy as np

    if num_workers is None:
        num_workers = 0 if dataset.paths is None else min(2, os.cpu_count() or 1)
    if batches is None:
        batches = ((None, batch) for batch in _images_batches(backbone, dataset, batch_size, num_workers))
    outputs: dict[str, Any] = {}
    temps = {layer: path.with_name(f".{path.stem}.{os.getpid()}.tmp.npy") for layer, path in paths.items()}
    done = 0
    started = time.perf_counter()
    interactive = show_progress and sys.stderr.isatty()
    try:
        with (
            click.progressbar(
                length=len(dataset), label=f"extracting {backbone.entry.id}", file=sys.stderr, show_eta=True
            )
            if show_progress
            else _NoBar() as bar
        ):
            for rows, batch in batches:
                features = backbone.extract(batch, layers)
                for layer in layers:
                    values = features[layer].float().cpu().numpy()
                    if layer not in outputs:
                        outputs[layer] = np.lib.format.open_memmap(
                            temps[layer], mode="w+", dtype=np.float32, shape=(len(dataset), values.shape[1])
                        )
                    outputs[layer][slice(done, done + len(values)) if rows is None else rows] = values
                done += len(batch)
                bar.update(len(batch))
                if interactive:  # off a terminal click prints every new label on its own line
                    rate = done / (time.perf_counter() - started)
                    bar.label = f"extracting {backbone.entry.id} ({rate:.0f} {unit}/s)"
        if show_progress and not interactive:
            seconds = time.perf_counter() - started
            rate = done / max(seconds, 1e-9)
            click.echo(f"extracted {done} {unit} in {seconds:.1f} s ({rate:.0f} {unit}/s)", err=True)
        for layer in layers:
            outputs[layer].flush()
            del outputs[layer]
            os.replace(temps[layer], paths[layer])
    finally:
        for temp in temps.values():
            temp.unlink(missing_ok=True)


class _NoBar:
    label = ""

    def __enter__(self) -> _NoBar:
        return self

    def __exit__(self, *exc: object) -> None:
        return None

    def update(self, _n: int) -> None:
        return None
