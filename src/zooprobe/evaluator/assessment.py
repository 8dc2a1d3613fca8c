"""The outcome of an assessment, as :func:`zooprobe.evaluator.assess.assess` returns it."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ..runs.records import AssessSummary, CandidateResult


@dataclass
class Assessment:
    """The outcome of :func:`assess`: the run id, one document per candidate (ranked first) and the summary."""

    run_id: str
    candidates: list[dict[str, Any]]
    summary: dict[str, Any]
    resumed: bool = False

    @property
    def recommended(self) -> dict[str, Any] | None:
        rec = self.summary.get("recommended")
        return rec if isinstance(rec, dict) else None

    @property
    def results(self) -> list[CandidateResult]:
        """The candidates as typed records, in the same order."""
        return [CandidateResult.from_json(doc) for doc in self.candidates]

    @property
    def outcome(self) -> AssessSummary:
        """The summary as a typed record."""
        return AssessSummary.from_json(self.summary)
