"""One candidate's feature extraction sharded over a Ray cluster, for datasets too large for one worker.

With ``--executor ray`` and a dataset of at least ``$ZOOPROBE_SHARD_IMAGES`` images (default
:data:`DEFAULT_SHARD_IMAGES`), the driver first extracts a candidate's features with Ray Data
(:func:`zooprobe.executors.ray_data.map_rows`): an actor pool over the cluster's CPUs, each actor loading
the backbone once and extracting batches of images, returned in dataset order. The driver writes them
into the feature cache file the local executor writes (same key, same format), so the candidate's unit
then reads them from the cache and scores as usual. The cache directory must be storage the driver and
every worker see (``--cache-dir``).
"""

from __future__ import annotations

import os
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import ZooprobeError
from ..executors.ray_data import call_on_worker, cluster_cpus, map_rows
from .candidate import _load, extraction_layers
from .units import CandidateTask, ProgressLines, SharedData

if TYPE_CHECKING:
    from ..backbones.backbone import Backbone
    from ..data.datasets import Dataset

SHARD_ENV = "ZOOPROBE_SHARD_IMAGES"
DEFAULT_SHARD_IMAGES = 20_000
_PREFIX = "features:"  # column names: a cut point may be called anything, 'id' included


def shard_threshold() -> int:
    """The dataset size from which the ray executor shards a candidate's extraction (``$ZOOPROBE_SHARD_IMAGES``).

    :raises ZooprobeError: the variable is not a positive whole number.
    """
    value = os.environ.get(SHARD_ENV, str(DEFAULT_SHARD_IMAGES))
    if not value.isdigit() or int(value) < 1:
        raise ZooprobeError(
            f"{SHARD_ENV}={value!r} is not a number of images; set it to a positive whole number"
            f" (default {DEFAULT_SHARD_IMAGES}) or unset it"
        )
    return int(value)


def _missing(task: CandidateTask, shared: SharedData) -> dict[str, str]:
    """On a worker: {cut point: cache file} of the candidate's features not yet in the cache (none for a
    candidate that cannot load, or for data that are not images: its unit handles those as usual)."""
    from ..backbones.feature_cache import cache_key, cached_file_ok

    dataset = shared.open()[0]
    if dataset.modality != "image":
        return {}
    try:
        backbone = _load(task.entry, task.resolution, task.loader, task.trust_remote_code)
        layers = extraction_layers(backbone, task)
    except Exception:  # noqa: BLE001 - the candidate's unit meets the same failure and reports it
        return {}
    digest = dataset.content_hash()
    paths = {layer: task.cache_dir / f"{cache_key(backbone, dataset, layer, digest)}.npy" for layer in layers}
    return {layer: str(path) for layer, path in paths.items() if not cached_file_ok(path, len(dataset))}


def _setup(task: CandidateTask, layers: list[str], shared: SharedData) -> tuple[Backbone, Dataset, list[str]]:
    """Once per actor: the backbone, on the actor's device, and the data."""
    from ..backbones.backbone import pick_device

    backbone = _load(task.entry, task.resolution, task.loader, task.trust_remote_code)
    backbone.to(pick_device(None), channels_last=True)
    return backbone, shared.open()[0], layers


def _extract(state: tuple[Backbone, Dataset, list[str]], rows: Any) -> dict[str, Any]:
    """One batch of rows: their features at each cut point, as :func:`extract_features` computes them."""
    from ..backbones.features import preprocessed

    backbone, dataset, layers = state
    features = backbone.extract(preprocessed(backbone, dataset, rows), layers)
    return {_PREFIX + layer: features[layer].float().cpu().numpy() for layer in layers}


def extract_sharded(task: CandidateTask, shared: Any, rows: int, progress: bool) -> list[str]:
    """The candidate's features over the cluster into the feature cache; returns the cut points extracted
    (none when all were cached). ``shared``: the :class:`SharedData` (or its object-store reference)."""
    from ..backbones.feature_cache import write_feature_rows

    missing = call_on_worker(_missing, task, shared)
    if not missing:
        return []
    layers = list(missing)
    mapped = map_rows(
        partial(_setup, task, layers), _extract, shared, rows, batch_size=task.batch_size, actors=cluster_cpus()
    )
    chunks = ((ids, {name[len(_PREFIX) :]: values for name, values in columns.items()}) for ids, columns in mapped)
    paths = {layer: Path(path) for layer, path in missing.items()}
    for path in paths.values():  # the driver may be the first to write this cache
        path.parent.mkdir(parents=True, exist_ok=True)
    write_feature_rows(rows, paths, f"extracting {task.entry.id} (sharded)", progress, chunks)
    return layers


def shard_extraction(task: CandidateTask, shared: Any, rows: int, say: ProgressLines) -> None:
    """:func:`extract_sharded` for the assessment's driver: a failure only means the unit extracts alone."""
    try:
        layers = extract_sharded(task, shared, rows, say.enabled)
    except Exception as exc:  # noqa: BLE001 - the unit then extracts on its worker, and reports its own failure
        say.say(f"{task.entry.id}: sharded extraction failed ({type(exc).__name__}: {exc}); its unit extracts alone")
        return
    if layers:
        say.say(f"{task.entry.id}: features at {len(layers)} cut points extracted over the cluster")
