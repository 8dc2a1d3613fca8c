"""Where the trainer records epochs: the run store in the driver, or, on a cluster worker, a stand-in that
streams each record to the driver (which alone writes the run store) and keeps this attempt's records."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Protocol

from ..runs.records import ArmResult
from ..runs.store import EpochRecord


class EpochStore(Protocol):
    """What the trainer needs of a run store: the home (its feature cache) and the run's epochs."""

    home: Path

    def put_epoch(self, run_id: str, record: EpochRecord) -> None: ...

    def epochs(self, run_id: str, arm: str | None = None) -> list[EpochRecord]: ...

    def put_checksum(self, run_id: str, arm: str, epoch: int, sha256: str) -> None: ...

    def checksums(self, run_id: str, arm: str) -> dict[str, int]: ...


class StreamedEpochs:
    """The run store as a worker's trainer sees it: each record put goes to the driver through ``emit``
    (as ``("put", record)``), each checkpoint checksum as ``("checksum", (arm, epoch, sha256))``; reads see
    only the records put in this process."""

    def __init__(self, home: Path, emit: Callable[[Any], None]) -> None:
        self.home = home
        self.emit = emit
        self.kept: dict[tuple[str, int], EpochRecord] = {}

    def put_epoch(self, run_id: str, record: EpochRecord) -> None:
        self.kept[(record.arm, record.epoch)] = record
        self.emit(("put", record))

    def epochs(self, run_id: str, arm: str | None = None) -> list[EpochRecord]:
        return [self.kept[key] for key in sorted(self.kept) if arm is None or key[0] == arm]

    def put_checksum(self, run_id: str, arm: str, epoch: int, sha256: str) -> None:
        self.emit(("checksum", (arm, epoch, sha256)))

    def checksums(self, run_id: str, arm: str) -> dict[str, int]:
        # the driver's records are not read here (it alone opens the run store): a worker resuming an arm
        # checks the checkpoint's contents (parses, the arm's tensors, the arm's record) but not its sha256
        return {}


def arm_outcome(records: Sequence[EpochRecord], best_file: Path) -> ArmResult:
    """A trained arm's result from all its epochs, naming ``best_file`` (the best epoch's weights) if written."""
    # the best checkpoint holds the epoch of lowest validation loss (the early-stopping criterion)
    kept = min(records, key=lambda r: (r.val_loss if r.val_loss is not None else math.inf, r.epoch))
    if not best_file.exists():
        return ArmResult.from_epochs(records)
    return ArmResult.from_epochs(records, checkpoint_epoch=kept.epoch, checkpoint=str(best_file))
