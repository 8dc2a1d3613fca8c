"""Turning a dataset of texts into pooled features at a text backbone's cut points, cached like images.

The cache is :mod:`zooprobe.backbones.features`' own: the same content-addressed key (weights
identity including the repo's commit, preprocessing, dataset content hash, cut point) and the same
chunked ``.npy`` memory map renamed into place only when complete. Texts are batched in order of
length so that a batch pads to similar lengths; rows are written back at their original positions.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..catalog.store import default_home
from ..data.datasets import Dataset
from ..errors import ZooprobeError
from .contract import Backbone
from .feature_cache import cache_key, write_features

if TYPE_CHECKING:
    import numpy as np
    import numpy.typing as npt


def extract_text_features(
    backbone: Backbone,
    dataset: Dataset,
    layers: Sequence[str],
    *,
    batch_size: int = 64,
    cache_dir: Path | None = None,
    progress: bool = True,
) -> dict[str, npt.NDArray[np.float32]]:
    """Pooled features (N x D, float32) of every text of ``dataset`` at each of ``layers``.

    Cached layers are read (memory-mapped); the rest are computed together, one forward pass per
    batch under ``torch.inference_mode``.

    :raises ZooprobeError: when the dataset holds no texts or the backbone is not a text model.
    """
    import numpy as np

    if dataset.texts is None:
        raise ZooprobeError(f"dataset '{dataset.name}' holds {dataset.modality}; text backbones need texts")
    if backbone.entry.modality != "text":
        raise ZooprobeError(
            f"'{backbone.entry.id}' is an {backbone.entry.modality} model; pick a text model for '{dataset.name}'"
        )
    backbone.check_cut_points(layers)
    cache = cache_dir or default_home() / "features"
    cache.mkdir(parents=True, exist_ok=True)
    digest = dataset.content_hash()
    paths = {layer: cache / f"{cache_key(backbone, dataset, layer, digest)}.npy" for layer in layers}
    missing = [layer for layer in layers if not paths[layer].exists()]
    if missing:
        batches = _token_batches(backbone, dataset.texts, batch_size)
        write_features(backbone, len(dataset), missing, paths, progress, batches, unit="texts")
    return {layer: np.load(paths[layer], mmap_mode="r") for layer in layers}


def _token_batches(backbone: Backbone, texts: Sequence[str], batch_size: int) -> Iterator[tuple[Any, Any]]:
    """(row indices, tokenized batch) in order of text length, so that each batch pads little."""
    import numpy as np

    order = np.argsort([len(text) for text in texts], kind="stable")
    for start in range(0, len(texts), batch_size):
        rows = order[start : start + batch_size]
        yield rows, backbone.preprocess([texts[i] for i in rows])
