"""The linear probe: multinomial logistic regression with its L2 strength chosen by the CLIP sweep,
reported as mean and spread of accuracy and balanced accuracy over stratified folds."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from .score_inputs import (
    LARGE_PRODUCT,
    ScoreInputError,
    blas_threads,
    check_score_input,
    float32_ready,
    scoring_threads,
    stratified_folds,
)

if TYPE_CHECKING:
    import numpy as np
    import numpy.typing as npt

    FloatArray = npt.NDArray[np.float64]


# scikit-learn's default for the same gradient (of the mean loss). 1e-6 ran 7-11 of a probe's 16
# fits to the iteration cap; with 1e-4 (and warm starts from the nearest C), on 2 backbones x 3
# resolutions x 6 cut points of digits, the probe took 2.5x less CPU, every candidate kept its rank,
# its best cut point moved by at most one and that accuracy by at most 0.003. Single cut points
# moved by up to 0.013, where the sweep is flat and one validation example picks a C 3 decades off
# (benchmarks/bench_probe_guard.py).
TOLERANCE = 1e-4


@dataclass(frozen=True)
class ProbeResult:
    """Cross-validated linear-probe accuracy at the regularisation the sweep chose."""

    accuracy: float
    accuracy_std: float
    balanced_accuracy: float
    balanced_accuracy_std: float
    c: float
    folds: int
    sweep: dict[float, float]


def _balanced_accuracy(truth: npt.NDArray[np.int64], predicted: npt.NDArray[np.int64]) -> float:
    import numpy as np

    recalls = [float((predicted[truth == c] == c).mean()) for c in np.unique(truth)]
    return float(np.mean(recalls))


class _LowerTriangular:
    """An N x N lower-triangular matrix whose products skip the zero upper triangle.

    A probe's training rows in their own span's basis are R^T of X^T = Q R. Multiplying by blocks
    of 256 rows, each only against the columns left of its diagonal end, took 60% of a dense
    product's time at N = 1,586, C = 100 (the sweep's size at C = 100 classes).
    """

    def __init__(self, matrix: Any, block: int = 256) -> None:
        self.matrix = matrix
        edges = [*range(0, len(matrix), block), len(matrix)]
        self.blocks = list(zip(edges[:-1], edges[1:], strict=True))
        self.shape = matrix.shape

    def __len__(self) -> int:
        return len(self.matrix)

    def __matmul__(self, other: Any) -> Any:
        import numpy as np

        product = np.empty((len(self.matrix), other.shape[1]), dtype=np.result_type(self.matrix, other))
        for low, high in self.blocks:
            np.matmul(self.matrix[low:high, :high], other[:high], out=product[low:high])
        return product

    def transpose_times(self, other: Any, out: Any) -> None:
        """``out[...] = matrix.T @ other``."""
        import numpy as np

        for low, high in self.blocks:
            np.matmul(self.matrix[low:, low:high].T, other[low:], out=out[low:high])


class _RowBlocks:
    """An N x D matrix stored as blocks of :data:`BLOCK_ROWS` rows (the last padded with zeros), whose
    products with skinny matrices (few classes) run block by block inside one batched call.

    With C columns on the other side, a product does 2 C flops per float of the matrix it streams,
    so on wide features the streaming, not the arithmetic, is the cost; a block of rows stays in
    cache through the kernel's passes over it. One batched call (not one per block) keeps the
    interpreter lock released for the whole product, as the pool's other threads need. An objective's
    two products at N = 1,437, D = 1,280 took 30% less time with 10 classes, 43% with 2, on
    OpenBLAS's SkylakeX kernels (22% and 37% on its Haswell kernels); from 32 classes, where the
    products are bound by arithmetic, they took up to 33% more (:data:`BLOCKED_CLASSES`), and below
    :data:`BLOCKED_WIDTH` features the Haswell kernels lost 7-16%. Only the order in which the
    gradient's rows are summed differs from whole products. One product at a time (buffers are reused).
    """

    def __init__(self, matrix: Any) -> None:
        import numpy as np

        n, dim = matrix.shape
        blocks = -(-n // BLOCK_ROWS)
        padded = np.zeros((blocks * BLOCK_ROWS, dim), dtype=matrix.dtype)
        padded[:n] = matrix
        self.matrix = padded[:n]  # the rows themselves, for whoever needs them dense (the torch fits)
        self.stacked = padded.reshape(blocks, BLOCK_ROWS, dim)
        self.shape = matrix.shape
        self._rows: Any = None  # per-block rows of the other side, and per-block partial products
        self._partial: Any = None

    def __len__(self) -> int:
        return len(self.matrix)

    def __matmul__(self, other: Any) -> Any:
        import numpy as np

        product = np.matmul(self.stacked, other)  # blocks x rows x C
        return product.reshape(-1, product.shape[2])[: len(self.matrix)]

    def transpose_times(self, other: Any, out: Any) -> None:
        """``out[...] = matrix.T @ other``: each block's product, then their sum."""
        import numpy as np

        blocks, rows, dim = self.stacked.shape
        if self._rows is None or self._rows.shape[1] != other.shape[1]:
            self._rows = np.zeros((blocks * rows, other.shape[1]), dtype=out.dtype)
            self._partial = np.empty((blocks, dim, other.shape[1]), dtype=out.dtype)
        self._rows[: len(other)] = other  # the padding rows stay zero
        np.matmul(self.stacked.transpose(0, 2, 1), self._rows.reshape(blocks, rows, -1), out=self._partial)
        self._partial.sum(axis=0, out=out)


# :class:`_RowBlocks` of this many rows serve a probe's training rows from this width up, for at most
# this many classes.
BLOCK_ROWS = 48
BLOCKED_WIDTH = 512
BLOCKED_CLASSES = 16


def fitting_rows(x: Any, classes: int) -> Any:
    """Training rows ``x`` as the NumPy fits take them: in :class:`_RowBlocks` when wide, for few classes."""
    if x.shape[1] >= BLOCKED_WIDTH and classes <= BLOCKED_CLASSES:
        return _RowBlocks(x)
    return x


class _Softmax:
    """Multinomial logistic regression fitted by full-batch L-BFGS (sklearn's objective and C).

    The loss and its gradient are written out in NumPy: on the AMD CPU this was measured on,
    OpenBLAS's float32 products run 2-6x faster than the MKL ones torch calls, and an evaluation on
    1,437 x 1,280 features took 8 ms through autograd against 1.7 ms here. So is the optimiser:
    :mod:`.lbfgs` takes torch's L-BFGS steps without its per-operation overhead.
    """

    def __init__(self, dim: int, classes: int, start: tuple[Any, Any] | None = None) -> None:
        import numpy as np

        self.dim, self.classes = dim, classes
        self.parameters = np.zeros(dim * classes + classes, dtype=np.float32)  # weight (D x C), then bias
        if start is not None:
            self.weight[...] = start[0]
            self.bias[...] = start[1]

    @property
    def weight(self) -> Any:
        return self.parameters[: self.dim * self.classes].reshape(self.dim, self.classes)

    @property
    def bias(self) -> Any:
        return self.parameters[self.dim * self.classes :]

    def state(self) -> tuple[Any, Any]:
        return self.weight.copy(), self.bias.copy()

    def fit(self, x: Any, y: Any, c: float, max_iter: int, tolerance: float = 1e-6) -> None:
        import numpy as np

        from .lbfgs import minimize

        n = len(x)
        rows = np.arange(n)
        size = self.dim * self.classes
        # sklearn minimises C * sum(loss) + ||W||^2 / 2; divided by C * N: mean(loss) + ||W||^2 / (2 C N).
        penalty = 1.0 / (2.0 * c * n)

        def objective(parameters: Any) -> tuple[float, Any]:
            weight, bias = parameters[:size].reshape(self.dim, self.classes), parameters[size:]
            # C x N: NumPy reduces a short last axis row by row (64 us for max over 10 classes of
            # 1,437 rows, 2.5 us over the first axis), so the softmax runs on the transpose
            logits = (x @ weight).T.copy()
            logits += bias[:, None]
            logits -= logits.max(axis=0)
            true_class = logits[y, rows]
            probabilities = np.exp(logits, out=logits)
            normaliser = probabilities.sum(axis=0)
            loss = float(np.mean(np.log(normaliser) - true_class, dtype=np.float64))
            loss += penalty * float(np.einsum("ij,ij->", weight, weight, dtype=np.float64))
            # the gradient of the mean loss with respect to the logits: (softmax - one-hot) / N
            probabilities *= 1.0 / (n * normaliser)
            probabilities[y, rows] -= np.float32(1.0 / n)
            grad = np.empty_like(parameters)
            grad_weight = grad[:size].reshape(self.dim, self.classes)
            if isinstance(x, (_LowerTriangular, _RowBlocks)):
                x.transpose_times(probabilities.T, out=grad_weight)
            else:
                np.matmul(x.T, probabilities.T, out=grad_weight)
            grad_weight += np.float32(2.0 * penalty) * weight
            probabilities.sum(axis=1, out=grad[size:])
            return loss, grad

        fitted = minimize(objective, self.parameters, max_iter=max_iter, history=20, tolerance_grad=tolerance)
        self.parameters = fitted.x

    def predict(self, x: Any) -> Any:
        logits = x @ self.weight
        logits += self.bias
        return logits.argmax(axis=1)


def linear_probe(
    features: Any,
    labels: Any,
    *,
    folds: int = 5,
    seed: int = 0,
    max_iter: int = 100,
    refinements: int = 2,
    sweep_examples: int = 2_000,
    groups: Any = None,
    tolerance: float = TOLERANCE,
    c_near: float | None = None,
    device: str | None = None,
    threads: int = 1,
) -> ProbeResult:
    """Cross-validated accuracy of a multinomial logistic-regression probe on standardised features.

    The inverse L2 strength C is chosen on one stratified held-out split (the first fold) by the
    CLIP protocol: C = 10^-6, 10^-4, ..., 10^6, then ``refinements`` halvings of the log-step
    around the best, each fit warm-started from the nearest C fitted; past ``sweep_examples`` the sweep
    runs on a stratified subset of that split. The chosen C is then evaluated on every fold, each
    fitted from zeros except the first, which starts from the sweep's solution (it never saw that
    fold's test rows). With ``groups`` (a group id per example, e.g. one per content), each group
    is in one fold, stratified by its first example's label. Folds shrink to what the smallest class
    allows (at least 2). Features are standardised in float32 by each fold's training rows. With
    fewer training rows than features, a fit runs in an orthonormal basis of the rows' span, where
    its optimum lies, at N/D of the cost.
    Each fit runs at most ``max_iter`` L-BFGS iterations (scikit-learn's default, 100: on real
    features 200 changed no accuracy by more than 0.001 and cost 20% more), and stops earlier when
    no gradient entry of the mean loss exceeds ``tolerance``.

    With ``c_near`` (the C chosen at a neighbouring cut point of the same backbone), the sweep is a
    walk of half-decade steps instead: C at ``c_near`` (rounded to a half decade) and one step either
    side, then further steps while the best is at an end, within 10^-6..10^6. It chooses among the
    same C values as the full sweep, in 3 fits where the optimum has not moved, against 11.
    (Passed from one cut point to the next, it cut the probe's CPU time by a further quarter on the
    guard of benchmarks/bench_probe_guard.py but swapped two candidates within 0.004 of each other:
    an assessment does not use it.)

    With ``device`` (``cuda``, ``cuda:N``, ``cpu``...), the fits run in torch there
    (:mod:`.probe_torch`), the rest as without; the default (None) fits in NumPy on the CPU.

    With ``threads`` above one, the folds after the first (each fitted from zeros) are fitted on that
    many threads at once (fold 0, finished from the sweep's fit, in the caller's), each on one BLAS
    thread, with the same result; at most as many as :func:`~.score_inputs.scoring_threads` allows,
    and not on a device, nor where BLAS's products are large enough to use every core themselves.
    """
    import numpy as np

    # float32 throughout, as the fits run: a float64 copy of N x D costs more than the folds gain from it
    f, y = check_score_input(float32_ready(features, centre=True), labels, dtype=np.float32)
    counts = np.bincount(y)
    if counts.min() < 2:
        raise ScoreInputError("a class has a single example; a cross-validated probe needs at least 2 per class")
    group = None if groups is None else np.asarray(groups)
    if group is not None:  # a class's groups, not its examples, are what folds can be dealt from
        counts = np.bincount(y[np.unique(group, return_index=True)[1]], minlength=len(counts))
    folds = int(max(2, min(folds, counts.min())))
    fold_of = stratified_folds(y, folds, seed, group)
    classes = int(y.max()) + 1
    # the largest product: rows x features x classes, or the QR of the rows' span when it is narrower
    n, dim = len(y), f.shape[1]
    largest = float(n) * dim * (classes + (n if n < dim else 0))
    threads = min(threads, scoring_threads()) if device is None and largest < LARGE_PRODUCT else 1
    settings = _Settings(max_iter, tolerance, refinements, sweep_examples, c_near, device, threads)
    with blas_threads(largest):
        return _probe(f, y, fold_of, folds, classes, seed, settings)


@dataclass(frozen=True)
class _Settings:
    max_iter: int
    tolerance: float
    refinements: int
    sweep_examples: int
    c_near: float | None
    device: str | None = None
    threads: int = 1

    def model(self, dim: int, classes: int, start: tuple[Any, Any] | None) -> Any:
        """A softmax model to fit: NumPy's without a device, else torch's on it."""
        if self.device is None:
            return _Softmax(dim, classes, start)
        from .probe_torch import TorchSoftmax

        return TorchSoftmax(dim, classes, start, device=self.device)


def _best(sweep: dict[float, float]) -> float:
    """The C of the best held-out accuracy; among ties, the one nearest 1 on a log scale."""
    return max(sweep, key=lambda c: (sweep[c], -abs(math.log10(c))))


def _probe(
    f: FloatArray,
    y: npt.NDArray[np.int64],
    fold_of: npt.NDArray[np.int64],
    folds: int,
    classes: int,
    seed: int,
    settings: _Settings,
) -> ProbeResult:
    import numpy as np
    from scipy.linalg import qr

    def split(fold: int, limit: int | None = None) -> tuple[Any, Any, Any, Any, Any]:
        train, test = fold_of != fold, fold_of == fold
        if limit is not None and train.sum() + test.sum() > limit:
            keep = stratified_folds(y, math.ceil(len(y) / limit), seed + 1) == 0
            train, test = train & keep, test & keep
        x_train, x_test = f[train], f[test]  # copies, standardised in place by the training rows' moments
        mean = x_train.mean(axis=0, dtype=np.float64).astype(np.float32)
        x_train -= mean
        std = np.sqrt(np.einsum("ij,ij->j", x_train, x_train) / len(x_train)) + np.float32(1e-8)
        x_train /= std
        x_test -= mean
        x_test /= std
        basis = None
        if len(x_train) < x_train.shape[1]:
            # Every gradient, X^T (P - Y) + 2 lambda W, lies in the span of the training rows, and
            # so does the optimum: fitting in an orthonormal basis of that span is the same problem
            # at N/D of the cost, less as the rows form a triangle there (few-shot targets with wide
            # features). Only L-BFGS's first step and stopping tests, which use the gradient's L1
            # and max norms, see the rotation. SciPy's QR stays in float32 (NumPy's computes
            # float32 input in float64: 2x the time).
            basis, triangular = qr(x_train.T, mode="economic", overwrite_a=True, check_finite=False)  # D x N, N x N
            x_train, x_test = _LowerTriangular(np.ascontiguousarray(triangular.T)), x_test @ basis
        elif settings.device is None:
            x_train = fitting_rows(x_train, classes)
        return x_train, y[train], x_test, y[test], basis

    sweep_split = split(0, settings.sweep_examples)
    x_train, y_train, x_test, y_test, sweep_basis = sweep_split
    subsampled = len(y_train) + len(y_test) < len(y)
    sweep: dict[float, float] = {}
    fitted: dict[float, tuple[Any, Any]] = {}  # in the sweep split's coordinates

    def evaluate(c: float) -> float:
        if c not in sweep:
            # warm-started from the nearest C fitted so far, as glmnet and scikit-learn's warm_start do
            near = min(fitted, key=lambda k: abs(math.log10(k / c)), default=None)
            model = settings.model(x_train.shape[1], classes, None if near is None else fitted[near])
            model.fit(x_train, y_train, c, settings.max_iter, settings.tolerance)
            sweep[c] = float((model.predict(x_test) == y_test).mean())
            fitted[c] = model.state()
        return sweep[c]

    if settings.c_near is None:
        for exponent in range(-6, 7, 2):
            evaluate(10.0**exponent)
        step = 2.0
        for _ in range(settings.refinements):
            step /= 2
            best = _best(sweep)
            for c in (best * 10**-step, best * 10**step):
                evaluate(c)
    else:
        _walk(evaluate, sweep, settings.c_near)
    best_c = _best(sweep)

    def fold_result(fold: int) -> tuple[float, float]:
        # fold 0 is the sweep's own split unless the sweep ran on a subset of it
        x_train, y_train, x_test, y_test, basis = sweep_split if fold == 0 and not subsampled else split(fold)
        # A fit stops at a tolerance, so it remembers where it started: only a start that never saw
        # this fold's test rows keeps the estimate honest. The sweep trained on the other folds'
        # rows, so it may seed fold 0 alone; chaining folds inflated accuracy by 3-8 points. (From a
        # subset, the start goes from the subset's row basis, if any, to fold 0's.)
        start = fitted[best_c] if fold == 0 else None
        if start is not None and subsampled:
            weight = start[0] if sweep_basis is None else sweep_basis @ start[0]
            start = (weight if basis is None else np.ascontiguousarray(basis.T @ weight)), start[1]
        model = settings.model(x_train.shape[1], classes, start)
        model.fit(x_train, y_train, best_c, settings.max_iter, settings.tolerance)
        predicted = model.predict(x_test)
        return float((predicted == y_test).mean()), _balanced_accuracy(y_test, predicted)

    if settings.threads > 1 and folds > 2:  # the folds are independent: each fit on a thread of its own
        from concurrent.futures import ThreadPoolExecutor

        pool = ThreadPoolExecutor(min(settings.threads, folds - 1), thread_name_prefix="zooprobe-fold")
        try:
            later = pool.map(fold_result, range(1, folds))  # submitted now, while fold 0 finishes here
            results = [fold_result(0), *later]
        finally:  # interrupted: the folds not started never start
            pool.shutdown(wait=True, cancel_futures=True)
    else:
        results = [fold_result(fold) for fold in range(folds)]
    accuracies, balanced = [a for a, _ in results], [b for _, b in results]
    return ProbeResult(
        accuracy=float(np.mean(accuracies)),
        accuracy_std=float(np.std(accuracies)),
        balanced_accuracy=float(np.mean(balanced)),
        balanced_accuracy_std=float(np.std(balanced)),
        c=best_c,
        folds=folds,
        sweep=sweep,
    )


def _walk(evaluate: Any, sweep: dict[float, float], c_near: float) -> None:
    """Half-decade steps from ``c_near`` while the best C is at an end of those tried (see ``c_near``)."""
    low = high = min(max(round(2 * math.log10(c_near)), -12), 12)  # in half decades
    evaluate(10.0 ** (low / 2))
    while True:
        best = round(2 * math.log10(_best(sweep)))
        moved = False
        if best == low and low > -12:
            low -= 1
            evaluate(10.0 ** (low / 2))
            moved = True
        if best == high and high < 12:
            high += 1
            evaluate(10.0 ** (high / 2))
            moved = True
        if not moved:
            return
