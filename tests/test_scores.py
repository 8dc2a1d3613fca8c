"""Transferability scores against hand computations, per-class references and a generic optimiser."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy.optimize import minimize

import zooprobe.metrics
from zooprobe.errors import InvalidChoiceError
from zooprobe.evaluator import scores
from zooprobe.evaluator.probe import _LowerTriangular, _Softmax
from zooprobe.evaluator.score_inputs import stratified_folds
from zooprobe.metrics import Metric, MetricResult
from zooprobe.plugins.hookspecs import hookimpl
from zooprobe.plugins.manager import get_plugin_manager


def per_class_logme_reference(features: np.ndarray, labels: np.ndarray, iterations: int = 100_000) -> float:
    """The published algorithm written out per class with explicit matrices (no eigen tricks)."""
    f = features.astype(np.float64)
    n, d = f.shape
    gram = f.T @ f
    evidences = []
    for c in np.unique(labels):
        y = (labels == c).astype(np.float64)
        alpha, beta = 1.0, 1.0
        previous = -np.inf
        for _ in range(iterations):
            a = alpha * np.eye(d) + beta * gram
            m = beta * np.linalg.solve(a, f.T @ y)
            gamma = d - alpha * np.trace(np.linalg.inv(a))
            residual = float(((y - f @ m) ** 2).sum())
            mm = float(m @ m)
            evidence = (
                d / 2 * math.log(alpha)
                + n / 2 * math.log(beta)
                - alpha / 2 * mm
                - beta / 2 * residual
                - 0.5 * np.linalg.slogdet(a)[1]
                - n / 2 * math.log(2 * math.pi)
            )
            if abs(evidence - previous) < 1e-13 * max(1.0, abs(evidence)):
                break
            previous = evidence
            alpha, beta = gamma / mm, (n - gamma) / residual
        evidences.append(evidence / n)
    return float(np.mean(evidences))


def marginal_likelihood(features: np.ndarray, y: np.ndarray, log_alpha: float, log_beta: float) -> float:
    """log N(y; 0, F F^T / alpha + I / beta): the evidence from its definition, independent of LogME's algebra."""
    n = len(y)
    cov = features @ features.T / math.exp(log_alpha) + np.eye(n) / math.exp(log_beta)
    sign, logdet = np.linalg.slogdet(cov)
    assert sign > 0
    return float(-0.5 * (logdet + y @ np.linalg.solve(cov, y) + n * math.log(2 * math.pi)))


def optimised_logme(features: np.ndarray, labels: np.ndarray) -> float:
    return float(np.mean([value for value, _ in optimised_evidence(features, labels)]))


def optimised_evidence(features: np.ndarray, labels: np.ndarray) -> list[tuple[float, np.ndarray]]:
    """Per class: the maximised evidence per example and (log alpha, log beta), by Nelder-Mead."""
    found = []
    for c in np.unique(labels):
        y = (labels == c).astype(np.float64)
        result = minimize(
            lambda p, y=y: -marginal_likelihood(features, y, p[0], p[1]),
            x0=np.zeros(2),
            method="Nelder-Mead",
            options={"xatol": 1e-10, "fatol": 1e-12, "maxiter": 20_000},
        )
        found.append((-result.fun / len(y), result.x))
    return found


def separable(n: int, d: int, classes: int, shift: float, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    labels = np.arange(n) % classes
    centres = rng.normal(size=(classes, d)) * shift
    return rng.normal(size=(n, d)) + centres[labels], labels


@pytest.mark.parametrize(("n", "d", "shift"), [(120, 8, 0.7), (60, 25, 0.7), (20, 40, 0.3), (20, 40, 0.1)])
def test_logme_equals_per_class_reference_and_generic_optimiser(n: int, d: int, shift: float) -> None:
    # (20, 40, 0.1) is a few-shot N < D case whose fixed point needs over a thousand iterations.
    features, labels = separable(n, d, 3, shift=shift)
    value = scores.logme(features, labels)
    assert value == pytest.approx(per_class_logme_reference(features, labels), rel=1e-6)
    assert value == pytest.approx(optimised_logme(features, labels), rel=1e-6)


@pytest.mark.parametrize("n", [60, 20])
def test_logme_with_dead_and_duplicated_features(n: int) -> None:
    # ReLU features often hold all-zero and repeated columns: a rank-deficient Gram matrix, whose
    # zero eigenvalues the tridiagonal solves must neither divide by nor count.
    features, labels = separable(n, 12, 3, shift=0.7, seed=5)
    features = np.hstack([np.maximum(features, 0), np.zeros((n, 3)), np.maximum(features[:, :4], 0)])
    value = scores.logme(features, labels)
    assert value == pytest.approx(optimised_logme(features, labels), rel=1e-6)
    assert value == pytest.approx(per_class_logme_reference(features, labels), rel=1e-6)


@pytest.mark.parametrize("shape", [(20, 3), (3, 20)])
def test_logme_of_all_zero_features_is_the_evidence_without_features(shape: tuple[int, int]) -> None:
    # With F = 0 the model is y ~ N(0, I / beta) at the best beta = N / ||y||^2.
    labels = np.arange(shape[0]) % 2
    counts = np.bincount(labels)
    n = shape[0]
    expected = np.mean(-n / 2 * np.log(2 * np.pi * counts / n) - n / 2) / n
    assert scores.logme(np.zeros(shape), labels) == pytest.approx(expected, rel=1e-9)


def test_logme_is_invariant_to_feature_scale_and_not_stopped_early_few_shot() -> None:
    features, labels = separable(12, 64, 3, shift=0.5, seed=3)  # N < D, few-shot
    value = scores.logme(features, labels)
    assert value == pytest.approx(optimised_logme(features, labels), rel=1e-6)
    for scale in (1e-150, 1e-3, 1.0, 1e4, 1e150):
        assert scores.logme(features * scale, labels) == pytest.approx(value, rel=1e-8)
    # The published code's 11 fixed-point iterations stop 1% short of the maximum here.
    features, labels = separable(20, 40, 3, shift=0.1)
    stopped_early = per_class_logme_reference(features, labels, iterations=11)
    assert abs(stopped_early - scores.logme(features, labels)) > 1e-3 * abs(stopped_early)


@pytest.mark.parametrize(("n", "d"), [(120, 8), (20, 40)])
def test_logme_fitted_precisions_are_the_evidence_maximisers(n: int, d: int) -> None:
    # alpha belongs to the features as given (the fit runs on rescaled ones): it scales as s^2 with them
    features, labels = separable(n, d, 3, shift=0.7, seed=2)
    features *= 4.0  # away from unit scale, where a missing rescaling would go unnoticed
    fit = scores.logme_fit(features, labels)
    optima = optimised_evidence(features, labels)
    # where a class is fitted exactly (N < D) the evidence rises for ever with beta: no maximiser to match
    interior = [c for c, (_, (_, log_beta)) in enumerate(optima) if log_beta < 20]
    assert len(interior) >= 2
    for c in interior:
        log_alpha, log_beta = optima[c][1]
        assert math.log(fit.alpha[c]) == pytest.approx(log_alpha, abs=1e-4)
        assert math.log(fit.beta[c]) == pytest.approx(log_beta, abs=1e-4)
    scaled = scores.logme_fit(features * 1e3, labels)
    np.testing.assert_allclose(scaled.alpha, fit.alpha * 1e6, rtol=1e-6)
    np.testing.assert_allclose(scaled.beta, fit.beta, rtol=1e-6)


def test_logme_ranks_informative_features_above_noise() -> None:
    informative, labels = separable(300, 16, 4, shift=2.0)
    noise = np.random.default_rng(9).normal(size=informative.shape)
    assert scores.logme(informative, labels) > scores.logme(noise, labels)


def test_hscore_hand_computed() -> None:
    # 1-D features: cov(f) = var, cov(E[f|y]) = between-class variance; H = between / total.
    features = np.array([[0.0], [2.0], [4.0], [6.0]])
    labels = np.array([0, 0, 1, 1])
    # mean 3; total variance (9+1+1+9)/4 = 5; class means 1 and 5 -> between variance (4+4)/2 = 4
    assert scores.hscore(features, labels) == pytest.approx(4 / 5)


def test_nce_and_leep_hand_computed() -> None:
    probabilities = np.array([[0.9, 0.1], [0.8, 0.2], [0.3, 0.7], [0.4, 0.6]])
    labels = np.array([0, 0, 1, 0])
    # NCE: argmax z = [0, 0, 1, 1]; P(z=0,y=0)=1/2, P(z=1,y=1)=1/4, P(z=1,y=0)=1/4
    expected_nce = 0.5 * math.log(1.0) + 0.25 * math.log(0.5) + 0.25 * math.log(0.5)
    assert scores.nce(probabilities, labels) == pytest.approx(expected_nce)
    # LEEP: joint P(z, y) = 1/4 sum_i p_i(z) [y_i = y]
    joint = np.array([[0.9 + 0.8 + 0.4, 0.3], [0.1 + 0.2 + 0.6, 0.7]]) / 4
    conditional = joint / joint.sum(axis=1, keepdims=True)
    expected_leep = np.mean([math.log(probabilities[i] @ conditional[:, labels[i]]) for i in range(4)])
    assert scores.leep(probabilities, labels) == pytest.approx(expected_leep)


def test_leep_reads_rows_off_by_rounding_as_probabilities() -> None:
    rng = np.random.default_rng(3)
    p = rng.dirichlet(np.ones(6), size=40)
    labels = np.arange(40) % 3
    rounded = p * (1 + rng.uniform(-5e-4, 5e-4, size=(40, 1)))  # each row's sum off by up to 5e-4
    assert scores.leep(rounded, labels) == pytest.approx(scores.leep(p, labels), rel=1e-12)


def test_nce_and_leep_reject_logits() -> None:
    with pytest.raises(scores.ScoreInputError, match="softmax"):
        scores.leep(np.array([[2.0, -1.0], [0.5, 3.0]]), np.array([0, 1]))


def test_knn_accuracy_hand_computed() -> None:
    features = np.array([[1.0, 0.0], [0.9, 0.1], [0.0, 1.0], [0.1, 0.9], [0.8, 0.2]])
    labels = np.array([0, 0, 1, 1, 1])  # the last one sits among class 0: misclassified
    assert scores.knn_accuracy(features, labels, k=1) == pytest.approx(4 / 5)


def test_linear_probe_separates_and_reports_spread() -> None:
    features, labels = separable(200, 10, 4, shift=3.0)
    good = scores.linear_probe(features, labels, folds=4)
    assert good.accuracy > 0.95 and good.folds == 4 and 0 <= good.accuracy_std < 0.1
    assert 1e-6 <= good.c <= 1e6 and len(good.sweep) >= 7
    noise = scores.linear_probe(np.random.default_rng(1).normal(size=(200, 10)), labels, folds=4)
    assert noise.accuracy < 0.5
    assert good.balanced_accuracy == pytest.approx(good.accuracy, abs=0.05)


def test_probe_and_knn_do_not_depend_on_feature_scale_or_offset() -> None:
    # Both compute in float32: tiny or huge features, or an offset far above the spread, must not
    # underflow, overflow or round away what they measure.
    features, labels = separable(150, 12, 3, shift=0.6, seed=4)
    probe = scores.linear_probe(features, labels, folds=3)
    knn = scores.knn_accuracy(features, labels)
    assert 0.5 < probe.accuracy < 0.98 and 0.5 < knn < 0.98
    for scale in (1e-13, 1e-6, 1e18):
        scaled = scores.linear_probe(features * scale, labels, folds=3)
        assert scaled.accuracy == pytest.approx(probe.accuracy, abs=0.02)
        assert scores.knn_accuracy(features * scale, labels) == pytest.approx(knn, abs=1e-9)
    assert scores.linear_probe(features + 1e8, labels, folds=3).accuracy == pytest.approx(probe.accuracy, abs=0.02)


@pytest.mark.parametrize("c", [0.01, 1.0])
def test_probe_fit_reaches_scikit_learns_optimum(c: float) -> None:
    # The loss and gradient are written out by hand: the optimum must be scikit-learn's for the same C.
    from sklearn.linear_model import LogisticRegression

    features, labels = separable(300, 20, 4, shift=0.4, seed=2)
    features = ((features - features.mean(axis=0)) / features.std(axis=0)).astype(np.float32)
    model = _Softmax(20, 4)
    model.fit(features, labels, c, 500)
    weight, bias = model.state()
    reference = LogisticRegression(C=c, tol=1e-10, max_iter=10_000).fit(features.astype(np.float64), labels)
    # softmax is unchanged by a constant added to every class: compare centred parameters. The fit
    # runs in float32 and stops when the loss moves by < 1e-9, which float32 logits resolve to a few
    # 1e-4 in these weights (up to 1.3); a penalty gradient off by a factor 2 moves them by 0.07.
    np.testing.assert_allclose(weight - weight.mean(axis=1, keepdims=True), reference.coef_.T, atol=5e-4)
    np.testing.assert_allclose(bias - bias.mean(), reference.intercept_ - reference.intercept_.mean(), atol=5e-4)


def test_probe_fit_in_the_span_of_few_training_rows_is_the_same_fit() -> None:
    # With fewer training rows than features the probe fits in an orthonormal basis of their span,
    # where the optimum lies (every gradient is X^T (P - Y) + 2 lambda W): the same solution.
    features, labels = separable(90, 300, 3, shift=0.3, seed=4)
    features = features.astype(np.float32)
    train, test = features[:60], features[60:]
    full = _Softmax(300, 3)
    full.fit(train, labels[:60], 0.1, 500)
    basis, triangular = np.linalg.qr(train.T)
    reduced = _Softmax(60, 3)
    rows = _LowerTriangular(np.ascontiguousarray(triangular.T), block=16)  # as the probe passes them
    reduced.fit(rows, labels[:60], 0.1, 500)
    np.testing.assert_allclose(basis @ reduced.state()[0], full.state()[0], atol=1e-4)
    np.testing.assert_array_equal(reduced.predict(test @ basis), full.predict(test))
    result = scores.linear_probe(features, labels, folds=3)
    assert result.accuracy > 0.9 and len(result.sweep) == 11


def test_linear_probe_estimate_matches_accuracy_on_fresh_data() -> None:
    """Cross-validation must not leak: a fold's fit starting from a model that saw its test rows stops
    near that model when it stops short of the optimum (here: 10 iterations), and scored 0.96 here
    where fresh data gives 0.76."""
    rng = np.random.default_rng(0)
    d, classes = 512, 40
    centers = rng.normal(size=(classes, 256)) * 0.35
    mixing = rng.normal(size=(256, d)) * (np.arange(1, 257) ** -0.5)[:, None]

    def sample(n: int) -> tuple[np.ndarray, np.ndarray]:
        labels = np.arange(n) % classes
        latent = rng.normal(size=(n, 256)) + centers[labels]
        return np.maximum(latent @ mixing + 0.1 * rng.normal(size=(n, d)), 0).astype(np.float32), labels

    features, labels = sample(2_000)
    fresh_features, fresh_labels = sample(5_000)
    probe = scores.linear_probe(features, labels, max_iter=10)
    train = stratified_folds(labels, 5, 0) != 1  # one fold's training rows, fitted from scratch
    mean, std = features[train].mean(axis=0), features[train].std(axis=0) + 1e-8
    model = _Softmax(d, classes)
    model.fit((features[train] - mean) / std, labels[train], probe.c, 10)
    fresh = float((model.predict((fresh_features - mean) / std) == fresh_labels).mean())
    assert probe.accuracy == pytest.approx(fresh, abs=0.04)


def test_bad_inputs_are_one_line_errors() -> None:
    with pytest.raises(scores.ScoreInputError, match="single class"):
        scores.logme(np.ones((4, 2)), np.zeros(4))
    with pytest.raises(scores.ScoreInputError, match="N x D"):
        scores.hscore(np.ones(4), np.array([0, 1, 0, 1]))
    with pytest.raises(scores.ScoreInputError, match="NaN"):
        scores.logme(np.array([[np.nan], [1.0]]), np.array([0, 1]))
    with pytest.raises(scores.ScoreInputError, match="empty"):
        scores.logme(np.zeros((4, 0)), np.array([0, 1, 0, 1]))
    with pytest.raises(scores.ScoreInputError, match="labels contain NaN"):
        scores.knn_accuracy(np.ones((4, 2)), np.array([0.0, 1.0, np.nan, 1.0]))
    with pytest.raises(scores.ScoreInputError, match="at least 2 per class"):
        scores.linear_probe(np.ones((3, 2)), np.array([0, 0, 1]))


def test_metric_registry_lists_builtins_and_a_third_party_metric() -> None:
    assert zooprobe.metrics.names() == [
        "hscore",
        "knn_accuracy",
        "leep",
        "logme",
        "nce",
        "ncm_accuracy",
        "probe_accuracy",
        "probe_balanced_accuracy",
    ]
    features, labels = separable(60, 5, 3, shift=2.0)
    assert zooprobe.metrics.get("logme")(features, labels) == scores.logme(features, labels)
    with pytest.raises(InvalidChoiceError, match="did you mean 'logme'"):
        zooprobe.metrics.get("logm")

    class FisherRatio:
        @hookimpl
        def register_metrics(self) -> list[Metric]:
            def fisher(f: np.ndarray, y: np.ndarray) -> float:
                means = np.stack([f[y == c].mean(axis=0) for c in np.unique(y)])
                return float(means.var(axis=0).sum() / f.var(axis=0).sum())

            return [Metric("fisher_ratio", fisher, "features", "between over total variance")]

    pm = get_plugin_manager(load_entrypoints=False)
    pm.register(FisherRatio(), name="fisher")
    assert "fisher_ratio" in zooprobe.metrics.names(pm)
    assert zooprobe.metrics.get("fisher_ratio", pm)(features, labels) > 0.5


def test_a_metric_with_an_input_assess_cannot_route_is_refused() -> None:
    # assess scores 'features' and 'probabilities' metrics; any other input would be skipped silently
    with pytest.raises(InvalidChoiceError, match="input of metric 'typo'.*did you mean 'features'"):
        Metric("typo", scores.logme, "feature", "a typo")  # type: ignore[arg-type]
    with pytest.raises(zooprobe.errors.ZooprobeError, match="callable function"):
        Metric("nothing", None, "features", "no function")  # type: ignore[arg-type]


def test_a_metric_gets_only_the_run_options_it_declares_and_returns_a_result() -> None:
    features, labels = separable(60, 5, 3, shift=2.0)
    run = {"seed": 3, "folds": 4, "cache": {}}

    def plain(f: np.ndarray, y: np.ndarray) -> float:  # no **options: any keyword passed would raise
        return float(np.float32(0.25))

    assert Metric("plain", plain, "features", "a constant").score(features, labels, **run) == MetricResult(0.25)
    seen: dict[str, int] = {}

    def seeded(f: np.ndarray, y: np.ndarray, *, seed: int) -> MetricResult:
        seen["seed"] = seed
        return MetricResult(1.0, spread=0.5, details={"seed": seed})

    metric = Metric("seeded", seeded, "features", "echoes the seed", options=("seed",))
    assert metric.score(features, labels, **run) == MetricResult(1.0, 0.5, {"seed": 3}) and seen == {"seed": 3}
    assert zooprobe.metrics.MetricResult.of(np.float64(0.5), "x") == MetricResult(0.5)
    with pytest.raises(zooprobe.errors.ZooprobeError, match="metric 'bad' returned str 'high'"):
        Metric("bad", lambda f, y: "high", "features", "not a number").score(features, labels)


def test_one_probe_fit_serves_both_probe_metrics() -> None:
    features, labels = separable(60, 5, 3, shift=0.5)
    cache: dict[object, object] = {}
    accuracy = zooprobe.metrics.spec("probe_accuracy").score(features, labels, folds=3, seed=1, cache=cache)
    (fit,) = cache.values()  # the one fit, kept for the next probe metric at this cut point
    balanced = zooprobe.metrics.spec("probe_balanced_accuracy").score(features, labels, folds=3, seed=1, cache=cache)
    assert len(cache) == 1
    expected = scores.linear_probe(features, labels, folds=3, seed=1)
    assert fit == expected
    assert accuracy == MetricResult(expected.accuracy, expected.accuracy_std, {"c": expected.c, "folds": 3})
    assert balanced == MetricResult(
        expected.balanced_accuracy, expected.balanced_accuracy_std, {"c": expected.c, "folds": 3}
    )
    assert zooprobe.metrics.get("probe_accuracy")(features, labels, folds=3, seed=1) == expected.accuracy


def test_the_builtin_metrics_declare_the_decisions_table() -> None:
    # the roles, consensus weights and default order the decision used to name in code
    assert zooprobe.metrics.defaults() == [
        "probe_accuracy", "probe_balanced_accuracy", "knn_accuracy", "ncm_accuracy", "logme", "hscore", "nce", "leep",
    ]  # fmt: skip
    declared = {m.name: (m.role, m.weight) for m in zooprobe.metrics.registered().values()}
    assert {name: role for name, (role, _) in declared.items() if role != "evidence"} == {
        "probe_accuracy": "probe",
        "ncm_accuracy": "as-is",
    }
    assert {name: weight for name, (_, weight) in declared.items() if weight} == {
        "probe_accuracy": 1.0,
        "logme": 0.25,
    }


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"role": "leader"}, "role of metric 'm'"),
        ({"options": ("seeds",)}, "option of metric 'm'.*did you mean 'seed'"),
        ({"weight": -1.0}, "consensus weight -1.0"),
        ({"weight": float("nan")}, "consensus weight nan"),
    ],
)
def test_a_metric_declaring_what_assess_cannot_use_is_refused(changes: dict[str, object], message: str) -> None:
    with pytest.raises(zooprobe.errors.ZooprobeError, match=message):
        Metric("m", scores.logme, "features", "d", **changes)  # type: ignore[arg-type]
