"""The records of a fine-tuning run: each arm's epochs (:class:`EpochRecord`), an arm's result
(:class:`ArmResult`) and the run's summary (:class:`FinetuneSummary`), serialised under the invariants
of :mod:`zooprobe.runs.records`, which re-exports them."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from .record_fields import SCRATCH, finite_number, known_fields, plain_fields


@dataclass(frozen=True)
class EpochRecord:
    """One epoch of one arm of a fine-tuning run (epoch 0: an ``as-is`` arm's evaluation, nothing trained).

    ``extra`` holds what the trainer adds (phase, trained_on, early_stop, method).
    """

    arm: str
    epoch: int
    train_loss: float | None
    val_loss: float | None
    val_accuracy: float | None
    val_balanced_accuracy: float | None
    seconds: float | None
    extra: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return plain_fields(self)

    @classmethod
    def from_json(cls, doc: Mapping[str, Any]) -> EpochRecord:
        values = {name: None for name in METRIC_COLUMNS} | known_fields(cls, doc)
        return cls(**{**values, "extra": dict(values.get("extra") or {})})

    @property
    def val_f1(self) -> float | None:
        """F1 of the positive class (label 1) on the validation split, for binary tasks (GLUE reports it
        for MRPC); None for other tasks and for records written before it was kept (in ``extra``)."""
        value = self.extra.get("val_f1")
        return None if value is None else float(value)

    def to_row(self) -> dict[str, Any]:
        """The flat form printed per epoch: the numbers, then ``extra``'s keys (no arm: it keys the row)."""
        return {name: getattr(self, name) for name in ("epoch", *METRIC_COLUMNS)} | self.extra


# The epoch record's numbers, in the order of the run store's columns and of the printed tables.
METRIC_COLUMNS = ("train_loss", "val_loss", "val_accuracy", "val_balanced_accuracy", "seconds")


@dataclass(frozen=True)
class ArmResult:
    """How one arm ended: its final and best validation accuracy, the epoch its best checkpoint holds (the
    lowest validation loss) and that checkpoint's accuracy, :attr:`achieved`.

    An ``as-is`` arm trains nothing: it has a ``method`` (source head or nearest class mean) and no
    checkpoint.
    """

    final_val_accuracy: float | None
    best_val_accuracy: float | None
    best_epoch: int | None
    checkpoint_epoch: int | None = None
    seconds: float = 0.0
    method: str | None = None
    checkpoint: str | None = None  # the best checkpoint's file: kept in the summary's ``checkpoints``
    kept_val_accuracy: float | None = None  # the validation accuracy of the checkpoint kept

    @property
    def achieved(self) -> float | None:
        """What the arm delivers: the kept checkpoint's validation accuracy, else (no checkpoint kept, or a
        summary written before it was stored) the last epoch's."""
        return self.kept_val_accuracy if self.kept_val_accuracy is not None else self.final_val_accuracy

    @classmethod
    def from_epochs(
        cls, records: Sequence[EpochRecord], *, checkpoint_epoch: int | None = None, checkpoint: str | None = None
    ) -> ArmResult:
        """The arm's outcome read off its epochs: the last scored epoch's accuracy and the earliest best one."""
        scored = [r for r in records if r.val_accuracy is not None]
        best = max(scored, key=lambda r: r.val_accuracy or 0.0, default=None)
        kept = next(
            (r.val_accuracy for r in scored if checkpoint_epoch is not None and r.epoch == checkpoint_epoch), None
        )
        return cls(
            final_val_accuracy=scored[-1].val_accuracy if scored else None,
            best_val_accuracy=best.val_accuracy if best else None,
            best_epoch=best.epoch if best else None,
            checkpoint_epoch=checkpoint_epoch,
            seconds=sum(r.seconds or 0.0 for r in records),
            checkpoint=checkpoint,
            kept_val_accuracy=kept,
        )

    def to_json(self) -> dict[str, Any]:
        doc: dict[str, Any] = {
            "final_val_accuracy": self.final_val_accuracy,
            "best_val_accuracy": self.best_val_accuracy,
            "best_epoch": self.best_epoch,
        }
        if self.method is None:
            doc["checkpoint_epoch"] = self.checkpoint_epoch
        if self.kept_val_accuracy is not None:  # only when kept: documents of earlier runs keep their shape
            doc["kept_val_accuracy"] = self.kept_val_accuracy
        doc["seconds"] = self.seconds
        if self.method is not None:
            doc["method"] = self.method
        return doc

    @classmethod
    def from_json(cls, doc: Mapping[str, Any], checkpoint: str | None = None) -> ArmResult:
        best_epoch, checkpoint_epoch = doc.get("best_epoch"), doc.get("checkpoint_epoch")
        return cls(
            final_val_accuracy=finite_number(doc.get("final_val_accuracy")),
            best_val_accuracy=finite_number(doc.get("best_val_accuracy")),
            best_epoch=best_epoch if isinstance(best_epoch, int) else None,
            checkpoint_epoch=checkpoint_epoch if isinstance(checkpoint_epoch, int) else None,
            seconds=finite_number(doc.get("seconds")) or 0.0,
            method=doc.get("method"),
            checkpoint=checkpoint,
            kept_val_accuracy=finite_number(doc.get("kept_val_accuracy")),
        )


@dataclass(frozen=True)
class FinetuneSummary:
    """The end of a fine-tuning run: each arm's result (the strategy first) and the gain over scratch.

    The gain is the strategy arm's :attr:`ArmResult.achieved` accuracy (its kept checkpoint's) minus
    scratch's, computed once by :meth:`of` and stored; None without a scratch arm.
    """

    arms: dict[str, ArmResult]
    gain_over_scratch: float | None
    seconds: float | None  # None in a summary written without it

    @classmethod
    def of(cls, arms: Mapping[str, ArmResult], strategy_arm: str) -> FinetuneSummary:
        gain = None
        if SCRATCH in arms:
            ours, theirs = arms[strategy_arm].achieved, arms[SCRATCH].achieved
            gain = ours - theirs if ours is not None and theirs is not None else None
        return cls(dict(arms), gain, sum(arm.seconds for arm in arms.values()))

    @property
    def checkpoints(self) -> dict[str, str]:
        """The best checkpoint file of each arm that has one."""
        return {name: arm.checkpoint for name, arm in self.arms.items() if arm.checkpoint}

    def to_json(self) -> dict[str, Any]:
        return {
            "arms": {name: arm.to_json() for name, arm in self.arms.items()},
            "gain_over_scratch": self.gain_over_scratch,
            "checkpoints": self.checkpoints,
            "seconds": self.seconds,
        }

    @classmethod
    def from_json(cls, doc: Mapping[str, Any]) -> FinetuneSummary:
        checkpoints = doc.get("checkpoints") or {}
        arms = {
            name: ArmResult.from_json(arm or {}, checkpoints.get(name)) for name, arm in (doc.get("arms") or {}).items()
        }
        return cls(arms, finite_number(doc.get("gain_over_scratch")), finite_number(doc.get("seconds")))


def provisional_gain(strategy: Sequence[EpochRecord], scratch: Sequence[EpochRecord]) -> tuple[float, int] | None:
    """(gain, epoch) of a run still training: the two arms compared at the last epoch both have reached,
    not each at its own latest; None before they share one."""
    ours = {r.epoch: r.val_accuracy for r in strategy if r.val_accuracy is not None}
    theirs = {r.epoch: r.val_accuracy for r in scratch if r.val_accuracy is not None}
    common = set(ours) & set(theirs)
    if not common:
        return None
    epoch = max(common)
    return ours[epoch] - theirs[epoch], epoch
