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

import copy
import json
import math
import os
import re
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from ..backbones.backbone import PRE_LOGITS, Backbone
from ..data.datasets import Dataset, OnError, read_dataset, stratified_split
from ..data.hygiene import OnDuplicates
from ..errors import InvalidChoiceError, ZooprobeError, first_line
from ..runs.records import ArmResult, FinetuneSummary
from ..runs.store import EpochRecord, RunStore, library_versions

if TYPE_CHECKING:
    import numpy as np
    import numpy.typing as npt
    import torch

STRATEGY_FORMS = ("as-is", "head", "full", "cut:LAYER[+mlp:WIDTHS][:train=new|all]", "recommended")
SCRATCH = "scratch"
VAL_FRACTION = 0.2
IN_MEMORY_LIMIT_BYTES = 1 << 30


class StrategyError(ZooprobeError):
    """A strategy string that does not parse."""


@dataclass(frozen=True)
class Strategy:
    """A parsed strategy: what is kept of the backbone, what is added, what trains.

    ``layer`` is the cut point the new head reads (``pre_logits`` for ``head`` and ``full``); ``mlp``
    the hidden widths of the new head; ``train`` whether only new layers train or all of them.
    """

    kind: Literal["as-is", "head", "full", "cut"]
    layer: str = PRE_LOGITS
    mlp: tuple[int, ...] = ()
    train: Literal["new", "all"] = "new"

    @property
    def trains_body(self) -> bool:
        return self.train == "all"


def parse_strategy(text: str) -> Strategy:
    """Parse ``as-is``, ``head``, ``full`` or ``cut:LAYER[+mlp:W1,W2][:train=new|all]``.

    :raises StrategyError: naming the accepted forms when ``text`` does not parse.
    """
    text = text.strip()
    if text == "as-is":
        return Strategy("as-is")
    if text == "head":
        return Strategy("head")
    if text == "full":
        return Strategy("full", train="all")
    if not text.startswith("cut:"):
        raise InvalidChoiceError("strategy", text, STRATEGY_FORMS)
    rest = text[len("cut:") :]
    train: Literal["new", "all"] = "new"
    match = re.fullmatch(r"(.*):train=(\w+)", rest)
    if match:
        rest, train_text = match.groups()
        if train_text not in ("new", "all"):
            raise StrategyError(f"strategy '{text}': train={train_text} is not one of new, all (e.g. ':train=new')")
        train = "new" if train_text == "new" else "all"
    layer, _, mlp_text = rest.partition("+mlp:")
    if not layer or ":" in layer or "+" in layer:
        raise StrategyError(
            f"strategy '{text}' does not parse: write cut:LAYER[+mlp:WIDTHS][:train=new|all], "
            "e.g. cut:features.13+mlp:256:train=new"
        )
    widths: tuple[int, ...] = ()
    if "+mlp:" in rest:
        try:
            widths = tuple(int(w) for w in mlp_text.split(","))
        except ValueError:
            widths = ()
        if not widths or min(widths) < 1:
            raise StrategyError(
                f"strategy '{text}': mlp widths '{mlp_text}' must be positive integers separated by commas, "
                "e.g. +mlp:256 or +mlp:512,128"
            )
    return Strategy("cut", layer=layer, mlp=widths, train=train)


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


@dataclass(frozen=True)
class TrainSettings:
    """Optimisation settings shared by every arm of a run."""

    epochs: int = 5
    lr: float = 2e-3
    batch_size: int = 32
    seed: int = 0
    weight_decay: float = 1e-4
    body_lr_factor: float = 0.1
    head_warmup_epochs: int = 1
    warmup_fraction: float = 0.1
    patience: int = 3
    # Keras's fine-tuning recipe: pretrained BatchNorm keeps its running statistics even while its
    # weights train, because a few small batches of new data would replace them with noisy estimates.
    keep_bn_statistics: bool = True


EpochCallback = Callable[[str, EpochRecord], None]


def finetune(
    data: str | None = None,
    model: str | None = None,
    strategy: str = "head",
    *,
    epochs: int = 5,
    baseline: Literal["scratch"] | None = None,
    lr: float = 2e-3,
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
) -> FinetuneResult:
    """Fine-tune ``model`` on ``data`` with ``strategy`` (and the ``scratch`` baseline), recording every epoch.

    Args:
        data: a dataset spec :func:`~zooprobe.data.datasets.read_dataset` accepts, e.g. ``sklearn:digits``.
        model: a catalog id, e.g. ``torchvision:mobilenet_v2.IMAGENET1K_V1``.
        strategy: ``as-is``, ``head``, ``full``, ``cut:LAYER[+mlp:WIDTHS][:train=new|all]`` or
            ``recommended`` (the latest assessment's recommendation for this data and model).
        baseline: ``"scratch"`` to also train the architecture from random initialisation.
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

    Returns:
        a :class:`FinetuneResult`; the run is also in ``RunStore(home)`` with kind ``finetune``.

    Example:
        >>> result = zooprobe.finetune("sklearn:digits", "torchvision:mobilenet_v2.IMAGENET1K_V1", "full",
        ...                            epochs=3, baseline="scratch", train_size=200, resolution=64)
        >>> result.outcome.gain_over_scratch
    """
    from ..backbones.tf_backbone import TFBackbone
    from ..plugins.loading import load_by_id as load

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
        if data is None or model is None:
            raise ZooprobeError("finetune needs a dataset and a model id (or resume=RUN to continue a run)")
        _check_settings(epochs, patience, lr, batch_size, baseline, train_size, resolution)
        if strategy.strip() != "recommended":
            parse_strategy(strategy)  # a typo fails before the dataset and the weights load
        # the model (an unknown id, a cut point it lacks) before the data: reading images takes long
        try:
            backbone = load(model, str(home) if home is not None else None, trust_remote_code=trust_remote_code)
        except (OSError, RuntimeError, ValueError) as exc:  # as assess reports them: weights absent offline, corrupt
            if isinstance(exc, ZooprobeError):
                raise
            raise ZooprobeError(f"cannot load '{model}': {first_line(exc)}") from None
        _check_trainable_here(backbone)
        if resolution is not None:
            spec = replace(backbone.entry.input, default_resolution=(resolution, resolution))
            backbone = replace(backbone, entry=replace(backbone.entry, input=spec))
        if resume is None and strategy.strip() != "recommended":
            _parsed_arm(backbone, model, strategy)
        dataset = read_dataset(data, on_error=on_error, on_duplicates=on_duplicates)
        if dataset.modality != "image":
            raise ZooprobeError(f"dataset '{data}' holds {dataset.modality}; fine-tuning needs an image dataset")
        data_hash = dataset.content_hash()
        assess_run = None
        arm = strategy
        if resume is None and strategy.strip() == "recommended":
            arm, assess_run = recommended_strategy(store, data_hash, model)
        elif resume is not None:
            arm = run.config["arms"][0]
            assess_run = run.config.get("assess_run")
        parsed = _parsed_arm(backbone, model, arm)
        train_idx, val_idx = split_indices(dataset, seed, train_size)
        arms = [arm] + ([SCRATCH] if baseline == "scratch" else [])
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
            }
            if trust_remote_code:  # the commit whose code ran, for whoever reads the report
                config.update(trust_remote_code=True, revision=backbone.entry.source_version)
            versions = library_versions(
                "torch", "torchvision", "timm", "safetensors", "tensorflow", "tensorflow-cpu", "keras"
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
        settings = TrainSettings(epochs=epochs, lr=lr, batch_size=batch_size, seed=seed, patience=patience)
        trainer = _Trainer(
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
            outcomes = {arm: trainer.run_arm(arm, parsed)}
            if baseline == "scratch":
                # the whole architecture: up to the classifier, or for a TF model the output its arm reads
                scratch_layer = parsed.layer if isinstance(backbone, TFBackbone) else PRE_LOGITS
                outcomes[SCRATCH] = trainer.run_arm(SCRATCH, Strategy("full", layer=scratch_layer, train="all"))
        except Exception as exc:
            store.finish(run.id, error=f"{type(exc).__name__}: {exc}")
            raise
        summary = FinetuneSummary.of(outcomes, arm)
        store.finish(run.id, summary)
        return FinetuneResult(run.id, {name: store.epochs(run.id, name) for name in arms}, summary)


def _parsed_arm(backbone: Backbone, model: str, arm: str) -> Strategy:
    """``arm`` parsed against this backbone.

    :raises ZooprobeError: for a cut point it lacks, or ``head``/``as-is`` on a model without a classifier.
    """
    parsed = body_output_strategy(backbone, parse_strategy(arm))
    if parsed.kind == "cut" or parsed.layer != PRE_LOGITS:
        backbone.check_cut_points([parsed.layer])
    if backbone.classifier is None and parsed.layer == PRE_LOGITS:
        raise ZooprobeError(
            f"'{model}' has no classifier layer to replace: use cut:LAYER with one of {', '.join(backbone.cut_points)}"
        )
    return parsed


def recommended_strategy(store: RunStore, data_hash: str, model: str) -> tuple[str, str]:
    """(finetune_arg, assess run id) of the latest finished assessment of ``model`` on this data.

    :raises ZooprobeError: when no assessment of this data recommends a strategy for ``model``.
    """
    for run in store.list(kind="assess", data_hash=data_hash):
        if run.status != "done":
            continue
        for result in store.candidates(run.id):
            recommendation = result.recommendation if result.model == model else None
            if recommendation and recommendation.finetune_arg:
                return recommendation.finetune_arg, run.id
    raise ZooprobeError(
        f"no finished assessment of this dataset recommends a strategy for '{model}': run "
        f"'zooprobe assess --data DATA --models {model}' first, or pass --strategy head, full or cut:LAYER"
    )


def _check_settings(
    epochs: int,
    patience: int,
    lr: float,
    batch_size: int,
    baseline: str | None,
    train_size: float | None,
    resolution: int | None,
) -> None:
    if epochs < 1:
        raise ZooprobeError(f"epochs {epochs} must be at least 1, e.g. --epochs 3")
    if patience < 1:
        raise ZooprobeError(f"patience {patience} must be at least 1 epoch, e.g. 3")
    if not lr > 0:
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


def _check_trainable_here(backbone: Backbone) -> None:
    """Of the channels-last backbones, TF2 SavedModels train (see ``tf_finetune``); say first when one cannot.

    :raises ZooprobeError: for a saved ``.keras`` file or a TF1 hub module (callable only by signature).
    """
    from ..backbones.tf_backbone import TFBackbone

    if not isinstance(backbone, TFBackbone):
        return
    if backbone.restore is None:
        raise ZooprobeError(
            f"fine-tuning saved .keras files ('{backbone.entry.id}') is not supported yet; assess it with"
            " zooprobe assess, or fine-tune a Keras Applications, TF-Hub TF2, torchvision, timm or Hugging Face"
            " backbone"
        )
    if not callable(backbone.model):
        raise ZooprobeError(
            f"'{backbone.entry.id}' is a TF1 hub module (callable only through its signatures), which cannot be"
            " fine-tuned; assess it with zooprobe assess, or pick the model's TF2 SavedModel version"
        )


def body_output_strategy(backbone: Backbone, strategy: Strategy) -> Strategy:
    """``strategy`` with its layer set to the body's output where ``pre_logits`` does not name one.

    A TF-Hub feature-vector model has no classifier: its one output is the pre-logits features, so
    ``as-is``, ``head`` and ``full`` read that output. With several outputs the user picks one with ``cut:``.

    :raises ZooprobeError: for a model with several outputs and a strategy that does not name one.
    """
    from ..backbones.tf_backbone import TFBackbone

    if not isinstance(backbone, TFBackbone) or strategy.kind == "cut":
        return strategy
    if len(backbone.cut_points) != 1:
        raise ZooprobeError(
            f"'{backbone.entry.id}' has several outputs ({', '.join(backbone.cut_points)}): name the one a new head"
            f" reads with cut:OUTPUT, e.g. --strategy cut:{backbone.cut_points[0]}"
            f"{':train=all' if strategy.kind == 'full' else ''}"
        )
    return replace(strategy, layer=backbone.cut_points[0])


def split_indices(
    dataset: Dataset, seed: int, train_size: float | None = None
) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int64]]:
    """The (train, val) indices every arm of a run uses: a stratified 80/20 split, then about ``train_size``
    of the training part (a count, or a fraction < 1), each class in proportion."""
    import numpy as np

    train_idx, val_idx = stratified_split(dataset, VAL_FRACTION, seed)
    if train_size is None:
        return train_idx, val_idx
    if train_size > len(train_idx):
        raise ZooprobeError(
            f"train size {train_size:g} is more than the {len(train_idx):,} training examples of '{dataset.name}'"
            f" ({len(dataset.labels):,} less the validation split); pass at most {len(train_idx)}, or a fraction"
            " such as 0.5"
        )
    fraction = train_size if train_size < 1 else min(1.0, train_size / len(train_idx))
    rng = np.random.default_rng(seed)
    kept = []
    for label in range(len(dataset.classes)):
        members = train_idx[dataset.labels[train_idx] == label]
        if len(members):
            kept.append(rng.permutation(members)[: max(1, round(len(members) * fraction))])
    return np.sort(np.concatenate(kept)).astype(np.int64), val_idx


# --- models -----------------------------------------------------------------------------------------


def module_name(model: torch.nn.Module, module: torch.nn.Module) -> str:
    for name, candidate in model.named_modules():
        if candidate is module:
            return str(name)
    raise ValueError("module is not part of the model")


def build_arm_model(
    backbone: Backbone, strategy: Strategy, num_classes: int, resolution: tuple[int, int]
) -> tuple[torch.nn.Module, torch.nn.Module]:
    """(model, new head): a copy of the backbone with every cut point after ``strategy.layer`` removed
    (replaced by identities, so pooling and flattening in the model's forward still apply) and the
    classifier replaced by a new head (a linear layer, or an MLP of ``strategy.mlp`` widths)."""
    import torch

    def make_head(width: int) -> torch.nn.Module:
        layers: list[torch.nn.Module] = []
        for hidden in strategy.mlp:
            layers += [torch.nn.Linear(width, hidden), torch.nn.ReLU()]
            width = hidden
        layers.append(torch.nn.Linear(width, num_classes))
        return layers[0] if len(layers) == 1 else torch.nn.Sequential(*layers)

    foreign = foreign_arm_model(backbone, strategy.layer, resolution, make_head, pretrained=True)
    if foreign is not None:
        return foreign
    model = copy.deepcopy(backbone.model)
    if strategy.layer != PRE_LOGITS:
        after = backbone.cut_points.index(strategy.layer) + 1
        for name in backbone.cut_points[after:]:
            if name != PRE_LOGITS:
                model.set_submodule(name, torch.nn.Identity())
    if backbone.classifier is not None:
        head_name = module_name(backbone.model, backbone.classifier)
        model.set_submodule(head_name, torch.nn.Identity())
    else:
        raise ZooprobeError(f"'{backbone.entry.id}' has no classifier layer that a new head could replace")
    model.eval()
    with torch.inference_mode():
        width = int(model(torch.zeros(1, 3, *resolution)).flatten(1).shape[1])
    head = make_head(width)
    model.set_submodule(head_name, head)
    return model, head


def foreign_arm_model(
    backbone: Backbone,
    layer: str,
    resolution: tuple[int, int],
    make_head: Callable[[int], torch.nn.Module],
    *,
    pretrained: bool,
) -> tuple[torch.nn.Module, torch.nn.Module] | None:
    """(model, head) for a Keras or TensorFlow backbone (its body up to ``layer`` under a torch head of
    ``make_head(width)``, random-initialised unless ``pretrained``, seeded by torch's seed), else None."""
    import torch

    from ..backbones.keras_backbone import KerasBackbone
    from ..backbones.tf_backbone import TFBackbone

    seed = int(torch.initial_seed()) % 2**31
    if isinstance(backbone, KerasBackbone):
        from ..backbones.keras_finetune import build_keras_arm

        return build_keras_arm(backbone, layer, resolution, make_head, pretrained=pretrained, seed=seed)
    if isinstance(backbone, TFBackbone):
        from ..backbones.tf_finetune import build_tf_arm

        return build_tf_arm(backbone, layer, resolution, make_head, pretrained=pretrained, seed=seed)
    return None


def scratch_model(backbone: Backbone) -> torch.nn.Module:
    """The backbone's architecture with its source's own random initialisation (its own init scheme)."""
    entry = backbone.entry
    if entry.source == "torchvision":
        from torchvision.models import get_model

        model: torch.nn.Module = get_model(entry.architecture, weights=None)
        return model
    if entry.source == "timm":
        import timm

        built: torch.nn.Module = timm.create_model(entry.name, pretrained=False)
        return built
    model = copy.deepcopy(backbone.model)
    for module in model.modules():
        reset = getattr(module, "reset_parameters", None)
        if callable(reset):
            reset()
        reset_stats = getattr(module, "reset_running_stats", None)
        if callable(reset_stats):
            reset_stats()
    return model


def freeze_body(model: torch.nn.Module, head: torch.nn.Module, train_body: bool) -> None:
    """Only the head trains (``train_body`` False) or everything does."""
    head_params = {id(p) for p in head.parameters()}
    untrainable: set[int] = set()
    for module in model.modules():
        ids = getattr(module, "untrainable_parameter_ids", None)  # a Keras body: see KerasArm
        if callable(ids):
            untrainable |= ids()
    for param in model.parameters():
        param.requires_grad_(id(param) not in untrainable and (train_body or id(param) in head_params))


def train_mode(model: torch.nn.Module, keep_statistics: bool = False) -> None:
    """``model.train()``, except BatchNorm layers whose parameters are frozen (or every BatchNorm layer
    with ``keep_statistics``): they stay in inference mode, so their running statistics are not updated."""
    import torch

    model.train()
    for module in model.modules():
        keras_statistics = getattr(module, "set_statistics_frozen", None)  # a Keras body: see KerasArm
        if callable(keras_statistics):
            keras_statistics(keep_statistics)
        if isinstance(module, torch.nn.modules.batchnorm._BatchNorm):
            params = list(module.parameters(recurse=False))
            if keep_statistics or (params and not any(p.requires_grad for p in params)):
                module.eval()


def lr_factor(step: int, total: int, warmup_fraction: float) -> float:
    """Linear warm-up over the first ``warmup_fraction`` of ``total`` steps, then cosine decay to zero."""
    warmup = max(1, round(total * warmup_fraction))
    if step < warmup:
        return (step + 1) / warmup
    progress = (step - warmup) / max(1, total - warmup)
    return 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))


# --- data -------------------------------------------------------------------------------------------


class _Batches:
    """(inputs, labels) mini-batches of one split: shuffled per (seed, epoch) for training."""

    def __init__(self, inputs: torch.Tensor, labels: torch.Tensor, batch_size: int) -> None:
        self.inputs = inputs
        self.labels = labels
        self.batch_size = batch_size

    def __len__(self) -> int:
        return len(self._starts())

    def _starts(self) -> list[int]:
        """Where each batch starts. A last batch of one example joins the one before it: BatchNorm in
        training mode cannot normalise a single example's 1 x 1 feature map."""
        count = len(self.labels)
        starts = list(range(0, count, self.batch_size))
        if len(starts) > 1 and count - starts[-1] == 1:
            starts.pop()
        return starts

    def iterate(self, shuffle_seed: int | None = None) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        import torch

        count = len(self.labels)
        if shuffle_seed is None:
            order = torch.arange(count)
        else:
            order = torch.randperm(count, generator=torch.Generator().manual_seed(shuffle_seed))
        starts = self._starts()
        for start, end in zip(starts, [*starts[1:], count], strict=True):
            chosen = order[start:end]
            yield self.inputs[chosen], self.labels[chosen]


def _preprocess_all(backbone: Backbone, dataset: Dataset, indices: npt.NDArray[np.int64]) -> torch.Tensor:
    import torch

    height, width = backbone.resolution
    needed = len(indices) * 3 * height * width * 4
    if needed > IN_MEMORY_LIMIT_BYTES:
        raise ZooprobeError(
            f"{len(indices)} images at {height}x{width} px need {needed / 2**30:.1f} GiB preprocessed in memory, "
            f"over the {IN_MEMORY_LIMIT_BYTES / 2**30:.0f} GiB zooprobe holds: pass a smaller --resolution "
            "or --train-size"
        )
    chunks = [
        backbone.preprocess([dataset.load_image(int(i)) for i in indices[start : start + 256]])
        for start in range(0, len(indices), 256)
    ]
    return torch.cat(chunks)


# --- training ---------------------------------------------------------------------------------------


@dataclass
class _ArmState:
    """Where an arm stands: the next epoch to train and the early-stopping bookkeeping."""

    next_epoch: int = 1
    best_val_loss: float = math.inf
    best_epoch: int = 0
    bad_epochs: int = 0
    finished: bool = False


class _Trainer:
    """Trains the arms of one run on one split, checkpointing and recording after every epoch."""

    def __init__(
        self,
        *,
        store: RunStore,
        run_id: str,
        run_dir: Path,
        backbone: Backbone,
        dataset: Dataset,
        train_idx: npt.NDArray[np.int64],
        val_idx: npt.NDArray[np.int64],
        settings: TrainSettings,
        device: str | None,
        progress: bool,
        on_epoch: EpochCallback | None,
    ) -> None:
        import torch

        self.store = store
        self.run_id = run_id
        self.run_dir = run_dir
        self.backbone = backbone
        self.dataset = dataset
        self.train_idx = train_idx
        self.val_idx = val_idx
        self.settings = settings
        self.device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
        self.amp = self.device.type == "cuda"
        self.amp_dtype = torch.bfloat16 if self.amp and torch.cuda.is_bf16_supported() else torch.float16
        self.progress = progress
        self.on_epoch = on_epoch
        self.num_classes = len(dataset.classes)
        self.train_labels = torch.as_tensor(dataset.labels[train_idx])
        self.val_labels = torch.as_tensor(dataset.labels[val_idx])
        self._images: tuple[torch.Tensor, torch.Tensor] | None = None

    # --- inputs ---

    def images(self) -> tuple[torch.Tensor, torch.Tensor]:
        if self._images is None:
            self._images = (
                _preprocess_all(self.backbone, self.dataset, self.train_idx),
                _preprocess_all(self.backbone, self.dataset, self.val_idx),
            )
        return self._images

    def cached_features(self, layer: str) -> tuple[torch.Tensor, torch.Tensor]:
        import torch

        from ..backbones.features import extract_features

        features = extract_features(
            self.backbone, self.dataset, [layer], cache_dir=self.store.home / "features", progress=self.progress
        )[layer]
        return torch.as_tensor(features[self.train_idx]), torch.as_tensor(features[self.val_idx])

    def head_reads_features(self, model: torch.nn.Module, head: torch.nn.Module, layer: str) -> bool:
        """Whether the head's input in ``model`` equals the backbone's pooled features at ``layer``."""
        import torch

        sample = self.backbone.preprocess([self.dataset.load_image(int(i)) for i in self.val_idx[:2]])
        seen: list[torch.Tensor] = []
        handle = head.register_forward_pre_hook(lambda _m, args: seen.append(args[0]))
        try:
            model.eval()
            with torch.inference_mode():
                model(sample)
        finally:
            handle.remove()
        expected = self.backbone.extract(sample, [layer])[layer]
        return bool(seen) and seen[0].shape == expected.shape and torch.allclose(seen[0], expected, atol=1e-4)

    # --- arms ---

    def arm_model(self, arm: str, strategy: Strategy) -> tuple[torch.nn.Module, torch.nn.Module]:
        """(model, its new head) for an arm: the cut backbone, or for ``scratch`` the random-init architecture."""
        import torch

        torch.manual_seed(self.settings.seed)
        if arm != SCRATCH:
            return build_arm_model(self.backbone, strategy, self.num_classes, self.backbone.resolution)
        foreign = foreign_arm_model(
            self.backbone,
            strategy.layer,
            self.backbone.resolution,
            lambda width: torch.nn.Linear(width, self.num_classes),
            pretrained=False,
        )
        if foreign is not None:
            return foreign
        model = scratch_model(self.backbone)
        if self.backbone.classifier is None:
            raise ZooprobeError(f"'{self.backbone.entry.id}' has no classifier layer: --baseline scratch needs one")
        name = module_name(self.backbone.model, self.backbone.classifier)
        old = model.get_submodule(name)
        assert isinstance(old, torch.nn.Linear)
        head = torch.nn.Linear(old.in_features, self.num_classes)
        model.set_submodule(name, head)
        return model, head

    def run_arm(self, arm: str, strategy: Strategy) -> ArmResult:
        """Train (or resume) one arm; returns its summary with the path of its best checkpoint."""
        if strategy.kind == "as-is":
            return self.as_is(arm, strategy.layer)
        model, head = self.arm_model(arm, strategy)
        pretrained = arm != SCRATCH
        state = _ArmState()
        checkpoint = self.run_dir / f"{_slug(arm)}.safetensors"
        saved = _read_checkpoint(checkpoint) if checkpoint.exists() else None
        if saved is not None:
            model.load_state_dict(saved.model_state)
            state = saved.state
            self.store.put_epoch(self.run_id, saved.record)
        if state.finished:
            return self._outcome(arm, checkpoint)
        # while only the head trains, it can read cached features instead of running the frozen body
        head_on_features = pretrained and self.head_reads_features(model, head, strategy.layer)
        body_trains = strategy.trains_body or not pretrained
        warmup = min(self.settings.head_warmup_epochs, self.settings.epochs - 1) if body_trains and pretrained else 0
        model.to(self.device)
        optimizer: torch.optim.Optimizer | None = None
        phase = ""
        for epoch in range(state.next_epoch, self.settings.epochs + 1):
            started = time.perf_counter()
            if epoch <= warmup or not body_trains:
                epoch_phase, first, last = "head", 1, warmup or self.settings.epochs
            else:
                epoch_phase, first, last = "all", warmup + 1, self.settings.epochs
            if epoch_phase != phase:
                phase = epoch_phase
                freeze_body(model, head, train_body=phase == "all")
                optimizer = self._optimizer(model, head, phase == "all", discriminative=pretrained)
                if saved is not None and saved.phase == phase and saved.optimizer_state is not None:
                    optimizer.load_state_dict(saved.optimizer_state)
                on_features = phase == "head" and head_on_features
                trainable = head if on_features else model
                train, val = self.batches(strategy.layer if on_features else None)
            assert optimizer is not None
            steps = (last - first + 1) * len(train)
            keep_statistics = pretrained and self.settings.keep_bn_statistics
            train_loss = self._train_epoch(
                arm, trainable, optimizer, train, epoch, (epoch - first) * len(train), steps, keep_statistics
            )
            val_loss, accuracy, balanced = self._evaluate(trainable, val)
            state.next_epoch = epoch + 1
            if val_loss < state.best_val_loss - 1e-6:
                state.best_val_loss, state.best_epoch, state.bad_epochs = val_loss, epoch, 0
                _write_model(self.run_dir / f"{_slug(arm)}.best.safetensors", model)
            else:
                state.bad_epochs += 1
            stop = state.bad_epochs >= self.settings.patience
            state.finished = stop or epoch == self.settings.epochs
            extra: dict[str, Any] = {"phase": phase, "trained_on": "features" if on_features else "images"}
            if stop and epoch < self.settings.epochs:
                extra["early_stop"] = True
            seconds = time.perf_counter() - started
            record = EpochRecord(arm, epoch, train_loss, val_loss, accuracy, balanced, seconds, extra)
            _write_checkpoint(checkpoint, model, optimizer, phase, state, record)
            self.store.put_epoch(self.run_id, record)
            if self.on_epoch is not None:
                self.on_epoch(arm, record)
            if state.finished:
                break
        return self._outcome(arm, checkpoint)

    def batches(self, features_layer: str | None) -> tuple[_Batches, _Batches]:
        """Training and validation batches on the device: cached features at a layer, or images."""
        if features_layer is not None:
            train_x, val_x = self.cached_features(features_layer)
        else:
            train_x, val_x = self.images()
        size = self.settings.batch_size
        return (
            _Batches(train_x.to(self.device), self.train_labels.to(self.device), size),
            _Batches(val_x.to(self.device), self.val_labels.to(self.device), size * 4),
        )

    def _outcome(self, arm: str, checkpoint: Path) -> ArmResult:
        records = self.store.epochs(self.run_id, arm)
        # the best checkpoint holds the epoch of lowest validation loss (the early-stopping criterion)
        kept = min(records, key=lambda r: (r.val_loss if r.val_loss is not None else math.inf, r.epoch))
        best_file = checkpoint.with_name(f"{_slug(arm)}.best.safetensors")
        if not best_file.exists():
            return ArmResult.from_epochs(records)
        return ArmResult.from_epochs(records, checkpoint_epoch=kept.epoch, checkpoint=str(best_file))

    def _optimizer(
        self, model: torch.nn.Module, head: torch.nn.Module, whole_model: bool, discriminative: bool
    ) -> torch.optim.Optimizer:
        """AdamW over the trainable parameters only: the head's, or the whole model's (the pretrained body
        at ``body_lr_factor`` times the head's rate when ``discriminative``)."""
        import torch

        settings = self.settings
        head_ids = {id(p) for p in head.parameters()}
        head_params = [p for p in head.parameters() if p.requires_grad]
        groups: list[dict[str, Any]] = [{"params": head_params, "lr": settings.lr, "base_lr": settings.lr}]
        if whole_model:
            body = [p for p in model.parameters() if p.requires_grad and id(p) not in head_ids]
            body_lr = settings.lr * (settings.body_lr_factor if discriminative else 1.0)
            groups.insert(0, {"params": body, "lr": body_lr, "base_lr": body_lr})
        return torch.optim.AdamW(groups, lr=settings.lr, weight_decay=settings.weight_decay)

    def _train_epoch(
        self,
        arm: str,
        model: torch.nn.Module,
        optimizer: torch.optim.Optimizer,
        batches: _Batches,
        epoch: int,
        first_step: int,
        total_steps: int,
        keep_statistics: bool,
    ) -> float:
        import torch

        from ..progress import ProgressBar

        torch.manual_seed(self.settings.seed * 1_000_003 + epoch)
        train_mode(model, keep_statistics)
        scaler = torch.amp.GradScaler("cuda", enabled=self.amp and self.amp_dtype == torch.float16)
        loss_sum, seen = 0.0, 0
        label = f"{arm} epoch {epoch}/{self.settings.epochs}"
        with ProgressBar(len(batches), label, enabled=self.progress) as bar:
            for step, (inputs, labels) in enumerate(batches.iterate(self.settings.seed * 1_000_003 + epoch)):
                factor = lr_factor(first_step + step, total_steps, self.settings.warmup_fraction)
                for group in optimizer.param_groups:
                    group["lr"] = group["base_lr"] * factor
                with torch.autocast(self.device.type, dtype=self.amp_dtype, enabled=self.amp):
                    loss = torch.nn.functional.cross_entropy(model(inputs), labels)
                optimizer.zero_grad(set_to_none=True)
                torch.autograd.backward(scaler.scale(loss))
                scaler.step(optimizer)
                scaler.update()
                loss_sum += float(loss.detach()) * len(labels)
                seen += len(labels)
                bar.update(1)
        return loss_sum / seen

    def _evaluate(self, model: torch.nn.Module, batches: _Batches) -> tuple[float, float, float]:
        """(mean cross-entropy, accuracy, balanced accuracy) over the validation split."""
        import torch

        model.eval()
        losses, predictions = [], []
        with torch.inference_mode(), torch.autocast(self.device.type, dtype=self.amp_dtype, enabled=self.amp):
            for inputs, labels in batches.iterate():
                logits = model(inputs).float()
                losses.append(torch.nn.functional.cross_entropy(logits, labels, reduction="sum"))
                predictions.append(logits.argmax(1))
        predicted = torch.cat(predictions).cpu()
        labels = batches.labels.cpu()
        accuracy, balanced = _accuracies(predicted, labels)
        return float(torch.stack(losses).sum()) / len(labels), accuracy, balanced

    # --- as-is ---

    def as_is(self, arm: str, layer: str = PRE_LOGITS) -> ArmResult:
        """Epoch 0: the model's own head when every class name is one of its source classes, otherwise
        nearest class mean (cosine) on its pooled features at ``layer``; nothing trains."""
        import torch

        started = time.perf_counter()
        source_classes = _source_class_names(self.backbone)
        wanted = [name.strip().lower().replace("_", " ") for name in self.dataset.classes]
        lookup: dict[str, int] = {}
        for index, description in enumerate(source_classes or []):
            # timm describes a class by its synonyms ("tench, Tinca tinca"); the first class keeps a shared name
            for synonym in description.split(","):
                lookup.setdefault(synonym.strip().lower(), index)
        val_loss: float | None = None
        if source_classes and all(name in lookup for name in wanted):
            columns = torch.tensor([lookup[name] for name in wanted])
            logits = []
            _, val_images = self.images()
            self.backbone.model.eval()
            with torch.inference_mode():
                for start in range(0, len(val_images), 128):
                    logits.append(self.backbone.model(val_images[start : start + 128])[:, columns])
            restricted = torch.cat(logits)
            val_loss = float(torch.nn.functional.cross_entropy(restricted, self.val_labels))
            predicted = restricted.argmax(1)
            method = "source head"
        else:
            train_features, val_features = self.cached_features(layer)
            train_features = torch.nn.functional.normalize(train_features.float(), dim=1)
            val_features = torch.nn.functional.normalize(val_features.float(), dim=1)
            means = torch.stack([train_features[self.train_labels == c].mean(0) for c in range(self.num_classes)])
            predicted = (val_features @ torch.nn.functional.normalize(means, dim=1).T).argmax(1)
            method = "nearest class mean"
        accuracy, balanced = _accuracies(predicted, self.val_labels)
        seconds = time.perf_counter() - started
        record = EpochRecord(arm, 0, None, val_loss, accuracy, balanced, seconds, {"method": method})
        self.store.put_epoch(self.run_id, record)
        if self.on_epoch is not None:
            self.on_epoch(arm, record)
        return ArmResult(accuracy, accuracy, 0, seconds=seconds, method=method)


def _accuracies(predicted: torch.Tensor, labels: torch.Tensor) -> tuple[float, float]:
    """(accuracy, balanced accuracy: the mean recall over the classes present in ``labels``)."""
    import torch

    correct = predicted == labels
    recalls = [float(correct[labels == c].float().mean()) for c in torch.unique(labels)]
    return float(correct.float().mean()), sum(recalls) / len(recalls)


def _source_class_names(backbone: Backbone) -> list[str] | None:
    """The class names of the backbone's own head, where its source publishes them."""
    entry = backbone.entry
    if entry.source == "torchvision":
        from torchvision.models import get_model_weights

        weights = get_model_weights(entry.architecture)[entry.name.split(".", 1)[1]]
        categories = weights.meta.get("categories")
        return list(categories) if categories else None
    if entry.source == "timm":
        from timm.data.imagenet_info import ImageNetInfo, infer_imagenet_subset

        subset = infer_imagenet_subset(backbone.model)
        return list(ImageNetInfo(subset).label_descriptions(as_dict=False)) if subset else None
    return None


# --- checkpoints ------------------------------------------------------------------------------------


def _slug(arm: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", arm)


@dataclass
class _Checkpoint:
    model_state: dict[str, torch.Tensor]
    optimizer_state: dict[str, Any] | None
    phase: str
    state: _ArmState
    record: EpochRecord


def _atomic_save(path: Path, tensors: dict[str, torch.Tensor], metadata: dict[str, str]) -> None:
    from safetensors.torch import save_file

    path.parent.mkdir(parents=True, exist_ok=True)
    temp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        save_file(tensors, str(temp), metadata=metadata)
        with open(temp, "rb") as written:  # on disk before the rename, or a crash can leave a torn file
            os.fsync(written.fileno())
        os.replace(temp, path)
    finally:
        temp.unlink(missing_ok=True)


def _model_tensors(model: torch.nn.Module, prefix: str = "") -> dict[str, torch.Tensor]:
    return {f"{prefix}{name}": value.detach().cpu().contiguous() for name, value in model.state_dict().items()}


def _write_model(path: Path, model: torch.nn.Module) -> None:
    _atomic_save(path, _model_tensors(model), {"format": "pt"})


def _write_checkpoint(
    path: Path,
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    phase: str,
    state: _ArmState,
    record: EpochRecord,
) -> None:
    """Model, optimizer moments and the arm's bookkeeping in one safetensors file (JSON in its metadata)."""
    import torch

    tensors = _model_tensors(model, "model/")
    optimizer_state = optimizer.state_dict()
    scalars: dict[str, dict[str, Any]] = {}
    for index, values in optimizer_state["state"].items():
        for key, value in values.items():
            if isinstance(value, torch.Tensor):
                tensors[f"optimizer/{index}/{key}"] = value.detach().cpu().contiguous()
            else:
                scalars.setdefault(str(index), {})[key] = value
    metadata = {
        "format": "pt",
        "phase": phase,
        "state": json.dumps(asdict(state)),
        "param_groups": json.dumps(optimizer_state["param_groups"]),
        "optimizer_scalars": json.dumps(scalars),
        "record": json.dumps(record.to_json()),
    }
    _atomic_save(path, tensors, metadata)


def _read_checkpoint(path: Path) -> _Checkpoint:
    from safetensors import safe_open

    model_state: dict[str, torch.Tensor] = {}
    per_param: dict[int, dict[str, Any]] = {}
    with safe_open(str(path), framework="pt") as handle:
        metadata = handle.metadata()
        for key in handle.keys():
            if key.startswith("model/"):
                model_state[key[len("model/") :]] = handle.get_tensor(key)
            else:
                _, index, name = key.split("/", 2)
                per_param.setdefault(int(index), {})[name] = handle.get_tensor(key)
    for index, values in json.loads(metadata["optimizer_scalars"]).items():
        per_param.setdefault(int(index), {}).update(values)
    state_doc = json.loads(metadata["state"])
    best = state_doc.pop("best_val_loss")
    state = _ArmState(best_val_loss=math.inf if best is None else float(best), **state_doc)
    record = EpochRecord.from_json(json.loads(metadata["record"]))
    optimizer_state = {"state": per_param, "param_groups": json.loads(metadata["param_groups"])}
    return _Checkpoint(model_state, optimizer_state, metadata["phase"], state, record)


def epochs_table_rows(records: Sequence[EpochRecord]) -> list[list[str]]:
    """Cells of the per-epoch table: epoch, train loss, validation loss, accuracy, balanced accuracy, time."""

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
        ]
        for r in records
    ]
