"""Filling the store from source plugins, incrementally (keyed on each source's package version)."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from ..plugins.source import Source
from .store import Catalog


@dataclass(frozen=True)
class SyncResult:
    source: str
    status: str  # "synced", "unchanged", "unavailable"
    entries: int
    seconds: float
    version: str | None


def sync_sources(
    catalog: Catalog,
    sources: Iterable[Source],
    *,
    force: bool = False,
    on_progress: Callable[[str], None] | None = None,
) -> list[SyncResult]:
    """Sync each source whose package version differs from the stored one (all with ``force``).

    A source whose package is not installed is reported ``unavailable`` and its stored entries
    are kept.
    """
    stored = catalog.source_versions()
    results = []
    for source in sources:
        started = time.perf_counter()
        if not source.available():
            results.append(SyncResult(source.name, "unavailable", 0, 0.0, None))
            continue
        current = source.package_version()
        if not force and source.name in stored and current is not None and stored[source.name] == current:
            results.append(SyncResult(source.name, "unchanged", 0, time.perf_counter() - started, current))
            continue
        if on_progress:
            on_progress(source.name)
        count = catalog.replace_source(source.name, current, source.entries(), origin=type(source).__module__)
        results.append(SyncResult(source.name, "synced", count, time.perf_counter() - started, current))
    return results
