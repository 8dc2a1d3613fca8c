"""Catalog search speed.

(a) Cold CLI: wall time of ``zooprobe search`` in a fresh interpreter against ``python -c pass``
    measured in the same run (target: at most 0.35 s above it).
(c) First search: wall and CPU time of ``zooprobe search`` on an empty home, which syncs the
    offline sources first (from the shipped listings where the installed versions match), against
    ``python -c pass`` (target: at most 2 s above it).
(b) Query latency at scale: p50/p99 of text + numeric-filter + sort queries over N synthetic
    records (default 1,000,000; targets p50 <= 20 ms, p99 <= 100 ms), against a full scan of
    the same query in Python over the same records as the baseline.

    python benchmarks/bench_search.py [--records 1000000] [--runs 15] [--first-runs 3] [--keep DIR]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import fields
from pathlib import Path

from zooprobe.catalog.schema import Compute, Entry, InputSpec, PretrainStage, ReportedMetric
from zooprobe.catalog.store import Catalog, Query

FAMILIES = ["resnet", "convnext", "vit", "efficientnet", "mobilenet", "regnet", "swin", "deit", "beit", "coat"]
DATASETS = ["imagenet-1k", "imagenet-21k", "laion-2b", "ig-1b"]
WORDS = ["augreg", "a1", "ra", "tv", "lamb", "gluon", "dist", "clip", "mim", "sw", "fb", "tf", "in1k", "ft"]


def synthetic(n: int, seed: int = 0) -> Iterator[Entry]:
    rng = random.Random(seed)
    for i in range(n):
        fam = FAMILIES[i % len(FAMILIES)]
        arch = f"{fam}{rng.randint(10, 200)}_{rng.choice(WORDS)}"
        yield Entry(
            source="synth",
            name=f"{arch}.{rng.choice(WORDS)}_{i}",
            architecture=arch,
            family=fam,
            tasks=("image-classification",),
            input=InputSpec(channels=3, default_resolution=(r := rng.choice((224, 256, 288, 384)), r)),
            params=int(rng.lognormvariate(17, 1.2)),
            compute=Compute(round(rng.lognormvariate(1, 1), 3), "GMACs", 224),
            pretraining=(PretrainStage(rng.choice(DATASETS)),),
            metrics=(ReportedMetric("imagenet-1k", "top1", round(rng.uniform(55, 90), 3)),),
            tags=tuple(rng.sample(WORDS, 2)),
        )


def describe(q: Query) -> str:
    return ", ".join(f"{f.name}={getattr(q, f.name)!r}" for f in fields(q) if getattr(q, f.name) != f.default)


def cold_cli(home: Path, runs: int) -> None:
    env = {**os.environ, "ZOOPROBE_HOME": str(home)}

    def timed(cmd: list[str]) -> float:
        best = []
        for _ in range(runs):
            t = time.perf_counter()
            subprocess.run(cmd, env=env, check=True, capture_output=True)
            best.append(time.perf_counter() - t)
        return statistics.median(best)

    bare = timed([sys.executable, "-c", "pass"])
    cli = timed([sys.executable, "-m", "zooprobe", "search", "resnet", "--max-params", "30M", "--sort=-top1"])
    print(
        f"(a) cold CLI search: {cli:.3f} s median; bare interpreter {bare:.3f} s; overhead {cli - bare:.3f} s "
        f"({cli / bare:.1f}x bare; target overhead <= 0.35 s)"
    )


def first_search(runs: int) -> None:
    def timed(cmd: list[str], fresh_home: bool) -> tuple[float, float]:
        """Median wall and CPU seconds (the child's user + system) of ``cmd``, each run on a new empty home."""
        walls, cpus = [], []
        for _ in range(runs):
            with tempfile.TemporaryDirectory() as home:
                env = {**os.environ, "ZOOPROBE_HOME": str(Path(home) / "zooprobe")} if fresh_home else None
                before = resource.getrusage(resource.RUSAGE_CHILDREN)
                t = time.perf_counter()
                subprocess.run(cmd, env=env, check=True, capture_output=True)
                walls.append(time.perf_counter() - t)
                after = resource.getrusage(resource.RUSAGE_CHILDREN)
                cpus.append(after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime)
        return statistics.median(walls), statistics.median(cpus)

    bare, bare_cpu = timed([sys.executable, "-c", "pass"], fresh_home=False)
    first, first_cpu = timed([sys.executable, "-m", "zooprobe", "search", "resnet"], fresh_home=True)
    print(
        f"(c) first search on an empty home: {first:.2f} s wall ({first_cpu:.2f} CPU s) median of {runs}; "
        f"bare interpreter {bare:.3f} s ({bare_cpu:.3f} CPU s); overhead {first - bare:.2f} s "
        "(target overhead <= 2 s)"
    )


def latency(records: int, runs: int, keep: Path | None) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        cat = Catalog(keep or tmp)
        stored = dict(cat.db.execute("SELECT source, entries FROM sources")).get("synth")
        if stored == records:
            print(f"(b) reusing {records:,} synthetic records in {keep}")
        else:
            t = time.perf_counter()
            cat.replace_source("synth", "1", synthetic(records))
            print(f"(b) inserted {records:,} records in {time.perf_counter() - t:.1f} s")
        queries = [
            Query(text="resnet", max_params=30e6, sort=("-top1",), limit=20),
            Query(text="vit augreg", min_top1=80, sort=("params",), limit=20),
            Query(text="conv", max_gmacs=5, pretrain_dataset="imagenet-21k", sort=("-top1",), limit=20),
            Query(min_top1=85, max_params=10e6, sort=("-top1",), limit=20),
            Query(arch="mobilenet1*", resolution=224, sort=("gmacs",), limit=20),
        ]
        times: list[float] = []
        per_query: list[list[float]] = [[] for _ in queries]
        for _ in range(runs):
            for q, spent in zip(queries, per_query, strict=True):
                t = time.perf_counter()
                cat.search(q)
                spent.append((time.perf_counter() - t) * 1000)
                times.append(spent[-1])
        for q, spent in zip(queries, per_query, strict=True):
            walked = "sort-index walk" if cat._walk_sort_index(q) is not None else "all matches sorted"
            print(f"    {statistics.median(spent):7.1f} ms median  {walked:<18}  {describe(q)}")
        times.sort()
        p50 = times[len(times) // 2]
        p99 = times[min(len(times) - 1, int(len(times) * 0.99))]
        # baseline: the first query answered by a plain Python scan over every stored record
        t = time.perf_counter()
        hits = []
        for (data,) in cat.db.execute("SELECT data FROM entries"):
            record = json.loads(data)
            if "resnet" in record["name"] and (record["params"] or 0) <= 30e6:
                hits.append(record)
        hits.sort(key=lambda r: -r["metrics"][0]["value"])
        scan_ms = (time.perf_counter() - t) * 1000
        cat.close()
    print(
        f"(b) {len(times)} queries over {records:,} records: p50 {p50:.1f} ms, p99 {p99:.1f} ms "
        f"(targets 20 / 100 ms); full-scan baseline {scan_ms:.0f} ms ({len(hits):,} hits) = "
        f"{scan_ms / p50:.0f}x the p50"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--records", type=int, default=1_000_000)
    parser.add_argument("--runs", type=int, default=15)
    parser.add_argument("--first-runs", type=int, default=3, help="runs of (c), each on a new empty home")
    parser.add_argument("--home", type=Path, default=None, help="a synced catalog for (a) [default: $ZOOPROBE_HOME]")
    parser.add_argument(
        "--keep", type=Path, default=None, help="keep (and reuse) the synthetic catalog of (b) in this directory"
    )
    args = parser.parse_args()
    home = args.home or Path(os.environ.get("ZOOPROBE_HOME", Path.home() / ".cache/zooprobe"))
    cold_cli(home, args.runs)
    first_search(args.first_runs)
    latency(args.records, args.runs, args.keep)


if __name__ == "__main__":
    main()
