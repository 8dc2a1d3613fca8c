"""Checking a run store and copying what is readable out of a damaged one (``zooprobe runs check``).

Invariants:
- The store is opened read-only: checking or salvaging never writes it or its WAL (SQLite creates a
  shared-memory index beside a store that has a WAL file, as any reader does).
- The copy is a new file beside the store (``runs.recovered-<time>.sqlite3``), written under a
  temporary name, synced and renamed into place; an existing file is never overwritten.
- Rows are read one at a time in rowid order, stepping over those on unreadable pages, so a damaged
  page costs the rows on it and no more. A row whose content does not parse is left out, as is a row of
  a run whose own record is unreadable (every reader of a run starts from that record).
"""

from __future__ import annotations

import json
import os
import re
import sqlite3
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..catalog.sqlite_guard import is_damage

# checkpoints: the sha256 of each arm's kept checkpoints (migration 3), so a copy still verifies them by hash
TABLES = ("runs", "candidates", "scores", "epochs", "checkpoints")
# consecutive unreadable rowids after which a table whose highest rowid is unknown is given up
_MAX_MISSES = 200_000


@dataclass
class TableSalvage:
    """What could be read of one table: the rows read (and copied, from a damaged store), the rowids on
    unreadable pages, and the rows left out."""

    table: str
    readable: int = 0
    unreadable: int = 0  # rowids skipped over (an upper bound: rowids have gaps)
    unparsable: int = 0
    orphaned: int = 0  # rows of a run whose own record was unreadable


@dataclass
class Salvage:
    """The outcome of checking a run store: its problems and, when it had some, the copy made."""

    path: Path
    problems: list[str]
    tables: list[TableSalvage] = field(default_factory=list)
    copy: Path | None = None
    readable: bool = True

    @property
    def intact(self) -> bool:
        return self.readable and self.problems == ["ok"]


def _read_only(path: Path) -> sqlite3.Connection:
    # without a WAL file there is nothing but the file to read: immutable creates nothing beside it
    wal = path.with_name(path.name + "-wal").exists()
    mode = "mode=ro" if wal else "immutable=1"
    return sqlite3.connect(f"{path.resolve().as_uri()}?{mode}", uri=True, isolation_level=None, timeout=30.0)


def integrity_problems(db: sqlite3.Connection, limit: int = 20) -> list[str]:
    """``PRAGMA integrity_check``'s lines (``['ok']`` for an intact store)."""
    return [row[0] for row in db.execute(f"PRAGMA integrity_check({int(limit)})")]


def _exists(db: sqlite3.Connection, table: str) -> bool:
    """Whether the store has ``table``: a store from before a migration lacks the tables it adds."""
    return db.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?", (table,)).fetchone() is not None


def _walk(db: sqlite3.Connection, table: str, tally: TableSalvage) -> list[tuple[Any, ...]]:
    """Every readable row of ``table`` in rowid order (without the rowid); none when the store lacks it."""
    if not _exists(db, table):
        return []
    try:
        top = db.execute(f"SELECT max(rowid) FROM {table}").fetchone()[0]  # a fixed table name
    except sqlite3.DatabaseError:
        top = None
    rows: list[tuple[Any, ...]] = []
    last, misses = 0, 0
    query = f"SELECT rowid, * FROM {table} WHERE rowid > ? ORDER BY rowid LIMIT 1"
    while True:
        try:
            row = db.execute(query, (last,)).fetchone()
        except sqlite3.DatabaseError as exc:
            if not is_damage(exc):
                raise
            last += 1
            misses += 1
            tally.unreadable += 1
            if (top is not None and last >= top) or misses > _MAX_MISSES:
                break
            continue
        if row is None:
            break
        rows.append(tuple(row[1:]))
        last, misses = row[0], 0
    return rows


def _parses(*documents: Any) -> bool:
    try:
        for document in documents:
            if document is not None:
                json.loads(document)
    except (TypeError, ValueError):
        return False
    return True


# per table: the check a row must pass to be copied (the columns in the table's order)
_CHECKS: dict[str, Callable[[tuple[Any, ...]], bool]] = {
    "runs": lambda r: r[1] in ("assess", "finetune") and r[2] in ("running", "done", "failed") and _parses(*r[7:10]),
    "candidates": lambda r: _parses(r[3]),
    "scores": lambda r: _parses(r[7]),
    "epochs": lambda r: _parses(r[8]),
    "checkpoints": lambda r: isinstance(r[3], str) and re.fullmatch("[0-9a-f]{64}", r[3]) is not None,
}


def check_store(path: Path) -> Salvage:
    """Check the run store at ``path`` read-only; when it is damaged, copy what is readable beside it."""
    db = _read_only(path)
    try:
        try:
            db.execute("SELECT count(*) FROM sqlite_master").fetchone()
        except sqlite3.DatabaseError as exc:  # not SQLite's, or its schema unreadable: no table can be found
            return Salvage(path, [str(exc)], readable=False)
        try:
            problems = integrity_problems(db)
        except sqlite3.DatabaseError as exc:  # some damage stops the check itself
            problems = [str(exc)]
        if problems == ["ok"]:
            return Salvage(path, problems, tables=[_count(db, table) for table in TABLES])
        salvage = Salvage(path, problems)
        kept: dict[str, list[tuple[Any, ...]]] = {}
        for table in TABLES:
            tally = TableSalvage(table)
            walked = _walk(db, table, tally)
            kept[table] = [row for row in walked if _CHECKS[table](row)]
            tally.unparsable = len(walked) - len(kept[table])
            salvage.tables.append(tally)
    finally:
        db.close()
    run_ids = {row[0] for row in kept["runs"]}
    for tally in salvage.tables:
        rows = kept[tally.table]
        if tally.table != "runs":
            kept[tally.table] = [row for row in rows if row[0] in run_ids]
            tally.orphaned = len(rows) - len(kept[tally.table])
        tally.readable = len(kept[tally.table])
    salvage.copy = _write_copy(path, kept)
    return salvage


def _count(db: sqlite3.Connection, table: str) -> TableSalvage:
    if not _exists(db, table):
        return TableSalvage(table)
    return TableSalvage(table, readable=int(db.execute(f"SELECT count(*) FROM {table}").fetchone()[0]))


def _write_copy(path: Path, kept: dict[str, list[tuple[Any, ...]]]) -> Path:
    """A fresh store beside ``path`` holding ``kept``, at the schema of this zooprobe (the tables copied
    have had the same columns in every schema version so far)."""
    from .store import MIGRATIONS

    stamp = time.strftime("%Y%m%d-%H%M%S")
    target = path.with_name(f"{path.stem}.recovered-{stamp}{path.suffix}")
    number = 1
    while target.exists():
        number += 1
        target = path.with_name(f"{path.stem}.recovered-{stamp}-{number}{path.suffix}")
    temp = target.with_name(f".{target.name}.{os.getpid()}.tmp")
    db = sqlite3.connect(temp, isolation_level=None)
    try:
        db.execute("BEGIN")
        for migration in MIGRATIONS:
            migration(db)
        db.execute(f"PRAGMA user_version = {len(MIGRATIONS)}")
        for table in TABLES:
            rows = kept[table]
            if rows:
                marks = ",".join("?" * len(rows[0]))
                db.executemany(f"INSERT OR REPLACE INTO {table} VALUES ({marks})", rows)
        db.execute("COMMIT")
        db.close()
        with open(temp, "rb") as written:
            os.fsync(written.fileno())
        os.rename(temp, target)
    finally:
        db.close()
        temp.unlink(missing_ok=True)
    return target
