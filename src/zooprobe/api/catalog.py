"""The catalog from Python: :func:`search` returns a pandas DataFrame, :func:`show` an :class:`Entry`.

Both take what ``zooprobe search`` and ``zooprobe show`` take, and a first use on an empty catalog
syncs the offline sources as the CLI's first search does (saying so on stderr).
"""

from __future__ import annotations

import sys
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..catalog.fields import OUTPUT_FIELDS
from ..catalog.query import FILTERS, Filter, QuerySyntaxError, query_from_values, sort_keys
from ..catalog.schema import Entry
from ..catalog.store import Catalog, default_home
from ..errors import InvalidChoiceError, ZooprobeError
from ..plugins.manager import get_sources
from ..plugins.source import Source
from ..plugins.sync import SyncResult, sync_if_empty, sync_sources

if TYPE_CHECKING:
    import pandas as pd

__all__ = ["entries_frame", "search", "show"]

_BY_FIELD = {spec.field: spec for spec in FILTERS}


def search(
    query: str | None = None,
    *,
    limit: int | None = 20,
    fields: Sequence[str] | None = None,
    home: str | Path | None = None,
    **filters: Any,
) -> pd.DataFrame:
    """Search the catalog, as ``zooprobe search`` does, into a DataFrame with one row per entry.

    Args:
        query: words (and word prefixes) matched in ids, architecture names, tags and descriptions.
        limit: at most this many rows (``None``: every match); the CLI's default of 20.
        fields: the columns, among the documented output fields (default: all of them, in order).
        home: the zooprobe home (default ``$ZOOPROBE_HOME`` or ``~/.cache/zooprobe``).
        **filters: the CLI's filters under their option names with ``_`` for ``-``: ``source``,
            ``task``, ``modality``, ``framework``, ``arch``, ``min_params``, ``max_params``, ``max_gmacs``,
            ``min_top1``, ``pretrain_dataset``, ``license``, ``resolution``, ``sort``. A value is either
            typed (``min_params=25e6``, ``sort=["-top1", "params"]``) or the text the CLI takes
            (``min_params="25M"``, ``sort="-top1,params"``).

    Returns:
        a DataFrame whose columns are typed: counts (``params``, ``resolution``, ...) ``Int64``, numbers
        (``top1``, ``compute``) ``Float64``, the compute value beside its ``compute_unit``, ``tasks`` and
        ``pretraining`` lists (pretraining stages in order); a missing value is ``<NA>``.

    Raises:
        ZooprobeError: an unknown filter or field, a bad value (one line naming it and the valid ones).

    Example:
        >>> zooprobe.search("resnet", min_top1=80, max_params="30M", sort="-top1")
    """
    values = {name: _filter_value(name, value) for name, value in filters.items()}
    names = _columns(fields)
    if limit is not None and (isinstance(limit, bool) or not isinstance(limit, int) or limit < 1):
        raise ZooprobeError(f"limit {limit!r} is not a positive whole number; pass e.g. limit=20, or None for all")
    catalog_query = query_from_values(query, values, limit)
    with _open(home) as catalog:
        source = values.get("source")
        if source and source not in catalog.source_versions():
            # a loaded source that was never listed (a hub source is listed only when named)
            fix = f"'{source}' holds no entries yet: zooprobe catalog sync --source {source}"
            known = sorted(catalog.source_versions())
            raise InvalidChoiceError("source", source, known, fix if source in get_sources() else "")
        entries = catalog.search(catalog_query)
    return entries_frame(entries, names)


def show(entry_id: str, *, home: str | Path | None = None) -> Entry:
    """The catalog entry ``entry_id`` (e.g. ``timm:resnet50.a1_in1k``), as ``zooprobe show`` prints it.

    Its ``repr`` is one line (id, architecture, params, compute, top-1, resolution, pretraining);
    ``entry.to_dict()`` holds every field and ``entry.provenance`` where each number came from.

    Raises:
        ZooprobeError: an id the catalog does not hold (naming ids that look like it).
    """
    with _open(home) as catalog:
        return catalog.get(entry_id)


def entries_frame(entries: Iterable[Entry], fields: Sequence[str] | None = None) -> pd.DataFrame:
    """Entries as a DataFrame of the documented output fields, each column of its documented dtype."""
    import pandas as pd

    names = _columns(fields)
    rows = list(entries)
    return pd.DataFrame(
        {name: pd.Series([OUTPUT_FIELDS[name].get(e) for e in rows], dtype=OUTPUT_FIELDS[name].dtype) for name in names}
    )


def _columns(fields: Sequence[str] | None) -> list[str]:
    if fields is None:
        return list(OUTPUT_FIELDS)
    if isinstance(fields, str):
        fields = [f.strip() for f in fields.split(",") if f.strip()]
    for name in fields:
        if name not in OUTPUT_FIELDS:
            raise InvalidChoiceError("field", name, OUTPUT_FIELDS)
    if not fields:
        raise ZooprobeError(f"fields names no field; give one or more of {', '.join(OUTPUT_FIELDS)}")
    return list(fields)


def _filter_value(name: str, value: Any) -> Any:
    """A filter's value as the catalog query takes it: text is read as the CLI reads it, typed values checked."""
    spec = _BY_FIELD.get(name)
    if spec is None:
        raise InvalidChoiceError("search filter", name, list(_BY_FIELD), "the filters are zooprobe search's options")
    if value is None:
        return None
    if name == "sort" and not isinstance(value, str):
        return sort_keys(",".join(value))
    if isinstance(value, str):
        if spec.choices and value not in spec.choices:
            raise InvalidChoiceError(name, value, spec.choices)
        try:
            return spec.convert(value)
        except (ValueError, ZooprobeError) as exc:
            raise QuerySyntaxError(f"{name}={value!r}: {exc}") from None
    return _typed(spec, value)


def _typed(spec: Filter, value: Any) -> Any:
    """A number given for a numeric filter (a whole one for ``resolution``); anything else is refused."""
    number = isinstance(value, int | float) and not isinstance(value, bool)
    if number and spec.convert is int and float(value).is_integer():
        return int(value)
    if number and spec.convert not in (str, int):
        return float(value)
    what = "text" if spec.convert is str else "a whole number" if spec.convert is int else "a number or text"
    raise QuerySyntaxError(f"{spec.field}={value!r}: expected {what}; pass e.g. {spec.field}={_example(spec)}")


def _example(spec: Filter) -> str:
    return {"N": "'25M' or 25e6", "G": "4.5", "PCT": "80", "PX": "224"}.get(spec.metavar, "'text'")


def _open(home: str | Path | None) -> Catalog:
    catalog = Catalog(Path(home).expanduser() if home is not None else default_home())
    try:
        _ensure_synced(catalog)
    except BaseException:
        catalog.close()
        raise
    return catalog


def _ensure_synced(catalog: Catalog) -> None:
    """The CLI's first-search sync, its messages on stderr (a notebook shows them under the cell)."""

    def announced(cat: Catalog, sources: Sequence[Source]) -> list[SyncResult]:
        print("zooprobe: the catalog is empty; syncing the offline sources once...", file=sys.stderr)
        return sync_sources(cat, sources, first_use=True)

    for r in sync_if_empty(catalog, announced):
        note = f" ({r.note})" if r.note else ""
        print(f"  {r.source}: {r.status}, {r.entries} entries, {r.seconds:.1f}s{note}", file=sys.stderr)
