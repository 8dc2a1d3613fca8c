"""``zooprobe search`` and ``zooprobe show``."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import click

from ..errors import InvalidChoiceError, ZooprobeError
from ..plugins.manager import get_sources
from ..registry.schema import MODALITIES, Entry
from ..registry.store import SORT_FIELDS, Query, sort_field
from ..registry.units import parse_count
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


def _count(_ctx: click.Context, _param: click.Parameter, value: str | None) -> float | None:
    if value is None:
        return None
    try:
        return parse_count(value)
    except ZooprobeError as exc:
        raise click.BadParameter(str(exc)) from None


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


def _sort_keys(sort: str | None) -> tuple[str, ...]:
    return tuple(k.strip() for k in sort.split(",") if k.strip()) if sort else ()


def query_from_params(params: dict[str, Any], limit: int | None) -> Query:
    """The catalog :class:`Query` of the ``search`` command's parsed parameters (shared with ``assess --query``)."""
    return Query(
        text=params.get("query"),
        source=params.get("source"),
        task=params.get("task"),
        modality=params.get("modality"),
        framework=params.get("framework"),
        arch=params.get("arch"),
        min_params=params.get("min_params"),
        max_params=params.get("max_params"),
        max_gmacs=params.get("max_gmacs"),
        min_top1=params.get("min_top1"),
        pretrain_dataset=params.get("pretrain_dataset"),
        license=params.get("license_"),
        resolution=params.get("resolution"),
        sort=_sort_keys(params.get("sort")),
        limit=limit,
    )


@click.command()
@click.argument("query", required=False)
@click.option("--source", help="Only entries of this source (timm, torchvision, keras, ...).")
@click.option("--task", help="Only entries for this task, e.g. image-classification.")
@click.option("--modality", type=click.Choice(MODALITIES), help="Only this input modality.")
@click.option("--framework", help="Only this framework: pytorch, keras, ...")
@click.option("--arch", "arch", metavar="GLOB", help="Architecture name glob, e.g. 'resnet*'.")
@click.option("--min-params", callback=_count, metavar="N", help="At least N parameters (25M, 1.2B, 300K).")
@click.option("--max-params", callback=_count, metavar="N", help="At most N parameters (25M, 1.2B, 300K).")
@click.option("--max-gmacs", type=float, metavar="G", help="At most G GMACs (entries whose source reports GMACs).")
@click.option("--min-top1", type=float, metavar="PCT", help="At least this ImageNet-1k top-1 (%).")
@click.option("--pretrain-dataset", metavar="NAME", help="Pretrained on this dataset, e.g. imagenet-21k, laion-2b.")
@click.option("--license", "license_", metavar="TEXT", help="Weights license containing TEXT, e.g. apache.")
@click.option("--resolution", type=int, metavar="PX", help="Default input resolution equal to PX.")
@click.option(
    "--sort",
    "sort",
    metavar="FIELD[,FIELD]",
    help=f"Sort keys, '-' for descending: {', '.join(SORT_FIELDS)}. 'gmacs' orders entries reported in GMACs "
    "(the others last); 'compute' orders the reported number in its own unit, one unit at a time.",
)
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
    license_: str | None,
    resolution: int | None,
    sort: str | None,
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
    out_fields = _fields(fields)
    for key in _sort_keys(sort):  # before the first-run sync: a typo should not cost a sync
        sort_field(key)
    with open_catalog(home) as cat:
        ensure_synced(cat)
        if source and source not in cat.source_versions():
            raise InvalidChoiceError("source", source, sorted(cat.source_versions()))
        asked = query_from_params(click.get_current_context().params, limit)
        entries = cat.search(asked)
        total = cat.count_matching(asked) if len(entries) == limit else len(entries)
    if not entries and fmt == "text":
        click.echo("no entries match; loosen the filters or check 'zooprobe catalog stats'", err=True)
        return
    click.echo(render(entries, out_fields, fmt))
    if total > len(entries):  # on stderr, so that JSON and CSV output stays whole
        click.echo(f"{len(entries)} of {total} matching entries; --limit {total} to see them all", err=True)
    _note_unsorted_units(entries, _sort_keys(sort))


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
