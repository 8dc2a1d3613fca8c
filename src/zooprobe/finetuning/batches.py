"""The data every arm of a run sees: one stratified split, preprocessed once, in mini-batches."""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING

from ..backbones.contract import Backbone
from ..data.datasets import Dataset, stratified_split
from ..errors import ZooprobeError

if TYPE_CHECKING:
    import numpy as np
    import numpy.typing as npt
    import torch

VAL_FRACTION = 0.2
IN_MEMORY_LIMIT_BYTES = 1 << 30


def split_indices(
    dataset: Dataset, seed: int, train_size: float | None = None
) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int64]]:
    """The (train, val) indices every arm of a run uses: the data's own split where they bring one
    (:func:`~zooprobe.data.splits.fixed_split`), else a stratified 80/20 split; then about ``train_size``
    of the training part (a count, or a fraction < 1), each class in proportion."""
    import numpy as np

    from ..data.splits import fixed_split

    given = fixed_split(dataset)
    train_idx, val_idx = given[:2] if given is not None else stratified_split(dataset, VAL_FRACTION, seed)
    if train_size is None:
        return train_idx, val_idx
    if train_size > len(train_idx):
        raise ZooprobeError(
            f"train size {train_size:g} is more than the {len(train_idx):,} training examples of '{dataset.name}'"
            f" ({len(dataset.labels):,} less the validation split); pass at most {len(train_idx)}, or a fraction"
            " such as 0.5"
        )
    fraction = train_size if train_size < 1 else min(1.0, train_size / len(train_idx))
    rng = np.random.default_rng(seed)
    kept = []
    for label in range(len(dataset.classes)):
        members = train_idx[dataset.labels[train_idx] == label]
        if len(members):
            kept.append(rng.permutation(members)[: max(1, round(len(members) * fraction))])
    return np.sort(np.concatenate(kept)).astype(np.int64), val_idx


class Batches:
    """(inputs, labels) mini-batches of one split: shuffled per (seed, epoch) for training."""

    def __init__(self, inputs: torch.Tensor, labels: torch.Tensor, batch_size: int) -> None:
        self.inputs = inputs
        self.labels = labels
        self.batch_size = batch_size

    def __len__(self) -> int:
        return len(self._starts())

    def _starts(self) -> list[int]:
        """Where each batch starts. A last batch of one example joins the one before it: BatchNorm in
        training mode cannot normalise a single example's 1 x 1 feature map."""
        count = len(self.labels)
        starts = list(range(0, count, self.batch_size))
        if len(starts) > 1 and count - starts[-1] == 1:
            starts.pop()
        return starts

    def iterate(self, shuffle_seed: int | None = None) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        import torch

        count = len(self.labels)
        if shuffle_seed is None:
            order = torch.arange(count)
        else:
            order = torch.randperm(count, generator=torch.Generator().manual_seed(shuffle_seed))
        starts = self._starts()
        for start, end in zip(starts, [*starts[1:], count], strict=True):
            chosen = order[start:end]
            yield self.inputs[chosen], self.labels[chosen]


def preprocess_all(backbone: Backbone, dataset: Dataset, indices: npt.NDArray[np.int64]) -> torch.Tensor:
    import torch

    height, width = backbone.resolution
    needed = len(indices) * 3 * height * width * 4
    if needed > IN_MEMORY_LIMIT_BYTES:
        raise ZooprobeError(
            f"{len(indices)} images at {height}x{width} px need {needed / 2**30:.1f} GiB preprocessed in memory, "
            f"over the {IN_MEMORY_LIMIT_BYTES / 2**30:.0f} GiB zooprobe holds: pass a smaller --resolution "
            "or --train-size"
        )
    chunks = [
        backbone.preprocess([dataset.load_image(int(i)) for i in indices[start : start + 256]])
        for start in range(0, len(indices), 256)
    ]
    return torch.cat(chunks)
