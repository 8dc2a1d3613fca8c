"""The typed records a run holds: candidate results and recommendations of an assessment, epoch
records, arm results and the summary of a fine-tuning run (those three in :mod:`.epoch_records`,
re-exported here).

Invariants:
- Each record is serialised here and nowhere else: ``to_json`` gives the JSON document the run store
  keeps (and the CLI prints), ``from_json`` reads it back.
- ``from_json`` takes documents of every release: a key missing from an older document gets the
  field's default, and keys it does not know are kept (``extra``) and written back unchanged.
- Facts derived from others are computed once, where the record is made, and stored with it: the
  best layer of a candidate, an arm's final and best accuracy, the gain over scratch.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from typing import Any

from .epoch_records import METRIC_COLUMNS, ArmResult, EpochRecord, FinetuneSummary, provisional_gain
from .record_fields import LOGITS, SCRATCH, finite_number, known_fields, plain_fields

__all__ = [
    "LOGITS",
    "METRIC_COLUMNS",
    "SCRATCH",
    "ArmResult",
    "AssessSummary",
    "CandidateResult",
    "DataRatio",
    "EpochRecord",
    "FinetuneSummary",
    "InputCheck",
    "LayerPoint",
    "Macs",
    "Recommendation",
    "provisional_gain",
]


# --- fine-tuning ------------------------------------------------------------------------------------


# --- assessment -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Macs:
    """The compute of one forward pass, as the catalog gives it."""

    value: float | None
    unit: str | None = None
    resolution: int | None = None

    def to_json(self) -> dict[str, Any]:
        return plain_fields(self)


@dataclass(frozen=True)
class InputCheck:
    """Whether the data fit the backbone's input: ``compatible``, ``adapted`` (saying how) or ``incompatible``."""

    status: str = "compatible"
    adaptations: list[str] = field(default_factory=list)
    reason: str | None = None

    def to_json(self) -> dict[str, Any]:
        return plain_fields(self)


@dataclass(frozen=True)
class DataRatio:
    """Pretraining examples against the target's size and smallest class, with flags for the decision."""

    source_examples: int | None = None
    target_examples: int | None = None
    examples_per_class_min: int | None = None
    ratio: float | None = None
    flags: list[str] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return plain_fields(self)


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
            probe_spread=finite_number(doc.get("probe_spread")) or 0.0,
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
            expected_accuracy=finite_number(doc.get("expected_accuracy")),
            uncertainty=finite_number(doc.get("uncertainty")),
            evidence=str(doc.get("evidence") or ""),
            train=doc.get("train"),
            model=doc.get("model"),
            negative_transfer=bool(doc.get("negative_transfer", False)),
            interval_low=finite_number(doc.get("interval_low")),
            interval_high=finite_number(doc.get("interval_high")),
            interval_level=finite_number(doc.get("interval_level")),
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
            macs=Macs(finite_number(macs.get("value")), macs.get("unit"), macs.get("resolution")) if macs else None,
            prior_top1=finite_number(doc.get("prior_top1")),
            pretraining=list(doc.get("pretraining") or []),
            status=str(doc.get("status", "pending")),
            skip_reason=doc.get("skip_reason"),
            input_check=InputCheck(**known_fields(InputCheck, check or {})),
            data_ratio=DataRatio(**known_fields(DataRatio, ratio or {})),
            best_layer=doc.get("best_layer"),
            probe_accuracy=finite_number(doc.get("probe_accuracy")),
            probe_spread=finite_number(doc.get("probe_spread")),
            scores=dict(doc.get("scores") or {}),
            best_scores=dict(doc.get("best_scores") or {}),
            consensus=finite_number(doc.get("consensus")),
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
            seconds=finite_number(doc.get("seconds")),
            pending=list(doc.get("pending") or []),
            skipped=dict(doc.get("skipped") or {}),
            baseline=dict(doc["baseline"]) if isinstance(doc.get("baseline"), Mapping) else None,
        )
