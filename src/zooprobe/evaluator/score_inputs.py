"""Checks and helpers every transferability score shares: input validation, float32 readiness, stratified folds."""

from __future__ import annotations

import math
import threading
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager, nullcontext
from functools import cache
from typing import TYPE_CHECKING, Any

from ..errors import ZooprobeError

if TYPE_CHECKING:
    import numpy as np
    import numpy.typing as npt

    FloatArray = npt.NDArray[np.float64]


# Products of fewer multiply-adds run on one BLAS thread. On 2 cores (benchmarks/bench_metrics.py
# --threads), a second OpenBLAS thread never paid at the sizes measured: at 1.4e6 (1,437 x 96 x 10)
# it cost 18x the wall time and 29x the CPU time of one, as threads spin waiting for each other;
# at 1.6e9 still 1.1x the wall. LogME at 1,797 x 1,280 (a 2.9e9 Gram matrix, then a Householder
# reduction) took 0.31 s on one thread and 1.47 s on two. Above this size, BLAS keeps its setting.
LARGE_PRODUCT = 1e10


def gram_product(rows: int, columns: int) -> float:
    """Multiply-adds of the smaller Gram matrix of an N x D matrix (N x D x min(N, D)): LogME's largest product."""
    return float(rows) * columns * min(rows, columns)


def blas_threads(multiply_adds: float) -> AbstractContextManager[Any]:
    """One BLAS thread while the largest product inside has fewer than :data:`LARGE_PRODUCT`
    ``multiply_adds``, else BLAS's own setting (all cores, unless another thread holds it at one)."""
    if multiply_adds >= LARGE_PRODUCT:
        return nullcontext()
    return single_blas_thread()


@contextmanager
def single_blas_thread() -> Iterator[None]:
    """BLAS on one thread inside, for every thread of the process while any holds it.

    The limit is process-wide, so it is counted rather than nested: the first holder sets it and the
    last to leave restores BLAS's own setting. Hold it in the thread that starts the others, for as
    long as they run (:func:`~zooprobe.evaluator.screen.scoring_pool` does): OpenBLAS takes a new
    thread count only from the thread that set the last one, so a limit lifted by another thread
    stays set. Inside, the scores' own :func:`blas_threads` only count.
    """
    global _pin_count, _pin_limiter
    controller = _controller()
    if controller is None:  # without threadpoolctl, BLAS keeps its default
        yield
        return
    with _pin_lock:
        if _pin_count == 0:
            _pin_limiter = controller.limit(limits=1, user_api="blas")
        _pin_count += 1
    try:
        yield
    finally:
        with _pin_lock:
            _pin_count -= 1
            if _pin_count == 0 and _pin_limiter is not None:
                _pin_limiter.restore_original_limits()
                _pin_limiter = None


_pin_lock = threading.Lock()
_pin_count = 0
_pin_limiter: Any = None

# Threads a candidate's scoring runs its independent scores on, at most: a candidate has about ten
# (the cheap scores at each cut point, and the probe at four), so more would wait idle.
MAX_SCORING_THREADS = 8


def scoring_threads() -> int:
    """Threads scores may run on at once: ``$OMP_NUM_THREADS`` when set (Ray sets it to a task's CPUs),
    else the CPUs this process may use, at most :data:`MAX_SCORING_THREADS`; one where BLAS's threads
    cannot be limited (no threadpoolctl), as each thread's products would then use every core."""
    import os

    if _controller() is None:
        return 1

    declared = os.environ.get("OMP_NUM_THREADS", "").strip()
    if declared.isdigit() and int(declared) > 0:
        available = int(declared)
    elif hasattr(os, "sched_getaffinity"):
        available = len(os.sched_getaffinity(0))
    else:  # macOS and Windows have no affinity call
        available = os.cpu_count() or 1
    return max(1, min(available, MAX_SCORING_THREADS))


@cache
def _controller() -> Any:
    """threadpoolctl's view of the loaded BLAS libraries (NumPy's and SciPy's), found once: a search
    per call took 5-18 ms, limiting threads through it takes 0.01 ms. None without threadpoolctl."""
    try:
        import scipy.linalg  # noqa: F401 - SciPy ships its own OpenBLAS: loaded before the search
        from threadpoolctl import ThreadpoolController
    except ImportError:  # without threadpoolctl, BLAS keeps its default
        return None
    return ThreadpoolController()


class ScoreInputError(ZooprobeError):
    """Features and labels a score cannot use (shape mismatch, a single class, NaNs...)."""


def check_score_input(
    features: Any, labels: Any, *, what: str = "features", dtype: Any = None
) -> tuple[FloatArray, npt.NDArray[np.int64]]:
    """(features as a ``dtype`` array, default float64; labels as codes 0..C-1), or a one-line error."""
    import numpy as np

    x = np.asarray(features, dtype=dtype or np.float64)
    y = np.asarray(labels)
    if x.ndim != 2:
        raise ScoreInputError(f"{what} must be an N x D array, got shape {x.shape}; reshape to (N, D)")
    if y.ndim != 1 or len(y) != len(x):
        raise ScoreInputError(f"labels must be N={len(x)} integers, got shape {y.shape}; pass one label per row")
    if x.size == 0:
        raise ScoreInputError(f"{what} are empty (shape {x.shape}); a score needs at least one row and one column")
    if not np.isfinite(x).all():
        raise ScoreInputError(f"{what} contain NaN or infinite values; check the extraction")
    if y.dtype.kind in "fc" and not np.isfinite(y).all():
        raise ScoreInputError("labels contain NaN or infinite values; drop those rows or give them a class")
    _, codes = np.unique(y, return_inverse=True)
    if codes.max(initial=0) < 1:
        raise ScoreInputError("labels hold a single class; a transferability score needs at least two")
    return x, codes.astype(np.int64)


def float32_ready(features: Any, *, centre: bool) -> Any:
    """``features`` as they may be rounded to float32 without losing what the float32 scores use.

    The probe and kNN compute in float32 (squares summed over rows, norms, an absolute 1e-8 guard
    on standard deviations), which assumes ordinary magnitudes. Features whose largest magnitude
    lies outside [2^-10, 2^20] are multiplied by a power of two, which is exact and leaves cosine
    similarities and standardised features as they were. With ``centre`` (the probe, which
    standardises anyway), wider input is first centred in its own precision, so an offset far above
    the spread does not swamp it. Anything malformed is returned as is, for :func:`check_score_input` to report.
    """
    import numpy as np

    x = np.asarray(features)
    if x.ndim != 2 or x.size == 0 or x.dtype.kind not in "iuf":
        return x
    if centre and x.dtype != np.float32:
        x = x.astype(np.float64)
        x -= x.mean(axis=0)
    peak = float(np.abs(x).max())
    if not math.isfinite(peak) or peak == 0 or 2.0**-10 <= peak <= 2.0**20:
        return x
    x = np.asarray(x, dtype=np.float32 if x.dtype == np.float32 else np.float64)
    return np.ldexp(x, -math.frexp(peak)[1])


def stratified_folds(
    y: npt.NDArray[np.int64], folds: int, seed: int, groups: npt.NDArray[Any] | None = None
) -> npt.NDArray[np.int64]:
    """Fold number of each example: each class shuffled (fixed seed) and dealt round-robin.

    With ``groups``, each group's first example is dealt (in its class) and the rest of the group follows it.
    """
    import numpy as np

    rng = np.random.default_rng(seed)
    fold_of = np.empty(len(y), dtype=np.int64)
    firsts = np.arange(len(y))
    if groups is not None:
        _, first_of_group, inverse = np.unique(groups, return_index=True, return_inverse=True)
        firsts = np.sort(first_of_group)
    offset = 0
    for c in np.unique(y[firsts]):
        members = rng.permutation(firsts[y[firsts] == c])
        fold_of[members] = (np.arange(len(members)) + offset) % folds
        offset += len(members)
    return fold_of if groups is None else fold_of[first_of_group[inverse.ravel()]]
