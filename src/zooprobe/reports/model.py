"""The report model: what the run store says about one or more runs, gathered into plain records
(:mod:`.build` fills them in from the runs :mod:`.select` chooses; :mod:`.decision` concludes).

Invariants:
- Building a report only reads the run store; it never writes to it (a missing store file is not
  even created).
- Every number comes from a stored run: the candidate documents and scores of ``assess`` runs, the
  epoch rows and summaries of ``finetune`` runs. Nothing is recomputed from data or models.
- A run that is still ``running`` is reported with what it has written so far and marked in progress.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field, fields, is_dataclass
from typing import Any

from ..errors import ZooprobeError
from ..runs.records import SCRATCH, EpochRecord

# The scores of an assessment in reading order; metrics a plugin adds follow these.
KNOWN_METRICS = ("probe_balanced_accuracy", "knn_accuracy", "ncm_accuracy", "logme", "hscore", "nce", "leep")
# How many candidates of each assessment get a layer-profile plot and table.
PROFILE_TOP = 3


class EmptyReportError(ZooprobeError):
    """There is nothing to report: the store is empty, or no run matches the selection."""


@dataclass(frozen=True)
class RunInfo:
    """One run the report draws on: what it ran on and how far it got."""

    id: str
    kind: str
    status: str
    data: str
    data_hash: str | None
    created: float
    updated: float
    error: str | None
    seconds: float | None

    @property
    def in_progress(self) -> bool:
        return self.status == "running"


@dataclass(frozen=True)
class CandidateRow:
    """One backbone of an assessment: its cost, its fit to the data, its scores and its recommendation."""

    run_id: str
    model: str
    source: str | None
    status: str
    skip_reason: str | None
    params: int | None
    macs: float | None
    macs_unit: str | None
    macs_resolution: int | None
    input_check: str | None
    input_adaptations: list[str]
    data_ratio: float | None
    target_examples: int | None
    examples_per_class_min: int | None
    data_flags: list[str]
    best_layer: str | None
    probe_accuracy: float | None
    probe_spread: float | None
    scores: dict[str, float | None]
    consensus: float | None
    rank: int | None
    strategy: str | None
    cut: str | None
    finetune_arg: str | None
    expected_accuracy: float | None
    uncertainty: float | None


@dataclass(frozen=True)
class ProfilePoint:
    layer: str
    depth: float
    probe_accuracy: float
    probe_spread: float | None


@dataclass(frozen=True)
class LayerProfile:
    """Probe accuracy by depth of one top candidate."""

    run_id: str
    model: str
    rank: int | None
    best_layer: str | None
    points: list[ProfilePoint]


@dataclass(frozen=True)
class Arm:
    """One arm of a fine-tuning run (a strategy, or the scratch baseline) epoch by epoch."""

    name: str
    epochs: list[EpochRecord]
    final_val_accuracy: float | None
    best_val_accuracy: float | None
    best_epoch: int | None
    checkpoint_epoch: int | None = None  # the epoch whose weights the best checkpoint holds

    @property
    def is_scratch(self) -> bool:
        return self.name == SCRATCH


@dataclass(frozen=True)
class FinetuneComparison:
    """A fine-tuning run: each arm's learning curve side by side and the gain over scratch."""

    run_id: str
    status: str
    model: str
    strategy: str
    epochs_planned: int | None
    train_examples: int | None
    val_examples: int | None
    assess_run: str | None
    arms: list[Arm]
    gain_over_scratch: float | None
    gain_epoch: int | None = None  # while in progress: the last epoch both arms reached, where the gain is read
    adaptations: list[str] = field(default_factory=list)  # what the inputs lost to fit the model (truncation)

    @property
    def strategy_arm(self) -> Arm | None:
        return next((arm for arm in self.arms if not arm.is_scratch), None)

    @property
    def scratch_arm(self) -> Arm | None:
        return next((arm for arm in self.arms if arm.is_scratch), None)


@dataclass(frozen=True)
class PredictionCheck:
    """What an assessment predicted for a backbone and strategy against what fine-tuning achieved."""

    model: str
    assess_run: str
    finetune_run: str
    arm: str
    predicted_strategy: str | None
    predicted: float
    uncertainty: float | None
    consensus: float | None
    achieved: float

    @property
    def within(self) -> bool:
        """Whether the achieved accuracy lies within twice the predicted uncertainty."""
        return abs(self.achieved - self.predicted) <= 2 * (self.uncertainty or 0.0)


@dataclass(frozen=True)
class Decision:
    """The recommendation for one dataset, the evidence behind it and the caveats."""

    data: str
    model: str | None
    strategy: str | None
    finetune_arg: str | None
    expected_accuracy: float | None
    uncertainty: float | None
    achieved_accuracy: float | None
    gain_over_scratch: float | None
    evidence: list[str]
    caveats: list[str]


@dataclass(frozen=True)
class Report:
    """Everything a report shows, in the order it shows it; writers only lay it out."""

    runs: list[RunInfo]
    metrics: list[str]
    candidates: list[CandidateRow]
    profiles: list[LayerProfile]
    finetunes: list[FinetuneComparison]
    predictions: list[PredictionCheck]
    decisions: list[Decision]
    # The run the report is named after: the first RUN given, else the most recent run covered.
    name: str = ""
    generated: float = field(default_factory=time.time)

    @property
    def in_progress(self) -> list[RunInfo]:
        return [run for run in self.runs if run.in_progress]

    def to_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = _plain(self)
        for run, info in zip(data["runs"], self.runs, strict=True):
            run["in_progress"] = info.in_progress
        for check, prediction in zip(data["predictions"], self.predictions, strict=True):
            check["within"] = prediction.within
        for tune in data["finetunes"]:
            if not tune["adaptations"]:  # left out when none, so reports of runs without any read as before
                del tune["adaptations"]
        return data


def _plain(value: Any) -> Any:
    """Dataclasses, lists and dicts as plain JSON-ready values (``asdict`` without its deep copies)."""
    if is_dataclass(value) and not isinstance(value, type):
        return {f.name: _plain(getattr(value, f.name)) for f in fields(value)}
    if isinstance(value, list | tuple):
        return [_plain(item) for item in value]
    if isinstance(value, dict):
        return {key: _plain(item) for key, item in value.items()}
    return value
