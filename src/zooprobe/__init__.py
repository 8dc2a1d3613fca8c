"""zooprobe: pick a pretrained backbone, and how much of it to keep, for a small labelled dataset."""

from __future__ import annotations

from .errors import ZooprobeError
from .plugins.hookspecs import hookimpl
from .plugins.source import Source
from .registry.schema import Entry, InputSpec, PretrainStage, ReportedMetric

__version__ = "0.1.0"

__all__ = [
    "Entry",
    "InputSpec",
    "PretrainStage",
    "ReportedMetric",
    "Source",
    "ZooprobeError",
    "__version__",
    "hookimpl",
]
