"""torchvision classifiers: the torch adapter, with the class names and initialisation torchvision publishes."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from .backbone import TorchBackbone

if TYPE_CHECKING:
    import torch


@dataclass
class TorchvisionBackbone(TorchBackbone):
    """A model built by ``torchvision.models.get_model`` from its weights enum (``entry.name``: ARCH.WEIGHTS)."""

    def source_class_names(self) -> list[str] | None:
        """The ``categories`` of the weights' metadata."""
        from torchvision.models import get_model_weights

        weights = get_model_weights(self.entry.architecture)[self.entry.name.split(".", 1)[1]]
        categories = weights.meta.get("categories")
        return list(categories) if categories else None

    def scratch_model(self) -> torch.nn.Module:
        """``get_model(architecture, weights=None)``: torchvision's own initialisation of the architecture."""
        from torchvision.models import get_model

        model: torch.nn.Module = get_model(self.entry.architecture, weights=None)
        return model
