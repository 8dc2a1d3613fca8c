"""The raw-feature baseline, computed: the probe on the data themselves, once per assessment.

The metric in the ``probe`` role scores features that need no network: each image resized to
16 x 16 (grayscale, or RGB when any image has colour) and flattened, or for texts a bag of their
most frequent words. Same folds, seed and grouping as the candidates, so the spreads compare;
:mod:`.baseline` reads the result.
"""

from __future__ import annotations

import dataclasses
import re
import threading
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

from .scoring import score_metric

if TYPE_CHECKING:
    import numpy as np
    import numpy.typing as npt

    from ..data.datasets import Dataset
    from ..plugins.metric import Metric
    from ..runs.store import Score

# The run's score rows for the baseline are stored under this model and layer name.
BASELINE_MODEL = "baseline:raw"
BASELINE_LAYER = "raw"
RAW_SIDE = 16
RAW_WORDS = 1_024


def raw_features(dataset: Dataset) -> tuple[npt.NDArray[np.float32], str]:
    """(N x D features taken straight from the data, what they are in words)."""
    import numpy as np

    if dataset.texts is not None:
        tokens = [re.findall(r"\w+", text.lower()) for text in dataset.texts]
        frequency: dict[str, int] = {}
        for words in tokens:
            for word in set(words):
                frequency[word] = frequency.get(word, 0) + 1
        vocabulary = sorted(frequency, key=lambda w: (-frequency[w], w))[:RAW_WORDS]
        column = {word: i for i, word in enumerate(vocabulary)}
        counts = np.zeros((len(tokens), max(len(vocabulary), 1)), dtype=np.float32)
        for row, words in enumerate(tokens):
            for word in words:
                if word in column:
                    counts[row, column[word]] += 1
        return np.log1p(counts), f"a bag of the {len(vocabulary):,} most frequent words"
    from PIL import Image

    colour = any(shape[2] > 1 for shape in dataset.shapes)
    rows = []
    for index in range(len(dataset)):
        image = dataset.load_image(index)
        if colour and image.shape[2] == 1:
            image = np.repeat(image, 3, axis=2)
        elif not colour:
            image = image[..., :1]
        picture = Image.fromarray(image[..., 0] if image.shape[2] == 1 else image[..., :3])
        rows.append(np.asarray(picture.resize((RAW_SIDE, RAW_SIDE), Image.Resampling.BILINEAR), dtype=np.float32))
    kind = "RGB" if colour else "grayscale"
    return np.stack(rows).reshape(len(rows), -1) / 255.0, f"raw {kind} pixels at {RAW_SIDE}x{RAW_SIDE}"


def raw_baseline(dataset: Dataset, labels: Any, probe: Metric, run: Mapping[str, Any]) -> Score:
    """The ``probe`` metric on :func:`raw_features` of ``dataset``, with the run's options; the features
    are described in the score's ``extra["features"]``."""
    features, description = raw_features(dataset)
    score = score_metric(probe, BASELINE_MODEL, BASELINE_LAYER, features, labels, {**run, "cache": {}})
    return dataclasses.replace(score, extra={**score.extra, "features": description})


class BaselineInBackground:
    """The run's raw baseline (:func:`raw_baseline`), computed on a thread of its own from the start: it needs
    no candidate, so it runs while they are assessed. A score stored among ``done`` (a resumed run) is reused;
    without a ``probe`` there is none."""

    def __init__(
        self,
        dataset: Dataset,
        labels: Any,
        probe: Metric | None,
        run: Mapping[str, Any],
        done: Mapping[tuple[str, str, str], Score],
    ) -> None:
        self.stored = None if probe is None else done.get((BASELINE_MODEL, BASELINE_LAYER, probe.name))
        self._score: Score | None = None
        self._error: BaseException | None = None
        self._thread: threading.Thread | None = None
        if probe is not None and self.stored is None:
            self._thread = threading.Thread(
                target=self._compute, args=(dataset, labels, probe, run), name="zooprobe-baseline", daemon=True
            )
            self._thread.start()

    def _compute(self, dataset: Dataset, labels: Any, probe: Metric, run: Mapping[str, Any]) -> None:
        try:
            self._score = raw_baseline(dataset, labels, probe, run)
        except BaseException as exc:  # noqa: BLE001 - raised again in the caller's thread by summary()
            self._error = exc

    def summary(self, put: Callable[[Score], None], *, wanted: bool = True) -> dict[str, Any] | None:
        """The run's baseline summary (:func:`baseline_summary`) once computed, a new score handed to ``put``
        first; ``None`` when not ``wanted`` (no candidate was scored: nothing to compare) or without a probe."""
        if self._thread is not None:
            self._thread.join()
        if not wanted:
            return None
        if self._error is not None:
            raise self._error
        if self.stored is not None:
            return baseline_summary(self.stored)
        if self._score is None:
            return None
        put(self._score)
        return baseline_summary(self._score)


def baseline_summary(score: Score) -> dict[str, Any] | None:
    """The baseline as the run's summary keeps it, or ``None`` for a score without a value."""
    if score.value is None:
        return None
    return {
        "features": str(score.extra.get("features", "raw features")),
        "metric": score.metric,
        "accuracy": score.value,
        "spread": score.spread or 0.0,
    }
