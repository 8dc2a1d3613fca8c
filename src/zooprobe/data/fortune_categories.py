"""A category task built from the ``fortune`` program's files: "which category is this fortune from?"

It is the text quickstart's default task: one fortune in, its category out (computers, food, love,
politics, science: majority share 0.2). It separates within a quickstart's budget where the pair task
of :mod:`zooprobe.data.fortune_pairs` does not. The task is a pure function of (categories, sizes, seed):

- each category's short fortunes (at most :data:`~zooprobe.data.fortune_pairs.MAX_CHARS` characters,
  duplicates removed) are sorted, shuffled with the seed, and the first ones go to validation, the next
  ones to training, the same number from every category (a stratified split; a remainder goes to the
  first categories in name order);
- no fortune is in both splits.

The manifest is a CSV with ``text,label,split``: a text manifest with a fixed split, as
:func:`~zooprobe.data.datasets.read_dataset` reads it.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from ..errors import ZooprobeError
from .fortune_pairs import DEFAULT_CATEGORIES, MAX_CHARS, short_fortunes, write_manifest


@dataclass(frozen=True)
class CategoryTask:
    """Where the manifest was written, and what it holds."""

    path: Path
    categories: tuple[str, ...]
    train_examples: int
    validation_examples: int


def _shares(total: int, parts: int) -> list[int]:
    """``total`` spread over ``parts`` as evenly as possible, the remainder to the first parts."""
    return [total // parts + (1 if index < total % parts else 0) for index in range(parts)]


def build_fortune_categories(
    path: str | Path,
    *,
    categories: Sequence[str] = DEFAULT_CATEGORIES,
    train_examples: int = 350,
    validation_examples: int = 150,
    seed: int = 0,
) -> CategoryTask:
    """Write the stratified "which category?" manifest to ``path`` (atomically) and describe it.

    :raises ZooprobeError: when a category is not installed, a split would get no fortune of some
        category, or a category has too few short fortunes for the sizes asked (naming it and its count).
    """
    by_category = short_fortunes(categories)
    names = sorted(by_category)
    if train_examples < len(names) or validation_examples < len(names):
        raise ZooprobeError(
            f"{train_examples} training and {validation_examples} validation fortunes cannot hold every one of"
            f" {len(names)} categories in each split; ask for at least {len(names)} of each"
        )
    rng = random.Random(seed)
    splits: dict[str, list[tuple[str, str, str]]] = {"train": [], "validation": []}
    counts = zip(names, _shares(train_examples, len(names)), _shares(validation_examples, len(names)), strict=True)
    for category, train, validation in counts:
        texts = sorted(by_category[category])
        if len(texts) < train + validation:
            raise ZooprobeError(
                f"fortune category '{category}' has {len(texts)} fortunes of at most {MAX_CHARS} characters,"
                f" fewer than the {train + validation} asked of it; ask for fewer examples or another category"
            )
        rng.shuffle(texts)
        splits["validation"] += [(text, category, "validation") for text in texts[:validation]]
        splits["train"] += [(text, category, "train") for text in texts[validation : validation + train]]
    rows = []
    for split in ("train", "validation"):
        rng.shuffle(splits[split])  # categories interleaved, as a user's file would hold them
        rows += splits[split]
    target = write_manifest(path, ("text", "label", "split"), rows)
    return CategoryTask(target, tuple(names), train_examples, validation_examples)
