"""A fine-tuning run's unit of work on a cluster, one arm (the strategy's, or scratch): what every arm shares
(:class:`ArmRun`), the unit (:class:`ArmUnit`), the worker's side (:func:`train_arm`) and the driver's
(:func:`train_arms_on`).

A worker loads the model by catalog id and reads the data by spec itself, trains the arm exactly as the
local executor does (:meth:`~zooprobe.finetuning.trainer.Trainer.run_arm`), writing its checkpoints under
the run's folder in the home, and streams every epoch record to the driver, which alone writes the run
store. The home must therefore be storage every node sees. A worker that dies is replaced and its arm
resumes from the last checkpoint written; a driver that dies leaves checkpoints and records that
``--resume`` (local or Ray) continues from.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import ZooprobeError
from ..executors.base import Executor, Job
from ..runs.records import ArmResult
from ..runs.store import RunStore
from .batches import split_indices
from .checkpoints import slug
from .epoch_store import StreamedEpochs, arm_outcome
from .strategy import Strategy
from .trainer import EpochCallback, Trainer, TrainSettings

if TYPE_CHECKING:
    from ..data.datasets import Dataset


@dataclass(frozen=True)
class ArmRun:
    """What every arm of a run shares: the run and its home (storage every node sees), the model and data
    by name (each worker loads them), and the training settings."""

    run_id: str
    home: str
    model: str
    data: str
    data_hash: str
    on_error: str
    on_duplicates: str
    trust_remote_code: bool
    trust_savedmodel: bool
    resolution: int | None
    train_size: float | None
    settings: TrainSettings
    device: str | None

    @property
    def run_dir(self) -> Path:
        return Path(self.home) / "runs" / self.run_id

    @staticmethod
    def data_spec(data: str) -> str:
        """``data`` as a worker reads it: a path made absolute (the worker's directory is its own)."""
        return os.path.abspath(data) if os.path.exists(data) else data


@dataclass(frozen=True)
class ArmUnit:
    """One arm to train (or resume): its name in the run store and how it trains."""

    arm: str
    strategy: Strategy


_READ: dict[tuple[str, str, str], Dataset] = {}


def _dataset(run: ArmRun) -> Dataset:
    """The run's data, read once per worker process and checked against the run's content hash."""
    from ..data.datasets import read_dataset

    key = (run.data, run.on_error, run.on_duplicates)
    if key not in _READ:
        dataset = read_dataset(run.data, on_error=run.on_error, on_duplicates=run.on_duplicates)  # type: ignore[arg-type]
        if dataset.content_hash() != run.data_hash:
            raise ZooprobeError(
                f"dataset '{run.data}' as a worker reads it differs from the driver's (content hash): put it on"
                " storage every node sees, at the same path"
            )
        _READ.clear()
        _READ[key] = dataset
    return _READ[key]


def train_arm(unit: ArmUnit, run: ArmRun, emit: Callable[[Any], None]) -> ArmResult:
    """One arm on a worker: trained (or resumed from its checkpoint) as the local executor trains it, each
    record sent to the driver through ``emit`` (``("put", record)``; ``("trained", record)`` after an epoch
    this process trained)."""
    from ..plugins.loading import load_by_id

    backbone = load_by_id(
        run.model, run.home, trust_remote_code=run.trust_remote_code, trust_savedmodel=run.trust_savedmodel
    )
    if run.resolution is not None:
        spec = replace(backbone.entry.input, default_resolution=(run.resolution, run.resolution))
        backbone.entry = replace(backbone.entry, input=spec)
    dataset = _dataset(run)
    train_idx, val_idx = split_indices(dataset, run.settings.seed, run.train_size)
    trainer = Trainer(
        store=StreamedEpochs(Path(run.home), emit),
        run_id=run.run_id,
        run_dir=run.run_dir,
        backbone=backbone,
        dataset=dataset,
        train_idx=train_idx,
        val_idx=val_idx,
        settings=run.settings,
        device=run.device,
        progress=False,
        on_epoch=lambda _arm, record: emit(("trained", record)),
    )
    return trainer.run_arm(unit.arm, unit.strategy)


def train_arms_on(
    pool: Executor,
    store: RunStore,
    run: ArmRun,
    units: Sequence[ArmUnit],
    on_epoch: EpochCallback | None,
    say: Callable[[str], None],
    *,
    progress: bool = False,
) -> dict[str, ArmResult]:
    """Every arm of ``units`` as one unit of ``pool``, concurrently; each epoch recorded here as it arrives.

    With ``progress`` on a terminal, one bar counts the epochs of every arm as they arrive, its label each
    arm's latest epoch and accuracy; off a terminal each epoch is a line (``say``).

    :raises Exception: the first arm's failure, as the arm raised it (the other arms are cancelled).
    """
    from ..progress import ProgressBar

    results: dict[str, ArmResult] = {}
    epochs = run.settings.epochs
    left = sum(max(epochs - len(store.epochs(run.run_id, unit.arm)), 0) for unit in units)
    bar = ProgressBar(left, f"{len(units)} arm(s) on {pool.name}", enabled=progress)
    latest: dict[str, str] = {}

    def tell(message: str) -> None:  # on a terminal, lines go above the bar rather than through it
        (bar.say if bar.interactive else say)(message)

    def arrived(unit: ArmUnit, item: tuple[str, Any]) -> None:
        kind, record = item
        if kind == "checksum":
            store.put_checksum(run.run_id, *record)
            return
        if kind == "put":
            store.put_epoch(run.run_id, record)
            return
        if on_epoch is not None:
            on_epoch(unit.arm, record)
        accuracy = "-" if record.val_accuracy is None else f"{record.val_accuracy:.4f}"
        if not bar.interactive:
            say(f"{unit.arm} epoch {record.epoch}/{epochs}: validation accuracy {accuracy}")
            return
        latest[unit.arm] = f"{unit.arm} {record.epoch}/{epochs} acc {accuracy}"
        bar.label = " | ".join(latest.values())
        bar.update(1)

    def done(unit: ArmUnit, result: ArmResult) -> None:
        if result.method is None:  # trained: read off every recorded epoch (a killed worker's too)
            best_file = run.run_dir / f"{slug(unit.arm)}.best.safetensors"
            result = arm_outcome(store.epochs(run.run_id, unit.arm), best_file)
        results[unit.arm] = result

    def failed(_unit: ArmUnit, exc: Exception) -> None:
        raise exc

    with bar:
        pool.run(Job(train_arm, units, pool.share(run), done, failed, tell, on_item=arrived))
    return {unit.arm: results[unit.arm] for unit in units}
