"""Keras 3 models (torch backend) as backbones: cut points at Keras layer names, the application's preprocessing.

Cut points are found in the functional graph, not from layer-name conventions, so they hold for
every application: a layer is a *block output* when the whole network state passes through it
(no other tensor computed before it is used after it) and its output is a feature map that either
feeds several layers (the input of a block with a skip path), merges several (an ``Add`` or
``Concatenate`` ending a block) or is a pooling layer, plus the last feature map before the head.
A block output followed only by a normalisation or an activation moves to that layer (ResNet's
``conv2_block1_add`` becomes ``conv2_block1_out``). ``pre_logits`` is the input of the classifier,
the last layer with weights.

Features are read by a multi-output ``keras.Model`` over the requested layers, built once per set
of layers: Keras computes only the part of the graph those outputs need.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from .backbone import PRE_LOGITS, TorchBackbone
from .contract import Arm, HeadFactory, linear_head
from .keras_graph import clone_on_input, cut_outputs

if TYPE_CHECKING:
    import numpy as np
    import torch

__all__ = ["KerasBackbone", "clone_on_input", "cut_outputs", "keras_cut_points"]

_POOLING = ("MaxPooling2D", "AveragePooling2D")
_GLOBAL_POOLING = ("GlobalAveragePooling2D", "GlobalMaxPooling2D", "Flatten")
_FOLLOW_UPS = ("BatchNormalization", "LayerNormalization", "Activation", "ReLU")
_NOT_CUTS = ("InputLayer", "Rescaling", "Normalization", "ZeroPadding2D", "Dropout")


def _graph(model: Any) -> tuple[list[Any], list[list[int]], list[list[int]]]:
    """The model's operations in topological order, with each one's producers and consumers (indices).

    A layer reused inside other models (ConvNeXt's nested ``Sequential`` stem) has several inbound
    nodes; only the one this model owns counts.
    """
    operations = list(model.operations)
    index = {id(op): i for i, op in enumerate(operations)}
    producers: list[list[int]] = []
    for op in operations:
        nodes = [n for k, n in enumerate(op._inbound_nodes) if f"{id(op)}_ib-{k}" in model._nodes]
        tensors = nodes[0].input_tensors if nodes else []
        producers.append(
            [index[id(t._keras_history.operation)] for t in tensors if id(t._keras_history.operation) in index]
        )
    consumers: list[list[int]] = [[] for _ in operations]
    for i, inputs in enumerate(producers):
        for p in inputs:
            consumers[p].append(i)
    return operations, producers, consumers


def keras_cut_points(model: Any) -> tuple[list[str], Any]:
    """(ordered cut point names ending with ``pre_logits``, the classifier layer) of a functional model."""
    operations, producers, consumers = _graph(model)
    kinds = [type(op).__name__ for op in operations]
    classifier = next(op for op in reversed(model.layers) if op.count_params() > 0)
    head_start = operations.index(classifier)

    articulation = []
    live: set[int] = set()
    for i in range(len(operations)):
        live.add(i)
        live -= {p for p in producers[i] if max(consumers[p]) == i}
        if live == {i}:
            articulation.append(i)
            if kinds[i] in _GLOBAL_POOLING:
                head_start = min(head_start, i)
    spatial = [
        i for i in articulation if i < head_start and kinds[i] not in _NOT_CUTS and len(operations[i].output.shape) == 4
    ]

    def merges(i: int) -> bool:
        # a layers.Add or an ``inputs + x`` op (ConvNeXt); hard-swish's ``x + 3`` has one producer
        return kinds[i] in ("Add", "Concatenate") and len(producers[i]) > 1

    def height(i: int) -> Any:
        return operations[i].output.shape[1]

    chosen: list[int] = []
    for position, i in enumerate(spatial):
        last = position == len(spatial) - 1
        if (
            last
            or merges(i)
            or (len(consumers[i]) > 1 and any(merges(c) for c in consumers[i]))
            or kinds[i] in _POOLING
            or (kinds[spatial[position + 1]] not in _POOLING and height(spatial[position + 1]) != height(i))
        ):
            while len(consumers[i]) == 1 and consumers[i][0] in spatial and kinds[consumers[i][0]] in _FOLLOW_UPS:
                i = consumers[i][0]
            if i not in chosen:
                chosen.append(i)
    return [operations[i].name for i in chosen] + [PRE_LOGITS], classifier


@dataclass
class KerasBackbone(TorchBackbone):
    """A Keras functional model (a ``torch.nn.Module`` on the torch backend) called on NHWC batches.

    ``preprocess`` gives N x 3 x H x W like every backbone, scaled the way the application's own
    ``preprocess_input`` scales (``entry.input.preprocessing``: caffe, tf, torch, or built-in for
    models that rescale inside); ``extract`` hands the model the channels-last view.
    """

    model: Any
    classifier: Any
    _submodels: dict[tuple[str, ...], Any] = field(default_factory=dict, repr=False)

    def __getstate__(self) -> dict[str, Any]:
        # DataLoader workers only preprocess: they get the entry, not the Keras graph.
        return {**self.__dict__, "model": None, "classifier": None, "_submodels": {}}

    def to(self, device: str, channels_last: bool = False) -> None:
        """Nothing to move: Keras places its own variables (on CUDA when present) and batches with them."""

    def preprocess(self, images: Sequence[np.ndarray]) -> torch.Tensor:
        """uint8 H x W x C arrays -> N x 3 x H x W, resized, centre-cropped and scaled as Keras would.

        Pixels in [0, 255], minus the entry's mean, divided by its std (both in pixel units), then
        RGB -> BGR for caffe mode: what ``keras.applications.<module>.preprocess_input`` computes.
        """
        import torch

        spec = self.entry.input
        out = self.resize_and_crop(images) * 255.0
        if spec.mean and spec.std:
            out = (out - torch.tensor(spec.mean).view(1, -1, 1, 1)) / torch.tensor(spec.std).view(1, -1, 1, 1)
        if spec.preprocessing == "caffe":
            out = out.flip(1)
        return out

    def extract(self, batch: torch.Tensor, layers: Sequence[str]) -> dict[str, torch.Tensor]:
        """Pooled features of an N x 3 x H x W batch at each Keras layer name (or ``pre_logits``)."""
        import torch

        self.check_cut_points(layers)
        key = tuple(dict.fromkeys(layers))
        if key not in self._submodels:
            self._submodels[key] = self._submodel(key)
        with torch.no_grad():
            outputs = self._submodels[key](batch.permute(0, 2, 3, 1), training=False)
        if not isinstance(outputs, list | tuple):
            outputs = [outputs]
        pooled = {name: _pool_channels_last(value) for name, value in zip(key, outputs, strict=True)}
        return {name: pooled[name] for name in layers}

    @property
    def head_gives_probabilities(self) -> bool:
        """A Keras Applications head is a Dense layer with its softmax built in: its output is already the
        probabilities (a second softmax would flatten 1000 classes to near-uniform)."""
        activation = getattr(self.classifier, "activation", None)
        return getattr(activation, "__name__", "") == "softmax"

    def build_arm(self, layer: str, make_head: HeadFactory, resolution: tuple[int, int], *, seed: int) -> Arm:
        """A Keras copy of the application up to ``layer`` under a torch head (see ``keras_finetune``)."""
        from .keras_finetune import build_keras_arm, keras_arm

        return keras_arm(*build_keras_arm(self, layer, resolution, make_head, pretrained=True, seed=seed))

    def build_scratch_arm(
        self,
        layer: str,
        num_classes: int,
        resolution: tuple[int, int],
        *,
        seed: int,
        make_head: HeadFactory | None = None,
    ) -> Arm:
        """The application's architecture up to its classifier under a linear head (with ``make_head``: up
        to ``layer`` under ``make_head(width)``), with each layer's own initialiser."""
        from .keras_finetune import build_keras_arm, keras_arm

        cut, head = (PRE_LOGITS, linear_head(num_classes)) if make_head is None else (layer, make_head)
        return keras_arm(*build_keras_arm(self, cut, resolution, head, pretrained=False, seed=seed))

    def _submodel(self, names: tuple[str, ...]) -> Any:
        import keras

        model = self.flexible_model()
        try:
            tensors = cut_outputs(model, self.classifier.name, names)
        except KeyError:  # an op the clone named differently: the original model, at its own size
            model = self.model
            tensors = cut_outputs(model, self.classifier.name, names)
        return keras.Model(model.inputs, tensors)

    def flexible_model(self) -> Any:
        """The model on an input of any height and width, sharing nothing with the original.

        An application built with its top has a fixed 224 x 224 input, but its weights do not depend
        on it (global pooling precedes the classifier); a model whose layers do (``Flatten``) stays as
        it is, at its own size.
        """
        key = ("__flexible__",)
        if key not in self._submodels:
            try:
                self._submodels[key] = clone_on_input(self.model, (None, None), copy_weights=True)
            except (ValueError, TypeError):
                self._submodels[key] = self.model
        return self._submodels[key]


def _pool_channels_last(value: torch.Tensor) -> torch.Tensor:
    """One vector per example: mean over H, W of (N, H, W, C); (N, C) as it is."""
    value = value.detach().float().cpu()
    if value.ndim == 4:
        return value.mean(dim=(1, 2))
    return value.flatten(1)
