"""The training loop: one arm at a time, an epoch at a time, checkpointed and recorded after every epoch."""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..backbones.contract import PRE_LOGITS, Arm, Backbone, train_mode
from ..data.datasets import Dataset
from ..runs.records import ArmResult
from ..runs.store import EpochRecord
from .arms import build_arm_model, build_scratch_model
from .batches import Batches, StreamedBatches, load_batch
from .checkpoint_guard import keep_and_record, resume_checkpoint
from .checkpoints import ArmState, slug, write_checkpoint, write_model
from .epoch_store import EpochStore, arm_outcome
from .precise_bn import recompute_statistics
from .strategy import SCRATCH, Strategy

if TYPE_CHECKING:
    import numpy as np
    import numpy.typing as npt
    import torch


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
    # "cosine" (images) or "linear" (text: transformers' get_linear_schedule_with_warmup), after the warm-up
    schedule: str = "cosine"
    # BatchNorm layers that train get statistics recomputed on the training data before each evaluation
    precise_bn: bool = True


EpochCallback = Callable[[str, EpochRecord], None]


def lr_factor(step: int, total: int, warmup_fraction: float, schedule: str = "cosine") -> float:
    """Linear warm-up over the first ``warmup_fraction`` of ``total`` steps, then cosine decay to zero, or
    with ``schedule="linear"`` linear decay to zero (as transformers' ``get_linear_schedule_with_warmup``)."""
    warmup = max(1, round(total * warmup_fraction))
    if step < warmup:
        return (step + 1) / warmup
    progress = (step - warmup) / max(1, total - warmup)
    if schedule == "linear":
        return max(0.0, 1.0 - progress)
    return 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))


class Trainer:
    """Trains the arms of one run on one split, checkpointing and recording after every epoch."""

    def __init__(
        self,
        *,
        store: EpochStore,
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
        self._streams: tuple[StreamedBatches, StreamedBatches] | None = None
        self.inputs_kind = "texts" if dataset.texts is not None else "images"
        backbone.expect_pairs(dataset.texts_b is not None)

    # --- inputs ---

    def streams(self) -> tuple[StreamedBatches, StreamedBatches]:
        """Training and validation batches loaded from the dataset a batch at a time (kept for every arm)."""
        if self._streams is None:
            size = self.settings.batch_size
            self._streams = (
                StreamedBatches(self.backbone, self.dataset, self.train_idx, self.train_labels, size, self.device),
                StreamedBatches(self.backbone, self.dataset, self.val_idx, self.val_labels, size * 4, self.device),
            )
        return self._streams

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

        sample = load_batch(self.backbone, self.dataset, self.val_idx[:2])
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

    def arm_model(self, arm: str, strategy: Strategy) -> Arm:
        """The model of an arm: the backbone cut at the strategy's layer under a new head, or for ``scratch``
        the architecture with random initialisation, both built by the backbone's adapter."""
        import torch

        torch.manual_seed(self.settings.seed)
        if arm != SCRATCH:
            return build_arm_model(self.backbone, strategy, self.num_classes, self.backbone.resolution)
        mlp = strategy.mlp if strategy.kind == "cut" else None  # a cut run's scratch: the same cut architecture
        return build_scratch_model(self.backbone, strategy.layer, self.num_classes, self.backbone.resolution, mlp)

    def run_arm(self, arm: str, strategy: Strategy) -> ArmResult:
        """Train (or resume) one arm; returns its summary with the path of its best checkpoint."""
        if strategy.kind == "as-is":
            return self.as_is(arm, strategy.layer)
        built = self.arm_model(arm, strategy)
        model, head = built.model, built.head
        pretrained = arm != SCRATCH
        state = ArmState()
        checkpoint = self.run_dir / f"{slug(arm)}.safetensors"
        saved = resume_checkpoint(self.store, self.run_id, self.run_dir, arm, built)  # the newest good one
        if saved is not None:
            built.load_state(saved.model_state)
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
                built.set_trainable(train_body=phase == "all")
                optimizer = self._optimizer(model, head, phase == "all", discriminative=pretrained)
                if saved is not None and saved.phase == phase and saved.optimizer_state is not None:
                    optimizer.load_state_dict(saved.optimizer_state)
                on_features = phase == "head" and head_on_features
                trainable = head if on_features else model
                enter_training = partial(train_mode, head) if on_features else built.train_mode
                train, val = self.batches(strategy.layer if on_features else None)
            assert optimizer is not None
            steps = (last - first + 1) * len(train)
            keep_statistics = pretrained and self.settings.keep_bn_statistics
            enter_training(keep_statistics)
            train_loss = self._train_epoch(arm, trainable, optimizer, train, epoch, (epoch - first) * len(train), steps)
            # BatchNorm layers that trained get statistics of the current weights (see precise_bn)
            statistics_train = phase == "all" and not keep_statistics and self.settings.precise_bn
            amp = (self.device.type, self.amp_dtype, self.amp)
            shuffled = (x for x, _ in train.iterate(self.settings.seed * 1_000_003 + epoch))
            precise_bn = recompute_statistics(trainable, shuffled, autocast=amp) if statistics_train else 0
            val_loss, accuracy, balanced, f1, top_share = self._evaluate(trainable, val)
            state.next_epoch = epoch + 1
            if val_loss < state.best_val_loss - 1e-6:
                state.best_val_loss, state.best_epoch, state.bad_epochs = val_loss, epoch, 0
                write_model(self.run_dir / f"{slug(arm)}.best.safetensors", built)
            else:
                state.bad_epochs += 1
            stop = state.bad_epochs >= self.settings.patience
            state.finished = stop or epoch == self.settings.epochs
            extra: dict[str, Any] = {"phase": phase, "trained_on": "features" if on_features else self.inputs_kind}
            if f1 is not None:
                extra["val_f1"] = f1
            extra["top_class_share"] = top_share  # 1.0: one class predicted for every validation example
            if statistics_train and (precise_bn or built.statistics_frozen is not None):
                extra["precise_bn_examples"] = precise_bn  # 0: the framework's own BatchNorm, not recomputable
            elif statistics_train:  # no BatchNorm at all (a transformer's LayerNorm keeps no statistics)
                extra["running_statistics"] = False
            if stop and epoch < self.settings.epochs:
                extra["early_stop"] = True
            seconds = time.perf_counter() - started
            record = EpochRecord(arm, epoch, train_loss, val_loss, accuracy, balanced, seconds, extra)
            kept = keep_and_record(self.store, self.run_id, arm, epoch, checkpoint)  # checksum, last two kept
            write_checkpoint(checkpoint, built, optimizer, phase, state, record, kept)
            self.store.put_epoch(self.run_id, record)
            if self.on_epoch is not None:
                self.on_epoch(arm, record)
            if state.finished:
                break
        return self._outcome(arm, checkpoint)

    def batches(self, features_layer: str | None) -> tuple[Batches, Batches] | tuple[StreamedBatches, StreamedBatches]:
        """Training and validation batches on the device: cached features at a layer, or the examples streamed."""
        if features_layer is None:
            return self.streams()
        train_x, val_x = self.cached_features(features_layer)
        size = self.settings.batch_size
        return (
            Batches(train_x.to(self.device), self.train_labels.to(self.device), size),
            Batches(val_x.to(self.device), self.val_labels.to(self.device), size * 4),
        )

    def _outcome(self, arm: str, checkpoint: Path) -> ArmResult:
        return arm_outcome(self.store.epochs(self.run_id, arm), checkpoint.with_name(f"{slug(arm)}.best.safetensors"))

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
        batches: Batches | StreamedBatches,
        epoch: int,
        first_step: int,
        total_steps: int,
    ) -> float:
        """One epoch of AdamW steps on ``model``, already in training mode; returns the mean training loss."""
        import torch

        from ..progress import ProgressBar

        torch.manual_seed(self.settings.seed * 1_000_003 + epoch)
        scaler = torch.amp.GradScaler("cuda", enabled=self.amp and self.amp_dtype == torch.float16)
        loss_sum, seen = 0.0, 0
        label = f"{arm} epoch {epoch}/{self.settings.epochs}"
        with ProgressBar(len(batches), label, enabled=self.progress) as bar:
            for step, (inputs, labels) in enumerate(batches.iterate(self.settings.seed * 1_000_003 + epoch)):
                factor = lr_factor(
                    first_step + step, total_steps, self.settings.warmup_fraction, self.settings.schedule
                )
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

    def _evaluate(
        self, model: torch.nn.Module, batches: Batches | StreamedBatches
    ) -> tuple[float, float, float, float | None, float]:
        """(mean cross-entropy, accuracy, balanced accuracy, F1 of label 1 for binary tasks, share of the
        most-predicted class) on the validation split."""
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
        top_share = float(torch.bincount(predicted).max()) / len(predicted)
        loss = float(torch.stack(losses).sum()) / len(labels)
        return loss, accuracy, balanced, self._f1(predicted, labels), top_share

    def _f1(self, predicted: torch.Tensor, labels: torch.Tensor) -> float | None:
        return positive_f1(predicted, labels) if self.num_classes == 2 else None

    # --- as-is ---

    def as_is(self, arm: str, layer: str = PRE_LOGITS) -> ArmResult:
        """Epoch 0: the model's own head when every class name is one of its source classes, otherwise
        nearest class mean (cosine) on its pooled features at ``layer``; nothing trains."""
        import torch

        started = time.perf_counter()
        source_classes = self.backbone.source_class_names()
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
            with torch.inference_mode():
                for start in range(0, len(self.val_idx), 128):
                    batch = load_batch(self.backbone, self.dataset, self.val_idx[start : start + 128])
                    logits.append(self.backbone.source_logits(batch)[:, columns])
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
        extra: dict[str, Any] = {"method": method}
        f1 = self._f1(predicted, self.val_labels)
        if f1 is not None:
            extra["val_f1"] = f1
        record = EpochRecord(arm, 0, None, val_loss, accuracy, balanced, seconds, extra)
        self.store.put_epoch(self.run_id, record)
        if self.on_epoch is not None:
            self.on_epoch(arm, record)
        return ArmResult(accuracy, accuracy, 0, seconds=seconds, method=method)


def positive_f1(predicted: torch.Tensor, labels: torch.Tensor) -> float:
    """F1 of the positive class (label 1), as GLUE scores MRPC; 0 when it is never predicted nor present."""
    true_positive = int(((predicted == 1) & (labels == 1)).sum())
    denominator = int((predicted == 1).sum()) + int((labels == 1).sum())
    return 2 * true_positive / denominator if denominator else 0.0


def _accuracies(predicted: torch.Tensor, labels: torch.Tensor) -> tuple[float, float]:
    """(accuracy, balanced accuracy: the mean recall over the classes present in ``labels``)."""
    import torch

    correct = predicted == labels
    recalls = [float(correct[labels == c].float().mean()) for c in torch.unique(labels)]
    return float(correct.float().mean()), sum(recalls) / len(recalls)
