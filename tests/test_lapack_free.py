"""LAPACK through SciPy's exported function pointers: SciPy's results, with the interpreter lock released."""

from __future__ import annotations

import sys
import threading
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest
from scipy.linalg import cholesky, lapack

from zooprobe.evaluator.lapack_free import dpotrf_lower, dsytrd_lower


def symmetric(n: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    rows = rng.normal(size=(n + 20, n))
    return rows.T @ rows  # positive definite


@pytest.mark.parametrize("n", [1, 2, 7, 300])
def test_dsytrd_lower_is_scipys_reduction(n: int) -> None:
    matrix = symmetric(n)
    work = int(lapack.dsytrd_lwork(n, lower=1)[0])
    reflectors, diagonal, off_diagonal, tau, info = lapack.dsytrd(matrix.copy(order="F"), lower=1, lwork=work)
    ours = matrix.copy(order="F")
    got = dsytrd_lower(ours)
    assert info == 0 and got[3] == 0
    for mine, theirs in zip(got[:3], (diagonal, off_diagonal, tau), strict=True):
        np.testing.assert_array_equal(mine, theirs)
    np.testing.assert_array_equal(np.tril(ours, -1), np.tril(reflectors, -1))


def test_dpotrf_lower_is_scipys_cholesky_and_refuses_what_is_not_positive_definite() -> None:
    matrix = symmetric(50, seed=1)
    ours = matrix.copy(order="F")
    dpotrf_lower(ours)
    np.testing.assert_array_equal(np.tril(ours), cholesky(matrix, lower=True))
    indefinite = np.diag([1.0, -1.0, 2.0]).copy(order="F")
    with pytest.raises(np.linalg.LinAlgError, match="2-th leading minor"):
        dpotrf_lower(indefinite)
    with pytest.raises(ValueError, match="Fortran order"):
        dpotrf_lower(np.ascontiguousarray(symmetric(5))[:, :4])  # not square, not Fortran
    with pytest.raises(ValueError, match="Fortran order"):
        dsytrd_lower(symmetric(5).astype(np.float32, order="F"))


def test_a_routine_of_another_signature_is_refused() -> None:
    from zooprobe.evaluator import lapack_free

    with pytest.raises(RuntimeError, match=r"cython_lapack\.dpotrf is void \(char \*, int \*"):
        lapack_free._routine("dpotrf", lapack_free._CHAR, lapack_free._INT, lapack_free._DOUBLE, lapack_free._INT)


@pytest.mark.parametrize(
    "call",
    [lambda m: dsytrd_lower(m), lambda m: dpotrf_lower(m)],
    ids=["dsytrd", "dpotrf"],
)
def test_the_lock_is_released_during_the_call(call: Callable[[Any], Any]) -> None:
    # With a switch interval far longer than the call, a thread that held the lock through the call
    # would keep it until it had recorded the call's end: this thread could only look afterwards.
    matrix = symmetric(1500, seed=2).copy(order="F")
    entering, finished, seen_during = threading.Event(), [False], []

    def worker() -> None:
        entering.set()
        call(matrix)
        finished[0] = True

    interval = sys.getswitchinterval()
    sys.setswitchinterval(30.0)
    try:
        thread = threading.Thread(target=worker)
        thread.start()
        entering.wait()
        seen_during.append(not finished[0])
        thread.join()
    finally:
        sys.setswitchinterval(interval)
    assert seen_during == [True] and finished[0]
