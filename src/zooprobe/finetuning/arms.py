"""The model each arm trains, built by the backbone's adapter: the strategy's cut under a new head, or scratch."""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..backbones.contract import Arm, Backbone
from .strategy import Strategy

if TYPE_CHECKING:
    import torch


def framework_seed() -> int:
    """The seed handed to a framework that initialises on its own: torch's, as the trainer set it."""
    import torch

    return int(torch.initial_seed()) % 2**31


def build_arm_model(backbone: Backbone, strategy: Strategy, num_classes: int, resolution: tuple[int, int]) -> Arm:
    """The pretrained backbone up to ``strategy.layer`` under a new head: a linear layer, or an MLP of
    ``strategy.mlp`` hidden widths (ReLU between), ending in ``num_classes`` outputs."""
    import torch

    def make_head(width: int) -> torch.nn.Module:
        layers: list[torch.nn.Module] = []
        for hidden in strategy.mlp:
            layers += [torch.nn.Linear(width, hidden), torch.nn.ReLU()]
            width = hidden
        layers.append(torch.nn.Linear(width, num_classes))
        return layers[0] if len(layers) == 1 else torch.nn.Sequential(*layers)

    return backbone.build_arm(strategy.layer, make_head, resolution, seed=framework_seed())


def build_scratch_model(backbone: Backbone, layer: str, num_classes: int, resolution: tuple[int, int]) -> Arm:
    """The scratch baseline: the backbone's architecture, randomly initialised, under a new linear head
    (``layer``: the cut point the strategy arm reads, for a model without a classifier)."""
    return backbone.build_scratch_arm(layer, num_classes, resolution, seed=framework_seed())
