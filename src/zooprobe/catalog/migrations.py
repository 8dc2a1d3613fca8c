"""The catalog's schema migrations, in order: a catalog at version N runs those after the Nth on open."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Callable

from .search import _facets, _fts_texts


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
    # whenever a source is replaced (catalog/aliases.py), never stored inside one source's rows.
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
