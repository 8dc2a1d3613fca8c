"""Support for bench_ranking.py: the ground-truth cache, per-strategy truths, the raw-pixel baseline,
and the calibration of the expected-accuracy interval with its coverage on targets left out of the fit.

The cache lives under ``--cache`` (default ``$XDG_CACHE_HOME/zooprobe/bench_ranking``); each entry is keyed
on a hash of everything that determines it (see :func:`key`), written atomically (temp file, fsync, rename),
so an interrupted run leaves no half-written entry and a rerun skips what is already measured.
"""

from __future__ import annotations

import datetime
import hashlib
import json
import os
import tempfile
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

# bump when the protocol that produces a cached value changes (training loop, schedule, split, model code)
PROTOCOL = "ranking-truth-2"
# the strategies with their own interval fit, in the order the coverage table shows them
STRATEGIES = ("as-is", "head", "full", "cut:new", "cut:all")


def default_cache() -> Path:
    base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return base / "zooprobe" / "bench_ranking"


def fingerprint(*arrays: np.ndarray) -> str:
    digest = hashlib.sha256()
    for array in arrays:
        digest.update(str((array.shape, array.dtype)).encode())
        digest.update(np.ascontiguousarray(array).tobytes())
    return digest.hexdigest()[:16]


def key(**parts: Any) -> str:
    """A cache key over ``parts`` (and the protocol version): the hex digest of their sorted JSON."""
    text = json.dumps({"protocol": PROTOCOL, **parts}, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:24]


def _atomic_write(path: Path, write: Callable[[Any], None], binary: bool) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(handle, "wb" if binary else "w") as stream:
            write(stream)
            stream.flush()
            os.fsync(stream.fileno())
        os.replace(temp, path)
    except BaseException:
        Path(temp).unlink(missing_ok=True)
        raise


def cached_json(cache: Path, kind: str, parts: Mapping[str, Any], compute: Callable[[], Any]) -> Any:
    """The cached value for ``parts`` under ``cache/kind``, computing and storing it when absent."""
    path = cache / kind / f"{key(kind=kind, **parts)}.json"
    if path.exists():
        return json.loads(path.read_text())["value"]
    value = compute()
    _atomic_write(path, lambda s: s.write(json.dumps({"parts": dict(parts), "value": value}, default=str)), False)
    return value


def cached_state(cache: Path, parts: Mapping[str, Any], model: Any, compute: Callable[[Any], None]) -> bool:
    """Load ``model``'s weights from the cache entry for ``parts``, or train it with ``compute`` and store them.
    Returns whether they came from the cache."""
    import torch

    path = cache / "sources" / f"{key(kind='source', **parts)}.pt"
    if path.exists():
        model.load_state_dict(torch.load(path, weights_only=True))
        model.eval()
        return True
    compute(model)
    _atomic_write(path, lambda s: torch.save(model.state_dict(), s), True)
    return False


# --- truths for the strategies that train no body -------------------------------------------------


def head_accuracy(train_x: np.ndarray, train_y: np.ndarray, test_x: np.ndarray, test_y: np.ndarray) -> float:
    """A new linear head on frozen features (multinomial logistic regression, standardised inputs), train -> test."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    model = make_pipeline(StandardScaler(), LogisticRegression(max_iter=2000))
    model.fit(train_x, train_y)
    return float((model.predict(test_x) == test_y).mean())


def ncm_accuracy(train_x: np.ndarray, train_y: np.ndarray, test_x: np.ndarray, test_y: np.ndarray) -> float:
    """Cosine nearest class mean fitted on the training split (the as-is arm's classifier), train -> test."""

    def unit(x: np.ndarray) -> np.ndarray:
        return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)

    classes = int(train_y.max()) + 1
    means = unit(np.stack([unit(train_x[train_y == c]).sum(0) for c in range(classes)]))
    return float(((unit(test_x) @ means.T).argmax(1) == test_y).mean())


def frozen_truths(backbone: Any, layer: str, train_set: Any, test_set: Any) -> dict[str, float]:
    """What the strategies that train no body reach on ``test_set``: a new head, and as-is, at ``layer``."""
    from zooprobe.backbones.features import extract_features

    train_x = np.asarray(extract_features(backbone, train_set, [layer], progress=False)[layer])
    test_x = np.asarray(extract_features(backbone, test_set, [layer], progress=False)[layer])
    pair = (train_x, train_set.labels, test_x, test_set.labels)
    return {"head": head_accuracy(*pair), "as-is": ncm_accuracy(*pair)}


def raw_pixels(train_x: np.ndarray, train_y: np.ndarray, test_x: np.ndarray, test_y: np.ndarray) -> float:
    """Logistic regression on the raw pixels at their native size: the baseline pretraining must beat."""
    flat = lambda a: a.reshape(len(a), -1).astype(np.float64) / 255.0  # noqa: E731
    return head_accuracy(flat(train_x), train_y, flat(test_x), test_y)


# --- calibration -----------------------------------------------------------------------------------


def cases_of(
    target: str, docs: Sequence[Mapping[str, Any]], truths: Mapping[str, Mapping[str, float]], n: int
) -> list[dict[str, Any]]:
    """Calibration cases of one target: for each assessed candidate and each strategy with a measured truth,
    the assessment's estimate of that strategy (probe at the final cut point for head/full, nearest class
    mean there for as-is, the probe at the cut point for a recommended ``cut``: strategies ``cut:new`` and
    ``cut:all``), its fold spread, the data size and the accuracy reached; ``recommended`` marks the
    strategy the assessment recommends for that candidate."""
    cases = []
    for doc in docs:
        name = doc["model"].split(":", 1)[1]
        profile = doc.get("layer_profile") or []
        if not profile or name not in truths:
            continue
        last = profile[-1]
        as_is = (doc.get("as_is_by_layer") or {}).get(last["layer"])
        estimates = {
            "head": (last["probe_accuracy"], last["probe_spread"]),
            "full": (last["probe_accuracy"], last["probe_spread"]),
        }
        if as_is is not None:
            estimates["as-is"] = (as_is["accuracy"], as_is["spread"])
        rec = doc.get("recommendation") or {}
        chosen = rec.get("strategy")
        if chosen == "cut":  # the probe at the cut point, as the recommendation states it (ranking_cut.py)
            for train in ("new", "all"):
                estimates[f"cut:{train}"] = (rec["expected_accuracy"], rec["uncertainty"])
            chosen = f"cut:{rec.get('train')}"
        for strategy, (expected, spread) in estimates.items():
            achieved = truths[name].get(strategy)
            if achieved is None:
                continue
            cases.append(
                {
                    "target": target, "candidate": name, "strategy": strategy, "expected": float(expected),
                    "spread": float(spread), "n": n, "achieved": float(achieved), "recommended": strategy == chosen,
                }
            )  # fmt: skip
    return cases


def calibrate(cases: Sequence[Mapping[str, Any]], tuning: Sequence[str], level: float = 0.8) -> dict[str, Any]:
    """Coverage of the conformal interval on targets not used to fit it: leave one target out (each target's
    cases judged by a fit on all the others), and fit on the tuning targets judged on the rest."""
    from zooprobe.evaluator.interval import coverage, fit

    targets = sorted({c["target"] for c in cases})
    loto: dict[str, dict[str, float | None]] = {}
    hits: dict[str, list[float]] = {}
    for target in targets:
        calibration = fit([c for c in cases if c["target"] != target], level)
        mine = [c for c in cases if c["target"] == target]
        loto[target] = {}
        for label, subset in _subsets(mine).items():
            value = coverage(calibration, subset)
            loto[target][label] = value
            if value is not None:
                hits.setdefault(label, []).extend([value] * len(subset))
    report: dict[str, Any] = {
        "leave_one_target_out": loto,
        "leave_one_target_out_pooled": {label: float(np.mean(v)) for label, v in hits.items()},
    }
    held = [c for c in cases if c["target"] not in tuning]
    if held and len(held) < len(cases):
        calibration = fit([c for c in cases if c["target"] in tuning], level)
        report["tuning_to_holdout"] = {label: coverage(calibration, s) for label, s in _subsets(held).items()}
    return report


def _subsets(cases: Sequence[Mapping[str, Any]]) -> dict[str, list[Mapping[str, Any]]]:
    subsets: dict[str, list[Mapping[str, Any]]] = {
        "all": list(cases),
        "recommended": [c for c in cases if c["recommended"]],
    }
    for strategy in STRATEGIES:
        subsets[strategy] = [c for c in cases if c["strategy"] == strategy]
    return {k: v for k, v in subsets.items() if v}


def write_calibration(
    path: Path, cases: Sequence[Mapping[str, Any]], report: Mapping[str, Any], run: Mapping[str, Any]
) -> None:
    """Fit on every case and write the calibration file the evaluator ships, with its provenance."""
    from zooprobe.evaluator.interval import fit

    provenance = {
        "benchmark": "benchmarks/bench_ranking.py",
        "run": dict(run),
        "date": datetime.date.today().isoformat(),
        "targets": sorted({c["target"] for c in cases}),
        "candidates": sorted({c["candidate"] for c in cases}),
        "cases": len(cases),
        "scale": "sqrt(p(1-p)/n) with p Laplace-smoothed, plus the probe's fold spread",
        "cut": (
            "cut:new and cut:all are fitted on cut networks fine-tuned at the recommended cut point (ranking_cut.py)"
            if any(str(c["strategy"]).startswith("cut:") for c in cases)
            else "a cut recommendation uses the head (train=new) or full (train=all) fit: no cut network is fine-tuned"
        ),
        "coverage_leave_one_target_out": report["leave_one_target_out_pooled"],
        "coverage_tuning_to_holdout": report.get("tuning_to_holdout"),
    }
    calibration = fit(cases, 0.8, provenance)
    _atomic_write(path, lambda s: s.write(json.dumps(calibration.to_json(), indent=1) + "\n"), False)


def print_coverage(report: Mapping[str, Any]) -> None:
    print("\n80% interval coverage on targets not used to fit it (target: 75-90%)")
    labels = ["all", "recommended", *STRATEGIES]
    print(f"  {'left-out target':<18}" + "".join(f"{label:>12}" for label in labels))
    rows = {**report["leave_one_target_out"], "pooled": report["leave_one_target_out_pooled"]}
    for target, values in rows.items():
        print(f"  {target:<18}" + "".join(_cell(values.get(label)) for label in labels))
    if "tuning_to_holdout" in report:
        values = report["tuning_to_holdout"]
        print(f"  {'tuning->holdout':<18}" + "".join(_cell(values.get(label)) for label in labels))


def _cell(value: float | None) -> str:
    return f"{value:12.2f}" if value is not None else f"{'-':>12}"
