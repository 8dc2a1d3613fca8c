"""The documented output fields of a catalog search, once: ``zooprobe search --fields`` prints them and
:func:`zooprobe.search` returns them as typed DataFrame columns.

Each field has a getter and the pandas dtype of its column: counts are nullable integers (``Int64``),
measured numbers nullable floats, names strings, and ``tasks`` and ``pretraining`` lists (the CLI
joins them into one text cell). No pandas here: the dtypes are names.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from .schema import Entry


@dataclass(frozen=True)
class OutputField:
    """One output field: how to read it from an :class:`Entry` and the dtype of its column."""

    get: Callable[[Entry], Any]
    dtype: str  # a pandas dtype name; "object" holds lists
    text: Callable[[Entry], Any] | None = None  # the CLI's flat form, where it differs from ``get``

    def flat(self, entry: Entry) -> Any:
        """The value as the CLI prints it (lists joined into text)."""
        return (self.text or self.get)(entry)


OUTPUT_FIELDS: dict[str, OutputField] = {
    "id": OutputField(lambda e: e.id, "string"),
    "source": OutputField(lambda e: e.source, "string"),
    "architecture": OutputField(lambda e: e.architecture, "string"),
    "family": OutputField(lambda e: e.family, "string"),
    "tasks": OutputField(lambda e: list(e.tasks), "object", lambda e: " ".join(e.tasks)),
    "modality": OutputField(lambda e: e.modality, "string"),
    "framework": OutputField(lambda e: e.framework, "string"),
    "params": OutputField(lambda e: e.params, "Int64"),
    "params_no_head": OutputField(lambda e: e.params_no_head, "Int64"),
    "compute": OutputField(lambda e: e.compute.value if e.compute else None, "Float64"),
    "compute_unit": OutputField(lambda e: e.compute.unit if e.compute else None, "string"),
    "top1": OutputField(lambda e: e.top1, "Float64"),
    "top5": OutputField(lambda e: e.metric("imagenet-1k", "top5"), "Float64"),
    "resolution": OutputField(lambda e: e.input.default_resolution[0] if e.input.default_resolution else None, "Int64"),
    "feature_dim": OutputField(lambda e: e.feature_dim, "Int64"),
    "num_classes": OutputField(lambda e: e.num_classes, "Int64"),
    "pretraining": OutputField(
        lambda e: [s.dataset for s in e.pretraining], "object", lambda e: ">".join(s.dataset for s in e.pretraining)
    ),
    "pretrain_examples": OutputField(lambda e: e.pretrain_examples, "Int64"),
    "weights_license": OutputField(lambda e: e.weights_license, "string"),
    "file_size_bytes": OutputField(lambda e: e.file_size_bytes, "Int64"),
    "handle": OutputField(lambda e: e.handle, "string"),
}

# The flat getters the CLI prints (``--fields``), in the documented order.
FIELDS: dict[str, Callable[[Entry], Any]] = {name: spec.flat for name, spec in OUTPUT_FIELDS.items()}
DEFAULT_FIELDS = ("id", "params", "compute", "compute_unit", "top1", "resolution", "pretraining")
