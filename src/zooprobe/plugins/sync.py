"""Filling the store from source plugins, incrementally (keyed on each source's package version)."""

from __future__ import annotations

import time
from collections.abc import Callable, Collection, Iterable, Sequence
from dataclasses import dataclass

from ..catalog.schema import Entry
from ..catalog.store import Catalog
from ..errors import ZooprobeError, first_line
from .entry_snapshot import snapshot_file
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
    first_use: bool = False,
) -> list[SyncResult]:
    """Sync each source whose package version differs from the stored one (all with ``force``).

    A source whose installed package has the version its shipped entry snapshot was listed from
    reads the snapshot instead of listing live (same entries, same origin; ``force`` lists live).
    On ``first_use`` (an empty catalog) a snapshot of another version is read too, status
    ``snapshot`` with a ``note`` saying to run ``zooprobe catalog sync``, which lists it live.
    A source whose package is not installed lists its snapshot (status ``snapshot``, each entry's
    provenance says so); without a snapshot it is reported ``unavailable`` and its stored entries
    are kept. A source that lists from a remote hub (``listed_on_request``) is synced only when
    ``requested`` names it; when its hub cannot be reached it is reported ``offline`` (with the
    reason in ``note``) and its stored entries are kept. A third-party source whose listing raises
    is reported ``failed`` (the reason in ``note``), its stored entries kept: the other sources
    still sync. A built-in source's error propagates. Each result's ``entries`` is what the source
    holds in the catalog afterwards.
    """
    stored = catalog.source_versions()
    held = catalog.source_counts()
    results = []
    for source in sources:
        if source.listed_on_request and source.name not in requested:
            continue
        started = time.perf_counter()

        def result(
            status: str, version: str | None, note: str = "", name: str = source.name, started: float = started
        ) -> SyncResult:
            return SyncResult(name, status, held.get(name, 0), time.perf_counter() - started, version, note)

        if not source.available():
            snapshot = source.offline_snapshot()
            if snapshot is None:
                results.append(result("unavailable", None))
                continue
            version = snapshot.store_version
            if not force and stored.get(source.name) == version:
                results.append(result("unchanged", version))
                continue
            if on_progress:
                on_progress(source.name)
            held[source.name] = catalog.replace_source(
                source.name, version, snapshot.marked_entries(), origin=snapshot.origin()
            )
            results.append(result("snapshot", version))
            continue
        current = source.package_version()
        if not force and source.name in stored and current is not None and stored[source.name] == current:
            results.append(result("unchanged", current))
            continue
        if on_progress:
            on_progress(source.name)
        snapshot = None if force else source.offline_snapshot()
        if snapshot is not None and snapshot.package_version == current:
            # the shipped listing of this very version: what a live listing yields, without importing the framework
            held[source.name] = catalog.replace_source(
                source.name, current, snapshot.entries, origin=type(source).__module__
            )
            results.append(result("synced", current, f"from {snapshot_file(source.name)}, listed from {current}"))
            continue
        if snapshot is not None and first_use and current is not None:
            version = snapshot.store_version
            origin = snapshot.origin(installed=current)
            held[source.name] = catalog.replace_source(
                source.name, version, snapshot.marked_entries(installed=current), origin=origin
            )
            note = (
                f"listed from {snapshot.package} {snapshot.package_version}, {current} is installed: "
                f"run 'zooprobe catalog sync' to list {current}"
            )
            results.append(result("snapshot", version, note))
            continue
        try:
            held[source.name] = catalog.replace_source(
                source.name, current, _live_listing(source), origin=type(source).__module__
            )
        except Exception as exc:
            if isinstance(exc, ZooprobeError) and source.listed_on_request:
                results.append(result("offline", None, f"{exc}; {_kept(source.name, held.get(source.name, 0))}"))
                continue
            module = type(source).__module__
            if module.startswith("zooprobe."):
                raise
            note = f"{type(exc).__name__}: {first_line(exc)} (in {module}; its stored entries are kept)"
            results.append(result("failed", None, note))
            continue
        results.append(result("synced", current))
    return results


def _kept(name: str, count: int) -> str:
    """What a source that could not be listed still offers: its stored entries, or what to run."""
    if count:
        return (
            f"the catalog keeps its {count} stored {name} entries (search them with 'zooprobe search --source {name}')"
        )
    return (
        f"the catalog holds no {name} entries yet: run 'zooprobe catalog sync --source {name}' when it can be reached"
    )


def _live_listing(source: Source) -> Iterable[Entry]:
    """The source's entries; in id order for one that ships a snapshot (stored in that order), so that
    a catalog read from the snapshot and one listed live are the same row for row."""
    return sorted(source.entries(), key=lambda e: e.id) if source.ships_snapshot else source.entries()


SyncFunction = Callable[[Catalog, Sequence[Source]], list[SyncResult]]


def _plain_sync(catalog: Catalog, sources: Sequence[Source]) -> list[SyncResult]:
    return sync_sources(catalog, sources, first_use=True)


def sync_if_empty(catalog: Catalog, sync: SyncFunction = _plain_sync) -> list[SyncResult]:
    """Sync every registered source when the catalog holds no entry yet (a first use on a machine).

    The one silent-sync rule shared by ``zooprobe.load`` and the CLI's first search; ``sync`` lets
    the CLI wrap the same sync in a progress bar. It is a ``first_use`` sync: a source installed at
    another version than its shipped listing is answered from that listing (the result's note says so).

    :returns: what the sync did, or ``[]`` when the catalog already had entries.
    """
    if not catalog.is_empty():
        return []
    from .manager import get_sources

    return sync(catalog, list(get_sources().values()))
