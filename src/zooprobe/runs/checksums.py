"""Checksums of fine-tuning checkpoints, kept in the run store so that a damaged file is recognised on read.

A row per (run, arm, epoch) holds the sha256 of the checkpoint file written after that epoch. The row
is written before the file is renamed into place (a crash between leaves a row without a file, which
is harmless), and rows older than the two checkpoints kept per arm are deleted.
"""

from __future__ import annotations

import hashlib
import sqlite3
from pathlib import Path

# checkpoints kept per arm: the newest and the one before it
KEPT = 2


def m003_checkpoint_checksums(db: sqlite3.Connection) -> None:
    db.execute(
        """CREATE TABLE checkpoints (
            run_id TEXT NOT NULL REFERENCES runs(id) ON DELETE CASCADE,
            arm TEXT NOT NULL, epoch INTEGER NOT NULL, sha256 TEXT NOT NULL,
            PRIMARY KEY (run_id, arm, epoch))"""
    )


def file_sha256(path: Path) -> str:
    """The sha256 of the file's bytes, read in 1 MiB blocks."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def put_checksum(db: sqlite3.Connection, run_id: str, arm: str, epoch: int, sha256: str) -> None:
    """Record the checkpoint of ``arm`` after ``epoch``; forget those older than the :data:`KEPT` newest."""
    db.execute("INSERT OR REPLACE INTO checkpoints VALUES (?, ?, ?, ?)", (run_id, arm, epoch, sha256))
    db.execute(
        "DELETE FROM checkpoints WHERE run_id = ? AND arm = ? AND epoch NOT IN"
        " (SELECT epoch FROM checkpoints WHERE run_id = ? AND arm = ? ORDER BY epoch DESC LIMIT ?)",
        (run_id, arm, run_id, arm, KEPT),
    )


def checksums(db: sqlite3.Connection, run_id: str, arm: str) -> dict[str, int]:
    """The recorded checkpoints of ``arm``: sha256 -> epoch (empty for runs from before checksums)."""
    rows = db.execute("SELECT sha256, epoch FROM checkpoints WHERE run_id = ? AND arm = ?", (run_id, arm))
    return {str(sha): int(epoch) for sha, epoch in rows}
