"""The report's tables as headers and text cells, laid out once for every human-readable format."""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass

from ..catalog.units import format_count
from ..evaluator.interval import stated
from .model import CandidateRow, Decision, FinetuneComparison, LayerProfile, PredictionCheck, Report, RunInfo
from .phrasing import reached

MISSING = "-"


@dataclass(frozen=True)
class Table:
    headers: list[str]
    rows: list[list[str]]
    # Cells of numeric columns are right-aligned.
    numeric: frozenset[int] = frozenset()


def number(value: float | None, digits: int = 3) -> str:
    return MISSING if value is None else f"{value:.{digits}f}"


def signed(value: float | None, digits: int = 3) -> str:
    return MISSING if value is None else f"{value:+.{digits}f}"


def timestamp(seconds: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(seconds))


def status_text(run: RunInfo) -> str:
    if run.in_progress:
        return "in progress"
    if run.status == "failed":
        return f"failed: {run.error}" if run.error else "failed"
    return run.status


def runs_table(runs: Sequence[RunInfo]) -> Table:
    rows = [
        [run.id, run.kind, run.data, status_text(run), timestamp(run.updated), number(run.seconds, 1)] for run in runs
    ]
    return Table(["Run", "Kind", "Data", "Status", "Last update", "Seconds"], rows, frozenset({5}))


def skipped_files_table(runs: Sequence[RunInfo]) -> Table | None:
    """The files each run's dataset dropped, with the reason (None: none dropped); a last row per run counts
    those beyond the ones its record lists."""
    rows: list[list[str]] = []
    for run in runs:
        record = run.skipped_files
        rows += [[run.id, path, reason] for path, reason in record.files]
        if record.unlisted:
            rows.append([run.id, f"... and {record.unlisted:,} more", f"{record.count:,} files dropped in all"])
    return Table(["Run", "File", "Reason"], rows) if rows else None


def _macs(row: CandidateRow) -> str:
    if row.macs is None:
        return MISSING
    at = f" @{row.macs_resolution}px" if row.macs_resolution else ""
    return f"{row.macs:.2f} {row.macs_unit or ''}".strip() + at


def _input(row: CandidateRow) -> str:
    if not row.input_check:
        return MISSING
    return f"{row.input_check} ({'; '.join(row.input_adaptations)})" if row.input_adaptations else row.input_check


def _ratio(row: CandidateRow) -> str:
    parts = [] if row.data_ratio is None else [f"{row.data_ratio:.1e}"]
    if row.target_examples is not None:
        parts.append(f"{row.target_examples:,} ex, min {row.examples_per_class_min}/class")
    return ", ".join(parts) or MISSING


def _probe(row: CandidateRow) -> str:
    if row.probe_accuracy is None:
        return MISSING
    spread = f" ± {row.probe_spread:.3f}" if row.probe_spread is not None else ""
    return f"{row.probe_accuracy:.3f}{spread} @ {row.best_layer or '?'}"


def _strategy(row: CandidateRow) -> str:
    if row.status == "skipped":
        return f"skipped: {row.skip_reason or 'no reason recorded'}"
    if row.status == "pending":
        return "pending (not assessed yet)"
    return row.finetune_arg or row.strategy or MISSING


def _ranked_cell(row: CandidateRow, name: str) -> str:
    """The score the ranking read (at the deepest assessed layer), the best layer's beside it where it differs."""
    ranked, best = row.final_scores.get(name), row.scores.get(name)
    if best is None or number(best) == number(ranked):
        return number(ranked)
    return f"{number(ranked)} ({number(best)})"


def candidates_table(candidates: Sequence[CandidateRow], metrics: Sequence[str], with_run: bool) -> Table:
    """One row per candidate. Where the run stored the scores its ranking read (at the deepest assessed cut
    point, with the ImageNet top-1 prior), each score column shows that one, the best layer's in brackets
    where it differs, and the probe column (best layer) says so."""
    ranked = any(row.final_scores for row in candidates)
    probe = "Probe acc. (± spread) @ best layer" if ranked else "Probe acc. (± spread)"
    headers = ["Rank", "Backbone", "Source", "Params", "Compute", "Input check", "Data ratio", probe]
    if ranked:
        headers += ["Ranked at layer", "Probe acc. ranked"]
        headers += [f"{name} ranked (best layer)" for name in metrics] + ["ImageNet top-1 (prior)"]
    else:
        headers += metrics
    headers += ["Consensus", "Strategy", "Cut"]
    rows = []
    for row in candidates:
        scores = (
            [row.final_layer or MISSING, number(row.final_scores.get("probe_accuracy"))]
            + [_ranked_cell(row, name) for name in metrics]
            + [number(row.prior_top1)]
            if ranked
            else [number(row.scores.get(name)) for name in metrics]
        )
        cells = [
            str(row.rank) if row.rank is not None else MISSING,
            row.model,
            row.source or MISSING,
            format_count(row.params),
            _macs(row),
            _input(row),
            _ratio(row),
            _probe(row),
            *scores,
            number(row.consensus),
            _strategy(row),
            row.cut or MISSING,
        ]
        rows.append([row.run_id, *cells] if with_run else cells)
    if with_run:
        headers = ["Run", *headers]
    first_metric = headers.index(probe) + 1 + (1 if ranked else 0)  # the layer name is text
    last = headers.index("Consensus")
    return Table(headers, rows, frozenset(range(first_metric, last + 1)))


def finetune_table(comparison: FinetuneComparison) -> Table:
    """Epoch | <arm> Validation Loss | <arm> Accuracy [| <arm> F1] | ... with every arm side by side; F1 (of
    label 1) where the records keep it (binary tasks)."""
    with_f1 = any(row.val_f1 is not None for arm in comparison.arms for row in arm.epochs)
    headers = ["Epoch"]
    for arm in comparison.arms:
        headers += [f"{arm.name}: Validation Loss", f"{arm.name}: Accuracy"] + ([f"{arm.name}: F1"] * with_f1)
    epochs = sorted({row.epoch for arm in comparison.arms for row in arm.epochs})
    rows = []
    for epoch in epochs:
        cells = [str(epoch)]
        for arm in comparison.arms:
            found = next((row for row in arm.epochs if row.epoch == epoch), None)
            if found is None:
                cells += [MISSING] * (2 + with_f1)
                continue
            cells += [number(found.val_loss, 4), number(found.val_accuracy, 4)]
            cells += [number(found.val_f1, 4)] * with_f1
        rows.append(cells)
    return Table(headers, rows, frozenset(range(len(headers))))


def finetune_lines(comparison: FinetuneComparison) -> list[str]:
    """One line per arm (final and best accuracy) and the gain over scratch."""
    lines = []
    for arm in comparison.arms:
        best = f", best {number(arm.best_val_accuracy, 4)} at epoch {arm.best_epoch}" if arm.best_epoch else ""
        if arm.kept_val_accuracy is not None and arm.checkpoint_epoch:
            kept = f"checkpoint kept (epoch {arm.checkpoint_epoch}, lowest validation loss)"
            lines.append(
                f"{arm.name}: validation accuracy of the {kept} {number(arm.kept_val_accuracy, 4)};"
                f" last epoch {number(arm.final_val_accuracy, 4)}{best}"
            )
            continue
        if arm.checkpoint_epoch:
            best += f"; best checkpoint: epoch {arm.checkpoint_epoch} (lowest validation loss)"
        lines.append(f"{arm.name}: final validation accuracy {number(arm.final_val_accuracy, 4)}{best}")
    lines += [f"input adaptation: {line}" for line in comparison.adaptations]
    if comparison.gain_over_scratch is not None:
        kept_both = all(arm.kept_val_accuracy is not None for arm in comparison.arms)
        basis = "validation accuracy of the checkpoints kept" if kept_both else "final validation accuracy"
        if comparison.gain_epoch is not None:
            basis = f"validation accuracy at epoch {comparison.gain_epoch}, the last both arms reached"
        lines.append(f"gain over scratch ({basis}): {signed(comparison.gain_over_scratch, 4)}")
    elif comparison.scratch_arm is None:
        lines.append("no scratch baseline in this run (rerun with --baseline scratch to measure the gain)")
    if comparison.status == "running":
        planned = f" of {comparison.epochs_planned}" if comparison.epochs_planned else ""
        done = ", ".join(f"{arm.name} {len(arm.epochs)}{planned}" for arm in comparison.arms)
        lines.append(f"in progress, epochs written so far: {done or 'none'}")
    return lines


def profile_table(profile: LayerProfile) -> Table:
    rows = [
        [
            point.layer + (" (best)" if point.layer == profile.best_layer else ""),
            f"{point.depth:.2f}",
            number(point.probe_accuracy),
            number(point.probe_spread),
        ]
        for point in profile.points
    ]
    return Table(["Layer", "Depth", "Probe accuracy", "Spread"], rows, frozenset({1, 2, 3}))


def predictions_table(checks: Sequence[PredictionCheck]) -> Table:
    rows = [
        [
            check.model,
            check.predicted_strategy or MISSING,
            stated(check.predicted, check.uncertainty, check.interval_low, check.interval_high, check.interval_level),
            number(check.consensus),
            f"{check.achieved:.3f} ({check.arm})",
            signed(check.achieved - check.predicted),
            "yes" if check.within else "no",
        ]
        for check in checks
    ]
    within = "Within interval" if any(check.interval_level is not None for check in checks) else "Within ±2σ"
    headers = ["Backbone", "Predicted strategy", "Predicted", "Consensus", "Achieved", "Difference", within]
    return Table(headers, rows, frozenset({2, 3, 5}))


def decision_lines(decision: Decision) -> tuple[str, list[str], list[str]]:
    """The headline, the evidence and the caveats of one decision."""
    if decision.model is None:
        headline = f"No recommendation yet for {decision.data}."
    else:
        headline = f"Start from {decision.model} with strategy '{decision.finetune_arg or decision.strategy}'"
        if decision.expected_accuracy is not None:
            headline += ", expected accuracy " + stated(
                decision.expected_accuracy,
                decision.uncertainty,
                decision.interval_low,
                decision.interval_high,
                decision.interval_level,
            )
        if decision.achieved_accuracy is not None:
            headline += f"; {reached(decision.finetune_arg)} {decision.achieved_accuracy:.3f}"
            last = decision.last_epoch_accuracy
            if last is not None and f"{last:.3f}" != f"{decision.achieved_accuracy:.3f}":
                headline += f" (the checkpoint kept; last epoch {last:.3f})"
        if decision.gain_over_scratch is not None:
            headline += f" ({signed(decision.gain_over_scratch)} over scratch)"
        headline += "."
    evidence = decision.evidence
    if decision.interval_meaning:
        evidence = [*evidence, f"About the expected accuracy: {decision.interval_meaning}."]
    return headline, evidence, decision.caveats


def in_progress_note(report: Report) -> str | None:
    running = [run.id for run in report.in_progress]
    if not running:
        return None
    return f"In progress: {', '.join(running)} (still running; the numbers below are partial)."
