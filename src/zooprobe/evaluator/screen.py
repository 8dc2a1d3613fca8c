"""Which cut points of a candidate get which scores: successive halving over cut points.

The cheap scores (kNN, LogME, H-score, nearest class mean; each well under 0.1 s at N = 1,797,
D = 1,280) run at every cut point. The cross-validated probe, the one costly score (11 sweep fits
and 5 fold fits, 0.2-1 s a cut point on the same data), runs only where the decision reads it:

- at the deepest cut point, always: the consensus ranks candidates by its scores there, and the
  layer profile asks whether the last layer serves;
- at the :data:`PROBED` other cut points of the highest kNN accuracy (the screen): the layer
  profile's peak, and the earliest cut point within the spread of it, lie among those. On real
  features (MobileNetV2 and EfficientNet-Lite0 on digits), kNN ordered a candidate's cut points as
  the probe did, the probe 0.01-0.07 above it; the cut points screened out are the early ones kNN
  puts 0.05-0.15 below the best, which the probe puts far below the peak too.

Cut points whose features are identical (timm's ``bn2`` and ``pre_logits``: pooling the last
feature map is the head's own first step) are scored once and the scores copied: the same input
gives the same score.

Without the screen's metric among the chosen ones, or with cut points named by hand, or with no
more cut points than the probe's share, every cut point is probed (the exhaustive profile).
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import Executor, Future, ThreadPoolExecutor, wait
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any, TypeVar

from .score_inputs import LARGE_PRODUCT, gram_product, single_blas_thread
from .scoring import score_metric

if TYPE_CHECKING:
    from ..plugins.metric import Metric
    from ..runs.store import Score

T = TypeVar("T")

# The cheap score that screens cut points for the probe.
SCREEN_METRIC = "knn_accuracy"
# Cut points probed besides the deepest: the best by the screen.
PROBED = 3


def identical_layers(features: Mapping[str, Any], layers: Sequence[str]) -> dict[str, str]:
    """Each of ``layers`` mapped to the deepest of them whose features are identical to its own (itself if none)."""
    import numpy as np

    deepest: dict[tuple[Any, ...], str] = {}
    canonical: dict[str, str] = {}
    for layer in reversed(layers):
        array = np.ascontiguousarray(features[layer])
        key = (array.shape, array.dtype.str, hashlib.blake2b(array.data, digest_size=16).digest())
        canonical[layer] = deepest.setdefault(key, layer)
    return {layer: canonical[layer] for layer in layers}


def probe_family(metrics: Mapping[str, Metric], names: Sequence[str]) -> list[str]:
    """Of ``names``, the probe (role ``probe``) and the metrics reading its fit (those taking the ``cache`` option)."""
    if not any(metrics[name].role == "probe" for name in names):
        return []
    return [name for name in names if metrics[name].role == "probe" or "cache" in metrics[name].options]


@dataclass(frozen=True)
class ScreenPlan:
    """The scoring plan of one candidate: ``canonical`` (each cut point's twin whose scores it shares),
    ``cheap`` (metrics scored at every cut point), ``probe`` (the probe's family, scored where
    :meth:`probed` says) and whether the screen applies at all (``screened``)."""

    layers: list[str]
    canonical: dict[str, str]
    cheap: list[str]
    probe: list[str]
    screened: bool

    @property
    def distinct(self) -> list[str]:
        """The cut points scored (the others copy a twin's scores), in depth order."""
        return [layer for layer in self.layers if self.canonical[layer] == layer]

    def probed(self, screen_value: Callable[[str], float | None]) -> list[str]:
        """The distinct cut points to probe, deepest first, then by depth: all of them without the screen."""
        distinct = self.distinct
        if not self.screened or not self.probe:
            return distinct[::-1]
        values = {layer: screen_value(layer) for layer in distinct[:-1]}
        known = [layer for layer in values if values[layer] is not None]
        best = sorted(known, key=lambda layer: -float(values[layer]))[:PROBED]  # type: ignore[arg-type]
        unknown = [layer for layer in values if values[layer] is None]  # no screen value: probe it
        return [distinct[-1], *(layer for layer in distinct[:-1] if layer in best or layer in unknown)]


def plan_scoring(
    metrics: Mapping[str, Metric], names: Sequence[str], layers: Sequence[str], features: Mapping[str, Any], auto: bool
) -> ScreenPlan:
    """The plan for the feature metrics ``names`` at ``layers``; ``auto``: the cut points were chosen by zooprobe
    (``auto`` or ``all``), not named by hand."""
    probe = probe_family(metrics, names)
    cheap = [name for name in names if name not in probe]
    canonical = identical_layers(features, layers)
    distinct = sum(1 for layer in layers if canonical[layer] == layer)
    screened = auto and bool(probe) and SCREEN_METRIC in cheap and distinct > PROBED + 1
    return ScreenPlan(list(layers), canonical, cheap, probe, screened)


@dataclass
class CutPointScoring:
    """One candidate's scores through the metric door, by :func:`plan_scoring`'s plan: ``done`` holds the
    (layer, metric) pairs recorded already (not recomputed), ``emit`` takes each new score. With ``threads``
    above one, on the CPU (the run's ``device`` None), the scores of metrics declared ``concurrent`` compute
    at once on a pool (:func:`scoring_pool`), the others in the calling thread; they are emitted in the same
    order, with the same values, as on one thread."""

    model: str
    metrics: Mapping[str, Metric]
    labels: Any
    run: Mapping[str, Any]
    done: frozenset[tuple[str, str]] | set[tuple[str, str]]
    emit: Callable[[Score], None]
    threads: int = 1
    scored: dict[tuple[str, str], Score] = field(default_factory=dict)
    caches: dict[str, dict[Any, Any]] = field(default_factory=dict)  # work the metrics at one cut point share

    def put(self, layer: str, metric: str, inputs: Any, twin: str | None = None) -> None:
        """Score ``metric`` on ``inputs`` at ``layer`` unless done; copied from ``twin`` (same inputs) if scored."""
        if (layer, metric) in self.done:
            return
        if twin is not None and (twin, metric) in self.scored:  # identical features: the same score
            self._record(replace(self.scored[(twin, metric)], layer=layer, seconds=0.0))
        else:
            self._record(self._measure(layer, metric, inputs))

    def value(self, layer: str, metric: str, inputs: Any) -> float | None:
        """``metric``'s value at ``layer``: as scored, else measured now and not recorded (a resumed run's)."""
        if (layer, metric) not in self.scored:
            self.scored[(layer, metric)] = self._measure(layer, metric, inputs)
        return self.scored[(layer, metric)].value

    def _record(self, score: Score) -> None:
        self.scored[(score.layer, score.metric)] = score
        self.emit(score)

    def _measure(self, layer: str, metric: str, inputs: Any) -> Score:
        """``metric`` scored on ``inputs``, sharing the work of the metrics at ``layer`` (one probe fit serves two)."""
        cache = self.caches.setdefault(layer, {})
        # one thread each: scores already run beside each other here, and the probe's folds on threads
        # of their own on top spent 14% more CPU on the guard's targets for no time saved on 2 cores
        run = {**self.run, "cache": cache, "threads": 1}
        return score_metric(self.metrics[metric], self.model, layer, inputs, self.labels, run)

    def _measure_all(self, layer: str, metrics: Sequence[str], inputs: Any) -> list[Score]:
        """The ``metrics`` not done at ``layer``, in order, on one thread: those of the probe's family share its fit."""
        return [self._measure(layer, metric, inputs) for metric in metrics if (layer, metric) not in self.done]

    def score_features(
        self,
        features: Mapping[str, Any],
        layers: Sequence[str],
        names: Sequence[str],
        *,
        auto: bool,
        say: Callable[[str], None] | None = None,
    ) -> list[str]:
        """The feature metrics ``names`` at ``layers`` by the plan; returns the cut points probed, deepest first.

        The longest piece of work, the probe at the deepest cut point, starts first, then the screen's
        scores, the probe at the cut points they pick, and the other cheap scores. They are recorded
        in the order of one thread: the cheap scores cut point by cut point, then the probes.
        """
        plan = plan_scoring(self.metrics, names, layers, features, auto)
        distinct = plan.distinct
        groups = _cheap_tasks(self.metrics, plan.cheap)
        screen = next((group for group in groups if SCREEN_METRIC in group), ())
        cheap: dict[tuple[str, tuple[str, ...]], Future[list[Score]]] = {}
        probes: dict[str, Future[list[Score]]] = {}
        probed: list[str] = []

        def in_order() -> list[Future[list[Score]]]:
            """The tasks submitted, in the order one thread records their scores."""
            tasks = [cheap[(layer, group)] for layer in distinct for group in groups if (layer, group) in cheap]
            return tasks + [probes[layer] for layer in probed or list(probes) if layer in probes]

        # One score at a time on a CUDA device (the scores queue on one stream: threads would only contend
        # for it) and where products are large enough for BLAS to use every core itself.
        on_cpu = self.run.get("device") is None
        threads = self.threads if on_cpu and _largest_product(features, distinct) < LARGE_PRODUCT else 1
        recorded: set[int] = set()
        with scoring_pool(threads) as pool:
            inline = _Inline()

            def submit(layer: str, metrics: Sequence[str]) -> Future[list[Score]]:
                on_pool = all(self.metrics[metric].concurrent for metric in metrics)
                return (pool if on_pool else inline).submit(self._measure_all, layer, list(metrics), features[layer])

            def record(task: Future[list[Score]]) -> None:
                for score in task.result():
                    self._record(score)
                recorded.add(id(task))

            try:
                if plan.probe:  # the deepest is always probed; without the screen, every cut point is
                    for layer in [distinct[-1]] if plan.screened else distinct[::-1]:
                        probes[layer] = submit(layer, plan.probe)
                # the screen's scores first, then (once they say where) the screened probes, the longer
                # work, then the other cheap scores
                for layer in distinct if plan.screened else []:
                    cheap[(layer, screen)] = submit(layer, screen)

                def screen_value(layer: str) -> float | None:
                    new = [score for score in cheap[(layer, screen)].result() if score.metric == SCREEN_METRIC]
                    return new[0].value if new else self.value(layer, SCREEN_METRIC, features[layer])

                probed = plan.probed(screen_value)
                for layer in probed if plan.probe else []:
                    if layer not in probes:
                        probes[layer] = submit(layer, plan.probe)
                for group in groups:
                    for layer in distinct:
                        if (layer, group) not in cheap:
                            cheap[(layer, group)] = submit(layer, group)
                for layer in distinct:
                    for group in groups:
                        record(cheap[(layer, group)])
                    if say is not None:
                        say(f"{self.model}: scored {layer}")
                for layer in probed if plan.probe else []:
                    record(probes[layer])
            except Exception:
                # a failing score: what finished before it, in one thread's order, stays recorded
                tasks = in_order()
                wait(tasks)
                for task in tasks:
                    if task.exception() is not None:
                        break
                    if id(task) not in recorded:
                        record(task)
                raise
        if plan.probe and say is not None:
            say(f"{self.model}: probed {', '.join(sorted(probed, key=list(layers).index))}")
        for layer in layers:  # the twins of cut points scored above
            twin = plan.canonical[layer]
            if twin != layer:
                for metric in plan.cheap + (plan.probe if twin in probed else []):
                    self.put(layer, metric, features[layer], twin)
        return probed


class _Inline(Executor):
    """An executor that runs each task when it is submitted, in the caller's thread (scoring on one thread);
    a task's error is kept for whoever reads its result, as a pool's would be (an interrupt is not)."""

    def submit(self, fn: Callable[..., T], /, *args: Any, **kwargs: Any) -> Future[T]:
        future: Future[T] = Future()
        try:
            future.set_result(fn(*args, **kwargs))
        except Exception as exc:  # noqa: BLE001 - raised where the result is read, in one thread's order
            future.set_exception(exc)
        return future


def _cheap_tasks(metrics: Mapping[str, Metric], cheap: Sequence[str]) -> list[tuple[str, ...]]:
    """The cheap metrics in tasks: one each, but those sharing a cut point's ``cache`` together (one thread)."""
    sharing = tuple(name for name in cheap if "cache" in metrics[name].options)
    return [*((name,) for name in cheap if name not in sharing), *([sharing] if sharing else [])]


def _largest_product(features: Mapping[str, Any], layers: Sequence[str]) -> float:
    """The largest Gram product a score at ``layers`` computes (:func:`~.score_inputs.gram_product`)."""
    return max((gram_product(*(features[layer].shape + (1,))[:2]) for layer in layers), default=0.0)


@contextmanager
def scoring_pool(threads: int) -> Iterator[Executor]:
    """An executor for independent scores: a pool of ``threads`` threads, each on one BLAS thread (NumPy's
    products release the interpreter lock, so the threads run on separate cores), or inline for one."""
    if threads <= 1:
        yield _Inline()
        return
    with single_blas_thread():
        pool = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="zooprobe-score")
        try:
            yield pool
        finally:  # on an error, what has not started never starts
            pool.shutdown(wait=True, cancel_futures=True)
