"""Fine-tuning TensorFlow SavedModels (TF-Hub, Kaggle) in zooprobe's training loop.

TensorFlow computes the body: its forward pass and, under a ``tf.GradientTape``, the gradients of the
pooled features with respect to the SavedModel's trainable variables. torch holds a copy of every
variable (trainable ones as parameters, the others, e.g. BatchNorm moving statistics, as buffers), so
the loop's AdamW, freezing (``requires_grad``), learning-rate schedule, early stopping, safetensors
checkpoints and resumption apply exactly as for torch backbones, and every epoch is recorded the same
way. Before each call the torch values are written into the SavedModel's variables; after a call in
training mode the statistics TensorFlow updated are read back.

Each arm restores its own copy of the SavedModel, so training never changes the backbone that feature
extraction (and its cache) uses. This module imports TensorFlow and torch at import: import it only
where a TensorFlow backbone is being trained.
"""

from __future__ import annotations

import inspect
import math
import re
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Protocol

import numpy as np
import torch

from ..errors import ZooprobeError
from .contract import Arm
from .foreign_arm import PooledBodyArm
from .tf_runtime import concrete_functions, import_tensorflow

tf = import_tensorflow()

_ZERO_INIT = ("bias", "beta", "moving_mean")
_ONE_INIT = ("gamma", "moving_variance")


def has_training_argument(model: Any) -> bool:
    """Whether the restored SavedModel's ``__call__`` takes ``training`` (Keras exports do), as
    ``hub.KerasLayer`` decides whether to pass it."""
    try:
        return "training" in inspect.signature(model.__call__).parameters
    except (TypeError, ValueError):
        return False


def saved_model_variables(model: Any) -> list[Any]:
    """The variables a restored SavedModel exposes (the Reusable SavedModel API's ``.variables``, as Keras
    exports and TF-Hub models have), else those its traced ``__call__`` functions capture."""
    exposed = getattr(model, "variables", None)
    if exposed is not None:
        return list(exposed)
    found: dict[int, Any] = {}
    for function in concrete_functions(model):
        for variable in function.variables:
            found.setdefault(id(variable), variable)
    return list(found.values())


def _parameter_key(name: str, taken: set[str]) -> str:
    key = re.sub(r"\W", "_", name.removesuffix(":0")) or "variable"
    unique, suffix = key, 1
    while unique in taken:
        suffix += 1
        unique = f"{key}_{suffix}"
    taken.add(unique)
    return unique


def _variable_role(name: str) -> str:
    """The last path component of a TF variable name without its ``:0``: ``kernel``, ``bias``, ``gamma`` ..."""
    return name.removesuffix(":0").rsplit("/", 1)[-1].lower()


def random_initial_value(name: str, shape: Sequence[int], generator: torch.Generator) -> torch.Tensor:
    """A fresh value for the variable ``name`` with Keras's default initialiser for its role.

    Kernels and other weights of rank >= 2 get Glorot-uniform (Keras's default for Dense and Conv
    layers, fans computed as Keras computes them); embeddings uniform in +-0.05; biases, BatchNorm
    betas and moving means zeros; BatchNorm gammas and moving variances ones.

    :raises ZooprobeError: for a vector whose role the name does not tell.
    """
    role = _variable_role(name)
    if "embedding" in role:
        return (torch.rand(tuple(shape), generator=generator) * 2 - 1) * 0.05
    if len(shape) >= 2:
        receptive = math.prod(shape[:-2])
        fan_in, fan_out = shape[-2] * receptive, shape[-1] * receptive
        limit = math.sqrt(6.0 / max(1, fan_in + fan_out))
        return (torch.rand(tuple(shape), generator=generator) * 2 - 1) * limit
    if any(role.startswith(prefix) for prefix in _ZERO_INIT):
        return torch.zeros(tuple(shape))
    if any(role.startswith(prefix) for prefix in _ONE_INIT):
        return torch.ones(tuple(shape))
    raise ZooprobeError(
        f"cannot tell how to re-initialise the SavedModel variable '{name}' (shape {list(shape)}) for the "
        "scratch baseline: its name is not a kernel, bias, gamma, beta or moving statistic; run without "
        "--baseline scratch"
    )


class _TFCall(torch.autograd.Function):
    """The pooled features of a batch through TensorFlow; backward asks the tape for the gradients."""

    @staticmethod
    def forward(ctx: Any, arm: TFArm, record: bool, batch: torch.Tensor, *params: torch.Tensor) -> torch.Tensor:
        arm.push_values()
        images = tf.constant(batch.detach().cpu().permute(0, 2, 3, 1).contiguous().numpy())
        training = arm.tf_training()
        if record:
            watched = [v for v, p in zip(arm.trainable_variables, params, strict=True) if p.requires_grad]
            with tf.GradientTape(watch_accessed_variables=False) as tape:
                tape.watch(watched)
                if batch.requires_grad:
                    tape.watch(images)
                features = arm.call(images, training)
            ctx.tape, ctx.features, ctx.images, ctx.watched = tape, features, images, watched
            ctx.wanted = [p.requires_grad for p in params]
            ctx.batch_wanted = batch.requires_grad
            ctx.device = batch.device
        else:
            features = arm.call(images, training)
        if training:
            arm.pull_statistics()
        return torch.from_numpy(features.numpy()).to(batch.device)

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor | None, ...]:
        sources = list(ctx.watched) + ([ctx.images] if ctx.batch_wanted else [])
        grads = ctx.tape.gradient(ctx.features, sources, output_gradients=tf.constant(grad.detach().cpu().numpy()))
        ctx.tape = ctx.features = None
        as_torch = [None if g is None else torch.from_numpy(np.array(tf.convert_to_tensor(g))) for g in grads]
        variable_grads = iter(as_torch[: len(ctx.watched)])
        params: list[torch.Tensor | None] = []
        for wanted in ctx.wanted:
            value = next(variable_grads) if wanted else None
            params.append(None if value is None else value.to(ctx.device))
        batch_grad = None
        if ctx.batch_wanted and as_torch[-1] is not None:
            batch_grad = as_torch[-1].permute(0, 3, 1, 2).to(ctx.device)
        return (None, None, batch_grad, *params)


class _VariableCopy:
    """Writes torch tensors into TF variables when any changed (an optimizer step, a checkpoint loaded):
    torch's in-place version counters tell. One graph call on one flat vector, because an eager
    ``assign`` per variable costs about 20 ms per step for MobileNetV2's 262 variables."""

    def __init__(self, variables: list[Any]) -> None:
        self.versions: list[int] | None = None
        sizes = [max(1, int(np.prod(v.shape))) for v in variables]

        def assign_all(flat: Any) -> None:
            for variable, value in zip(variables, tf.split(flat, sizes), strict=True):
                variable.assign(tf.cast(tf.reshape(value, variable.shape), variable.dtype))

        self.assign_all: Callable[[Any], None] = tf.function(assign_all)

    def push(self, values: Sequence[torch.Tensor]) -> None:
        versions = [value._version for value in values]
        if values and versions != self.versions:
            self.assign_all(torch.cat([value.detach().reshape(-1) for value in values]).cpu().numpy())
        self.versions = versions

    def mark_pushed(self, values: Sequence[torch.Tensor]) -> None:
        self.versions = [value._version for value in values]


class TFArm(PooledBodyArm):
    """NCHW batches in, logits out: a SavedModel's output ``layer`` pooled (mean over H, W or tokens),
    then a torch head.

    The body runs in inference mode (``training=False``: BatchNorm moving statistics untouched,
    dropout off) while ``frozen_statistics`` is set or none of its weights train, and in training mode
    otherwise (the scratch baseline), where the SavedModel takes a ``training`` argument.
    """

    def __init__(self, model: Any, layer: str, head: torch.nn.Module) -> None:
        super().__init__(head)
        self.model = model
        self.layer = layer
        self.frozen_statistics = False
        self.takes_training = has_training_argument(model)
        variables = saved_model_variables(model)
        trainable = {id(v) for v in getattr(model, "trainable_variables", variables) if v.trainable}
        self.trainable_variables = [v for v in variables if id(v) in trainable]
        self.statistic_variables = [v for v in variables if id(v) not in trainable]
        taken: set[str] = set()
        self.weights = torch.nn.ParameterDict()
        for variable in self.trainable_variables:
            value = torch.from_numpy(np.array(variable.numpy(), dtype=np.float32))
            self.weights[_parameter_key(variable.name, taken)] = torch.nn.Parameter(value)
        self.statistics = torch.nn.Module()
        for variable in self.statistic_variables:
            value = torch.from_numpy(np.array(variable.numpy(), dtype=np.float32))
            self.statistics.register_buffer(_parameter_key(variable.name, taken), value)
        self.weight_copy = _VariableCopy(self.trainable_variables)
        self.statistics_copy = _VariableCopy(self.statistic_variables)

    def body_parameters(self) -> list[torch.nn.Parameter]:
        return list(self.weights.values())

    def body_buffers(self) -> list[torch.Tensor]:
        return list(self.statistics.buffers())

    def set_statistics_frozen(self, frozen: bool) -> None:
        """Told by :meth:`Arm.train_mode <zooprobe.backbones.contract.Arm.train_mode>` its ``keep_statistics``."""
        self.frozen_statistics = frozen or not any(p.requires_grad for p in self.body_parameters())

    def tf_training(self) -> bool:
        return self.takes_training and self.training and not self.frozen_statistics

    def push_values(self) -> None:
        """Write the torch copies into the SavedModel's variables where they changed since the last call."""
        self.weight_copy.push(self.body_parameters())
        self.statistics_copy.push(self.body_buffers())

    def pull_statistics(self) -> None:
        """Copy the statistics TensorFlow updated in training mode back into the torch buffers."""
        with torch.no_grad():
            for variable, buffer in zip(self.statistic_variables, self.body_buffers(), strict=True):
                buffer.copy_(torch.from_numpy(np.asarray(variable.numpy(), dtype=np.float32)))
        self.statistics_copy.mark_pushed(self.body_buffers())  # TensorFlow already holds these values

    def call(self, images: Any, training: bool) -> Any:
        """The pooled output ``layer`` as a TF tensor (pooled in TensorFlow, so the tape sees it)."""
        outputs = self.model(images, training=training) if self.takes_training else self.model(images)
        if isinstance(outputs, Mapping):
            outputs = outputs[self.layer]
        elif isinstance(outputs, list | tuple):
            outputs = outputs[0]
        outputs = tf.cast(outputs, tf.float32)
        if outputs.shape.rank == 4:
            return tf.reduce_mean(outputs, axis=(1, 2))
        if outputs.shape.rank == 3:
            return tf.reduce_mean(outputs, axis=1)
        return tf.reshape(outputs, (tf.shape(outputs)[0], -1))

    def pooled(self, batch: torch.Tensor) -> torch.Tensor:
        params = self.body_parameters()
        record = torch.is_grad_enabled() and (batch.requires_grad or any(p.requires_grad for p in params))
        features: torch.Tensor = _TFCall.apply(self, record, batch, *params)
        return features


class RestorableSavedModel(Protocol):
    """What an arm is built from: a source of fresh, independent copies of the SavedModel."""

    def restore_copy(self) -> Any: ...


def tf_arm(model: TFArm, head: torch.nn.Module) -> Arm:
    """The arm the training loop drives: the SavedModel's statistics follow ``keep_statistics``."""
    return Arm(model, head, statistics_frozen=model.set_statistics_frozen)


def build_tf_arm(
    backbone: RestorableSavedModel,
    layer: str,
    resolution: tuple[int, int],
    make_head: Callable[[int], torch.nn.Module],
    *,
    pretrained: bool,
    seed: int,
) -> tuple[TFArm, torch.nn.Module]:
    """(model, head): a fresh copy of the SavedModel up to its output ``layer`` under a new head of
    ``make_head(width)``; with ``pretrained`` False every variable is re-initialised with Keras's
    default initialiser for its role (see :func:`random_initial_value`): the scratch baseline."""
    arm = TFArm(backbone.restore_copy(), layer, torch.nn.Identity())
    if not pretrained:
        generator = torch.Generator().manual_seed(seed)
        names = [v.name for v in arm.trainable_variables + arm.statistic_variables]
        with torch.no_grad():
            for name, value in zip(names, arm.body_parameters() + arm.body_buffers(), strict=True):
                value.copy_(random_initial_value(name, tuple(value.shape), generator))
    return arm, arm.attach_head(make_head, resolution)
