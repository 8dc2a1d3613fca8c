"""Backbones that are not torch modules: TF-Hub SavedModels and Keras models called on NHWC batches.

They keep :class:`~zooprobe.backbones.backbone.Backbone`'s surface (``entry``, ``cut_points``,
``preprocess``, ``extract``), so ``extract_features`` runs them unchanged: images are preprocessed
exactly as for torch backbones (resize, centre crop, scale to [0, 1], the entry's mean/std when it
has one: TF-Hub's image convention is plain [0, 1]), then handed to the model channels-last.

Cut points are the model's named outputs: ``output`` for a model returning one tensor (a TF-Hub
feature vector), or the keys of the dictionary it returns (``pooled_output``, ``sequence_output``
...). Each is pooled to one vector per example like torch features (mean over H, W or tokens).
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from importlib.util import find_spec
from typing import TYPE_CHECKING, Any

from ..catalog.schema import Entry
from ..errors import ZooprobeError
from .backbone import Backbone

if TYPE_CHECKING:
    import numpy as np
    import numpy.typing as npt
    import torch

OUTPUT = "output"


def import_tensorflow() -> Any:
    """``import tensorflow``, loading triton first when it is installed.

    triton's native libraries crash the process (segfault) when they load after TensorFlow's, and
    TensorFlow 2.21 imports Keras, which on the torch backend imports torch._dynamo and so triton.
    """
    if "tensorflow" not in sys.modules and find_spec("triton") is not None:
        import triton  # noqa: F401

    import tensorflow as tf

    return tf


def to_numpy(value: Any) -> npt.NDArray[np.float32]:
    """A TensorFlow, torch or Keras tensor (or an array) as a float32 NumPy array."""
    import numpy as np

    if hasattr(value, "detach"):
        value = value.detach().float().cpu().numpy()
    elif hasattr(value, "numpy"):
        value = value.numpy()
    return np.asarray(value, dtype=np.float32)


def pool_channels_last(value: npt.NDArray[np.float32]) -> npt.NDArray[np.float32]:
    """One vector per example: mean over H, W for (N, H, W, C), over tokens for (N, L, C)."""
    import numpy as np

    if value.ndim == 4:
        return np.asarray(value.mean(axis=(1, 2)), dtype=np.float32)
    if value.ndim == 3:
        return np.asarray(value.mean(axis=1), dtype=np.float32)
    return value.reshape(len(value), -1)


def output_names(model: Any) -> list[str]:
    """The named outputs of a restored SavedModel or Keras model: its dict keys, or ``['output']``."""
    outputs = None
    concrete = concrete_functions(model)
    if concrete:
        outputs = concrete[0].structured_outputs
    elif getattr(model, "signatures", None) and not callable(model):
        outputs = _signature(model).structured_outputs
    if isinstance(outputs, Mapping):
        return sorted(outputs)
    return [OUTPUT]


def with_resolution(entry: Entry, resolution: tuple[int, int] | None) -> Entry:
    """``entry`` with the model's own input size filled in where the catalog does not know it."""
    if entry.modality != "image" or entry.input.default_resolution is not None or resolution is None:
        return entry
    return replace(entry, input=replace(entry.input, default_resolution=resolution))


def concrete_functions(model: Any) -> list[Any]:
    """The traced functions behind a restored SavedModel's ``__call__`` (none for Keras or TF1 modules)."""
    call = model.__call__ if callable(model) else None
    return list(getattr(call, "concrete_functions", None) or [])


def _signature(model: Any) -> Any:
    signatures = model.signatures
    for key in ("default", "serving_default"):
        if key in signatures:
            return signatures[key]
    return next(iter(signatures.values()))


@dataclass
class TFBackbone(Backbone):
    """A backbone whose model is called on channels-last batches (TF SavedModel or Keras model).

    ``model`` is what ``hub.load``/``tf.saved_model.load`` or ``keras.saving.load_model`` returned;
    ``classifier`` is always None (hub feature-vector models have no head to cut before);
    ``restore`` loads another, independent copy of a SavedModel (None for Keras models), which
    fine-tuning trains so that this one stays as loaded.
    """

    model: Any
    classifier: None = None
    restore: Callable[[], Any] | None = None

    def __getstate__(self) -> dict[str, Any]:
        # DataLoader workers only preprocess: they get the entry, not the (unpicklable) TF graph.
        return {**self.__dict__, "model": None, "restore": None}

    def restore_copy(self) -> Any:
        """A fresh copy of the SavedModel, with its own variables.

        :raises ZooprobeError: for a model that is not a restorable SavedModel.
        """
        if self.restore is None:
            raise ZooprobeError(f"'{self.entry.id}' is not a SavedModel that zooprobe can restore a copy of")
        return self.restore()

    def _call(self, inputs: Any) -> dict[str, npt.NDArray[np.float32]]:
        if callable(self.model):
            outputs = self.model(inputs)
        else:  # a TF1-format hub module: only signatures are callable
            outputs = _signature(self.model)(inputs)
        if isinstance(outputs, Mapping):
            return {str(name): pool_channels_last(to_numpy(value)) for name, value in outputs.items()}
        if isinstance(outputs, list | tuple):
            outputs = outputs[0]
        return {OUTPUT: pool_channels_last(to_numpy(outputs))}

    def extract(self, batch: torch.Tensor, layers: Sequence[str]) -> dict[str, torch.Tensor]:
        """Pooled features of an N x 3 x H x W batch (from :meth:`preprocess`) at each named output."""
        import torch

        self.check_cut_points(layers)
        channels_last = to_numpy(batch).transpose(0, 2, 3, 1).copy()
        outputs = self._call(self._as_model_input(channels_last))
        return {layer: torch.from_numpy(outputs[layer]) for layer in layers}

    def extract_text(self, texts: Sequence[str], layers: Sequence[str] = (OUTPUT,)) -> dict[str, torch.Tensor]:
        """Embeddings of ``texts`` at each named output, for text-embedding models (a 1-D string batch)."""
        import torch

        self.check_cut_points(layers)
        outputs = self._call(self._as_model_input(list(texts)))
        return {layer: torch.from_numpy(outputs[layer]) for layer in layers}

    def _as_model_input(self, values: Any) -> Any:
        if self.entry.framework == "keras":
            return values
        return import_tensorflow().constant(values)
