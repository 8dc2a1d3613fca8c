"""Loading a catalog entry by id through the source plugin that lists it."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ..backbones.backbone import Backbone


def load_by_id(
    entry_id: str, home: str | None = None, *, trust_remote_code: bool = False, trust_savedmodel: bool = False
) -> Backbone:
    """The backbone of catalog entry ``entry_id`` (``zooprobe.load``; the catalog is synced on first use), or of
    the local model at the path it names (``./folder``, ``/abs/path``, ``local:path``; see :mod:`.local_models`)."""
    from ..catalog.store import Catalog
    from .local_models import is_local_spec, local_entry
    from .manager import load_entry
    from .sync import sync_if_empty

    if is_local_spec(entry_id):
        entry = local_entry(entry_id)
    else:
        with Catalog(home) as catalog:
            sync_if_empty(catalog)
            entry = catalog.get(entry_id)
    return load_entry(entry, trust_remote_code=trust_remote_code, trust_savedmodel=trust_savedmodel)
