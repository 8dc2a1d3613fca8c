"""Labelled datasets read from the user's files into one in-memory description.

Accepted specs (see :func:`read_dataset`): ``sklearn:digits``; an image folder ``root/<class>/<image>``;
a text folder ``root/<class>/<text>.txt`` (one example per file); a CSV or Parquet manifest with
``path,label`` (paths relative to the manifest's folder), ``text,label`` or sentence pairs
``text_a,text_b,label`` (or GLUE's ``sentence1,sentence2``) columns, and optionally a ``split`` column
(:mod:`zooprobe.data.splits`); a NumPy ``.npz`` with ``x`` images and ``y`` labels; a Hugging Face
``datasets`` directory written by ``save_to_disk`` (a ``DatasetDict``'s train/validation/test splits
are kept as given).

Every image is decoded once while reading (at a small size: :mod:`.decode`), so a bad file is reported
before any model runs. Images are uint8 H x W x C arrays with C = 1 (grayscale) or 3 (RGB); alpha is
dropped.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import TYPE_CHECKING

from ..errors import InvalidChoiceError, ZooprobeError
from . import decode, hygiene
from .array_readers import _read_hf, _read_npz
from .dataset import Dataset, OnError
from .hygiene import OnDuplicates
from .readers import (
    ACCEPTED_SPECS,
    IMAGE_EXTENSIONS,
    _accepted,
    _assemble,
    _Example,
    _Problems,
    _read_csv,
    _read_digits,
    _read_folder,
    _read_parquet,
    _read_text_folder,
    _sort_classes,
)
from .text_readers import FORTUNES, fortune_items, is_text_folder

if TYPE_CHECKING:
    import numpy as np
    import numpy.typing as npt


def read_dataset(
    spec: str,
    on_error: OnError = "fail",
    on_duplicates: OnDuplicates = "error",
    *,
    max_pixels: int | None = None,
    paths_outside: bool = False,
) -> Dataset:
    """Read the labelled dataset that ``spec`` names (see the module docstring for the accepted forms).

    With ``on_error='fail'`` bad examples (undecodable image, missing file, missing or NaN label, empty
    class folder, class with one example) raise one error naming them all (the first ten, and the count);
    with ``'skip'`` they are dropped and listed in ``Dataset.skipped``. Examples with the same content
    (file bytes, image array, text) raise with ``on_duplicates='error'``; ``'keep-first'`` keeps the first
    of each, ``'drop'`` keeps one copy and drops contents given two labels (see
    :func:`~zooprobe.data.hygiene.resolve_duplicates`); what is dropped is listed in ``Dataset.skipped``.
    The built-in ``sklearn:digits`` holds no exact duplicates.

    Image files over ``max_pixels`` pixels (default ``$ZOOPROBE_MAX_PIXELS``, else 178,956,970; 0 for no
    limit) are bad examples, refused from their header. Manifest paths must lie inside the manifest's
    folder (relative, without ``..`` or ``~``) unless ``paths_outside`` is true.

    :raises ZooprobeError: for an unknown spec or bad input.
    """
    if on_error not in ("skip", "fail"):
        raise InvalidChoiceError("on_error", str(on_error), ("skip", "fail"))
    problems = _Problems(on_error, hygiene.check_policy(on_duplicates))
    problems.max_pixels = decode.max_pixels(max_pixels)
    problems.paths_outside = paths_outside
    if spec.startswith("sklearn:"):
        if spec != "sklearn:digits":
            raise ZooprobeError(f"unknown scikit-learn dataset '{spec}': the only one built in is 'sklearn:digits'")
        return _read_digits()
    if spec.startswith(FORTUNES):
        name, items = fortune_items(spec, problems.report)
        return _assemble(f"fortunes:{name}", "text", [_Example(*item[:2], text=item[2]) for item in items], problems)
    path = Path(spec).expanduser()
    if not path.exists():
        raise ZooprobeError(f"dataset '{spec}' does not exist: give {_accepted()}")
    if path.is_dir():
        if (path / "dataset_dict.json").is_file() or (path / "state.json").is_file():
            return _read_hf(path, problems)
        return _read_text_folder(path, problems) if is_text_folder(path) else _read_folder(path, problems)
    suffix = path.suffix.lower()
    if suffix == ".csv":
        return _read_csv(path, problems)
    if suffix in (".parquet", ".pq"):
        return _read_parquet(path, problems)
    if suffix == ".npz":
        return _read_npz(path, problems)
    raise ZooprobeError(f"cannot read dataset '{spec}' (unknown file type '{suffix}'): give {_accepted()}")


def stratified_split(
    dataset: Dataset, val_fraction: float = 0.2, seed: int = 0
) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int64]]:
    """Sorted (train, val) indices holding about ``val_fraction`` of each class in val, the same for a seed.

    A class with at least 2 examples has at least one in each part; a class with one example goes to train.
    Examples with the same content stay on one side, the side of the first of them (counted once, in its class).

    :raises ZooprobeError: when ``val_fraction`` is not strictly between 0 and 1.
    """
    import numpy as np

    if not 0 < val_fraction < 1:
        raise ZooprobeError(f"val_fraction {val_fraction!r} must be between 0 and 1 (exclusive), for example 0.2")
    rng = np.random.default_rng(seed)
    groups = hygiene.content_groups(dataset)
    firsts = np.arange(len(dataset)) if groups is None else np.flatnonzero(groups == np.arange(len(groups)))
    train: list[npt.NDArray[np.int64]] = []
    val: list[npt.NDArray[np.int64]] = []
    for label in range(len(dataset.classes)):
        members = rng.permutation(firsts[dataset.labels[firsts] == label]).astype(np.int64)
        if len(members) < 2:
            train.append(members)
            continue
        n_val = min(max(math.floor(len(members) * val_fraction + 0.5), 1), len(members) - 1)
        val.append(members[:n_val])
        train.append(members[n_val:])

    def join(parts: list[npt.NDArray[np.int64]]) -> npt.NDArray[np.int64]:
        chosen = np.sort(np.concatenate(parts)) if parts else np.empty(0, dtype=np.int64)
        return chosen if groups is None else np.flatnonzero(np.isin(groups, chosen)).astype(np.int64)

    return join(train), join(val)


__all__ = [
    "ACCEPTED_SPECS",
    "IMAGE_EXTENSIONS",
    "Dataset",
    "OnError",
    "_sort_classes",
    "read_dataset",
    "stratified_split",
]
