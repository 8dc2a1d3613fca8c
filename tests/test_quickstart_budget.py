"""The quickstart's budget: the resolution it picks from the images' size, its early stopping, and its step times."""

from __future__ import annotations

import pytest

from zooprobe.cli.quickstart import _largest_side
from zooprobe.cli.quickstart_budget import PATIENCE, StepClock, choose_budget


@pytest.mark.parametrize(("side", "resolution"), [(8, 64), (28, 128), (32, 128), (100, 224), (500, 224)])
def test_resolution_follows_the_images_side(side: int, resolution: int) -> None:
    budget = choose_budget(None, side, epochs=3)
    assert budget.resolution == resolution
    assert budget.patience == PATIENCE
    assert f"{resolution} px" in budget.reasons[0] and "epochs" in budget.reasons[-1]
    if resolution < 224:
        assert "not 224" in budget.reasons[0] and f"at most {side} px" in budget.reasons[0]


def test_a_given_resolution_is_kept_and_unknown_sizes_keep_the_models_own() -> None:
    assert choose_budget(96, 8, epochs=3).resolution == 96
    assert choose_budget(None, None, epochs=3).resolution is None


def test_digits_are_8_px_and_unreadable_data_have_no_size() -> None:
    assert _largest_side("sklearn:digits") == 8
    assert _largest_side("/nonexistent/folder") is None


def test_the_step_clock_prints_each_steps_time(capsys: pytest.CaptureFixture[str]) -> None:
    clock = StepClock(2)
    clock.step(1, "first")
    clock.step(2, "second")
    summary = clock.summary()
    printed = capsys.readouterr().err
    assert "[1/2] first" in printed and "[2/2] second" in printed and printed.count("CPU s)") == 2
    assert summary.splitlines()[0] == "step times:" and "total" in summary.splitlines()[-1]
    assert len(clock.times) == 2
