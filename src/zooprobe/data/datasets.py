"""Labelled datasets read from the user's files into one in-memory description.

Accepted specs (see :func:`read_dataset`): ``sklearn:digits``; an image folder ``root/<class>/<image>``;
a CSV or Parquet manifest with ``path,label`` (paths relative to the manifest's folder) or ``text,label``
columns; a NumPy ``.npz`` with ``x`` images and ``y`` labels; a Hugging Face ``datasets`` directory
written by ``save_to_disk``.

Every image is decoded once while reading, so a bad file is reported before any model runs. Images are
uint8 H x W x C arrays with C = 1 (grayscale) or 3 (RGB); alpha is dropped.

The :class:`Dataset` record is defined in :mod:`.dataset`, the format readers in :mod:`.readers`.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import TYPE_CHECKING

from ..errors import InvalidChoiceError, ZooprobeError
from .dataset import Dataset, OnError
from .readers import (
    ACCEPTED_SPECS,
    IMAGE_EXTENSIONS,
    _accepted,
    _Problems,
    _read_csv,
    _read_digits,
    _read_folder,
    _read_hf,
    _read_npz,
    _read_parquet,
)

__all__ = ["ACCEPTED_SPECS", "IMAGE_EXTENSIONS", "Dataset", "OnError", "read_dataset", "stratified_split"]

if TYPE_CHECKING:
    import numpy as np
    import numpy.typing as npt


def read_dataset(spec: str, on_error: OnError = "fail") -> Dataset:
    """Read the labelled dataset that ``spec`` names (see the module docstring for the accepted forms).

    With ``on_error='fail'`` the first bad example (undecodable image, missing file or label, empty class
    folder, class with one example) raises; with ``'skip'`` it is dropped and listed in ``Dataset.skipped``.

    :raises ZooprobeError: for an unknown spec or bad input.
    """
    if on_error not in ("skip", "fail"):
        raise InvalidChoiceError("on_error", str(on_error), ("skip", "fail"))
    problems = _Problems(on_error)
    if spec.startswith("sklearn:"):
        if spec != "sklearn:digits":
            raise ZooprobeError(f"unknown scikit-learn dataset '{spec}': the only one built in is 'sklearn:digits'")
        return _read_digits()
    path = Path(spec).expanduser()
    if not path.exists():
        raise ZooprobeError(f"dataset '{spec}' does not exist: give {_accepted()}")
    if path.is_dir():
        if (path / "dataset_dict.json").is_file() or (path / "state.json").is_file():
            return _read_hf(path, problems)
        return _read_folder(path, problems)
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

    :raises ZooprobeError: when ``val_fraction`` is not strictly between 0 and 1.
    """
    import numpy as np

    if not 0 < val_fraction < 1:
        raise ZooprobeError(f"val_fraction {val_fraction!r} must be between 0 and 1 (exclusive), for example 0.2")
    rng = np.random.default_rng(seed)
    train: list[npt.NDArray[np.int64]] = []
    val: list[npt.NDArray[np.int64]] = []
    for label in range(len(dataset.classes)):
        members = rng.permutation(np.flatnonzero(dataset.labels == label)).astype(np.int64)
        if len(members) < 2:
            train.append(members)
            continue
        n_val = min(max(math.floor(len(members) * val_fraction + 0.5), 1), len(members) - 1)
        val.append(members[:n_val])
        train.append(members[n_val:])

    def join(parts: list[npt.NDArray[np.int64]]) -> npt.NDArray[np.int64]:
        return np.sort(np.concatenate(parts)) if parts else np.empty(0, dtype=np.int64)

    return join(train), join(val)
