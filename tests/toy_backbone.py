"""A small randomly initialised CNN as a Backbone: a candidate that loads and scores in a second on CPU."""

from __future__ import annotations

from zooprobe.backbones.backbone import TorchBackbone, block_cut_points, last_linear
from zooprobe.catalog.schema import Entry, InputSpec

TOY_INPUT = InputSpec(channels=3, default_resolution=(16, 16), mean=(0.5,) * 3, std=(0.25,) * 3)


def toy_entry(name: str, source: str = "toy") -> Entry:
    """An entry for :func:`toy_cnn`: 16 x 16 RGB input."""
    return Entry(source=source, name=name, architecture="toycnn", input=TOY_INPUT, params=1000)


def toy_cnn(entry: Entry, seed: int = 0) -> TorchBackbone:
    """Two convolutions, pooling and a 5-class head (weights from ``seed``), with the usual cut points."""
    import torch

    torch.manual_seed(seed)
    model = torch.nn.Sequential(
        torch.nn.Conv2d(3, 32, 3, padding=1),
        torch.nn.ReLU(),
        torch.nn.Conv2d(32, 64, 3, padding=1),
        torch.nn.AdaptiveAvgPool2d(1),
        torch.nn.Flatten(),
        torch.nn.Linear(64, 5),
    ).eval()
    classifier = last_linear(model)
    return TorchBackbone(entry, model, block_cut_points(model, classifier), classifier)
