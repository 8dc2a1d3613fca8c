"""Field helpers every run record shares: reading a document of any release, finite numbers, plain dicts."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import fields
from typing import Any, TypeVar

SCRATCH = "scratch"


# The cut point whose scores are the source head's (NCE, LEEP): per-model facts, not a layer.
LOGITS = "logits"


RecordT = TypeVar("RecordT")


def known_fields(cls: type[Any], doc: Mapping[str, Any]) -> dict[str, Any]:
    """The keys of ``doc`` that are fields of ``cls`` (a missing one gets the field's default)."""
    names = {f.name for f in fields(cls)}
    return {key: value for key, value in doc.items() if key in names}


def finite_number(value: Any) -> float | None:
    """A finite float, or None for anything else (a missing value, a NaN, a bool)."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value) if math.isfinite(value) else None


def plain_fields(record: Any) -> dict[str, Any]:
    return {f.name: getattr(record, f.name) for f in fields(record)}
