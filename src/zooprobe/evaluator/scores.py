"""Transferability scores of frozen features for a labelled target: higher always means more transferable.

- :func:`logme`: the log marginal evidence of a Bayesian linear model per class (You et al., 2021),
  maximised over the prior precision alpha and noise precision beta, vectorised over classes. It
  reaches the maximum that the published fixed-point updates climb towards, but by profiling beta
  out and searching the one remaining variable, so it needs ~70 evaluations where the updates need
  hundreds to thousands of iterations in few-shot cases (the published code stops after 11). Each
  evaluation is a tridiagonal solve after one Householder reduction of the feature Gram matrix,
  which costs a third of the eigendecomposition the published algorithm starts from. It handles
  N < D exactly (thuml/LogME#23) and, being a true maximum, is invariant to the scale of the features.
- :func:`hscore` (Bao et al., 2019): tr(cov(f)^+ cov(E[f | y])).
- :func:`nce` (Tran et al., 2019) and :func:`leep` (Nguyen et al., 2020): from the source head's
  class probabilities (N x K), not from features.
- :func:`knn_accuracy`: leave-one-out cosine k-nearest-neighbour accuracy.
- :func:`linear_probe` (in :mod:`.probe`, importable from here too): multinomial logistic
  regression with its L2 strength chosen on a held-out split by the CLIP paper's sweep (10^-6 ..
  10^6, then refined around the best), reported as mean and spread of accuracy and balanced
  accuracy over stratified folds.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from .probe import ProbeResult, linear_probe
from .score_inputs import (
    ScoreInputError,
    blas_threads,
    check_score_input,
    float32_ready,
    gram_product,
    stratified_folds,
)

if TYPE_CHECKING:
    import numpy as np
    import numpy.typing as npt

    FloatArray = npt.NDArray[np.float64]

__all__ = [
    "LogMEResult",
    "ProbeResult",
    "ScoreInputError",
    "hscore",
    "knn_accuracy",
    "leep",
    "linear_probe",
    "logme",
    "logme_fit",
    "nce",
]


def _tridiagonal_form(matrix: FloatArray) -> tuple[FloatArray, FloatArray, FloatArray, FloatArray]:
    """Householder reduction Q^T A Q = T of a symmetric matrix (overwritten): T's two diagonals, Q's reflectors, tau."""
    from .lapack_free import dsytrd_lower

    # The transpose of a C-ordered symmetric matrix is the same matrix in the Fortran order LAPACK
    # works in (no copy), reduced in place with the optimal (blocked) workspace; called with the
    # interpreter lock released, as the scores beside it on the pool need (:mod:`.lapack_free`).
    reflectors = matrix.T
    diagonal, off_diagonal, tau, info = dsytrd_lower(reflectors)
    if info != 0:
        raise ScoreInputError(f"the feature Gram matrix could not be reduced to tridiagonal form (dsytrd info={info})")
    return diagonal, off_diagonal, reflectors, tau


def _rotate(reflectors: FloatArray, tau: FloatArray, rhs: FloatArray) -> FloatArray:
    """Q^T rhs for the Q of :func:`_tridiagonal_form` (lower storage: Q = diag(1, Q'), Q' a QR factor)."""
    import numpy as np
    from scipy.linalg import lapack

    rotated = np.array(rhs, dtype=np.float64, order="F")
    if len(rhs) > 1:
        block = np.asfortranarray(reflectors[1:, :-1])
        below = np.asfortranarray(rotated[1:])
        work = int(lapack.dormqr("L", "T", block, tau, below, lwork=-1)[1][0])
        rotated[1:] = lapack.dormqr("L", "T", block, tau, below, lwork=max(work, 1), overwrite_c=1)[0]
    return rotated


def _tridiagonal_eigenvalues(diagonal: FloatArray, off_diagonal: FloatArray) -> FloatArray:
    """All eigenvalues of a symmetric tridiagonal matrix (Pal-Walker-Kahan QR, no eigenvectors)."""
    import numpy as np
    from scipy.linalg import lapack

    if len(diagonal) == 1:
        return np.asarray(diagonal, dtype=np.float64).copy()
    eigenvalues, info = lapack.dsterf(diagonal, off_diagonal)
    if info != 0:
        raise ScoreInputError(f"the eigenvalues of the feature Gram matrix did not converge (dsterf info={info})")
    return np.asarray(eigenvalues, dtype=np.float64)


def _solve_tridiagonal(diagonal: FloatArray, off_diagonal: FloatArray, rhs: FloatArray) -> FloatArray:
    """x = T^-1 rhs for a symmetric tridiagonal T, here a positive semi-definite one plus a positive shift.

    LDL^T without pivoting while T is numerically positive definite, partial-pivoting LU if rounding
    made it not.
    """
    import numpy as np
    from scipy.linalg import lapack

    if len(diagonal) == 1:
        return np.asarray(rhs, dtype=np.float64) / float(diagonal[0])
    factor, multipliers, info = lapack.dpttrf(diagonal, off_diagonal)
    if info == 0:
        solution, info = lapack.dpttrs(factor, multipliers, rhs)
    if info != 0:
        solution, info = lapack.dgtsv(off_diagonal, diagonal, off_diagonal, rhs)[3:]
    if info != 0:
        raise ScoreInputError(f"a shifted feature Gram matrix is singular (dgtsv info={info})")
    return np.asarray(solution, dtype=np.float64)


def _class_sums(f: FloatArray, y: npt.NDArray[np.int64], classes: int) -> FloatArray:
    """C x D sums of each class's rows, by a sparse one-hot product (no dense N x C matrix)."""
    import numpy as np
    from scipy import sparse

    one_hot = sparse.csr_matrix((np.ones(len(y)), (y, np.arange(len(y)))), shape=(classes, len(y)))
    return np.asarray(one_hot @ f, dtype=np.float64)


# --- LogME ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class LogMEResult:
    """LogME value (mean over classes of the per-example log-evidence), each class's, and the fitted precisions."""

    value: float
    per_class: FloatArray
    alpha: FloatArray
    beta: FloatArray
    evaluations: int


def logme_fit(features: Any, labels: Any, *, tolerance: float = 1e-8, device: str | None = None) -> LogMEResult:
    """LogME with its fitted alpha, beta per class; see :func:`logme`."""
    f, y = check_score_input(features, labels)
    n, d = f.shape
    with blas_threads(gram_product(n, d)):  # the Gram matrix and its reduction
        return _logme_fit(f, y, tolerance, device)


def _logme_fit(f: FloatArray, y: npt.NDArray[np.int64], tolerance: float, device: str | None) -> LogMEResult:
    import numpy as np

    n, d = f.shape
    classes = int(y.max()) + 1
    counts = np.bincount(y).astype(np.float64)  # ||y_c||^2 of the one-hot targets y_c
    # A = F^T F (D x D) with b_c = F^T y_c when N > D, else A = F F^T (N x N) with b_c = y_c: the
    # smaller of the two. Rescaling F moves the optimum (alpha -> s^2 alpha) but not the evidence:
    # condition it by dividing A by the mean squared norm of a row.
    if device is not None:  # A = V diag(lam) V^T on the device: T is diagonal, Q^T b is V^T b
        from .probe_torch import logme_eigen_form

        diagonal, off_diagonal, rotated, scale = logme_eigen_form(f, y, classes, device)
    else:
        gram = f.T @ f if n > d else f @ f.T
        scale = max(float(np.trace(gram)) / n, 1e-300)
        gram /= scale
        rhs = _class_sums(f, y, classes).T / math.sqrt(scale) if n > d else np.eye(classes)[y]
        # One Householder reduction A = Q T Q^T serves every class and every t = alpha / beta: the
        # eigenvalues of T give log det, and b^T (A + t I)^-1 b is a tridiagonal solve with Q^T b.
        # Eigenvectors (3x the reduction's cost at D = 2048) are never formed.
        diagonal, off_diagonal, reflectors, tau = _tridiagonal_form(gram)
        rotated = _rotate(reflectors, tau, rhs)  # K x C
        del gram, reflectors
    lam = np.clip(_tridiagonal_eigenvalues(diagonal, off_diagonal), 0, None)

    # The evidence depends on (alpha, beta) through t = alpha / beta and beta. With the ridge energy
    #   E(t) = ||y - F m||^2 + t ||m||^2 = ||y||^2 - b^T (A + t I)^-1 b   (N > D)
    #        = t y^T (A + t I)^-1 y                                      (N <= D),
    # the best beta for a given t is N / E(t), which leaves a function of t alone:
    #   log p(y) = -1/2 sum_k log(1 + lam_k / t) - N/2 log E(t) + N/2 (log(N / 2 pi) - 1),
    # the other D - N eigenvalues of F^T F being zero when N <= D (thuml/LogME#23 counts them
    # wrongly). MacKay's fixed-point updates climb the same surface but can take thousands of steps.
    # Here a grid over log t brackets each class's maximum, and the Illinois variant of regula falsi
    # on the slope d log p / d log t, vectorised over classes, closes in on it in ~10 steps: one
    # solve gives x = (T + t I)^-1 q, the quadratic q^T x and its t-derivative -x^T x.
    constant = n / 2 * (math.log(n / (2 * math.pi)) - 1)

    def ridge_energy(t: FloatArray, quadratic: FloatArray) -> FloatArray:
        """E(t) of each class from q^T (T + t I)^-1 q."""
        return np.maximum(counts - quadratic if n > d else t * quadratic, 1e-300)

    def evidence(t: FloatArray, quadratic: FloatArray, squared: FloatArray) -> tuple[FloatArray, FloatArray]:
        """Each class's profiled log-evidence and its slope in log t, from q^T x and x^T x at its t."""
        energy = ridge_energy(t, quadratic)
        energy_slope = t * squared if n > d else t * quadratic - t * t * squared  # dE / d log t
        ratio = lam[:, None] / t[None, :]
        value: FloatArray = -0.5 * np.log1p(ratio).sum(axis=0) - n / 2 * np.log(energy) + constant
        slope: FloatArray = 0.5 * (ratio / (1 + ratio)).sum(axis=0) - n / 2 * energy_slope / energy
        return value, slope

    def at_shared(log_t: float) -> tuple[FloatArray, FloatArray]:
        """Every class's evidence and slope at one t."""
        t = math.exp(log_t)
        x = _solve_tridiagonal(diagonal + t, off_diagonal, rotated)
        return evidence(np.full(classes, t), (rotated * x).sum(axis=0), (x * x).sum(axis=0))

    # Class c's system sits in rows c*K .. c*K + K - 1 of one block-diagonal tridiagonal matrix.
    stacked_rhs = np.ascontiguousarray(rotated.T).ravel()
    stacked_off = np.tile(np.append(off_diagonal, 0.0), classes)[:-1]

    def solve_each(t: FloatArray) -> tuple[FloatArray, FloatArray]:
        """(q^T x, x^T x) of each class c, x = (T + t[c] I)^-1 q_c."""
        x = _solve_tridiagonal((diagonal[None, :] + t[:, None]).ravel(), stacked_off, stacked_rhs)
        return (stacked_rhs * x).reshape(classes, -1).sum(axis=1), (x * x).reshape(classes, -1).sum(axis=1)

    def at_each(log_t: FloatArray) -> tuple[FloatArray, FloatArray]:
        """Class c's evidence and slope at t = exp(log_t[c])."""
        t = np.exp(log_t)
        return evidence(t, *solve_each(t))

    # lam sums to N after the scaling above, unless every feature is zero: then no t matters (t = 1)
    log_top = math.log(float(lam.max())) if lam.max() > 0 else 0.0
    # t from 1e-13 to 1e13 times the largest eigenvalue, a factor e apart
    grid = log_top + np.arange(-30, 31, dtype=np.float64)
    on_grid = [at_shared(float(log_t)) for log_t in grid]
    values = np.stack([v for v, _ in on_grid], axis=1)  # C x G
    slopes = np.stack([g for _, g in on_grid], axis=1)
    best = values.argmax(axis=1)
    columns = np.arange(classes)
    below, above = np.maximum(best - 1, 0), np.minimum(best + 1, len(grid) - 1)
    # A maximum strictly inside the grid has a rising slope below it and a falling one above.
    # Elsewhere (the evidence still rising at t = 1e13 lam_max: features that explain nothing) the
    # best grid point stands.
    inside = (slopes[columns, below] > 0) & (slopes[columns, above] < 0)
    low, slope_low = grid[below], slopes[columns, below]
    high, slope_high = grid[above], slopes[columns, above]
    log_t, value = grid[best], values[columns, best]
    evaluations = len(grid)
    for _ in range(100):
        if not inside.any() or float(np.abs(high - low)[inside].max()) <= tolerance:
            break
        denominator = np.where(inside, slope_high - slope_low, 1.0)
        trial = np.where(inside, (low * slope_high - high * slope_low) / denominator, log_t)
        trial_value, trial_slope = at_each(trial)
        evaluations += 1
        crossed = trial_slope * slope_high < 0
        # Illinois: keep the bracket, halving the stale end's slope when the same end moves twice
        low, slope_low = np.where(crossed, high, low), np.where(crossed, slope_high, slope_low / 2)
        high, slope_high = trial, trial_slope
        low = np.where(trial_slope == 0, trial, low)  # landed on the maximum itself
        improved = inside & (trial_value > value)
        log_t, value = np.where(improved, trial, log_t), np.where(improved, trial_value, value)
    t = np.exp(log_t)
    beta = n / ridge_energy(t, solve_each(t)[0])
    # t is alpha / beta for the features divided by sqrt(scale); alpha for F itself is scale times it
    alpha = t * beta * scale
    return LogMEResult(float((value / n).mean()), value / n, alpha=alpha, beta=beta, evaluations=evaluations)


def logme(features: Any, labels: Any, *, tolerance: float = 1e-8, device: str | None = None) -> float:
    """LogME: the mean over classes of the maximised log-evidence per example (higher: more transferable).

    :param features: N x D frozen features.
    :param labels: N class labels (any integers or strings).
    :param tolerance: width, in log(alpha / beta), to which the maximum is located.
    :param device: compute the Gram matrix and its eigendecomposition in torch there (e.g. ``cuda``);
        by default, LAPACK on the CPU. The value agrees within 1e-4.
    """
    return logme_fit(features, labels, tolerance=tolerance, device=device).value


# --- H-score -------------------------------------------------------------------------------------


def hscore(features: Any, labels: Any, *, rcond: float = 1e-10) -> float:
    """H-score: tr(cov(f)^+ cov(E[f|y])), the pseudo-inverse regularised by ``rcond`` x the mean variance."""
    f, y = check_score_input(features, labels)
    with blas_threads(float(f.shape[0]) * f.shape[1] ** 2):
        return _hscore(f, y, features, rcond)


def _hscore(f: FloatArray, y: npt.NDArray[np.int64], features: Any, rcond: float) -> float:
    import numpy as np
    from scipy.linalg import solve_triangular

    from .lapack_free import dpotrf_lower

    if np.may_share_memory(f, features):
        f = f.copy()  # centred in place below: never the caller's array
    n = len(f)
    f -= f.mean(axis=0)
    counts = np.bincount(y)
    means = _class_sums(f, y, len(counts)) / counts[:, None]
    cov = f.T @ f / n
    # Pseudo-inverse by a Cholesky solve with a tiny relative ridge: class means lie in the span of
    # the data, so directions the data do not cover contribute nothing either way.
    cov.flat[:: len(cov) + 1] += rcond * max(float(np.trace(cov)) / len(cov), 1e-300)
    factor = cov.T  # the same symmetric matrix in Fortran order, factored in place (the lock released)
    dpotrf_lower(factor)
    solved = solve_triangular(factor, means.T, lower=True, check_finite=False)  # ||L^-1 mu||^2 = mu^T cov^-1 mu
    return float((counts / n) @ (solved**2).sum(axis=0))


# --- NCE and LEEP (from source-head probabilities) -----------------------------------------------


def _checked_probabilities(
    probabilities: Any, labels: Any, keep_dtype: bool = False
) -> tuple[FloatArray, npt.NDArray[np.int64]]:
    """Source probabilities checked (rows >= 0 summing to 1), as float64 or, with ``keep_dtype``, as given."""
    import numpy as np

    raw = np.asarray(probabilities)
    dtype = raw.dtype if keep_dtype and raw.dtype.kind == "f" else None
    p, y = check_score_input(raw, labels, what="source probabilities", dtype=dtype)
    if (p < -1e-6).any() or not np.allclose(p.sum(axis=1, dtype=np.float64), 1.0, atol=1e-3):
        raise ScoreInputError(
            "NCE and LEEP take the source head's class probabilities (rows >= 0 summing to 1);"
            " apply softmax to the logits first"
        )
    return p, y


def _probabilities(probabilities: Any, labels: Any) -> tuple[FloatArray, npt.NDArray[np.int64]]:
    import numpy as np

    p, y = _checked_probabilities(probabilities, labels)
    # clipped (in place when already a copy) and renormalised: rows within the tolerance above sum to 1
    p = np.clip(p, 0, None, out=p if not np.may_share_memory(p, probabilities) else None)
    p /= p.sum(axis=1, keepdims=True)
    return p, y


def nce(probabilities: Any, labels: Any) -> float:
    """NCE: the negative conditional entropy -H(Y | Z) of target labels given the source head's argmax Z."""
    import numpy as np

    # Only each row's argmax is used, which clipping entries above -1e-6 and renormalising leave as
    # they are: no float64 copy of the N x K probabilities.
    p, y = _checked_probabilities(probabilities, labels, keep_dtype=True)
    z = p.argmax(axis=1)
    joint = np.zeros((p.shape[1], y.max() + 1))
    np.add.at(joint, (z, y), 1.0)
    joint /= len(y)
    marginal = joint.sum(axis=1, keepdims=True)
    nonzero = joint > 0
    conditional = np.divide(joint, marginal, out=np.ones_like(joint), where=marginal > 0)
    return float((joint[nonzero] * np.log(conditional[nonzero])).sum())


def leep(probabilities: Any, labels: Any) -> float:
    """LEEP: the mean log-likelihood of the target labels under the empirical source-to-target predictor."""
    import numpy as np

    p, y = _probabilities(probabilities, labels)
    n = len(y)
    joint = _class_sums(p, y, int(y.max()) + 1).T / n  # K x C: P(z, y)
    marginal = joint.sum(axis=1, keepdims=True)
    conditional = np.divide(joint, marginal, out=np.zeros_like(joint), where=marginal > 0)  # P(y | z)
    likelihood = (p @ conditional)[np.arange(n), y]  # every class's, then the true one's: no N x K temporaries
    return float(np.log(np.maximum(likelihood, 1e-300)).mean())


# --- kNN -----------------------------------------------------------------------------------------


def knn_accuracy(
    features: Any,
    labels: Any,
    *,
    k: int = 10,
    max_queries: int = 2_000,
    seed: int = 0,
    block: int = 1_024,
    groups: Any = None,
) -> float:
    """Leave-one-out accuracy of a similarity-weighted cosine k-nearest-neighbour vote.

    Past ``max_queries`` examples, a stratified random subset (fixed ``seed``) is the query set,
    still searched against every example; ``k`` shrinks to what the smallest class allows. With
    ``groups`` (a group id per example, e.g. one per content), a query's whole group is left out.
    """
    import numpy as np

    f32, y = check_score_input(float32_ready(features, centre=False), labels, dtype=np.float32)
    f32 = f32 / np.maximum(np.linalg.norm(f32, axis=1, keepdims=True), np.float32(1e-12))
    n = len(f32)
    group = None if groups is None else np.asarray(groups)
    largest = 1 if group is None else int(np.unique(group, return_counts=True)[1].max())
    k = max(1, min(k, int(np.bincount(y).min()) - 1 or 1, n - largest))
    queries = np.arange(n)
    if n > max_queries:
        queries = np.flatnonzero(stratified_folds(y, math.ceil(n / max_queries), seed, group) == 0)
    with blas_threads(float(min(block, len(queries))) * n * f32.shape[1]):
        return _knn_votes(f32, y, queries, group, k, block) / len(queries)


def _knn_votes(f32: Any, y: npt.NDArray[np.int64], queries: Any, group: Any, k: int, block: int) -> int:
    """How many ``queries`` the k-nearest-neighbour vote classifies right."""
    import numpy as np
    import torch

    classes = int(y.max()) + 1
    correct = 0
    for start in range(0, len(queries), block):
        rows = queries[start : start + block]
        sims = f32[rows] @ f32.T
        sims[np.arange(len(rows)), rows] = -np.inf  # leave the query itself out
        if group is not None:  # and its copies, which would vote for their own label
            sims[group[rows][:, None] == group[None, :]] = -np.inf
        top = torch.topk(torch.from_numpy(sims), k, dim=1, sorted=False)  # 10x np.argpartition's speed
        nearest = top.indices.numpy()
        weights = top.values.numpy().astype(np.float64) + 1.0  # cosine in [-1, 1]
        votes = np.zeros((len(rows), classes))
        np.add.at(votes, (np.repeat(np.arange(len(rows)), k), y[nearest].ravel()), weights.ravel())
        correct += int((votes.argmax(axis=1) == y[rows]).sum())
    return correct


# --- linear probe --------------------------------------------------------------------------------
