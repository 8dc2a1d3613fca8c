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
from collections.abc import Sequence
from dataclasses import replace
from typing import TYPE_CHECKING, Any

from ..errors import ZooprobeError
from . import hygiene

if TYPE_CHECKING:
    import numpy as np
    import numpy.typing as npt

    from .datasets import Dataset

SPLITS = ("train", "validation", "test")
SPLIT_COLUMN = "split"


class SplitError(ZooprobeError):
    """A split column or a dataset's splits that cannot be used as given."""


def split_name(value: Any, where: str) -> str:
    """A split cell as one of :data:`SPLITS` (case and surrounding spaces ignored).

    :raises SplitError: for an empty cell or any other value, naming ``where`` (file and line).
    """
    text = "" if value is None else str(value).strip().lower()
    if text in SPLITS:
        return text
    shown = repr(str(value).strip()) if text else "an empty cell"
    raise SplitError(
        f"'{where}': split is {shown}; a split column takes only {', '.join(SPLITS)}: "
        "fix that cell (or drop the split column to let zooprobe split the data)"
    )


def check_splits(name: str, splits: Sequence[str], labels: Sequence[str]) -> None:
    """Every split is a known one, training examples exist, and every class held out also appears in training.

    :raises SplitError: naming the dataset, the split and the classes, with the fix.
    """
    unknown = sorted(set(splits) - set(SPLITS))
    if unknown:
        raise SplitError(
            f"dataset '{name}' has splits {', '.join(repr(s) for s in unknown)}: only {', '.join(SPLITS)} are used;"
            " save the others apart (or drop them) and read the dataset again"
        )
    counts = Counter(splits)
    if not counts["train"]:
        raise SplitError(
            f"dataset '{name}' has splits {', '.join(sorted(counts))} but no 'train' examples: "
            "mark the examples to train on with split 'train'"
        )
    trained = {label for label, split in zip(labels, splits, strict=True) if split == "train"}
    for split in SPLITS[1:]:
        missing = sorted({label for label, s in zip(labels, splits, strict=True) if s == split} - trained)
        if missing:
            shown = ", ".join(repr(label) for label in missing[:5])
            raise SplitError(
                f"dataset '{name}': class(es) {shown} appear in the '{split}' split but not in 'train', so no model"
                " can learn them; add training examples of them or remove them from that split"
            )


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
    """The ``train`` examples of a dataset with given splits (what assessment scores); others unchanged."""
    import numpy as np

    if dataset.splits is None:
        return dataset
    train = np.flatnonzero(np.asarray(dataset.splits) == "train").astype(np.int64)
    return subset(dataset, train, f"{dataset.name} (train split)")
