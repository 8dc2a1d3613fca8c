"""The feature cache: content-addressed keys and writing features into it without a half-written file.

A feature file is keyed by (weights identity, preprocessing, dataset content hash, cut point); it is
written in chunks into a temporary ``.npy`` memory map and renamed into place only when complete,
so a killed extraction never leaves a file that looks finished, and memory stays bounded by one
batch whatever the dataset size.
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
import time
from collections.abc import Iterable
from dataclasses import asdict
from pathlib import Path
from typing import Any

from ..data.datasets import Dataset
from .contract import Backbone


def cache_key(backbone: Backbone, dataset: Dataset, layer: str, dataset_hash: str | None = None) -> str:
    """sha256 over the weights' identity, the preprocessing, the dataset's content and the cut point."""
    entry = backbone.entry
    identity = {
        "entry": entry.id,
        "source_version": entry.source_version,
        "handle": entry.handle,
        "preprocessing": asdict(entry.input),
        "dataset": dataset_hash or dataset.content_hash(),
        "layer": layer,
        "pooling": backbone.pooling,
    }
    return hashlib.sha256(json.dumps(identity, sort_keys=True, default=str).encode()).hexdigest()


def write_features(
    backbone: Backbone,
    rows: int,
    layers: list[str],
    paths: dict[str, Path],
    show_progress: bool,
    batches: Iterable[tuple[Any, Any]],
    unit: str = "images",
) -> None:
    """Compute ``layers`` of ``rows`` examples into ``paths``.

    ``batches`` yields (row indices, model input); row indices ``None`` mean the next rows in order.
    """
    import numpy as np

    from ..progress import ProgressBar, note

    outputs: dict[str, Any] = {}
    temps = {layer: path.with_name(f".{path.stem}.{os.getpid()}.tmp.npy") for layer, path in paths.items()}
    done = 0
    started = time.perf_counter()
    interactive = show_progress and sys.stderr.isatty()
    try:
        with ProgressBar(rows, f"extracting {backbone.entry.id}", enabled=show_progress) as bar:
            for indices, batch in batches:
                features = backbone.extract(batch, layers)
                for layer in layers:
                    values = features[layer].float().cpu().numpy()
                    if layer not in outputs:
                        outputs[layer] = np.lib.format.open_memmap(
                            temps[layer], mode="w+", dtype=np.float32, shape=(rows, values.shape[1])
                        )
                    outputs[layer][slice(done, done + len(values)) if indices is None else indices] = values
                done += len(batch)
                bar.update(len(batch))
                if interactive:  # off a terminal the label is printed once, not redrawn
                    rate = done / (time.perf_counter() - started)
                    bar.label = f"extracting {backbone.entry.id} ({rate:.0f} {unit}/s)"
        if show_progress and not interactive:
            seconds = time.perf_counter() - started
            rate = done / max(seconds, 1e-9)
            note(f"extracted {done} {unit} in {seconds:.1f} s ({rate:.0f} {unit}/s)")
        for layer in layers:
            outputs[layer].flush()
            del outputs[layer]
            os.replace(temps[layer], paths[layer])
    finally:
        for temp in temps.values():
            temp.unlink(missing_ok=True)
