"""Fixed splits: the train/validation/test split a dataset brings with it, used as given.

A manifest's ``split`` column, or a Hugging Face ``DatasetDict``'s own splits, assign each example to
``train``, ``validation`` or ``test``. Benchmarks define their validation set (GLUE's MRPC: 408 pairs),
and results are only comparable on it, so zooprobe never re-splits such data:

- fine-tuning trains on ``train`` and validates on ``validation`` (on ``test`` when the data have
  no ``validation`` part, as many Hugging Face datasets ship only train and test);
- assessment scores the ``train`` part only (cross-validated within it): choosing a backbone on
  the benchmark's held-out examples would make its validation figures optimistic;
- ``test`` rows are never trained on, and used by nothing else when a ``validation`` part exists.

Without a split, :func:`~zooprobe.data.datasets.stratified_split` splits as before.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import replace
from typing import TYPE_CHECKING, Any

from . import hygiene
from .datasets import Dataset
from .split_column import SPLIT_COLUMN, SPLITS, SplitError, check_splits, split_name

if TYPE_CHECKING:
    import numpy as np
    import numpy.typing as npt

__all__ = [
    "SPLITS",
    "SPLIT_COLUMN",
    "SplitError",
    "check_splits",
    "counts",
    "fixed_split",
    "split_name",
    "subset",
    "training_part",
]


def counts(dataset: Dataset) -> dict[str, int] | None:
    """Examples per given split (in :data:`SPLITS` order), or None for a dataset without splits."""
    if dataset.splits is None:
        return None
    seen = Counter(dataset.splits)
    return {split: seen[split] for split in SPLITS if seen[split]}


def fixed_split(dataset: Dataset) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int64], str] | None:
    """(train indices, validation indices, the split validated on) from the dataset's own splits.

    Validation is the ``validation`` part, or the ``test`` part where there is no ``validation``.
    None for a dataset without splits.

    :raises SplitError: when nothing is left to validate on.
    """
    import numpy as np

    if dataset.splits is None:
        return None
    given = np.asarray(dataset.splits)
    held_out = "validation" if (given == "validation").any() else "test"
    train = np.flatnonzero(given == "train").astype(np.int64)
    val = np.flatnonzero(given == held_out).astype(np.int64)
    if not len(val):
        raise SplitError(
            f"dataset '{dataset.name}' has only 'train' examples in its split column: mark the examples to"
            " validate on with split 'validation' (or drop the split column to let zooprobe split the data)"
        )
    return train, val, held_out


def subset(dataset: Dataset, indices: npt.NDArray[np.int64], name: str | None = None) -> Dataset:
    """The examples at ``indices`` (same classes, same label indices) as a dataset of their own."""
    rows = [int(i) for i in indices]

    def pick(items: tuple[Any, ...] | None) -> tuple[Any, ...] | None:
        return None if items is None else tuple(items[i] for i in rows)

    part = replace(
        dataset,
        name=name or dataset.name,
        labels=dataset.labels[indices],
        paths=pick(dataset.paths),
        arrays=pick(dataset.arrays),
        texts=pick(dataset.texts),
        texts_b=pick(dataset.texts_b),
        splits=pick(dataset.splits),
        shapes=tuple(dataset.shapes[i] for i in rows) if dataset.shapes else (),
    )
    keys = hygiene.example_keys(dataset)
    return hygiene.remember_keys(part, [keys[i] for i in rows])


def training_part(dataset: Dataset) -> Dataset:
    """The ``train`` examples of a dataset with given splits (what assessment scores); others unchanged.

    :raises SplitError: when a class has fewer than 2 training examples (assessment cross-validates them).
    """
    import numpy as np

    if dataset.splits is None:
        return dataset
    train = np.flatnonzero(np.asarray(dataset.splits) == "train").astype(np.int64)
    counts = np.bincount(dataset.labels[train], minlength=len(dataset.classes))
    few = [repr(name) for name, count in zip(dataset.classes, counts, strict=True) if count < 2]
    if few:
        raise SplitError(
            f"dataset '{dataset.name}': class(es) {', '.join(few[:5])} have fewer than 2 examples in the 'train'"
            " split, and assess cross-validates within it: mark more of their examples 'train'"
        )
    return subset(dataset, train, f"{dataset.name} (train split)")
