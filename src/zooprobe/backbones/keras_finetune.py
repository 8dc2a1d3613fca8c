"""Fine-tuning Keras Applications (Keras 3 on the torch backend) in zooprobe's torch training loop.

On the torch backend a Keras model is a ``torch.nn.Module`` whose variables are torch parameters, so
the loop's optimizer, freezing (``requires_grad``), checkpoints (``state_dict``) and autograd apply
as they are. Two things differ from torch modules and are handled here: Keras layers read NHWC
batches, and they follow the ``training`` argument rather than ``Module.train()``. This module
imports Keras and torch at import: import it only where a Keras backbone is being trained.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol

import keras
import torch

from ..catalog.schema import Entry
from ..errors import ZooprobeError
from .contract import Arm
from .foreign_arm import PooledBodyArm
from .keras_graph import clone_on_input, cut_outputs


class KerasApplication(Protocol):
    """What an arm is built from: the entry, the functional model and its classifier layer."""

    entry: Entry
    model: Any
    classifier: Any


class KerasArm(PooledBodyArm):
    """NCHW batches in, logits out: a Keras body (input to the cut point) pooled, then a torch head.

    The body runs in Keras's inference mode (BatchNorm moving statistics untouched, dropout off)
    while ``frozen_statistics`` is set or none of its weights train, which is Keras's own
    fine-tuning recipe (``base_model(inputs, training=False)`` with the base unfrozen), and in
    training mode otherwise (the scratch baseline).
    """

    def __init__(self, body: Any, head: torch.nn.Module) -> None:
        super().__init__(head)
        self.body = body
        self.frozen_statistics = False
        # Keras's non-trainable variables (BatchNorm moving statistics) are torch parameters here, not
        # buffers: they must never receive gradients, whatever the loop unfreezes.
        self.untrainable = {id(p) for p in body.parameters() if not p.requires_grad}

    def set_statistics_frozen(self, frozen: bool) -> None:
        """Told by :meth:`Arm.train_mode <zooprobe.backbones.contract.Arm.train_mode>` its ``keep_statistics``."""
        self.frozen_statistics = frozen or not any(p.requires_grad for p in self.body.parameters())

    def pooled(self, batch: torch.Tensor) -> torch.Tensor:
        """The body's features at the cut, averaged over H and W as ``KerasBackbone.extract`` pools them."""
        features: torch.Tensor = self.body(
            batch.permute(0, 2, 3, 1), training=self.training and not self.frozen_statistics
        )
        return features.mean(dim=(1, 2)) if features.ndim == 4 else features.flatten(1)


def keras_arm(model: KerasArm, head: torch.nn.Module) -> Arm:
    """The arm the training loop drives: Keras's statistics never train and follow ``keep_statistics``."""
    return Arm(model, head, frozen_parameters=model.untrainable, statistics_frozen=model.set_statistics_frozen)


def build_keras_arm(
    backbone: KerasApplication,
    layer: str,
    resolution: tuple[int, int],
    make_head: Callable[[int], torch.nn.Module],
    *,
    pretrained: bool,
    seed: int,
) -> tuple[KerasArm, torch.nn.Module]:
    """(model, head): a copy of the application up to ``layer`` (``pre_logits``: the classifier's
    input) under a new head of ``make_head(width)``; with ``pretrained`` False the copy keeps the
    architecture with the application's own random initialisation (the scratch baseline)."""
    keras.utils.set_random_seed(seed)
    # new variables, initialised by each layer's initializer, on an input of the training resolution
    # (an application built with its top has a fixed 224 x 224 input; its weights do not depend on it)
    try:
        copy = clone_on_input(backbone.model, resolution, copy_weights=pretrained)
    except ValueError as exc:  # a Flatten before the classifier ties the weights to the input size
        native = backbone.model.inputs[0].shape[1]
        raise ZooprobeError(
            f"'{backbone.entry.id}' cannot be rebuilt at {resolution[0]}x{resolution[1]} px"
            f" ({str(exc).splitlines()[0]}); fine-tune it at its own size, --resolution {native}"
        ) from None
    assert backbone.classifier is not None
    (output,) = cut_outputs(copy, backbone.classifier.name, [layer])
    body = keras.Model(copy.inputs, output)
    arm = KerasArm(body, torch.nn.Identity())
    return arm, arm.attach_head(make_head, resolution)
