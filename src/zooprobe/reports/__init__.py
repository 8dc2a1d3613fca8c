"""Reports built from the run store: a report model and its Markdown, CSV, JSON and HTML writers."""

from __future__ import annotations

from .build import build_report
from .model import EmptyReportError, Report
from .select import open_store_readonly, select_runs
from .writers import WRITERS, render, write_atomic

__all__ = [
    "WRITERS",
    "EmptyReportError",
    "Report",
    "build_report",
    "open_store_readonly",
    "render",
    "select_runs",
    "write_atomic",
]
