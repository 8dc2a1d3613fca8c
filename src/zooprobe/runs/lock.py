"""Run locks: one process at a time writes a run.

Invariants:
- A lock is a row of the run store's ``run_locks`` table (run id, the holder's pid and the start time
  of that process), taken in the same ``BEGIN IMMEDIATE`` transaction that checks it, so two
  processes can never both take it.
- A lock is released when its run finishes or pauses, when the store is closed, and at the
  process's exit; a lock whose process is gone (kill -9, a crash) is broken by the next taker. A pid
  reused by an unrelated process is told apart by its start time where the system gives one (Linux).
- The holder itself may take its lock again (one process resuming a run it started).
"""

from __future__ import annotations

import atexit
import os
import sqlite3
import time
from pathlib import Path

from ..errors import ZooprobeError


class RunLockedError(ZooprobeError):
    """A run another live process is writing; names that process's pid."""


def process_start(pid: int) -> str | None:
    """When process ``pid`` started (clock ticks since boot, from /proc), or None where unknown."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # the command name (field 2) is in parentheses and may hold spaces: count fields after its last ')'
    fields = stat[stat.rfind(")") + 2 :].split()
    return fields[19] if len(fields) > 19 else None


def process_alive(pid: int, started: str | None = None) -> bool:
    """Whether process ``pid`` runs (and, given ``started``, is the same process that started then)."""
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass  # another user's process: alive
    if started is not None:
        now = process_start(pid)
        return now is None or now == started
    return True


def m002_run_locks(db: sqlite3.Connection) -> None:
    db.execute("CREATE TABLE run_locks (run_id TEXT PRIMARY KEY, pid INTEGER NOT NULL, started TEXT, since REAL)")


# run store files -> ids of runs this process holds a lock on there (released at exit)
_held: dict[Path, set[str]] = {}


def acquire(db: sqlite3.Connection, path: Path, run_id: str, kind: str) -> None:
    """Take the lock on ``run_id`` for this process (inside the caller's transaction).

    :raises RunLockedError: naming the holder's pid when another live process holds it.
    """
    me = os.getpid()
    row = db.execute("SELECT pid, started, since FROM run_locks WHERE run_id = ?", (run_id,)).fetchone()
    if row is not None and row[0] != me and process_alive(row[0], row[1]):
        since = time.strftime("%H:%M:%S", time.localtime(row[2])) if row[2] else "earlier"
        raise RunLockedError(
            f"run {run_id} is in use by another zooprobe process (pid {row[0]}, since {since}); wait for it to"
            f" finish, or stop it (kill {row[0]}) and continue the run with: zooprobe {kind} --resume {run_id}"
        )
    db.execute("INSERT OR REPLACE INTO run_locks VALUES (?, ?, ?, ?)", (run_id, me, process_start(me), time.time()))
    if not _held:
        atexit.register(_release_everything)
    _held.setdefault(path, set()).add(run_id)


def release(db: sqlite3.Connection, path: Path, run_ids: set[str]) -> None:
    """Release this process's locks on ``run_ids`` in the store at ``path``."""
    held = _held.get(path, set())
    for run_id in run_ids & held:
        db.execute("DELETE FROM run_locks WHERE run_id = ? AND pid = ?", (run_id, os.getpid()))
        held.discard(run_id)


def _release_everything() -> None:
    """At exit: release the locks of stores nobody closed (a crash kills without running this: see above)."""
    for path, ids in list(_held.items()):
        if not ids:
            continue
        try:
            db = sqlite3.connect(path, timeout=5.0, isolation_level=None)
            try:
                db.executemany(
                    "DELETE FROM run_locks WHERE run_id = ? AND pid = ?", [(run_id, os.getpid()) for run_id in ids]
                )
            finally:
                db.close()
        except sqlite3.Error:
            pass  # a damaged or vanished store: the lock is broken anyway once this pid is gone
        ids.clear()
