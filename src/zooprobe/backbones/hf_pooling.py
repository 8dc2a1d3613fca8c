"""The names of a transformers encoder's pooled cut points and its token pooling, shared by the adapter
(:mod:`~zooprobe.backbones.hf_backbone`) and its training arms (:mod:`~zooprobe.backbones.hf_finetune`): a
head trained on cached features reads exactly what extraction pooled."""

from __future__ import annotations

from typing import TYPE_CHECKING

from .backbone import pool

if TYPE_CHECKING:
    import torch

POOLED = "pooled"
EMBEDDINGS = "embeddings"


def masked_mean(hidden: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
    """Mean over tokens counting only those the attention mask keeps; plain pooling without a mask."""
    if mask is None or hidden.ndim != 3:
        return pool(hidden)
    weights = mask.to(hidden.dtype).unsqueeze(-1)
    return (hidden * weights).sum(dim=1) / weights.sum(dim=1).clamp(min=1e-9)
