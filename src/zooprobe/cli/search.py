"""``zooprobe search`` and ``zooprobe show``."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import click

from ..catalog.query import FILTERS, Filter, query_from_values
from ..catalog.schema import Entry
from ..catalog.store import Query, sort_field
from ..errors import InvalidChoiceError, ZooprobeError
from ..plugins.manager import get_sources
from ._common import (
    DEFAULT_FIELDS,
    FIELDS,
    UserError,
    ensure_synced,
    format_choice_option,
    home_option,
    open_catalog,
    render,
)

FC = TypeVar("FC", bound=Callable[..., Any])


def _filter_option(spec: Filter) -> Callable[[FC], FC]:
    """The click option of one search filter (its name, help and value check come from the library)."""

    def convert(_ctx: click.Context, _param: click.Parameter, value: str | None) -> Any:
        if value is None:
            return None
        try:
            return spec.convert(value)
        except (ValueError, ZooprobeError) as exc:
            raise click.BadParameter(str(exc)) from None

    kind = click.Choice(spec.choices) if spec.choices else None
    return click.option(spec.option, spec.field, type=kind, metavar=spec.metavar, help=spec.help, callback=convert)


def _filter_options(command: FC) -> FC:
    for spec in reversed(FILTERS):
        command = _filter_option(spec)(command)
    return command


def _fields(value: str | None) -> tuple[str, ...]:
    if value is None:
        return DEFAULT_FIELDS
    names = tuple(v.strip() for v in value.split(",") if v.strip())
    if not names:
        raise UserError(
            f"--fields {value!r} names no field; give one or more of {', '.join(FIELDS)}, e.g. --fields id,params,top1"
        )
    for name in names:
        if name not in FIELDS:
            raise InvalidChoiceError("field", name, FIELDS)
    return names


def query_from_params(params: dict[str, Any], limit: int | None) -> Query:
    """The catalog :class:`Query` of the ``search`` command's parsed parameters."""
    return query_from_values(params.get("query"), params, limit)


@click.command()
@click.argument("query", required=False)
@_filter_options
@click.option("--limit", type=click.IntRange(min=1), default=20, show_default=True, help="At most this many rows.")
@click.option("--fields", "fields", metavar="F[,F]", help=f"Columns to print: {', '.join(FIELDS)}.")
@format_choice_option("json", "csv", help="text: a table; json: a list of objects; csv: a header and rows.")
@home_option
def search(
    query: str | None,
    source: str | None,
    task: str | None,
    modality: str | None,
    framework: str | None,
    arch: str | None,
    min_params: float | None,
    max_params: float | None,
    max_gmacs: float | None,
    min_top1: float | None,
    pretrain_dataset: str | None,
    license: str | None,
    resolution: int | None,
    sort: tuple[str, ...] | None,
    limit: int,
    fields: str | None,
    fmt: str,
    home: Path | None,
) -> None:
    """Search the catalog of pretrained backbones.

    QUERY matches words (and word prefixes) in ids, architecture names, tags and descriptions;
    without it every entry matching the filters is listed. Results are sorted by relevance, or
    by --sort. The first search on an empty catalog syncs the offline sources.

    \b
    Examples:
      zooprobe search convnext --pretrain-dataset imagenet-21k --sort=-top1
      zooprobe search --source torchvision --max-params 10M --fields id,params,top1
      zooprobe search vit --min-top1 85 --format json
    """
    out_fields = _fields(fields)  # the sort keys were checked when parsed: a typo costs no sync
    with open_catalog(home) as cat:
        ensure_synced(cat)
        if source and source not in cat.source_versions():
            # a loaded source that was never listed (a hub source is listed only when named)
            fix = f"'{source}' holds no entries yet: zooprobe catalog sync --source {source}"
            raise InvalidChoiceError(
                "source", source, sorted(cat.source_versions()), fix if source in get_sources() else ""
            )
        asked = query_from_params(click.get_current_context().params, limit)
        entries = cat.search(asked)
        total = cat.count_matching(asked) if len(entries) == limit else len(entries)
    if not entries and fmt == "text":
        click.echo("no entries match; loosen the filters or check 'zooprobe catalog stats'", err=True)
        return
    click.echo(render(entries, out_fields, fmt))
    if total > len(entries):  # on stderr, so that JSON and CSV output stays whole
        click.echo(f"{len(entries)} of {total} matching entries; --limit {total} to see them all", err=True)
    _note_unsorted_units(entries, sort or ())


def _note_unsorted_units(entries: list[Entry], sort: tuple[str, ...]) -> None:
    """Say when a gmacs sort listed entries whose compute is in GFLOPS (they come last, in no order)."""
    if not any(sort_field(key) == "gmacs" for key in sort):
        return
    other = [e for e in entries if e.compute is not None and e.compute.gmacs is None]
    if other:
        units = sorted({e.compute.unit for e in other if e.compute is not None})
        click.echo(
            f"note: {len(other)} of these entries report compute in {', '.join(units)}, not GMACs, so --sort=gmacs "
            "lists them last, unordered; order them in their own unit with --sort=compute and --source",
            err=True,
        )


@click.command()
@click.argument("entry_id", metavar="ID")
@format_choice_option("json", help="text: field per line, then where each number came from; json: the record.")
@home_option
def show(entry_id: str, fmt: str, home: Path | None) -> None:
    """Show everything the catalog knows about one entry, and where each number came from.

    For hub entries (hf) it also says whether the weights are in the local download cache.

    \b
    Example:
      zooprobe show torchvision:resnet50.IMAGENET1K_V2 --format json
    """
    with open_catalog(home) as cat:
        ensure_synced(cat)
        entry = cat.get(entry_id)
    data = entry.to_dict()
    source = get_sources().get(entry.source)
    local_cache = source.cache_status(entry) if source is not None else None
    if local_cache is not None:  # hub sources say whether the weights are already downloaded
        data["local_cache"] = local_cache
    if fmt == "json":
        click.echo(json.dumps(data, indent=2))
        return
    provenance = data.pop("provenance")
    width = max(len(k) for k in data)
    for key, value in data.items():
        if isinstance(value, dict):
            value = ", ".join(f"{k}={v}" for k, v in value.items() if v is not None) or "-"
        elif isinstance(value, list | tuple):
            value = "; ".join(json.dumps(v) if isinstance(v, dict) else str(v) for v in value) or "-"
        click.echo(f"{key:<{width}}  {'-' if value is None else value}")
    click.echo("\nwhere the numbers come from:")
    for key, origin in provenance.items():
        click.echo(f"  {key:<{width}}  {origin}")
