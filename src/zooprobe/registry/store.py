"""The catalog store: one SQLite file holding every entry of every synced source.

Invariants:
- A source's entries are replaced as a whole, in one transaction, together with the version of the
  package they came from (``sources`` table); a reader never sees half a sync.
- WAL mode and a busy timeout let searches run while a sync writes.
- The schema version lives in ``PRAGMA user_version``; migrations are named functions applied in
  order. A database written by a newer zooprobe, or one SQLite cannot read, raises
  :class:`~zooprobe.errors.StoreError` with the command that rebuilds it; nothing is deleted
  silently (a rebuild first moves the old file aside).
"""

from __future__ import annotations

import json
import os
import re
import sqlite3
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

from ..errors import InvalidChoiceError, StoreError, UnknownEntryError
from .schema import Entry, split_id

DB_NAME = "catalog.sqlite3"
REBUILD_HINT = "run 'zooprobe catalog rebuild' (the old file is kept beside it as a .bak)"


def default_home() -> Path:
    """``$ZOOPROBE_HOME``, else ``~/.cache/zooprobe``."""
    env = os.environ.get("ZOOPROBE_HOME")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "zooprobe"


# --- migrations: append only; each takes a connection inside a transaction -----------------------


def m001_entries(db: sqlite3.Connection) -> None:
    db.execute(
        """CREATE TABLE entries (
            id TEXT PRIMARY KEY, source TEXT NOT NULL, name TEXT NOT NULL,
            architecture TEXT NOT NULL, family TEXT, modality TEXT, framework TEXT, tasks TEXT,
            params INTEGER, params_no_head INTEGER, gmacs REAL, compute_value REAL,
            compute_unit TEXT, top1 REAL, resolution INTEGER, pretrain_datasets TEXT,
            pretrain_examples INTEGER, weights_license TEXT, data TEXT NOT NULL)"""
    )
    for column in ("source", "params", "gmacs", "top1", "resolution", "pretrain_examples", "architecture"):
        db.execute(f"CREATE INDEX entries_{column} ON entries({column})")
    db.execute(
        "CREATE VIRTUAL TABLE entries_fts USING fts5(id, name, architecture, tags, description,"
        " tokenize=\"unicode61 tokenchars '_'\")"
    )


def m002_sources(db: sqlite3.Connection) -> None:
    db.execute(
        "CREATE TABLE sources (source TEXT PRIMARY KEY, version TEXT, origin TEXT,"
        " synced_at REAL NOT NULL, entries INTEGER NOT NULL)"
    )


def m003_sort_indexes(db: sqlite3.Connection) -> None:
    # Ascending sorts put unknown (NULL) values last: an index on (col IS NULL, col) lets a sorted,
    # limited query walk the index and stop early instead of sorting every match. Descending sorts
    # use the plain column index (SQLite already puts NULLs last there).
    for column in ("params", "gmacs", "top1", "resolution", "pretrain_examples"):
        db.execute(f"CREATE INDEX entries_{column}_nulls_last ON entries({column} IS NULL, {column})")


MIGRATIONS: tuple[Callable[[sqlite3.Connection], None], ...] = (m001_entries, m002_sources, m003_sort_indexes)
SCHEMA_VERSION = len(MIGRATIONS)

SORT_FIELDS: dict[str, str] = {
    "id": "e.id",
    "params": "e.params",
    "gmacs": "e.gmacs",
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


def _fts_expression(text: str) -> str:
    # Each word becomes a quoted prefix term so 'resnet' finds 'resnet50' and user punctuation
    # cannot inject FTS syntax.
    words = [w for w in re.split(r"[^\w]+", text) if w]
    return " ".join(f'"{w}"*' for w in words)


class Catalog:
    """The SQLite catalog at ``home/catalog.sqlite3``; created and migrated on open."""

    def __init__(self, home: Path | str | None = None) -> None:
        self.home = Path(home) if home is not None else default_home()
        self.path = self.home / DB_NAME
        self.home.mkdir(parents=True, exist_ok=True)
        self.db = self._open()

    def _open(self) -> sqlite3.Connection:
        try:
            db = sqlite3.connect(self.path, timeout=30.0, isolation_level=None)
            db.execute("PRAGMA busy_timeout = 30000")
            db.execute("PRAGMA journal_mode = WAL")
            version = db.execute("PRAGMA user_version").fetchone()[0]
        except sqlite3.DatabaseError as exc:
            raise StoreError(f"catalog database {self.path} cannot be read ({exc}); {REBUILD_HINT}") from None
        if version > SCHEMA_VERSION:
            db.close()
            raise StoreError(
                f"catalog database {self.path} has schema version {version}, newer than this zooprobe "
                f"understands ({SCHEMA_VERSION}); upgrade zooprobe or {REBUILD_HINT}"
            )
        if version < SCHEMA_VERSION:
            self._migrate(db, version)
        return db

    @staticmethod
    def _migrate(db: sqlite3.Connection, version: int) -> None:
        for number, migration in enumerate(MIGRATIONS[version:], start=version + 1):
            db.execute("BEGIN IMMEDIATE")
            try:
                migration(db)
                db.execute(f"PRAGMA user_version = {number}")
                db.execute("COMMIT")
            except BaseException:
                db.execute("ROLLBACK")
                raise

    def close(self) -> None:
        self.db.close()

    def __enter__(self) -> Catalog:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # --- writing ----------------------------------------------------------------------------

    def replace_source(self, source: str, version: str | None, entries: Iterable[Entry], origin: str = "") -> int:
        """Replace every entry of ``source`` with ``entries`` in one transaction; returns the count.

        :raises ValueError: when an entry belongs to another source or an id repeats.
        """
        rows = []
        fts_rows = []
        seen: set[str] = set()
        for entry in entries:
            if entry.source != source:
                raise ValueError(f"entry '{entry.id}' yielded by source '{source}' names source '{entry.source}'")
            if entry.id in seen:
                raise ValueError(f"source '{source}' yielded '{entry.id}' twice; ids must be unique")
            seen.add(entry.id)
            rows.append(_row(entry))
            fts_rows.append((entry.id, entry.name, entry.architecture, " ".join(entry.tags), entry.description or ""))
        self.db.execute("BEGIN IMMEDIATE")
        try:
            self.db.execute(
                "DELETE FROM entries_fts WHERE rowid IN (SELECT rowid FROM entries WHERE source = ?)", (source,)
            )
            self.db.execute("DELETE FROM entries WHERE source = ?", (source,))
            self.db.executemany(f"INSERT INTO entries VALUES ({','.join('?' * 19)})", rows)
            self.db.executemany(
                "INSERT INTO entries_fts(rowid, id, name, architecture, tags, description)"
                " SELECT rowid, ?, ?, ?, ?, ? FROM entries WHERE id = ?",
                [(*f, f[0]) for f in fts_rows],
            )
            self.db.execute(
                "INSERT OR REPLACE INTO sources VALUES (?, ?, ?, ?, ?)",
                (source, version, origin, time.time(), len(rows)),
            )
            # fresh statistics let the planner choose between a filter index and walking a sort index
            self.db.execute("ANALYZE")
            self.db.execute("COMMIT")
        except BaseException:
            self.db.execute("ROLLBACK")
            raise
        return len(rows)

    # --- reading ----------------------------------------------------------------------------

    def source_versions(self) -> dict[str, str | None]:
        return {s: v for s, v in self.db.execute("SELECT source, version FROM sources")}

    def stats(self) -> list[dict[str, object]]:
        """Per source: package version, where entries came from, when, and how many."""
        cur = self.db.execute("SELECT source, version, origin, synced_at, entries FROM sources ORDER BY source")
        return [dict(zip(("source", "version", "origin", "synced_at", "entries"), row, strict=True)) for row in cur]

    def count(self) -> int:
        return int(self.db.execute("SELECT count(*) FROM entries").fetchone()[0])

    def ids(self) -> list[str]:
        return [r[0] for r in self.db.execute("SELECT id FROM entries")]

    def get(self, entry_id: str) -> Entry:
        """The entry with this id.

        :raises UnknownEntryError: with the closest ids when it is absent.
        """
        split_id(entry_id)
        row = self.db.execute("SELECT data FROM entries WHERE id = ?", (entry_id,)).fetchone()
        if row is None:
            source = entry_id.split(":", 1)[0]
            nearby = [r[0] for r in self.db.execute("SELECT id FROM entries WHERE source = ?", (source,))]
            raise UnknownEntryError(entry_id, nearby or self.ids())
        return Entry.from_dict(json.loads(row[0]))

    def search(self, query: Query) -> list[Entry]:
        """Entries matching every filter of ``query``, sorted as asked (relevance for text by default)."""
        sql, params = self._compile(query)
        return [Entry.from_dict(json.loads(r[0])) for r in self.db.execute(sql, params)]

    def _compile(self, q: Query) -> tuple[str, list[object]]:
        where: list[str] = []
        params: list[object] = []
        joins = ""
        if q.text and _fts_expression(q.text):
            if q.sort:
                # Sorted: no bm25 rank is needed, so matches become a rowid list the planner can
                # combine with the numeric indexes (at 1M records it still sorts every match).
                where.append("e.rowid IN (SELECT rowid FROM entries_fts WHERE entries_fts MATCH ?)")
            else:
                joins = " JOIN entries_fts f ON f.rowid = e.rowid"
                where.append("entries_fts MATCH ?")
            params.append(_fts_expression(q.text))
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
        order = []
        for key in q.sort:
            desc = key.startswith("-")
            column = SORT_FIELDS[sort_field(key)]
            # NULLs sort first in SQLite ascending and last descending; unknowns always go last
            order.append(f"{column} DESC" if desc else f"{column} IS NULL, {column}")
        if not order:
            order.append("f.rank" if joins else "e.id")
        sql = f"SELECT e.data FROM entries e{joins}"
        if where:
            sql += " WHERE " + " AND ".join(where)
        sql += " ORDER BY " + ", ".join(order)
        if q.limit is not None:
            sql += " LIMIT ?"
            params.append(q.limit)
        return sql, params


def _row(e: Entry) -> tuple[object, ...]:
    res = e.input.default_resolution[0] if e.input.default_resolution else None
    return (
        e.id,
        e.source,
        e.name,
        e.architecture,
        e.family,
        e.modality,
        e.framework,
        " ".join(e.tasks),
        e.params,
        e.params_no_head,
        e.compute.gmacs if e.compute else None,
        e.compute.value if e.compute else None,
        e.compute.unit if e.compute else None,
        e.top1,
        res,
        " ".join(s.dataset.lower() for s in e.pretraining),
        e.pretrain_examples,
        e.weights_license,
        e.to_json(),
    )
