"""Precise BatchNorm (Wu & Johnson 2021, "Rethinking 'Batch' in BatchNorm"): before an arm is evaluated,
the running statistics of every BatchNorm layer that trains are recomputed on the training data.

Why: during training a BatchNorm layer normalises with the statistics of its mini-batch, while in
evaluation it uses running averages updated with momentum 0.1. After a few dozen steps from their
initial values (a scratch arm's: mean 0, variance 1), and while the weights under them keep moving,
those averages lag far behind what the layer sees now; the network then fits its training data in
training mode and predicts one class for everything in evaluation mode. That is a measurement
artefact, not evidence about the data. Recomputing the statistics with the current weights (a pass
in training mode, no gradients, with cumulative rather than exponential averaging) removes it.

Only torch BatchNorm modules in training mode are recomputed: layers frozen, or whose pretrained
statistics are kept (``keep_bn_statistics``), are in inference mode and stay as they are. A body whose
normalisation is not a torch BatchNorm module (Keras layers, a TensorFlow graph) has none to
recompute: :func:`recompute_statistics` then returns 0 and the arm is evaluated as it is.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import torch

# Wu & Johnson find the estimate stable from about 10^3 examples; more only costs time.
PRECISE_BN_EXAMPLES = 2048


def training_batchnorms(model: torch.nn.Module) -> list[torch.nn.modules.batchnorm._BatchNorm]:
    """The BatchNorm layers of ``model`` that are in training mode and keep running statistics."""
    import torch

    return [
        module
        for module in model.modules()
        if isinstance(module, torch.nn.modules.batchnorm._BatchNorm)
        and module.training
        and module.track_running_stats
        and module.running_mean is not None
    ]


def recompute_statistics(
    model: torch.nn.Module,
    inputs: Iterable[torch.Tensor],
    *,
    max_examples: int = PRECISE_BN_EXAMPLES,
    autocast: tuple[str, torch.dtype, bool] | None = None,
) -> int:
    """Replace the running mean and variance of each BatchNorm layer of ``model`` in training mode by
    their equally weighted average over batches of ``inputs`` (at most about ``max_examples`` examples).

    ``model`` is left in the mode it was in, with its layers' momentum restored; nothing else in it
    changes (no gradients are computed; a layer outside the BatchNorm ones updates nothing in a forward
    pass in training mode except dropout's random draws). ``autocast`` is (device type, dtype, enabled)
    as the training step runs. Returns how many examples the statistics were computed on: 0 when no
    BatchNorm layer of ``model`` trains.
    """
    import contextlib

    import torch

    layers = training_batchnorms(model)
    if not layers:
        return 0
    momenta = [layer.momentum for layer in layers]
    for layer in layers:
        layer.reset_running_stats()
        layer.momentum = None  # cumulative moving average: every batch counts the same
    seen = 0
    context = torch.autocast(autocast[0], dtype=autocast[1], enabled=autocast[2]) if autocast else None
    try:
        with torch.no_grad(), context if context is not None else contextlib.nullcontext():
            for batch in inputs:
                if seen >= max_examples:
                    break
                model(batch)
                seen += len(batch)
    finally:
        for layer, momentum in zip(layers, momenta, strict=True):
            layer.momentum = momentum
    return seen
