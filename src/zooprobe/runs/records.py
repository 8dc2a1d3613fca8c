"""The typed records a run holds: candidate results and recommendations of an assessment, epoch
records, arm results and the summary of a fine-tuning run.

Invariants:
- Each record is serialised here and nowhere else: ``to_json`` gives the JSON document the run store
  keeps (and the CLI prints), ``from_json`` reads it back.
- ``from_json`` takes documents of every release: a key missing from an older document gets the
  field's default, and keys it does not know are kept (``extra``) and written back unchanged.
- Facts derived from others are computed once, where the record is made, and stored with it: the
  best layer of a candidate, an arm's final and best accuracy, the gain over scratch.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, fields
from typing import Any, TypeVar

SCRATCH = "scratch"
# The cut point whose scores are the source head's (NCE, LEEP): per-model facts, not a layer.
LOGITS = "logits"

_R = TypeVar("_R")


def _known(cls: type[Any], doc: Mapping[str, Any]) -> dict[str, Any]:
    """The keys of ``doc`` that are fields of ``cls`` (a missing one gets the field's default)."""
    names = {f.name for f in fields(cls)}
    return {key: value for key, value in doc.items() if key in names}


def _number(value: Any) -> float | None:
    """A finite float, or None for anything else (a missing value, a NaN, a bool)."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value) if math.isfinite(value) else None


def _plain(record: Any) -> dict[str, Any]:
    return {f.name: getattr(record, f.name) for f in fields(record)}


# --- fine-tuning ------------------------------------------------------------------------------------


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
        return _plain(self)

    @classmethod
    def from_json(cls, doc: Mapping[str, Any]) -> EpochRecord:
        values = {name: None for name in METRIC_COLUMNS} | _known(cls, doc)
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
            final_val_accuracy=_number(doc.get("final_val_accuracy")),
            best_val_accuracy=_number(doc.get("best_val_accuracy")),
            best_epoch=best_epoch if isinstance(best_epoch, int) else None,
            checkpoint_epoch=checkpoint_epoch if isinstance(checkpoint_epoch, int) else None,
            seconds=_number(doc.get("seconds")) or 0.0,
            method=doc.get("method"),
            checkpoint=checkpoint,
            kept_val_accuracy=_number(doc.get("kept_val_accuracy")),
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
        return cls(arms, _number(doc.get("gain_over_scratch")), _number(doc.get("seconds")))


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


# --- assessment -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Macs:
    """The compute of one forward pass, as the catalog gives it."""

    value: float | None
    unit: str | None = None
    resolution: int | None = None

    def to_json(self) -> dict[str, Any]:
        return _plain(self)


@dataclass(frozen=True)
class InputCheck:
    """Whether the data fit the backbone's input: ``compatible``, ``adapted`` (saying how) or ``incompatible``."""

    status: str = "compatible"
    adaptations: list[str] = field(default_factory=list)
    reason: str | None = None

    def to_json(self) -> dict[str, Any]:
        return _plain(self)


@dataclass(frozen=True)
class DataRatio:
    """Pretraining examples against the target's size and smallest class, with flags for the decision."""

    source_examples: int | None = None
    target_examples: int | None = None
    examples_per_class_min: int | None = None
    ratio: float | None = None
    flags: list[str] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return _plain(self)


@dataclass(frozen=True)
class LayerPoint:
    """The linear probe at one cut point; ``depth`` is relative (0 the input, 1 the last cut point)."""

    layer: str
    depth: float
    probe_accuracy: float
    probe_spread: float = 0.0
    final: bool = True  # the network's last cut point

    def to_json(self) -> dict[str, Any]:
        return {
            "layer": self.layer,
            "depth": self.depth,
            "final": self.final,
            "probe_accuracy": self.probe_accuracy,
            "probe_spread": self.probe_spread,
        }

    @classmethod
    def from_json(cls, doc: Mapping[str, Any]) -> LayerPoint:
        return cls(
            layer=str(doc["layer"]),
            depth=float(doc["depth"]),
            probe_accuracy=float(doc["probe_accuracy"]),
            probe_spread=_number(doc.get("probe_spread")) or 0.0,
            final=bool(doc.get("final", True)),
        )


@dataclass(frozen=True)
class Recommendation:
    """A strategy for one backbone: what to train, where to cut, the accuracy to expect and why.

    ``finetune_arg`` is the ``--strategy`` value that runs it; ``expected_accuracy`` is the probe's (nearest
    class mean's for as-is) at that layer, ``uncertainty`` its fold-to-fold spread (how stable the estimate
    is). ``interval_low``..``interval_high`` is the calibrated interval the fine-tuned accuracy is expected
    to fall in, at coverage ``interval_level`` (0.8: 80%; see :mod:`zooprobe.evaluator.interval`); absent
    in runs made before it existed or without a calibration. The summary's recommendation also names the ``model``.
    """

    strategy: str
    cut: str | None
    finetune_arg: str
    expected_accuracy: float | None
    uncertainty: float | None
    evidence: str
    train: str | None = None
    model: str | None = None
    # no candidate beat the raw-feature baseline: scratch or a small model is recommended instead
    negative_transfer: bool = False
    interval_low: float | None = None
    interval_high: float | None = None
    interval_level: float | None = None

    def to_json(self) -> dict[str, Any]:
        doc: dict[str, Any] = {} if self.model is None else {"model": self.model}
        doc |= {"strategy": self.strategy, "cut": self.cut}
        if self.model is None:
            doc["train"] = self.train
        doc |= {
            "finetune_arg": self.finetune_arg,
            "expected_accuracy": self.expected_accuracy,
            "uncertainty": self.uncertainty,
            "evidence": self.evidence,
        }
        if self.negative_transfer:  # only when set: documents of earlier runs keep their exact shape
            doc["negative_transfer"] = True
        if self.interval_level is not None:
            doc |= {"interval_low": self.interval_low, "interval_high": self.interval_high}
            doc["interval_level"] = self.interval_level
        return doc

    @classmethod
    def from_json(cls, doc: Mapping[str, Any]) -> Recommendation:
        return cls(
            strategy=str(doc.get("strategy") or ""),
            cut=doc.get("cut"),
            finetune_arg=str(doc.get("finetune_arg") or ""),
            expected_accuracy=_number(doc.get("expected_accuracy")),
            uncertainty=_number(doc.get("uncertainty")),
            evidence=str(doc.get("evidence") or ""),
            train=doc.get("train"),
            model=doc.get("model"),
            negative_transfer=bool(doc.get("negative_transfer", False)),
            interval_low=_number(doc.get("interval_low")),
            interval_high=_number(doc.get("interval_high")),
            interval_level=_number(doc.get("interval_level")),
        )


@dataclass(frozen=True)
class CandidateResult:
    """One candidate backbone of an assessment: catalog facts, the checks, scores and recommendation.

    ``status`` is ``pending`` (not reached yet), ``skipped`` (``skip_reason`` says why) or ``done``.
    ``best_layer`` is where the probe peaks, and ``probe_accuracy``/``probe_spread``/``scores`` are read
    there (the head's scores under ``logits``); ``final_scores`` are at the deepest assessed cut point
    (``final_layer``), which the ranking reads. ``layer_profile`` is in depth order.
    """

    model: str
    source: str | None = None
    params: int | None = None
    macs: Macs | None = None
    prior_top1: float | None = None
    pretraining: list[str] = field(default_factory=list)
    status: str = "pending"
    skip_reason: str | None = None
    input_check: InputCheck = field(default_factory=InputCheck)
    data_ratio: DataRatio = field(default_factory=DataRatio)
    best_layer: str | None = None
    probe_accuracy: float | None = None
    probe_spread: float | None = None
    scores: dict[str, float | None] = field(default_factory=dict)
    best_scores: dict[str, float | None] = field(default_factory=dict)
    consensus: float | None = None
    rank: int | None = None
    layer_profile: list[LayerPoint] = field(default_factory=list)
    recommendation: Recommendation | None = None
    trust_remote_code: bool = False
    revision: str | None = None  # the commit whose code ran, with trust_remote_code
    # set once the candidate is scored (None before): kNN accuracy per layer, and the deepest layer's scores
    knn_by_layer: dict[str, float | None] | None = None
    final_layer: str | None = None
    final_scores: dict[str, float | None] | None = None
    extra: dict[str, Any] = field(default_factory=dict)  # keys of a newer release, kept as they are

    def to_json(self) -> dict[str, Any]:
        doc: dict[str, Any] = {
            "model": self.model,
            "source": self.source,
            "params": self.params,
            "macs": self.macs.to_json() if self.macs else None,
            "prior_top1": self.prior_top1,
            "pretraining": list(self.pretraining),
            "status": self.status,
            "skip_reason": self.skip_reason,
            "input_check": self.input_check.to_json(),
            "data_ratio": self.data_ratio.to_json(),
            "best_layer": self.best_layer,
            "probe_accuracy": self.probe_accuracy,
            "probe_spread": self.probe_spread,
            "scores": dict(self.scores),
            "best_scores": dict(self.best_scores),
            "consensus": self.consensus,
            "rank": self.rank,
            "layer_profile": [point.to_json() for point in self.layer_profile],
            "recommendation": self.recommendation.to_json() if self.recommendation else None,
        }
        if self.trust_remote_code:
            doc |= {"trust_remote_code": True, "revision": self.revision}
        if self.knn_by_layer is not None:  # runs before the as-is metric kept kNN per layer (now as_is_by_layer)
            doc["knn_by_layer"] = dict(self.knn_by_layer)
        if self.final_scores is not None:
            doc |= {"final_layer": self.final_layer, "final_scores": dict(self.final_scores)}
        return doc | self.extra

    @classmethod
    def from_json(cls, doc: Mapping[str, Any]) -> CandidateResult:
        known = {f.name for f in fields(cls)} - {"extra"}
        macs, check, ratio, rec = (doc.get(key) for key in ("macs", "input_check", "data_ratio", "recommendation"))
        rank, params = doc.get("rank"), doc.get("params")
        return cls(
            model=str(doc["model"]),
            source=doc.get("source"),
            params=params if isinstance(params, int) else None,
            macs=Macs(_number(macs.get("value")), macs.get("unit"), macs.get("resolution")) if macs else None,
            prior_top1=_number(doc.get("prior_top1")),
            pretraining=list(doc.get("pretraining") or []),
            status=str(doc.get("status", "pending")),
            skip_reason=doc.get("skip_reason"),
            input_check=InputCheck(**_known(InputCheck, check or {})),
            data_ratio=DataRatio(**_known(DataRatio, ratio or {})),
            best_layer=doc.get("best_layer"),
            probe_accuracy=_number(doc.get("probe_accuracy")),
            probe_spread=_number(doc.get("probe_spread")),
            scores=dict(doc.get("scores") or {}),
            best_scores=dict(doc.get("best_scores") or {}),
            consensus=_number(doc.get("consensus")),
            rank=rank if isinstance(rank, int) else None,
            layer_profile=[LayerPoint.from_json(point) for point in doc.get("layer_profile") or []],
            recommendation=Recommendation.from_json(rec) if rec else None,
            trust_remote_code=bool(doc.get("trust_remote_code", False)),
            revision=doc.get("revision"),
            knn_by_layer=doc.get("knn_by_layer"),
            final_layer=doc.get("final_layer"),
            final_scores=doc.get("final_scores"),
            extra={key: value for key, value in doc.items() if key not in known},
        )


@dataclass(frozen=True)
class AssessSummary:
    """The end of an assessment: the ranking, the recommendation (for the top candidate) and caveats.

    ``pending`` candidates were not reached within the budget (the run stays resumable);
    ``skipped`` maps each skipped candidate to its reason.
    """

    ranking: list[str] = field(default_factory=list)
    recommended: Recommendation | None = None
    caveats: list[str] = field(default_factory=list)
    seconds: float | None = None
    pending: list[str] = field(default_factory=list)
    skipped: dict[str, str | None] = field(default_factory=dict)
    # the probe on raw features (pixels, word counts) that pretrained features must beat; None in older runs
    baseline: dict[str, Any] | None = None

    def to_json(self) -> dict[str, Any]:
        doc: dict[str, Any] = {
            "ranking": list(self.ranking),
            "recommended": self.recommended.to_json() if self.recommended else None,
            "caveats": list(self.caveats),
        }
        if self.baseline is not None:  # only when measured: documents of earlier runs keep their exact shape
            doc["baseline"] = dict(self.baseline)
        return doc | {"seconds": self.seconds, "pending": list(self.pending), "skipped": dict(self.skipped)}

    @classmethod
    def from_json(cls, doc: Mapping[str, Any]) -> AssessSummary:
        rec = doc.get("recommended")
        return cls(
            ranking=list(doc.get("ranking") or []),
            recommended=Recommendation.from_json(rec) if isinstance(rec, Mapping) else None,
            caveats=[str(caveat) for caveat in doc.get("caveats") or []],
            seconds=_number(doc.get("seconds")),
            pending=list(doc.get("pending") or []),
            skipped=dict(doc.get("skipped") or {}),
            baseline=dict(doc["baseline"]) if isinstance(doc.get("baseline"), Mapping) else None,
        )
