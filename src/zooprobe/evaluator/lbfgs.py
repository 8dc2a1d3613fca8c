"""L-BFGS with a strong-Wolfe line search on NumPy vectors, the linear probe's optimiser.

The steps and stopping rules are those of ``torch.optim.LBFGS(line_search_fn="strong_wolfe")``
(adapted from torch/optim/lbfgs.py, itself a port of Lua torch's optim; BSD licence), so a fit
stops where torch's would. What differs is how the inverse-Hessian approximation multiplies the
gradient. torch's two-loop recursion walks the history pair by pair, some 80 small tensor
operations an iteration with 20 pairs; the compact form (Byrd, Nocedal & Schnabel 1994) applies
the same matrix with two matrix-vector products over the stored pairs and two 20 x 20 triangular
solves. On the probe's largest problems (200k parameters) both are memory-bound, about 1.7 ms an
iteration; on digits-sized ones torch's per-operation overhead was the larger cost (0.45 ms an
evaluation).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
from scipy.linalg import lapack

Vector = npt.NDArray[Any]
Objective = Callable[[Vector], tuple[float, Vector]]
"""Loss and gradient at a point; the gradient must be a new array (the previous one is kept)."""


@dataclass(frozen=True)
class Minimum:
    """Where the minimiser stopped."""

    x: Vector
    loss: float
    evaluations: int
    iterations: int


class _History:
    """The last ``size`` pairs s = x_k+1 - x_k, y = g_k+1 - g_k and their inner products.

    The pairs are read twice an iteration, by ``rows @ g`` and by ``rows.T @ coefficients``. The
    inner products a new pair adds to R come from the first: s_j . y_new = s_j . g_new - s_j . g_old
    (as in L-BFGS-B), and y_j . y_new likewise, instead of two more passes over the pairs. The
    vectors stay in the slot they were written to; the small matrices are kept oldest first.
    """

    def __init__(self, size: int, dim: int, dtype: Any) -> None:
        self.size = size
        self.rows = np.zeros((2 * size, dim), dtype)  # slot i holds s in row i, y in row size + i
        self.slots = np.zeros(0, dtype=np.int64)  # oldest first
        self.s_dot_y = np.zeros((size, size))  # [i, j] = s_i . y_j for pair i stored before pair j
        self.y_dot_y = np.zeros((size, size))
        self.with_previous_gradient = np.zeros(2 * size)  # rows @ g of the last gradient, by slot

    def with_gradient(self, g: Vector) -> Vector:
        """``rows @ g``: s_j . g and y_j . g of the stored pairs, by slot (zero in empty slots)."""
        if not len(self.slots):
            return np.zeros(2 * self.size)
        return (self.rows @ g).astype(np.float64)

    def add(self, t: float, d: Vector, y: Vector, ys: float, yy: float, g: Vector, with_g: Vector) -> None:
        """Store s = t d and y, the step just taken to gradient ``g`` (``with_g``: its products, updated)."""
        size, slots = self.size, self.slots
        if len(slots) == size:  # drop the oldest pair
            slot, slots = int(slots[0]), slots[1:]
            self.s_dot_y[:-1, :-1] = self.s_dot_y[1:, 1:].copy()
            self.y_dot_y[:-1, :-1] = self.y_dot_y[1:, 1:].copy()
        else:
            slot = len(slots)
        new = len(slots)
        self.s_dot_y[:new, new] = with_g[slots] - self.with_previous_gradient[slots]
        self.y_dot_y[:new, new] = with_g[size + slots] - self.with_previous_gradient[size + slots]
        self.y_dot_y[new, :new] = self.y_dot_y[:new, new]
        self.s_dot_y[new, new], self.y_dot_y[new, new] = ys, yy
        with_g[slot], with_g[size + slot] = t * float(d @ g), float(y @ g)
        np.multiply(d, d.dtype.type(t), out=self.rows[slot])
        self.rows[size + slot] = y
        self.slots = np.append(slots, slot)

    def inverse_hessian_times(self, g: Vector, gamma: float, with_g: Vector) -> Vector:
        """H g for H = gamma I updated by the stored pairs (BFGS), in compact form.

        H = gamma I + [S  gamma Y] M [S^T; gamma Y^T] with M = [[R^-T (D + gamma Y^T Y) R^-1, -R^-T],
        [-R^-1, 0]], R the upper triangle of S^T Y and D its diagonal, pairs in the order stored.
        With v = R^-1 S^T g: H g = gamma g + S R^-T ((D + gamma Y^T Y) v - gamma Y^T g) - gamma Y v.
        """
        self.with_previous_gradient = with_g
        count, slots = len(self.slots), self.slots
        if not count:
            return gamma * g
        s_g, y_g = with_g[slots], with_g[self.size + slots]
        # only R's upper triangle is read; what lies below the diagonal is stale
        upper = np.asfortranarray(self.s_dot_y[:count, :count])
        v = lapack.dtrtrs(upper, s_g, lower=0)[0]
        inner = np.diag(upper) * v + gamma * (self.y_dot_y[:count, :count] @ v) - gamma * y_g
        a = lapack.dtrtrs(upper, inner, lower=0, trans=1)[0]
        coefficients = np.zeros(2 * self.size, dtype=self.rows.dtype)
        coefficients[slots], coefficients[self.size + slots] = a, -gamma * v
        result: Vector = self.rows.T @ coefficients
        result += g.dtype.type(gamma) * g
        return result


def minimize(
    objective: Objective,
    x0: Vector,
    *,
    max_iter: int = 100,
    history: int = 20,
    tolerance_grad: float = 1e-6,
    tolerance_change: float = 1e-9,
) -> Minimum:
    """Minimise ``objective`` from ``x0`` (kept in its dtype) as torch's L-BFGS with lr=1 would.

    Stops after ``max_iter`` iterations or 1.25 x that many evaluations, when the largest gradient
    entry is at most ``tolerance_grad``, or when the loss or the step change by less than
    ``tolerance_change``.
    """
    max_eval = max_iter * 5 // 4
    x = np.array(x0, copy=True)
    loss, grad = objective(x)
    evaluations, iteration = 1, 0
    if float(np.abs(grad).max()) <= tolerance_grad:
        return Minimum(x, loss, evaluations, iteration)
    pairs = _History(history, len(x), x.dtype)
    gamma, t = 1.0, 1.0
    direction = -grad
    previous_grad = grad
    while iteration < max_iter:
        iteration += 1
        if iteration > 1:
            y = grad - previous_grad
            ys = t * float(y @ direction)
            with_g = pairs.with_gradient(grad)
            if ys > 1e-10:
                yy = float(y @ y)
                pairs.add(t, direction, y, ys, yy, grad, with_g)
                gamma = ys / yy
            direction = -pairs.inverse_hessian_times(grad, gamma, with_g)
        previous_grad, previous_loss = grad, loss
        t = min(1.0, 1.0 / float(np.abs(grad).sum())) if iteration == 1 else 1.0
        slope = float(grad @ direction)
        if slope > -tolerance_change:
            break
        loss, grad, t, line_evaluations = _strong_wolfe(
            objective, x, t, direction, loss, grad, slope, tolerance_change, max_eval - evaluations
        )
        x = x + x.dtype.type(t) * direction
        evaluations += line_evaluations
        if iteration == max_iter or evaluations >= max_eval or float(np.abs(grad).max()) <= tolerance_grad:
            break
        if float(np.abs(direction).max()) * abs(t) <= tolerance_change or abs(loss - previous_loss) < tolerance_change:
            break
    return Minimum(x, loss, evaluations, iteration)


def _cubic_interpolate(
    x1: float, f1: float, g1: float, x2: float, f2: float, g2: float, bounds: tuple[float, float] | None = None
) -> float:
    """Minimiser of the cubic through (x1, f1, g1) and (x2, f2, g2), clipped to ``bounds``."""
    low, high = bounds if bounds is not None else (min(x1, x2), max(x1, x2))
    d1 = g1 + g2 - 3 * (f1 - f2) / (x1 - x2)
    d2_square = d1 * d1 - g1 * g2
    if d2_square < 0:
        return (low + high) / 2.0
    d2 = math.sqrt(d2_square)
    if x1 <= x2:
        position = x2 - (x2 - x1) * ((g2 + d2 - d1) / (g2 - g1 + 2 * d2))
    else:
        position = x1 - (x1 - x2) * ((g1 + d2 - d1) / (g1 - g2 + 2 * d2))
    return min(max(position, low), high)


def _strong_wolfe(
    objective: Objective,
    x: Vector,
    t: float,
    d: Vector,
    f: float,
    g: Vector,
    gtd: float,
    tolerance_change: float,
    max_ls: int,
    c1: float = 1e-4,
    c2: float = 0.9,
) -> tuple[float, Vector, float, int]:
    """(loss, gradient, step, evaluations) at a step along ``d`` meeting the strong Wolfe conditions."""
    d_norm = float(np.abs(d).max())
    step_type = x.dtype.type

    def along(step: float) -> tuple[float, Vector, float]:
        loss, grad = objective(x + step_type(step) * d)
        return loss, grad, float(grad @ d)

    f_new, g_new, gtd_new = along(t)
    evaluations = 1
    # bracket an interval containing a point that satisfies the conditions
    t_prev, f_prev, g_prev, gtd_prev = 0.0, f, g, gtd
    done = False
    ls_iter = 0
    bracket: list[float] = []
    bracket_f: list[float] = []
    bracket_g: list[Vector] = []
    bracket_gtd: list[float] = []
    while ls_iter < max_ls:
        if f_new > f + c1 * t * gtd or (ls_iter > 1 and f_new >= f_prev):
            bracket, bracket_f, bracket_g = [t_prev, t], [f_prev, f_new], [g_prev, g_new]
            bracket_gtd = [gtd_prev, gtd_new]
            break
        if abs(gtd_new) <= -c2 * gtd:
            bracket, bracket_f, bracket_g = [t], [f_new], [g_new]
            done = True
            break
        if gtd_new >= 0:
            bracket, bracket_f, bracket_g = [t_prev, t], [f_prev, f_new], [g_prev, g_new]
            bracket_gtd = [gtd_prev, gtd_new]
            break
        # extrapolate
        previous = t
        t = _cubic_interpolate(t_prev, f_prev, gtd_prev, t, f_new, gtd_new, bounds=(t + 0.01 * (t - t_prev), t * 10))
        t_prev, f_prev, g_prev, gtd_prev = previous, f_new, g_new, gtd_new
        f_new, g_new, gtd_new = along(t)
        evaluations += 1
        ls_iter += 1
    if ls_iter == max_ls:
        bracket, bracket_f, bracket_g = [0.0, t], [f, f_new], [g, g_new]

    # zoom: shrink the bracket until a point in it satisfies the conditions
    insufficient_progress = False
    low, high = (0, 1) if bracket_f[0] <= bracket_f[-1] else (1, 0)
    while not done and ls_iter < max_ls:
        if abs(bracket[1] - bracket[0]) * d_norm < tolerance_change:
            break
        t = _cubic_interpolate(bracket[0], bracket_f[0], bracket_gtd[0], bracket[1], bracket_f[1], bracket_gtd[1])
        # a trial too close to an end of the bracket moves to 10% of its width inside it
        eps = 0.1 * (max(bracket) - min(bracket))
        if min(max(bracket) - t, t - min(bracket)) < eps:
            if insufficient_progress or t >= max(bracket) or t <= min(bracket):
                t = max(bracket) - eps if abs(t - max(bracket)) < abs(t - min(bracket)) else min(bracket) + eps
                insufficient_progress = False
            else:
                insufficient_progress = True
        else:
            insufficient_progress = False
        f_new, g_new, gtd_new = along(t)
        evaluations += 1
        ls_iter += 1
        if f_new > f + c1 * t * gtd or f_new >= bracket_f[low]:
            bracket[high], bracket_f[high], bracket_g[high], bracket_gtd[high] = t, f_new, g_new, gtd_new
            low, high = (0, 1) if bracket_f[0] <= bracket_f[1] else (1, 0)
        else:
            if abs(gtd_new) <= -c2 * gtd:
                done = True
            elif gtd_new * (bracket[high] - bracket[low]) >= 0:
                bracket[high], bracket_f[high] = bracket[low], bracket_f[low]
                bracket_g[high], bracket_gtd[high] = bracket_g[low], bracket_gtd[low]
            bracket[low], bracket_f[low], bracket_g[low], bracket_gtd[low] = t, f_new, g_new, gtd_new
    return bracket_f[low], bracket_g[low], bracket[low], evaluations
