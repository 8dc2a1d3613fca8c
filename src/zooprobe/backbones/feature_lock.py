"""One extraction per feature file: processes that need the same cache key at once share one computation.

Before computing a feature file, a process takes ``<key>.lock`` beside it: a file holding its pid and
process start time, created atomically (written under a temporary name, then hard-linked into place, so
it is never seen half-written). A second process that finds the lock held by a live process waits for
it (saying so once on stderr), then finds the file complete and reads it instead of computing it. A
lock whose process is gone (kill -9, a crash), or whose pid now belongs to another process, is broken
by the next taker. Locks of several files are taken in sorted order, so two processes never wait on
each other.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path

from ..progress import note
from ..runs.lock import process_alive, process_start

# how often a waiting process looks at the lock again (seconds)
POLL = 0.2


def lock_path(feature_file: Path) -> Path:
    """The lock of a feature file: ``<key>.lock`` beside ``<key>.npy``."""
    return feature_file.with_suffix(".lock")


def _identity() -> str:
    pid = os.getpid()
    return f"{pid} {process_start(pid) or '-'}\n"


def _try_create(lock: Path, content: str) -> bool:
    temp = lock.with_name(f".{lock.name}.{os.getpid()}.tmp")
    try:
        temp.write_text(content)
        os.link(temp, lock)  # fails when the lock exists: creating it is the atomic test
        return True
    except FileExistsError:
        return False
    finally:
        temp.unlink(missing_ok=True)


def _read(lock: Path) -> str | None:
    try:
        return lock.read_text()
    except FileNotFoundError:
        return None


def _holder_alive(content: str) -> tuple[int, bool]:
    """(pid, whether that process still runs) of a lock's content; unreadable content counts as dead."""
    parts = content.split()
    if len(parts) != 2 or not parts[0].isdigit():
        return 0, False
    pid = int(parts[0])
    # a lock with this process's own pid is a leftover of an earlier process that had it: locks never nest
    if pid == os.getpid():
        return pid, False
    return pid, process_alive(pid, None if parts[1] == "-" else parts[1])


def _break(lock: Path, stale: str) -> None:
    """Remove ``lock`` if it still holds ``stale`` (another taker may have broken and retaken it since)."""
    aside = lock.with_name(f".{lock.name}.{os.getpid()}.tmp")
    try:
        os.rename(lock, aside)
    except FileNotFoundError:
        return
    try:
        if aside.read_text() != stale:  # a fresh lock of a live taker: put it back
            try:
                os.link(aside, lock)
            except FileExistsError:
                pass
    finally:
        aside.unlink(missing_ok=True)


def _acquire(lock: Path, me: str) -> None:
    said = False
    while not _try_create(lock, me):
        content = _read(lock)
        if content is None:
            continue  # released between the two looks
        pid, alive = _holder_alive(content)
        if not alive:
            _break(lock, content)
            continue
        if not said:
            note(f"waiting for process {pid}, which is extracting the same features ({lock.name})")
            said = True
        time.sleep(POLL)


def _release(lock: Path, me: str) -> None:
    if _read(lock) == me:
        lock.unlink(missing_ok=True)


@contextmanager
def extraction_locks(feature_files: Iterable[Path]) -> Iterator[None]:
    """Hold the locks of ``feature_files`` (waiting for live holders, breaking dead ones) within the block."""
    me = _identity()
    taken: list[Path] = []
    try:
        for lock in sorted({lock_path(path) for path in feature_files}):
            _acquire(lock, me)
            taken.append(lock)
        yield
    finally:
        for lock in reversed(taken):
            _release(lock, me)
