"""The built-in transferability metrics, registered as a plugin like any third-party one.

:data:`BUILTIN_METRICS` is the table the decision reads: each metric's role, consensus weight and
whether it is scored by default are declared there, and nowhere else.

Consensus weights (z-scores across candidates, at the deepest assessed cut point) were chosen on
benchmarks/bench_ranking.py (4 targets x 7 backbones), where over six runs they tie the best
single score, the probe (mean Kendall tau 0.56-0.61 against 0.55-0.63), with lower regret; on two
held-out targets (three runs) they match or beat every single score (0.52-0.62 against LogME's
0.43-0.52, the probe's 0.10-0.27), and over all six targets their mean tau is the highest in each of
those runs. The README gives the figures. kNN adds nothing to the probe on the same features, and
H-score, unstable with few examples per dimension, ranked worst of all; both stay in the report but
out of the consensus (weight 0). The catalog's prior weighs in too: see
:data:`zooprobe.evaluator.decision.PRIOR_WEIGHT`. Nearest class mean ranks nothing either: it is
the as-is strategy's own classifier, which the decision reads to predict that strategy (role ``as-is``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ..plugins.hookspecs import hookimpl
from ..plugins.metric import Metric, MetricResult

if TYPE_CHECKING:
    from .probe import ProbeResult


def _fit_probe(
    features: Any,
    labels: Any,
    folds: int,
    seed: int,
    cache: dict[Any, Any] | None,
    groups: Any,
    device: str | None = None,
) -> ProbeResult:
    """One probe fit per (features, folds, seed): both probe metrics read it from the candidate's cut-point cache."""
    from .probe import linear_probe

    if cache is None:
        return linear_probe(features, labels, folds=folds, seed=seed, groups=groups, device=device)
    key = ("linear_probe", folds, seed)
    if key not in cache:
        cache[key] = linear_probe(features, labels, folds=folds, seed=seed, groups=groups, device=device)
    result: ProbeResult = cache[key]
    return result


def probe_accuracy(
    features: Any,
    labels: Any,
    *,
    folds: int = 5,
    seed: int = 0,
    cache: dict[Any, Any] | None = None,
    groups: Any = None,
    device: str | None = None,
) -> MetricResult:
    """Mean cross-validated accuracy of the linear probe (see :func:`~zooprobe.evaluator.probe.linear_probe`),
    its standard deviation over folds, and the chosen ``c`` and ``folds``; fitted in torch on ``device`` when given."""
    result = _fit_probe(features, labels, folds, seed, cache, groups, device)
    return MetricResult(result.accuracy, result.accuracy_std, {"c": result.c, "folds": result.folds})


def probe_balanced_accuracy(
    features: Any,
    labels: Any,
    *,
    folds: int = 5,
    seed: int = 0,
    cache: dict[Any, Any] | None = None,
    groups: Any = None,
    device: str | None = None,
) -> MetricResult:
    """Mean cross-validated balanced accuracy (mean per-class recall) of the linear probe, as :func:`probe_accuracy`."""
    result = _fit_probe(features, labels, folds, seed, cache, groups, device)
    return MetricResult(result.balanced_accuracy, result.balanced_accuracy_std, {"c": result.c, "folds": result.folds})


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


def ncm_accuracy(features: Any, labels: Any, *, folds: int = 5, seed: int = 0, groups: Any = None) -> MetricResult:
    """Held-out accuracy of cosine nearest class mean (see :func:`~zooprobe.evaluator.ncm.nearest_class_mean`),
    its standard deviation over folds, and ``folds``."""
    from .ncm import nearest_class_mean

    result = nearest_class_mean(features, labels, folds=folds, seed=seed, groups=groups)
    return MetricResult(result.accuracy, result.accuracy_std, {"folds": result.folds})


def _knn(features: Any, labels: Any, **options: Any) -> float:
    from .scores import knn_accuracy

    return knn_accuracy(features, labels, **options)


# In this order when scored by default (the order of a run's metrics and of the report's columns).
BUILTIN_METRICS = [
    Metric(
        "probe_accuracy",
        probe_accuracy,
        "features",
        "linear-probe accuracy, L2 strength chosen by the CLIP sweep, mean over stratified folds",
        "Radford et al. 2021 (CLIP), linear-probe protocol",
        role="probe",
        weight=1.0,
        default=True,
        options=("folds", "seed", "cache", "groups", "device"),
    ),
    Metric(
        "probe_balanced_accuracy",
        probe_balanced_accuracy,
        "features",
        "linear-probe balanced accuracy (mean per-class recall), mean over stratified folds",
        "Radford et al. 2021 (CLIP), linear-probe protocol",
        default=True,
        options=("folds", "seed", "cache", "groups", "device"),
    ),
    Metric(
        "knn_accuracy",
        _knn,
        "features",
        "leave-one-out cosine k-nearest-neighbour accuracy (k=10)",
        "Wu et al. 2018; Caron et al. 2021 (DINO)",
        default=True,
        options=("seed", "groups"),
    ),
    Metric(
        "ncm_accuracy",
        ncm_accuracy,
        "features",
        "cosine nearest-class-mean accuracy on held-out stratified folds: the classifier of the as-is strategy",
        "Mensink et al. 2013, nearest class mean",
        role="as-is",
        default=True,
        options=("folds", "seed", "groups"),
    ),
    Metric(
        "logme",
        _logme,
        "features",
        "log maximum evidence of a Bayesian linear model per class",
        "You et al. 2021, LogME",
        weight=1.0,
        default=True,
        options=("device",),
    ),
    Metric(
        "hscore",
        _hscore,
        "features",
        "tr(cov(f)^+ cov(E[f|y])): class separation",
        "Bao et al. 2019, H-score",
        default=True,
    ),
    Metric(
        "nce",
        _nce,
        "probabilities",
        "negative conditional entropy of target labels given the source head's predicted class",
        "Tran et al. 2019, NCE",
        weight=0.5,
        default=True,
    ),
    Metric(
        "leep",
        _leep,
        "probabilities",
        "log expected empirical prediction through the source head",
        "Nguyen et al. 2020, LEEP",
        weight=0.5,
        default=True,
    ),
]


@hookimpl
def register_metrics() -> list[Metric]:
    return list(BUILTIN_METRICS)
