"""The assessment's guard on real features: the same decisions before and after a change to scoring.

MobileNetV2 (torchvision) and EfficientNet-Lite0 (timm) are assessed (all default metrics, auto cut
points) on a few targets: scikit-learn's digits at 32 and 64 px, digits 5-9 and generated shapes
and textures (those of ``ranking_zoo.py``) at 32 px. ``extract`` fills a feature cache once;
``decide`` runs every assessment on it from whichever ``zooprobe`` is on ``PYTHONPATH`` (the old
code's or the new) and writes the decisions and the CPU seconds (scoring only: the features are
cached) to JSON; ``compare`` prints the before/after table and checks the guard of issue #20: every
candidate keeps its rank, each candidate's recommended cut point moves by at most one cut point,
and the probe's accuracy at it changes by at most 0.005.

    python benchmarks/bench_decision_guard.py extract DIR
    PYTHONPATH=old/src python benchmarks/bench_decision_guard.py decide DIR old.json
    PYTHONPATH=src python benchmarks/bench_decision_guard.py decide DIR new.json
    python benchmarks/bench_decision_guard.py compare old.json new.json
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import time
from pathlib import Path

# bench_assess points the caches at a temporary folder when imported, and places the weights there
sys.path.insert(0, str(Path(__file__).parent))
from bench_assess import MODELS, WORK, place_weights  # noqa: E402

# (name, data, resolution): the data a spec, or the name of a generated .npz in the guard's folder
TARGETS = [
    ("digits-32", "sklearn:digits", 32),
    ("digits-64", "sklearn:digits", 64),
    ("digits5-9-32", "digits5-9.npz", 32),
    ("shapes-32", "shapes.npz", 32),
    ("textures-32", "textures.npz", 32),
]


def _data(folder: Path, data: str) -> str:
    """The target's spec: a generated one written to ``folder`` first."""
    if not data.endswith(".npz"):
        return data
    path = folder / data
    if not path.exists():
        import numpy as np
        from ranking_zoo import digits, shapes, textures

        images, labels = {
            "digits5-9.npz": lambda: digits(range(5, 10)),
            "shapes.npz": lambda: shapes(400, seed=7),
            "textures.npz": lambda: textures(400, seed=7),
        }[data]()
        np.savez(path, x=images, y=labels)
    return str(path)


def _setup() -> None:
    from zooprobe.catalog.store import Catalog
    from zooprobe.plugins.sync import sync_if_empty

    place_weights()
    with Catalog() as catalog:
        sync_if_empty(catalog)


def _scored_layers() -> dict[str, list[str]]:
    """Each model's auto-chosen cut points, in depth order."""
    from zooprobe.catalog.store import Catalog
    from zooprobe.evaluator.candidate import _load
    from zooprobe.evaluator.checks import select_layers

    with Catalog() as catalog:
        return {model: select_layers(_load(catalog.get(model), None, None).cut_points, "auto") for model in MODELS}


def decide(folder: Path, out: Path, extract_only: bool = False) -> None:
    """Every target's assessment on the cached features: ranking, strategy, cut point and probe accuracy."""
    import zooprobe
    from zooprobe.evaluator.assess import assess

    _setup()
    scored = _scored_layers()
    results = []
    for name, data, resolution in TARGETS:
        spec = _data(folder, data)
        cpu = time.process_time()
        result = assess(spec, MODELS, resolution=resolution, progress=False, cache_dir=folder / "features")
        cpu = time.process_time() - cpu
        candidates = {}
        for doc in result.candidates:
            rec = doc["recommendation"]
            layers = [point["layer"] for point in doc["layer_profile"]]
            chosen = rec["cut"] or layers[-1]
            points = {point["layer"]: point for point in doc["layer_profile"]}
            candidates[doc["model"]] = {
                "rank": doc["rank"],
                "strategy": rec["strategy"],
                "cut": chosen,
                "cut_index": scored[doc["model"]].index(chosen),
                "probe": points[chosen]["probe_accuracy"],
                "expected": rec["expected_accuracy"],
                "consensus": doc["consensus"],
                "probed": layers,
            }
        recommended = result.summary["recommended"] or {}
        results.append({"target": name, "ranking": result.summary["ranking"], "cpu": cpu,
                        "recommended": [recommended.get("model"), recommended.get("strategy"), recommended.get("cut")],
                        "candidates": candidates})  # fmt: skip
        print(f"{name}: {cpu:.1f} CPU s, ranking {result.summary['ranking']}", flush=True)
    if not extract_only:
        out.write_text(json.dumps({"code": zooprobe.__file__, "results": results}, indent=1))
    shutil.rmtree(WORK, ignore_errors=True)  # the weights and run store; the features stay in ``folder``


def compare(old_path: Path, new_path: Path) -> bool:
    """Print the before/after table; True when the guard holds."""
    old = {r["target"]: r for r in json.loads(old_path.read_text())["results"]}
    new = {r["target"]: r for r in json.loads(new_path.read_text())["results"]}
    ok = True
    print(f"{'target':13} {'model':40} {'rank':>9} {'strategy':>11} {'cut point':>25} {'probe at cut':>15}"
          f" {'diff':>7}")  # fmt: skip
    for target, before in old.items():
        after = new[target]
        for model, b in before["candidates"].items():
            a = after["candidates"][model]
            moved = abs(a["cut_index"] - b["cut_index"])
            diff = a["probe"] - b["probe"]
            held = a["rank"] == b["rank"] and moved <= 1 and abs(diff) <= 0.005
            ok &= held
            print(f"{target:13} {model:40} {b['rank']:>4}->{a['rank']:<4} {b['strategy']:>5}->{a['strategy']:<5}"
                  f" {b['cut']:>12}->{a['cut']:<12} {b['probe']:.4f}->{a['probe']:.4f} {diff:+7.4f}"
                  f"{'' if held else '  <-- guard'}")  # fmt: skip
        print(f"{target:13} recommended {before['recommended']} -> {after['recommended']};"
              f" scoring CPU {before['cpu']:.1f} -> {after['cpu']:.1f} s")  # fmt: skip
    old_cpu = sum(r["cpu"] for r in old.values())
    new_cpu = sum(r["cpu"] for r in new.values())
    print(f"scoring CPU seconds (features cached) {old_cpu:.1f} -> {new_cpu:.1f} ({old_cpu / new_cpu:.2f}x)")
    print("guard", "holds" if ok else "FAILS")
    return ok


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("command", choices=["extract", "decide", "compare"])
    parser.add_argument("paths", type=Path, nargs="+", help="extract: DIR; decide: DIR OUT.json; compare: OLD NEW")
    args = parser.parse_args()
    wanted = {"extract": 1, "decide": 2, "compare": 2}[args.command]
    if len(args.paths) != wanted:
        parser.error(f"{args.command} takes {wanted} path(s), got {len(args.paths)}")
    if args.command == "extract":
        args.paths[0].mkdir(parents=True, exist_ok=True)
        decide(args.paths[0], args.paths[0] / "unused.json", extract_only=True)
    elif args.command == "decide":
        decide(*args.paths)
    else:
        sys.exit(0 if compare(*args.paths) else 1)


if __name__ == "__main__":
    main()
