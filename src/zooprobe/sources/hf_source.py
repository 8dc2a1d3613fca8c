"""Built-in source: models on the Hugging Face Hub (``hf:owner/name``), listed live and stored for offline search.

Listing: ``HfApi.list_models`` per task (pipeline tag) sorted by downloads, with ``expand`` for the
safetensors parameter count, card data (license, datasets), library, tags and commit. A listing
needs the network and the Hub holds millions of repos, so the source lists only when asked by
name (``zooprobe catalog sync --source hf [--task T] [--limit N]``); searches read the store.
Whether the Hub can be reached is checked once per process (``HF_HUB_OFFLINE`` answers at once;
otherwise one TCP connect to ``HF_ENDPOINT`` with a short timeout) instead of letting the client
retry for about 23 seconds: without it a sync keeps the stored entries and a load reads the local
cache, each saying so.

Loading goes through the library each repo is made for, into the Hub cache (``HF_HOME``/``HF_HUB_CACHE``,
``HF_TOKEN`` for gated repos): ``timm/...`` repos through ``timm.create_model("hf-hub:...")``,
sentence-transformers repos through ``SentenceTransformer``, other repos through transformers
``AutoModel`` with ``AutoTokenizer`` (text) or ``AutoImageProcessor`` (images). Remote code stays off
unless the caller passes ``trust_remote_code=True``; then the repo's commit is resolved to its full
40-hex id first, loaded at exactly that revision and recorded on the backbone's entry.

Downloads are checked before anything loads: :mod:`.hf_hub`.
"""

from __future__ import annotations

import datetime
import re
import sys
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import replace
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

from ..backbones.contract import Backbone
from ..catalog.schema import DATASET_SIZES, Entry, InputSpec, PretrainStage
from ..errors import InvalidChoiceError, ZooprobeError, first_line
from ..plugins.hookspecs import hookimpl
from ..plugins.source import Source
from .hf_hub import (
    COMMIT,
    HubError,
    _hub_error,
    _offline,
    cached_snapshots,
    fetch_verified,
    hub_cache,
    hub_endpoint,
    hub_reachable,
    resolve_commit,
    verify_cached,
)

# Pipeline tags a backbone can come from, and the input modality each implies.
TASK_MODALITIES: dict[str, str] = {
    "image-classification": "image",
    "image-feature-extraction": "image",
    "feature-extraction": "text",
    "sentence-similarity": "text",
    "fill-mask": "text",
    "text-classification": "text",
    "token-classification": "text",
    "zero-shot-image-classification": "multimodal",
}
DEFAULT_TASKS: tuple[str, ...] = (
    "image-classification",
    "image-feature-extraction",
    "feature-extraction",
    "sentence-similarity",
)
DEFAULT_LIMIT = 200
EXPAND = [
    "author",
    "cardData",
    "config",
    "downloads",
    "gated",
    "lastModified",
    "library_name",
    "likes",
    "pipeline_tag",
    "safetensors",
    "sha",
    "tags",
]
# LFS blobs are cached under their sha256; a partial one as <sha256>.incomplete (huggingface_hub < 1.0)
# or <sha256>.<8 hex>.incomplete (later clients, left behind only when the process was killed).
# Hub dataset ids (lower-cased, owner dropped) that name a catalog pretraining dataset.
_HUB_DATASETS: dict[str, str] = {
    "imagenet-1k": "imagenet-1k",
    "imagenet_1k": "imagenet-1k",
    "imagenet-21k": "imagenet-21k",
    "imagenet-22k": "imagenet-21k",
    "imagenet-12k": "imagenet-12k",
    "laion-2b": "laion-2b",
    "laion2b-en": "laion-2b",
    "laion-400m": "laion-400m",
    "coco": "coco",
}


def _pretraining(datasets: Iterable[str]) -> tuple[PretrainStage, ...]:
    stages: list[PretrainStage] = []
    for raw in datasets:
        name = raw.removeprefix("dataset:").split("/")[-1].lower()
        dataset = _HUB_DATASETS.get(name, name)
        if all(s.dataset != dataset for s in stages):
            stages.append(PretrainStage(dataset, DATASET_SIZES.get(dataset)))
    # A card lists its datasets in no particular order; pretraining goes from the larger to the
    # smaller (imagenet-21k, then imagenet-1k), which can be told when every size is known.
    if all(s.examples is not None for s in stages):
        stages.sort(key=lambda s: -(s.examples or 0))
    return tuple(stages)


def _framework(tags: Sequence[str], library: str | None) -> str | None:
    if library in ("timm", "sentence-transformers", "open_clip") or "pytorch" in tags:
        return "pytorch"
    if "tf" in tags or "keras" in tags:
        return "tensorflow"
    if "jax" in tags:
        return "jax"
    return "pytorch" if "safetensors" in tags and library == "transformers" else None


def entry_from_model(model: Any, *, listed_on: str) -> Entry:
    """Map a ``huggingface_hub.ModelInfo`` (listed with :data:`EXPAND`) onto a catalog entry.

    What the Hub API says: task, library and tags, parameter count (from the safetensors header
    metadata, head included), license and datasets (model card), commit. What it does not say stays
    None: parameters without the head, compute, ImageNet accuracy, input size and normalisation,
    feature dimension (unless the listed config names ``hidden_size``), file size.
    """
    repo_id: str = model.id
    tags = tuple(model.tags or ())
    library = model.library_name
    card = model.card_data
    card_get = (lambda key: card.get(key)) if card is not None else (lambda key: None)
    origin = f"Hugging Face Hub API list_models ({listed_on})"
    prov: dict[str, str] = {}
    params = None
    if model.safetensors is not None and model.safetensors.total:
        params = int(model.safetensors.total)
        prov["params"] = f"{origin}: safetensors metadata (all tensors, head included)"
    license_ = card_get("license") or next((t.removeprefix("license:") for t in tags if t.startswith("license:")), None)
    if isinstance(license_, list):
        license_ = ",".join(license_)
    if license_:
        prov["weights_license"] = f"{origin}: model card"
    datasets = card_get("datasets") or [t for t in tags if t.startswith("dataset:")]
    pretraining = _pretraining([datasets] if isinstance(datasets, str) else datasets)
    if pretraining:
        prov["pretraining"] = f"{origin}: model card datasets"
    config = model.config if isinstance(model.config, dict) else {}
    feature_dim = config.get("hidden_size") if isinstance(config.get("hidden_size"), int) else None
    if feature_dim:
        prov["feature_dim"] = f"{origin}: config hidden_size"
    task = model.pipeline_tag
    timm_repo = repo_id.startswith("timm/")
    modality = TASK_MODALITIES.get(task or "") or ("image" if library == "timm" else "text")
    name = repo_id.split("/", 1)[-1]
    architecture = name.split(".")[0] if timm_repo else str(config.get("model_type") or name)
    all_tags = tuple(dict.fromkeys([*(t for t in (library,) if t), *(t for t in tags if ":" not in t)]))
    return Entry(
        source="hf",
        name=repo_id,
        architecture=architecture,
        source_version=model.sha,
        family=str(config.get("model_type") or re.sub(r"[\d_.\-].*$", "", architecture) or architecture),
        tasks=(task,) if task else (),
        modality=modality,
        framework=_framework(tags, library),
        input=InputSpec(),
        feature_dim=feature_dim,
        params=params,
        pretraining=pretraining,
        weights_license=license_ or None,
        handle=f"hf-hub:{repo_id}",
        tags=all_tags,
        aliases=(f"timm:{name}",) if timm_repo else (),
        description=f"{task or library or 'model'} on the Hugging Face Hub by {repo_id.split('/')[0]}"
        f" ({model.downloads or 0} downloads, {model.likes or 0} likes" + (", gated" if model.gated else "") + ")",
        provenance=tuple(sorted(prov.items())),
    )


class HfSource(Source):
    """Hugging Face Hub models, listed live per task when synced by name, loaded through their own library."""

    name = "hf"
    package = "huggingface_hub"
    extra = "hf"
    listed_on_request = True

    def __init__(
        self, tasks: Sequence[str] = DEFAULT_TASKS, limit: int = DEFAULT_LIMIT, keep: Sequence[Entry] = ()
    ) -> None:
        for task in tasks:
            if task not in TASK_MODALITIES:
                raise InvalidChoiceError("Hugging Face task", task, TASK_MODALITIES)
        self.tasks = tuple(tasks)
        self.limit = limit
        self.keep = tuple(keep)

    def with_listing(self, tasks: Sequence[str], limit: int | None, keep: Sequence[Entry] = ()) -> HfSource:
        """The same source listing ``tasks`` (all default tasks when empty), at most ``limit`` per task,
        and keeping ``keep`` (stored entries of other tasks) unless listed again."""
        return HfSource(tasks or DEFAULT_TASKS, limit or DEFAULT_LIMIT, keep)

    def package_version(self) -> str | None:
        try:
            hub = version("huggingface_hub")
        except PackageNotFoundError:
            return None
        # a listing is a snapshot of a moving Hub: a version unique to this moment makes every sync list again
        return f"huggingface_hub {hub}, listed {datetime.datetime.now().isoformat(timespec='microseconds')}"

    def entries(self) -> Iterator[Entry]:
        """Every model of each task, most downloaded first, then the kept entries not listed again.

        :raises HubError: when the Hub cannot be reached (checked once, before any request).
        """
        self.require()
        reachable, why = hub_reachable()
        if not reachable:
            raise HubError(f"the Hugging Face Hub at {hub_endpoint()} cannot be listed: {why}")
        from huggingface_hub import HfApi

        api = HfApi()
        listed_on = datetime.date.today().isoformat()
        seen: set[str] = set()
        for task in self.tasks:
            for model in api.list_models(filter=task, sort="downloads", limit=self.limit, expand=EXPAND):  # type: ignore[arg-type]
                if model.id not in seen:
                    seen.add(model.id)
                    yield entry_from_model(model, listed_on=listed_on)
        yield from (entry for entry in self.keep if entry.name not in seen)

    def cache_status(self, entry: Entry) -> str:
        """Whether the repo's files are in the local Hub cache, and where."""
        snapshots = cached_snapshots(entry.name)
        if not snapshots:
            return f"not cached (downloads into {hub_cache()} on first load)"
        commits = ", ".join(p.name[:12] for p in snapshots)
        return f"cached in {snapshots[0].parent.parent} (commit {commits})"

    def load(self, entry: Entry, *, trust_remote_code: bool = False) -> Backbone:
        """Download (or read from the Hub cache) and load ``entry`` through the library it is made for.

        :raises HubError: for an unknown or gated repo, or one not cached while the Hub is unreachable.
        """
        self.require()
        reachable, why = hub_reachable()
        revision = None
        if trust_remote_code:
            if not reachable:
                raise HubError(
                    f"--trust-remote-code needs the Hub to pin '{entry.name}' to a commit, but {why}; connect and retry"
                )
            revision = resolve_commit(entry.name, entry.source_version)
            print(
                f"zooprobe: running the code of {entry.name} at commit {revision} (trust_remote_code)",
                file=sys.stderr,
            )
            entry = replace(entry, source_version=revision, provenance=(*entry.provenance, ("revision", revision)))
        elif not reachable:
            snapshots = cached_snapshots(entry.name)
            if not snapshots:
                raise HubError(
                    f"'{entry.name}' is not in the local Hugging Face cache ({hub_cache()}) and the Hub at "
                    f"{hub_endpoint()} cannot be reached ({why}); connect once to download it"
                )
            print(
                f"zooprobe: the Hub cannot be reached ({why}); loading {entry.name} from {hub_cache()}", file=sys.stderr
            )
        try:
            folder = fetch_verified(entry.name, revision) if reachable else verify_cached(entry.name)
            if folder is None:
                raise HubError(f"'{entry.name}' is not in the local Hugging Face cache ({hub_cache()}); connect once")
            if revision is None and COMMIT.match(folder.name):
                # main may have moved since the listing: the commit whose files load is the one to record
                # (the run) and to key cached features on
                entry = replace(entry, source_version=folder.name)
            # everything the library reads is in the cache now, checked: it must not fetch anything itself
            with _offline(True):
                return _load(entry, folder, revision, trust_remote_code)
        except ZooprobeError:
            raise
        except Exception as exc:  # noqa: BLE001 - the clients' errors become one line saying what to do
            raise _hub_error(entry.name, exc, fetched=reachable) from exc


def _load(entry: Entry, snapshot: Path, revision: str | None, trust_remote_code: bool) -> Backbone:
    """Load from ``snapshot``, the checked cache folder of the pinned commit. transformers and
    sentence-transformers read a bare repo id as a folder first when one of that name exists under the
    working directory (unchecked files, unpinned code), so they get the snapshot's absolute path."""
    repo_id = entry.name
    if repo_id.startswith("timm/") or "timm" in entry.tags:
        from ..backbones.timm_backbone import load_timm_model

        # timm resolves hf-hub: ids through the Hub client's cache only, never a local folder
        return load_timm_model(entry, f"hf-hub:{repo_id}@{revision}" if revision else f"hf-hub:{repo_id}")
    folder = str(snapshot.resolve())
    if "sentence-transformers" in entry.tags:
        from sentence_transformers import SentenceTransformer

        from ..backbones.hf_backbone import sentence_transformer_backbone

        model = SentenceTransformer(folder, trust_remote_code=trust_remote_code, device="cpu")
        return sentence_transformer_backbone(entry, model)
    from transformers import AutoImageProcessor, AutoModel, AutoTokenizer

    from ..backbones.hf_backbone import has_vocabulary, transformers_backbone

    options: dict[str, Any] = {"trust_remote_code": trust_remote_code}
    auto_model = AutoModel.from_pretrained(folder, **options)
    if entry.modality == "text":
        try:
            processor = AutoTokenizer.from_pretrained(folder, **options)
            reason = None if has_vocabulary(processor) else "only special tokens"
        except (OSError, ValueError, TypeError, KeyError) as exc:
            reason = first_line(exc)
        if reason is not None:
            # transformers builds a tokenizer of special tokens alone when a repo ships no vocabulary
            raise ZooprobeError(
                f"'{entry.id}' has no tokenizer ({reason}): a text model needs the tokenizer it was trained with;"
                " pick a repo that ships its tokenizer files (tokenizer.json or a vocabulary)"
            )
    else:
        # typed from transformers 5.25 on, untyped before: called through Any so that both check
        load_processor: Any = AutoImageProcessor.from_pretrained
        processor = load_processor(folder, **options)
    return transformers_backbone(entry, auto_model, processor)


def load_folder(entry: Entry, folder: Path) -> Backbone:
    """A transformers or sentence-transformers model folder of the user's own (``entry.tags`` says which),
    loaded with ``trust_remote_code`` off and the Hub clients offline: only the folder's files are read."""
    with _offline(True):
        return _load(entry, folder, None, trust_remote_code=False)


@hookimpl
def register_sources() -> list[Source]:
    return [HfSource()]


# the Hub's cache and download helpers, imported from here by tests and earlier callers
__all__ = ["HfSource", "HubError", "hub_cache", "register_sources"]
