"""Backbones that are not torch modules: TF-Hub SavedModels and Keras models called on NHWC batches.

They implement the :class:`~zooprobe.backbones.contract.Backbone` contract (``entry``, ``cut_points``,
``preprocess``, ``extract``, arms for fine-tuning), so ``extract_features`` runs them unchanged: images are preprocessed
exactly as for torch backbones (resize, centre crop, scale to [0, 1], the entry's mean/std when it
has one: TF-Hub's image convention is plain [0, 1]), then handed to the model channels-last.

Cut points are the model's named outputs: ``output`` for a model returning one tensor (a TF-Hub
feature vector), or the keys of the dictionary it returns (``pooled_output``, ``sequence_output``
...). Each is pooled to one vector per example like torch features (mean over H, W or tokens).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

from ..catalog.schema import Entry
from ..errors import ZooprobeError
from .backbone import TorchBackbone
from .contract import Arm, HeadFactory, linear_head
from .tf_runtime import concrete_functions, import_tensorflow

if TYPE_CHECKING:
    import numpy as np
    import numpy.typing as npt
    import torch

OUTPUT = "output"

__all__ = ["OUTPUT", "TFBackbone", "concrete_functions", "import_tensorflow", "output_names", "with_resolution"]


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


def _signature(model: Any) -> Any:
    signatures = model.signatures
    for key in ("default", "serving_default"):
        if key in signatures:
            return signatures[key]
    return next(iter(signatures.values()))


@dataclass
class TFBackbone(TorchBackbone):
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

    def check_trainable(self) -> None:
        """TF2 SavedModels train (see ``tf_finetune``).

        :raises ZooprobeError: for a saved ``.keras`` file or a TF1 hub module (callable only by signature).
        """
        if self.restore is None:
            raise ZooprobeError(
                f"fine-tuning saved .keras files ('{self.entry.id}') is not supported yet; assess it with"
                " zooprobe assess, or fine-tune a Keras Applications, TF-Hub TF2, torchvision, timm or Hugging Face"
                " backbone"
            )
        if not callable(self.model):
            raise ZooprobeError(
                f"'{self.entry.id}' is a TF1 hub module (callable only through its signatures), which cannot be"
                " fine-tuned; assess it with zooprobe assess, or pick the model's TF2 SavedModel version"
            )

    def head_layer(self, kind: str) -> str:
        """The model's one output: a feature-vector model has no classifier, its output is the pre-logits
        features. With several outputs the user picks one with ``cut:``.

        :raises ZooprobeError: for a model with several outputs.
        """
        if len(self.cut_points) != 1:
            raise ZooprobeError(
                f"'{self.entry.id}' has several outputs ({', '.join(self.cut_points)}): name the one a new head"
                f" reads with cut:OUTPUT, e.g. --strategy cut:{self.cut_points[0]}"
                f"{':train=all' if kind == 'full' else ''}"
            )
        return self.cut_points[0]

    def build_arm(self, layer: str, make_head: HeadFactory, resolution: tuple[int, int], *, seed: int) -> Arm:
        """A fresh restored copy of the SavedModel up to its output ``layer`` under a torch head."""
        from .tf_finetune import build_tf_arm, tf_arm

        return tf_arm(*build_tf_arm(self, layer, resolution, make_head, pretrained=True, seed=seed))

    def build_scratch_arm(
        self,
        layer: str,
        num_classes: int,
        resolution: tuple[int, int],
        *,
        seed: int,
        make_head: HeadFactory | None = None,
    ) -> Arm:
        """A restored copy up to ``layer`` (the output the strategy arm reads) under a linear head, or under
        ``make_head(width)``, every variable re-initialised with Keras's default initialiser for its role
        (see ``tf_finetune.random_initial_value``)."""
        from .tf_finetune import build_tf_arm, tf_arm

        head = linear_head(num_classes) if make_head is None else make_head
        return tf_arm(*build_tf_arm(self, layer, resolution, head, pretrained=False, seed=seed))

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
