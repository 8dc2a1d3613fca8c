"""One candidate of an assessment, the unit an executor runs: load it, extract its features at the cut
points, score them through the metric door (in the driver or on a Ray worker; only the driver writes)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import fields, replace
from typing import TYPE_CHECKING, Any

from ..catalog.schema import Entry
from ..errors import ZooprobeError, first_line
from ..runs.store import Score
from .checks import select_layers
from .score_inputs import scoring_threads
from .scoring import LOGITS
from .screen import CutPointScoring
from .units import CandidateOutcome, CandidateSkipped, CandidateTask, ProgressLines, SharedData

if TYPE_CHECKING:
    import numpy as np
    import numpy.typing as npt

    from ..backbones.backbone import Backbone
    from ..data.datasets import Dataset


def _reason(exc: Exception) -> str:
    """One line naming what failed: a zooprobe error's own message, else the exception's type and first line."""
    if isinstance(exc, ZooprobeError):
        return first_line(exc)
    return f"{type(exc).__name__}: {first_line(exc)}"


def _load(
    entry: Entry,
    resolution: int | None,
    loader: Callable[[Entry], Backbone] | None,
    trust_remote_code: bool = False,
    trust_savedmodel: bool = False,
) -> Backbone:
    if loader is None:
        from ..plugins.manager import load_entry

        backbone = load_entry(entry, trust_remote_code=trust_remote_code, trust_savedmodel=trust_savedmodel)
    else:
        from ..backbones.savedmodel_trust import trusting_savedmodels

        with trusting_savedmodels(trust_savedmodel):
            backbone = loader(entry)
    pinned = backbone.entry
    # The loader may know preprocessing the catalog lacks (an hf: timm repo's pretrained_cfg, the
    # resolution a TF-Hub model declares): keep the catalog's facts, fill its gaps from the loader's.
    gaps = {f.name: getattr(pinned.input, f.name) for f in fields(entry.input) if getattr(entry.input, f.name) is None}
    # and the version is the one that loaded (an hf: repo's main may have moved since the listing)
    version = pinned.source_version or entry.source_version
    loaded = replace(entry, input=replace(entry.input, **gaps), source_version=version)
    backbone.entry = _at_resolution(loaded, resolution)
    if trust_remote_code:  # keep the record of the commit the source pinned the code to
        backbone.entry = replace(backbone.entry, provenance=pinned.provenance)
    return backbone


def _at_resolution(entry: Entry, resolution: int | None) -> Entry:
    if not resolution:
        return entry
    return replace(entry, input=replace(entry.input, default_resolution=(resolution, resolution)))


def extraction_layers(backbone: Backbone, task: CandidateTask) -> list[str]:
    """The cut points whose features the candidate's unit reads: those scored, and the source head's input
    (``pre_logits``) for the metrics that read its probabilities."""
    wanted = select_layers(backbone.cut_points, task.layers)
    needs_head = any(metric.input == "probabilities" for metric in task.metrics.values())
    if needs_head and backbone.has_source_head and "pre_logits" not in wanted:
        wanted.append("pre_logits")
    return wanted


def assess_candidate(task: CandidateTask, shared: SharedData) -> CandidateOutcome:
    """One candidate's unit of work, in the driver or on a worker: load it, extract its features, score them.

    :raises CandidateSkipped: it cannot load, or scoring it failed (the other candidates are still assessed).
    :raises ZooprobeError: bad input that fails every candidate alike.
    """
    dataset, labels, groups = shared.open()
    say = ProgressLines(task.say_from is not None, task.say_from or 0.0)
    try:
        backbone = _load(task.entry, task.resolution, task.loader, task.trust_remote_code, task.trust_savedmodel)
    except Exception as exc:  # noqa: BLE001 - loaders raise anything (pickle, safetensors, Keras, plugins'
        # own); one candidate that cannot load is that candidate's problem. Interrupts still stop.
        raise CandidateSkipped(f"cannot load: {_reason(exc)}") from None
    layers = select_layers(backbone.cut_points, task.layers)
    revision = backbone.entry.source_version if task.trust_remote_code else None
    outcome = CandidateOutcome(backbone.entry.id, list(backbone.cut_points), layers, revision=revision)
    if dataset.texts_b is not None:
        from ..backbones.text_features import pair_features

        outcome.pair_features = pair_features(backbone)
    say.say(f"{task.entry.id}: features at {len(layers)} cut points")
    try:
        _score_candidate(backbone, dataset, labels, groups, layers, task, outcome.scores.append, say)
    except Exception as exc:  # noqa: BLE001 - see the load above
        if isinstance(exc, ZooprobeError):
            raise
        raise CandidateSkipped(f"scoring failed: {_reason(exc)}") from None
    return outcome


def _score_candidate(
    backbone: Backbone,
    dataset: Dataset,
    labels: npt.NDArray[np.int64],
    groups: npt.NDArray[np.int64] | None,
    layers: list[str],
    task: CandidateTask,
    keep: Callable[[Score], None],
    say: ProgressLines,
) -> None:
    from ..backbones.features import extract_features

    model = backbone.entry.id
    available = task.metrics
    chosen = list(available)
    feature_metrics = [m for m in chosen if available[m].input == "features"]
    probability_metrics = [m for m in chosen if available[m].input == "probabilities"]
    wanted = extraction_layers(backbone, task)
    has_head = backbone.has_source_head
    features = extract_features(
        backbone,
        dataset,
        wanted,
        batch_size=task.batch_size,
        progress=say.enabled,
        cache_dir=task.cache_dir,
        device=task.device,
    )
    device = scoring_device(task.device)
    run = {"seed": task.seed, "folds": task.folds, "groups": groups, "device": device}

    def emit(score: Score) -> None:
        if task.record is not None:
            task.record(score)
        keep(score)

    scoring = CutPointScoring(model, available, labels, run, task.done, emit, scoring_threads())
    scoring.score_features(features, layers, feature_metrics, auto=isinstance(task.layers, str), say=say.say)
    if probability_metrics and has_head:
        probabilities = _source_probabilities(backbone, features["pre_logits"])
        for metric in probability_metrics:
            scoring.put(LOGITS, metric, probabilities)


def scoring_device(requested: str | None) -> str | None:
    """Where scores compute in torch: the run's device when it is CUDA, else None (NumPy on the CPU,
    measured faster there than torch; MPS lacks the float64 LogME needs)."""
    from ..backbones.backbone import pick_device

    device = pick_device(requested)
    return device if device.startswith("cuda") else None


def _source_probabilities(backbone: Backbone, pre_logits: Any) -> Any:
    """The source head's class probabilities, as the backbone's adapter computes them."""
    return backbone.source_probabilities(pre_logits)
