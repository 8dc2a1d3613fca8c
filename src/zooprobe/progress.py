"""Progress bars on stderr for long library work (extraction, training), without the CLI's click.

On a terminal the bar redraws one line; off a terminal (CI logs, nohup) it prints its label once,
so a log gets one line per bar rather than one per batch. ``enabled=False`` prints nothing.
"""

from __future__ import annotations

import sys
import time
from typing import TextIO

_WIDTH = 30


class ProgressBar:
    """``with ProgressBar(n, "label") as bar: bar.update(k)``; ``bar.label`` may change while it runs."""

    def __init__(self, length: int, label: str, *, enabled: bool = True, stream: TextIO | None = None) -> None:
        self.length = max(int(length), 0)
        self.label = label
        self.enabled = enabled
        self.stream = stream if stream is not None else sys.stderr
        self.done = 0
        self._started = 0.0
        self._interactive = enabled and _isatty(self.stream)

    def __enter__(self) -> ProgressBar:
        self._started = time.perf_counter()
        if self.enabled and not self._interactive:
            self.stream.write(f"{self.label}\n")
            self.stream.flush()
        self._draw()
        return self

    def __exit__(self, *exc: object) -> None:
        if self._interactive:
            self._draw()
            self.stream.write("\n")
            self.stream.flush()

    @property
    def interactive(self) -> bool:
        """Whether the bar redraws one line (a terminal); off a terminal it printed its label once."""
        return self._interactive

    def update(self, n: int) -> None:
        """Count ``n`` more items done."""
        self.done += n
        self._draw()

    def say(self, message: str) -> None:
        """One line above the bar (on a terminal the bar is redrawn below it); off a terminal just the line."""
        if not self.enabled:
            return
        self.stream.write(f"\r\033[K{message}\n" if self._interactive else f"{message}\n")
        self.stream.flush()
        self._draw()

    def _draw(self) -> None:
        if not self._interactive:
            return
        share = min(self.done / self.length, 1.0) if self.length else 1.0
        filled = int(round(share * _WIDTH))
        elapsed = time.perf_counter() - self._started
        eta = ""
        if 0 < self.done < self.length:
            left = elapsed / self.done * (self.length - self.done)
            eta = f"  {int(left // 3600):02d}:{int(left % 3600 // 60):02d}:{int(left % 60):02d}"
        bar = "#" * filled + "-" * (_WIDTH - filled)
        self.stream.write(f"\r{self.label}  [{bar}]  {share * 100:3.0f}%{eta}\033[K")
        self.stream.flush()


def _isatty(stream: TextIO) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):  # a closed or file-less stream
        return False


def note(message: str, *, stream: TextIO | None = None) -> None:
    """One line on stderr (a closing summary beside a bar)."""
    out = stream if stream is not None else sys.stderr
    out.write(f"{message}\n")
    out.flush()
