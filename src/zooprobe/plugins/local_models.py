"""Models the user names by a path of their own: ``./folder``, ``../file.keras``, ``/abs/path``, ``~/x`` or
``local:path``.

Only these forms name local files; a bare ``org/name`` is always a catalog id (``hf:org/name`` loads
from the verified Hub cache, never from a folder of that name under the working directory). The
entry is ``local:<absolute path>``, its ``source_version`` a fingerprint of the files' names, sizes and
modification times, so cached features of an edited model are computed again. What the path holds
picks the adapter (:mod:`zooprobe.sources.local_source` loads it): a sentence-transformers folder
(``modules.json``), a transformers folder (``config.json`` with a tokenizer or image processor), timm's
layout (``config.json`` naming an ``architecture``, ``model.safetensors``), a TF SavedModel folder
(``saved_model.pb``) or a ``.keras`` file.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from ..backbones.savedmodel_trust import LOCAL_SOURCE
from ..catalog.schema import Entry
from ..errors import ZooprobeError

LOCAL_PREFIX = f"{LOCAL_SOURCE}:"
PATH_STARTS = ("./", "../", "/", "~/")
# framework names of local entries, each loaded by its own adapter
LAYOUTS = ("sentence-transformers", "transformers", "timm", "tensorflow", "keras")
TEXT_FILES = ("tokenizer.json", "tokenizer_config.json", "vocab.txt", "spiece.model")
IMAGE_FILES = ("preprocessor_config.json",)


class LocalModelError(ZooprobeError):
    """A local model path that does not exist or holds nothing zooprobe can load."""


def is_local_spec(spec: str) -> bool:
    """Whether ``spec`` names a path (``./``, ``../``, ``/``, ``~/`` or ``local:``) rather than a catalog id."""
    return spec.startswith((LOCAL_PREFIX, *PATH_STARTS)) or spec in (".", "..")


def local_path(spec: str) -> Path:
    """The absolute path ``spec`` names."""
    text = spec[len(LOCAL_PREFIX) :] if spec.startswith(LOCAL_PREFIX) else spec
    return Path(text).expanduser().resolve()


def fingerprint(path: Path) -> str:
    """sha256 (16 hex) over each file's relative name, size and modification time."""
    files = [path] if path.is_file() else sorted(p for p in path.rglob("*") if p.is_file())
    digest = hashlib.sha256()
    for file in files:
        stat = file.stat()
        digest.update(
            f"{file.relative_to(path) if file != path else file.name}\0{stat.st_size}\0{stat.st_mtime_ns}\n".encode()
        )
    return digest.hexdigest()[:16]


def _layout(path: Path) -> tuple[str, str]:
    """(layout, modality) of what ``path`` holds.

    :raises LocalModelError: for a path holding none of the loadable layouts.
    """
    if path.is_file() and path.suffix == ".keras":
        return "keras", "image"
    if path.is_dir():
        if (path / "saved_model.pb").is_file():
            return "tensorflow", "image"
        if (path / "modules.json").is_file():
            return "sentence-transformers", "text"
        config_file = path / "config.json"
        if config_file.is_file():
            try:
                config = json.loads(config_file.read_text())
            except (OSError, ValueError) as exc:
                raise LocalModelError(f"local model {path}: config.json is not JSON ({exc})") from None
            if isinstance(config, dict) and "architecture" in config:
                return "timm", "image"
            if any((path / name).is_file() for name in TEXT_FILES):
                return "transformers", "text"
            if any((path / name).is_file() for name in IMAGE_FILES):
                return "transformers", "image"
    raise LocalModelError(
        f"local model {path} holds nothing zooprobe loads; give a sentence-transformers or transformers folder"
        " (config.json with its tokenizer or preprocessor_config.json), timm's layout (config.json, model.safetensors),"
        " a TF SavedModel folder (saved_model.pb) or a .keras file"
    )


def local_entry(spec: str) -> Entry:
    """The entry of the model at the path ``spec`` names (see the module's doc).

    :raises LocalModelError: for a missing path or one holding no loadable layout.
    """
    path = local_path(spec)
    if not path.exists():
        raise LocalModelError(
            f"local model '{spec}' does not exist ({path}); give the path of a model folder or .keras file"
            " (./folder, /abs/path or local:path)"
        )
    layout, modality = _layout(path)
    if layout in ("sentence-transformers", "transformers", "timm") and not any(path.rglob("*.safetensors")):
        pickles = sorted(p.name for p in path.rglob("*") if p.suffix in (".bin", ".pt", ".pth", ".pkl"))
        raise LocalModelError(
            f"local model {path} has no .safetensors weights{f' (only {pickles[0]})' if pickles else ''}; zooprobe"
            " never unpickles weights: save the model with save_pretrained(..., safe_serialization=True)"
        )
    return Entry(
        source=LOCAL_SOURCE,
        name=str(path),
        architecture=path.stem,
        source_version=fingerprint(path),
        modality=modality,
        framework=layout,
        tasks=("image-feature-extraction",) if modality == "image" else ("feature-extraction",),
        handle=str(path),
        tags=(layout,),
        provenance=(("handle", f"the path given: {spec}"),),
    )
