"""The quickstart's time budget: the input resolution and early stopping it chooses, the reasons it prints,
and the elapsed time of each step."""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field

import click

# A pretrained convnet halves its maps five times: below 64 px the deepest cut points see 1 x 1 maps.
SMALLEST = 64
LARGEST = 224
# Upsampling an image more than 4x per side interpolates pixels that carry no more detail.
UPSAMPLING = 4
# An arm stops after this many epochs without a lower validation loss: the scratch arm, which learns
# from random weights, is the one that plateaus early on small data.
PATIENCE = 1


@dataclass(frozen=True)
class Budget:
    """What the quickstart trains at, and why (one line per choice)."""

    resolution: int | None
    patience: int
    reasons: list[str] = field(default_factory=list)


def choose_budget(resolution: int | None, image_side: int | None, epochs: int) -> Budget:
    """The resolution (``resolution`` if given; else from the data's largest image side, when known) and
    the patience of early stopping, with the reason for each."""
    reasons = []
    if resolution is not None:
        reasons.append(f"resolution {resolution} px, as given")
    elif image_side:
        wanted = -(-UPSAMPLING * image_side // 32) * 32
        resolution = min(max(wanted, SMALLEST), LARGEST)
        if resolution < LARGEST:
            saving = (LARGEST / resolution) ** 2
            reasons.append(
                f"resolution {resolution} px, not 224: the images are at most {image_side} px a side, and"
                f" upsampling them further adds no detail; each image costs ~{saving:.0f}x less to process"
            )
        else:
            reasons.append(f"resolution {resolution} px: the images are {image_side} px a side or larger")
    reasons.append(
        f"up to {epochs} epochs per arm, each arm stopping after {PATIENCE} epoch without a lower validation"
        " loss (the scratch arm, learning from random weights, plateaus first on small data)"
    )
    return Budget(resolution, PATIENCE, reasons)


class StepClock:
    """Prints each step's heading and, when the next one starts, the time the previous one took."""

    def __init__(self, steps: int) -> None:
        self.steps = steps
        self.times: list[tuple[str, float, float]] = []
        self._current: tuple[str, float, float] | None = None

    @staticmethod
    def _cpu() -> float:
        times = os.times()  # this process and the workers it waited for
        return times.user + times.system + times.children_user + times.children_system

    def step(self, number: int, text: str) -> None:
        """End the current step (printing its time) and start step ``number``."""
        self.end()
        click.secho(f"\n[{number}/{self.steps}] {text}", bold=True, err=True)
        self._current = (text, time.perf_counter(), self._cpu())

    def end(self) -> None:
        """End the current step, printing its wall and CPU time."""
        if self._current is None:
            return
        text, wall, cpu = self._current
        elapsed = (text, time.perf_counter() - wall, self._cpu() - cpu)
        self.times.append(elapsed)
        self._current = None
        click.echo(f"  ({elapsed[1]:.1f} s, {elapsed[2]:.1f} CPU s)", err=True)

    def summary(self) -> str:
        """One line per step and the total."""
        self.end()
        lines = [f"  [{i}/{self.steps}] {wall:6.0f} s {cpu:6.0f} CPU s  {text}" for i, (text, wall, cpu) in
                 enumerate(self.times, 1)]  # fmt: skip
        total = sum(wall for _, wall, _ in self.times), sum(cpu for _, _, cpu in self.times)
        return "\n".join(["step times:", *lines, f"  total {total[0]:.0f} s ({total[1]:.0f} CPU s)"])
