"""Built-in source: Kaggle Models, one entry per model instance (``kaggle:owner/model/framework/variation``).

Listing: with Kaggle credentials (``KAGGLE_API_TOKEN``, ``KAGGLE_USERNAME``/``KAGGLE_KEY`` or
``kaggle.json`` in ``$KAGGLE_CONFIG_DIR`` or ``~/.kaggle``), a sync asks the Kaggle API
(``ModelApiService/ListModels`` through kagglehub's own client) for the models of the owners in
``$ZOOPROBE_KAGGLE_OWNERS`` (default ``google,keras,tensorflow``); without credentials, or when the
API cannot be reached, it lists the shipped snapshot: the Kaggle equivalents of the TF-Hub snapshot
entries for which public evidence of the Kaggle handle exists (``data/tfhub_snapshot.json``).
Searching never imports kagglehub; a sync imports it only to call the API.

Loading: ``kagglehub.model_download(handle)`` downloads into kagglehub's cache (``$KAGGLEHUB_CACHE``,
resumed with HTTP ranges and checked against the server's MD5, marked complete only when whole), then
the files load by the instance's framework: TensorFlow SavedModels through tensorflow_hub, Keras
``.keras`` files through ``keras.saving.load_model(safe_mode=True)``, and PyTorch instances in timm's
layout (``config.json`` naming the architecture plus safetensors weights) through timm.
"""

from __future__ import annotations

import datetime
import os
import sys
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from ..backbones.contract import Backbone
from ..backbones.tf_backbone import OUTPUT, TFBackbone, with_resolution
from ..catalog.schema import DATASET_SIZES, Entry, InputSpec, PretrainStage
from ..errors import SourceUnavailableError, ZooprobeError
from ..plugins.hookspecs import hookimpl
from ..plugins.source import Source
from .tfhub_source import entry_from_record, load_handle, load_snapshot

OWNERS_ENV = "ZOOPROBE_KAGGLE_OWNERS"
DEFAULT_OWNERS = ("google", "keras", "tensorflow")
PAGE_SIZE = 50
MAX_PAGES = 20
# kagglesdk's ModelFramework enum names -> the framework segment of a kagglehub handle.
FRAMEWORKS = {
    "TENSOR_FLOW_1": "tensorFlow1",
    "TENSOR_FLOW_2": "tensorFlow2",
    "TF_LITE": "tfLite",
    "TF_JS": "tfJs",
    "PY_TORCH": "pyTorch",
    "JAX": "jax",
    "FLAX": "flax",
    "KERAS": "keras",
    "TRANSFORMERS": "transformers",
    "ONNX": "onnx",
    "GGUF": "gguf",
    "SCIKIT_LEARN": "scikitLearn",
}
LOADABLE = ("tensorFlow1", "tensorFlow2", "keras", "pyTorch")


# timm pretrained_cfg keys that say where weights load from
WEIGHT_LOCATION_KEYS = frozenset({"file", "url", "hf_hub_id", "hf_hub_filename", "source", "state_dict", "custom_load"})


class KaggleError(ZooprobeError):
    """A Kaggle handle that cannot be downloaded or loaded."""


def has_credentials() -> bool:
    """Whether kagglehub would find credentials (the environment or a ``kaggle.json``), without importing it."""
    if os.environ.get("KAGGLE_API_TOKEN"):
        return True
    if os.environ.get("KAGGLE_USERNAME") and os.environ.get("KAGGLE_KEY"):
        return True
    folder = Path(os.environ.get("KAGGLE_CONFIG_DIR") or Path.home() / ".kaggle")
    return (folder / "kaggle.json").is_file()


def snapshot_entries() -> Iterator[Entry]:
    """Kaggle entries of the shipped snapshot: TF-Hub records that have a known Kaggle handle."""
    for record in load_snapshot()["models"]:
        if not record["kaggle"]:
            continue
        handle = f"{record['kaggle']}/{record['kaggle_version']}"
        origin = f"TF-Hub page of the same model ({record['handle']})"
        yield entry_from_record(record, source="kaggle", name=record["kaggle"], handle=handle, origin=origin)


def _framework_name(framework: Any) -> str:
    name = getattr(framework, "name", str(framework)).removeprefix("MODEL_FRAMEWORK_")
    return FRAMEWORKS.get(name, name.lower())


def entries_from_models(models: Iterable[Any], *, listed_on: str) -> Iterator[Entry]:
    """Map Kaggle API models (kagglesdk ``ApiModel`` objects) onto entries, one per instance.

    What the API does not say (input size, feature dimension, parameters) stays None unless the
    instance is one of the snapshot's TF-Hub equivalents, whose facts are then carried over.
    """
    known = {entry.name: entry for entry in snapshot_entries()}
    for model in models:
        owner_model = model.ref if "/" in (model.ref or "") else f"{model.author}/{model.slug}"
        tags = tuple(sorted({tag.name for tag in model.tags or () if getattr(tag, "name", None)}))
        for instance in model.instances or ():
            framework = _framework_name(instance.framework)
            name = f"{owner_model}/{framework}/{instance.slug}"
            handle = f"{name}/{instance.version_number}" if instance.version_number else name
            origin = f"Kaggle API ListModels ({listed_on})"
            prov = {"weights_license": origin, "file_size_bytes": origin, "pretraining": origin}
            base = known.get(name)
            if base is not None:
                prov = dict(base.provenance) | prov
            datasets = tuple(instance.training_data or ())
            yield Entry(
                source="kaggle",
                name=name,
                architecture=base.architecture if base else model.slug,
                source_version=f"api-{listed_on}",
                family=base.family if base else model.slug,
                tasks=base.tasks if base else (),
                modality=base.modality if base else "image",
                framework=framework,
                input=base.input if base else InputSpec(),
                feature_dim=base.feature_dim if base else None,
                pretraining=tuple(PretrainStage(d, DATASET_SIZES.get(d)) for d in datasets)
                or (base.pretraining if base else ()),
                metrics=base.metrics if base else (),
                weights_license=instance.license_name or None,
                file_size_bytes=instance.total_uncompressed_bytes or None,
                handle=handle,
                tags=("kaggle", framework, *tags),
                description=model.subtitle or model.title or None,
                provenance=tuple(sorted(prov.items())),
            )


def list_from_api(owners: Iterable[str]) -> list[Any]:
    """Every model of ``owners`` from the Kaggle API, through kagglehub's authenticated client."""
    from kagglehub.clients import build_kaggle_client
    from kagglesdk.models.types.model_api_service import ApiListModelsRequest

    models: list[Any] = []
    with build_kaggle_client() as client:
        for owner in owners:
            token = ""
            for _page in range(MAX_PAGES):
                request = ApiListModelsRequest()
                request.owner = owner
                request.page_size = PAGE_SIZE
                if token:
                    request.page_token = token
                response = client.models.model_api_client.list_models(request)
                models.extend(response.models)
                token = response.next_page_token
                if not token:
                    break
    return models


class KaggleSource(Source):
    """Kaggle Models instances; listed live with credentials, else from the shipped snapshot."""

    name = "kaggle"
    extra = "kaggle"

    def package_version(self) -> str | None:
        if has_credentials():
            return f"api-{datetime.date.today().isoformat()}"
        return f"snapshot-{load_snapshot()['snapshot_date']}"

    def entries(self) -> Iterator[Entry]:
        if not has_credentials():
            yield from snapshot_entries()
            return
        owners = [o.strip() for o in os.environ.get(OWNERS_ENV, ",".join(DEFAULT_OWNERS)).split(",") if o.strip()]
        try:
            models = list_from_api(owners)
        except Exception as exc:  # noqa: BLE001 - no network, bad credentials: fall back, and say so
            print(
                f"zooprobe: Kaggle API listing failed ({type(exc).__name__}: {str(exc)[:120]}); "
                "listing the shipped snapshot instead",
                file=sys.stderr,
            )
            yield from snapshot_entries()
            return
        yield from entries_from_models(models, listed_on=datetime.date.today().isoformat())

    def load(self, entry: Entry) -> Backbone:
        """Download the entry's handle with kagglehub and load it by its framework variant."""
        handle = entry.handle or entry.name
        return load_path(download(handle), handle_framework(handle), entry)


def handle_framework(handle: str) -> str:
    """The framework segment of ``owner/model/framework/variation[/version]``.

    :raises KaggleError: when the handle does not have that shape.
    """
    parts = handle.split("/")
    if len(parts) not in (4, 5) or not all(parts):
        raise KaggleError(
            f"'{handle}' is not a Kaggle model handle; handles look like "
            "'owner/model/framework/variation[/version]', e.g. 'google/inception-v3/tensorFlow2/feature-vector/2'"
        )
    return parts[2]


def download(handle: str) -> Path:
    """``kagglehub.model_download(handle)``: the folder of the (cached or downloaded) files.

    :raises KaggleError: one line saying what to do, for a wrong handle, missing credentials, no
        network or a download that failed its checksum (which kagglehub never marks complete).
    """
    handle_framework(handle)
    try:
        import kagglehub
        from kagglehub import exceptions as kerr
    except ImportError as exc:
        raise SourceUnavailableError(
            f"downloading Kaggle models needs kagglehub ({exc}); install it with: pip install 'zooprobe[kaggle]'"
        ) from exc
    cache = os.environ.get("KAGGLEHUB_CACHE", "~/.cache/kagglehub")
    try:
        return Path(kagglehub.model_download(handle))
    except kerr.DataCorruptionError as exc:
        raise KaggleError(
            f"the download of '{handle}' failed its checksum and was not kept; load it again to retry ({exc})"
        ) from exc
    except (kerr.UnauthenticatedError, kerr.CredentialError) as exc:
        raise KaggleError(
            f"Kaggle needs credentials for '{handle}': set KAGGLE_USERNAME and KAGGLE_KEY "
            "(or KAGGLE_API_TOKEN), or put kaggle.json in ~/.kaggle"
        ) from exc
    except (kerr.NotFoundError, kerr.KaggleApiHTTPError) as exc:
        raise KaggleError(
            f"Kaggle has no model '{handle}' ({str(exc).splitlines()[0][:160]}); check owner/model/framework/"
            "variation/version on the model's Kaggle page"
        ) from exc
    except ValueError as exc:
        raise KaggleError(f"'{handle}' is not a valid Kaggle model handle: {exc}") from exc
    except Exception as exc:  # noqa: BLE001 - requests' connection errors and the like
        raise KaggleError(
            f"cannot reach Kaggle to resolve '{handle}' ({type(exc).__name__}); connect to the network, or pin "
            f"a version already in {cache} (a handle without a version always asks the API)"
        ) from exc


def load_path(path: Path, framework: str, entry: Entry) -> Backbone:
    """Load downloaded Kaggle files by framework: a SavedModel, a ``.keras`` file, or timm's layout."""
    key = framework.lower()
    if key in ("tensorflow1", "tensorflow2"):
        return load_handle(str(path), entry=entry)
    if key == "keras":
        return _load_keras(path, entry)
    if key == "pytorch":
        return _load_timm_layout(path, entry)
    raise KaggleError(f"cannot load Kaggle framework '{framework}' for {entry.id}; loadable: {', '.join(LOADABLE)}")


def _load_keras(path: Path, entry: Entry) -> TFBackbone:
    files = sorted(path.rglob("*.keras"))
    if not files:
        raise KaggleError(f"no .keras file in {path} for {entry.id}; Keras instances load from a saved .keras file")
    return load_keras_file(files[0], entry)


def load_keras_file(file: Path, entry: Entry) -> TFBackbone:
    """A saved ``.keras`` file, loaded in Keras's safe mode (no lambdas' code), as a backbone of ``entry``."""
    os.environ.setdefault("KERAS_BACKEND", "torch")
    import keras

    model = keras.saving.load_model(file, safe_mode=True, compile=False)
    shape = tuple(getattr(model, "input_shape", ()) or ())
    static = (int(shape[1]), int(shape[2])) if len(shape) == 4 and shape[1] and shape[2] else None
    return TFBackbone(entry=with_resolution(entry, static), model=model, cut_points=[OUTPUT])


def _load_timm_layout(path: Path, entry: Entry) -> Backbone:
    """timm's layout in ``path``: the model ``config.json`` names, with the weights of its safetensors file only."""
    import json

    config_file = path / "config.json"
    weights = sorted(path.glob("*.safetensors"))
    config = json.loads(config_file.read_text()) if config_file.is_file() else {}
    if "architecture" not in config or not weights:
        raise KaggleError(
            f"{entry.id}: only PyTorch instances in timm's layout (config.json with 'architecture' and "
            f"a .safetensors file) load; {path} has {sorted(p.name for p in path.iterdir())[:8]}"
        )
    import timm
    import torch

    from ..backbones.backbone import TorchBackbone, block_cut_points
    from ..backbones.timm_backbone import classifier_of

    # The repository's config may describe preprocessing, never where the weights come from: only
    # the safetensors file just downloaded loads (not a URL, a hub id or another path it names).
    overlay = {k: v for k, v in config.get("pretrained_cfg", {}).items() if k not in WEIGHT_LOCATION_KEYS}
    overlay["file"] = str(weights[0])
    num_classes = config.get("num_classes", overlay.get("num_classes", 1000))
    # the file's head has num_classes outputs: timm re-initialises a head whose size differs from the cfg's
    overlay["num_classes"] = num_classes
    model = timm.create_model(
        config["architecture"], pretrained=True, pretrained_cfg_overlay=overlay, num_classes=num_classes
    ).eval()
    head = classifier_of(model)
    classifier = head if isinstance(head, torch.nn.Module) else None
    return TorchBackbone(
        entry=entry, model=model, cut_points=block_cut_points(model, classifier), classifier=classifier
    )


load_timm_layout = _load_timm_layout


@hookimpl
def register_sources() -> list[Source]:
    return [KaggleSource()]
