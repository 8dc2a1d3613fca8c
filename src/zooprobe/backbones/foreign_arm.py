"""What the Keras and TensorFlow training arms share: a foreign body pooled to vectors, then a torch head.

Imports torch at import: import it only where such an arm is being built.
"""

from __future__ import annotations

from collections.abc import Callable

import torch


class PooledBodyArm(torch.nn.Module):
    """NCHW batches in, logits out: ``pooled(batch)`` (the body's features at the cut, one vector per
    example) under ``head``. Subclasses implement ``pooled``."""

    def __init__(self, head: torch.nn.Module) -> None:
        super().__init__()
        self.head = head

    def pooled(self, batch: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def forward(self, batch: torch.Tensor) -> torch.Tensor:
        logits: torch.Tensor = self.head(self.pooled(batch))
        return logits

    def attach_head(self, make_head: Callable[[int], torch.nn.Module], resolution: tuple[int, int]) -> torch.nn.Module:
        """Replace the head by ``make_head(width)``, the width measured on one blank image; returns it."""
        self.eval()
        with torch.inference_mode():
            width = int(self.pooled(torch.zeros(1, 3, *resolution)).shape[1])
        self.head = make_head(width)
        return self.head
