"""The linear probe's and LogME's heavy arithmetic in torch, on a chosen device (CUDA when present).

:mod:`.probe` and :mod:`.scores` compute in NumPy/LAPACK on the CPU, where that was measured faster
than torch (see :class:`~zooprobe.evaluator.probe._Softmax`). On an accelerator the same problems
run here: the probe's softmax fits by ``torch.optim.LBFGS`` with the strong-Wolfe line search, whose
steps and stopping rules :mod:`.lbfgs` reproduces, and LogME's Gram matrix and its
eigendecomposition. Everything else (folds, standardisation, the C sweep, LogME's search over
alpha / beta) is shared with the NumPy path, so both give the same results within 1e-4;
``device="cpu"`` runs this code on the CPU, which is how the tests check it.
"""

from __future__ import annotations

from typing import Any


def _dense(x: Any) -> Any:
    """A probe design matrix as a NumPy array (the CPU path's lower-triangular wrapper, densified)."""
    return getattr(x, "matrix", x)


class TorchSoftmax:
    """Multinomial logistic regression (sklearn's objective and C) fitted by torch's L-BFGS on ``device``.

    The same interface as :class:`~zooprobe.evaluator.probe._Softmax`: ``start`` and :meth:`state`
    are NumPy (weight D x C, bias C), so the C sweep's warm starts pass between the two unchanged.
    """

    def __init__(self, dim: int, classes: int, start: tuple[Any, Any] | None = None, *, device: str) -> None:
        import torch

        self.dim, self.classes, self.device = dim, classes, device
        self.parameters = torch.zeros(dim * classes + classes, dtype=torch.float32, device=device)
        if start is not None:
            self.parameters[: dim * classes] = torch.as_tensor(start[0], device=device).reshape(-1)
            self.parameters[dim * classes :] = torch.as_tensor(start[1], device=device)

    def _split(self) -> tuple[Any, Any]:
        size = self.dim * self.classes
        return self.parameters[:size].view(self.dim, self.classes), self.parameters[size:]

    def state(self) -> tuple[Any, Any]:
        weight, bias = self._split()
        return weight.cpu().numpy().copy(), bias.cpu().numpy().copy()

    def _tensor(self, x: Any) -> Any:
        import numpy as np
        import torch

        return torch.as_tensor(np.ascontiguousarray(_dense(x), dtype=np.float32), device=self.device)

    def fit(self, x: Any, y: Any, c: float, max_iter: int, tolerance: float = 1e-6) -> None:
        import torch

        features = self._tensor(x)
        n = len(features)
        target = torch.as_tensor(y, device=self.device)
        penalty = 1.0 / (2.0 * c * n)  # sklearn's C * sum(loss) + ||W||^2 / 2, divided by C * N
        parameter = torch.nn.Parameter(self.parameters.clone())
        size = self.dim * self.classes
        optimiser = torch.optim.LBFGS(
            [parameter],
            lr=1,
            max_iter=max_iter,
            history_size=20,
            tolerance_grad=tolerance,
            tolerance_change=1e-9,
            line_search_fn="strong_wolfe",
        )

        def closure() -> Any:
            # the gradient written out, as the NumPy path does: autograd's graph costs more than it
            with torch.no_grad():
                weight, bias = parameter[:size].view(self.dim, self.classes), parameter[size:]
                logits = features @ weight + bias
                log_normaliser = torch.logsumexp(logits, dim=1)
                true_class = logits.gather(1, target[:, None])[:, 0]
                loss = (log_normaliser - true_class).double().mean() + penalty * (weight.double() ** 2).sum()
                residual = torch.exp(logits - log_normaliser[:, None]) / n  # (softmax - one-hot) / N
                residual[torch.arange(n, device=self.device), target] -= 1.0 / n
                grad = torch.empty_like(parameter)
                grad[:size] = (features.T @ residual + (2.0 * penalty) * weight).reshape(-1)
                grad[size:] = residual.sum(dim=0)
                parameter.grad = grad
            return loss

        optimiser.step(closure)  # type: ignore[no-untyped-call]
        self.parameters = parameter.detach()

    def predict(self, x: Any) -> Any:
        import torch

        weight, bias = self._split()
        with torch.no_grad():
            return (self._tensor(x) @ weight + bias).argmax(dim=1).cpu().numpy()


def logme_eigen_form(f: Any, y: Any, classes: int, device: str) -> tuple[Any, Any, Any, float]:
    """LogME's reduction on ``device``: (eigenvalues, zero off-diagonal, Q^T b per class, scale), float64.

    The eigenvalues are the diagonal of a tridiagonal form whose off-diagonal is zero, so
    :func:`~zooprobe.evaluator.scores.logme_fit` searches alpha / beta on them exactly as on the
    Householder form it computes on the CPU (where eigenvectors would cost 3x the reduction).
    """
    import numpy as np
    import torch

    n, d = f.shape
    features = torch.as_tensor(np.asarray(f, dtype=np.float64), device=device)
    gram = features.T @ features if n > d else features @ features.T
    scale = max(float(torch.trace(gram)) / n, 1e-300)
    gram /= scale
    labels = torch.as_tensor(y, device=device)
    one_hot = torch.nn.functional.one_hot(labels, classes).to(torch.float64)
    rhs = features.T @ one_hot / scale**0.5 if n > d else one_hot
    eigenvalues, vectors = torch.linalg.eigh(gram)
    rotated = (vectors.T @ rhs).cpu().numpy()
    diagonal = eigenvalues.cpu().numpy()
    return diagonal, np.zeros(max(len(diagonal) - 1, 0)), rotated, scale
