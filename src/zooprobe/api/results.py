"""Runs as typed results for a notebook: DataFrames of their numbers and the report's rich display.

A result holds a run id and the report built from the run store for it, so a result returned by
:func:`assess` or :func:`finetune` and one reopened later with :func:`run` say the same thing.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, ParamSpec, TypeVar

from ..errors import ZooprobeError
from ..evaluator.assess import Assessment
from ..evaluator.assess import assess as _assess
from ..finetuning.finetune import FinetuneResult
from ..finetuning.finetune import finetune as _finetune
from ..reports import EmptyReportError, Report, build_report, open_store_readonly
from ..reports.model import Decision, FinetuneComparison
from ..reports.writers import render_html_fragment, render_markdown
from . import frames

if TYPE_CHECKING:
    import pandas as pd

__all__ = ["AssessRun", "FinetuneRun", "ReportView", "assess", "finetune", "report", "run", "runs"]

Home = str | Path | None


class ReportView:
    """A built report that displays itself in Jupyter as the HTML report does (decision, tables, plots;
    nothing fetched), or as its Markdown where only Markdown renders. ``.report`` is the
    :class:`~zooprobe.reports.Report` record; :meth:`to_html` the HTML fragment."""

    def __init__(self, report: Report, home: Home = None, call_result: Any = None) -> None:
        self.report = report
        self.home = home
        self._call_result = call_result

    def __getattr__(self, name: str) -> Any:
        # the attributes of what the call returned before (a run reopened from the store has none)
        call_result = self.__dict__.get("_call_result")
        if call_result is None or name.startswith("_"):
            raise AttributeError(f"{type(self).__name__!r} object has no attribute {name!r}")
        return getattr(call_result, name)

    def to_html(self) -> str:
        """The HTML report as one ``<div>`` (its style scoped to it), plots as embedded PNG."""
        return render_html_fragment(self.report)

    def to_markdown(self) -> str:
        """The Markdown report (``zooprobe report --format md``)."""
        return render_markdown(self.report)

    def _repr_html_(self) -> str:
        return self.to_html()

    def _repr_markdown_(self) -> str:
        return self.to_markdown()

    def __repr__(self) -> str:
        ids = ", ".join(info.id for info in self.report.runs)
        return f"<zooprobe report on {ids}>"


class AssessRun(ReportView):
    """An assessment run: ``.candidates``, ``.layers`` (DataFrames) and ``.recommendation``.

    Returned by :func:`zooprobe.assess` (then also answering that call's
    :class:`~zooprobe.evaluator.assess.Assessment` attributes ``summary``, ``recommended``, ``resumed``,
    ``results`` and ``outcome``; its candidate documents are ``.assessment.candidates``) and by
    :func:`zooprobe.run`.
    """

    def __init__(self, report: Report, run_id: str, home: Home = None, assessment: Assessment | None = None) -> None:
        super().__init__(report, home, assessment)
        self.run_id = run_id
        self.assessment = assessment

    @property
    def candidates(self) -> pd.DataFrame:
        """One row per candidate (ranked first): checks, probe, each score, consensus, rank, strategy, cut."""
        return frames.candidates_frame(self.report, self.run_id)

    @property
    def layers(self) -> pd.DataFrame:
        """One row per candidate, layer and metric: value, fold spread and the layer's depth."""
        with open_store_readonly(self.home) as store:
            scores = store.scores(self.run_id)
        return frames.layers_frame(self.report, self.run_id, scores)

    @property
    def recommendation(self) -> Decision | None:
        """The decision for this run's data: model, strategy, ``finetune_arg``, expected accuracy and its
        uncertainty, ``evidence`` and ``caveats`` (``None`` while nothing is assessed yet)."""
        data = next(info.data for info in self.report.runs if info.id == self.run_id)
        decision = next((d for d in self.report.decisions if d.data == data), None)
        return decision if decision is not None and decision.model is not None else None

    def __repr__(self) -> str:
        rec = self.recommendation
        said = (
            f"recommends {rec.model} with {rec.finetune_arg or rec.strategy!r}"
            + (f" (expected {rec.expected_accuracy:.3f})" if rec.expected_accuracy is not None else "")
            if rec is not None
            else "no recommendation yet"
        )
        return f"<AssessRun {self.run_id}: {len(self.candidates)} candidate(s), {said}>"


class FinetuneRun(ReportView):
    """A fine-tuning run: ``.epochs`` (DataFrame) and ``.gain_over_scratch``.

    Returned by :func:`zooprobe.finetune` (then also exposing that call's
    :class:`~zooprobe.finetuning.finetune.FinetuneResult` attributes: ``arms``, ``summary``, ``outcome``,
    ``to_dict``)
    and by :func:`zooprobe.run`. Its report brings in the assessment the run followed, if any.
    """

    def __init__(self, report: Report, run_id: str, home: Home = None, result: FinetuneResult | None = None) -> None:
        super().__init__(report, home, result)
        self.run_id = run_id
        self.result = result

    @property
    def comparison(self) -> FinetuneComparison:
        """The report's record of this run: its arms side by side."""
        return next(c for c in self.report.finetunes if c.run_id == self.run_id)

    @property
    def epochs(self) -> pd.DataFrame:
        """One row per arm and epoch: train and validation loss, accuracy, balanced accuracy, seconds, and
        F1 of label 1 (``val_f1``: binary tasks; ``<NA>`` for others)."""
        return frames.epochs_frame(self.comparison)

    @property
    def gain_over_scratch(self) -> float | None:
        """Final validation accuracy of the strategy minus scratch's (``None`` without a scratch arm)."""
        return self.comparison.gain_over_scratch

    def __repr__(self) -> str:
        c = self.comparison
        gain = f", gain over scratch {c.gain_over_scratch:+.3f}" if c.gain_over_scratch is not None else ""
        return f"<FinetuneRun {self.run_id}: {c.model} with {c.strategy!r}, {len(self.epochs)} epoch row(s){gain}>"


def run(run_id: str, *, home: Home = None) -> AssessRun | FinetuneRun:
    """Reopen a stored run as the typed result :func:`assess` or :func:`finetune` returned for it.

    Raises:
        ZooprobeError: an unknown run id (naming recent ones), or no run store in ``home``.
    """
    with open_store_readonly(home) as store:
        built = build_report(store, [run_id])
    kind = next(info.kind for info in built.runs if info.id == run_id)
    if kind == "assess":
        return AssessRun(built, run_id, home)
    if kind == "finetune":
        return FinetuneRun(built, run_id, home)
    raise ZooprobeError(f"run '{run_id}' is a {kind} run; zooprobe.run reopens assess and finetune runs")


def runs(*, kind: str | None = None, home: Home = None) -> pd.DataFrame:
    """The stored runs, most recent first: id, kind, status, data, data hash, created, updated, error.

    ``kind`` (``assess`` or ``finetune``) keeps one kind. An empty store gives an empty frame.
    """
    if kind not in (None, "assess", "finetune"):
        raise ZooprobeError(f"kind {kind!r} is not a run kind; pass 'assess', 'finetune' or None for both")
    try:
        store = open_store_readonly(home)
    except EmptyReportError:  # no run store yet: no runs
        return frames.runs_frame([])
    with store:
        return frames.runs_frame(store.list(kind=kind))  # type: ignore[arg-type]


def report(*run_ids: str, latest: bool = False, data: str | None = None, home: Home = None) -> ReportView:
    """The report ``zooprobe report`` writes, for rich display: runs by id, ``latest``, or every run on
    ``data`` (default: the latest run)."""
    with open_store_readonly(home) as store:
        return ReportView(build_report(store, run_ids, latest=latest, data=data), home)


P = ParamSpec("P")
R = TypeVar("R")
T = TypeVar("T")


def _typed_result(call: Callable[P, R], wrap: Callable[[R, Home], T], returns: type, note: str) -> Callable[P, T]:
    """``call`` returning its typed result (of class ``returns``): the same arguments, documentation and run."""

    signature = inspect.signature(call)

    @functools.wraps(call)
    def typed(*args: P.args, **kwargs: P.kwargs) -> T:
        home = signature.bind_partial(*args, **kwargs).arguments.get("home")
        return wrap(call(*args, **kwargs), home if isinstance(home, str | Path) else None)

    typed.__doc__ = f"{call.__doc__}\n\n    {note}\n"
    typed.__signature__ = signature.replace(return_annotation=returns.__name__)  # type: ignore[attr-defined]
    return typed


def _assess_run(result: Assessment, home: Home) -> AssessRun:
    with open_store_readonly(home) as store:
        return AssessRun(build_report(store, [result.run_id]), result.run_id, home, result)


def _finetune_run(result: FinetuneResult, home: Home) -> FinetuneRun:
    with open_store_readonly(home) as store:
        return FinetuneRun(build_report(store, [result.run_id]), result.run_id, home, result)


assess = _typed_result(
    _assess,
    _assess_run,
    AssessRun,
    "``zooprobe.assess`` returns an :class:`AssessRun`: ``.candidates`` and ``.layers`` DataFrames,"
    " ``.recommendation``, rich display; the Assessment above is its ``.assessment``, whose attributes"
    " (``summary``, ``recommended``, ``results``, ``outcome``) it also answers, but for ``candidates``.",
)
finetune = _typed_result(
    _finetune,
    _finetune_run,
    FinetuneRun,
    "``zooprobe.finetune`` returns a :class:`FinetuneRun`: an ``.epochs`` DataFrame, ``.gain_over_scratch``,"
    " rich display; the FinetuneResult above is its ``.result``, whose attributes (``arms``, ``summary``,"
    " ``outcome``, ``to_dict``) it also answers.",
)
