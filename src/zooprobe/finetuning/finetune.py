"""Fine-tuning a pretrained backbone on a labelled dataset, arm by arm, epoch by epoch.

A run trains one strategy arm (``as-is``, ``head``, ``full`` or ``cut:LAYER[+mlp:WIDTHS][:train=new|all]``)
and optionally the ``scratch`` baseline (same architecture, random initialisation, same split and budget).

Invariants:
- Every arm sees the same stratified split, the same preprocessing and the same number of epochs.
- Frozen BatchNorm layers stay in inference mode: their running statistics never change.
- The optimizer only holds trainable parameters; ``full`` and ``cut:...:train=all`` first train the new
  head alone for one epoch (body frozen), then everything with a lower learning rate for the body.
- After each epoch the arm's checkpoint (model and optimizer, safetensors) is renamed into place under
  ``$ZOOPROBE_HOME/runs/<run id>/`` and then the epoch is recorded in the run store; learning rates are a
  pure function of the step and the data order a pure function of (seed, epoch), so a resumed run
  continues exactly where the interrupted one stopped.
- No data augmentation: a frozen body then sees each image exactly as feature extraction does, which
  is what lets ``head`` (and ``cut:...:train=new``) train on cached features.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any, Literal

from ..backbones.contract import Backbone
from ..data.datasets import OnError, read_dataset
from ..data.hygiene import OnDuplicates
from ..data.splits import counts as split_counts
from ..data.splits import fixed_split
from ..errors import InvalidChoiceError, ZooprobeError, first_line
from ..evaluator.units import ProgressLines
from ..runs.records import FinetuneSummary
from ..runs.skipped_files import record_skipped
from ..runs.store import EpochRecord, RunStore, library_versions
from .arm_units import ArmRun, ArmUnit, train_arms_on
from .arms import build_arm_model, build_scratch_model, scratch_architecture, scratch_strategy
from .batches import split_indices
from .recipes import default_lr, input_adaptations, train_settings
from .recommended import check_from_run, followed_assessment, recommended_strategy
from .strategy import SCRATCH, STRATEGY_FORMS, Strategy, StrategyError, parse_strategy
from .trainer import EpochCallback, Trainer, TrainSettings, lr_factor

__all__ = [
    "SCRATCH",
    "STRATEGY_FORMS",
    "EpochCallback",
    "FinetuneResult",
    "Strategy",
    "StrategyError",
    "TrainSettings",
    "build_arm_model",
    "build_scratch_model",
    "epochs_table_rows",
    "finetune",
    "lr_factor",
    "parse_strategy",
    "recommended_strategy",
    "split_indices",
]


@dataclass
class FinetuneResult:
    """The run id, every arm's epoch records (strategy first, then ``scratch``) and the run's summary."""

    run_id: str
    arms: dict[str, list[EpochRecord]]
    outcome: FinetuneSummary

    @property
    def summary(self) -> dict[str, Any]:
        """The summary as the run store keeps it (``arms``, ``gain_over_scratch``, ``checkpoints``, ``seconds``)."""
        return self.outcome.to_json()

    def to_dict(self) -> dict[str, Any]:
        return {
            "run_id": self.run_id,
            "arms": {arm: [r.to_row() for r in records] for arm, records in self.arms.items()},
            "summary": self.summary,
        }


def finetune(
    data: str | None = None,
    model: str | None = None,
    strategy: str = "head",
    *,
    epochs: int = 5,
    baseline: Literal["scratch"] | None = None,
    lr: float | None = None,
    batch_size: int = 32,
    seed: int = 0,
    train_size: float | None = None,
    resolution: int | None = None,
    patience: int = 3,
    resume: str | None = None,
    on_error: OnError = "fail",
    on_duplicates: OnDuplicates = "error",
    home: str | Path | None = None,
    device: str | None = None,
    progress: bool = True,
    on_epoch: EpochCallback | None = None,
    trust_remote_code: bool = False,
    trust_savedmodel: bool = False,
    executor: str | None = None,
    ray_address: str | None = None,
    from_run: str | None = None,
) -> FinetuneResult:
    """Fine-tune ``model`` on ``data`` with ``strategy`` (and the ``scratch`` baseline), recording every epoch.

    Args:
        data: a dataset spec :func:`~zooprobe.data.datasets.read_dataset` accepts, e.g. ``sklearn:digits``,
            or texts: a ``text,label`` or pair (``text_a,text_b,label``) manifest, a folder of ``.txt``.
        model: a catalog id, e.g. ``torchvision:mobilenet_v2.IMAGENET1K_V1`` or a text encoder ``hf:...``.
        strategy: ``as-is``, ``head``, ``full``, ``cut:LAYER[+mlp:WIDTHS][:train=new|all]`` or
            ``recommended``: what the largest complete assessment of this data (the one a report names)
            recommends for this model, or the assessment ``from_run`` names.
        baseline: ``"scratch"`` to also train the architecture from random initialisation.
        lr: the learning rate (the new head's; see :mod:`~zooprobe.finetuning.recipes`); default 2e-3 for
            images, for text 3e-5 when the transformer trains and 1e-2 when only a new head does.
        train_size: keep this many training examples (an int) or this fraction of them (0 < x < 1),
            per class in proportion; the validation split is unchanged.
        resolution: square input size in pixels instead of the entry's own (64 or 96 keep CPU runs short).
        on_error, on_duplicates: what :func:`~zooprobe.data.datasets.read_dataset` does with bad
            examples and with examples of the same content (``error``, ``drop``, ``keep-first``).
        patience: stop an arm after this many epochs without a lower validation loss.
        resume: a run id: continue that run from the last epoch each arm finished; other arguments but
            ``home``, ``device``, ``progress`` and ``on_epoch`` are read from the run.
        home: the zooprobe home (catalog, run store, checkpoints, feature cache).
        device: ``cuda``, ``cpu``, ... (default: CUDA when available; mixed precision there).
        on_epoch: called with (arm, record) after each epoch is recorded.
        trust_remote_code: run the repository's own code (``hf:`` entries only), pinned to the commit it
            resolves; the run's config records ``trust_remote_code`` and that ``revision``.
        trust_savedmodel: load a TF SavedModel from TF-Hub or Kaggle (its graph runs as code); recorded.
        executor: where the arms train: ``local`` (here, one after another; the default, or
            ``$ZOOPROBE_EXECUTOR``) or ``ray`` (one Ray task per arm, concurrently; the home must be on
            storage every node sees). Either may resume a run the other started.
        ray_address: the Ray cluster to join (default ``auto``: a running one, else a local one).
        from_run: with ``strategy="recommended"``, the id of the assessment (of this data) to follow.

    Returns:
        a :class:`FinetuneResult`; the run is also in ``RunStore(home)`` with kind ``finetune``.

    Example:
        >>> result = zooprobe.finetune("sklearn:digits", "torchvision:mobilenet_v2.IMAGENET1K_V1", "full",
        ...                            epochs=3, baseline="scratch", train_size=200, resolution=64)
        >>> result.outcome.gain_over_scratch
    """
    from ..executors.select import executor_name, open_executor
    from ..plugins.loading import load_by_id as load

    executor = executor_name(executor)

    with RunStore(home) as store:
        if resume is not None:
            run = store.get(resume)
            if run.kind != "finetune":
                article = "an" if run.kind[:1] in "aeiou" else "a"
                raise ZooprobeError(
                    f"run '{resume}' is {article} {run.kind} run: --resume takes a finetune run id"
                    f" (continue that one with zooprobe {run.kind} --resume {resume})"
                )
            config = run.config
            data, model, strategy = run.data, config["model"], config["strategy"]
            epochs, baseline, lr = config["epochs"], config["baseline"], config["lr"]
            batch_size, seed = config["batch_size"], config["seed"]
            train_size, resolution = config.get("train_size"), config.get("resolution")
            on_error = config.get("on_error", "fail")
            on_duplicates = config.get("on_duplicates", "error")
            patience = config.get("patience", patience)
            trust_remote_code = bool(config.get("trust_remote_code", False))
            trust_savedmodel = bool(config.get("trust_savedmodel", False))
        if data is None or model is None:
            raise ZooprobeError("finetune needs a dataset and a model id (or resume=RUN to continue a run)")
        _check_settings(epochs, patience, lr, batch_size, baseline, train_size, resolution)
        if strategy.strip() != "recommended":
            parse_strategy(strategy)  # a typo fails before the dataset and the weights load
        if resume is None:
            check_from_run(store, from_run, strategy)
        # the model (an unknown id, a cut point it lacks) before the data: reading images takes long
        try:
            where = str(home) if home is not None else None
            backbone = load(model, where, trust_remote_code=trust_remote_code, trust_savedmodel=trust_savedmodel)
        except (OSError, RuntimeError, ValueError) as exc:  # as assess reports them: weights absent offline, corrupt
            if isinstance(exc, ZooprobeError):
                raise
            raise ZooprobeError(f"cannot load '{model}': {first_line(exc)}") from None
        backbone.check_trainable()
        if resolution is not None:
            spec = replace(backbone.entry.input, default_resolution=(resolution, resolution))
            backbone.entry = replace(backbone.entry, input=spec)
        if resume is None and strategy.strip() != "recommended":
            _parsed_arm(backbone, strategy)
        dataset = read_dataset(data, on_error=on_error, on_duplicates=on_duplicates)
        if dataset.modality != backbone.entry.modality:
            raise ZooprobeError(
                f"dataset '{data}' holds {dataset.modality} but '{model}' is an {backbone.entry.modality} model:"
                f" pick a {dataset.modality} model (zooprobe search --modality {dataset.modality})"
            )
        data_hash = dataset.content_hash()
        assess_run = None
        arm = strategy
        if resume is None and strategy.strip() == "recommended":
            followed = followed_assessment(store, data_hash, model, from_run)
            arm, assess_run = followed.finetune_arg, followed.run_id
            if progress:
                print(followed.line(), file=sys.stderr)
        elif resume is not None:
            arm = run.config["arms"][0]
            assess_run = run.config.get("assess_run")
        parsed = _parsed_arm(backbone, arm)
        if lr is None:
            lr = default_lr(dataset.modality, parsed)
        train_idx, val_idx = split_indices(dataset, seed, train_size)
        arms = [arm] + ([SCRATCH] if baseline == "scratch" else [])
        # scratch: the architecture the adapter re-initialises, a cut run's own cut or the whole model
        architecture = (
            scratch_architecture(backbone, parsed) if resume is None else run.config.get("scratch_architecture")
        )
        scratch = ArmUnit(SCRATCH, scratch_strategy(parsed, architecture))
        plan = [ArmUnit(arm, parsed)] + ([scratch] if baseline == "scratch" else [])
        pool = None if executor == "local" else open_executor(executor, ray_address)  # before the run: Ray missing
        if resume is None:
            config = {
                "model": model,
                "strategy": strategy,
                "arms": arms,
                "epochs": epochs,
                "baseline": baseline,
                "lr": lr,
                "batch_size": batch_size,
                "seed": seed,
                "assess_run": assess_run,
                "train_examples": len(train_idx),
                "val_examples": len(val_idx),
                "train_size": train_size,
                "resolution": resolution,
                "on_error": on_error,
                "on_duplicates": on_duplicates,
                "patience": patience,
                "parsed_strategy": asdict(parsed),  # what the arm trains, for whoever reads the run
                **input_adaptations(backbone, dataset, train_idx, val_idx),
            }
            if baseline == "scratch":  # what scratch is: the strategy's cut architecture, or the whole model
                config["scratch_architecture"] = architecture
            if trust_remote_code:  # the commit whose code ran, for whoever reads the report
                config.update(trust_remote_code=True, revision=backbone.entry.source_version)
            if trust_savedmodel:
                config["trust_savedmodel"] = True
            record_skipped(config, dataset.skipped)  # listed in the run's reports
            given = fixed_split(dataset)
            if given is not None:  # trained on 'train', validated on this split, as the data define them
                config.update(splits=split_counts(dataset), validated_on=given[2])
            versions = library_versions(
                "torch", "torchvision", "timm", "safetensors", "tensorflow", "tensorflow-cpu", "keras", "transformers"
            )
            run = store.create("finetune", data, config, data_hash=data_hash, versions=versions)
        else:
            if run.data_hash != data_hash:
                raise ZooprobeError(
                    f"dataset '{data}' changed since run '{run.id}' started (content hash differs): "
                    "restore it or start a new run"
                )
            run = store.reopen(run.id)
        if progress:
            print(f"finetune run {run.id} (if interrupted: zooprobe finetune --resume {run.id})", file=sys.stderr)
        settings = train_settings(
            dataset.modality, epochs=epochs, lr=lr, batch_size=batch_size, seed=seed, patience=patience
        )
        trainer = Trainer(
            store=store,
            run_id=run.id,
            run_dir=store.home / "runs" / run.id,
            backbone=backbone,
            dataset=dataset,
            train_idx=train_idx,
            val_idx=val_idx,
            settings=settings,
            device=device,
            progress=progress,
            on_epoch=on_epoch,
        )
        try:
            if pool is None:
                outcomes = {unit.arm: trainer.run_arm(unit.arm, unit.strategy) for unit in plan}
            else:
                shared = ArmRun(
                    run.id, str(store.home.resolve()), model, ArmRun.data_spec(data), data_hash, on_error,
                    on_duplicates, trust_remote_code, trust_savedmodel, resolution, train_size, settings, device,
                )  # fmt: skip
                say = ProgressLines(progress).say
                outcomes = train_arms_on(pool, store, shared, plan, on_epoch, say, progress=progress)
        except Exception as exc:
            store.finish(run.id, error=f"{type(exc).__name__}: {exc}")
            raise
        finally:
            if pool is not None:
                pool.close()
        summary = FinetuneSummary.of(outcomes, arm)
        store.finish(run.id, summary)
        return FinetuneResult(run.id, {name: store.epochs(run.id, name) for name in arms}, summary)


def _parsed_arm(backbone: Backbone, arm: str) -> Strategy:
    """``arm`` parsed against this backbone: a cut point it lacks is refused before any data are read."""
    parsed = parse_strategy(arm)
    if parsed.kind != "cut":  # the layer the model's own head reads, as its adapter says
        parsed = replace(parsed, layer=backbone.head_layer(parsed.kind))
    backbone.check_cut_points([parsed.layer])
    return parsed


def _check_settings(
    epochs: int,
    patience: int,
    lr: float | None,
    batch_size: int,
    baseline: str | None,
    train_size: float | None,
    resolution: int | None,
) -> None:
    if epochs < 1:
        raise ZooprobeError(f"epochs {epochs} must be at least 1, e.g. --epochs 3")
    if patience < 1:
        raise ZooprobeError(f"patience {patience} must be at least 1 epoch, e.g. 3")
    if lr is not None and not lr > 0:
        raise ZooprobeError(f"learning rate {lr} must be positive, e.g. --lr 1e-3")
    if batch_size < 1:
        raise ZooprobeError(f"batch size {batch_size} must be at least 1, e.g. --batch-size 32")
    if baseline not in (None, "scratch"):
        raise InvalidChoiceError("baseline", str(baseline), ["scratch"])
    if train_size is not None and not (0 < train_size < 1 or (train_size >= 1 and float(train_size).is_integer())):
        raise ZooprobeError(
            f"train size {train_size} must be a count of examples (e.g. 200) or a fraction between 0 and 1 (e.g. 0.1)"
        )
    if resolution is not None and resolution < 8:
        raise ZooprobeError(f"resolution {resolution} px is too small: use at least 8, e.g. --resolution 64")


def epochs_table_rows(records: Sequence[EpochRecord]) -> list[list[str]]:
    """Cells of the per-epoch table: epoch, train loss, validation loss, accuracy, balanced accuracy, time,
    then F1 (of label 1) where the records keep it (binary tasks)."""
    with_f1 = any(r.val_f1 is not None for r in records)

    def number(value: float | None, digits: int = 4) -> str:
        return "-" if value is None else f"{value:.{digits}f}"

    return [
        [
            str(r.epoch),
            number(r.train_loss),
            number(r.val_loss),
            number(r.val_accuracy),
            number(r.val_balanced_accuracy),
            "-" if r.seconds is None else f"{r.seconds:.1f}s",
            *([number(r.val_f1)] if with_f1 else []),
        ]
        for r in records
    ]
