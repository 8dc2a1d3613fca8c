"""Transferability assessment: which backbone to start from and how much of it to keep, before training.

For each candidate, three checks of when transfer makes sense, then scores:

1. same input type: modality, channels, resolution (or text length) against the entry's input spec;
2. data ratio: pretraining examples against the target's size and its smallest class;
3. feature similarity: a linear probe, kNN and training-free scores (LogME, H-score; NCE and LEEP
   through the source head) at the backbone's cut points, layer by layer.

The decision reads the layer profile: where probe accuracy peaks, or stops improving within the
fold-to-fold spread, is where the source's features stop serving the target. Rules (documented in
:func:`recommend`) turn profile and data size into one of four strategies with its evidence.

Runs are recorded in the run store as they progress (every score as soon as it is known), so an
interrupted assessment resumes where it stopped; features come from the on-disk cache.
"""

from __future__ import annotations

import math
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..catalog.schema import Entry
from ..catalog.store import Catalog, Query
from ..errors import InvalidChoiceError, ZooprobeError, first_line
from ..runs.store import Run, RunStore, Score, library_versions

if TYPE_CHECKING:
    import numpy as np
    import numpy.typing as npt

    from ..backbones.backbone import Backbone
    from ..data.datasets import Dataset, OnError
    from .scores import ProbeResult

PROBE_METRICS = ("probe_accuracy", "probe_balanced_accuracy")
DEFAULT_METRICS = ("probe_accuracy", "probe_balanced_accuracy", "knn_accuracy", "logme", "hscore", "nce", "leep")
LOGITS = "logits"
AUTO_LAYERS = 6
# Below these sizes, retraining every weight of a network is likely to overfit (a frozen body or a
# shallow new block is the safer start); they are rules of thumb, and the report says so.
SMALL_TARGET_EXAMPLES = 1_000
SMALL_TARGET_PER_CLASS = 20
# A target holding more than this fraction of the source's examples gains little from pretraining.
LARGE_TARGET_RATIO = 0.1
# Weights of each score in the consensus (z-scores across candidates, at the deepest assessed cut
# point). Chosen on benchmarks/bench_ranking.py (4 targets x 7 backbones), where over six runs they
# tie the best single score, the probe (mean Kendall tau 0.56-0.61 against 0.55-0.63), with lower
# regret; on two held-out targets (three runs) they match or beat every single score (0.52-0.62
# against LogME's 0.43-0.52, the probe's 0.10-0.27), and over all six targets their mean tau is the
# highest in each of those runs. The README gives the figures. kNN adds nothing to the probe on
# the same features, and H-score, unstable with few examples per dimension, ranked worst of all;
# both stay in the report but out of the consensus. The catalog's ImageNet top-1 is the prior
# (weighted tau 0.751 among ImageNet models on the standard benchmark); it only orders the
# candidates that report it.
CONSENSUS_WEIGHTS = {
    "probe_accuracy": 1.0,
    "logme": 1.0,
    "leep": 0.5,
    "nce": 0.5,
    "prior_top1": 0.5,
}


class AssessError(ZooprobeError):
    """An assessment that cannot start: no candidates, bad options."""


@dataclass
class Assessment:
    """The outcome of :func:`assess`: the run id, one document per candidate (ranked first) and the summary."""

    run_id: str
    candidates: list[dict[str, Any]]
    summary: dict[str, Any]
    resumed: bool = False

    @property
    def recommended(self) -> dict[str, Any] | None:
        rec = self.summary.get("recommended")
        return rec if isinstance(rec, dict) else None


@dataclass
class _Progress:
    enabled: bool
    started: float = field(default_factory=time.perf_counter)

    def say(self, message: str) -> None:
        if self.enabled:
            print(f"[{time.perf_counter() - self.started:6.1f}s] {message}", file=sys.stderr, flush=True)


# --- checks --------------------------------------------------------------------------------------


def check_input(entry: Entry, summary: dict[str, Any]) -> dict[str, Any]:
    """Whether the data fit the backbone's input: ``compatible``, ``adapted`` (saying how) or ``incompatible``."""
    modality = summary["modality"]
    if entry.modality not in (modality, "multimodal"):
        return {
            "status": "incompatible",
            "adaptations": [],
            "reason": f"{entry.id} takes {entry.modality} input; the data are {modality}",
        }
    adaptations: list[str] = []
    spec = entry.input
    if modality == "image":
        channels = summary.get("channels") or []
        expected = spec.channels or 3
        for count in channels:
            if count == expected:
                continue
            if count == 1 and expected == 3:
                adaptations.append("grayscale replicated to 3 channels")
            elif count == 4 and expected == 3:
                adaptations.append("alpha channel dropped (RGBA to RGB)")
            else:
                return {
                    "status": "incompatible",
                    "adaptations": [],
                    "reason": f"{entry.id} takes {expected}-channel images; the data have {count} channels",
                }
        if spec.default_resolution:
            height, width = spec.default_resolution
            small = summary["image_size"]["min"]
            large = summary["image_size"]["max"]
            if small[0] < height or small[1] < width:
                adaptations.append(f"upsampling from {small[0]}x{small[1]} to {height}x{width}")
            elif large[0] > 2 * height or large[1] > 2 * width:
                adaptations.append(f"downsampling from up to {large[0]}x{large[1]} to {height}x{width}")
    elif modality == "text" and spec.max_tokens:
        longest = summary.get("text_length", {}).get("max", 0)
        # ~4 characters per token for English subword tokenizers: only a hint, the tokenizer decides.
        if longest > 4 * spec.max_tokens:
            adaptations.append(f"truncation to {spec.max_tokens} tokens (longest text {longest} characters)")
    return {"status": "adapted" if adaptations else "compatible", "adaptations": adaptations, "reason": None}


def check_data_ratio(entry: Entry, summary: dict[str, Any]) -> dict[str, Any]:
    """Pretraining examples against the target's size and smallest class, with flags for the decision."""
    target = int(summary["examples"])
    per_class_min = min(summary["per_class"].values()) if summary["per_class"] else 0
    source = entry.pretrain_examples
    ratio = target / source if source else None
    flags: list[str] = []
    if source is None:
        flags.append("source size unknown")
    elif ratio is not None and ratio > LARGE_TARGET_RATIO:
        flags.append(
            f"target not much smaller than the source ({target:,} vs {source:,} examples):"
            " pretraining may add little over training from scratch"
        )
    if target < SMALL_TARGET_EXAMPLES or per_class_min < SMALL_TARGET_PER_CLASS:
        flags.append(
            f"target small ({target:,} examples, {per_class_min} in the smallest class):"
            " retraining the whole network risks overfitting"
        )
    return {
        "source_examples": source,
        "target_examples": target,
        "examples_per_class_min": per_class_min,
        "ratio": ratio,
        "flags": flags,
    }


def _is_small(ratio: dict[str, Any]) -> bool:
    return bool(
        ratio["target_examples"] < SMALL_TARGET_EXAMPLES or ratio["examples_per_class_min"] < SMALL_TARGET_PER_CLASS
    )


# --- layers --------------------------------------------------------------------------------------


def select_layers(cut_points: Sequence[str], layers: str | Sequence[str]) -> list[str]:
    """The cut points to score: ``auto`` (up to 6 spread over the second half of the network, always the
    last), ``all``, or the names given (validated).

    :raises InvalidChoiceError: naming the valid cut points for an unknown name.
    """
    if layers == "all":
        return list(cut_points)
    if layers == "auto":
        count = len(cut_points)
        if count <= AUTO_LAYERS:
            return list(cut_points)
        # Early blocks hold generic edges and textures that rarely beat later ones on a probe;
        # sample the second half densely and keep one early point as a reference.
        picks = {count - 1, count // 4}
        for step in range(AUTO_LAYERS - 2):
            picks.add(round(count / 2 + step * (count / 2 - 1) / (AUTO_LAYERS - 2)))
        return [cut_points[i] for i in sorted(picks)]
    names = [layers] if isinstance(layers, str) else list(layers)
    for name in names:
        if name not in cut_points:
            raise InvalidChoiceError("cut point", name, list(cut_points))
    return sorted(names, key=list(cut_points).index)


# --- decision ------------------------------------------------------------------------------------


def _probe_accuracy(point: dict[str, Any]) -> float:
    return float(point["probe_accuracy"])


def recommend(doc: dict[str, Any]) -> dict[str, Any] | None:
    """The strategy for one assessed candidate, from its layer profile and data size.

    Rules, in order:

    - the probe peaks at the last cut point, or the last is within the spread of the peak, and kNN on
      those frozen final features does as well as the probe: (1) use as is — nothing to train.
    - the same profile without kNN's match: the source's final features serve the target; (2) new
      head on the frozen body for a small target, (3) new head and retrain everything otherwise.
    - an earlier cut point beats the last by more than the spread: the later layers are specific to
      the source task; (4) cut at the earliest layer within the spread of the peak, add new layers,
      train those only (small target) or everything.
    - the network's final cut point was not assessed (layers named by hand): (1)-(3) would rest on
      features nobody measured, so (4) at the earliest layer within the spread of the assessed peak.

    The expected accuracy is the probe's (kNN's for as-is) at that layer, ± the probe's spread over
    folds there.
    """
    profile = doc.get("layer_profile") or []
    if not profile:
        return None
    ratio = doc["data_ratio"]
    small = _is_small(ratio)
    size = f"{ratio['target_examples']:,} examples ({ratio['examples_per_class_min']} in the smallest class)"
    best = max(profile, key=_probe_accuracy)
    last = profile[-1]
    noise = max(best["probe_spread"], last["probe_spread"], 0.005)
    knn_last = doc.get("knn_by_layer", {}).get(last["layer"])

    def rec(
        strategy: str, cut: str | None, train: str | None, arg: str, acc: float, spread: float, why: str
    ) -> dict[str, Any]:
        return {
            "strategy": strategy,
            "cut": cut,
            "train": train,
            "finetune_arg": arg,
            "expected_accuracy": acc,
            "uncertainty": spread,
            "evidence": why,
        }

    final_assessed = last.get("final", True)
    last_serves = final_assessed and last["probe_accuracy"] >= best["probe_accuracy"] - noise
    if last_serves and knn_last is not None and knn_last >= last["probe_accuracy"] - noise:
        return rec(
            "as-is",
            None,
            None,
            "as-is",
            knn_last,
            last["probe_spread"],
            f"kNN on the frozen features at {last['layer']} reaches {knn_last:.3f}, as good as a trained linear"
            f" probe ({last['probe_accuracy']:.3f} ± {last['probe_spread']:.3f}):"
            " training a head buys nothing measurable.",
        )
    if last_serves:
        peak = (
            f"probe accuracy is highest at the last cut point {last['layer']}"
            f" ({last['probe_accuracy']:.3f} ± {last['probe_spread']:.3f})"
            if best is last
            else f"the last cut point {last['layer']} ({last['probe_accuracy']:.3f}) is within the spread of"
            f" the peak at {best['layer']} ({best['probe_accuracy']:.3f} ± {best['probe_spread']:.3f})"
        )
        if small:
            return rec(
                "head",
                None,
                "new",
                "head",
                last["probe_accuracy"],
                last["probe_spread"],
                f"The {peak}: the source's final features serve this task, and with {size} a new head on the frozen"
                " body is the safe start.",
            )
        return rec(
            "full",
            None,
            "all",
            "full",
            last["probe_accuracy"],
            last["probe_spread"],
            f"The {peak}; with {size} there is enough data to retrain everything, which usually adds to the"
            " probe's accuracy (expected accuracy is the probe's, a lower bound).",
        )
    plateau = next(p for p in profile if p["probe_accuracy"] >= best["probe_accuracy"] - noise)
    train = "new" if small else "all"
    width = 256
    reached = (
        f"Probe accuracy peaks at {best['layer']} ({best['probe_accuracy']:.3f} ± {best['probe_spread']:.3f}),"
        f" reached within the spread by {plateau['layer']}"
    )
    if final_assessed:
        why = (
            f"{reached}, and falls to {last['probe_accuracy']:.3f} at {last['layer']}: the later layers are specific"
            " to the source task"
        )
    else:
        why = (
            f"The network's final cut point was not assessed (deepest assessed: {last['layer']}); among the layers"
            f" assessed, {reached[0].lower()}{reached[1:]}. Assess the final one (--layers auto) to see whether the"
            " whole body serves"
        )
    return rec(
        "cut",
        plateau["layer"],
        train,
        f"cut:{plateau['layer']}+mlp:{width}:train={train}",
        plateau["probe_accuracy"],
        plateau["probe_spread"],
        f"{why}; cut at {plateau['layer']}, add new layers and train {'only those' if small else 'everything'}"
        f" ({size}).",
    )


def consensus(docs: Sequence[dict[str, Any]]) -> dict[str, float]:
    """One score per assessed candidate: the weighted mean of each score's z-score across candidates.

    Each data-driven score is taken at the candidate's deepest assessed cut point, where the new
    head of the ``head`` and ``full`` strategies goes: the ranking predicts how well each backbone
    fine-tunes, while the layer profile decides where to cut it. Features of early layers often probe
    well on any task, so their scores would rank a backbone by what fine-tuning it end to end does not
    use. The prior is the catalog's ImageNet top-1, used when at least two candidates report it. A
    score missing for a candidate is left out of that candidate's mean.
    """
    import numpy as np

    columns: dict[str, dict[str, float]] = {}
    for doc in docs:
        for metric, value in doc.get("final_scores", doc.get("best_scores", {})).items():
            if value is not None and metric in CONSENSUS_WEIGHTS:
                columns.setdefault(metric, {})[doc["model"]] = float(value)
        if doc.get("prior_top1") is not None:
            columns.setdefault("prior_top1", {})[doc["model"]] = float(doc["prior_top1"])
    z: dict[str, list[tuple[float, float]]] = {doc["model"]: [] for doc in docs}
    for metric, values in columns.items():
        if len(values) < 2:
            continue
        array = np.array(list(values.values()))
        spread = array.std() or 1.0
        for model, value in values.items():
            z[model].append(((value - array.mean()) / spread, CONSENSUS_WEIGHTS[metric]))
    return {
        model: (sum(v * w for v, w in parts) / sum(w for _, w in parts)) if parts else 0.0 for model, parts in z.items()
    }


# --- candidates ----------------------------------------------------------------------------------


def resolve_candidates(
    catalog: Catalog, models: Sequence[str | Entry] | None, query: str | None, top: int
) -> list[Entry]:
    """Catalog entries for ``models`` (ids, or entries given as they are) or the first ``top`` results of ``query``.

    ``query`` is a search command line: words and ``zooprobe search`` options, e.g.
    ``"mobilenet --max-params 10M --sort=-top1"``.
    """
    if models:
        # a repeated id would be assessed twice and ranked against itself
        unique: dict[str, str | Entry] = {}
        for model in models:
            unique.setdefault(model if isinstance(model, str) else model.id, model)
        return [model if isinstance(model, Entry) else catalog.get(model) for model in unique.values()]
    if not query:
        raise AssessError("no candidates: pass --models ID,ID,... or --query 'SEARCH FILTERS' --top K")
    return catalog.search(parse_query(query, top))


def parse_query(query: str, top: int) -> Query:
    """A :class:`Query` from a ``zooprobe search`` command line (same words and options)."""
    from ..catalog.query import QuerySyntaxError, parse_search_line

    try:
        return parse_search_line(query, top)
    except QuerySyntaxError as exc:
        raise AssessError(f"bad --query {query!r}: {exc}; use the filters of 'zooprobe search'") from None


def _entry_facts(entry: Entry) -> dict[str, Any]:
    return {
        "model": entry.id,
        "source": entry.source,
        "params": entry.params,
        "macs": (
            {"value": entry.compute.value, "unit": entry.compute.unit, "resolution": entry.compute.resolution}
            if entry.compute
            else None
        ),
        "prior_top1": entry.top1,
        "pretraining": [stage.dataset for stage in entry.pretraining],
    }


# --- the assessment ------------------------------------------------------------------------------


def assess(
    data: str | Dataset | None,
    models: Sequence[str | Entry] | None = None,
    *,
    query: str | None = None,
    top: int = 5,
    metrics: Sequence[str] | None = None,
    layers: str | Sequence[str] = "auto",
    seed: int = 0,
    folds: int = 5,
    budget: float | None = None,
    resolution: int | None = None,
    batch_size: int = 64,
    on_error: OnError = "fail",
    resume: str | None = None,
    home: Path | str | None = None,
    progress: bool = True,
    loader: Callable[[Entry], Backbone] | None = None,
    trust_remote_code: bool = False,
) -> Assessment:
    """Assess candidate backbones on a labelled dataset and recommend one, with a strategy and its evidence.

    Args:
        data: a dataset spec (``sklearn:digits``, an image folder, a CSV/Parquet manifest, ``.npz``,
            a Hugging Face ``save_to_disk`` directory) or a loaded :class:`Dataset`.
        models: catalog ids of the candidates (or :class:`Entry` records, e.g. of a model of your
            own, together with ``loader``); or ``query`` (``zooprobe search`` words and options)
            with ``top`` K results.
        metrics: names from :func:`zooprobe.metrics.names` (default: all built-in ones).
        layers: ``auto``, ``all`` or cut-point names.
        seed, folds: of the stratified cross-validation of the probe.
        budget: seconds; candidates not reached in time stay ``pending`` (resume the run later).
        resolution: score at this input resolution instead of each entry's default (faster on CPU).
        resume: a run id to continue with its stored data, candidates and options; by default an
            unfinished run with the same inputs is resumed.
        loader: how to load an entry (default: its source plugin's ``load``).
        trust_remote_code: run the candidates' repository code (``hf:`` entries only; not with
            ``loader``), each pinned to the commit it resolves. The run's config records it and each
            candidate document its ``revision``; a resumed run keeps the setting it started with.

    Returns:
        an :class:`Assessment` whose candidates are ranked best first.
    """
    import numpy as np

    from ..data.datasets import read_dataset
    from ..plugins import metric_lookup as metric_registry

    say = _Progress(progress)
    stored: Run | None = None
    if resume:  # the run's own inputs; what the caller passed may only repeat them
        with RunStore(home) as stored_runs:
            stored = stored_runs.get(resume)
        if stored.kind != "assess":
            raise AssessError(
                f"run '{resume}' is a {stored.kind} run; continue it with zooprobe {stored.kind} --resume {resume}"
            )
        stored_config = stored.config
        data = data if data is not None else stored.data
        models, query = stored_config["models"], None
        metrics, layers = stored_config["metrics"], stored_config["layers"]
        seed, folds = stored_config["seed"], stored_config["folds"]
        budget, resolution = stored_config["budget"], stored_config["resolution"]
        trust_remote_code = bool(stored_config.get("trust_remote_code", False))
    if data is None:
        raise AssessError("assess needs a dataset (or resume=RUN to continue a run)")
    dataset = read_dataset(data, on_error=on_error) if isinstance(data, str) else data
    data_spec = data if isinstance(data, str) else dataset.name
    summary = dataset.summary()
    if summary["classes"] < 2:
        raise AssessError(f"dataset '{data_spec}' has {summary['classes']} class; an assessment needs at least 2")
    available = metric_registry.registered()
    chosen = list(metrics) if metrics else [m for m in DEFAULT_METRICS if m in available]
    if not chosen:
        raise AssessError(
            "no transferability metric is registered, so there is nothing to score; if ZOOPROBE_PLUGINS is set,"
            " add 'metrics' (the built-in scores) to it"
        )
    for name in chosen:
        if name not in available:
            raise InvalidChoiceError("metric", name, list(available))
    if layers not in ("auto", "all") and isinstance(layers, str):
        layers = [name.strip() for name in layers.split(",") if name.strip()]
    if not layers:
        raise AssessError("no cut points given to score; pass layers 'auto', 'all' or names separated by commas")
    if budget is not None and not budget > 0:
        raise AssessError(f"budget {budget:g} s leaves no time to assess anything; give a positive number of seconds")
    with Catalog(home) as catalog:
        from ..plugins.sync import sync_if_empty

        sync_if_empty(catalog)
        entries = resolve_candidates(catalog, models, query, top)
    if not entries:
        raise AssessError(f"the query {query!r} matches no catalog entry; loosen it (try 'zooprobe search {query}')")
    if trust_remote_code:
        if loader is not None:
            raise AssessError(
                "trust_remote_code applies to the sources' own loaders; a custom loader decides that itself (drop one)"
            )
        from ..plugins.manager import check_remote_code

        for entry in entries:  # before the run exists: a non-hf candidate would otherwise be skipped silently
            check_remote_code(entry)
    config: dict[str, Any] = {
        "models": [e.id for e in entries],
        "query": query,
        "top": top if query else None,
        "metrics": chosen,
        "layers": layers if isinstance(layers, str) else list(layers),
        "seed": seed,
        "folds": folds,
        "budget": budget,
        "resolution": resolution,
    }
    if trust_remote_code:  # only when set: unfinished runs stored before this option still match and resume
        config["trust_remote_code"] = True
    data_hash = dataset.content_hash()
    if stored is not None and stored.data_hash and data_hash != stored.data_hash:
        raise AssessError(
            f"run '{resume}' assessed {stored.data} (content {stored.data_hash[:12]}), not these data"
            f" ({data_hash[:12]}); drop --data to continue it, or start a new run without --resume"
        )
    runs = RunStore(home)
    resumed = False
    if resume:
        run = runs.reopen(resume)
        resumed = True
    else:
        unfinished = [
            r for r in runs.list(kind="assess", data_hash=data_hash) if r.status != "done" and r.config == config
        ]
        if unfinished:
            run = runs.reopen(unfinished[0].id)
            resumed = True
        else:
            run = runs.create(
                "assess",
                data_spec,
                config,
                data_hash=data_hash,
                versions=library_versions("torch", "torchvision", "timm", "keras", "numpy", "scikit-learn"),
            )
    say.say(f"{'resuming' if resumed else 'started'} assessment {run.id} (if interrupted: --resume {run.id})")
    if resumed:
        config = run.config
        trust_remote_code = bool(config.get("trust_remote_code", False))
        entries = [e for e in entries if e.id in config["models"]]
    labels = dataset.labels
    done_scores = {(s.model, s.layer, s.metric): s for s in runs.scores(run.id)}
    existing = {doc["model"]: doc for doc in runs.candidates(run.id)}
    started = time.perf_counter()
    docs: list[dict[str, Any]] = []
    try:
        for position, entry in enumerate(entries):
            if existing.get(entry.id, {}).get("status") in ("done", "skipped"):
                docs.append(existing[entry.id])
                continue
            doc: dict[str, Any] = {
                **_entry_facts(entry),
                "status": "pending",
                "skip_reason": None,
                "input_check": check_input(_at_resolution(entry, resolution), summary),
                "data_ratio": check_data_ratio(entry, summary),
                "best_layer": None,
                "probe_accuracy": None,
                "probe_spread": None,
                "scores": {},
                "best_scores": {},
                "consensus": None,
                "rank": None,
                "layer_profile": [],
                "recommendation": None,
            }
            docs.append(doc)
            if doc["input_check"]["status"] == "incompatible":
                doc.update(status="skipped", skip_reason=doc["input_check"]["reason"])
                runs.put_candidate(run.id, entry.id, position, doc)
                say.say(f"{entry.id}: skipped ({doc['skip_reason']})")
                continue
            if budget is not None and time.perf_counter() - started > budget:
                doc["skip_reason"] = f"budget of {budget:g}s spent before this candidate; resume the run to finish it"
                runs.put_candidate(run.id, entry.id, position, doc)
                continue
            try:
                backbone = _load(entry, resolution, loader, trust_remote_code)
            except (ZooprobeError, OSError, RuntimeError, ValueError) as exc:
                doc.update(status="skipped", skip_reason=f"cannot load: {exc}".splitlines()[0])
                runs.put_candidate(run.id, entry.id, position, doc)
                say.say(f"{entry.id}: skipped ({doc['skip_reason']})")
                continue
            if trust_remote_code:
                # the commit whose code ran, for whoever reads the report
                doc.update(trust_remote_code=True, revision=backbone.entry.source_version)
            chosen_layers = select_layers(backbone.cut_points, config["layers"])
            say.say(f"{entry.id}: features at {len(chosen_layers)} cut points")
            try:
                _score_candidate(
                    backbone, dataset, labels, chosen_layers, chosen, available, config, run.id, runs, done_scores,
                    batch_size, progress, say,
                )  # fmt: skip
            except (OSError, RuntimeError, ValueError) as exc:
                if isinstance(exc, ZooprobeError):  # bad input (a class of one example...): every candidate's
                    raise
                # one model failing on these data (input too long for it, out of memory) is that model's
                # problem: the other candidates are still assessed; the scores it got so far stay stored
                doc.update(status="skipped", skip_reason=f"scoring failed: {type(exc).__name__}: {first_line(exc)}")
                runs.put_candidate(run.id, entry.id, position, doc)
                say.say(f"{entry.id}: skipped ({doc['skip_reason']})")
                continue
            _summarise_candidate(doc, backbone.cut_points, chosen_layers, runs.scores(run.id))
            doc["status"] = "done"
            runs.put_candidate(run.id, entry.id, position, doc)
        result = _finish(run.id, runs, docs, time.perf_counter() - started)
    except BaseException as exc:
        # Leave the run 'running' on an interruption (it resumes); record a real failure.
        if not isinstance(exc, KeyboardInterrupt):
            runs.finish(run.id, error=f"{type(exc).__name__}: {first_line(exc)}")
        runs.close()
        raise
    runs.close()
    del np
    return Assessment(run.id, result[0], result[1], resumed)


def _load(
    entry: Entry, resolution: int | None, loader: Callable[[Entry], Backbone] | None, trust_remote_code: bool = False
) -> Backbone:
    if loader is None:
        from ..plugins.manager import load_entry

        backbone = load_entry(entry, trust_remote_code=trust_remote_code)
    else:
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


def _score_candidate(
    backbone: Backbone,
    dataset: Dataset,
    labels: npt.NDArray[np.int64],
    layers: list[str],
    chosen: list[str],
    available: dict[str, Any],
    config: dict[str, Any],
    run_id: str,
    runs: RunStore,
    done: dict[tuple[str, str, str], Score],
    batch_size: int,
    progress: bool,
    say: _Progress,
) -> None:
    from ..backbones.features import extract_features
    from .scores import knn_accuracy, linear_probe

    model = backbone.entry.id
    feature_metrics = [m for m in chosen if available[m].input == "features"]
    probability_metrics = [m for m in chosen if available[m].input == "probabilities"]
    wanted = list(layers)
    has_head = backbone.has_source_head
    if probability_metrics and has_head and "pre_logits" not in wanted:
        wanted.append("pre_logits")
    features = extract_features(
        backbone, dataset, wanted, batch_size=batch_size, progress=progress, cache_dir=runs.home / "features"
    )

    def put(layer: str, metric: str, inputs: Any, probe: dict[str, ProbeResult]) -> None:
        if (model, layer, metric) in done:
            return
        start = time.perf_counter()
        spread: float | None = None
        extra: dict[str, Any] = {}
        if metric in PROBE_METRICS:
            if "result" not in probe:  # one probe fit serves both probe metrics
                probe["result"] = linear_probe(inputs, labels, folds=config["folds"], seed=config["seed"])
            result = probe["result"]
            balanced = metric == "probe_balanced_accuracy"
            value = result.balanced_accuracy if balanced else result.accuracy
            spread = result.balanced_accuracy_std if balanced else result.accuracy_std
            extra = {"c": result.c, "folds": result.folds}
        elif metric == "knn_accuracy":
            value = knn_accuracy(inputs, labels, seed=config["seed"])
        else:
            value = float(available[metric].function(inputs, labels))
        score = Score(model, layer, metric, value, spread, time.perf_counter() - start, extra)
        runs.put_score(run_id, score)
        done[(model, layer, metric)] = score

    for layer in layers:
        probe: dict[str, ProbeResult] = {}
        for metric in feature_metrics:
            put(layer, metric, features[layer], probe)
        say.say(f"{model}: scored {layer}")
    if probability_metrics and has_head:
        probabilities = _source_probabilities(backbone, features["pre_logits"])
        for metric in probability_metrics:
            put(LOGITS, metric, probabilities, {})


def _source_probabilities(backbone: Backbone, pre_logits: Any) -> Any:
    """The source head's class probabilities, as the backbone's adapter computes them."""
    return backbone.source_probabilities(pre_logits)


def _summarise_candidate(
    doc: dict[str, Any], cut_points: Sequence[str], layers: Sequence[str], scores: Sequence[Score]
) -> None:
    mine = [s for s in scores if s.model == doc["model"]]
    by = {(s.layer, s.metric): s for s in mine}
    last_index = max(len(cut_points) - 1, 1)
    profile = []
    for layer in layers:
        probe = by.get((layer, "probe_accuracy"))
        if probe is None or probe.value is None:
            continue
        profile.append(
            {
                "layer": layer,
                "depth": list(cut_points).index(layer) / last_index,
                "final": layer == cut_points[-1],
                "probe_accuracy": probe.value,
                "probe_spread": probe.spread or 0.0,
            }
        )
    doc["layer_profile"] = profile
    doc["knn_by_layer"] = {s.layer: s.value for s in mine if s.metric == "knn_accuracy"}
    best_scores: dict[str, float | None] = {}
    for s in mine:
        if s.value is not None and (best_scores.get(s.metric) is None or s.value > best_scores[s.metric]):  # type: ignore[operator]
            best_scores[s.metric] = s.value
    doc["best_scores"] = best_scores
    deepest = layers[-1] if layers else None
    doc["final_layer"] = deepest
    doc["final_scores"] = {s.metric: s.value for s in mine if s.layer in (deepest, LOGITS)}
    if profile:
        best = max(profile, key=_probe_accuracy)
        doc["best_layer"] = best["layer"]
        doc["probe_accuracy"] = best["probe_accuracy"]
        doc["probe_spread"] = best["probe_spread"]
        doc["scores"] = {s.metric: s.value for s in mine if s.layer in (best["layer"], LOGITS)}
    else:
        doc["best_layer"] = layers[-1] if layers else None
        doc["scores"] = {s.metric: s.value for s in mine if s.layer in (doc["best_layer"], LOGITS)}


def _finish(
    run_id: str, runs: RunStore, docs: list[dict[str, Any]], seconds: float
) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    assessed = [d for d in docs if d["status"] == "done"]
    scores = consensus(assessed)
    ranked = sorted(assessed, key=lambda d: -scores[d["model"]])
    for rank, doc in enumerate(ranked, start=1):
        doc["consensus"] = scores[doc["model"]]
        doc["rank"] = rank
        doc["recommendation"] = recommend(doc)
    ordered = ranked + [d for d in docs if d["status"] != "done"]
    for position, doc in enumerate(ordered):
        runs.put_candidate(run_id, doc["model"], position, doc)
    caveats = _caveats(ranked, docs)
    recommended = None
    if ranked and ranked[0]["recommendation"]:
        top = ranked[0]
        rec = top["recommendation"]
        recommended = {
            "model": top["model"],
            "strategy": rec["strategy"],
            "cut": rec["cut"],
            "finetune_arg": rec["finetune_arg"],
            "expected_accuracy": rec["expected_accuracy"],
            "uncertainty": rec["uncertainty"],
            "evidence": f"{top['model']} ranks first of {len(ranked)} ({_margin(ranked)}). {rec['evidence']}",
        }
    summary = {
        "ranking": [d["model"] for d in ranked],
        "recommended": recommended,
        "caveats": caveats,
        "seconds": seconds,
        "pending": [d["model"] for d in docs if d["status"] == "pending"],
        "skipped": {d["model"]: d["skip_reason"] for d in docs if d["status"] == "skipped"},
    }
    if summary["pending"]:
        runs.db.execute("UPDATE runs SET summary = ?, updated = ? WHERE id = ?", (_json(summary), time.time(), run_id))
    else:
        runs.finish(run_id, summary)
    return ordered, summary


def _json(value: Any) -> str:
    import json

    return json.dumps(value)


def _margin(ranked: Sequence[dict[str, Any]]) -> str:
    if len(ranked) < 2:
        return "the only candidate assessed"
    first, second = ranked[0], ranked[1]
    a, b = first.get("probe_accuracy"), second.get("probe_accuracy")
    if a is None or b is None:
        return f"consensus {first['consensus']:.2f} vs {second['consensus']:.2f}"
    spread = math.hypot(first.get("probe_spread") or 0.0, second.get("probe_spread") or 0.0)
    if a - b > spread:
        verdict = "a clear lead"
    elif b - a > spread:
        verdict = f"{second['model']} probes better by {b - a:.3f}; the other scores and the prior put it second"
    else:
        verdict = "within the fold-to-fold spread: treat the top two as tied"
    return f"best-layer probe {a:.3f} vs {b:.3f} for {second['model']}, {verdict}"


def _caveats(ranked: Sequence[dict[str, Any]], docs: Sequence[dict[str, Any]]) -> list[str]:
    caveats: list[str] = []
    if ranked:
        top = ranked[0]
        caveats.extend(
            f"{top['model']}: {flag}" for flag in top["data_ratio"]["flags"] if flag != "source size unknown"
        )
        caveats.extend(f"{top['model']}: input {a}" for a in top["input_check"]["adaptations"])
        pretraining = set(top.get("pretraining") or [])
        if top["input_check"]["adaptations"] and pretraining:
            caveats.append(
                f"domain mismatch likely: {top['model']} was pretrained on {', '.join(sorted(pretraining))}"
                " and the data needed adapting; confirm with 'zooprobe finetune' against --baseline scratch"
            )
    pending = [d["model"] for d in docs if d["status"] == "pending"]
    if pending:
        caveats.append(f"not assessed within the budget: {', '.join(pending)} (resume the run to finish)")
    return caveats
