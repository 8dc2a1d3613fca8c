"""Building the report: each chosen run's stored records turned into the rows of :class:`~.model.Report`."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import replace
from typing import Any

from ..runs.records import ArmResult, CandidateResult, provisional_gain
from ..runs.store import Run, RunStore
from .decision import decide
from .model import (
    KNOWN_METRICS,
    PROFILE_TOP,
    Arm,
    CandidateRow,
    FinetuneComparison,
    LayerProfile,
    PredictionCheck,
    ProfilePoint,
    Report,
    RunInfo,
)
from .select import by_data, run_data_key, select_runs


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
    decisions = [decide(group, candidates, finetunes, predictions) for group in by_data(runs)]
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
        final_layer=result.final_layer if result.final_scores is not None else None,
        final_scores={name: _number(value) for name, value in (result.final_scores or {}).items()},
        prior_top1=result.prior_top1 if result.final_scores is not None else None,
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
                kept_val_accuracy=result.kept_val_accuracy,  # None in summaries before it was stored
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
        if arm is None or arm.achieved is None:
            continue
        data_key = run_data_key(by_id[tune.run_id])
        matches = [
            row
            for row in candidates
            if row.model == tune.model
            and row.expected_accuracy is not None
            and (row.run_id == tune.assess_run or run_data_key(by_id[row.run_id]) == data_key)
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
                achieved=arm.achieved,
            )
        )
    return checks
