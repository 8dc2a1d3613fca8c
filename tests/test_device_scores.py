"""The probe and LogME through their torch path (the one CUDA runs), forced onto the CPU, against NumPy's."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from sklearn.datasets import load_digits

from zooprobe.errors import InvalidChoiceError
from zooprobe.evaluator.candidate import scoring_device
from zooprobe.evaluator.probe import linear_probe
from zooprobe.evaluator.scores import logme_fit
from zooprobe.plugins.metric_lookup import registered


def _wide(n: int, d: int, classes: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Few rows, many features, classes shifted along their own directions: fits in the rows' span."""
    rng = np.random.default_rng(seed)
    labels = np.arange(n) % classes
    return rng.normal(size=(n, d)) + 0.8 * np.eye(classes, d)[labels] * np.sqrt(d / classes), labels


@pytest.mark.parametrize("case", ["digits", "few-shot wide", "subsampled sweep"])
def test_probe_on_torch_matches_numpy(case: str) -> None:
    features, labels = load_digits(return_X_y=True)
    options = {}
    if case == "few-shot wide":
        features, labels = _wide(120, 400, 6, 0)
    elif case == "subsampled sweep":  # the sweep's start carried from a subset's row basis to a fold's
        features, labels = _wide(240, 300, 4, 1)
        options = {"sweep_examples": 120}
    numpy_fit = linear_probe(features, labels, **options)
    torch_fit = linear_probe(features, labels, device="cpu", **options)
    assert torch_fit.c == numpy_fit.c
    assert set(torch_fit.sweep) == set(numpy_fit.sweep)
    # Both fit in float32, summing in different orders: a fit that stops at the tolerance may leave one
    # held-out example on the other side of a boundary, at a C the sweep did not choose.
    one_example = 1 / (len(labels) / 5 - 1)
    assert max(abs(torch_fit.sweep[c] - numpy_fit.sweep[c]) for c in numpy_fit.sweep) <= one_example
    assert abs(torch_fit.accuracy - numpy_fit.accuracy) <= 1e-4
    assert abs(torch_fit.balanced_accuracy - numpy_fit.balanced_accuracy) <= 1e-4
    assert numpy_fit.accuracy > 0.5  # a real fit, not two equal failures


@pytest.mark.parametrize("shape", [(600, 40), (50, 200)])
def test_logme_on_torch_matches_lapack(shape: tuple[int, int]) -> None:
    n, d = shape
    rng = np.random.default_rng(2)
    labels = np.arange(n) % 5
    features = rng.normal(size=(n, d)) + np.eye(5, d)[labels]
    features[:, 3] = 0.0  # a dead feature: a zero eigenvalue in both forms
    lapack = logme_fit(features, labels)
    on_torch = logme_fit(features, labels, device="cpu")
    assert abs(on_torch.value - lapack.value) <= 1e-4
    np.testing.assert_allclose(on_torch.per_class, lapack.per_class, atol=1e-4)
    np.testing.assert_allclose(np.log(on_torch.alpha), np.log(lapack.alpha), atol=1e-4)


def test_the_probe_metric_takes_the_runs_device() -> None:
    features, labels = load_digits(return_X_y=True)
    metrics = registered()
    probe = metrics["probe_accuracy"]
    assert "device" in probe.options and "device" in metrics["logme"].options
    on_torch = probe.score(features, labels, folds=2, seed=0, cache={}, groups=None, device="cpu")
    assert abs(on_torch.value - linear_probe(features, labels, folds=2).accuracy) <= 1e-4


def test_scores_compute_in_torch_only_on_cuda(tmp_path: Path) -> None:
    assert scoring_device("cpu") is None
    with pytest.raises(InvalidChoiceError, match="device"):
        scoring_device("tpu")


def test_assess_refuses_an_unknown_device_before_any_work(tmp_path: Path) -> None:
    from zooprobe.evaluator.assess import assess

    with pytest.raises(InvalidChoiceError, match="device 'tpu'"):
        assess("sklearn:digits", ["torchvision:no_such_model"], device="tpu", home=tmp_path, progress=False)
    assert not (tmp_path / "runs.sqlite3").exists()
