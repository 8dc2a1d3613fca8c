"""The raw-feature baseline, computed: the probe on the data themselves, once per assessment.

The metric in the ``probe`` role scores features that need no network: each image resized to
16 x 16 (grayscale, or RGB when any image has colour) and flattened, or for texts a bag of their
most frequent words. Same folds, seed and grouping as the candidates, so the spreads compare;
:mod:`.baseline` reads the result.
"""

from __future__ import annotations

import dataclasses
import re
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


def run_baseline(
    dataset: Dataset,
    labels: Any,
    probe: Metric | None,
    run: Mapping[str, Any],
    done: Mapping[tuple[str, str, str], Score],
    put: Callable[[Score], None],
) -> dict[str, Any] | None:
    """The run's baseline summary (:func:`baseline_summary`): the stored score among ``done`` when there is one
    (a resumed run), else :func:`raw_baseline` scored now and handed to ``put``; ``None`` without a probe."""
    if probe is None:
        return None
    score = done.get((BASELINE_MODEL, BASELINE_LAYER, probe.name))
    if score is None:
        score = raw_baseline(dataset, labels, probe, run)
        put(score)
    return baseline_summary(score)


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
