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
from ..runs.lock import process_start
from ..runs.pid_locks import break_lock, holder_alive, read_lock

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


def _holder_alive(content: str) -> tuple[int, bool]:
    pid, alive = holder_alive(content)
    # a lock with this process's own pid is a leftover of an earlier process that had it: locks never nest
    return pid, alive and pid != os.getpid()


def _acquire(lock: Path, me: str) -> None:
    said = False
    while not _try_create(lock, me):
        content = read_lock(lock)
        if content is None:
            continue  # released between the two looks
        pid, alive = _holder_alive(content)
        if not alive:
            break_lock(lock, content)
            continue
        if not said:
            note(f"waiting for process {pid}, which is extracting the same features ({lock.name})")
            said = True
        time.sleep(POLL)


def _release(lock: Path, me: str) -> None:
    if read_lock(lock) == me:
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
