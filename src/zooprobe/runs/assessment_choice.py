"""Which of several assessments of one dataset counts: the largest complete one.

Reports (whose recommendation a report gives) and fine-tuning (``--strategy recommended``) both choose
with :func:`largest_assessment`, so that the strategy fine-tuning follows is the one the report names.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

from .records import CandidateResult
from .store import Run

# (complete, candidates assessed, examples, created): larger is preferred, in that order
AssessmentSize = tuple[bool, int, int, float]


class AssessedCandidate(Protocol):
    """What the choice reads of one candidate row: its run, its status and the examples it was assessed on."""

    @property
    def run_id(self) -> str: ...

    @property
    def status(self) -> str: ...

    @property
    def target_examples(self) -> int | None: ...


@dataclass(frozen=True)
class CandidateSize:
    """An :class:`AssessedCandidate` read off a stored :class:`CandidateResult`."""

    run_id: str
    status: str
    target_examples: int | None

    @classmethod
    def of(cls, run_id: str, result: CandidateResult) -> CandidateSize:
        return cls(run_id, result.status, result.data_ratio.target_examples)


def assessment_size(run: Run, candidates: Sequence[AssessedCandidate]) -> AssessmentSize:
    """How ``run`` ranks among assessments of the same data: complete (finished, nothing pending) first,
    then by the number of candidates assessed, then by examples, then the newest."""
    summary = run.assess_summary
    rows = [row for row in candidates if row.run_id == run.id]
    complete = run.status == "done" and summary is not None and not summary.pending
    assessed = sum(row.status == "done" for row in rows)
    examples = max((row.target_examples or 0 for row in rows), default=0)
    return complete, assessed, examples, run.created


def largest_assessment(assessments: Sequence[Run], candidates: Sequence[AssessedCandidate]) -> Run | None:
    """The largest complete of ``assessments`` (see :func:`assessment_size`); None when there is none.

    A smaller re-run (a candidate skipped, a subset of the data) does not replace a larger assessment
    because it is newer.
    """
    return max(assessments, key=lambda run: assessment_size(run, candidates), default=None)
