"""The probe's guard on real features: the same decisions before and after a change to the probe.

Features of MobileNetV2 (torchvision) and EfficientNet-Lite0 (timm) on scikit-learn's digits are
extracted once, at several resolutions and every cut point an assessment scores, into a folder of
``.npy`` files; then the probe runs on each file, from whichever ``zooprobe`` is on ``PYTHONPATH``
(the old code's or the new), and writes its results to JSON; ``compare`` prints the before/after
table and checks the guard of issue #20 for each candidate: it keeps its rank (by its best cut
point's accuracy, at each resolution), its best cut point moves by at most one, and that best
accuracy changes by at most 0.005. Cut points whose own accuracy moved by more are marked: on a
flat sweep a change in the C chosen by one validation example can move a cut point's estimate.

    python benchmarks/bench_probe_guard.py extract DIR [--resolutions 32,64,96]
    PYTHONPATH=old/src python benchmarks/bench_probe_guard.py probe DIR old.json
    PYTHONPATH=src python benchmarks/bench_probe_guard.py probe DIR new.json
    python benchmarks/bench_probe_guard.py compare old.json new.json
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

MODELS = ["torchvision:mobilenet_v2.IMAGENET1K_V1", "timm:tf_efficientnet_lite0.in1k"]


def extract(folder: Path, resolutions: list[int]) -> None:
    """Every auto-chosen cut point of each model at each resolution into ``folder`` (and an index)."""
    import numpy as np

    # bench_assess points the caches at a temporary folder when imported, and places the weights there
    sys.path.insert(0, str(Path(__file__).parent))
    from bench_assess import WORK, place_weights

    from zooprobe.backbones.features import extract_features
    from zooprobe.catalog.store import Catalog
    from zooprobe.data.datasets import read_dataset
    from zooprobe.evaluator.candidate import _load
    from zooprobe.evaluator.checks import select_layers
    from zooprobe.plugins.sync import sync_if_empty

    place_weights()
    dataset = read_dataset("sklearn:digits")
    np.save(folder / "labels.npy", np.asarray(dataset.labels))
    index: list[dict[str, Any]] = []
    with Catalog() as catalog:
        sync_if_empty(catalog)
        entries = [catalog.get(model) for model in MODELS]
    for resolution in resolutions:
        for entry in entries:
            backbone = _load(entry, resolution, None)
            layers = select_layers(backbone.cut_points, "auto")
            features = extract_features(backbone, dataset, layers, progress=False, cache_dir=WORK / "features")
            for layer in layers:
                name = f"{entry.id.replace(':', '_')}_{resolution}_{layer}.npy"
                np.save(folder / name, np.asarray(features[layer]))
                index.append({"model": entry.id, "resolution": resolution, "layer": layer, "file": name})
            print(f"{entry.id} at {resolution}px: {len(layers)} cut points", flush=True)
    (folder / "index.json").write_text(json.dumps(index, indent=1))


def probe(folder: Path, out: Path, chain: bool) -> None:
    """The probe on every feature file in ``folder``: accuracy, spread, C, and CPU and wall seconds.

    With ``chain``, each cut point's sweep starts from the C chosen at the one before (as an assessment does).
    """
    import numpy as np

    import zooprobe
    from zooprobe.evaluator.probe import linear_probe

    labels = np.load(folder / "labels.npy")
    index = json.loads((folder / "index.json").read_text())
    results = []
    chosen: dict[tuple[str, int], float] = {}
    for item in index:
        features = np.load(folder / item["file"])
        candidate = (item["model"], item["resolution"])
        near = {"c_near": chosen[candidate]} if chain and candidate in chosen else {}
        wall, cpu = time.perf_counter(), time.process_time()
        result = linear_probe(features, labels, **near)
        chosen[candidate] = result.c
        wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
        results.append({**item, "accuracy": result.accuracy, "spread": result.accuracy_std, "c": result.c,
                        "folds": result.folds, "wall": wall, "cpu": cpu, "dim": features.shape[1]})  # fmt: skip
        print(f"{item['file']}: {result.accuracy:.4f} C={result.c:.3g} {wall:.2f}s wall {cpu:.2f}s cpu", flush=True)
    out.write_text(json.dumps({"code": zooprobe.__file__, "results": results}, indent=1))


def compare(old_path: Path, new_path: Path) -> bool:
    """Print the before/after table; True when the guard holds."""
    old = {(r["model"], r["resolution"], r["layer"]): r for r in json.loads(old_path.read_text())["results"]}
    new = {(r["model"], r["resolution"], r["layer"]): r for r in json.loads(new_path.read_text())["results"]}
    ok = True
    print(f"{'model':40} {'px':>4} {'cut point':>12} {'D':>5} {'old acc':>8} {'new acc':>8} {'diff':>7}"
          f" {'old C':>8} {'new C':>8} {'old s':>6} {'new s':>6}")  # fmt: skip
    for key, before in old.items():
        after = new[key]
        diff = after["accuracy"] - before["accuracy"]
        flag = "" if abs(diff) <= 0.005 else "  <-- over 0.005"
        print(f"{key[0]:40} {key[1]:>4} {key[2]:>12} {before['dim']:>5} {before['accuracy']:8.4f} "
              f"{after['accuracy']:8.4f} {diff:+7.4f} {before['c']:8.3g} {after['c']:8.3g} "
              f"{before['cpu']:6.1f} {after['cpu']:6.1f}{flag}")  # fmt: skip
    for resolution in sorted({key[1] for key in old}):
        best: dict[str, dict[str, Any]] = {}
        for name, table in (("old", old), ("new", new)):
            rows = [r for key, r in table.items() if key[1] == resolution]
            models = sorted({r["model"] for r in rows})
            layers = {m: [r for r in rows if r["model"] == m] for m in models}
            top = {m: max(layers[m], key=lambda r: r["accuracy"]) for m in models}
            ranking = sorted(models, key=lambda m: -top[m]["accuracy"])
            best[name] = {"ranking": ranking, "layer": {m: [r["layer"] for r in layers[m]].index(top[m]["layer"])
                                                        for m in models},
                          "accuracy": {m: top[m]["accuracy"] for m in models}}  # fmt: skip
        same_rank = best["old"]["ranking"] == best["new"]["ranking"]
        moves = {m: abs(best["old"]["layer"][m] - best["new"]["layer"][m]) for m in best["old"]["layer"]}
        shifts = {m: best["new"]["accuracy"][m] - best["old"]["accuracy"][m] for m in moves}
        ok &= same_rank and max(moves.values()) <= 1 and max(map(abs, shifts.values())) <= 0.005
        print(
            f"{resolution}px: ranking old {best['old']['ranking']} new {best['new']['ranking']}"
            f" ({'same' if same_rank else 'CHANGED'}); best cut point moved by {moves};"
            f" its accuracy by {', '.join(f'{m}: {v:+.4f}' for m, v in shifts.items())}"
        )
    old_cpu = sum(r["cpu"] for r in old.values())
    new_cpu = sum(r["cpu"] for r in new.values())
    old_wall = sum(r["wall"] for r in old.values())
    new_wall = sum(r["wall"] for r in new.values())
    print(f"probe CPU seconds {old_cpu:.1f} -> {new_cpu:.1f} ({old_cpu / new_cpu:.2f}x); "
          f"wall {old_wall:.1f} -> {new_wall:.1f} ({old_wall / new_wall:.2f}x)")  # fmt: skip
    print("guard", "holds" if ok else "FAILS")
    return ok


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    one = commands.add_parser("extract")
    one.add_argument("folder", type=Path)
    one.add_argument("--resolutions", default="32,64,96")
    two = commands.add_parser("probe")
    two.add_argument("folder", type=Path)
    two.add_argument("out", type=Path)
    two.add_argument("--chain", action="store_true", help="pass each cut point's C to the next (c_near)")
    three = commands.add_parser("compare")
    three.add_argument("old", type=Path)
    three.add_argument("new", type=Path)
    args = parser.parse_args()
    if args.command == "extract":
        args.folder.mkdir(parents=True, exist_ok=True)
        extract(args.folder, [int(r) for r in args.resolutions.split(",")])
    elif args.command == "probe":
        probe(args.folder, args.out, args.chain)
    else:
        sys.exit(0 if compare(args.old, args.new) else 1)


if __name__ == "__main__":
    main()
