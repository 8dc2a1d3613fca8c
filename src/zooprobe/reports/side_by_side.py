"""Per-epoch tables of several arms printed side by side, as the fine-tuning literature shows them.

One block per arm (``Epoch | Training Loss | Validation Loss | Accuracy | F1``), blocks next to each
other and aligned by epoch, so that the scratch baseline reads beside the fine-tuned model. F1 is shown
when the records carry it (binary tasks); a reference block (numbers published elsewhere) can be set
beside the measured ones.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from ..runs.records import EpochRecord

MISSING = "-"


@dataclass(frozen=True)
class Row:
    """One epoch's numbers as a table shows them (None: not measured)."""

    epoch: int
    train_loss: float | None
    val_loss: float | None
    accuracy: float | None
    f1: float | None = None


def rows_of(records: Sequence[EpochRecord], first: int = 1) -> list[Row]:
    """The epochs of one arm from ``first`` on (by default the trained ones: an ``as-is`` evaluation,
    epoch 0, is left out)."""
    return [Row(r.epoch, r.train_loss, r.val_loss, r.val_accuracy, r.val_f1) for r in records if r.epoch >= first]


def side_by_side(blocks: Mapping[str, Sequence[Row]]) -> str:
    """The blocks (title -> rows) next to each other, one line per epoch, F1 columns only where measured."""
    with_f1 = any(row.f1 is not None for rows in blocks.values() for row in rows)
    columns = ["Epoch", "Train loss", "Val loss", "Accuracy", *(["F1"] if with_f1 else [])]
    widths = [max(len(c), 6) for c in columns]
    block_width = sum(widths) + 2 * (len(widths) - 1)
    gap = "   |   "
    epochs = sorted({row.epoch for rows in blocks.values() for row in rows})
    titles = gap.join(title[:block_width].ljust(block_width) for title in blocks)
    header = gap.join("  ".join(c.rjust(w) for c, w in zip(columns, widths, strict=True)) for _ in blocks)
    lines = [titles.rstrip(), header]
    for epoch in epochs:
        cells = []
        for rows in blocks.values():
            row = next((r for r in rows if r.epoch == epoch), None)
            if row is None:  # this arm stopped earlier (or ran fewer epochs): a blank block
                cells.append(" " * block_width)
                continue
            values = [str(epoch), *(_number(v) for v in (row.train_loss, row.val_loss, row.accuracy))]
            if with_f1:
                values.append(_number(row.f1))
            cells.append("  ".join(v.rjust(w) for v, w in zip(values, widths, strict=True)))
        lines.append(gap.join(cells).rstrip())
    return "\n".join(lines)


def _number(value: float | None) -> str:
    return MISSING if value is None else f"{value:.4f}"
