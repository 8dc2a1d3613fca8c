"""Cost of building and writing a report, against baselines measured in the same run.

A synthetic run store holds one assessment (``--candidates`` backbones, 8 cut points each) and one
fine-tuning run (a strategy arm and scratch, ``--epochs`` epochs each). Baselines:

- reading the same rows straight from the run store (``list``, ``candidates``, ``epochs``): the
  floor any report pays. Target: building the model and writing Markdown, CSV or JSON costs under
  10x that read (the tables and formatting are the rest).
- drawing the same three figures and four axes with bare matplotlib calls (lines only, default
  size, no styling, no encoding): the floor of the HTML report. Target: the whole HTML report
  under 1.5x that.

    python benchmarks/bench_report.py [--candidates 50] [--epochs 30] [--repeat 5]
"""

from __future__ import annotations

import argparse
import io
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from zooprobe.reports import build_report, render
from zooprobe.runs.records import AssessSummary, CandidateResult
from zooprobe.runs.store import EpochRecord, RunStore

LAYERS = 8


def fill(store: RunStore, candidates: int, epochs: int) -> None:
    assess = store.create("assess", "sklearn:digits", {"models": []}, data_hash="0" * 16)
    for position in range(candidates):
        profile = [
            {"layer": f"f.{i}", "depth": (i + 1) / LAYERS, "probe_accuracy": 0.8 + 0.01 * i, "probe_spread": 0.01}
            for i in range(LAYERS)
        ]
        doc = {
            "model": f"timm:model_{position}.tag", "source": "timm", "params": 5_000_000 + position,
            "macs": {"value": 0.4, "unit": "GMACs", "resolution": 224}, "status": "done", "skip_reason": None,
            "input_check": {"status": "compatible", "adaptations": [], "reason": None},
            "data_ratio": {"source_examples": 1_281_167, "target_examples": 1797, "examples_per_class_min": 174,
                           "ratio": 0.0014, "flags": []},
            "best_layer": "f.7", "probe_accuracy": 0.87, "probe_spread": 0.01,
            "scores": {"knn_accuracy": 0.85, "logme": 1.1, "hscore": 30.0, "leep": -2.0},
            "consensus": 0.1, "rank": position + 1, "layer_profile": profile,
            "recommendation": {"strategy": "head", "cut": None, "train": "new", "finetune_arg": "head",
                               "expected_accuracy": 0.87, "uncertainty": 0.01, "evidence": "peak at the last layer"},
        }  # fmt: skip
        store.put_candidate(assess.id, position, CandidateResult.from_json(doc))
    store.finish(assess.id, AssessSummary(ranking=[], seconds=1.0))
    tune = store.create(
        "finetune", "sklearn:digits", {"model": "timm:model_0.tag", "strategy": "head", "arms": ["head", "scratch"],
                                       "epochs": epochs, "assess_run": assess.id}, data_hash="0" * 16,
    )  # fmt: skip
    for arm in ("head", "scratch"):
        for epoch in range(1, epochs + 1):
            store.put_epoch(tune.id, EpochRecord(arm, epoch, 1 / epoch, 1.1 / epoch, 1 - 0.5 / epoch, None, 1.0))
    store.finish(tune.id, None)


def median_seconds(function: Callable[[], Any], repeat: int) -> float:
    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        function()
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def bare_plots(store: RunStore) -> None:
    from matplotlib.figure import Figure

    runs = store.list()
    assess = next(r for r in runs if r.kind == "assess")
    tune = next(r for r in runs if r.kind == "finetune")
    curves = [[e.val_accuracy for e in store.epochs(tune.id, arm)] for arm in ("head", "scratch")]
    profiles = [[p.probe_accuracy for p in result.layer_profile] for result in store.candidates(assess.id)[:3]]
    # The same figures as the report: learning curves (loss and accuracy side by side), profiles, prediction.
    for lines, columns in ((curves, 2), (profiles, 1), ([[0.87, 0.9]], 1)):
        figure = Figure()
        for axes in figure.subplots(1, columns, squeeze=False)[0]:
            for values in lines:
                axes.plot(values)
        figure.savefig(io.BytesIO(), format="png")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--candidates", type=int, default=50)
    parser.add_argument("--epochs", type=int, default=30)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as home, RunStore(Path(home)) as store:
        fill(store, args.candidates, args.epochs)

        def read_rows() -> None:
            for run in store.list():
                store.candidates(run.id)
                store.epochs(run.id)

        read = median_seconds(read_rows, args.repeat)
        print(f"baseline: reading the rows         {read * 1e3:8.2f} ms")
        for fmt in ("md", "csv", "json"):
            seconds = median_seconds(lambda fmt=fmt: render(build_report(store), fmt), args.repeat)
            print(f"build + {fmt:<4}                       {seconds * 1e3:8.2f} ms  {seconds / read:5.2f}x the read")
        bare_plots(store)  # the first figure pays matplotlib's import and font cache
        plots = median_seconds(lambda: bare_plots(store), args.repeat)
        print(f"baseline: three bare matplotlib plots {plots * 1e3:6.1f} ms")
        seconds = median_seconds(lambda: render(build_report(store), "html"), args.repeat)
        print(f"build + html                       {seconds * 1e3:8.1f} ms  {seconds / plots:5.2f}x the bare plots")


if __name__ == "__main__":
    main()
