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

import difflib
import json
import os
import sqlite3
import time
from collections.abc import Iterable
from pathlib import Path

from ..errors import InvalidIdError, StoreError, UnknownEntryError
from .aliases import derive_aliases
from .migrations import MIGRATIONS, SCHEMA_VERSION
from .schema import Entry, split_id
from .search import SORT_FIELDS, CatalogSearch, Query, _facets, _fts_columns, search_terms, sort_field
from .sqlite_guard import connect

DB_NAME = "catalog.sqlite3"


def rebuild_hint(home: Path) -> str:
    """How to rebuild the catalog at ``home``: with ``--home`` when it is not the default one."""
    where = "" if home == default_home() else f" --home {home}"
    return f"run 'zooprobe catalog rebuild{where}' (the old file is kept beside it as a .bak)"


def permission_problem(home: Path, path: Path) -> str | None:
    """Why ``path`` in ``home`` cannot be opened when a permission is the cause, else None.

    A database sqlite cannot open may be corrupt (rebuild it) or merely not ours to read: the fix differs.
    """
    try:
        os.listdir(home)
        if path.exists():
            with open(path, "r+b"):
                pass
    except PermissionError as exc:
        where = exc.filename or home
        return (
            f"permission denied on {where}: zooprobe reads and writes its data there; give your user read and write"
            f" access (e.g. chmod u+rwX {where}) or use a home of your own (--home DIR or $ZOOPROBE_HOME)"
        )
    return None


def default_home() -> Path:
    """``$ZOOPROBE_HOME``, else ``~/.cache/zooprobe``."""
    env = os.environ.get("ZOOPROBE_HOME")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "zooprobe"


# --- migrations: append only; each takes a connection inside a transaction -----------------------


def enable_wal(db: sqlite3.Connection, patience: float = 30.0) -> None:
    """Switch ``db`` to write-ahead logging, waiting out other processes that hold the file.

    Changing the journal mode needs the database to itself, and SQLite answers "database is locked"
    at once instead of calling the busy handler when another process is creating the same new file.
    """
    deadline = time.monotonic() + patience
    while True:
        try:
            db.execute("PRAGMA journal_mode = WAL")
            return
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or time.monotonic() > deadline:
                raise
            time.sleep(0.05)


class Catalog(CatalogSearch):
    """The SQLite catalog at ``home/catalog.sqlite3``; created and migrated on open."""

    def __init__(self, home: Path | str | None = None) -> None:
        self.home = Path(home) if home is not None else default_home()
        self.path = self.home / DB_NAME
        self.home.mkdir(parents=True, exist_ok=True)
        self.db = self._open()

    def _open(self) -> sqlite3.Connection:
        try:
            # every later query turns page-level damage into a StoreError naming the rebuild
            db = connect(self.path, what=f"catalog database {self.path}", fix=rebuild_hint(self.home))
            db.execute("PRAGMA busy_timeout = 30000")
            enable_wal(db)
            version = db.execute("PRAGMA user_version").fetchone()[0]
        except (sqlite3.DatabaseError, StoreError) as exc:
            denied = permission_problem(self.home, self.path)
            if denied:
                raise StoreError(denied) from None
            if isinstance(exc, StoreError):  # damage, already named by the guarded connection
                raise
            hint = rebuild_hint(self.home)
            raise StoreError(f"catalog database {self.path} cannot be read ({exc}); {hint}") from None
        if version > SCHEMA_VERSION:
            db.close()
            raise StoreError(
                f"catalog database {self.path} has schema version {version}, newer than this zooprobe "
                f"understands ({SCHEMA_VERSION}); upgrade zooprobe or {rebuild_hint(self.home)}"
            )
        if version < SCHEMA_VERSION:
            self._migrate(db, version)
        return db

    @staticmethod
    def _migrate(db: sqlite3.Connection, version: int) -> None:
        for number, migration in enumerate(MIGRATIONS[version:], start=version + 1):
            db.execute("BEGIN IMMEDIATE")
            try:
                # another process opening the same new catalog may have migrated it since we read the version
                if db.execute("PRAGMA user_version").fetchone()[0] < number:
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
        facets: set[tuple[str, str, str]] = set()
        seen: set[str] = set()
        for entry in entries:
            if entry.source != source:
                raise ValueError(f"entry '{entry.id}' yielded by source '{source}' names source '{entry.source}'")
            if entry.id in seen:
                raise ValueError(f"source '{source}' yielded '{entry.id}' twice; ids must be unique")
            seen.add(entry.id)
            rows.append(_row(entry))
            fts_rows.append((*_fts_columns(entry), entry.id))
            facets |= _facets(source, entry.framework, " ".join(entry.tasks), _pretrain_datasets(entry))
        self.db.execute("BEGIN IMMEDIATE")
        try:
            self.db.execute(
                "DELETE FROM entries_fts WHERE rowid IN (SELECT rowid FROM entries WHERE source = ?)", (source,)
            )
            self.db.execute("DELETE FROM entries WHERE source = ?", (source,))
            self.db.executemany(f"INSERT INTO entries VALUES ({','.join('?' * ROW_WIDTH)})", rows)
            self.db.executemany(
                "INSERT INTO entries_fts(rowid, id, name, architecture, tags, description)"
                " SELECT rowid, ?, ?, ?, ?, ? FROM entries WHERE id = ?",
                fts_rows,
            )
            self.db.execute("DELETE FROM facets WHERE source = ?", (source,))
            self.db.executemany("INSERT INTO facets VALUES (?, ?, ?)", sorted(facets))
            # fresh statistics let the planner choose between a filter index and walking a sort index, and
            # join the aliases by index (with the statistics of a smaller catalog it scans: 0.9 s for timm)
            self.db.execute("ANALYZE")
            self.db.execute("DELETE FROM aliases")
            self.db.executemany("INSERT INTO aliases VALUES (?, ?, ?)", derive_aliases(self.db))
            self.db.execute(
                "INSERT OR REPLACE INTO sources VALUES (?, ?, ?, ?, ?)",
                (source, version, origin, time.time(), len(rows)),
            )
            self.db.execute("COMMIT")
        except BaseException:
            self.db.execute("ROLLBACK")
            raise
        return len(rows)

    # --- reading ----------------------------------------------------------------------------

    def source_versions(self) -> dict[str, str | None]:
        return {s: v for s, v in self.db.execute("SELECT source, version FROM sources")}

    def source_counts(self) -> dict[str, int]:
        """How many entries each synced source holds."""
        return {s: n for s, n in self.db.execute("SELECT source, entries FROM sources")}

    def stats(self) -> list[dict[str, object]]:
        """Per source: package version, where entries came from, when, and how many."""
        cur = self.db.execute("SELECT source, version, origin, synced_at, entries FROM sources ORDER BY source")
        return [dict(zip(("source", "version", "origin", "synced_at", "entries"), row, strict=True)) for row in cur]

    def is_empty(self) -> bool:
        """Whether no source has stored an entry yet."""
        return self.db.execute("SELECT 1 FROM entries LIMIT 1").fetchone() is None

    def count(self) -> int:
        return int(self.db.execute("SELECT count(*) FROM entries").fetchone()[0])

    def ids(self) -> list[str]:
        return [r[0] for r in self.db.execute("SELECT id FROM entries")]

    def get(self, entry_id: str) -> Entry:
        """The entry with this id.

        :raises UnknownEntryError: with the closest ids when it is absent.
        :raises InvalidIdError: when ``entry_id`` lacks its ``source:`` part, with up to three ids
            whose name is, starts with or resembles what was typed.
        """
        try:
            split_id(entry_id)
        except InvalidIdError:
            raise InvalidIdError(entry_id, self._ids_like(entry_id)) from None
        row = self.db.execute("SELECT data FROM entries WHERE id = ?", (entry_id,)).fetchone()
        if row is None:
            source = entry_id.split(":", 1)[0]
            nearby = [r[0] for r in self.db.execute("SELECT id FROM entries WHERE source = ?", (source,))]
            if not nearby and source not in self.source_versions():
                # e.g. the first sync named another source: this one was never listed here
                fix = f"this catalog has no '{source}' entries yet: zooprobe catalog sync --source {source}"
                raise UnknownEntryError(entry_id, self.ids(), fix)
            raise UnknownEntryError(entry_id, nearby or self.ids())
        return self._with_aliases([Entry.from_dict(json.loads(row[0]))])[0]

    def _ids_like(self, typed: str, n: int = 3) -> list[str]:
        """Up to ``n`` ids for an id typed without its source: entries whose name equals ``typed``,
        whose architecture equals it or whose name starts with it, else whose architecture resembles
        it; the best (highest top-1) of each source first, so that every source is offered."""
        name = typed.rpartition(":")[2].strip()
        if not name:
            return []
        escaped = name.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
        rows = self.db.execute(
            "SELECT id, source, name, architecture, top1 FROM entries"
            " WHERE name LIKE ? ESCAPE '\\' OR architecture = ? COLLATE NOCASE",
            (escaped + "%", name),
        ).fetchall()
        lowered = name.lower()
        ranked: list[tuple[int, float, str, str]] = []  # (closeness, -top1, id, source)
        for entry_id, source, entry_name, architecture, top1 in rows:
            own = entry_name.lower()
            if own == lowered:
                closeness = 0
            elif architecture.lower() == lowered or own.startswith(lowered + "."):
                closeness = 1
            else:
                closeness = 2
            ranked.append((closeness, -(top1 if top1 is not None else -1.0), entry_id, source))
        if not ranked:
            architectures = [r[0] for r in self.db.execute("SELECT DISTINCT architecture FROM entries")]
            by_lower = {a.lower(): a for a in architectures}
            close = difflib.get_close_matches(lowered.split(".")[0], list(by_lower), n=n, cutoff=0.6)
            for closeness, arch in enumerate(close, start=3):
                for entry_id, source, top1 in self.db.execute(
                    "SELECT id, source, top1 FROM entries WHERE architecture = ?", (by_lower[arch],)
                ):
                    ranked.append((closeness, -(top1 if top1 is not None else -1.0), entry_id, source))
        ranked.sort()
        best_of_source: dict[str, str] = {}
        for _, _, entry_id, source in ranked:
            best_of_source.setdefault(source, entry_id)
        picked = list(best_of_source.values())[:n]
        for _, _, entry_id, _ in ranked:
            if len(picked) >= n:
                break
            if entry_id not in picked:
                picked.append(entry_id)
        return picked


def _pretrain_datasets(e: Entry) -> str:
    """The pretrain_datasets column: each stage's dataset, lower case, space-separated."""
    return " ".join(s.dataset.lower() for s in e.pretraining)


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
        _pretrain_datasets(e),
        e.pretrain_examples,
        e.weights_license,
        e.to_json(),
        e.weights_url,
        " ".join(_fts_columns(e)),
    )


ROW_WIDTH = 21  # columns of the entries table after every migration, in _row's order


# the search names the rest of zooprobe has always imported from here
__all__ = [
    "DB_NAME",
    "MIGRATIONS",
    "SCHEMA_VERSION",
    "SORT_FIELDS",
    "Catalog",
    "Query",
    "default_home",
    "enable_wal",
    "permission_problem",
    "rebuild_hint",
    "search_terms",
    "sort_field",
]
