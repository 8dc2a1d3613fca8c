"""``zooprobe catalog sync|stats|rebuild``."""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path

import click

from ..catalog.store import DB_NAME, Catalog, Query, default_home
from ..plugins.manager import get_source, get_sources
from ..plugins.source import Source
from ..plugins.sync import sync_sources
from ..sources.hf_source import HfSource
from ._common import UserError, format_option, home_option, open_catalog, output_format, sync_with_progress


@click.group()
def catalog() -> None:
    """Fill and inspect the local catalog of pretrained backbones."""


@catalog.command(name="sync")
@click.option("--source", "source_names", multiple=True, help="Only this source (repeatable) [default: all].")
@click.option(
    "--force",
    is_flag=True,
    help="Re-read sources whose package version has not changed, listing them live "
    "(not from the listing zooprobe ships for the installed version).",
)
@click.option(
    "--task",
    "tasks",
    multiple=True,
    metavar="TASK",
    help="Hub sources: list only this task (repeatable), e.g. "
    "image-classification, feature-extraction, sentence-similarity [default: all four backbone tasks].",
)
@click.option(
    "--limit", type=click.IntRange(min=1), help="Hub sources: at most N models per task (most downloaded first)."
)
@home_option
def catalog_sync(
    source_names: tuple[str, ...], force: bool, tasks: tuple[str, ...], limit: int | None, home: Path | None
) -> None:
    """Read every source plugin into the local catalog.

    A source is re-read only when its package version changed (use --force to re-read anyway),
    from the listing zooprobe ships when that was made from the installed version (--force lists
    live); a source whose package is not installed reads the shipped listing. Hub sources
    that list over the network (hf) are read only when named; --task and --limit shape their
    listing, and entries of other tasks already stored are kept.

    \b
    Examples:
      zooprobe catalog sync --source timm --source torchvision
      zooprobe catalog sync --source hf --task sentence-similarity --limit 100
    """
    named = [get_source(n) for n in source_names]
    if (tasks or limit) and not any(isinstance(s, HfSource) for s in named):
        hubs = [name for name, s in get_sources().items() if isinstance(s, HfSource)]
        options = " ".join(f"--task {t}" for t in tasks) + (f" --limit {limit}" if limit else "")
        raise UserError(
            f"--task and --limit shape the listing of a hub source named with --source (sources that take them: "
            f"{', '.join(hubs) or 'none loaded'}); e.g. zooprobe catalog sync --source {hubs[0] if hubs else 'hf'} "
            f"{options.strip()}"
        )
    sources = named or list(get_sources().values())
    with open_catalog(home) as cat:
        sources = [_with_listing(cat, s, tasks, limit) for s in sources]
        results = sync_with_progress(cat, sources, force=force, requested=source_names)
    for r in results:
        extra = f" (install with: pip install 'zooprobe[{_extra(r.source)}]')" if r.status == "unavailable" else ""
        extra += f": {r.note}" if r.note else ""
        click.echo(f"{r.source}: {r.status}, {r.entries} entries, version {r.version or '-'}, {r.seconds:.1f}s{extra}")
    for source in sources:
        if source.listed_on_request and source.name not in source_names:
            click.echo(
                f"{source.name}: lists over the network only when named: zooprobe catalog sync --source {source.name}"
            )


def _with_listing(cat: Catalog, source: Source, tasks: tuple[str, ...], limit: int | None) -> Source:
    """The hf source listing the requested tasks, keeping stored entries of the tasks not listed again."""
    if not isinstance(source, HfSource):
        return source
    listing = source.with_listing(tasks, limit)
    stored = cat.search(Query(source=source.name, limit=None))
    keep = [e for e in stored if not set(e.tasks) & set(listing.tasks)]
    return listing.with_listing(listing.tasks, listing.limit, keep)


def _backups(path: Path) -> list[Path]:
    return [p for p in path.parent.glob(path.name + ".bak*") if not p.name.endswith(("-wal", "-shm"))]


def _free_backup_path(path: Path) -> Path:
    """``path``.bak, else the first ``path``.bak.N (N = 2, 3, ...) that neither it nor its -wal/-shm uses."""
    number = 1
    while True:
        backup = path.with_name(f"{path.name}.bak" + (f".{number}" if number > 1 else ""))
        if not any(backup.with_name(backup.name + suffix).exists() for suffix in ("", "-wal", "-shm")):
            return backup
        number += 1


def _extra(source_name: str) -> str:
    return get_sources()[source_name].extra or source_name


@catalog.command(name="stats")
@format_option('text, or json: {"total": N, "sources": [{source, version, origin, synced_at, entries}]}.')
@home_option
def catalog_stats(fmt: str, as_json: bool, home: Path | None) -> None:
    """How many entries each source holds, from which package version, synced when."""
    with open_catalog(home) as cat:
        stats = cat.stats()
        total = cat.count()
    if output_format(fmt, as_json) == "json":
        click.echo(json.dumps({"total": total, "sources": stats}, indent=2))
        return
    if not stats:
        click.echo("the catalog is empty; fill it with 'zooprobe catalog sync'")
        return
    for s in stats:
        when = time.strftime("%Y-%m-%d %H:%M", time.localtime(float(s["synced_at"])))  # type: ignore[arg-type]
        click.echo(f"{s['source']:<12} {s['entries']:>6} entries  version {s['version'] or '-':<10} synced {when}")
    click.echo(f"{'total':<12} {total:>6} entries")


@catalog.command(name="rebuild")
@home_option
def catalog_rebuild(home: Path | None) -> None:
    """Move an unreadable or too-new catalog aside and sync a fresh one.

    The old file goes to catalog.sqlite3.bak, or catalog.sqlite3.bak.2, .bak.3 ... when earlier
    backups are there: no backup is ever overwritten.
    """
    root = home or default_home()
    path = root / DB_NAME
    if path.exists():
        backup = _free_backup_path(path)
        shutil.move(path, backup)
        for suffix in ("-wal", "-shm"):
            side = path.with_name(DB_NAME + suffix)
            if side.exists():
                shutil.move(side, backup.with_name(backup.name + suffix))
        earlier = len(_backups(path)) - 1
        kept = f" ({earlier} earlier backup{'s' * (earlier != 1)} kept beside it)" if earlier else ""
        click.echo(f"moved the old catalog to {backup}{kept}")
    with open_catalog(root) as cat:
        for r in sync_sources(cat, get_sources().values()):  # a new catalog: every source syncs
            click.echo(f"{r.source}: {r.status}, {r.entries} entries")
