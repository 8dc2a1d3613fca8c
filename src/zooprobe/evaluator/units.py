"""An assessment's unit of work, one candidate: what the driver sends (:class:`CandidateTask`), the data every
unit shares (:class:`SharedData`) and what comes back (:class:`CandidateOutcome`, or :class:`CandidateSkipped`).

The same unit runs in the driver (the local executor) and on a Ray worker; only the driver writes the
run store. The unit itself is :func:`zooprobe.evaluator.candidate.assess_candidate`.
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..catalog.schema import Entry
from ..runs.store import Score

if TYPE_CHECKING:
    import numpy as np
    import numpy.typing as npt

    from ..backbones.backbone import Backbone
    from ..data.datasets import Dataset
    from ..plugins.metric import Metric

Opened = tuple["Dataset", "npt.NDArray[np.int64]", "npt.NDArray[np.int64] | None"]


@dataclass(frozen=True)
class SharedData:
    """The dataset as every unit gets it: the loaded dataset (in this process, or put once in Ray's object
    store), or the spec of one on a path every worker can see, which each worker reads once."""

    dataset: Dataset | None = None
    groups: npt.NDArray[np.int64] | None = None
    spec: str | None = None
    on_error: str = "fail"
    on_duplicates: str = "error"

    @classmethod
    def of(
        cls, data: object, dataset: Dataset, groups: Any, on_error: str, on_duplicates: str, remote: bool
    ) -> SharedData:
        """What to ship: for a remote executor and a dataset read from a spec, the spec (absolute when a path)."""
        if remote and isinstance(data, str):
            spec = os.path.abspath(data) if os.path.exists(data) else data
            return cls(spec=spec, on_error=on_error, on_duplicates=on_duplicates)
        return cls(dataset=dataset, groups=groups)

    def open(self) -> Opened:
        """The dataset, its labels and its content groups."""
        if self.dataset is not None:
            return self.dataset, self.dataset.labels, self.groups
        assert self.spec is not None
        key = (self.spec, self.on_error, self.on_duplicates)
        if key not in _READ:  # once per worker process, not once per candidate
            from ..data.datasets import read_dataset
            from ..data.hygiene import content_groups
            from ..data.splits import training_part

            read = read_dataset(self.spec, on_error=self.on_error, on_duplicates=self.on_duplicates)  # type: ignore[arg-type]
            dataset = training_part(read)  # as the driver scores it: given splits on their 'train' part
            _READ.clear()
            _READ[key] = (dataset, dataset.labels, content_groups(dataset))
        return _READ[key]


_READ: dict[tuple[str, str, str], Opened] = {}


@dataclass
class CandidateTask:
    """One candidate to load, extract and score. ``done`` holds the (layer, metric) pairs already recorded
    (a resumed run recomputes none of them); ``record``, set only in the driver, stores each score as soon as
    it is known; ``say_from`` is the clock the progress lines count from (``None``: no progress lines);
    ``device`` is where extraction and scoring run (None: ``$ZOOPROBE_DEVICE``, else the best present)."""

    position: int
    entry: Entry
    loader: Callable[[Entry], Backbone] | None
    resolution: int | None
    trust_remote_code: bool
    layers: str | list[str]
    metrics: Mapping[str, Metric]
    seed: int
    folds: int
    batch_size: int
    cache_dir: Path
    done: frozenset[tuple[str, str]] = frozenset()
    say_from: float | None = None
    record: Callable[[Score], None] | None = None
    trust_savedmodel: bool = False  # TF SavedModels of any source load (their graph runs as code)
    device: str | None = None


@dataclass
class CandidateOutcome:
    """A candidate's unit, done: the cut points it has, the ones scored, the scores computed (all of them,
    recorded already or not) and the revision whose code ran (remote code only)."""

    model: str
    cut_points: list[str]
    layers: list[str]
    scores: list[Score] = field(default_factory=list)
    revision: str | None = None
    pair_features: str | None = None  # how the backbone read sentence pairs (pair data only)


@dataclass
class ProgressLines:
    """Progress lines on stderr, each stamped with the seconds since ``started`` (the driver's clock)."""

    enabled: bool
    started: float = field(default_factory=time.perf_counter)

    def say(self, message: str) -> None:
        if self.enabled:
            print(f"[{time.perf_counter() - self.started:6.1f}s] {message}", file=sys.stderr, flush=True)


class CandidateSkipped(Exception):
    """A candidate that cannot be assessed (cannot load, or failed scoring); the others still are."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason
