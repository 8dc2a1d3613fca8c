"""``--strategy recommended``: the strategy an assessment of this data recommends for the model.

The assessment followed is the one a report on the data names (the largest complete one, chosen by
:func:`~zooprobe.runs.assessment_choice.largest_assessment`), or the one the user names (``from_run``).
"""

from __future__ import annotations

from dataclasses import dataclass

from ..errors import ZooprobeError
from ..runs.assessment_choice import CandidateSize, assessment_size, largest_assessment
from ..runs.store import Run, RunStore, UnknownRunError

RECOMMENDED = "recommended"
_SEE_IDS = "see run ids with 'zooprobe report --data DATA' (or zooprobe.runs() in Python)"


@dataclass(frozen=True)
class FollowedAssessment:
    """The assessment ``--strategy recommended`` follows and what it recommends for the model."""

    finetune_arg: str
    run_id: str
    assessed: int  # candidates assessed in it
    examples: int  # training examples they were assessed on
    among: int  # assessments of this data that recommend a strategy for the model
    named: bool  # chosen by the user (``from_run``) rather than by size

    def line(self) -> str:
        """One sentence for the output: which assessment, how large, and why that one."""
        size = f"{self.assessed} candidate(s) assessed on {self.examples:,} examples"
        if self.named:
            why = "named with --from-run"
        elif self.among > 1:
            why = f"the largest complete of the {self.among} assessments of this data that recommend for this model"
        else:
            why = "the only assessment of this data that recommends for this model"
        return f"strategy '{self.finetune_arg}' as recommended by assessment {self.run_id} ({size}; {why})"


def check_from_run(store: RunStore, from_run: str | None, strategy: str) -> None:
    """Refuse ``from_run`` with another strategy than ``recommended``, or naming no assessment, before any load.

    :raises ZooprobeError: one line naming the fix.
    """
    if from_run is None:
        return
    if strategy.strip() != RECOMMENDED:
        raise ZooprobeError(
            f"--from-run {from_run} names the assessment that --strategy recommended follows, but the strategy"
            f" is '{strategy}': pass --strategy recommended (or drop --from-run)"
        )
    _assessment(store, from_run)


def _assessment(store: RunStore, run_id: str) -> Run:
    try:
        run = store.get(run_id)
    except UnknownRunError:
        recent = [run.id for run in store.list(kind="assess", limit=5)]
        known = f"recent assessments: {', '.join(recent)}" if recent else "the run store holds no assessment"
        raise ZooprobeError(f"--from-run: unknown run '{run_id}' ({known}); {_SEE_IDS}") from None
    if run.kind != "assess":
        raise ZooprobeError(f"--from-run: run '{run_id}' is a {run.kind} run, not an assessment; {_SEE_IDS}")
    return run


def _recommends(store: RunStore, run: Run, model: str) -> tuple[str | None, list[CandidateSize]]:
    """The strategy ``run`` recommends for ``model`` (None if none) and the sizes of its candidates."""
    results = store.candidates(run.id)
    arg = next(
        (r.recommendation.finetune_arg for r in results if r.model == model and r.recommendation is not None),
        None,
    )
    return arg, [CandidateSize.of(run.id, result) for result in results]


def followed_assessment(store: RunStore, data_hash: str, model: str, from_run: str | None = None) -> FollowedAssessment:
    """The assessment of this data ``--strategy recommended`` follows for ``model``, and its recommendation.

    :raises ZooprobeError: when no assessment of this data recommends a strategy for ``model``, or
        ``from_run`` is unknown, not an assessment, of other data or without a recommendation for ``model``.
    """
    if from_run is not None:
        run = _assessment(store, from_run)
        if run.data_hash != data_hash:
            raise ZooprobeError(
                f"--from-run: assessment '{from_run}' was made on other data ('{run.data}'; the content differs):"
                f" pass that --data, or an assessment of this data ({_SEE_IDS})"
            )
        arg, rows = _recommends(store, run, model)
        if not arg:
            models = sorted({r.model for r in store.candidates(run.id) if r.recommendation is not None})
            offered = f"it recommends for: {', '.join(models)}" if models else "it recommends nothing (unfinished?)"
            raise ZooprobeError(
                f"--from-run: assessment '{from_run}' has no recommendation for '{model}' ({offered});"
                " pass one of those --model ids, or another assessment"
            )
        _, assessed, examples, _ = assessment_size(run, rows)
        return FollowedAssessment(arg, run.id, assessed, examples, 1, named=True)
    offers: dict[str, str] = {}
    sizes: list[CandidateSize] = []
    runs: list[Run] = []
    for run in store.list(kind="assess", data_hash=data_hash):
        arg, rows = _recommends(store, run, model)
        if arg:
            offers[run.id] = arg
            sizes.extend(rows)
            runs.append(run)
    chosen = largest_assessment(runs, sizes)
    if chosen is None:
        raise ZooprobeError(
            f"no finished assessment of this dataset recommends a strategy for '{model}': run "
            f"'zooprobe assess --data DATA --models {model}' first, or pass --strategy head, full or cut:LAYER"
        )
    _, assessed, examples, _ = assessment_size(chosen, sizes)
    return FollowedAssessment(offers[chosen.id], chosen.id, assessed, examples, len(runs), named=False)


def recommended_strategy(store: RunStore, data_hash: str, model: str) -> tuple[str, str]:
    """(finetune_arg, assess run id) of the assessment ``--strategy recommended`` follows for ``model``.

    :raises ZooprobeError: when no assessment of this data recommends a strategy for ``model``.
    """
    followed = followed_assessment(store, data_hash, model)
    return followed.finetune_arg, followed.run_id
