"""A split column's values: reading each cell and checking the splits a dataset brings.

See :mod:`zooprobe.data.splits` for how given splits are used.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from typing import Any

from ..errors import ZooprobeError

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
