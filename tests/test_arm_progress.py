"""Arms run as executor units (as on Ray) show one progress bar on a terminal, counting every arm's epochs, and
a line per epoch off a terminal."""

from __future__ import annotations

import io
import sys
from pathlib import Path

import pytest

from zooprobe.evaluator.units import ProgressLines
from zooprobe.executors.base import LocalExecutor
from zooprobe.finetuning.arm_units import ArmRun, ArmUnit, train_arms_on
from zooprobe.finetuning.recipes import train_settings
from zooprobe.finetuning.strategy import Strategy, parse_strategy
from zooprobe.runs.store import RunStore

from .conftest import write_digits_npz
from .test_finetune import MODEL, weights  # noqa: F401  (a fixture)


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def _train(home: Path) -> None:
    from zooprobe.data.datasets import read_dataset

    data = str(write_digits_npz(home / "digits.npz", per_class=8))  # 80 images: extraction in seconds
    digest = read_dataset(data).content_hash()
    settings = train_settings("image", epochs=2, lr=2e-3, batch_size=16, seed=0, patience=3)
    with RunStore(home) as store:
        run = store.create("finetune", data, {"model": MODEL}, data_hash=digest)
        shared = ArmRun(
            run.id, str(home), MODEL, data, digest, "fail", "error", False, False, 32, None, settings, "cpu"
        )
        cut = "cut:features.13+mlp:16:train=new"  # both arms train on cached features: seconds
        units = [ArmUnit("head", Strategy("head", layer="pre_logits")), ArmUnit(cut, parse_strategy(cut))]
        train_arms_on(LocalExecutor(), store, shared, units, None, ProgressLines(True).say, progress=True)


def test_arm_units_draw_one_bar_on_a_terminal_and_lines_off_it(
    weights: Path,  # noqa: F811
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    terminal = Terminal()
    monkeypatch.setattr(sys, "stderr", terminal)
    _train(weights)
    out = terminal.getvalue()
    assert "validation accuracy" not in out  # no line per epoch: the bar's label carries it
    final = out.rsplit("\r", 1)[-1]
    assert final.startswith("head 2/2 acc ") and " | cut:features.13+mlp:16:train=new 2/2 acc " in final, final
    assert "100%" in final
    assert out.count("\r2 arm(s) on local  [") >= 1  # the bar before the first epoch arrives

    log = io.StringIO()  # off a terminal: one line per epoch, as before
    monkeypatch.setattr(sys, "stderr", log)
    _train(weights)  # a second run in the same home
    lines = [line for line in log.getvalue().splitlines() if "validation accuracy" in line]
    assert [line.split("] ", 1)[1].rsplit(": validation", 1)[0] for line in lines] == [
        "head epoch 1/2",
        "head epoch 2/2",
        "cut:features.13+mlp:16:train=new epoch 1/2",
        "cut:features.13+mlp:16:train=new epoch 2/2",
    ]
