"""A sentence-pair task built from the ``fortune`` program's files: "are these two fortunes from the same category?"

It is the offline stand-in for GLUE's MRPC (two texts in, one binary label out) that the text quickstart
fine-tunes on. The task is a pure function of (categories, sizes, seed):

- each category's short fortunes (at most :data:`MAX_CHARS` characters, duplicates removed) are shuffled
  and cut into a training pool and a validation pool, so that no fortune appears on both sides;
- each split then gets half ``same`` pairs (two different fortunes of one category, the category drawn
  uniformly) and half ``different`` pairs (one fortune from each of two categories drawn uniformly);
  no pair repeats, in either order.

The manifest is a CSV with ``text_a,text_b,label,split``: a pair manifest with a fixed split, as
:func:`~zooprobe.data.datasets.read_dataset` reads it.
"""

from __future__ import annotations

import csv
import os
import random
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from ..errors import ZooprobeError
from .text_readers import FORTUNES, fortune_items

# topics a reader tells apart from the words alone, each with 150+ short fortunes in Debian's package
DEFAULT_CATEGORIES = ("computers", "food", "love", "politics", "science")
MAX_CHARS = 120
SAME, DIFFERENT = "same", "different"
VALIDATION_SHARE = 0.3  # of each category's fortunes, held out for the validation pairs


@dataclass(frozen=True)
class PairTask:
    """Where the manifest was written, and what it holds."""

    path: Path
    categories: tuple[str, ...]
    train_pairs: int
    validation_pairs: int
    fortunes_used: int


def build_fortune_pairs(
    path: str | Path,
    *,
    categories: Sequence[str] = DEFAULT_CATEGORIES,
    train_pairs: int = 400,
    validation_pairs: int = 200,
    seed: int = 0,
) -> PairTask:
    """Write the balanced "same category?" pair manifest to ``path`` (atomically) and describe it.

    :raises ZooprobeError: when a category is not installed, or has too few short fortunes for the
        number of pairs asked (naming the category and how many it has).
    """
    if train_pairs < 2 or validation_pairs < 2:
        raise ZooprobeError(
            f"a pair task needs at least 2 pairs per split (got {train_pairs} train, {validation_pairs} validation)"
        )
    by_category = short_fortunes(categories)
    rng = random.Random(seed)
    pools: dict[str, dict[str, list[str]]] = {"train": {}, "validation": {}}
    for category in sorted(by_category):
        texts = sorted(by_category[category])
        rng.shuffle(texts)
        cut = max(2, round(len(texts) * VALIDATION_SHARE))
        if len(texts) - cut < 2:
            raise ZooprobeError(
                f"fortune category '{category}' has {len(texts)} fortunes of at most {MAX_CHARS} characters;"
                " a pair task needs at least 4 per category: choose another category"
            )
        pools["validation"][category], pools["train"][category] = texts[:cut], texts[cut:]
    rows: list[tuple[str, str, str, str]] = []
    for split, count in (("train", train_pairs), ("validation", validation_pairs)):
        rows += [(a, b, label, split) for a, b, label in _pairs(pools[split], count, rng, split)]
    target = write_manifest(path, ("text_a", "text_b", "label", "split"), rows)
    used = {text for a, b, _, _ in rows for text in (a, b)}
    return PairTask(target, tuple(sorted(by_category)), train_pairs, validation_pairs, len(used))


def short_fortunes(categories: Sequence[str]) -> dict[str, list[str]]:
    """Each category's distinct fortunes of at most :data:`MAX_CHARS` characters, in file order.

    :raises ZooprobeError: when a category is not installed (from :func:`fortune_items`).
    """
    _, items = fortune_items(FORTUNES + ",".join(categories), lambda source, reason, fix: None)
    by_category: dict[str, list[str]] = {}
    for _, category, text in items:
        if len(text) <= MAX_CHARS and text not in by_category.setdefault(category, []):
            by_category[category].append(text)
    return by_category


def write_manifest(path: str | Path, header: Sequence[str], rows: Sequence[Sequence[str]]) -> Path:
    """Write a CSV manifest atomically (a temporary file, fsync, rename) and return its path."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    temporary = target.with_name(f".{target.name}.partial")
    with temporary.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(header)
        writer.writerows(rows)
        handle.flush()
        os.fsync(handle.fileno())
    temporary.replace(target)
    return target


def _pairs(pool: dict[str, list[str]], count: int, rng: random.Random, split: str) -> list[tuple[str, str, str]]:
    """``count`` distinct pairs from ``pool`` (category -> fortunes): ``count // 2`` ``same``, the rest
    ``different``, interleaved in a shuffled order."""
    categories = sorted(pool)
    same_possible = sum(len(t) * (len(t) - 1) for t in pool.values())
    if count // 2 > same_possible // 4:  # leave room, so that drawing distinct pairs ends quickly
        raise ZooprobeError(
            f"{count} {split} pairs need more fortunes than the categories {', '.join(categories)} hold;"
            " ask for fewer pairs or add categories"
        )
    seen: set[frozenset[str]] = set()
    out: list[tuple[str, str, str]] = []
    for index in range(count):
        label = SAME if index < count // 2 else DIFFERENT
        while True:
            if label == SAME:
                texts = pool[rng.choice(categories)]
                a, b = rng.sample(texts, 2)
            else:
                first, second = rng.sample(categories, 2)
                a, b = rng.choice(pool[first]), rng.choice(pool[second])
            key = frozenset((a, b))
            if key not in seen:
                seen.add(key)
                out.append((a, b, label))
                break
    rng.shuffle(out)
    return out
