"""The run store: assessments and fine-tuning runs, kept apart from the catalog so that rebuilding the
catalog never touches a user's results.

Invariants:
- One SQLite file (``runs.sqlite3`` beside the catalog), WAL mode, versioned by ``PRAGMA user_version``
  with append-only migrations, as the catalog.
- A run is created ``running`` and ends ``done`` or ``failed``; a killed process leaves it ``running``
  and a later call may resume it. Every result row is written in its own transaction as soon as it
  is known, so an interruption loses at most the row being computed.
- Result rows are keyed so that writing the same result twice replaces it (resuming is idempotent).
- One process at a time writes a run: creating or reopening it takes its lock (:mod:`.lock`), and a
  second live process is refused. Page-level damage found by any query is a one-line StoreError
  naming ``zooprobe runs check`` (:mod:`.recover`).
"""

from __future__ import annotations

import builtins
import json
import os
import sqlite3
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from ..catalog.sqlite_guard import connect
from ..catalog.store import default_home, enable_wal, permission_problem
from ..errors import StoreError, ZooprobeError
from . import lock
from .checksums import checksums, m003_checkpoint_checksums, put_checksum
from .lock import RunLockedError, m002_run_locks
from .records import METRIC_COLUMNS, AssessSummary, CandidateResult, EpochRecord, FinetuneSummary

__all__ = [
    "EpochRecord",
    "Run",
    "RunLockedError",
    "RunStore",
    "Score",
    "UnknownRunError",
    "check_hint",
    "library_versions",
    "open_runs",
]

RUNS_DB_NAME = "runs.sqlite3"
RunKind = Literal["assess", "finetune"]
RunStatus = Literal["running", "done", "failed"]
Summary = AssessSummary | FinetuneSummary


# Runs this process started or reopened and has not finished, in order: what Ctrl-C leaves to resume.
_open_here: dict[str, tuple[str, Path]] = {}


def unfinished_here() -> list[tuple[str, str, Path]]:
    """(kind, run id, home) of the runs this process started or resumed and has not finished, oldest first."""
    return [(kind, run_id, home) for run_id, (kind, home) in _open_here.items()]


class UnknownRunError(ZooprobeError):
    """A run id that is not in the store."""


def check_hint(home: Path) -> str:
    """What to do about a damaged run store at ``home``: the command that salvages it."""
    where = "" if home == default_home() else f" --home {home}"
    return f"run 'zooprobe runs check{where}' to copy what is readable into a fresh store (the file is left as it is)"


def m001_runs(db: sqlite3.Connection) -> None:
    db.execute(
        """CREATE TABLE runs (
            id TEXT PRIMARY KEY, kind TEXT NOT NULL, status TEXT NOT NULL,
            created REAL NOT NULL, updated REAL NOT NULL,
            data TEXT NOT NULL, data_hash TEXT, config TEXT NOT NULL, versions TEXT NOT NULL,
            summary TEXT, error TEXT)"""
    )
    db.execute("CREATE INDEX runs_created ON runs(created)")
    db.execute("CREATE INDEX runs_data ON runs(data_hash)")
    # One row per (candidate, cut point, metric) of an assessment; layer '' for per-model facts.
    db.execute(
        """CREATE TABLE scores (
            run_id TEXT NOT NULL REFERENCES runs(id) ON DELETE CASCADE,
            model TEXT NOT NULL, layer TEXT NOT NULL, metric TEXT NOT NULL,
            value REAL, spread REAL, seconds REAL, extra TEXT,
            PRIMARY KEY (run_id, model, layer, metric))"""
    )
    # Per-candidate JSON documents of an assessment: input check, data ratio, recommendation.
    db.execute(
        """CREATE TABLE candidates (
            run_id TEXT NOT NULL REFERENCES runs(id) ON DELETE CASCADE,
            model TEXT NOT NULL, position INTEGER NOT NULL, doc TEXT NOT NULL,
            PRIMARY KEY (run_id, model))"""
    )
    # One row per epoch of each arm (a strategy, or 'scratch') of a fine-tuning run.
    db.execute(
        """CREATE TABLE epochs (
            run_id TEXT NOT NULL REFERENCES runs(id) ON DELETE CASCADE,
            arm TEXT NOT NULL, epoch INTEGER NOT NULL,
            train_loss REAL, val_loss REAL, val_accuracy REAL, val_balanced_accuracy REAL,
            seconds REAL, extra TEXT,
            PRIMARY KEY (run_id, arm, epoch))"""
    )


MIGRATIONS: list[Callable[[sqlite3.Connection], None]] = [m001_runs, m002_run_locks, m003_checkpoint_checksums]
SCHEMA_VERSION = len(MIGRATIONS)


@dataclass(frozen=True)
class Run:
    """One recorded run: what went in (data, config, library versions) and how it ended."""

    id: str
    kind: RunKind
    status: RunStatus
    created: float
    updated: float
    data: str
    data_hash: str | None
    config: dict[str, Any]
    versions: dict[str, str]
    summary: dict[str, Any] | None = None
    error: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "kind": self.kind,
            "status": self.status,
            "created": self.created,
            "updated": self.updated,
            "data": self.data,
            "data_hash": self.data_hash,
            "config": self.config,
            "versions": self.versions,
            "summary": self.summary,
            "error": self.error,
        }

    @property
    def assess_summary(self) -> AssessSummary | None:
        """An assessment's summary (None for a fine-tuning run, and before the first one is written)."""
        return AssessSummary.from_json(self.summary) if self.kind == "assess" and self.summary else None

    @property
    def finetune_summary(self) -> FinetuneSummary | None:
        """A fine-tuning run's summary (None for an assessment, and while it runs)."""
        return FinetuneSummary.from_json(self.summary) if self.kind == "finetune" and self.summary else None


@dataclass(frozen=True)
class Score:
    model: str
    layer: str
    metric: str
    value: float | None
    spread: float | None = None
    seconds: float | None = None
    extra: dict[str, Any] = field(default_factory=dict)


def library_versions(*packages: str) -> dict[str, str]:
    """Installed versions of zooprobe and ``packages`` (those not installed are left out)."""
    from importlib.metadata import PackageNotFoundError, version

    found = {}
    for name in ("zooprobe", *packages):
        try:
            found[name] = version(name)
        except PackageNotFoundError:
            continue
    return found


class RunStore:
    """The runs of one zooprobe home (``$ZOOPROBE_HOME/runs.sqlite3``)."""

    def __init__(self, home: Path | str | None = None) -> None:
        self.home = Path(home).expanduser() if home is not None else default_home()
        self.path = self.home / RUNS_DB_NAME
        self.db = self._open()
        self._locked: set[str] = set()

    def _open(self) -> sqlite3.Connection:
        self.home.mkdir(parents=True, exist_ok=True)
        try:
            # every later query turns page-level damage into a StoreError naming 'zooprobe runs check'
            db = connect(self.path, what=f"the run store {self.path}", fix=check_hint(self.home))
            enable_wal(db)
            db.execute("PRAGMA foreign_keys=ON")
            version = db.execute("PRAGMA user_version").fetchone()[0]
        except (sqlite3.DatabaseError, StoreError) as exc:
            denied = permission_problem(self.home, self.path)
            if denied:
                raise StoreError(denied) from None
            if isinstance(exc, StoreError):
                raise
            raise StoreError(f"cannot read the run store {self.path}: {exc}; {check_hint(self.home)}") from None
        if version > SCHEMA_VERSION:
            raise StoreError(
                f"the run store {self.path} has schema version {version}, newer than this zooprobe's"
                f" {SCHEMA_VERSION}; upgrade zooprobe (pip install -U zooprobe)"
            )
        for number in range(version, SCHEMA_VERSION):
            with self._transaction(db):
                # another process opening the same new store may have migrated it since we read the version
                if db.execute("PRAGMA user_version").fetchone()[0] <= number:
                    MIGRATIONS[number](db)
                    db.execute(f"PRAGMA user_version={number + 1}")
        return db

    @staticmethod
    def _transaction(db: sqlite3.Connection) -> Any:
        from contextlib import contextmanager

        @contextmanager
        def transaction() -> Iterator[None]:
            db.execute("BEGIN IMMEDIATE")
            try:
                yield
            except BaseException:
                db.execute("ROLLBACK")
                raise
            db.execute("COMMIT")

        return transaction()

    def close(self) -> None:
        """Release the runs this store locked (not those another store of this process holds) and close it."""
        try:
            lock.release(self.db, self.path, self._locked)
        except ZooprobeError:
            pass  # a damaged store: the lock goes with this process
        self.db.close()

    def _lock(self, run_id: str, kind: str) -> None:
        """Take the run's lock for this process, after removing temporary files dead writers left.

        :raises RunLockedError: when another live process writes the run.
        """
        from .temps import remove_stale_temps

        remove_stale_temps(self.home)
        with self._transaction(self.db):
            lock.acquire(self.db, self.path, run_id, kind)
        self._locked.add(run_id)

    def __enter__(self) -> RunStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # --- runs -------------------------------------------------------------------------------------

    def create(
        self,
        kind: RunKind,
        data: str,
        config: dict[str, Any],
        *,
        data_hash: str | None = None,
        versions: dict[str, str] | None = None,
        run_id: str | None = None,
    ) -> Run:
        """Record a new run in state ``running`` and return it."""
        now = time.time()
        run_id = run_id or f"{kind}-{time.strftime('%Y%m%d-%H%M%S')}-{uuid.uuid4().hex[:6]}"
        self._lock(run_id, kind)
        self.db.execute(
            "INSERT INTO runs (id, kind, status, created, updated, data, data_hash, config, versions)"
            " VALUES (?, ?, 'running', ?, ?, ?, ?, ?, ?)",
            (run_id, kind, now, now, data, data_hash, json.dumps(config), json.dumps(versions or {})),
        )
        _open_here[run_id] = (kind, self.home)
        return self.get(run_id)

    def finish(self, run_id: str, summary: Summary | None = None, error: str | None = None) -> None:
        """Mark a run ``done`` (or ``failed`` when ``error`` is given) with its summary."""
        document = json.dumps(summary.to_json() if summary is not None else None)
        self.db.execute(
            "UPDATE runs SET status = ?, updated = ?, summary = ?, error = ? WHERE id = ?",
            ("failed" if error else "done", time.time(), document, error, run_id),
        )
        lock.release(self.db, self.path, {run_id})

    def put_summary(self, run_id: str, summary: Summary) -> None:
        """Store the summary of a run that stays ``running`` (an assessment with candidates still pending)."""
        self.db.execute(
            "UPDATE runs SET summary = ?, updated = ? WHERE id = ?",
            (json.dumps(summary.to_json()), time.time(), run_id),
        )
        _open_here.pop(run_id, None)
        lock.release(self.db, self.path, {run_id})

    def reopen(self, run_id: str) -> Run:
        """Set a run back to ``running`` (resuming it) and return it.

        :raises RunLockedError: naming the pid of another live process that is writing the run.
        """
        run = self.get(run_id)
        self._lock(run.id, run.kind)
        self.db.execute(
            "UPDATE runs SET status = 'running', updated = ?, error = NULL WHERE id = ?", (time.time(), run.id)
        )
        _open_here.pop(run.id, None)  # to the end: the latest run resumed is the one to name
        _open_here[run.id] = (run.kind, self.home)
        return self.get(run.id)

    def get(self, run_id: str) -> Run:
        """:raises UnknownRunError: naming the most recent runs when ``run_id`` is unknown."""
        row = self.db.execute("SELECT * FROM runs WHERE id = ?", (run_id,)).fetchone()
        if row is None:
            recent = [run.id for run in self.list(limit=5)]
            hint = f"; recent runs: {', '.join(recent)}" if recent else "; the run store is empty"
            raise UnknownRunError(f"unknown run '{run_id}'{hint}")
        return self._run(row)

    def list(
        self, kind: RunKind | None = None, data_hash: str | None = None, limit: int | None = None
    ) -> builtins.list[Run]:
        """Runs, most recent first, optionally only of one kind or one dataset."""
        sql, args = "SELECT * FROM runs WHERE 1=1", builtins.list[str]()
        if kind:
            sql += " AND kind = ?"
            args.append(kind)
        if data_hash:
            sql += " AND data_hash = ?"
            args.append(data_hash)
        sql += " ORDER BY created DESC, rowid DESC"
        if limit:
            sql += f" LIMIT {int(limit)}"
        return [self._run(row) for row in self.db.execute(sql, args)]

    def _run(self, row: tuple[Any, ...]) -> Run:
        return Run(
            id=row[0],
            kind=row[1],
            status=row[2],
            created=row[3],
            updated=row[4],
            data=row[5],
            data_hash=row[6],
            config=json.loads(row[7]),
            versions=json.loads(row[8]),
            summary=json.loads(row[9]) if row[9] else None,
            error=row[10],
        )

    # --- assessment results -----------------------------------------------------------------------

    def put_score(self, run_id: str, score: Score) -> None:
        self.db.execute(
            "INSERT OR REPLACE INTO scores VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            (
                run_id,
                score.model,
                score.layer,
                score.metric,
                score.value,
                score.spread,
                score.seconds,
                json.dumps(score.extra),
            ),
        )

    def scores(self, run_id: str) -> builtins.list[Score]:
        rows = self.db.execute(
            "SELECT model, layer, metric, value, spread, seconds, extra FROM scores WHERE run_id = ? ORDER BY rowid",
            (run_id,),
        )
        return [Score(r[0], r[1], r[2], r[3], r[4], r[5], json.loads(r[6] or "{}")) for r in rows]

    def put_candidate(self, run_id: str, position: int, result: CandidateResult) -> None:
        """Store (or replace) one candidate's result at ``position`` in the run's order."""
        self.db.execute(
            "INSERT OR REPLACE INTO candidates VALUES (?, ?, ?, ?)",
            (run_id, result.model, position, json.dumps(result.to_json())),
        )

    def candidates(self, run_id: str) -> builtins.list[CandidateResult]:
        """The run's candidate results in the order they were stored (ranked first, once the run is done)."""
        rows = self.db.execute("SELECT doc FROM candidates WHERE run_id = ? ORDER BY position", (run_id,))
        return [CandidateResult.from_json(json.loads(row[0])) for row in rows]

    # --- fine-tuning results ----------------------------------------------------------------------

    def put_epoch(self, run_id: str, record: EpochRecord) -> None:
        numbers = [getattr(record, name) for name in METRIC_COLUMNS]
        self.db.execute(
            f"INSERT OR REPLACE INTO epochs (run_id, arm, epoch, {', '.join(METRIC_COLUMNS)}, extra)"
            f" VALUES (?, ?, ?, {', '.join('?' for _ in METRIC_COLUMNS)}, ?)",
            (run_id, record.arm, record.epoch, *numbers, json.dumps(record.extra)),
        )
        self.db.execute("UPDATE runs SET updated = ? WHERE id = ?", (time.time(), run_id))

    def put_checksum(self, run_id: str, arm: str, epoch: int, sha256: str) -> None:
        """Record the sha256 of ``arm``'s checkpoint after ``epoch`` (the two newest per arm are kept)."""
        put_checksum(self.db, run_id, arm, epoch, sha256)

    def checksums(self, run_id: str, arm: str) -> dict[str, int]:
        """The recorded checkpoints of ``arm``: sha256 -> epoch (empty for runs from before checksums)."""
        return checksums(self.db, run_id, arm)

    def epochs(self, run_id: str, arm: str | None = None) -> builtins.list[EpochRecord]:
        sql = f"SELECT arm, epoch, {', '.join(METRIC_COLUMNS)}, extra FROM epochs WHERE run_id = ?"
        args: list[Any] = [run_id]
        if arm is not None:
            sql += " AND arm = ?"
            args.append(arm)
        sql += " ORDER BY arm, epoch"
        return [
            EpochRecord.from_json(
                {"arm": row[0], "epoch": row[1], **dict(zip(METRIC_COLUMNS, row[2:-1], strict=True))}
                | {"extra": json.loads(row[-1] or "{}")}
            )
            for row in self.db.execute(sql, args)
        ]


def open_runs(home: Path | str | None = None) -> RunStore:
    """The run store of ``home`` (default ``$ZOOPROBE_HOME``)."""
    return RunStore(home if home is not None else os.environ.get("ZOOPROBE_HOME") or None)
