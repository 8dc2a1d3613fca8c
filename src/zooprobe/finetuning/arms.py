"""The model each arm trains, built by the backbone's adapter: the strategy's cut under a new head, or scratch."""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..backbones.contract import Arm, Backbone, HeadFactory, scratch_builds_cut
from .strategy import Strategy

if TYPE_CHECKING:
    import torch


def framework_seed() -> int:
    """The seed handed to a framework that initialises on its own: torch's, as the trainer set it."""
    import torch

    return int(torch.initial_seed()) % 2**31


def mlp_head(mlp: tuple[int, ...], num_classes: int) -> HeadFactory:
    """The new head's factory: a linear layer, or an MLP of ``mlp`` hidden widths (ReLU between), ending in
    ``num_classes`` outputs."""
    import torch

    def make_head(width: int) -> torch.nn.Module:
        layers: list[torch.nn.Module] = []
        for hidden in mlp:
            layers += [torch.nn.Linear(width, hidden), torch.nn.ReLU()]
            width = hidden
        layers.append(torch.nn.Linear(width, num_classes))
        return layers[0] if len(layers) == 1 else torch.nn.Sequential(*layers)

    return make_head


def build_arm_model(backbone: Backbone, strategy: Strategy, num_classes: int, resolution: tuple[int, int]) -> Arm:
    """The pretrained backbone up to ``strategy.layer`` under a new head: a linear layer, or an MLP of
    ``strategy.mlp`` hidden widths (ReLU between), ending in ``num_classes`` outputs."""
    make_head = mlp_head(strategy.mlp, num_classes)
    return backbone.build_arm(strategy.layer, make_head, resolution, seed=framework_seed())


def build_scratch_model(
    backbone: Backbone,
    layer: str,
    num_classes: int,
    resolution: tuple[int, int],
    mlp: tuple[int, ...] | None = None,
) -> Arm:
    """The scratch baseline: the backbone's architecture, randomly initialised, under a new linear head
    (``layer``: the cut point the strategy arm reads, for a model without a classifier). With ``mlp`` (a
    ``cut:`` strategy's hidden widths, ``()`` for none) and an adapter that builds one (see
    :func:`~zooprobe.backbones.contract.scratch_builds_cut`): the cut architecture, the body up to ``layer``
    under the same head as the strategy arm's."""
    if mlp is not None and scratch_builds_cut(backbone):
        make_head = mlp_head(mlp, num_classes)
        return backbone.build_scratch_arm(layer, num_classes, resolution, seed=framework_seed(), make_head=make_head)
    return backbone.build_scratch_arm(layer, num_classes, resolution, seed=framework_seed())


def scratch_architecture(backbone: Backbone, strategy: Strategy) -> str:
    """What a run's scratch baseline is, as its config records it: ``cut`` (the strategy arm's cut
    architecture, re-initialised) for a ``cut:`` strategy whose adapter builds one, else ``full`` (the
    whole model up to its classifier)."""
    return "cut" if strategy.kind == "cut" and scratch_builds_cut(backbone) else "full"


def scratch_strategy(strategy: Strategy, architecture: str | None) -> Strategy:
    """The strategy the scratch arm trains: everything, of the ``architecture`` the run recorded (runs
    recorded before it: ``full``)."""
    if architecture == "cut":
        return Strategy("cut", layer=strategy.layer, mlp=strategy.mlp, train="all")
    return Strategy("full", layer=strategy.layer, train="all")
