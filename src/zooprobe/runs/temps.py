"""Removing the temporary files a killed writer left behind.

Feature files (``features/.<key>.<pid>.tmp.npy``) and checkpoints (``runs/<run>/.<file>.<pid>.tmp``)
are written under a temporary name that carries the writer's pid and renamed into place when
complete. kill -9 skips the writer's cleanup; the next run removes each temporary file whose
writer is gone, and leaves those of live writers alone. It also removes the feature cache's extraction
locks (``features/<key>.lock``) whose holder is gone (:mod:`.pid_locks`).
"""

from __future__ import annotations

import os
import re
from pathlib import Path

from .lock import process_alive
from .pid_locks import remove_dead_locks

_TEMP = re.compile(r"^\..+\.(\d+)\.tmp(?:\.npy)?$")


def writer_pid(path: Path) -> int | None:
    """The pid in a temporary file's name, or None for a name that is not a writer's temporary file."""
    match = _TEMP.match(path.name)
    return int(match.group(1)) if match else None


def stale_temps(home: Path) -> list[Path]:
    """The temporary files under ``home``'s feature cache and run folders whose writer is gone."""
    candidates: list[Path] = []
    for folder in [home / "features", *_run_folders(home / "runs")]:
        try:
            candidates += [path for path in folder.iterdir() if path.name.startswith(".")]
        except OSError:
            continue  # no such folder yet, or unreadable: nothing of ours to clean there
    stale = []
    for path in candidates:
        pid = writer_pid(path)
        if pid is not None and pid != os.getpid() and not process_alive(pid):
            stale.append(path)
    return sorted(stale)


def remove_stale_temps(home: Path) -> list[Path]:
    """Remove :func:`stale_temps` and the dead holders' extraction locks in the feature cache; returns those
    removed (a file another cleaner took first is skipped)."""
    removed = remove_dead_locks(home / "features")
    for path in stale_temps(home):
        try:
            path.unlink()
        except OSError:
            continue
        removed.append(path)
    return removed


def _run_folders(runs: Path) -> list[Path]:
    try:
        return [folder for folder in runs.iterdir() if folder.is_dir()]
    except OSError:
        return []
