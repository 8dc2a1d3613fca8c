"""Built-in source: TF-Hub image feature-vector and text-embedding models (``tfhub:<handle path>``).

TF-Hub has no listing API, so the entries come from a curated snapshot shipped as package data
(``data/tfhub_snapshot.json``): each fact is read off the model's own page in the tfhub.dev
repository, whose path and commit every entry's provenance names; what a page does not state stays
None. Searching reads only that file; TensorFlow and tensorflow_hub are imported when loading.

Loading goes through ``tensorflow_hub.load``, so ``TFHUB_CACHE_DIR`` (where compressed downloads are
unpacked, one folder per handle) and ``TFHUB_MODEL_LOAD_FORMAT`` work as they do for any hub user.
Handles may be ``https://tfhub.dev/...`` (redirected to Kaggle Models since 2023), any http(s) URL
serving ``?tf-hub-format=compressed`` tar.gz archives, a local SavedModel folder or ``file://`` URL.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from functools import cache
from importlib import resources
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from ..backbones.savedmodel_trust import LOCAL_SOURCE as LOCAL
from ..backbones.savedmodel_trust import check_savedmodel_trust
from ..backbones.tf_backbone import TFBackbone, concrete_functions, import_tensorflow, output_names, with_resolution
from ..catalog.schema import DATASET_SIZES, Entry, InputSpec, PretrainStage, ReportedMetric
from ..errors import SourceUnavailableError, ZooprobeError
from ..plugins.hookspecs import hookimpl
from ..plugins.source import Source

SNAPSHOT = "tfhub_snapshot.json"
TFHUB_PREFIX = "https://tfhub.dev/"
TASKS = {"image-feature-vector": "image-feature-extraction", "text-embedding": "text-embedding"}


class TFHubLoadError(ZooprobeError):
    """A TF-Hub handle that does not resolve to a loadable SavedModel."""


@cache
def load_snapshot() -> dict[str, Any]:
    """The curated TF-Hub snapshot (``data/tfhub_snapshot.json``)."""
    text = resources.files("zooprobe.sources.data").joinpath(SNAPSHOT).read_text(encoding="utf-8")
    return dict(json.loads(text))


def entry_from_record(record: dict[str, Any], *, source: str, name: str, handle: str, origin: str) -> Entry:
    """Map one snapshot record onto the catalog schema; ``origin`` names where its facts came from."""
    snapshot = load_snapshot()
    doc = f"{snapshot['doc_repo']} {record['doc']} @ {record['commit'][:12]}"
    prov = {"pretraining": doc, "input": doc} | ({"feature_dim": doc} if record["feature_dim"] else {})
    if record["metrics"]:
        prov["metrics"] = doc
    if origin:
        prov = {key: f"{origin}: {value}" for key, value in prov.items()}
    size = record["resolution"]
    image = record["modality"] == "image"
    return Entry(
        source=source,
        name=name,
        architecture=record["architecture"],
        source_version=f"snapshot-{snapshot['snapshot_date']}",
        family=record["family"],
        tasks=(TASKS.get(record["task"], record["task"]),),
        modality=record["modality"],
        framework="tensorflow",
        input=InputSpec(
            channels=3 if image else None,
            default_resolution=(size, size) if size else None,
            fixed_resolution=record["fixed_resolution"],
            preprocessing="[0, 1] RGB" if image else "raw strings (the model tokenizes)",
        ),
        feature_dim=record["feature_dim"],
        pretraining=tuple(
            PretrainStage(d, DATASET_SIZES.get(d), "supervised" if image else None) for d in record["pretraining"]
        ),
        metrics=tuple(ReportedMetric(**m) for m in record["metrics"]),
        handle=handle,
        tags=("tfhub", record["task"]),
        description=f"TF-Hub {record['task']} model {record['handle']}",
        provenance=tuple(sorted(prov.items())),
    )


class TFHubSource(Source):
    """TF-Hub models from the shipped snapshot; ids are the handle's path, e.g.
    ``tfhub:google/imagenet/mobilenet_v2_100_224/feature_vector/5``."""

    name = "tfhub"
    extra = "tfhub"

    def package_version(self) -> str | None:
        return f"snapshot-{load_snapshot()['snapshot_date']}"

    def entries(self) -> Iterator[Entry]:
        for record in load_snapshot()["models"]:
            handle = record["handle"]
            yield entry_from_record(
                record, source=self.name, name=handle.removeprefix(TFHUB_PREFIX), handle=handle, origin=""
            )

    def load(self, entry: Entry) -> TFBackbone:
        """Load the entry's handle through ``tensorflow_hub.load`` (see :func:`load_handle`)."""
        return load_handle(entry.handle or entry.name, entry=entry)


def _require_tensorflow_hub() -> Any:
    try:
        import_tensorflow()
        import tensorflow_hub as hub
    except ImportError as exc:
        raise SourceUnavailableError(
            f"loading TF-Hub models needs tensorflow and tensorflow_hub ({exc}); "
            "install them with: pip install 'zooprobe[tfhub]'"
        ) from exc
    return hub


def _local_path(handle: str) -> Path | None:
    parsed = urlparse(handle)
    if parsed.scheme == "file":
        return Path(parsed.path)
    if parsed.scheme in ("http", "https", "gs"):
        return None
    return Path(handle)


def _restore(handle: str) -> Any:
    """``hub.load(handle)`` with each failure turned into a one-line error that says what to do."""
    hub = _require_tensorflow_hub()
    local = _local_path(handle)
    if local is not None and not (local / "saved_model.pb").is_file():
        raise TFHubLoadError(
            f"'{handle}' is not a SavedModel folder (no saved_model.pb in it); "
            "pass a folder written by tf.saved_model.save, a file:// URL to one, or an http(s) TF-Hub handle"
        )
    try:
        return hub.load(str(local) if local is not None else handle)
    except ZooprobeError:
        raise
    except Exception as exc:  # noqa: BLE001 - hub raises bare IOError/HTTPError/tarfile/TF errors
        raise TFHubLoadError(_describe_failure(handle, exc)) from exc


def _describe_failure(handle: str, exc: Exception) -> str:
    import tarfile
    import urllib.error

    cache_dir = os.environ.get("TFHUB_CACHE_DIR", "the TF-Hub cache")
    if isinstance(exc, urllib.error.HTTPError):
        return f"TF-Hub handle '{handle}' answered HTTP {exc.code}; check the handle (publisher/model/version)"
    if isinstance(exc, urllib.error.URLError | ConnectionError | TimeoutError):
        return (
            f"cannot reach '{handle}' ({exc}); connect to the network, or load a local SavedModel folder "
            f"(models already downloaded stay in {cache_dir})"
        )
    if isinstance(exc, tarfile.TarError | EOFError | OSError) or "valid module" in str(exc):
        return (
            f"the download of '{handle}' is not a valid TF-Hub archive ({type(exc).__name__}); nothing was "
            "loaded and no cache folder was kept, so loading again downloads it anew"
        )
    return f"TensorFlow could not load '{handle}': {type(exc).__name__}: {str(exc).splitlines()[0][:200]}"


def load_handle(
    handle: str,
    *,
    entry: Entry | None = None,
    modality: str = "image",
    resolution: tuple[int, int] | None = None,
) -> TFBackbone:
    """Load any TF-Hub handle (URL, ``file://`` URL or local SavedModel folder) as a backbone.

    Args:
        handle: what ``hub.load`` accepts; http(s) handles are downloaded as compressed archives into
            ``$TFHUB_CACHE_DIR`` (default: a temp folder chosen by tensorflow_hub) and reused from there.
        entry: the catalog entry, when loading one; otherwise an entry is made for the handle.
        modality: ``image`` or ``text`` for a handle outside the catalog.
        resolution: input size for a handle outside the catalog (default: the model's own static
            input size, else 224 x 224).

    A SavedModel's graph runs as code, so one from a source (an ``entry`` of any source but ``local``, or
    a remote handle) loads only when trusted (:mod:`zooprobe.backbones.savedmodel_trust`); a local
    folder given as a handle, or a ``local`` entry, is the caller's own.

    :raises TFHubLoadError: for a missing folder, an HTTP error, no network or a corrupt archive.
    :raises SavedModelTrustError: for a SavedModel from a source the caller did not trust.
    :raises SourceUnavailableError: when tensorflow or tensorflow_hub is not installed.
    """
    source = entry.source if entry is not None else ("tfhub" if _local_path(handle) is None else LOCAL)
    if source != LOCAL:
        check_savedmodel_trust(source, entry.id if entry is not None else handle)
    model = _restore(handle)
    resolution = resolution or _static_resolution(model)
    if entry is None:
        entry = Entry(
            source="tfhub",
            name=handle,
            architecture=Path(urlparse(handle).path).name or handle,
            modality=modality,
            framework="tensorflow",
            tasks=("image-feature-extraction",) if modality == "image" else ("text-embedding",),
            input=InputSpec(channels=3, default_resolution=resolution) if modality == "image" else InputSpec(),
            handle=handle,
        )
    return TFBackbone(
        entry=with_resolution(entry, resolution),
        model=model,
        cut_points=output_names(model),
        restore=lambda: _restore(handle),
    )


def _static_resolution(model: Any) -> tuple[int, int] | None:
    concrete = concrete_functions(model)
    if not concrete:
        return None
    args = concrete[0].structured_input_signature[0]
    spec = args[0] if args else None
    shape = getattr(spec, "shape", None)
    if shape is not None and shape.rank == 4 and shape[1] and shape[2]:
        return int(shape[1]), int(shape[2])
    return None


@hookimpl
def register_sources() -> list[Source]:
    return [TFHubSource()]
