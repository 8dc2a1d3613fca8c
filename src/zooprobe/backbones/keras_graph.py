"""Keras functional graphs rebuilt for zooprobe: a copy on another input size, symbolic outputs at cut points."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from .contract import PRE_LOGITS


def clone_on_input(model: Any, size: tuple[int | None, int | None], *, copy_weights: bool) -> Any:
    """A copy of the functional ``model`` on an input of ``size`` (height, width): new variables, set from
    the model's own weights when ``copy_weights``, else left to each layer's initializer.

    :raises ValueError: when a layer's weights depend on the input size (a ``Flatten`` before a ``Dense``).
    """
    import keras

    inputs = keras.Input(shape=(*size, model.inputs[0].shape[-1]))
    clone = keras.models.clone_model(model, input_tensors=inputs)
    if copy_weights:
        clone.set_weights(model.get_weights())
    return clone


def cut_outputs(model: Any, classifier_name: str, names: Sequence[str]) -> list[Any]:
    """The symbolic outputs of ``model`` at each cut point name (``pre_logits``: the classifier's input).

    Cut points may be ops, not layers (ConvNeXt's ``inputs + x``): ``get_layer`` cannot find those.

    :raises KeyError: for a name that is not an operation of ``model``.
    """
    by_name = {op.name: op for op in model.operations}
    return [by_name[classifier_name].input if name == PRE_LOGITS else by_name[name].output for name in names]
