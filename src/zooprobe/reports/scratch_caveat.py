"""The caveat on a gain over a scratch baseline that predicted one class: whether that says something about
the data, or only about BatchNorm statistics (see :mod:`zooprobe.finetuning.precise_bn`)."""

from __future__ import annotations

from ..runs.records import EpochRecord
from .model import Arm, FinetuneComparison

# A scratch arm giving one class to at least this share of the validation examples predicts one class.
ONE_CLASS_SHARE = 0.95


def compared_epoch(arm: Arm) -> EpochRecord | None:
    """The epoch an arm's reported accuracy comes from: the kept checkpoint's, else the last one."""
    if not arm.epochs:
        return None
    kept = next((r for r in arm.epochs if arm.checkpoint_epoch is not None and r.epoch == arm.checkpoint_epoch), None)
    return kept or arm.epochs[-1]


def one_class_scratch(tune: FinetuneComparison) -> str | None:
    """A caveat when ``tune``'s scratch arm gives (nearly) every validation example one class, saying
    whether its BatchNorm statistics were recomputed (then the data, not the statistics, are why), or not
    (then the comparison may measure stale statistics); None otherwise, and for runs that did not record
    the share of the most-predicted class."""
    scratch = tune.scratch_arm
    record = compared_epoch(scratch) if scratch is not None else None
    share = record.extra.get("top_class_share") if record is not None else None
    if record is None or not isinstance(share, int | float) or share < ONE_CLASS_SHARE:
        return None
    gain = f" ({tune.gain_over_scratch:+.3f})" if tune.gain_over_scratch is not None else ""
    said = (
        f"the scratch baseline of run {tune.run_id} predicted one class for {share:.0%} of the validation"
        f" examples (epoch {record.epoch}), so the gain over scratch{gain} compares with a one-class guess"
    )
    if record.extra.get("running_statistics") is False:
        return (
            f"{said}; the model keeps no running normalisation statistics (no BatchNorm), so this is not a"
            " statistics artefact: training from scratch did not learn this data within the budget"
        )
    examples = record.extra.get("precise_bn_examples")
    if isinstance(examples, int) and examples > 0:
        return (
            f"{said}; its BatchNorm statistics were recomputed on {examples} training examples (precise BN), so"
            " this is not a statistics artefact: training from scratch did not learn this data within the budget"
        )
    if examples == 0:
        return (
            f"{said}; its normalisation statistics could not be recomputed (they are not torch BatchNorm layers),"
            " so stale moving averages may be the cause rather than the data"
        )
    return (
        f"{said}; precise BN was not applied (its BatchNorm statistics were not recomputed on the training"
        " data), so stale running statistics may be the cause rather than the data: rerun the fine-tuning with"
        " this release to measure scratch with them recomputed"
    )
