"""The ray executor against the local one: 4 candidates assessed on scikit-learn's digits.

Candidates are small random CNNs (no download), so the measurement is of the executor, not of a
model zoo. Local runs on ``--share`` of the 1,797 digits and on a quarter of that (after a warm-up
run), to split a unit's cost into a fixed part and a per-image part. Ray runs on a local cluster of
``--workers`` CPUs (its start-up printed apart), first with cold worker processes on the quarter
data, then warm on the full share. Prints the Ray overhead per unit (the worker-seconds a unit that
does nothing takes, sent as assessment units are) and the wall ratio Ray / local. Targets: overhead
under 1 s per unit; wall at most 1.15x local on a 2-core machine. Also the overhead per fine-tuning
arm unit: a unit that streams 5 epoch records to the driver (through the inbox actor), training nothing.

    python benchmarks/bench_distributed.py [--workers 2] [--candidates 4]
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path
from typing import Any

WORK = Path(tempfile.mkdtemp(prefix="zooprobe-bench-distributed-"))
os.environ["ZOOPROBE_HOME"] = str(WORK / "home")
os.environ["ZOOPROBE_PLUGINS"] = "metrics"  # the candidates come with their loader: no catalog sync
OPTIONS: dict[str, Any] = {"layers": "auto", "folds": 3, "seed": 0, "progress": False}


def cnn(entry: Any) -> Any:
    """A random CNN, seeded by the candidate's name (this function travels to the workers by value)."""
    import torch

    from zooprobe.backbones.backbone import TorchBackbone, block_cut_points, last_linear

    torch.manual_seed(sum(map(ord, entry.name)))
    widths = (3, 32, 64, 128)
    convs = [
        layer
        for cin, cout in zip(widths, widths[1:], strict=False)
        for layer in (torch.nn.Conv2d(cin, cout, 3, padding=1, stride=2 if cout == 64 else 1), torch.nn.ReLU())
    ]
    head = [torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten(), torch.nn.Linear(widths[-1], 10)]
    model = torch.nn.Sequential(*convs, *head).eval()
    classifier = last_linear(model)
    return TorchBackbone(entry, model, block_cut_points(model, classifier), classifier)


def entries(count: int) -> list[Any]:
    from zooprobe.catalog.schema import Entry, InputSpec

    spec = InputSpec(channels=3, default_resolution=(32, 32), mean=(0.5,) * 3, std=(0.25,) * 3)
    return [Entry(source="bench", name=f"cnn{i}", architecture="cnn", input=spec) for i in range(count)]


def digits(path: Path, share: float) -> str:
    import numpy as np
    from sklearn.datasets import load_digits

    data = load_digits()
    keep = np.arange(len(data.target))[: int(len(data.target) * share)]
    np.savez(path, x=(data.images[keep] * 255 / 16).astype(np.uint8), y=data.target[keep])
    return str(path)


def timed(data: str, count: int, home: str, **options: Any) -> tuple[float, Any]:
    from zooprobe.evaluator.assess import assess

    start = time.perf_counter()
    result = assess(data, entries(count), loader=cnn, home=WORK / home, **OPTIONS, **options)
    return time.perf_counter() - start, result


def nothing(unit: int, shared: Any) -> int:
    """A unit that does no work: what is left of its time is the executor's."""
    return unit


def reporting(unit: int, shared: Any, emit: Any) -> int:
    """A fine-tuning arm's shape with no training: an item (an epoch record) emitted per epoch."""
    for epoch in range(EPOCHS_PER_ARM):
        emit((unit, epoch))
    return unit


EPOCHS_PER_ARM = 5


def arm_overhead(workers: int, units: int = 20) -> float:
    """Worker-seconds per unit that only streams ``EPOCHS_PER_ARM`` items to the driver, as arm units do."""
    from zooprobe.executors.base import Job
    from zooprobe.executors.ray_executor import RayExecutor

    executor = RayExecutor(owns_cluster=False)
    received: list[Any] = []
    job = Job(
        reporting, range(units), None, lambda u, r: None, lambda u, e: None, on_item=lambda u, i: received.append(i)
    )
    start = time.perf_counter()
    executor.run(job)
    seconds = time.perf_counter() - start
    assert len(received) == units * EPOCHS_PER_ARM, len(received)
    return seconds * workers / units


def unit_overhead(data: str, workers: int, units: int = 20) -> float:
    """Worker-seconds per unit that does nothing, sent as assessment units are (same shared data, resources)."""
    from zooprobe.evaluator.units import SharedData
    from zooprobe.executors.base import Job
    from zooprobe.executors.ray_executor import RayExecutor

    executor = RayExecutor(owns_cluster=False)
    shared = executor.share(SharedData(spec=data))
    start = time.perf_counter()
    executor.run(Job(nothing, range(units), shared, lambda unit, result: None, lambda unit, error: None))
    return (time.perf_counter() - start) * workers / units


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--candidates", type=int, default=4)
    parser.add_argument("--share", type=float, default=0.25, help="of the 1,797 digits to assess on")
    args = parser.parse_args()
    import ray

    full, quarter = digits(WORK / "digits.npz", args.share), digits(WORK / "quarter.npz", args.share / 4)
    images, few = int(1797 * args.share), int(1797 * args.share / 4)
    k, w = args.candidates, args.workers
    timed(quarter, k, "local-warm-up")  # the first assessment in a process pays imports and first-call costs
    local_quarter, _ = timed(quarter, k, "local-quarter")
    local, local_result = timed(full, k, "local")
    per_image = (local - local_quarter) / k / (images - few)
    per_unit = local / k - per_image * images
    start = time.perf_counter()
    ray.init(num_cpus=w, include_dashboard=False)
    started = time.perf_counter() - start
    # the first units start the worker processes (Python, torch, zooprobe imports): a cluster pays that once
    cold, _ = timed(quarter, k, "ray-cold", executor="ray")
    remote, remote_result = timed(full, k, "ray", executor="ray")
    overhead = unit_overhead(quarter, w)
    streamed = arm_overhead(w)
    ray.shutdown()
    for candidate in remote_result.candidates:
        if candidate["status"] != "done":
            print(f"{candidate['model']}: {candidate['status']} ({candidate['skip_reason']})")
    same = remote_result.summary["ranking"] == local_result.summary["ranking"]
    print(f"candidates {k}, images {images}, ray workers {w} (cluster start {started:.1f} s, not counted)")
    print(f"local: {local:.1f} s ({local / k:.2f} s per unit); quarter data: {local_quarter:.1f} s")
    print(f"per image per unit: {per_image * 1e3:.2f} ms; fixed per unit (load, scoring set-up): {per_unit:.2f} s")
    print(f"ray, cold workers, quarter data: {cold:.1f} s ({(cold * w - local_quarter) / k:.2f} worker-s per unit)")
    print(f"ray:   {remote:.1f} s; wall ratio ray/local {remote / local:.2f} (target <= 1.15)")
    print(f"ray overhead per unit: {overhead * 1e3:.1f} worker-ms (target < 1 s); same ranking as local: {same}")
    print(
        f"ray overhead per fine-tuning arm unit ({EPOCHS_PER_ARM} epoch records streamed):"
        f" {streamed * 1e3:.1f} worker-ms"
    )


if __name__ == "__main__":
    main()
