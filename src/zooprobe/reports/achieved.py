"""What a fine-tuning arm achieved, as reports say it: the accuracy of the checkpoint kept (the epoch of
lowest validation loss, the weights a user takes away), with the last epoch's beside it."""

from __future__ import annotations

from .model import Arm


def kept_note(arm: Arm) -> str:
    """The label after an arm's :attr:`~.model.Arm.achieved` accuracy: which checkpoint it is and, where
    that is not the last epoch, the last epoch's accuracy; empty when no checkpoint was kept."""
    if arm.kept_val_accuracy is None or arm.checkpoint_epoch is None:
        return ""
    last = arm.epochs[-1] if arm.epochs else None
    if last is None or last.epoch == arm.checkpoint_epoch or last.val_accuracy is None:
        return f" (checkpoint kept: epoch {arm.checkpoint_epoch}, the last)"
    return (
        f" (checkpoint kept: epoch {arm.checkpoint_epoch}, lowest validation loss;"
        f" last epoch {last.epoch}: {last.val_accuracy:.3f})"
    )
