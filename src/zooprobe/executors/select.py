"""Choosing an executor by name (``--executor``, ``$ZOOPROBE_EXECUTOR``) and opening it."""

from __future__ import annotations

import os

from ..errors import InvalidChoiceError
from .base import DEFAULT_ADDRESS, Executor, LocalExecutor

EXECUTORS = ("local", "ray")


def executor_name(name: str | None) -> str:
    """``name``, else ``$ZOOPROBE_EXECUTOR``, else ``local``; checked against the executors there are."""
    chosen = name or os.environ.get("ZOOPROBE_EXECUTOR") or "local"
    if chosen not in EXECUTORS:
        raise InvalidChoiceError("executor", chosen, EXECUTORS, "pass --executor local or --executor ray")
    return chosen


def open_executor(name: str | None = None, address: str | None = None) -> Executor:
    """The executor called ``name`` (see :func:`executor_name`); for ``ray``, connected to ``address``
    (``auto``: a running cluster, else a local one started here).

    :raises ExecutorError: Ray is not installed, or nothing answers at ``address``.
    """
    chosen = executor_name(name)
    if chosen == "local":
        return LocalExecutor()
    from .ray_executor import RayExecutor

    return RayExecutor.connect(address or os.environ.get("ZOOPROBE_RAY_ADDRESS") or DEFAULT_ADDRESS)
