"""The catalog: the entry schema, the SQLite store and its queries."""

from __future__ import annotations

from .schema import Compute, Entry, InputSpec, PretrainStage, ReportedMetric, split_id
from .store import Catalog, Query, default_home

__all__ = [
    "Catalog",
    "Compute",
    "Entry",
    "InputSpec",
    "PretrainStage",
    "Query",
    "ReportedMetric",
    "default_home",
    "split_id",
]
