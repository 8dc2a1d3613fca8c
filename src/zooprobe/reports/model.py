"""The report model: what the run store says about one or more runs, gathered into plain records.

Invariants:
- Building a report only reads the run store; it never writes to it (a missing store file is not
  even created).
- Every number comes from a stored run: the candidate documents and scores of ``assess`` runs, the
  epoch rows and summaries of ``finetune`` runs. Nothing is recomputed from data or models.
- A run that is still ``running`` is reported with what it has written so far and marked in progress.
"""

from __future__ import annotations

import builtins
import math
import time
from collections.abc import Sequence
from dataclasses import dataclass, field, fields, is_dataclass, replace
from pathlib import Path
from typing import Any

from ..catalog.store import default_home
from ..errors import ZooprobeError
from ..runs.records import SCRATCH, ArmResult, CandidateResult, EpochRecord, provisional_gain
from ..runs.store import RUNS_DB_NAME, Run, RunStore

# The scores of an assessment in reading order; metrics a plugin adds follow these.
KNOWN_METRICS = ("probe_balanced_accuracy", "knn_accuracy", "logme", "hscore", "nce", "leep")
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


# --- selecting runs -------------------------------------------------------------------------------


def select_runs(
    store: RunStore, run_ids: Sequence[str] = (), *, latest: bool = False, data: str | None = None
) -> list[Run]:
    """The runs a report covers, oldest first.

    ``run_ids`` picks runs by id; ``latest`` the most recent run; ``data`` every run on that dataset
    (its spec as given to assess/finetune, its resolved path, or a prefix of at least 6 characters of
    its content hash). Without any of them, the most recent run. A fine-tuning run also brings in the
    assessment it followed (``config.assess_run``), so a report on it can set prediction against result.

    :raises UnknownRunError: for an id that is not in the store.
    :raises EmptyReportError: when the store holds no run, or none on ``data``.
    """
    if sum(bool(x) for x in (run_ids, latest, data)) > 1:
        raise ZooprobeError("choose the runs one way: RUN ids, --latest or --data DATA (not several)")
    everything = store.list()
    if not everything:
        raise EmptyReportError(
            f"no runs to report in {store.path}: run 'zooprobe assess --data DATA' or 'zooprobe finetune' first"
        )
    if run_ids:
        chosen = [store.get(run_id) for run_id in dict.fromkeys(run_ids)]
    elif data:
        chosen = [run for run in everything if _same_data(run, data)]
        if not chosen:
            known = sorted({run.data for run in everything})
            raise EmptyReportError(
                f"no runs on data '{data}' (runs exist on: {', '.join(known)});"
                " pass one of those specs or a data hash prefix"
            )
    else:
        chosen = everything[:1]
    ids = {run.id for run in chosen}
    for run in builtins.list(chosen):
        linked = run.config.get("assess_run") if run.kind == "finetune" else None
        if isinstance(linked, str) and linked not in ids:
            try:
                chosen.append(store.get(linked))
                ids.add(linked)
            except ZooprobeError:
                continue  # the assessment was deleted since; the fine-tuning run still reports alone
    return sorted(chosen, key=lambda run: run.created)


def _same_data(run: Run, data: str) -> bool:
    if run.data == data or (len(data) >= 6 and (run.data_hash or "").startswith(data)):
        return True
    if ":" in data.split("/")[0] and not Path(data).exists():
        return False  # a spec such as sklearn:digits, not a path
    try:
        return Path(run.data).expanduser().resolve() == Path(data).expanduser().resolve()
    except OSError:
        return False


def open_store_readonly(home: Path | str | None) -> RunStore:
    """The run store of ``home`` without creating one where none exists.

    :raises EmptyReportError: when ``home`` holds no run store yet.
    """
    root = Path(home).expanduser() if home is not None else default_home()
    if not (root / RUNS_DB_NAME).exists():
        raise EmptyReportError(
            f"no runs to report: {root / RUNS_DB_NAME} does not exist yet;"
            " run 'zooprobe assess --data DATA' or 'zooprobe finetune' first (or pass --home)"
        )
    return RunStore(root)


# --- building the report --------------------------------------------------------------------------


def build_report(
    store: RunStore, run_ids: Sequence[str] = (), *, latest: bool = False, data: str | None = None
) -> Report:
    """Gather the runs chosen as in :func:`select_runs` into a :class:`Report`.

    Example::

        with open_store_readonly(None) as store:
            report = build_report(store, latest=True)
        print(render(report, "md"))
    """
    runs = select_runs(store, run_ids, latest=latest, data=data)
    infos = [_run_info(run) for run in runs]
    candidates: list[CandidateRow] = []
    profiles: list[LayerProfile] = []
    finetunes: list[FinetuneComparison] = []
    for run in runs:
        if run.kind == "assess":
            results = store.candidates(run.id)
            candidates.extend(_candidate_row(run.id, result) for result in results)
            profiles.extend(_profiles(run.id, results))
        elif run.kind == "finetune":
            finetunes.append(_finetune(run, store))
    metrics = _metric_names(candidates)
    predictions = _predictions(candidates, finetunes, runs)
    decisions = [_decision(group, candidates, finetunes, predictions) for group in _by_data(runs)]
    name = run_ids[0] if run_ids else max(runs, key=lambda run: run.created).id
    return Report(infos, metrics, candidates, profiles, finetunes, predictions, decisions, name)


def _run_info(run: Run) -> RunInfo:
    summary = run.assess_summary or run.finetune_summary
    return RunInfo(
        id=run.id,
        kind=run.kind,
        status=run.status,
        data=run.data,
        data_hash=run.data_hash,
        created=run.created,
        updated=run.updated,
        error=run.error,
        seconds=summary.seconds if summary is not None else None,
    )


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value) if math.isfinite(value) else None


def _candidate_row(run_id: str, result: CandidateResult) -> CandidateRow:
    macs, check, ratio, rec = result.macs, result.input_check, result.data_ratio, result.recommendation
    return CandidateRow(
        run_id=run_id,
        model=result.model,
        source=result.source,
        status=result.status,
        skip_reason=result.skip_reason,
        params=result.params,
        macs=macs.value if macs else None,
        macs_unit=macs.unit if macs else None,
        macs_resolution=macs.resolution if macs else None,
        input_check=check.status,
        input_adaptations=list(check.adaptations),
        data_ratio=_number(ratio.ratio),
        target_examples=ratio.target_examples,
        examples_per_class_min=ratio.examples_per_class_min,
        data_flags=list(ratio.flags),
        best_layer=result.best_layer,
        probe_accuracy=result.probe_accuracy,
        probe_spread=result.probe_spread,
        scores={name: _number(value) for name, value in result.scores.items()},
        consensus=result.consensus,
        rank=result.rank,
        strategy=rec.strategy if rec else None,
        cut=rec.cut if rec else None,
        finetune_arg=rec.finetune_arg if rec else None,
        expected_accuracy=rec.expected_accuracy if rec else None,
        uncertainty=rec.uncertainty if rec else None,
    )


def _metric_names(candidates: Sequence[CandidateRow]) -> list[str]:
    present = {name for row in candidates for name in row.scores}
    present.discard("probe_accuracy")  # it has its own column, with its spread
    return [name for name in KNOWN_METRICS if name in present] + sorted(present - set(KNOWN_METRICS))


def _profiles(run_id: str, results: Sequence[CandidateResult]) -> list[LayerProfile]:
    ranked = sorted((r for r in results if r.rank is not None and r.layer_profile), key=lambda r: r.rank or 0)
    if not ranked:  # an assessment still running has no ranks yet: show what is profiled, in input order
        ranked = [r for r in results if r.layer_profile]
    return [
        LayerProfile(
            run_id=run_id,
            model=result.model,
            rank=result.rank,
            best_layer=result.best_layer,
            points=[
                ProfilePoint(p.layer, p.depth, p.probe_accuracy, p.probe_spread)
                for p in sorted(result.layer_profile, key=lambda p: p.depth)
            ],
        )
        for result in ranked[:PROFILE_TOP]
    ]


def _finetune(run: Run, store: RunStore) -> FinetuneComparison:
    config = run.config
    summary = run.finetune_summary
    records = store.epochs(run.id)
    names = list(config.get("arms") or [])
    names += sorted({r.arm for r in records} - set(names))
    arms: list[Arm] = []
    for name in names:
        rows = [record for record in records if record.arm == name]
        # A run in progress has no summary yet: its final and best come from the epochs written so far.
        stored = summary.arms.get(name) if summary is not None else None
        result = stored or ArmResult.from_epochs(rows)
        arms.append(
            Arm(
                name=name,
                epochs=rows,
                final_val_accuracy=result.final_val_accuracy,
                best_val_accuracy=result.best_val_accuracy,
                best_epoch=result.best_epoch,
                checkpoint_epoch=result.checkpoint_epoch,
            )
        )
    gain = summary.gain_over_scratch if summary is not None else None
    comparison = FinetuneComparison(
        run_id=run.id,
        status=run.status,
        model=str(config.get("model", "?")),
        strategy=str(config.get("strategy", names[0] if names else "?")),
        epochs_planned=config.get("epochs"),
        train_examples=config.get("train_examples"),
        val_examples=config.get("val_examples"),
        assess_run=config.get("assess_run"),
        arms=arms,
        gain_over_scratch=gain,
    )
    if gain is None and comparison.strategy_arm and comparison.scratch_arm:
        provisional = provisional_gain(comparison.strategy_arm.epochs, comparison.scratch_arm.epochs)
        if provisional is not None:
            return replace(comparison, gain_over_scratch=provisional[0], gain_epoch=provisional[1])
    return comparison


def _predictions(
    candidates: Sequence[CandidateRow], finetunes: Sequence[FinetuneComparison], runs: Sequence[Run]
) -> list[PredictionCheck]:
    by_id = {run.id: run for run in runs}
    checks: list[PredictionCheck] = []
    for tune in finetunes:
        arm = tune.strategy_arm
        if arm is None or arm.final_val_accuracy is None:
            continue
        data_key = _data_key(by_id[tune.run_id])
        matches = [
            row
            for row in candidates
            if row.model == tune.model
            and row.expected_accuracy is not None
            and (row.run_id == tune.assess_run or _data_key(by_id[row.run_id]) == data_key)
        ]
        matches = [row for row in matches if row.finetune_arg in (None, arm.name)]  # the same strategy only
        if not matches:
            continue
        # Prefer the assessment the fine-tuning followed, else the latest on the same data.
        row = next((r for r in matches if r.run_id == tune.assess_run), matches[-1])
        if row.expected_accuracy is None:
            continue
        checks.append(
            PredictionCheck(
                model=tune.model,
                assess_run=row.run_id,
                finetune_run=tune.run_id,
                arm=arm.name,
                predicted_strategy=row.finetune_arg,
                predicted=row.expected_accuracy,
                uncertainty=row.uncertainty,
                consensus=row.consensus,
                achieved=arm.final_val_accuracy,
            )
        )
    return checks


def _age(seconds: float) -> str:
    """A duration for people: 45 s, 12 min, 3.5 h, 2.0 days."""
    if seconds < 90:
        return f"{max(seconds, 0):.0f} s"
    if seconds < 90 * 60:
        return f"{seconds / 60:.0f} min"
    if seconds < 48 * 3600:
        return f"{seconds / 3600:.1f} h"
    return f"{seconds / 86400:.1f} days"


def _data_key(run: Run) -> str:
    return run.data_hash or run.data


def _by_data(runs: Sequence[Run]) -> list[list[Run]]:
    groups: dict[str, list[Run]] = {}
    for run in runs:
        groups.setdefault(_data_key(run), []).append(run)
    return list(groups.values())


def _decision(
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
    # The latest assessment with a recommendation decides; older ones stay in the tables.
    summaries = [(run, run.assess_summary) for run in reversed(assessments)]
    deciding = next((summary for _, summary in summaries if summary is not None and summary.recommended), None)
    model: str | None = None
    strategy = finetune_arg = None
    expected = uncertainty = None
    if deciding is not None and deciding.recommended is not None:
        rec = deciding.recommended
        model, strategy, finetune_arg = rec.model, rec.strategy, rec.finetune_arg
        expected, uncertainty = rec.expected_accuracy, rec.uncertainty
        if rec.evidence:
            evidence.append(rec.evidence)
        caveats.extend(deciding.caveats)
    elif assessments and not any(row.run_id in ids and row.status == "done" for row in candidates):
        evidence.append("no candidate has been assessed yet")
    tunes = [tune for tune in finetunes if tune.run_id in ids]
    achieved = gain = None
    for tune in tunes:
        arm, scratch = tune.strategy_arm, tune.scratch_arm
        if arm is None or arm.final_val_accuracy is None:
            continue
        line = f"fine-tuning {tune.model} with '{arm.name}' reached {arm.final_val_accuracy:.3f} validation accuracy"
        line += f" after {len(arm.epochs)} epoch(s)" if arm.epochs and arm.epochs[-1].epoch > 0 else " as is"
        if scratch is not None and scratch.final_val_accuracy is not None and tune.gain_over_scratch is not None:
            line += f"; scratch reached {scratch.final_val_accuracy:.3f} ({tune.gain_over_scratch:+.3f})"
            if tune.gain_over_scratch < 0:
                caveats.append(
                    f"negative transfer: '{arm.name}' on {tune.model} ended {-tune.gain_over_scratch:.3f} below"
                    " training from scratch; the pretrained features do not suit this data (domain mismatch)"
                )
        evidence.append(line + f" (run {tune.run_id})")
        # only the recommended strategy's own result confirms or refutes its expected accuracy
        if model is None or (tune.model == model and finetune_arg in (None, arm.name)):
            if model is None:
                model, finetune_arg, strategy = tune.model, arm.name, arm.name.split(":")[0]
            achieved, gain = arm.final_val_accuracy, tune.gain_over_scratch
    for check in predictions:
        if check.finetune_run in ids and not check.within:
            tune = next(t for t in finetunes if t.run_id == check.finetune_run)
            budget = f"{tune.train_examples} training examples" if tune.train_examples else "its training split"
            caveats.append(
                f"the assessment predicted {check.predicted:.3f} ± {check.uncertainty or 0:.3f} for {check.model}"
                f" and fine-tuning reached {check.achieved:.3f}, outside twice the uncertainty"
                f" (fine-tuning had {budget} and {tune.epochs_planned or '?'} epochs; the probe saw the whole data)"
            )
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
    )
