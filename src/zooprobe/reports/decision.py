"""The decision for one dataset: the recommendation its latest assessment made, what fine-tuning
achieved against it, and the caveats (runs in progress or failed, negative transfer, missed predictions)."""

from __future__ import annotations

import time
from collections.abc import Sequence

from ..evaluator.interval import meaning, shipped, stated
from ..runs.store import Run
from .model import CandidateRow, Decision, FinetuneComparison, PredictionCheck
from .phrasing import arm_sentence, budget_note, reached
from .scratch_caveat import one_class_scratch
from .select import deciding_assessment


def _age(seconds: float) -> str:
    """A duration for people: 45 s, 12 min, 3.5 h, 2.0 days."""
    if seconds < 90:
        return f"{max(seconds, 0):.0f} s"
    if seconds < 90 * 60:
        return f"{seconds / 60:.0f} min"
    if seconds < 48 * 3600:
        return f"{seconds / 3600:.1f} h"
    return f"{seconds / 86400:.1f} days"


def decide(
    group: Sequence[Run],
    candidates: Sequence[CandidateRow],
    finetunes: Sequence[FinetuneComparison],
    predictions: Sequence[PredictionCheck],
) -> Decision:
    ids = {run.id for run in group}
    evidence: list[str] = []
    caveats: list[str] = []
    for run in group:
        if run.status == "running":
            # A killed process leaves its run 'running' too: the age of its last write tells them apart.
            caveats.append(
                f"{run.kind} run {run.id} is still in progress: its numbers are partial (last written"
                f" {_age(time.time() - run.updated)} ago; if its process is gone, finish it with"
                f" zooprobe {run.kind} --resume {run.id})"
            )
        elif run.status == "failed":
            caveats.append(f"{run.kind} run {run.id} failed: {run.error or 'no error recorded'}")
    assessments = [run for run in group if run.kind == "assess"]
    # The largest complete assessment with a recommendation decides; the others stay in the tables.
    chosen = deciding_assessment(assessments, candidates)
    deciding = chosen.assess_summary if chosen is not None else None
    model: str | None = None
    strategy = finetune_arg = None
    expected = uncertainty = None
    interval: tuple[float | None, float | None, float | None] = (None, None, None)
    if deciding is not None and deciding.recommended is not None:
        rec = deciding.recommended
        model, strategy, finetune_arg = rec.model, rec.strategy, rec.finetune_arg
        expected, uncertainty = rec.expected_accuracy, rec.uncertainty
        interval = (rec.interval_low, rec.interval_high, rec.interval_level)
        if rec.evidence:
            evidence.append(rec.evidence)
        if chosen is not None and len(assessments) > 1:
            evidence.append(
                f"decided by assessment {chosen.id}, the largest complete one of the {len(assessments)} on this"
                " data (most candidates assessed, then most examples)"
            )
        caveats.extend(deciding.caveats)
    elif assessments and not any(row.run_id in ids and row.status == "done" for row in candidates):
        evidence.append("no candidate has been assessed yet")
    tunes = [tune for tune in finetunes if tune.run_id in ids]
    achieved = gain = last = None
    # the strategy each fine-tuning run parsed and stored (runs before it was stored: read off the arm's name)
    kinds = {run.id: (run.config.get("parsed_strategy") or {}).get("kind") for run in group}
    for tune in tunes:
        arm, scratch = tune.strategy_arm, tune.scratch_arm
        if arm is None or arm.achieved is None:
            continue
        line = arm_sentence(tune, arm, scratch)
        if scratch is not None and scratch.achieved is not None and tune.gain_over_scratch is not None:
            if tune.gain_over_scratch < 0:
                caveats.append(
                    f"negative transfer: '{arm.name}' on {tune.model} ended {-tune.gain_over_scratch:.3f} below"
                    " training from scratch; the pretrained features do not suit this data (domain mismatch)"
                )
        evidence.append(line + f" (run {tune.run_id})")
        collapsed = one_class_scratch(tune)
        if collapsed:
            caveats.append(collapsed)
        # only the recommended strategy's own result confirms or refutes its expected accuracy
        if model is None or (tune.model == model and finetune_arg in (None, arm.name)):
            if model is None:
                model, finetune_arg = tune.model, arm.name
                strategy = kinds.get(tune.run_id) or arm.name.split(":")[0]
            achieved, gain, last = arm.achieved, tune.gain_over_scratch, arm.final_val_accuracy
    for check in predictions:
        if check.finetune_run in ids and not check.within:
            tune = next(t for t in finetunes if t.run_id == check.finetune_run)
            said = (
                f"the assessment predicted {stated(check.predicted, check.uncertainty, *_span(check))} for"
                f" {check.model} and {reached(check.arm)} {check.achieved:.3f}, outside"
                f" {'that interval' if check.interval_level is not None else 'twice the uncertainty'}"
            )
            if check.achieved < check.predicted:  # below: what fine-tuning had less of than the assessment
                why = budget_note(check.arm, tune.train_examples, tune.epochs_planned)
            else:  # above: the estimate was the cautious side, not a handicap of fine-tuning
                measured = f" on {tune.val_examples} validation examples" if tune.val_examples else ""
                why = f", above it: the assessment's estimate was conservative for this data (measured{measured})"
            caveats.append(said + why)
    return Decision(
        data=group[0].data,
        model=model,
        strategy=strategy,
        finetune_arg=finetune_arg,
        expected_accuracy=expected,
        uncertainty=uncertainty,
        achieved_accuracy=achieved,
        gain_over_scratch=gain,
        evidence=evidence,
        caveats=list(dict.fromkeys(caveats)),
        last_epoch_accuracy=last,
        interval_low=interval[0],
        interval_high=interval[1],
        interval_level=interval[2],
        # runs without an interval (made before it existed) report exactly as they did
        interval_meaning=meaning(shipped(), interval[2]) if interval[2] is not None else None,
    )


def _span(check: PredictionCheck) -> tuple[float | None, float | None, float | None]:
    return check.interval_low, check.interval_high, check.interval_level
