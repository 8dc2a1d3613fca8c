"""The built-in transferability metrics, registered as a plugin like any third-party one.

:data:`BUILTIN_METRICS` is the table the decision reads: each metric's role, consensus weight and
whether it is scored by default are declared there, and nowhere else.

Consensus weights (z-scores across candidates, at the deepest assessed cut point) were refitted on
benchmarks/bench_ranking.py's 13-candidate zoo (4 ImageNet models, 8 small CNNs pretrained on related,
unrelated and shuffled sources, one random init; 300 examples, 3 epochs, one learning rate) by
benchmarks/ranking_weights.py, on the 4 tuning targets only. No weighting of the grid (every term at 0,
0.25, 0.5 or 1 beside the probe's 1) beat the probe alone on the tuning target left out of its fit (mean
Kendall tau 0.53 against 0.54; weighted 0.63 against 0.65), and the grid's best weighting fell to tau
0.22 on the two held-out targets against the probe's 0.39. So the consensus is probe-led: the probe
(weight 1), LogME at a quarter (it cut the probe's regret on the tuning targets from 0.031 to 0.008,
and on the held-out targets it is 0.397 (weighted 0.289) against the probe's 0.392 (0.272), the same
regret), and the prior at 1 (see :data:`zooprobe.evaluator.decision.PRIOR_WEIGHT` for why its weight
comes from published evidence instead). LEEP and NCE
(0.5 each before, from the 7-candidate zoo) favoured ImageNet models that then fine-tuned worst on the
held-out targets; kNN adds nothing to the probe on the same features, and H-score is unstable with few
examples per dimension: all stay in the report, out of the consensus (weight 0). The README gives the
figures. Nearest class mean ranks nothing either: it is the as-is strategy's own classifier, which the
decision reads to predict that strategy (role ``as-is``).
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
    threads: int = 1,
) -> ProbeResult:
    """One probe fit per (features, folds, seed): both probe metrics read it from the candidate's cut-point cache."""
    from .probe import linear_probe

    options: dict[str, Any] = {"folds": folds, "seed": seed, "groups": groups, "device": device, "threads": threads}
    if cache is None:
        return linear_probe(features, labels, **options)
    key = ("linear_probe", folds, seed)  # threads change how fast, not what
    if key not in cache:
        cache[key] = linear_probe(features, labels, **options)
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
    threads: int = 1,
) -> MetricResult:
    """Mean cross-validated accuracy of the linear probe (see :func:`~zooprobe.evaluator.probe.linear_probe`),
    its standard deviation over folds, and the chosen ``c`` and ``folds``; fitted in torch on ``device`` when given,
    its folds on ``threads`` threads."""
    result = _fit_probe(features, labels, folds, seed, cache, groups, device, threads)
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
    threads: int = 1,
) -> MetricResult:
    """Mean cross-validated balanced accuracy (mean per-class recall) of the linear probe, as :func:`probe_accuracy`."""
    result = _fit_probe(features, labels, folds, seed, cache, groups, device, threads)
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
        concurrent=True,
        options=("folds", "seed", "cache", "groups", "device", "threads"),
    ),
    Metric(
        "probe_balanced_accuracy",
        probe_balanced_accuracy,
        "features",
        "linear-probe balanced accuracy (mean per-class recall), mean over stratified folds",
        "Radford et al. 2021 (CLIP), linear-probe protocol",
        default=True,
        concurrent=True,
        options=("folds", "seed", "cache", "groups", "device", "threads"),
    ),
    Metric(
        "knn_accuracy",
        _knn,
        "features",
        "leave-one-out cosine k-nearest-neighbour accuracy (k=10)",
        "Wu et al. 2018; Caron et al. 2021 (DINO)",
        default=True,
        concurrent=True,
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
        concurrent=True,
        options=("folds", "seed", "groups"),
    ),
    Metric(
        "logme",
        _logme,
        "features",
        "log maximum evidence of a Bayesian linear model per class",
        "You et al. 2021, LogME",
        weight=0.25,
        default=True,
        concurrent=True,
        options=("device",),
    ),
    Metric(
        "hscore",
        _hscore,
        "features",
        "tr(cov(f)^+ cov(E[f|y])): class separation",
        "Bao et al. 2019, H-score",
        default=True,
        concurrent=True,
    ),
    Metric(
        "nce",
        _nce,
        "probabilities",
        "negative conditional entropy of target labels given the source head's predicted class",
        "Tran et al. 2019, NCE",
        default=True,
        concurrent=True,
    ),
    Metric(
        "leep",
        _leep,
        "probabilities",
        "log expected empirical prediction through the source head",
        "Nguyen et al. 2020, LEEP",
        default=True,
        concurrent=True,
    ),
]


@hookimpl
def register_metrics() -> list[Metric]:
    return list(BUILTIN_METRICS)
