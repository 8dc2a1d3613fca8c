"""Transferability assessment: which backbone to start from and how much of it to keep, before training.

For each candidate, three checks of when transfer makes sense, then scores:

1. same input type: modality, channels, resolution (or text length) against the entry's input spec;
2. data ratio: pretraining examples against the target's size and its smallest class;
3. feature similarity: a linear probe, kNN and training-free scores (LogME, H-score; NCE and LEEP
   through the source head) at the backbone's cut points, layer by layer; the probe, the costly one,
   by successive halving at the cut points the others leave open (:mod:`.screen`).

The decision reads the layer profile: where probe accuracy peaks, or stops improving within the
fold-to-fold spread, is where the source's features stop serving the target. Rules (documented in
:func:`~zooprobe.evaluator.decision.recommend`) turn profile and data size into one of four
strategies with its evidence.

This module is the pipeline; the checks are in :mod:`.checks`, the candidates in :mod:`.candidates`,
scoring through the metric door in :mod:`.scoring`, and the decision and ranking in :mod:`.decision`.
Runs are recorded in the run store as they progress (every score as soon as it is known), so an
interrupted assessment resumes where it stopped; features come from the on-disk cache.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..catalog.schema import Entry
from ..catalog.store import Catalog
from ..errors import InvalidChoiceError, ZooprobeError, first_line
from ..executors.base import Job
from ..executors.select import executor_name, open_executor
from ..runs.records import AssessSummary, CandidateResult
from ..runs.skipped_files import record_skipped
from ..runs.store import Run, RunStore, library_versions
from .assessment import Assessment
from .candidate import _at_resolution, _reason, assess_candidate
from .candidates import entry_facts, resolve_candidates
from .caveats import caveats
from .checks import AssessError, check_data_ratio, check_input, name_pair_features
from .decision import MetricRoles, rank
from .raw_baseline import run_baseline
from .score_inputs import scoring_threads
from .scoring import summarise_candidate
from .sharded import shard_extraction, shard_threshold
from .units import CandidateOutcome, CandidateSkipped, CandidateTask, ProgressLines, SharedData

if TYPE_CHECKING:
    from ..backbones.backbone import Backbone
    from ..data.datasets import Dataset, OnError
    from ..data.hygiene import OnDuplicates

__all__ = ["AssessError", "Assessment", "assess", "resolve_candidates"]


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
    on_duplicates: OnDuplicates = "error",
    resume: str | None = None,
    home: Path | str | None = None,
    progress: bool = True,
    loader: Callable[[Entry], Backbone] | None = None,
    trust_remote_code: bool = False,
    trust_savedmodel: bool = False,
    executor: str | None = None,
    ray_address: str | None = None,
    cache_dir: Path | str | None = None,
    device: str | None = None,
) -> Assessment:
    """Assess candidate backbones on a labelled dataset and recommend one, with a strategy and its evidence.

    Args:
        data: a dataset spec (``sklearn:digits``, an image folder, a CSV/Parquet manifest, ``.npz``,
            a Hugging Face ``save_to_disk`` directory) or a loaded :class:`Dataset`. Data with given
            splits (a ``split`` column, a ``DatasetDict``) are scored on their ``train`` part only
            (:mod:`zooprobe.data.splits`); sentence pairs are read as
            :func:`~zooprobe.backbones.text_features.pair_features` says.
        models: catalog ids of the candidates (or :class:`Entry` records, e.g. of a model of your
            own, together with ``loader``); or ``query`` (``zooprobe search`` words and options)
            with ``top`` K results.
        metrics: names from :func:`zooprobe.metrics.names` (default: all built-in ones).
        layers: ``auto``, ``all`` or cut-point names.
        seed, folds: of the stratified cross-validation of the probe.
        budget: seconds; candidates not reached in time stay ``pending`` (resume the run later).
        resolution: score at this input resolution instead of each entry's default (faster on CPU).
        on_error, on_duplicates: what :func:`~zooprobe.data.datasets.read_dataset` does with bad
            examples and with examples of the same content (``error``, ``drop``, ``keep-first``).
        resume: a run id to continue with its stored data, candidates and options; by default an
            unfinished run with the same inputs is resumed.
        loader: how to load an entry (default: its source plugin's ``load``).
        trust_remote_code: run the candidates' repository code (``hf:`` entries only; not with
            ``loader``), each pinned to the commit it resolves. The run's config records it and each
            candidate document its ``revision``; a resumed run keeps the setting it started with.
        trust_savedmodel: load TF SavedModels from TF-Hub and Kaggle, whose graphs run as code (file ops
            included); without it (or the source in ``$ZOOPROBE_TRUST_SAVEDMODEL``) such a candidate is
            skipped with the reason. Recorded in the run's config; a resumed run keeps it.
        executor: where candidates run: ``local`` (this process, one after another; the default, or
            ``$ZOOPROBE_EXECUTOR``) or ``ray`` (one Ray task per candidate; ``pip install 'zooprobe[ray]'``).
            Either may resume a run the other started. On Ray, image data of at least
            ``$ZOOPROBE_SHARD_IMAGES`` examples (default 20,000) have each candidate's extraction sharded
            over the cluster with Ray Data (:mod:`zooprobe.evaluator.sharded`).
        ray_address: the Ray cluster to join (default ``auto``: a running one, else a local one started
            for this run).
        cache_dir: where extracted features are cached (default: ``features`` under the home); on a
            cluster, storage every node can see.
        device: where extraction, the probe and LogME run: ``cpu``, ``cuda``, ``cuda:N`` or ``mps``
            (default ``$ZOOPROBE_DEVICE``, else the best present). On CUDA the probe's fits and
            LogME's eigendecomposition run in torch there, agreeing with the CPU's within 1e-4.

    Returns:
        an :class:`Assessment` whose candidates are ranked best first.
    """
    from ..data.datasets import read_dataset
    from ..data.hygiene import content_groups
    from ..data.splits import counts as split_counts
    from ..data.splits import training_part
    from ..plugins import metric_lookup as metric_registry

    say = ProgressLines(progress)
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
        trust_savedmodel = bool(stored_config.get("trust_savedmodel", False))
    if data is None:
        raise AssessError("assess needs a dataset (or resume=RUN to continue a run)")
    if device is not None:  # a name that is no device, or one not present here, before any work
        from ..backbones.backbone import pick_device

        pick_device(device)
    available = metric_registry.registered()
    chosen = list(metrics) if metrics else metric_registry.defaults()
    if not chosen:
        raise AssessError(
            "no transferability metric is registered, so there is nothing to score; if ZOOPROBE_PLUGINS is set,"
            " add 'metrics' (the built-in scores) to it"
        )
    for name in chosen:
        if name not in available:
            raise InvalidChoiceError("metric", name, list(available))
    roles = MetricRoles.of(available[name] for name in chosen)
    if layers not in ("auto", "all") and isinstance(layers, str):
        layers = [name.strip() for name in layers.split(",") if name.strip()]
    if not layers:
        raise AssessError("no cut points given to score; pass layers 'auto', 'all' or names separated by commas")
    if budget is not None and not budget > 0:
        raise AssessError(f"budget {budget:g} s leaves no time to assess anything; give a positive number of seconds")
    executor = executor_name(executor)
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
    # read once every option and candidate is checked: reading images takes long, and a typo should cost no wait
    dataset = read_dataset(data, on_error=on_error, on_duplicates=on_duplicates) if isinstance(data, str) else data
    data_spec = data if isinstance(data, str) else dataset.name
    # the run is keyed by all the data (finetune finds it so); given splits are scored on 'train' only
    data_hash = dataset.content_hash()
    given_splits = split_counts(dataset)
    dropped = dataset.skipped  # the files read_dataset left out, listed in the run's reports
    dataset = training_part(dataset)
    summary = dataset.summary()
    if summary["classes"] < 2:
        raise AssessError(f"dataset '{data_spec}' has {summary['classes']} class; an assessment needs at least 2")
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
    if trust_savedmodel:  # likewise
        config["trust_savedmodel"] = True
    record_skipped(config, dropped)
    if given_splits is not None:  # the data's own splits, of which 'train' is scored
        config["splits"] = given_splits
    if stored is not None and stored.data_hash and data_hash != stored.data_hash:
        raise AssessError(
            f"run '{resume}' assessed {stored.data} (content {stored.data_hash[:12]}), not these data"
            f" ({data_hash[:12]}); drop --data to continue it, or start a new run without --resume"
        )
    pool = open_executor(executor, ray_address)
    runs = RunStore(home)
    features_dir = Path(cache_dir) if cache_dir is not None else runs.home / "features"
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
    state = "resuming" if resumed else "started"
    say.say(f"{state} assessment {run.id} (if interrupted: zooprobe assess --resume {run.id})")
    if resumed:
        config = run.config
        trust_remote_code = bool(config.get("trust_remote_code", False))
        trust_savedmodel = bool(config.get("trust_savedmodel", False))
        entries = [e for e in entries if e.id in config["models"]]
    # copies of one content (a dataset built in Python) stay in one fold and out of each other's neighbours
    groups = content_groups(dataset)
    done_scores = {(s.model, s.layer, s.metric) for s in runs.scores(run.id)}
    existing = {result.model: result.to_json() for result in runs.candidates(run.id)}
    started = time.perf_counter()
    docs: list[dict[str, Any]] = []
    try:
        todo: dict[int, tuple[Entry, dict[str, Any]]] = {}
        for position, entry in enumerate(entries):
            if existing.get(entry.id, {}).get("status") in ("done", "skipped"):
                docs.append(existing[entry.id])
                continue
            doc: dict[str, Any] = {
                **entry_facts(entry),
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
                runs.put_candidate(run.id, position, CandidateResult.from_json(doc))
                say.say(f"{entry.id}: skipped ({doc['skip_reason']})")
                continue
            todo[position] = (entry, doc)
        local = pool.name == "local"
        shard = not local and dataset.modality == "image" and len(dataset) >= shard_threshold()

        def units() -> Iterator[CandidateTask]:
            for position, (entry, doc) in todo.items():
                if budget is not None and time.perf_counter() - started > budget:
                    spent = f"budget of {budget:g}s spent before this candidate"
                    doc["skip_reason"] = f"{spent}; resume the run to finish it"
                    runs.put_candidate(run.id, position, CandidateResult.from_json(doc))
                    continue
                done = frozenset((layer, metric) for model, layer, metric in done_scores if model == entry.id)
                task = CandidateTask(
                    position, entry, loader, resolution, trust_remote_code, config["layers"],
                    {name: available[name] for name in chosen}, seed=config["seed"], folds=config["folds"],
                    batch_size=batch_size, cache_dir=features_dir, done=done,
                    say_from=say.started if progress and local else None,
                    record=(lambda score: runs.put_score(run.id, score)) if local else None,
                    trust_savedmodel=trust_savedmodel,
                    device=device,
                )  # fmt: skip
                if shard:  # its extraction over the whole cluster first; its unit then reads the cache
                    shard_extraction(task, shared, len(dataset), say)
                yield task

        def finished(task: CandidateTask, outcome: CandidateOutcome) -> None:
            doc = todo[task.position][1]
            for score in outcome.scores if task.record is None else ():  # a worker's: only the driver writes
                runs.put_score(run.id, score)
            if outcome.revision is not None:  # the commit whose code ran, for whoever reads the report
                doc.update(trust_remote_code=True, revision=outcome.revision)
            summarise_candidate(doc, outcome.cut_points, outcome.layers, runs.scores(run.id), roles)
            doc["status"] = "done"
            if outcome.pair_features is not None:  # how the backbone read sentence pairs, named in the check
                name_pair_features(doc["input_check"], outcome.pair_features, doc)
            runs.put_candidate(run.id, task.position, CandidateResult.from_json(doc))
            if not local:
                say.say(f"{outcome.model}: scored {len(outcome.layers)} cut points")

        def failed(task: CandidateTask, exc: Exception) -> None:
            if isinstance(exc, ZooprobeError):  # bad input (a class of one example...): every candidate's
                raise exc
            # one model failing on these data (input too long for it, out of memory) is that model's
            # problem: the other candidates are still assessed; the scores it got so far stay stored
            reason = exc.reason if isinstance(exc, CandidateSkipped) else f"its worker failed: {_reason(exc)}"
            doc = todo[task.position][1]
            doc.update(status="skipped", skip_reason=reason)
            runs.put_candidate(run.id, task.position, CandidateResult.from_json(doc))
            say.say(f"{task.entry.id}: skipped ({reason})")

        shared = pool.share(SharedData.of(data, dataset, groups, on_error, on_duplicates, remote=not local))
        pool.run(Job(assess_candidate, units(), shared, finished, failed, None if local else say.say))
        # what pretrained features must beat, once per run; nothing to compare when no candidate was scored
        scored = any(doc["status"] == "done" for doc in docs)
        probe = available[roles.probe] if roles.probe and scored else None
        options = {"seed": config["seed"], "folds": config["folds"], "groups": groups, "threads": scoring_threads()}
        stored_scores = {(s.model, s.layer, s.metric): s for s in runs.scores(run.id)}
        baseline = run_baseline(
            dataset, dataset.labels, probe, options, stored_scores, lambda s: runs.put_score(run.id, s)
        )
        result = _finish(run.id, runs, docs, roles, time.perf_counter() - started, baseline)
    except BaseException as exc:
        # Leave the run 'running' on an interruption (it resumes); record a real failure.
        if not isinstance(exc, KeyboardInterrupt):
            runs.finish(run.id, error=f"{type(exc).__name__}: {first_line(exc)}")
        runs.close()
        pool.close()
        raise
    runs.close()
    pool.close()
    return Assessment(run.id, result[0], result[1], resumed)


def _finish(
    run_id: str,
    runs: RunStore,
    docs: list[dict[str, Any]],
    roles: MetricRoles,
    seconds: float,
    baseline: dict[str, Any] | None,
) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    ranked, recommended = rank(docs, roles, baseline)
    ordered = ranked + [d for d in docs if d["status"] != "done"]
    for position, doc in enumerate(ordered):
        runs.put_candidate(run_id, position, CandidateResult.from_json(doc))
    summary = {
        "ranking": [d["model"] for d in ranked],
        "recommended": recommended,
        "caveats": caveats(ranked, docs, baseline),
        "baseline": baseline,
        "seconds": seconds,
        "pending": [d["model"] for d in docs if d["status"] == "pending"],
        "skipped": {d["model"]: d["skip_reason"] for d in docs if d["status"] == "skipped"},
    }
    if summary["pending"]:
        runs.put_summary(run_id, AssessSummary.from_json(summary))
    else:
        runs.finish(run_id, AssessSummary.from_json(summary))
    return ordered, summary
