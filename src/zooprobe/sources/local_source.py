"""The ``local`` source: models the user names by their own path (``--model ./folder``).

It lists nothing (a path is not a catalog entry; :mod:`zooprobe.plugins.local_models` makes the entry
from the path) and loads through the adapters the hub sources use: transformers and
sentence-transformers with ``trust_remote_code`` off, timm's layout from its safetensors file, a
``.keras`` file in safe mode, a TF SavedModel folder (the user's own, so without the SavedModel gate).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

from ..backbones.contract import Backbone
from ..backbones.savedmodel_trust import LOCAL_SOURCE
from ..catalog.schema import Entry
from ..plugins.hookspecs import hookimpl
from ..plugins.local_models import LocalModelError, local_entry
from ..plugins.source import Source


class LocalSource(Source):
    """Loads ``local:<path>`` entries; lists none."""

    name = LOCAL_SOURCE
    # nothing to list: a plain sync leaves it alone
    listed_on_request = True

    def entries(self) -> Iterator[Entry]:
        return iter(())

    def load(self, entry: Entry) -> Backbone:
        """Load the files at ``entry.handle`` by their layout (checked again: they may have changed).

        :raises LocalModelError: for a path that is gone or holds nothing loadable.
        """
        current = local_entry(entry.handle or entry.name)
        path = Path(current.handle or current.name)
        layout = current.framework
        if layout == "tensorflow":
            from .tfhub_source import load_handle

            return load_handle(str(path), entry=entry)
        if layout == "keras":
            from .kaggle_source import load_keras_file

            return load_keras_file(path, entry)
        if layout == "timm":
            from .kaggle_source import load_timm_layout

            return load_timm_layout(path, entry)
        if layout in ("transformers", "sentence-transformers"):
            from .hf_source import load_folder

            return load_folder(entry, path)
        raise LocalModelError(f"local model {path}: no loader for layout '{layout}'")


@hookimpl
def register_sources() -> list[Source]:
    return [LocalSource()]
