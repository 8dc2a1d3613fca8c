"""Searching the catalog: the Query, its sort fields and facets, and the SQL that answers it (FTS5 for
words, the sort indexes walked in windows for a sorted page)."""

from __future__ import annotations

import json
import re
import sqlite3
import unicodedata
from collections.abc import Iterable
from dataclasses import dataclass, replace

from ..errors import InvalidChoiceError, MixedUnitsError
from .schema import Entry

# Sort fields with an index on the column (descending walks) and one on (column IS NULL, column)
# (ascending walks); a limited query sorted on one of them walks the index (Catalog._walk_sort_index).
WALKABLE_SORTS = ("params", "gmacs", "compute", "top1", "resolution", "pretrain_examples")


WALK_WINDOW = 8192


# ``gmacs`` orders the entries reported in GMACs (the others last); ``compute`` orders the reported
# number in its own unit and is refused when the matches mix units (Catalog.search).
SORT_FIELDS: dict[str, str] = {
    "id": "e.id",
    "params": "e.params",
    "gmacs": "e.gmacs",
    "compute": "e.compute_value",
    "top1": "e.top1",
    "resolution": "e.resolution",
    "pretrain_examples": "e.pretrain_examples",
    "source": "e.source",
}


@dataclass(frozen=True)
class Query:
    """A catalog search. Every filter is optional; ``sort`` holds field names, ``-`` for descending."""

    text: str | None = None
    source: str | None = None
    task: str | None = None
    modality: str | None = None
    framework: str | None = None
    arch: str | None = None  # glob over the architecture name
    min_params: float | None = None
    max_params: float | None = None
    max_gmacs: float | None = None
    min_top1: float | None = None
    pretrain_dataset: str | None = None
    license: str | None = None
    resolution: int | None = None
    sort: tuple[str, ...] = ()
    limit: int | None = 50


def sort_field(key: str) -> str:
    """The field name of a sort key (``-top1`` -> ``top1``).

    :raises InvalidChoiceError: naming the field and the valid ones.
    """
    name = key.lstrip("-+")
    if name not in SORT_FIELDS:
        raise InvalidChoiceError("sort field", name, SORT_FIELDS)
    return name


def _facets(
    source: str, framework: str | None, tasks: str | None, pretrain_datasets: str | None
) -> set[tuple[str, str, str]]:
    """``(field, value, source)`` of each filter value in the framework, tasks and pretrain_datasets
    columns of one row: the words the task and pretraining-dataset filters test, one by one."""
    found = {("framework", framework, source)} if framework else set()
    found |= {("task", word, source) for word in (tasks or "").split()}
    found |= {("pretrain_dataset", word, source) for word in (pretrain_datasets or "").split()}
    return found


# Query field -> (the name in messages, what to do besides picking a listed value)
FACET_FILTERS: dict[str, tuple[str, str]] = {
    "task": ("task", "hub tasks come with 'zooprobe catalog sync --source hf --task TASK'"),
    "framework": ("framework", ""),
    "pretrain_dataset": ("pretraining dataset", ""),
}


def search_terms(text: str) -> list[str]:
    """The words of ``text`` as the catalog indexes and matches them: ASCII-folded, lower case,
    runs of ``[0-9a-z_]`` (``'ResNet-50 Café'`` -> ``['resnet', '50', 'cafe']``).

    The full-text index stores exactly these words, so a word-prefix test on them in SQL
    (:func:`_terms_like`) and an FTS5 prefix query give the same matches by construction.
    """
    folded = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode("ascii").lower()
    return re.findall(r"[0-9a-z_]+", folded)


def _fts_expression(words: list[str]) -> str:
    # each word is a quoted prefix term: 'resnet' finds 'resnet50'
    return " ".join(f'"{w}"*' for w in words)


def _terms_like(word: str) -> str:
    # '% word%' against ' ' || terms: some indexed word starts with ``word`` ('_' is LIKE's wildcard)
    return "% " + word.replace("_", "\\_") + "%"


def _fts_texts(
    entry_id: str, name: str, architecture: str, tags: Iterable[str], description: str | None
) -> tuple[str, str, str, str, str]:
    """The normalised words of each full-text column (id, name, architecture, tags, description)."""
    words = [" ".join(search_terms(t)) for t in (entry_id, name, architecture, " ".join(tags), description or "")]
    return words[0], words[1], words[2], words[3], words[4]


def _fts_columns(e: Entry) -> tuple[str, str, str, str, str]:
    return _fts_texts(e.id, e.name, e.architecture, e.tags, e.description)


class CatalogSearch:
    """The search half of :class:`~zooprobe.catalog.store.Catalog`, which holds the connection."""

    db: sqlite3.Connection

    def search(self, query: Query) -> list[Entry]:
        """Entries matching every filter of ``query``, sorted as asked (relevance for text by default).

        Ties in the sort keys are broken by insertion order, so equal queries give equal pages.

        :raises InvalidChoiceError: when a task, framework or pretraining dataset asked for is held
            by no entry of the catalog (naming those that are), or a sort field is unknown.
        :raises MixedUnitsError: when sorting by ``compute`` and the matches report it in more than
            one unit (GMACs and GFLOPS are never converted into each other).
        """
        self._check_facets(query)
        if any(sort_field(key) == "compute" for key in query.sort):
            self._check_one_compute_unit(query)
        rows = self._walk_sort_index(query)
        if rows is None:
            rows = self._walk_filter_range(query)
        if rows is None:
            rows = self._matches_sorted(query)
        return self._with_aliases([Entry.from_dict(json.loads(data)) for data in rows])

    def count_matching(self, query: Query) -> int:
        """How many entries match ``query``'s words and filters, whatever its limit (one SQL count)."""
        where, params = self._filters(query, text_with="fts")
        sql = "SELECT count(*) FROM entries e" + (" WHERE " + " AND ".join(where) if where else "")
        return int(self.db.execute(sql, params).fetchone()[0])

    def facet_values(self, field: str) -> list[str]:
        """The distinct values of ``field`` (``task``, ``framework`` or ``pretrain_dataset``) in the catalog."""
        rows = self.db.execute("SELECT DISTINCT value FROM facets WHERE field = ? ORDER BY value", (field,))
        return [value for (value,) in rows]

    def _check_facets(self, q: Query) -> None:
        """Refuse a task, framework or pretraining dataset that no entry has (it would match nothing)."""
        # the same tests as the filters' (_filters), on one value at a time
        words = "(' ' || value || ' ') LIKE ?"
        checks = (
            ("task", q.task, words, f"% {q.task} %"),
            ("framework", q.framework, "value = ?", q.framework),
            ("pretrain_dataset", q.pretrain_dataset, words, f"% {(q.pretrain_dataset or '').lower()} %"),
        )
        for field, value, test, argument in checks:
            if not value:
                continue
            sql = f"SELECT 1 FROM facets WHERE field = ? AND {test} LIMIT 1"
            if self.db.execute(sql, (field, argument)).fetchone() is not None:
                continue
            choices = self.facet_values(field)
            if choices:  # an empty catalog (or one whose entries leave the field empty) just matches nothing
                what, fix = FACET_FILTERS[field]
                raise InvalidChoiceError(what, value, choices, fix)

    def _check_one_compute_unit(self, q: Query) -> None:
        """Refuse to sort by ``compute`` when the matches report it in more than one unit."""
        where, params = self._filters(q, text_with="fts")
        where.append("e.compute_unit IS NOT NULL")
        condition = " AND ".join(where)
        units = self.db.execute(f"SELECT DISTINCT e.compute_unit FROM entries e WHERE {condition} LIMIT 2", params)
        if len(units.fetchall()) < 2:
            return
        mix = self.db.execute(
            f"SELECT e.compute_unit, group_concat(DISTINCT e.source) FROM entries e WHERE {condition}"
            " GROUP BY e.compute_unit ORDER BY e.compute_unit",
            params,
        ).fetchall()
        units_text = " and ".join(f"{unit} ({', '.join(sorted(sources.split(',')))})" for unit, sources in mix)
        raise MixedUnitsError(
            f"cannot sort by compute: the matches report it in {units_text}, which zooprobe does not convert; "
            "narrow the search to one unit (--source or --framework), or sort by gmacs (GMACs first, the rest last)"
        )

    def _with_aliases(self, entries: list[Entry]) -> list[Entry]:
        """The entries with the aliases linked across sources added to those their source declared."""
        if not entries:
            return entries
        linked: dict[str, dict[str, str]] = {}
        ids = [e.id for e in entries]
        for start in range(0, len(ids), 500):  # stay under SQLite's bound-parameter limit
            chunk = ids[start : start + 500]
            rows = self.db.execute(
                f"SELECT id, alias, why FROM aliases WHERE id IN ({','.join('?' * len(chunk))})", chunk
            )
            for entry_id, alias, why in rows:
                linked.setdefault(entry_id, {})[alias] = why
        out = []
        for entry in entries:
            links = linked.get(entry.id)
            if links:
                reasons = "; ".join(f"{alias}: {why}" for alias, why in links.items())
                entry = replace(
                    entry,
                    aliases=tuple(dict.fromkeys((*entry.aliases, *links))),
                    provenance=tuple(sorted({**dict(entry.provenance), "aliases": reasons}.items())),
                )
            out.append(entry)
        return out

    def _walk_sort_index(self, q: Query, window: int = WALK_WINDOW) -> list[str] | None:
        """A query sorted on one indexed field with a limit, answered from the first ``window`` rows of
        that field's index; None when fewer than ``limit`` of them match (the caller then sorts all
        matches).

        Common text prefixes ('resnet', 'conv') match a tenth of a large catalog; fetching and sorting
        every match costs hundreds of milliseconds, while the first matches in sort order lie near the
        start of the index. Words are tested on the ``terms`` column, which holds exactly what the
        full-text index holds.
        """
        if q.limit is None or len(q.sort) != 1 or sort_field(q.sort[0]) not in WALKABLE_SORTS:
            return None
        column = SORT_FIELDS[sort_field(q.sort[0])].removeprefix("e.")
        desc = q.sort[0].startswith("-")
        where, params = self._filters(q, text_with="terms")
        if desc:
            index, order = f"entries_{column}", f"e.{column} DESC, e.rowid DESC"
        else:
            index, order = f"entries_{column}_nulls_last", f"e.{column} IS NULL, e.{column}, e.rowid"
        # Every walked row yields one value (NULL when it fails a filter) so that Python can count the
        # rows walked and stop at ``window`` instead of letting SQLite walk the whole index.
        matched = f"CASE WHEN {' AND '.join(where)} THEN e.data END" if where else "e.data"
        cursor = self.db.execute(f"SELECT {matched} FROM entries e INDEXED BY {index} ORDER BY {order}", params)
        rows: list[str] = []
        walked = 0
        try:
            while walked < window and len(rows) < q.limit:
                batch = cursor.fetchmany(min(256, window - walked))
                if not batch:
                    return rows  # the whole index walked: these are all the matches
                walked += len(batch)
                rows.extend(data for (data,) in batch if data is not None)
                if walked >= 1024 and walked * q.limit > window * max(len(rows), 1):
                    return None  # at this match rate the window would not fill: sort the matches instead
        finally:
            cursor.close()
        return rows[: q.limit] if len(rows) >= q.limit else None

    def _walk_filter_range(self, q: Query, window: int = WALK_WINDOW) -> list[str] | None:
        """A sorted query answered from the rows in the narrowest indexed range of one of its filters
        (``--min-top1 89``, ``--arch 'mobilenet1*'``), when that range holds at most ``window`` rows;
        None when no filter is that narrow.

        For a common text prefix with a narrow numeric filter: sorting every full-text match would
        fetch a tenth of a large catalog, while the filter's index range holds a few hundred rows.
        """
        if not q.sort:
            return None  # relevance order needs the FTS rank
        ranges: list[tuple[str, str, list[object]]] = []
        for column, low, high in (("params", q.min_params, q.max_params), ("top1", q.min_top1, None)):
            bounds = [f"e.{column} >= ?"] * (low is not None) + [f"e.{column} <= ?"] * (high is not None)
            if bounds:
                ranges.append((column, " AND ".join(bounds), [v for v in (low, high) if v is not None]))
        if q.max_gmacs is not None:
            ranges.append(("gmacs", "e.gmacs <= ?", [q.max_gmacs]))
        if q.resolution is not None:
            ranges.append(("resolution", "e.resolution = ?", [q.resolution]))
        if q.arch and q.arch[:1] not in ("*", "?", "["):  # a literal prefix makes the glob an index range
            ranges.append(("architecture", "e.architecture GLOB ?", [q.arch]))
        best: tuple[int, str] | None = None
        for column, condition, values in ranges:
            rows = self.db.execute(
                f"SELECT count(*) FROM (SELECT 1 FROM entries e INDEXED BY entries_{column} WHERE {condition} LIMIT ?)",
                [*values, window + 1],
            ).fetchone()[0]
            if rows <= window and (best is None or rows < best[0]):
                best = (rows, column)
        if best is None:
            return None
        where, params = self._filters(q, text_with="terms")
        sql = f"SELECT e.data FROM entries e INDEXED BY entries_{best[1]} WHERE {' AND '.join(where)}"
        return self._sorted_page(sql, params, q)

    def _matches_sorted(self, q: Query) -> list[str]:
        """Every match of ``q`` (full-text matches from the FTS index), sorted, then limited."""
        where, params = self._filters(q, text_with="fts" if q.sort else "fts-rank")
        joins = " JOIN entries_fts f ON f.rowid = e.rowid" if q.text and not q.sort and search_terms(q.text) else ""
        sql = f"SELECT e.data FROM entries e{joins}"
        if where:
            sql += " WHERE " + " AND ".join(where)
        if not q.sort:
            sql += " ORDER BY " + ("f.rank" if joins else "e.id")
            if q.limit is not None:
                sql += " LIMIT ?"
                params.append(q.limit)
            return [r[0] for r in self.db.execute(sql, params)]
        return self._sorted_page(sql, params, q)

    def _sorted_page(self, sql: str, params: list[object], q: Query) -> list[str]:
        """Run ``sql`` (a SELECT of ``e.data``) in ``q``'s sort order, ties in the order a walk of the
        sort index meets them, so that every strategy returns the same page."""
        order = []
        for key in q.sort:
            column = SORT_FIELDS[sort_field(key)]
            # NULLs sort first in SQLite ascending and last descending; unknowns always go last
            order.append(f"{column} DESC" if key.startswith("-") else f"{column} IS NULL, {column}")
        # the tie order of a (backward, for one descending key) walk of the sort index
        order.append("e.rowid DESC" if len(q.sort) == 1 and q.sort[0].startswith("-") else "e.rowid")
        sql += " ORDER BY " + ", ".join(order)
        if q.limit is not None:
            sql += " LIMIT ?"
            params = [*params, q.limit]
        return [r[0] for r in self.db.execute(sql, params)]

    @staticmethod
    def _filters(q: Query, *, text_with: str) -> tuple[list[str], list[object]]:
        """SQL conditions on ``entries e`` for every filter of ``q``; the text words are tested with
        ``terms`` LIKE (``text_with='terms'``), as a rowid list from the FTS index (``'fts'``) or as a
        MATCH on a joined ``entries_fts`` (``'fts-rank'``, for relevance order)."""
        where: list[str] = []
        params: list[object] = []
        words = search_terms(q.text) if q.text else []
        if words and text_with == "terms":
            for word in words:
                where.append("(' ' || e.terms) LIKE ? ESCAPE '\\'")
                params.append(_terms_like(word))
        elif words and text_with == "fts":
            where.append("e.rowid IN (SELECT rowid FROM entries_fts WHERE entries_fts MATCH ?)")
            params.append(_fts_expression(words))
        elif words:
            where.append("entries_fts MATCH ?")
            params.append(_fts_expression(words))
        for column, text in (("source", q.source), ("modality", q.modality), ("framework", q.framework)):
            if text:
                where.append(f"e.{column} = ?")
                params.append(text)
        if q.task:
            where.append("(' ' || e.tasks || ' ') LIKE ?")
            params.append(f"% {q.task} %")
        if q.arch:
            where.append("e.architecture GLOB ?")
            params.append(q.arch)
        for clause, value in (
            ("e.params >= ?", q.min_params),
            ("e.params <= ?", q.max_params),
            ("e.gmacs <= ?", q.max_gmacs),
            ("e.top1 >= ?", q.min_top1),
            ("e.resolution = ?", q.resolution),
        ):
            if value is not None:
                where.append(clause)
                params.append(value)
        if q.pretrain_dataset:
            where.append("(' ' || e.pretrain_datasets || ' ') LIKE ?")
            params.append(f"% {q.pretrain_dataset.lower()} %")
        if q.license:
            where.append("lower(e.weights_license) LIKE ?")
            params.append(f"%{q.license.lower()}%")
        return where, params
