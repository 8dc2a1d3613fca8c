"""Lock files that name their holder: ``<pid> <process start time>``, as the feature cache's per-key locks
(:mod:`zooprobe.backbones.feature_lock`) write them.

A lock whose holder is gone (kill -9, a crash) or whose pid now belongs to another process is dead. The
next taker of that key breaks it, and :func:`remove_dead_locks` sweeps a folder of them, so a killed
extraction does not leave its lock behind until the same key is extracted again. Breaking compares the
content first, so a lock that another process broke and retook in between is left in place. Liveness is
checked on this machine: a lock on shared storage whose holder runs on another node looks dead here.
"""

from __future__ import annotations

import os
from pathlib import Path

from .lock import process_alive

LOCK_SUFFIX = ".lock"


def holder_alive(content: str) -> tuple[int, bool]:
    """(pid, whether that process still runs) of a lock's content; unreadable content counts as dead."""
    parts = content.split()
    if len(parts) != 2 or not parts[0].isdigit():
        return 0, False
    pid = int(parts[0])
    return pid, process_alive(pid, None if parts[1] == "-" else parts[1])


def read_lock(lock: Path) -> str | None:
    """A lock's content, or None when it is not there (released)."""
    try:
        return lock.read_text()
    except FileNotFoundError:
        return None


def break_lock(lock: Path, stale: str) -> bool:
    """Remove ``lock`` if it still holds ``stale`` (another taker may have broken and retaken it since);
    whether this call removed it."""
    aside = lock.with_name(f".{lock.name}.{os.getpid()}.tmp")
    try:
        os.rename(lock, aside)
    except FileNotFoundError:
        return False
    try:
        if aside.read_text() != stale:  # a fresh lock of a live taker: put it back
            try:
                os.link(aside, lock)
            except FileExistsError:
                pass
            return False
        return True
    finally:
        aside.unlink(missing_ok=True)


def remove_dead_locks(folder: Path) -> list[Path]:
    """Remove the ``*.lock`` files in ``folder`` whose holder is gone; returns those removed. Locks of live
    processes, and of this process, stay."""
    try:
        locks = sorted(path for path in folder.iterdir() if path.name.endswith(LOCK_SUFFIX))
    except OSError:
        return []  # no such folder yet, or unreadable: nothing of ours to clean there
    removed = []
    for lock in locks:
        content = read_lock(lock)
        if content is None:
            continue
        pid, alive = holder_alive(content)
        if alive or pid == os.getpid():
            continue
        if break_lock(lock, content):
            removed.append(lock)
    return removed
