"""The feature cache: content-addressed keys and writing features into it without a half-written file.

A feature file is keyed by (weights identity, preprocessing, dataset content hash, cut point); it is
written in chunks into a temporary ``.npy`` memory map and renamed into place only when complete,
so a killed extraction never leaves a file that looks finished, and memory stays bounded by one
batch whatever the dataset size. The temporary file is synced to disk before the rename, so a
crash of the machine cannot leave a torn file under the final name either; a file damaged some
other way (truncated, overwritten) fails :func:`cached_file_ok` and is computed again.
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
import time
from collections.abc import Iterable, Iterator
from dataclasses import asdict
from pathlib import Path
from typing import Any

from ..data.datasets import Dataset
from .contract import Backbone


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
        "pooling": backbone.pooling,
    }
    if backbone.resize_rule is not None:  # images resized by an older rule get keys of their own
        identity["resize"] = backbone.resize_rule
    return hashlib.sha256(json.dumps(identity, sort_keys=True, default=str).encode()).hexdigest()


def cached_file_ok(path: Path, rows: int) -> bool:
    """Whether ``path`` holds a complete feature file of ``rows`` examples: a float32 (rows, D) ``.npy``
    header and exactly the bytes it announces. A file that exists but fails is removed (it is then
    computed again), so a damaged cache costs one extraction, never a candidate."""
    import numpy as np

    try:
        with open(path, "rb") as handle:
            version = np.lib.format.read_magic(handle)
            header = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
            shape, fortran, dtype = header(handle)
            offset = handle.tell()
            size = os.fstat(handle.fileno()).st_size
    except FileNotFoundError:
        return False
    except (OSError, ValueError, SyntaxError):  # not an .npy (a truncated or overwritten header)
        shape, fortran, dtype, offset, size = (), True, None, 0, -1
    good = (
        dtype == np.dtype(np.float32)
        and not fortran
        and len(shape) == 2
        and shape[0] == rows
        and shape[1] > 0
        and size == offset + rows * shape[1] * 4
    )
    if not good:
        path.unlink(missing_ok=True)
    return good


def write_features(
    backbone: Backbone,
    rows: int,
    layers: list[str],
    paths: dict[str, Path],
    show_progress: bool,
    batches: Iterable[tuple[Any, Any]],
    unit: str = "images",
) -> None:
    """Compute ``layers`` of ``rows`` examples into ``paths``, unless another process does it at the same time.

    ``batches`` yields (row indices, model input); row indices ``None`` mean the next rows in order. Each
    file's lock is held while it is computed (:mod:`.feature_lock`): a process needing the same file waits
    for the one computing it, then reads the file; ``batches`` is not consumed when nothing is left to compute.
    """
    from .feature_lock import extraction_locks

    with extraction_locks(paths[layer] for layer in layers):
        left = [layer for layer in layers if not cached_file_ok(paths[layer], rows)]  # computed while we waited?
        if not left:
            return

        def computed() -> Iterator[tuple[Any, dict[str, Any]]]:
            for indices, batch in batches:
                features = backbone.extract(batch, left)
                yield indices, {layer: features[layer].float().cpu().numpy() for layer in left}

        chosen = {layer: paths[layer] for layer in left}
        write_feature_rows(rows, chosen, f"extracting {backbone.entry.id}", show_progress, computed(), unit)


def write_feature_rows(
    rows: int,
    paths: dict[str, Path],
    label: str,
    show_progress: bool,
    chunks: Iterable[tuple[Any, dict[str, Any]]],
    unit: str = "images",
) -> None:
    """Write features computed elsewhere (``chunks`` of (row indices, {layer: N x D array})) into ``paths``,
    each file complete or absent. Row indices ``None`` mean the next rows in order."""
    import numpy as np

    from ..progress import ProgressBar, note

    outputs: dict[str, Any] = {}
    temps = {layer: path.with_name(f".{path.stem}.{os.getpid()}.tmp.npy") for layer, path in paths.items()}
    done = 0
    started = time.perf_counter()
    interactive = show_progress and sys.stderr.isatty()
    try:
        with ProgressBar(rows, label, enabled=show_progress) as bar:
            for indices, features in chunks:
                count = 0
                for layer, values in features.items():
                    if layer not in outputs:
                        outputs[layer] = np.lib.format.open_memmap(
                            temps[layer], mode="w+", dtype=np.float32, shape=(rows, values.shape[1])
                        )
                    outputs[layer][slice(done, done + len(values)) if indices is None else indices] = values
                    count = len(values)
                done += count
                bar.update(count)
                if interactive:  # off a terminal the label is printed once, not redrawn
                    rate = done / (time.perf_counter() - started)
                    bar.label = f"{label} ({rate:.0f} {unit}/s)"
        if show_progress and not interactive:
            seconds = time.perf_counter() - started
            rate = done / max(seconds, 1e-9)
            note(f"extracted {done} {unit} in {seconds:.1f} s ({rate:.0f} {unit}/s)")
        for layer in paths:
            outputs[layer].flush()
            del outputs[layer]
            with open(temps[layer], "rb") as written:  # on disk before the rename: no torn file after a crash
                os.fsync(written.fileno())
            os.replace(temps[layer], paths[layer])
    finally:
        for temp in temps.values():
            temp.unlink(missing_ok=True)
