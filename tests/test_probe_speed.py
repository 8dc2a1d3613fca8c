"""What makes the probe and the scores cheaper keeps their results: tolerance, C walk, BLAS threads, NCE's input."""

from __future__ import annotations

import math
import threading
import tracemalloc
from typing import Any

import numpy as np
import pytest
from threadpoolctl import threadpool_info

from zooprobe.evaluator import scores
from zooprobe.evaluator.probe import TOLERANCE, linear_probe
from zooprobe.evaluator.score_inputs import LARGE_PRODUCT, blas_threads
from zooprobe.evaluator.screen import scoring_pool


@pytest.fixture(scope="module")
def digits() -> tuple[np.ndarray, np.ndarray]:
    from sklearn.datasets import load_digits

    data = load_digits()
    return data.data.astype(np.float32), data.target


def test_the_default_tolerance_keeps_a_tight_fits_accuracy(digits: tuple[np.ndarray, np.ndarray]) -> None:
    # The guard of issue #20 on a fixed real case: scikit-learn's tolerance (1e-4 on the mean
    # loss's gradient) against the tight one the probe used to run (1e-6).
    features, labels = digits
    default = linear_probe(features, labels)
    tight = linear_probe(features, labels, tolerance=1e-6)
    assert TOLERANCE == 1e-4
    assert default.accuracy == pytest.approx(tight.accuracy, abs=0.005)
    assert default.balanced_accuracy == pytest.approx(tight.balanced_accuracy, abs=0.005)
    assert 0.9 < default.accuracy < 1


def test_folds_fitted_on_threads_give_the_probe_of_one_thread(
    digits: tuple[np.ndarray, np.ndarray], monkeypatch: pytest.MonkeyPatch
) -> None:
    from zooprobe.evaluator import probe

    features, labels = digits
    fitted_on: list[str] = []
    fit = probe._Softmax.fit

    def fit_and_say_where(self: Any, *args: Any, **kwargs: Any) -> None:
        fitted_on.append(threading.current_thread().name)
        fit(self, *args, **kwargs)

    monkeypatch.setattr(probe._Softmax, "fit", fit_and_say_where)
    one = linear_probe(features, labels)
    assert set(fitted_on) == {threading.current_thread().name}
    fitted_on.clear()
    three = linear_probe(features, labels, threads=3)
    assert three == one
    # the sweep's 11 fits and fold 0 here, the other 4 folds on the pool
    assert len(fitted_on) == 16 and sum(name.startswith("zooprobe-fold") for name in fitted_on) == 4


def test_c_near_walks_half_decades_to_the_best_c(digits: tuple[np.ndarray, np.ndarray]) -> None:
    features, labels = digits
    full = linear_probe(features, labels)
    assert len(full.sweep) == 11
    # started at the full sweep's choice: that C and one half decade either side
    near = linear_probe(features, labels, c_near=full.c * 1.2)
    assert near.c == pytest.approx(full.c) and len(near.sweep) == 3
    assert near.accuracy == pytest.approx(full.accuracy, abs=0.005)
    # started at an end of the range: it walks, one half decade a fit, until the best is inside
    for start in (1e-6, 1e6):
        walked = linear_probe(features, labels, c_near=start)
        halves = sorted(round(2 * math.log10(c)) for c in walked.sweep)
        assert halves == list(range(halves[0], halves[-1] + 1))  # contiguous half decades
        assert -12 <= halves[0] and halves[-1] <= 12
        best = round(2 * math.log10(walked.c))
        assert halves[0] < best < halves[-1]  # not stopped at an end of what it tried
        assert walked.sweep[walked.c] >= max(walked.sweep.values())


def _blas_threads() -> int:
    return max(info["num_threads"] for info in threadpool_info() if info["user_api"] == "blas")


def test_small_products_run_on_one_blas_thread() -> None:
    outside = _blas_threads()
    with blas_threads(LARGE_PRODUCT / 10):
        assert _blas_threads() == 1
    assert _blas_threads() == outside
    with blas_threads(LARGE_PRODUCT):
        assert _blas_threads() == outside


def test_scores_on_a_pool_stay_on_one_blas_thread_until_the_pool_is_done() -> None:
    # Each score limits BLAS around itself; on a pool they overlap, and one score's end must not
    # lift the limit under another still running, nor leave it set once the pool is done.
    outside = _blas_threads()
    if outside == 1:
        pytest.skip("BLAS runs on one thread here already")
    first_in, second_in, first_done = threading.Event(), threading.Event(), threading.Event()

    def first() -> int:
        with blas_threads(LARGE_PRODUCT / 10):
            first_in.set()
            assert second_in.wait(30)
        first_done.set()
        return _blas_threads()

    def second() -> int:
        assert first_in.wait(30)
        with blas_threads(LARGE_PRODUCT / 10):
            second_in.set()
            assert first_done.wait(30)  # the first score ended while this one runs
            return _blas_threads()

    with scoring_pool(2) as pool:
        running = [pool.submit(first), pool.submit(second)]
        assert [future.result() for future in running] == [1, 1]
    assert _blas_threads() == outside


def test_nce_takes_the_argmax_without_a_float64_copy() -> None:
    rng = np.random.default_rng(0)
    logits = rng.normal(size=(2_000, 1_000)).astype(np.float32)
    probabilities = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    labels = rng.integers(0, 10, size=2_000)
    expected = scores.nce(probabilities.astype(np.float64), labels)
    tracemalloc.start()
    value = scores.nce(probabilities, labels)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert value == expected
    assert peak < probabilities.nbytes  # a float64 copy alone would be twice that
