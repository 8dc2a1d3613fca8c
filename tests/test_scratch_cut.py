"""A ``cut:`` run's scratch baseline is the same cut architecture (body up to the cut point under the same
head) from random initialisation, so the gain over scratch measures pretraining, not capacity."""

from __future__ import annotations

from typing import Any

from zooprobe.backbones.backbone import Backbone
from zooprobe.backbones.contract import scratch_builds_cut
from zooprobe.finetuning.arms import build_arm_model, build_scratch_model, scratch_architecture, scratch_strategy
from zooprobe.finetuning.strategy import Strategy, parse_strategy

from .test_backbone import mobilenet  # noqa: F401  (a fixture)
from .test_backbone_keras import keras_home, keras_mobilenet  # noqa: F401  (fixtures)

CUT = "cut:features.10+mlp:64"


def _shapes(module: Any) -> dict[str, tuple[int, ...]]:
    return {name: tuple(value.shape) for name, value in module.state_dict().items()}


def test_torch_cut_scratch_is_the_cut_architecture_randomly_initialised(mobilenet: Backbone) -> None:  # noqa: F811
    import torch

    strategy = parse_strategy(CUT)
    pretrained = build_arm_model(mobilenet, strategy, 3, (32, 32))
    scratch = build_scratch_model(mobilenet, strategy.layer, 3, (32, 32), mlp=strategy.mlp)
    assert _shapes(scratch.model) == _shapes(pretrained.model)
    assert _shapes(scratch.head) == {"0.weight": (64, 64), "0.bias": (64,), "2.weight": (3, 64), "2.bias": (3,)}
    assert not any(name.startswith("features.11.") for name in scratch.model.state_dict())
    first_conv = "features.0.0.weight"
    assert not torch.equal(scratch.model.state_dict()[first_conv], pretrained.model.state_dict()[first_conv])
    scratch.model.eval()
    with torch.inference_mode():
        assert scratch.model(torch.zeros(2, 3, 32, 32)).shape == (2, 3)
    # without the strategy's head: the whole network up to its classifier, as for head and full
    whole = build_scratch_model(mobilenet, strategy.layer, 3, (32, 32))
    assert any(name.startswith("features.18.") for name in whole.model.state_dict())


def test_a_cut_run_records_a_cut_scratch_and_other_runs_the_whole_network(mobilenet: Backbone) -> None:  # noqa: F811
    cut = parse_strategy(CUT)
    assert scratch_builds_cut(mobilenet)
    assert scratch_architecture(mobilenet, cut) == "cut"
    assert scratch_architecture(mobilenet, parse_strategy("full")) == "full"
    assert scratch_strategy(cut, "cut") == Strategy("cut", layer="features.10", mlp=(64,), train="all")
    # a run recorded before scratch followed the cut resumes with the whole network it started with
    assert scratch_strategy(cut, None) == Strategy("full", layer="features.10", train="all")


def test_an_adapter_without_make_head_keeps_building_the_whole_model() -> None:
    from .test_toy_framework import ToyBackbone

    toy: Any = ToyBackbone.__new__(ToyBackbone)
    assert not scratch_builds_cut(toy)
    assert scratch_architecture(toy, parse_strategy("cut:block1+mlp:8")) == "full"


def test_keras_cut_scratch_is_the_cut_architecture(keras_mobilenet: Any) -> None:  # noqa: F811
    strategy = parse_strategy("cut:block_6_expand_relu+mlp:32")
    pretrained = build_arm_model(keras_mobilenet, strategy, 3, (32, 32))
    scratch = build_scratch_model(keras_mobilenet, strategy.layer, 3, (32, 32), mlp=strategy.mlp)
    assert _shapes(scratch.model) == _shapes(pretrained.model)
    assert sum(p.numel() for p in scratch.model.parameters()) == sum(p.numel() for p in pretrained.model.parameters())
