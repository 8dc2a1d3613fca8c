"""A built report's records as typed pandas DataFrames: the numbers the JSON report carries, in columns.

Every frame is read from the report model (:mod:`zooprobe.reports`), which reads the run store, so a
frame says what ``zooprobe report --format json`` says. The layer frame adds the stored score of each
metric at each layer. Counts are ``Int64``, measured numbers ``Float64``, names ``string``, timestamps
``datetime64[ns, UTC]``; a missing value is ``<NA>``. pandas is imported inside each function.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, Any

from ..reports.model import CandidateRow, FinetuneComparison, Report
from ..runs.store import Run, Score

if TYPE_CHECKING:
    import pandas as pd

# (column, dtype) of the candidate frame before the metric columns and after them
_CANDIDATE_HEAD: tuple[tuple[str, str], ...] = (
    ("rank", "Int64"),
    ("candidate", "string"),
    ("source", "string"),
    ("status", "string"),
    ("skip_reason", "string"),
    ("params", "Int64"),
    ("compute", "Float64"),
    ("compute_unit", "string"),
    ("compute_resolution", "Int64"),
    ("input_check", "string"),
    ("input_adaptations", "object"),
    ("data_ratio", "Float64"),
    ("target_examples", "Int64"),
    ("examples_per_class_min", "Int64"),
    ("data_flags", "object"),
    ("best_layer", "string"),
    ("probe_accuracy", "Float64"),
    ("probe_spread", "Float64"),
)
_CANDIDATE_TAIL: tuple[tuple[str, str], ...] = (
    ("consensus", "Float64"),
    ("strategy", "string"),
    ("cut", "string"),
    ("finetune_arg", "string"),
    ("expected_accuracy", "Float64"),
    ("uncertainty", "Float64"),
)
LAYER_COLUMNS: tuple[tuple[str, str], ...] = (
    ("candidate", "string"),
    ("layer", "string"),
    ("depth", "Float64"),
    ("metric", "string"),
    ("value", "Float64"),
    ("spread", "Float64"),
)
EPOCH_COLUMNS: tuple[tuple[str, str], ...] = (
    ("arm", "string"),
    ("epoch", "Int64"),
    ("train_loss", "Float64"),
    ("val_loss", "Float64"),
    ("val_accuracy", "Float64"),
    ("val_balanced_accuracy", "Float64"),
    ("seconds", "Float64"),
    ("val_f1", "Float64"),  # F1 of label 1, recorded for binary tasks; <NA> for others
)
RUN_COLUMNS: tuple[tuple[str, str], ...] = (
    ("id", "string"),
    ("kind", "string"),
    ("status", "string"),
    ("data", "string"),
    ("data_hash", "string"),
    ("created", "datetime64[ns, UTC]"),
    ("updated", "datetime64[ns, UTC]"),
    ("error", "string"),
)


def frame(columns: Sequence[tuple[str, str]], rows: Iterable[Sequence[Any]]) -> pd.DataFrame:
    """A DataFrame of ``rows`` (tuples in column order), each column of its dtype, empty ones included."""
    import pandas as pd

    data = list(rows)
    series = {}
    for i, (name, dtype) in enumerate(columns):
        values = [row[i] for row in data]
        if dtype.startswith("datetime64"):
            series[name] = pd.Series(pd.to_datetime(values, unit="s", utc=True), dtype=dtype)
        else:
            series[name] = pd.Series(values, dtype=dtype)
    return pd.DataFrame(series)


def candidates_frame(report: Report, run_id: str) -> pd.DataFrame:
    """One row per candidate of assessment ``run_id``, in the report's order (ranked first): the checks
    (input, data ratio), the probe at the best layer, one column per score the report shows, the
    consensus, rank and recommended strategy and cut."""
    rows = [row for row in report.candidates if row.run_id == run_id]
    columns = [*_CANDIDATE_HEAD, *((name, "Float64") for name in report.metrics), *_CANDIDATE_TAIL]
    return frame(columns, (_candidate_values(row, report.metrics) for row in rows))


def _candidate_values(row: CandidateRow, metrics: Sequence[str]) -> tuple[Any, ...]:
    return (
        row.rank,
        row.model,
        row.source,
        row.status,
        row.skip_reason,
        row.params,
        row.macs,
        row.macs_unit,
        row.macs_resolution,
        row.input_check,
        list(row.input_adaptations),
        row.data_ratio,
        row.target_examples,
        row.examples_per_class_min,
        list(row.data_flags),
        row.best_layer,
        row.probe_accuracy,
        row.probe_spread,
        *(row.scores.get(name) for name in metrics),
        row.consensus,
        row.strategy,
        row.cut,
        row.finetune_arg,
        row.expected_accuracy,
        row.uncertainty,
    )


def layers_frame(report: Report, run_id: str, scores: Sequence[Score]) -> pd.DataFrame:
    """One row per candidate, layer and metric of assessment ``run_id``: the stored ``scores`` (value and
    fold spread), candidates in the report's order. ``depth`` (0 the first cut point, 1 the last) is the
    report's layer profile's: it is known for the candidates the report profiles (its top three) and
    ``<NA>`` for the others and for metrics read off the source head (layer ``logits``)."""
    order = {row.model: i for i, row in enumerate(r for r in report.candidates if r.run_id == run_id)}
    depth = {
        (profile.model, point.layer): point.depth
        for profile in report.profiles
        if profile.run_id == run_id
        for point in profile.points
    }
    mine = sorted((s for s in scores if s.model in order), key=lambda s: order[s.model])
    return frame(
        LAYER_COLUMNS, ((s.model, s.layer, depth.get((s.model, s.layer)), s.metric, s.value, s.spread) for s in mine)
    )


def epochs_frame(comparison: FinetuneComparison) -> pd.DataFrame:
    """One row per arm and epoch of a fine-tuning run (the strategy's arm first, then ``scratch``); ``val_f1``
    (F1 of label 1) is kept for binary tasks, as the tables show it, and ``<NA>`` for other tasks."""
    return frame(
        EPOCH_COLUMNS,
        (
            (arm.name, r.epoch, r.train_loss, r.val_loss, r.val_accuracy, r.val_balanced_accuracy, r.seconds, r.val_f1)
            for arm in comparison.arms
            for r in arm.epochs
        ),
    )


def runs_frame(runs: Iterable[Run]) -> pd.DataFrame:
    """One row per stored run, as the store lists them (most recent first)."""
    return frame(
        RUN_COLUMNS,
        ((r.id, r.kind, r.status, r.data, r.data_hash, r.created, r.updated, r.error) for r in runs),
    )
