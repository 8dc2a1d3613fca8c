"""Shared CLI pieces: the user-error exception, the --home option, output helpers."""

from __future__ import annotations

import csv
import io
import json
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, TypeVar

import click
from click.core import ParameterSource

from ..catalog.fields import DEFAULT_FIELDS as DEFAULT_FIELDS  # search.py reads them here
from ..catalog.fields import FIELDS as FIELDS
from ..catalog.schema import Entry
from ..catalog.store import Catalog, default_home
from ..catalog.units import format_count
from ..errors import ZooprobeError
from ..plugins.source import Source
from ..plugins.sync import SyncResult, sync_if_empty, sync_sources

F = TypeVar("F", bound=Callable[..., Any])


class UserError(click.ClickException):
    """A one-line error for bad input; exit code 2 like click's usage errors."""

    exit_code = 2


def home_option(func: F) -> F:
    return click.option(
        "--home",
        type=click.Path(file_okay=False, path_type=Path),
        default=None,
        help="zooprobe's data directory: the catalog, runs, reports and cached features "
        "[default: $ZOOPROBE_HOME or ~/.cache/zooprobe].",
    )(func)


def executor_options(what: str) -> Callable[[F], F]:
    """``--executor local|ray`` (or ``$ZOOPROBE_EXECUTOR``) and ``--ray-address``; ``what``: the units."""

    def decorate(func: F) -> F:
        func = click.option(
            "--ray-address",
            default="auto",
            show_default=True,
            metavar="HOST:PORT|auto",
            envvar="ZOOPROBE_RAY_ADDRESS",
            help="Ray cluster to join (auto: a running one, else a local one). Needs pip install 'zooprobe[ray]'.",
        )(func)
        return click.option(
            "--executor",
            type=click.Choice(["local", "ray"]),
            envvar="ZOOPROBE_EXECUTOR",
            help=f"Where {what} run: here, one after another, or one Ray task each  [default: local].",
        )(func)

    return decorate


def on_duplicates_option(func: F) -> F:
    """``--on-duplicates drop|keep-first|error`` of the commands that read a dataset."""
    return click.option(
        "--on-duplicates",
        type=click.Choice(["drop", "keep-first", "error"]),
        default="error",
        show_default=True,
        help="Examples with the same content (or one file under two labels): drop them (one copy kept,"
        " conflicting labels dropped), keep the first of each, or stop.",
    )(func)


def trust_savedmodel_option(func: F) -> F:
    """``--trust-savedmodel`` of the commands that load models: TF SavedModels from a source run as code."""
    return click.option(
        "--trust-savedmodel",
        is_flag=True,
        help="Load TF SavedModels from TF-Hub/Kaggle: their graphs run as code (file ops too). Or set"
        " ZOOPROBE_TRUST_SAVEDMODEL=tfhub,kaggle.",
    )(func)


# the smallest --resolution any command takes: a model built for 8x8 input (rare, but Keras allows it)
MIN_RESOLUTION = 8


class FormatChoice(click.Choice):  # type: ignore[type-arg]
    """``--format``'s one vocabulary (``text``, ``json``, ``csv``), also taking ``table``, an older
    spelling of ``text``, so that scripts written against it keep working."""

    ALIASES = {"table": "text"}

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        if isinstance(value, str):
            value = self.ALIASES.get(value.lower(), value)
        return super().convert(value, param, ctx)


def format_choice_option(*choices: str, help: str) -> Callable[[F], F]:
    """``--format`` (``fmt``) with ``text`` first and the default; ``table`` is read as ``text``."""
    return click.option(
        "--format", "fmt", type=FormatChoice(["text", *choices]), default="text", show_default=True, help=help
    )


def batch_size_option(default: int, what: str) -> Callable[[F], F]:
    """``--batch-size`` (at least 1), its help saying what one batch is."""
    return click.option(
        "--batch-size",
        type=click.IntRange(min=1),
        default=default,
        show_default=True,
        help=f"{what}; lower it when memory runs out.",
    )


def format_option(json_help: str) -> Callable[[F], F]:
    """``--format [text|json]`` (``fmt``), with ``--json`` (``as_json``) kept as a hidden alias."""

    def decorate(func: F) -> F:
        func = click.option("--json", "as_json", is_flag=True, hidden=True, help="Same as --format json.")(func)
        return format_choice_option("json", help=json_help)(func)

    return decorate


def output_format(fmt: str, as_json: bool) -> str:
    """The format asked for: ``--json`` is ``--format json``; ``--json --format text`` contradicts itself."""
    if as_json and fmt != "json":
        if click.get_current_context().get_parameter_source("fmt") is ParameterSource.COMMANDLINE:
            raise UserError("--json and --format text contradict each other; pass one (--format json or text)")
        return "json"
    return fmt


def open_catalog(home: Path | None) -> Catalog:
    try:
        return Catalog(home or default_home())
    except ZooprobeError as exc:
        raise UserError(str(exc)) from None


def sync_with_progress(
    catalog: Catalog,
    sources: Sequence[Source],
    *,
    force: bool = False,
    requested: Sequence[str] = (),
    first_use: bool = False,
) -> list[SyncResult]:
    """Sync ``sources`` into ``catalog`` with a progress bar on stderr (``requested``: names the user gave;
    ``first_use``: see :func:`~zooprobe.plugins.sync.sync_sources`)."""
    with click.progressbar(length=len(sources), label="syncing", file=sys.stderr) as bar:

        def step(name: str) -> None:
            bar.label = f"syncing {name}"
            bar.update(1)

        return sync_sources(catalog, sources, force=force, on_progress=step, requested=requested, first_use=first_use)


def ensure_synced(catalog: Catalog) -> None:
    """Sync the offline sources when the store is empty (the first search on a machine)."""

    def announced(cat: Catalog, sources: Sequence[Source]) -> list[SyncResult]:
        click.echo("zooprobe: the catalog is empty; syncing the offline sources once...", err=True)
        return sync_with_progress(cat, sources, first_use=True)

    for r in sync_if_empty(catalog, announced):
        note = f" ({r.note})" if r.note else ""
        click.echo(f"  {r.source}: {r.status}, {r.entries} entries, {r.seconds:.1f}s{note}", err=True)


def _human(name: str, value: Any) -> str:
    if value is None or value == "":
        return "-"
    if name in ("params", "params_no_head", "pretrain_examples", "file_size_bytes"):
        return format_count(value)
    if isinstance(value, float):
        return f"{value:.2f}"
    return str(value)


def render(entries: Sequence[Entry], fields: Sequence[str], fmt: str) -> str:
    """Entries as a terminal table, JSON (a list of objects) or CSV, with the given fields."""
    rows = [{f: FIELDS[f](e) for f in fields} for e in entries]
    if fmt == "json":
        return json.dumps(rows, indent=2)
    if fmt == "csv":
        buf = io.StringIO()
        writer = csv.DictWriter(buf, fieldnames=list(fields), lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)
        return buf.getvalue().rstrip("\n")
    cells = [[_human(f, r[f]) for f in fields] for r in rows]
    widths = [max([len(f), *(len(c[i]) for c in cells)]) for i, f in enumerate(fields)]
    lines = ["  ".join(f.upper().ljust(w) for f, w in zip(fields, widths, strict=True)).rstrip()]
    lines += ["  ".join(c.ljust(w) for c, w in zip(cell, widths, strict=True)).rstrip() for cell in cells]
    return "\n".join(lines)
