"""The catalog's one record type: a pretrained weight, with where each number came from.

Invariants: records are frozen; unknown values are ``None`` (never guessed); every numeric
fact named in :data:`PROVENANCE_FIELDS` that is not ``None`` has an entry in ``provenance``.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field, fields, is_dataclass
from typing import Any, Literal

from ..errors import InvalidEntryError, InvalidIdError
from .units import format_count

Modality = Literal["image", "video", "text", "audio", "multimodal"]
MODALITIES: tuple[str, ...] = ("image", "video", "text", "audio", "multimodal")

PROVENANCE_FIELDS: tuple[str, ...] = (
    "params",
    "params_no_head",
    "macs",
    "metrics",
    "pretraining",
    "feature_dim",
    "file_size_bytes",
    "weights_license",
    "input",
)

# Examples in each well-known pretraining set; sizes as their papers state them.
DATASET_SIZES: dict[str, int] = {
    "imagenet-1k": 1_281_167,
    "imagenet-12k": 12_000_000,  # timm's ImageNet-12k subset of 21k (~12M images)
    "imagenet-21k": 14_197_122,
    "laion-2b": 2_320_000_000,
    "laion-400m": 400_000_000,
    "openai-wit": 400_000_000,
    "datacomp-1b": 1_400_000_000,
    "merged-2b": 2_000_000_000,
    "ig-1b": 940_000_000,  # Instagram 940M (SWSL / WSL papers)
    "ig-3.5b": 3_500_000_000,
    "yfcc-100m": 100_000_000,
    "jft-300m": 300_000_000,
    "coco": 118_287,
    "lvd-142m": 142_000_000,
    "merged-38m": 38_000_000,
    "places365": 1_803_460,
}


@dataclass(frozen=True)
class InputSpec:
    """What a backbone expects as input.

    Image models fill channels/resolution/mean/std/interpolation/crop_pct/crop_mode; text models fill
    ``max_tokens``. Resolution is (height, width).
    """

    channels: int | None = None
    default_resolution: tuple[int, int] | None = None
    min_resolution: tuple[int, int] | None = None
    fixed_resolution: bool | None = None
    mean: tuple[float, ...] | None = None
    std: tuple[float, ...] | None = None
    interpolation: str | None = None
    crop_pct: float | None = None
    crop_mode: str | None = None  # timm's center/squash/border (backbones/resize.py); None is center
    preprocessing: str | None = None  # named scheme when the source uses one (Keras: caffe/tf/torch)
    max_tokens: int | None = None


@dataclass(frozen=True)
class PretrainStage:
    """One stage of pretraining, in order: dataset name and its size in examples (None: unknown)."""

    dataset: str
    examples: int | None = None
    method: str | None = None  # supervised, self-supervised, distilled, weakly-supervised ...


@dataclass(frozen=True)
class ReportedMetric:
    """A metric the source reports for these weights, e.g. ImageNet-1k top-1 = 80.9."""

    dataset: str
    metric: str
    value: float
    resolution: int | None = None


@dataclass(frozen=True)
class Compute:
    """Compute cost as reported: the number keeps its unit (GMACs for timm/Keras, GFLOPS for torchvision)."""

    value: float
    unit: Literal["GMACs", "GFLOPS"]
    resolution: int | None = None

    @property
    def gmacs(self) -> float | None:
        """The value in GMACs when the source reported GMACs; None otherwise (units are not converted)."""
        return self.value if self.unit == "GMACs" else None


@dataclass(frozen=True)
class Entry:
    """One pretrained weight in the catalog.

    ``id`` is ``source:name`` where ``name`` is the source's own name for the weights
    (``timm:resnet50.a1_in1k``, ``torchvision:resnet50.IMAGENET1K_V2``, ``keras:MobileNetV2``).
    ``provenance`` maps a field name to where its value came from. ``aliases`` holds the ids of the
    same weights in other sources: those a source declares, plus those the catalog links after a
    sync (:mod:`zooprobe.catalog.aliases`).
    """

    source: str
    name: str
    architecture: str
    source_version: str | None = None
    family: str | None = None
    tasks: tuple[str, ...] = ()
    modality: str = "image"
    framework: str | None = None
    input: InputSpec = field(default_factory=InputSpec)
    feature_dim: int | None = None
    num_classes: int | None = None
    params: int | None = None
    params_no_head: int | None = None
    compute: Compute | None = None
    pretraining: tuple[PretrainStage, ...] = ()
    metrics: tuple[ReportedMetric, ...] = ()
    weights_license: str | None = None
    code_license: str | None = None
    file_size_bytes: int | None = None
    handle: str | None = None
    # the file's URL as its publisher released it: two entries with the same URL hold the same weights
    weights_url: str | None = None
    tags: tuple[str, ...] = ()
    aliases: tuple[str, ...] = ()  # ids of the same weights in other sources
    description: str | None = None
    provenance: tuple[tuple[str, str], ...] = ()

    def __post_init__(self) -> None:
        self._check()
        # Sources write "not measured" as NaN (torchvision's _metrics); unknown is None here, and a
        # stored NaN would also reach the JSON output, which has no NaN. Entries stored before this
        # guard are cleaned as they are read back.
        metrics = tuple(m for m in self.metrics if _finite(m.value))
        compute = self.compute if self.compute is None or _finite(self.compute.value) else None
        if len(metrics) == len(self.metrics) and compute is self.compute:
            return
        provenance = dict(self.provenance)
        if not metrics:
            provenance.pop("metrics", None)
        if compute is None:
            provenance.pop("macs", None)
        object.__setattr__(self, "metrics", metrics)
        object.__setattr__(self, "compute", compute)
        object.__setattr__(self, "provenance", tuple(sorted(provenance.items())))

    def _check(self) -> None:
        """Refuse what a source plugin got wrong in a way the store would keep silently (a string of
        tasks becomes single letters, a modality no filter can find, a count stored as text)."""

        def bad(field_name: str, value: object, expected: str) -> InvalidEntryError:
            return InvalidEntryError(f"{self.source}:{self.name}", field_name, value, expected)

        for name in ("source", "name"):
            value = getattr(self, name)
            if not isinstance(value, str) or not value or (name == "source" and ":" in value):
                raise bad(name, value, "a non-empty string (the source's without ':')")
        for name in ("tasks", "tags", "aliases"):
            value = getattr(self, name)
            if not isinstance(value, tuple) or not all(isinstance(v, str) for v in value):
                raise bad(name, value, "a tuple of strings, e.g. ('image-classification',)")
        if self.modality not in MODALITIES:
            raise bad("modality", self.modality, f"one of {', '.join(MODALITIES)}")
        for name in ("params", "params_no_head", "feature_dim", "num_classes", "file_size_bytes"):
            value = getattr(self, name)
            if value is not None and (isinstance(value, bool) or not isinstance(value, int)):
                raise bad(name, value, "an int or None")
        for name in ("default_resolution", "min_resolution"):
            value = getattr(self.input, name)
            if value is not None and not (
                isinstance(value, tuple) and len(value) == 2 and all(isinstance(v, int) for v in value)
            ):
                raise bad(f"input.{name}", value, "(height, width) as two ints, or None")

    @property
    def id(self) -> str:
        return f"{self.source}:{self.name}"

    def __repr__(self) -> str:
        """One line of what picks a backbone (the dataclass repr printed every field, provenance included)."""
        facts = [f"id={self.id!r}", f"architecture={self.architecture!r}"]
        if self.params is not None:
            facts.append(f"params={format_count(self.params)}")
        if self.compute is not None:
            facts.append(f"compute={self.compute.value:g} {self.compute.unit}")
        if self.top1 is not None:
            facts.append(f"top1={self.top1:g}")
        if self.input.default_resolution is not None:
            facts.append(f"resolution={self.input.default_resolution[0]}")
        if self.pretraining:
            facts.append(f"pretraining={'>'.join(s.dataset for s in self.pretraining)}")
        return f"Entry({', '.join(facts)})"

    def metric(self, dataset: str, metric: str) -> float | None:
        """The reported value of ``metric`` on ``dataset``, or None."""
        for m in self.metrics:
            if m.dataset == dataset and m.metric == metric:
                return m.value
        return None

    @property
    def top1(self) -> float | None:
        return self.metric("imagenet-1k", "top1")

    @property
    def pretrain_examples(self) -> int | None:
        """Largest known pretraining set size across the stages (None if none is known)."""
        sizes = [s.examples for s in self.pretraining if s.examples is not None]
        return max(sizes) if sizes else None

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict with the documented stable keys (``id`` first)."""
        data = _plain(self)
        data["provenance"] = dict(self.provenance)
        return {"id": self.id, **data}

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=False)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Entry:
        """Inverse of :meth:`to_dict`; raises ``ValueError`` naming an unknown key."""
        data = dict(data)
        data.pop("id", None)
        known = {f.name for f in fields(cls)}
        unknown = set(data) - known
        if unknown:
            raise ValueError(f"unknown entry fields {sorted(unknown)}; valid: {sorted(known)}")
        inp = dict(data.get("input") or {})
        for key in ("default_resolution", "min_resolution", "mean", "std"):
            if inp.get(key) is not None:
                inp[key] = tuple(inp[key])
        data["input"] = InputSpec(**inp)
        if data.get("compute"):
            data["compute"] = Compute(**data["compute"])
        data["pretraining"] = tuple(PretrainStage(**s) for s in data.get("pretraining") or ())
        data["metrics"] = tuple(ReportedMetric(**m) for m in data.get("metrics") or ())
        for key in ("tasks", "tags", "aliases"):
            data[key] = tuple(data.get(key) or ())
        prov = data.get("provenance") or {}
        data["provenance"] = tuple(sorted(prov.items())) if isinstance(prov, dict) else tuple(map(tuple, prov))
        return cls(**data)


_FIELD_NAMES: dict[type, tuple[str, ...]] = {}


def _plain(value: Any) -> Any:
    """``dataclasses.asdict`` for these records' frozen, immutable values, without its deep copies
    (which were most of the time a sync spent storing an entry)."""
    kind = type(value)
    if kind is tuple:
        return tuple(_plain(item) for item in value)
    if kind in (str, int, float, bool) or value is None:
        return value
    names = _FIELD_NAMES.get(kind)
    if names is None:
        if not is_dataclass(value):
            return value
        names = _FIELD_NAMES[kind] = tuple(f.name for f in fields(value))
    return {name: _plain(getattr(value, name)) for name in names}


def _finite(value: object) -> bool:
    """Whether a reported number is a number (NaN and infinities are not)."""
    return not isinstance(value, float) or math.isfinite(value)


def split_id(entry_id: str) -> tuple[str, str]:
    """Split ``source:name`` into its parts.

    :raises InvalidIdError: (a ``ValueError``) when there is no ``:`` or either part is empty.
    """
    source, sep, name = entry_id.partition(":")
    if not sep or not source or not name:
        raise InvalidIdError(entry_id)
    return source, name
