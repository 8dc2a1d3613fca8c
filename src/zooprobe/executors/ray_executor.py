"""The ``ray`` executor: each unit a Ray task, the shared dataset put once in the object store.

Only this process (the driver) sees results, as each task finishes, so only it writes the run store; a
task that reports as it goes (a fine-tuning arm's epochs) puts each item in an actor the driver drains.
A task whose worker dies is retried by Ray (``max_retries``); one that raises is reported once, with
the exception it raised. Each task asks for one CPU, and one GPU when the cluster has any, so a mixed
cluster places extraction where the accelerators are.
"""

from __future__ import annotations

import socket
from collections.abc import Iterator
from typing import Any
from urllib.parse import urlsplit

from ..errors import first_line
from .base import DEFAULT_ADDRESS, ExecutorError, Job, UnitCounts

INSTALL_HINT = "pip install 'zooprobe[ray]'"
# how often Ray reruns a task whose worker process or node died (a task that raises is not rerun)
MAX_RETRIES = 3
CONNECT_TIMEOUT_S = 5.0


class RayExecutor:
    """Units as Ray tasks on the cluster this process is connected to."""

    name = "ray"

    def __init__(self, owns_cluster: bool, cpus_per_unit: float = 1.0) -> None:
        self.owns_cluster = owns_cluster
        self.cpus_per_unit = cpus_per_unit

    @classmethod
    def connect(cls, address: str = DEFAULT_ADDRESS) -> RayExecutor:
        """Join the cluster at ``address``; ``auto``: a running one, else a local one started here (and
        stopped by :meth:`close`). A Ray already initialised in this process is used as it is.

        :raises ExecutorError: Ray is not installed, or nothing answers at ``address``.
        """
        try:
            import ray
        except ImportError:
            raise ExecutorError(f"the ray executor needs Ray, which is not installed; {INSTALL_HINT}") from None
        if address != DEFAULT_ADDRESS:
            _check_answers(address)
        if ray.is_initialized():  # this process is already on a cluster (a notebook's, a test's)
            return cls(owns_cluster=False)
        if address == DEFAULT_ADDRESS:
            try:
                ray.init(address="auto", log_to_driver=True)
                return cls(owns_cluster=False)
            except ConnectionError:  # no running cluster: start one on this machine
                ray.init(include_dashboard=False)
                return cls(owns_cluster=True)
        try:
            ray.init(address=address)
        except (ConnectionError, RuntimeError) as exc:
            raise ExecutorError(
                f"cannot join the Ray cluster at --ray-address {address}: {first_line(exc)}; check the address"
                " ('ray status' on the head node prints it) or pass --ray-address auto"
            ) from None
        return cls(owns_cluster=False)

    def share(self, value: Any) -> Any:
        import ray

        return ray.put(value)

    def run(self, job: Job) -> UnitCounts:
        import ray

        resources: dict[str, float] = ray.cluster_resources()  # type: ignore[no-untyped-call]
        gpus = 1 if resources.get("GPU", 0) > 0 else 0
        options: dict[str, Any] = {"num_cpus": self.cpus_per_unit, "num_gpus": gpus, "max_retries": MAX_RETRIES}
        options["name"] = getattr(job.fn, "__name__", "unit")  # what ray status, logs and ps call the task
        streaming = job.on_item is not None
        task: Any = ray.remote(_streaming_unit if streaming else job.fn).options(**options)
        # items units emit wait here until the driver drains them (an actor: it outlives a killed worker)
        inbox: Any = ray.remote(num_cpus=0)(Inbox).remote() if streaming else None
        # units are taken only when one can start: a budget checked while taking them still means something
        room = max(1, int(resources.get("GPU", 0) if gpus else resources.get("CPU", 1) // self.cpus_per_unit))
        pending: dict[Any, Any] = {}
        keyed: list[Any] = []  # the units by the key their items come back with
        counts = UnitCounts()
        queue: Iterator[Any] = iter(job.units)
        exhausted = False
        try:
            while True:
                while not exhausted and len(pending) < room:
                    unit = next(queue, _END)
                    if unit is _END:
                        exhausted = True
                        break
                    keyed.append(unit)
                    args = (job.fn, inbox, len(keyed) - 1, unit) if streaming else (unit,)
                    pending[task.remote(*args, job.shared)] = unit
                counts.running = len(pending)
                if not pending:
                    return counts
                ready, _ = ray.wait(list(pending), num_returns=1, timeout=DRAIN_EVERY_S if streaming else None)
                if job.on_item is not None:  # before on_done: a unit's items come first
                    for key, item in ray.get(inbox.drain.remote()):
                        job.on_item(keyed[key], item)
                if not ready:
                    continue
                unit = pending.pop(ready[0])
                counts.running = len(pending)
                try:
                    result = ray.get(ready[0])
                except Exception as exc:  # noqa: BLE001 - the unit's own error (or its worker's death)
                    counts.failed += 1
                    if job.say is not None:
                        job.say(str(counts))
                    job.on_failed(unit, _cause(exc))
                    continue
                counts.done += 1
                if job.say is not None:
                    job.say(str(counts))
                job.on_done(unit, result)
        finally:
            for ref in pending:  # a callback stopped the run, or an interrupt: nothing keeps computing
                ray.cancel(ref, force=True)
            if inbox is not None:
                ray.kill(inbox)

    def close(self) -> None:
        if self.owns_cluster:
            import ray

            ray.shutdown()


_END = object()
# how often the driver collects the items running units emitted (a streaming job's latency)
DRAIN_EVERY_S = 0.2


class Inbox:
    """Items units emit, in the order they arrive, until the driver drains them (a Ray actor)."""

    def __init__(self) -> None:
        self.items: list[tuple[int, Any]] = []

    def put(self, key: int, item: Any) -> None:
        self.items.append((key, item))

    def drain(self) -> list[tuple[int, Any]]:
        drained, self.items = self.items, []
        return drained


def _streaming_unit(fn: Any, inbox: Any, key: int, unit: Any, shared: Any) -> Any:
    """``fn(unit, shared, emit)`` on a worker: each item is in the driver's inbox before ``emit`` returns."""
    import ray

    def emit(item: Any) -> None:
        ray.get(inbox.put.remote(key, item))

    return fn(unit, shared, emit)


def _cause(exc: Exception) -> Exception:
    """The exception the unit raised, out of Ray's wrapper; Ray's own (a worker that died) as it is."""
    from ray.exceptions import RayTaskError

    if isinstance(exc, RayTaskError) and isinstance(exc.cause, Exception):
        return exc.cause
    return exc


def _check_answers(address: str) -> None:
    """Fail fast, naming ``address``, when nothing listens there (Ray itself retries for minutes)."""
    parts = urlsplit(address if "://" in address else f"ray://{address}")
    try:
        host, port = parts.hostname, parts.port
    except ValueError:
        host, port = None, None
    if not host or not port:
        raise ExecutorError(
            f"--ray-address {address!r} is not HOST:PORT (e.g. 10.0.0.5:6379 or ray://10.0.0.5:10001); or pass auto"
        )
    try:
        socket.create_connection((host, port), timeout=CONNECT_TIMEOUT_S).close()
    except OSError as exc:
        raise ExecutorError(
            f"no Ray cluster answers at --ray-address {address} ({exc.strerror or exc}); start one with"
            " 'ray start --head' there, or pass --ray-address auto"
        ) from None
