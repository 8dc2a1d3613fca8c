"""The data every arm of a run sees: one stratified split, in mini-batches.

Two kinds of batches, both shuffled per (seed, epoch) in the same way:

- :class:`Batches`: tensors already in memory, the cached frozen features a head trains on;
- :class:`StreamedBatches`: examples loaded from the dataset a batch at a time (images decoded, texts or
  text pairs read) and turned into a batch by ``backbone.preprocess``, in DataLoader worker processes
  where the data are files. Memory follows the batch, not the dataset, and a text batch pads only to its
  own longest example (dynamic padding).
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING, Any

from ..allocator import bound_worker_heap
from ..backbones.contract import Backbone
from ..backbones.resize import resized_size
from ..data.datasets import Dataset, stratified_split
from ..errors import ZooprobeError

if TYPE_CHECKING:
    import numpy as np
    import numpy.typing as npt
    import torch

VAL_FRACTION = 0.2


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


def batch_starts(count: int, batch_size: int) -> list[int]:
    """Where each batch starts. A last batch of one example joins the one before it: BatchNorm in
    training mode cannot normalise a single example's 1 x 1 feature map."""
    starts = list(range(0, count, batch_size))
    if len(starts) > 1 and count - starts[-1] == 1:
        starts.pop()
    return starts


def batch_orders(count: int, batch_size: int, shuffle_seed: int | None) -> list[torch.Tensor]:
    """The positions (into the split) of each batch: in order, or shuffled by ``shuffle_seed`` alone, so
    that an epoch's batches are a pure function of (seed, epoch) and a resumed run sees the same ones."""
    import torch

    if shuffle_seed is None:
        order = torch.arange(count)
    else:
        order = torch.randperm(count, generator=torch.Generator().manual_seed(shuffle_seed))
    starts = batch_starts(count, batch_size)
    return [order[start:end] for start, end in zip(starts, [*starts[1:], count], strict=True)]


class Batches:
    """(inputs, labels) mini-batches of tensors in memory: shuffled per (seed, epoch) for training."""

    def __init__(self, inputs: torch.Tensor, labels: torch.Tensor, batch_size: int) -> None:
        self.inputs = inputs
        self.labels = labels
        self.batch_size = batch_size

    def __len__(self) -> int:
        return len(batch_starts(len(self.labels), self.batch_size))

    def iterate(self, shuffle_seed: int | None = None) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        for chosen in batch_orders(len(self.labels), self.batch_size, shuffle_seed):
            yield self.inputs[chosen], self.labels[chosen]


def load_examples(backbone: Backbone, dataset: Dataset, indices: Sequence[int] | npt.NDArray[np.int64]) -> list[Any]:
    """The raw examples at ``indices``, as ``backbone.preprocess`` takes them: texts, (text_a, text_b)
    pairs, or uint8 images (files decoded only as large as the backbone's resizing needs)."""
    rows = [int(i) for i in indices]
    if dataset.texts is not None:
        if dataset.texts_b is not None:
            return [(dataset.texts[i], dataset.texts_b[i]) for i in rows]
        return [dataset.texts[i] for i in rows]
    if backbone.resize_rule is None or dataset.paths is None:
        return [dataset.load_image(i) for i in rows]
    spec = backbone.entry.input
    images = []
    for i in rows:
        height, width = dataset.shapes[i][:2]
        min_size = resized_size(height, width, backbone.resolution, spec.crop_pct, spec.crop_mode)
        images.append(dataset.load_image(i, min_size))
    return images


def load_batch(backbone: Backbone, dataset: Dataset, indices: npt.NDArray[np.int64]) -> torch.Tensor:
    """One preprocessed batch of the examples at ``indices``."""
    return backbone.preprocess(load_examples(backbone, dataset, indices))


class _ExampleBatches:
    """Map-style dataset whose items are whole batches: the key is the batch's dataset indices.
    Module-level, so that DataLoader workers can receive it."""

    def __init__(self, backbone: Backbone, dataset: Dataset) -> None:
        self.backbone = backbone
        self.dataset = dataset

    def __getitem__(self, indices: npt.NDArray[np.int64]) -> torch.Tensor:
        return load_batch(self.backbone, self.dataset, indices)


class _EpochSampler:
    """The batches of the current epoch, set before each pass: the DataLoader (and its persistent
    workers) stay, only the order changes."""

    def __init__(self) -> None:
        self.batches: list[npt.NDArray[np.int64]] = []

    def __iter__(self) -> Iterator[npt.NDArray[np.int64]]:
        return iter(self.batches)

    def __len__(self) -> int:
        return len(self.batches)


def _as_is(batch: Any) -> Any:
    return batch


def loader_workers(dataset: Dataset) -> int:
    """Worker processes for a streamed split: none for texts and images held in memory (the main process
    prepares them faster than it could hand them over), else up to two decoding image files, as feature
    extraction uses; ``ZOOPROBE_LOADER_WORKERS`` overrides it."""
    given = os.environ.get("ZOOPROBE_LOADER_WORKERS", "").strip()
    if given:
        try:
            return max(0, int(given))
        except ValueError:
            raise ZooprobeError(
                f"ZOOPROBE_LOADER_WORKERS={given!r} is not a number of processes: set it to 0, 1, 2, ..."
            ) from None
    return 0 if dataset.paths is None else min(2, os.cpu_count() or 1)


class StreamedBatches:
    """(inputs, labels) mini-batches of one split, loaded and preprocessed a batch at a time.

    The order is :func:`batch_orders`' (the same as :class:`Batches`'), so it is identical whatever the
    number of workers; workers are forked once per split and kept across epochs.
    """

    def __init__(
        self,
        backbone: Backbone,
        dataset: Dataset,
        indices: npt.NDArray[np.int64],
        labels: torch.Tensor,
        batch_size: int,
        device: torch.device,
        num_workers: int | None = None,
    ) -> None:
        import torch.utils.data

        self.indices = indices
        self.labels = labels
        self.batch_size = batch_size
        self.device = device
        self._sampler = _EpochSampler()
        workers = loader_workers(dataset) if num_workers is None else num_workers
        workers = min(workers, len(self))
        self._loader: torch.utils.data.DataLoader[torch.Tensor] = torch.utils.data.DataLoader(
            _ExampleBatches(backbone, dataset),  # type: ignore[arg-type]  # keyed by index arrays, not ints
            batch_size=None,
            sampler=self._sampler,
            collate_fn=_as_is,
            worker_init_fn=bound_worker_heap,
            num_workers=workers,
            persistent_workers=workers > 0,
            prefetch_factor=2 if workers > 0 else None,
            pin_memory=device.type == "cuda",
        )

    def __len__(self) -> int:
        return len(batch_starts(len(self.labels), self.batch_size))

    def iterate(self, shuffle_seed: int | None = None) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        orders = batch_orders(len(self.labels), self.batch_size, shuffle_seed)
        self._sampler.batches = [self.indices[order.numpy()] for order in orders]
        for inputs, order in zip(self._loader, orders, strict=True):
            yield inputs.to(self.device, non_blocking=True), self.labels[order].to(self.device)
