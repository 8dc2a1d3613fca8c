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
import re
import sqlite3
import time
import unicodedata
from collections.abc import Callable, Iterable
from dataclasses import dataclass, replace
from pathlib import Path

from ..errors import InvalidChoiceError, InvalidIdError, MixedUnitsError, StoreError, UnknownEntryError
from .aliases import derive_aliases
from .schema import Entry, split_id
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


def m004_weights_url_aliases_terms(db: sqlite3.Connection) -> None:
    # Aliases link entries of different sources, so they live beside the entries and are re-derived
    # whenever a source is replaced (registry/aliases.py), never stored inside one source's rows.
    db.execute("ALTER TABLE entries ADD COLUMN weights_url TEXT")
    db.execute("CREATE INDEX entries_weights_url ON entries(weights_url)")
    db.execute(
        "CREATE TABLE aliases (id TEXT NOT NULL, alias TEXT NOT NULL, why TEXT NOT NULL,"
        " PRIMARY KEY (id, alias)) WITHOUT ROWID"
    )
    # ``terms`` holds every indexed word so that a sorted query can walk a sort index and test words
    # with LIKE instead of materialising every full-text match; the full-text index is rewritten with
    # the same normalised words (search_terms) so that both tests agree exactly.
    db.execute("ALTER TABLE entries ADD COLUMN terms TEXT NOT NULL DEFAULT ''")
    db.execute("DELETE FROM entries_fts")
    for rowid, data in db.execute("SELECT rowid, data FROM entries").fetchall():
        d = json.loads(data)
        columns = _fts_texts(d["id"], d["name"], d["architecture"], d.get("tags") or (), d.get("description"))
        db.execute("UPDATE entries SET terms = ? WHERE rowid = ?", (" ".join(columns), rowid))
        db.execute(
            "INSERT INTO entries_fts(rowid, id, name, architecture, tags, description) VALUES (?, ?, ?, ?, ?, ?)",
            (rowid, *columns),
        )


def m005_facets_compute_sort(db: sqlite3.Connection) -> None:
    # ``facets`` holds the distinct values of the word-list filters (task, framework, pretraining
    # dataset) per source, kept by replace_source: a value no entry has is then reported from a few
    # rows instead of a scan of every entry.
    db.execute(
        "CREATE TABLE facets (field TEXT NOT NULL, value TEXT NOT NULL, source TEXT NOT NULL,"
        " PRIMARY KEY (field, value, source)) WITHOUT ROWID"
    )
    found: set[tuple[str, str, str]] = set()
    for row in db.execute("SELECT DISTINCT source, framework, tasks, pretrain_datasets FROM entries"):
        found |= _facets(*row)
    db.executemany("INSERT INTO facets VALUES (?, ?, ?)", sorted(found))
    # sorting on the reported compute number (within one unit): the same index pair as m003's
    db.execute("CREATE INDEX entries_compute_value ON entries(compute_value)")
    db.execute("CREATE INDEX entries_compute_value_nulls_last ON entries(compute_value IS NULL, compute_value)")
    db.execute("CREATE INDEX entries_compute_unit ON entries(compute_unit)")


def m006_resync_timm(db: sqlite3.Connection) -> None:
    # timm entries listed before this version took compute at the benchmark's smallest size, not the
    # entry's own: forget the stored timm version so the next 'zooprobe catalog sync' reads it again
    # (a sync is otherwise skipped while the package version is unchanged).
    db.execute("UPDATE sources SET version = NULL WHERE source = 'timm'")


def m007_resync_preprocessing(db: sqlite3.Connection) -> None:
    # torchvision entries listed before this version missed the default resize of their transform
    # (crop_pct unset: resize 224 instead of 256), and timm entries had no crop_mode: forget both
    # stored versions so the next sync lists them again (as m006 does).
    db.execute("UPDATE sources SET version = NULL WHERE source IN ('torchvision', 'timm')")


MIGRATIONS: tuple[Callable[[sqlite3.Connection], None], ...] = (
    m001_entries,
    m002_sources,
    m003_sort_indexes,
    m004_weights_url_aliases_terms,
    m005_facets_compute_sort,
    m006_resync_timm,
    m007_resync_preprocessing,
)
SCHEMA_VERSION = len(MIGRATIONS)

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


class Catalog:
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
