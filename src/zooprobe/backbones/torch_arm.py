"""Training arms of torch models: the pretrained model cut at a module under a new head, or re-initialised."""

from __future__ import annotations

import copy
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

from ..errors import ZooprobeError
from .contract import PRE_LOGITS, Arm, HeadFactory

if TYPE_CHECKING:
    import torch


def module_name(model: torch.nn.Module, module: torch.nn.Module) -> str:
    """The dotted name of ``module`` inside ``model``."""
    for name, candidate in model.named_modules():
        if candidate is module:
            return str(name)
    raise ValueError("module is not part of the model")


def cut_arm(
    entry_id: str,
    model: torch.nn.Module,
    classifier: torch.nn.Module | None,
    cut_points: Sequence[str],
    layer: str,
    make_head: HeadFactory,
    resolution: tuple[int, int],
) -> Arm:
    """A copy of ``model`` with every cut point after ``layer`` replaced by an identity and the classifier
    by ``make_head(width)``, ``width`` measured on one blank image."""
    import torch

    arm_model = copy.deepcopy(model)
    if layer != PRE_LOGITS:
        after = list(cut_points).index(layer) + 1
        for name in cut_points[after:]:
            if name != PRE_LOGITS:
                arm_model.set_submodule(name, torch.nn.Identity())
    if classifier is None:
        raise ZooprobeError(f"'{entry_id}' has no classifier layer that a new head could replace")
    head_name = module_name(model, classifier)
    arm_model.set_submodule(head_name, torch.nn.Identity())
    arm_model.eval()
    with torch.inference_mode():
        width = int(arm_model(torch.zeros(1, 3, *resolution)).flatten(1).shape[1])
    head = make_head(width)
    arm_model.set_submodule(head_name, head)
    return Arm(arm_model, head)


def reset_copy(model: torch.nn.Module) -> torch.nn.Module:
    """A copy of ``model`` whose every layer has its parameters and running statistics reset."""
    fresh = copy.deepcopy(model)
    for module in fresh.modules():
        reset = getattr(module, "reset_parameters", None)
        if callable(reset):
            reset()
        reset_stats = getattr(module, "reset_running_stats", None)
        if callable(reset_stats):
            reset_stats()
    return fresh


def scratch_arm(
    entry_id: str,
    model: torch.nn.Module,
    classifier: torch.nn.Module | None,
    scratch_model: Callable[[], torch.nn.Module],
    num_classes: int,
) -> Arm:
    """``scratch_model()`` with the module at the classifier's place replaced by a linear layer of
    ``num_classes`` outputs."""
    import torch

    fresh = scratch_model()
    if classifier is None:
        raise ZooprobeError(f"'{entry_id}' has no classifier layer: --baseline scratch needs one")
    name = module_name(model, classifier)
    old = fresh.get_submodule(name)
    assert isinstance(old, torch.nn.Linear)
    head = torch.nn.Linear(old.in_features, num_classes)
    fresh.set_submodule(name, head)
    return Arm(fresh, head)
