"""The last two good checkpoints of each arm, checked against the sha256 the run store holds for them.

After each epoch the new checkpoint's sha256 is recorded in the run store (:mod:`zooprobe.runs.checksums`),
the newest file becomes ``<arm>.prev.safetensors`` and the new one ``<arm>.safetensors``. On resume the
newest is verified (its checksum is one the store recorded for this arm, it parses, its tensors are the
arm's, its record is the arm's) and, when damaged (truncated, emptied, overwritten, another file), the
previous one is, then the arm's start: each fallback is said in one line on stderr. A damaged file is
kept aside as ``<name>.damaged`` and the good previous one takes the newest's place, so the next epoch
keeps two good checkpoints again. Runs from before checksums (no rows) are verified by the other checks.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from ..backbones.contract import Arm
from ..errors import first_line
from ..runs.checksums import file_sha256
from .checkpoints import Checkpoint, read_checkpoint, slug

if TYPE_CHECKING:
    from .epoch_store import EpochStore


def checkpoint_paths(run_dir: Path, arm: str) -> tuple[Path, Path]:
    """(newest, previous) checkpoint files of ``arm``."""
    return run_dir / f"{slug(arm)}.safetensors", run_dir / f"{slug(arm)}.prev.safetensors"


def keep_and_record(store: EpochStore, run_id: str, arm: str, epoch: int, newest: Path) -> Callable[[Path], None]:
    """What :func:`~.checkpoints.write_checkpoint` does before renaming the new file into place: record its
    sha256, then make the current newest the previous one."""

    def before_rename(temp: Path) -> None:
        store.put_checksum(run_id, arm, epoch, file_sha256(temp))
        if newest.exists():
            os.replace(newest, checkpoint_paths(newest.parent, arm)[1])

    return before_rename


def _problem(path: Path, known: dict[str, int], arm: str, built: Arm) -> tuple[str | None, Checkpoint | None]:
    """(why ``path`` cannot be resumed from, None) or (None, its checkpoint)."""
    size = path.stat().st_size
    if size == 0:
        return "an empty file", None
    if known and file_sha256(path) not in known:
        return "its sha256 is not one the run store recorded for it", None
    try:
        saved = read_checkpoint(path)
    except Exception as exc:  # noqa: BLE001 - safetensors, JSON and key errors of a damaged file alike
        return f"unreadable ({type(exc).__name__}: {first_line(exc)[:120]})", None
    expected = {name: tuple(value.shape) for name, value in built.state().items()}
    found = {name: tuple(value.shape) for name, value in saved.model_state.items()}
    if found != expected:
        return "its tensors are not this arm's", None
    if saved.record.arm != arm:
        return f"it is arm '{saved.record.arm}''s", None
    return None, saved


def resume_checkpoint(store: EpochStore, run_id: str, run_dir: Path, arm: str, built: Arm) -> Checkpoint | None:
    """The newest good checkpoint of ``arm`` (None: start the arm afresh), saying on stderr when it falls back."""
    known = store.checksums(run_id, arm)
    newest, previous = checkpoint_paths(run_dir, arm)
    damaged: list[str] = []
    for path in (newest, previous):
        if not path.exists():
            continue
        why, saved = _problem(path, known, arm, built)
        if saved is None:
            damaged.append(f"{path.name} is {why}" if why == "an empty file" else f"{path.name}: {why}")
            os.replace(path, path.with_name(f"{path.name}.damaged"))
            continue
        if path != newest:  # the previous one becomes the newest: the next epoch's rotation keeps it
            os.replace(path, newest)
        if damaged:
            _say(arm, damaged, f"resuming from the previous checkpoint (after epoch {saved.record.epoch})")
        if not known:  # a run from before checksums: this file, checked otherwise, is the one to trust from now
            store.put_checksum(run_id, arm, saved.record.epoch, file_sha256(newest))
        return saved
    if damaged:
        _say(arm, damaged, "no good checkpoint is left, so the arm starts again from its first epoch")
    return None


def _say(arm: str, damaged: list[str], then: str) -> None:
    print(f"zooprobe: arm '{arm}': {'; '.join(damaged)} (kept as .damaged); {then}", file=sys.stderr)
