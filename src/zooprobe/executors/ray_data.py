"""Sharding one unit's rows over the cluster with Ray Data: ``map_batches`` on an actor pool whose actors
each set up once (load a model) and then map batches of row indices; the results come back in row order.

Used for the extraction of one candidate's features when the dataset is large: one candidate's unit would
otherwise read every image on one worker (see :mod:`zooprobe.evaluator.sharded`).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import numpy as np
    import numpy.typing as npt

# setup(shared) -> state, once per actor; apply(state, row indices) -> {column: array with a row per index}
Setup = Callable[[Any], Any]
Apply = Callable[[Any, Any], dict[str, Any]]


class RowMapper:
    """One actor of the pool: its state set up once, then each batch of row indices mapped."""

    def __init__(self, setup: Setup, apply: Apply, shared: Any) -> None:
        import ray

        # Ray Data hands constructor arguments over as they are: a reference is not resolved for us
        self.state = setup(ray.get(shared) if isinstance(shared, ray.ObjectRef) else shared)
        self.apply = apply

    def __call__(self, batch: dict[str, Any]) -> dict[str, Any]:
        return {"id": batch["id"], **self.apply(self.state, batch["id"])}


def map_rows(
    setup: Setup, apply: Apply, shared: Any, rows: int, *, batch_size: int, actors: int
) -> Iterator[tuple[npt.NDArray[np.int64], dict[str, Any]]]:
    """(row indices, {column: values}) for rows ``0 .. rows-1`` in order, mapped by up to ``actors`` actors
    (one CPU each, and one GPU each when the cluster has GPUs), each running ``setup(shared)`` once.
    ``shared`` may be an object-store reference: each actor receives its value."""
    import ray
    import ray.data

    context = ray.data.DataContext.get_current()
    ordered, bars = context.execution_options.preserve_order, context.enable_progress_bars
    context.execution_options.preserve_order = True  # batches come back in row order
    context.enable_progress_bars = False  # the caller shows its own progress
    gpus = 1 if ray.cluster_resources().get("GPU", 0) > 0 else 0  # type: ignore[no-untyped-call]
    try:
        mapped = ray.data.range(rows).map_batches(
            RowMapper,
            fn_constructor_args=(setup, apply, shared),
            batch_size=batch_size,
            batch_format="numpy",
            compute=ray.data.ActorPoolStrategy(min_size=1, max_size=max(1, actors)),
            num_cpus=1,
            num_gpus=gpus,
        )
        for batch in mapped.iter_batches(batch_size=None, batch_format="numpy"):
            ids = batch.pop("id")
            yield ids, batch
    finally:
        context.execution_options.preserve_order, context.enable_progress_bars = ordered, bars


def cluster_cpus() -> int:
    """The CPUs of the cluster this process is connected to."""
    import ray

    return int(ray.cluster_resources().get("CPU", 1))  # type: ignore[no-untyped-call]


def call_on_worker(fn: Callable[..., Any], *args: Any) -> Any:
    """``fn(*args)`` as one Ray task of one CPU (references among ``args`` arrive as their values)."""
    import ray

    return ray.get(ray.remote(fn).options(num_cpus=1, max_retries=3).remote(*args))
