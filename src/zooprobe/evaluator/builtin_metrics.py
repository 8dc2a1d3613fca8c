"""The built-in transferability metrics, registered as a plugin like any third-party one."""

from __future__ import annotations

from typing import Any

from ..plugins.hookspecs import hookimpl
from ..plugins.metric import Metric


def probe_accuracy(features: Any, labels: Any, **options: Any) -> float:
    """Mean cross-validated accuracy of the linear probe (see :func:`~zooprobe.evaluator.scores.linear_probe`)."""
    from .scores import linear_probe

    return linear_probe(features, labels, **options).accuracy


def probe_balanced_accuracy(features: Any, labels: Any, **options: Any) -> float:
    """Mean cross-validated balanced accuracy (mean per-class recall) of the linear probe."""
    from .scores import linear_probe

    return linear_probe(features, labels, **options).balanced_accuracy


def _logme(features: Any, labels: Any, **options: Any) -> float:
    from .scores import logme

    return logme(features, labels, **options)


def _hscore(features: Any, labels: Any, **options: Any) -> float:
    from .scores import hscore

    return hscore(features, labels, **options)


def _nce(probabilities: Any, labels: Any, **options: Any) -> float:
    from .scores import nce

    return nce(probabilities, labels, **options)


def _leep(probabilities: Any, labels: Any, **options: Any) -> float:
    from .scores import leep

    return leep(probabilities, labels, **options)


def _knn(features: Any, labels: Any, **options: Any) -> float:
    from .scores import knn_accuracy

    return knn_accuracy(features, labels, **options)


BUILTIN_METRICS = [
    Metric(
        "probe_accuracy",
        probe_accuracy,
        "features",
        "linear-probe accuracy, L2 strength chosen by the CLIP sweep, mean over stratified folds",
        "Radford et al. 2021 (CLIP), linear-probe protocol",
    ),
    Metric(
        "probe_balanced_accuracy",
        probe_balanced_accuracy,
        "features",
        "linear-probe balanced accuracy (mean per-class recall), mean over stratified folds",
        "Radford et al. 2021 (CLIP), linear-probe protocol",
    ),
    Metric(
        "knn_accuracy",
        _knn,
        "features",
        "leave-one-out cosine k-nearest-neighbour accuracy (k=10)",
        "Wu et al. 2018; Caron et al. 2021 (DINO)",
    ),
    Metric(
        "logme",
        _logme,
        "features",
        "log maximum evidence of a Bayesian linear model per class",
        "You et al. 2021, LogME",
    ),
    Metric("hscore", _hscore, "features", "tr(cov(f)^+ cov(E[f|y])): class separation", "Bao et al. 2019, H-score"),
    Metric(
        "nce",
        _nce,
        "probabilities",
        "negative conditional entropy of target labels given the source head's predicted class",
        "Tran et al. 2019, NCE",
    ),
    Metric(
        "leep",
        _leep,
        "probabilities",
        "log expected empirical prediction through the source head",
        "Nguyen et al. 2020, LEEP",
    ),
]


@hookimpl
def register_metrics() -> list[Metric]:
    return list(BUILTIN_METRICS)
