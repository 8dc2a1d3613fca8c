"""Duplicate examples: found by content hash when a dataset is read, and kept on one side of every split.

A copy of an example in both the training and the held-out part lets a probe (or kNN, or a fine-tuned
model) look it up instead of generalising: on a dataset at chance, 20 copies of each row raised the
probe from 0.50 to 0.94 and LogME from -0.91 to 9.9. So :func:`~zooprobe.data.datasets.read_dataset`
refuses exact duplicates (the same file bytes, image array or text) and contents given two labels, or
drops them (``on_duplicates``), and every split (the validation split, the probe's and kNN's folds)
keeps all copies of one content together, for datasets built another way (in Python, built in).
"""

from __future__ import annotations

import hashlib
import weakref
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, Protocol, TypeVar

from ..errors import InvalidChoiceError, ZooprobeError

if TYPE_CHECKING:
    import numpy as np
    import numpy.typing as npt


class Examples(Protocol):
    """What the content keys are read from: a :class:`~zooprobe.data.datasets.Dataset`'s example columns."""

    @property
    def texts(self) -> Sequence[str] | None: ...
    @property
    def texts_b(self) -> Sequence[str] | None: ...
    @property
    def arrays(self) -> Any: ...
    @property
    def paths(self) -> Sequence[str] | None: ...


E = TypeVar("E", bound=Examples)
OnDuplicates = Literal["drop", "keep-first", "error"]
ON_DUPLICATES: tuple[str, ...] = ("drop", "keep-first", "error")
_SHOWN = 3  # examples named in an error message
_CHUNK = 1 << 20
# per-example content keys of each dataset seen, computed once (reading every file again is slow)
_KEYS: weakref.WeakKeyDictionary[Examples, tuple[str, ...]] = weakref.WeakKeyDictionary()


class DuplicateExamplesError(ZooprobeError):
    """A dataset holds the same content more than once, or one content under two labels."""


def check_policy(on_duplicates: str) -> OnDuplicates:
    """:raises InvalidChoiceError: unless ``on_duplicates`` is ``drop``, ``keep-first`` or ``error``."""
    if on_duplicates not in ON_DUPLICATES:
        raise InvalidChoiceError("on_duplicates", str(on_duplicates), ON_DUPLICATES)
    return on_duplicates  # type: ignore[return-value]  # checked just above


def file_chunks(path: str | Path) -> Iterator[bytes]:
    """A file's size (8 bytes, little-endian), then its bytes in chunks.

    :raises ZooprobeError: when the file cannot be read.
    """
    try:
        with open(path, "rb") as handle:
            yield Path(path).stat().st_size.to_bytes(8, "little")
            while chunk := handle.read(_CHUNK):
                yield chunk
    except OSError as exc:
        raise ZooprobeError(
            f"cannot read '{path}' ({exc.strerror or exc}): restore the file or read the dataset again"
        ) from exc


def file_key(path: str | Path) -> str:
    """sha256 of a file's size and bytes.

    :raises ZooprobeError: when the file cannot be read.
    """
    digest = hashlib.sha256()
    for chunk in file_chunks(path):
        digest.update(chunk)
    return digest.hexdigest()


def array_key(array: npt.NDArray[np.uint8]) -> str:
    """sha256 of an image array's shape and pixels."""
    import numpy as np

    digest = hashlib.sha256(repr(tuple(array.shape)).encode())
    digest.update(np.ascontiguousarray(array).tobytes())
    return digest.hexdigest()


def text_key(text: str) -> str:
    """sha256 of a text's UTF-8 bytes (exact: case and spacing count)."""
    return hashlib.sha256(b"text\0" + text.encode("utf-8")).hexdigest()


def pair_key(text_a: str, text_b: str) -> str:
    """sha256 of a sentence pair, in order: (a, b) and (b, a) are different examples."""
    digest = hashlib.sha256(b"pair\0")
    for text in (text_a, text_b):
        data = text.encode("utf-8")
        digest.update(len(data).to_bytes(8, "little"))
        digest.update(data)
    return digest.hexdigest()


def resolve_duplicates(
    name: str, keys: Sequence[str], labels: Sequence[str], sources: Sequence[str], on_duplicates: OnDuplicates
) -> tuple[list[int], list[tuple[str, str]]]:
    """Indices of the examples to keep, and (source, reason) for each one dropped.

    ``error`` raises when any content repeats; ``keep-first`` keeps the first example of each content
    (with its label); ``drop`` keeps one copy of a content repeated under one label and drops every
    example of a content given two or more labels (which one is right is unknown).

    :raises DuplicateExamplesError: with ``error``, giving the counts and the first examples.
    """
    first: dict[str, int] = {}
    label_sets: dict[str, set[str]] = {}
    for i, (key, label) in enumerate(zip(keys, labels, strict=True)):
        first.setdefault(key, i)
        label_sets.setdefault(key, set()).add(label)
    if len(first) == len(keys):
        return list(range(len(keys))), []
    conflicting = {key for key, seen in label_sets.items() if len(seen) > 1}
    if on_duplicates == "error":
        raise DuplicateExamplesError(_message(name, keys, labels, sources, first, conflicting))
    kept: list[int] = []
    dropped: list[tuple[str, str]] = []
    for i, key in enumerate(keys):
        origin = first[key]
        if key in conflicting and on_duplicates == "drop":
            dropped.append((sources[i], f"same content as '{sources[origin]}' under another label"))
        elif i != origin:
            dropped.append((sources[i], f"duplicate of '{sources[origin]}'"))
        else:
            kept.append(i)
    return kept, dropped


def _message(
    name: str,
    keys: Sequence[str],
    labels: Sequence[str],
    sources: Sequence[str],
    first: dict[str, int],
    conflicting: set[str],
) -> str:
    members: dict[str, list[int]] = {}
    for i, key in enumerate(keys):
        members.setdefault(key, []).append(i)
    repeated = [key for key, at in members.items() if len(at) > 1 and key not in conflicting]
    parts = []
    if repeated:
        shown = []
        for key in repeated[:_SHOWN]:
            names = list(dict.fromkeys(sources[i] for i in members[key]))
            copies = f"'{names[0]}' listed {len(members[key])} times" if len(names) == 1 else ""
            shown.append(copies or " = ".join(f"'{name}'" for name in names[:_SHOWN]))
        count = sum(len(members[key]) - 1 for key in repeated)
        parts.append(f"{count} duplicate example(s) ({'; '.join(shown)})")
    if conflicting:
        examples = []
        for key in [k for k in first if k in conflicting][:_SHOWN]:
            given = ", ".join(sorted({repr(labels[i]) for i in members[key]}))
            examples.append(f"'{sources[members[key][0]]}' labelled {given}")
        parts.append(f"{len(conflicting)} content(s) under two or more labels ({'; '.join(examples)})")
    return (
        f"dataset '{name}' has {' and '.join(parts)}: copies would sit on both sides of the validation split"
        " and the folds; remove them, or pass --on-duplicates drop (one copy kept, contents with conflicting"
        " labels dropped) or keep-first (on_duplicates= from Python)"
    )


def example_key(
    path: str | None, array: npt.NDArray[np.uint8] | None, text: str | None, text_b: str | None = None
) -> str:
    """Content key of one example: its sentence pair or text, else its image array, else its file's bytes."""
    if text is not None:
        return text_key(text) if text_b is None else pair_key(text, text_b)
    if array is not None:
        return array_key(array)
    return file_key(path or "")


def remember_keys(dataset: E, keys: Sequence[str]) -> E:
    """Record ``dataset``'s per-example content keys, computed while it was read; returns ``dataset``."""
    _KEYS[dataset] = tuple(keys)
    return dataset


def example_keys(dataset: Examples) -> tuple[str, ...]:
    """Content key of each example (file bytes, image array or text), computed once per dataset."""
    known = _KEYS.get(dataset)
    if known is not None:
        return known
    if dataset.texts is not None and dataset.texts_b is not None:
        keys = tuple(pair_key(a, b) for a, b in zip(dataset.texts, dataset.texts_b, strict=True))
    elif dataset.texts is not None:
        keys = tuple(text_key(text) for text in dataset.texts)
    elif dataset.arrays is not None:
        keys = tuple(array_key(array) for array in dataset.arrays)
    else:
        assert dataset.paths is not None
        keys = tuple(file_key(path) for path in dataset.paths)
    _KEYS[dataset] = keys
    return keys


def content_groups(dataset: Examples) -> npt.NDArray[np.int64] | None:
    """For each example, the index of the first example with the same content; None when all differ.

    Splits give every example the side of its group's first example, so no content is on both sides.
    """
    import numpy as np

    first: dict[str, int] = {}
    groups = np.array([first.setdefault(key, i) for i, key in enumerate(example_keys(dataset))], dtype=np.int64)
    return None if len(first) == len(groups) else groups
