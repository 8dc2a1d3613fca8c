"""The probe's NumPy L-BFGS against torch.optim.LBFGS, whose algorithm it follows step for step."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from zooprobe.evaluator import probe
from zooprobe.evaluator.lbfgs import minimize


def rosenbrock(x: np.ndarray) -> tuple[float, np.ndarray]:
    loss = float(np.sum(100 * (x[1:] - x[:-1] ** 2) ** 2 + (1 - x[:-1]) ** 2))
    grad = np.zeros_like(x)
    grad[:-1] = -400 * x[:-1] * (x[1:] - x[:-1] ** 2) - 2 * (1 - x[:-1])
    grad[1:] += 200 * (x[1:] - x[:-1] ** 2)
    return loss, grad


@pytest.mark.parametrize(
    ("start_pair", "max_iter", "history"),
    [((-1.2, 1.0), 10, 20), ((-1.2, 1.0), 30, 20), ((-1.2, 1.0), 200, 20), ((-1.2, 1.0), 40, 4), ((-3.0, -4.0), 3, 20)],
)
def test_minimize_takes_torchs_steps(start_pair: tuple[float, float], max_iter: int, history: int) -> None:
    # Rosenbrock in float64: line-search extrapolation and zoom, a full history that drops its
    # oldest pairs (71 iterations with 20; with 4, from the 6th) and each stopping rule, the last
    # case stopping at the evaluation cap (1.25 x max_iter) after one iteration. (With 4 pairs,
    # rounding differences grow chaotically past ~50 iterations.)
    start = np.array(start_pair * 5)
    ours = minimize(rosenbrock, start, max_iter=max_iter, history=history)

    x = torch.tensor(start, requires_grad=True)
    optimizer = torch.optim.LBFGS(
        [x],
        lr=1,
        max_iter=max_iter,
        history_size=history,
        tolerance_grad=1e-6,
        tolerance_change=1e-9,
        line_search_fn="strong_wolfe",
    )
    evaluations = 0

    def closure() -> torch.Tensor:
        nonlocal evaluations
        evaluations += 1
        optimizer.zero_grad()
        loss = torch.sum(100 * (x[1:] - x[:-1] ** 2) ** 2 + (1 - x[:-1]) ** 2)
        loss.backward()  # type: ignore[no-untyped-call]
        return loss

    optimizer.step(closure)  # type: ignore[no-untyped-call]
    assert (ours.evaluations, ours.iterations) == (evaluations, optimizer.state[x]["n_iter"])
    np.testing.assert_allclose(ours.x, x.detach().numpy(), rtol=0, atol=1e-8)
    if max_iter == 200:
        np.testing.assert_allclose(ours.x, 1.0, atol=1e-4)  # converged to the minimum


def test_minimize_returns_at_a_stationary_start() -> None:
    result = minimize(rosenbrock, np.ones(4))
    assert (result.evaluations, result.iterations, result.loss) == (1, 0, 0.0)


def test_row_block_products_equal_dense_ones_and_padding_stays_out() -> None:
    rng = np.random.default_rng(1)
    matrix = rng.normal(size=(100, 24)).astype(np.float32)  # 3 blocks of 48 rows, the last 44 of padding
    blocks = probe._RowBlocks(matrix)
    assert blocks.stacked.shape == (3, probe.BLOCK_ROWS, 24) and len(blocks) == 100
    np.testing.assert_array_equal(blocks.matrix, matrix)
    for classes in (6, 2, 6):  # the buffers follow the other side's width
        weight = rng.normal(size=(24, classes)).astype(np.float32)
        product = blocks @ weight
        assert product.shape == (100, classes)
        np.testing.assert_allclose(product, matrix @ weight, rtol=1e-5, atol=1e-5)
        # rows of the other side as the probe passes them (a transposed C x N array); padding left at zero
        other = np.ascontiguousarray(rng.normal(size=(classes, 100)).astype(np.float32)).T
        out = np.full((24, classes), np.nan, dtype=np.float32)
        blocks.transpose_times(other, out=out)
        np.testing.assert_allclose(out, matrix.T @ other, rtol=1e-4, atol=1e-4)


def test_probe_fits_wide_features_in_row_blocks_to_the_same_optimum(monkeypatch: pytest.MonkeyPatch) -> None:
    from zooprobe.evaluator.scores import linear_probe

    rng = np.random.default_rng(2)
    labels = np.arange(120) % 3
    features = (rng.normal(size=(120, probe.BLOCKED_WIDTH)) + 0.3 * labels[:, None]).astype(np.float32)
    dense, blocked = probe._Softmax(probe.BLOCKED_WIDTH, 3), probe._Softmax(probe.BLOCKED_WIDTH, 3)
    dense.fit(features, labels, 0.1, 500, tolerance=1e-7)
    blocked.fit(probe._RowBlocks(features), labels, 0.1, 500, tolerance=1e-7)
    np.testing.assert_allclose(blocked.state()[0], dense.state()[0], atol=1e-4)
    # and the probe hands its wide, few-class training rows over in blocks (the fit sees them)
    seen: list[type] = []
    original = probe._Softmax.fit

    def fit(self: probe._Softmax, x: object, *args: object, **kwargs: object) -> None:
        seen.append(type(x))
        original(self, x, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(probe._Softmax, "fit", fit)
    linear_probe(np.vstack([features] * 7), np.tile(labels, 7), folds=3)  # 560 training rows > the width
    assert seen and set(seen) == {probe._RowBlocks}


def test_lower_triangular_products_equal_dense_ones() -> None:
    rng = np.random.default_rng(0)
    lower = np.tril(rng.normal(size=(70, 70))).astype(np.float32)
    other = rng.normal(size=(70, 6)).astype(np.float32)
    triangle = probe._LowerTriangular(lower, block=16)  # 5 blocks, the last one short
    np.testing.assert_allclose(triangle @ other, lower @ other, rtol=1e-5, atol=1e-5)
    out = np.empty((70, 6), dtype=np.float32)
    triangle.transpose_times(other, out=out)
    np.testing.assert_allclose(out, lower.T @ other, rtol=1e-5, atol=1e-5)
