"""The notebook user's API: the catalog, runs and reports as pandas DataFrames and rich displays.

``zooprobe.search``, ``show``, ``assess``, ``finetune``, ``run``, ``runs`` and ``report`` are these
functions. pandas (in the ``torch`` extra) is imported only when a DataFrame is made.
"""

from __future__ import annotations

from .catalog import entries_frame, search, show
from .results import AssessRun, FinetuneRun, ReportView, assess, finetune, report, run, runs

__all__ = [
    "AssessRun",
    "FinetuneRun",
    "ReportView",
    "assess",
    "entries_frame",
    "finetune",
    "report",
    "run",
    "runs",
    "search",
    "show",
]
