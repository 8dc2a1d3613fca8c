"""The candidates of an assessment: catalog entries by id or by a search query, and the facts reports start from."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from ..catalog.schema import Entry
from ..catalog.store import Catalog, Query
from .checks import AssessError


def resolve_candidates(
    catalog: Catalog, models: Sequence[str | Entry] | None, query: str | None, top: int
) -> list[Entry]:
    """Catalog entries for ``models`` (ids, paths of local models, or entries given as they are) or the first
    ``top`` results of ``query``.

    ``query`` is a search command line: words and ``zooprobe search`` options, e.g.
    ``"mobilenet --max-params 10M --sort=-top1"``.
    """
    if models:
        # a repeated id would be assessed twice and ranked against itself
        unique: dict[str, str | Entry] = {}
        for model in models:
            unique.setdefault(model if isinstance(model, str) else model.id, model)
        return [model if isinstance(model, Entry) else _entry(catalog, model) for model in unique.values()]
    if not query:
        raise AssessError("no candidates: pass --models ID,ID,... or --query 'SEARCH FILTERS' --top K")
    return catalog.search(parse_query(query, top))


def _entry(catalog: Catalog, model: str) -> Entry:
    """The catalog entry of an id, or the ``local:`` entry of a path (``./folder``, ``/abs``, ``local:path``)."""
    from ..plugins.local_models import is_local_spec, local_entry

    return local_entry(model) if is_local_spec(model) else catalog.get(model)


def parse_query(query: str, top: int) -> Query:
    """A :class:`Query` from a ``zooprobe search`` command line (same words and options)."""
    from ..catalog.query import QuerySyntaxError, parse_search_line

    try:
        return parse_search_line(query, top)
    except QuerySyntaxError as exc:
        raise AssessError(f"bad --query {query!r}: {exc}; use the filters of 'zooprobe search'") from None


def entry_facts(entry: Entry) -> dict[str, Any]:
    """The catalog facts a candidate's document starts with: id, source, size, compute, prior and pretraining."""
    return {
        "model": entry.id,
        "source": entry.source,
        "params": entry.params,
        "macs": (
            {"value": entry.compute.value, "unit": entry.compute.unit, "resolution": entry.compute.resolution}
            if entry.compute
            else None
        ),
        "prior_top1": entry.top1,
        "pretraining": [stage.dataset for stage in entry.pretraining],
    }
