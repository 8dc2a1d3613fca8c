"""Filling the store from source plugins, incrementally (keyed on each source's package version)."""

from __future__ import annotations

import time
from collections.abc import Callable, Collection, Iterable, Sequence
from dataclasses import dataclass

from ..catalog.store import Catalog
from ..errors import ZooprobeError, first_line
from .source import Source


@dataclass(frozen=True)
class SyncResult:
    source: str
    status: str  # "synced", "snapshot", "unchanged", "unavailable", "offline"
    entries: int
    seconds: float
    version: str | None
    note: str = ""  # why, for "offline" and "failed"


def sync_sources(
    catalog: Catalog,
    sources: Iterable[Source],
    *,
    force: bool = False,
    on_progress: Callable[[str], None] | None = None,
    requested: Collection[str] = (),
) -> list[SyncResult]:
    """Sync each source whose package version differs from the stored one (all with ``force``).

    A source whose package is not installed lists the entry snapshot zooprobe ships for it
    (status ``snapshot``, each entry's provenance says so); without a snapshot it is reported
    ``unavailable`` and its stored entries are kept. A source that lists from a remote hub
    (``listed_on_request``) is synced only when ``requested`` names it; when its hub cannot be
    reached it is reported ``offline`` (with the reason in ``note``) and its stored entries are kept.
    A third-party source whose listing raises is reported ``failed`` (the reason in ``note``), its
    stored entries kept: the other sources still sync. A built-in source's error propagates.
    """
    stored = catalog.source_versions()
    results = []
    for source in sources:
        if source.listed_on_request and source.name not in requested:
            continue
        started = time.perf_counter()
        if not source.available():
            snapshot = source.offline_snapshot()
            if snapshot is None:
                results.append(SyncResult(source.name, "unavailable", 0, 0.0, None))
                continue
            version = snapshot.store_version
            if not force and stored.get(source.name) == version:
                results.append(SyncResult(source.name, "unchanged", 0, time.perf_counter() - started, version))
                continue
            if on_progress:
                on_progress(source.name)
            count = catalog.replace_source(source.name, version, snapshot.marked_entries(), origin=snapshot.origin())
            results.append(SyncResult(source.name, "snapshot", count, time.perf_counter() - started, version))
            continue
        current = source.package_version()
        if not force and source.name in stored and current is not None and stored[source.name] == current:
            results.append(SyncResult(source.name, "unchanged", 0, time.perf_counter() - started, current))
            continue
        if on_progress:
            on_progress(source.name)
        try:
            count = catalog.replace_source(source.name, current, source.entries(), origin=type(source).__module__)
        except Exception as exc:
            if isinstance(exc, ZooprobeError) and source.listed_on_request:
                results.append(SyncResult(source.name, "offline", 0, time.perf_counter() - started, None, str(exc)))
                continue
            module = type(source).__module__
            if module.startswith("zooprobe."):
                raise
            note = f"{type(exc).__name__}: {first_line(exc)} (in {module}; its stored entries are kept)"
            results.append(SyncResult(source.name, "failed", 0, time.perf_counter() - started, None, note))
            continue
        results.append(SyncResult(source.name, "synced", count, time.perf_counter() - started, current))
    return results


SyncFunction = Callable[[Catalog, Sequence[Source]], list[SyncResult]]


def _plain_sync(catalog: Catalog, sources: Sequence[Source]) -> list[SyncResult]:
    return sync_sources(catalog, sources)


def sync_if_empty(catalog: Catalog, sync: SyncFunction = _plain_sync) -> list[SyncResult]:
    """Sync every registered source when the catalog holds no entry yet (a first use on a machine).

    The one silent-sync rule shared by ``zooprobe.load`` and the CLI's first search; ``sync`` lets
    the CLI wrap the same sync in a progress bar.

    :returns: what the sync did, or ``[]`` when the catalog already had entries.
    """
    if not catalog.is_empty():
        return []
    from .manager import get_sources

    return sync(catalog, list(get_sources().values()))
