"""One probe fit against scikit-learn's, on real features: the same problem, timed in the same run.

zooprobe's probe fits multinomial logistic regression with its own L-BFGS (:mod:`zooprobe.evaluator.lbfgs`)
on a NumPy objective; scikit-learn's ``LogisticRegression`` (lbfgs) minimises the same objective (the
mean loss plus ||W||^2 / (2 C N)) with SciPy's L-BFGS-B and its Cython loss. Features: every cut
point an assessment scores of MobileNetV2 (torchvision) and EfficientNet-Lite0 (timm) on scikit-learn's
digits, standardised by the training rows of one stratified 80/20 split, passed to each fit as the probe
passes them (wide rows in blocks, :func:`zooprobe.evaluator.probe.fitting_rows`). Each pair of fits uses the
same C, gradient tolerance (the probe's, 1e-4), iteration cap (100), float32 data and one BLAS
thread, so only the implementations differ. Printed: CPU seconds of each fit (the least of
``--runs``), the ratio scikit-learn / zooprobe, the objective each reached (float64) and the held-out
accuracy of each. Both stop at a tolerance or the cap, short of the exact optimum, so where the
objective is flat (large C) their solutions, and an example or two of their predictions, differ.

Target: zooprobe's fits take no more CPU time than scikit-learn's in total, and none ends at an
objective more than 1e-3 above scikit-learn's. Unlike bench_assess's ratio against extraction, this ratio compares two
implementations of the same arithmetic, so a faster or slower CPU moves both alike.

    python benchmarks/bench_probe_sklearn.py [--resolution 64] [--runs 3] [--c 0.01,1,100]
"""

from __future__ import annotations

import argparse
import sys
import time
import warnings
from functools import partial
from pathlib import Path
from typing import Any

# bench_assess points the caches at a temporary folder when imported, and places the weights there
sys.path.insert(0, str(Path(__file__).parent))
from bench_assess import MODELS, WORK, place_weights  # noqa: E402


def cut_point_features(resolution: int) -> tuple[dict[str, Any], Any]:
    """({model/cut point: N x D features}, labels) for every cut point an assessment scores."""
    from zooprobe.backbones.features import extract_features
    from zooprobe.catalog.store import Catalog
    from zooprobe.data.datasets import read_dataset
    from zooprobe.evaluator.candidate import _load
    from zooprobe.evaluator.checks import select_layers
    from zooprobe.plugins.sync import sync_if_empty

    dataset = read_dataset("sklearn:digits")
    with Catalog() as catalog:
        sync_if_empty(catalog)
        entries = [catalog.get(model) for model in MODELS]
    features: dict[str, Any] = {}
    for entry in entries:
        backbone = _load(entry, resolution, None)
        layers = select_layers(backbone.cut_points, "auto")
        extracted = extract_features(backbone, dataset, layers, progress=False, cache_dir=WORK / "features")
        features.update({f"{entry.id.split(':')[1]}/{layer}": extracted[layer] for layer in layers})
    return features, dataset.labels


def standardised_split(features: Any, labels: Any) -> tuple[Any, Any, Any, Any]:
    """Fold 0 of the probe's stratified 5-fold split, standardised by its training rows, in float32."""
    import numpy as np

    from zooprobe.evaluator.score_inputs import stratified_folds

    test = stratified_folds(labels, 5, 0) == 0
    x = np.asarray(features, dtype=np.float32)
    train_rows = x[~test]
    mean, std = train_rows.mean(axis=0), train_rows.std(axis=0) + np.float32(1e-8)
    x = (x - mean) / std
    return x[~test], labels[~test], x[test], labels[test]


def objective(x: Any, y: Any, weight: Any, bias: Any, c: float) -> float:
    """The mean multinomial log-loss plus ||W||^2 / (2 C N), in float64: what both fits minimise."""
    import numpy as np

    logits = x.astype(np.float64) @ weight + bias
    peak = logits.max(axis=1, keepdims=True)
    log_normaliser = np.log(np.exp(logits - peak).sum(axis=1)) + peak[:, 0]
    loss = float(np.mean(log_normaliser - logits[np.arange(len(y)), y]))
    return loss + float((weight.astype(np.float64) ** 2).sum()) / (2.0 * c * len(y))


def fit_ours(x: Any, y: Any, classes: int, c: float) -> Any:
    """zooprobe's probe fit from zeros, as the probe's folds are fitted (wide rows in blocks, as it passes them)."""
    from zooprobe.evaluator.probe import TOLERANCE, _Softmax, fitting_rows

    model = _Softmax(x.shape[1], classes)
    model.fit(fitting_rows(x, classes), y, c, 100, TOLERANCE)
    return model


def fit_theirs(x: Any, y: Any, c: float) -> Any:
    """scikit-learn's fit of the same objective, to the same tolerance and cap."""
    from sklearn.linear_model import LogisticRegression

    from zooprobe.evaluator.probe import TOLERANCE

    return LogisticRegression(C=c, tol=TOLERANCE, max_iter=100).fit(x, y)


def least_cpu(fit: Any, runs: int) -> tuple[float, Any]:
    """(least CPU seconds of ``runs`` calls of ``fit()``, the last call's result)."""
    best, result = float("inf"), None
    for _ in range(runs):
        start = time.process_time()
        result = fit()
        best = min(best, time.process_time() - start)
    return best, result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--resolution", type=int, default=64)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--c", default="0.01,1,100", help="inverse L2 strengths, comma-separated")
    args = parser.parse_args()

    import numpy as np
    from sklearn.exceptions import ConvergenceWarning
    from threadpoolctl import threadpool_limits

    place_weights()
    features, labels = cut_point_features(args.resolution)
    labels = np.asarray(labels)
    classes = int(labels.max()) + 1
    strengths = [float(c) for c in args.c.split(",")]
    total_ours = total_theirs = 0.0
    worst_excess = -float("inf")
    print(
        f"{'cut point':40} {'C':>5} {'zooprobe s':>10} {'sklearn s':>9} {'ratio':>5}"
        f" {'objective zp':>12} {'sklearn':>8} {'acc zp':>6} {'sklearn':>7}"
    )
    warnings.filterwarnings("ignore", category=ConvergenceWarning)  # both stop at the same cap
    with threadpool_limits(1):
        for name, array in features.items():
            x_train, y_train, x_test, y_test = standardised_split(array, labels)
            for c in strengths:
                ours_seconds, model = least_cpu(partial(fit_ours, x_train, y_train, classes, c), args.runs)
                theirs_seconds, reference = least_cpu(partial(fit_theirs, x_train, y_train, c), args.runs)
                ours_accuracy = float((model.predict(x_test) == y_test).mean())
                theirs_accuracy = float((reference.predict(x_test) == y_test).mean())
                ours_objective = objective(x_train, y_train, model.weight, model.bias, c)
                theirs_objective = objective(x_train, y_train, reference.coef_.T, reference.intercept_, c)
                total_ours += ours_seconds
                total_theirs += theirs_seconds
                worst_excess = max(worst_excess, ours_objective - theirs_objective)
                print(
                    f"{name:40} {c:5g} {ours_seconds:10.3f} {theirs_seconds:9.3f} {theirs_seconds / ours_seconds:5.2f}"
                    f" {ours_objective:12.5f} {theirs_objective:8.5f} {ours_accuracy:6.4f} {theirs_accuracy:7.4f}"
                )
    ratio = total_theirs / total_ours
    verdict = "met" if ratio >= 1.0 and worst_excess <= 1e-3 else "NOT met"
    print(
        f"all fits: zooprobe {total_ours:.2f} CPU s, scikit-learn {total_theirs:.2f} CPU s:"
        f" scikit-learn / zooprobe = {ratio:.2f} (target >= 1.0); zooprobe's objective at most"
        f" {worst_excess:+.2e} from scikit-learn's (target <= 1e-3): {verdict}"
    )


if __name__ == "__main__":
    main()
