"""The executor contract and the local executor."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from functools import partial
from typing import Any, Protocol, TypeVar

from ..errors import ZooprobeError

DEFAULT_ADDRESS = "auto"

U = TypeVar("U")
R = TypeVar("R")

# fn(unit, shared) -> result; fn(unit, shared, emit) -> result for a job with on_item
UnitFunction = Callable[..., Any]


class ExecutorError(ZooprobeError):
    """An executor that cannot start: Ray not installed, or a cluster address that does not answer."""


@dataclass
class UnitCounts:
    """How many units are done, running and failed so far (for progress lines)."""

    done: int = 0
    running: int = 0
    failed: int = 0

    def __str__(self) -> str:
        return f"units {self.done} done, {self.running} running, {self.failed} failed"


@dataclass
class Job:
    """Units of work: ``fn(unit, shared)`` for each of ``units``; ``on_done(unit, result)`` or
    ``on_failed(unit, error)`` in the driver as each finishes. An exception a callback raises stops the
    run and propagates. ``units`` is consumed lazily: units are taken only when there is room to run them,
    so a budget checked while they are taken still holds. ``say`` gets the unit counts as they change.

    With ``on_item``, a unit also streams items to the driver while it runs: it is called as
    ``fn(unit, shared, emit)``, and each ``emit(item)`` reaches ``on_item(unit, item)`` in the driver, in the
    order emitted and before that unit's ``on_done``. A unit retried after its worker died emits again, so
    ``on_item`` must be idempotent (record by key)."""

    fn: UnitFunction
    units: Iterable[Any]
    shared: Any
    on_done: Callable[[Any, Any], None]
    on_failed: Callable[[Any, Exception], None]
    say: Callable[[str], None] | None = None
    on_item: Callable[[Any, Any], None] | None = None

    def call(self, unit: Any, shared: Any) -> Any:
        """The unit run here, in the driver: items it emits reach ``on_item`` at once."""
        if self.on_item is None:
            return self.fn(unit, shared)
        return self.fn(unit, shared, partial(self.on_item, unit))


class Executor(Protocol):
    """Runs units of work and hands each result (or failure) to the caller as the unit finishes."""

    name: str

    def share(self, value: Any) -> Any:
        """``value`` as the units will receive it: as it is locally, put once in Ray's object store."""

    def run(self, job: Job) -> UnitCounts:
        """Run ``job``'s units, handing each outcome to its callbacks in this process as the unit finishes."""

    def close(self) -> None:
        """Release what the executor started (a local Ray cluster it started; never one it joined)."""


class LocalExecutor:
    """Every unit in this process, one after another: the default, and what a resumed run gets unless told."""

    name = "local"

    def share(self, value: Any) -> Any:
        return value

    def run(self, job: Job) -> UnitCounts:
        counts = UnitCounts()
        for unit in job.units:
            counts.running = 1
            try:
                result = job.call(unit, job.shared)
            except Exception as exc:  # noqa: BLE001 - a unit's failure is the caller's to judge (skip or stop)
                counts.running, counts.failed = 0, counts.failed + 1
                job.on_failed(unit, exc)
                continue
            counts.running, counts.done = 0, counts.done + 1
            job.on_done(unit, result)
        return counts

    def close(self) -> None:
        return None
