"""Which runs a report covers: by id, the latest, or every run on one dataset; and the store they are read from."""

from __future__ import annotations

import builtins
from collections.abc import Sequence
from pathlib import Path

from ..catalog.store import default_home
from ..errors import ZooprobeError
from ..runs.assessment_choice import largest_assessment
from ..runs.store import RUNS_DB_NAME, Run, RunStore
from .model import CandidateRow, EmptyReportError


def select_runs(
    store: RunStore, run_ids: Sequence[str] = (), *, latest: bool = False, data: str | None = None
) -> list[Run]:
    """The runs a report covers, oldest first.

    ``run_ids`` picks runs by id; ``latest`` the most recent run; ``data`` every run on that dataset
    (its spec as given to assess/finetune, its resolved path, or a prefix of at least 6 characters of
    its content hash). Without any of them, the most recent run. A fine-tuning run also brings in the
    assessment it followed (``config.assess_run``), so a report on it can set prediction against result.

    :raises UnknownRunError: for an id that is not in the store.
    :raises EmptyReportError: when the store holds no run, or none on ``data``.
    """
    if sum(bool(x) for x in (run_ids, latest, data)) > 1:
        raise ZooprobeError("choose the runs one way: RUN ids, --latest or --data DATA (not several)")
    everything = store.list()
    if not everything:
        raise EmptyReportError(
            f"no runs to report in {store.path}: run 'zooprobe assess --data DATA' or 'zooprobe finetune' first"
        )
    if run_ids:
        chosen = [store.get(run_id) for run_id in dict.fromkeys(run_ids)]
    elif data:
        chosen = [run for run in everything if _same_data(run, data)]
        if not chosen:
            known = sorted({run.data for run in everything})
            raise EmptyReportError(
                f"no runs on data '{data}' (runs exist on: {', '.join(known)});"
                " pass one of those specs or a data hash prefix"
            )
    else:
        chosen = everything[:1]
    ids = {run.id for run in chosen}
    for run in builtins.list(chosen):
        linked = run.config.get("assess_run") if run.kind == "finetune" else None
        if isinstance(linked, str) and linked not in ids:
            try:
                chosen.append(store.get(linked))
                ids.add(linked)
            except ZooprobeError:
                continue  # the assessment was deleted since; the fine-tuning run still reports alone
    return sorted(chosen, key=lambda run: run.created)


def _same_data(run: Run, data: str) -> bool:
    if run.data == data or (len(data) >= 6 and (run.data_hash or "").startswith(data)):
        return True
    if ":" in data.split("/")[0] and not Path(data).exists():
        return False  # a spec such as sklearn:digits, not a path
    try:
        return Path(run.data).expanduser().resolve() == Path(data).expanduser().resolve()
    except OSError:
        return False


def open_store_readonly(home: Path | str | None) -> RunStore:
    """The run store of ``home`` without creating one where none exists.

    :raises EmptyReportError: when ``home`` holds no run store yet.
    """
    root = Path(home).expanduser() if home is not None else default_home()
    if not (root / RUNS_DB_NAME).exists():
        raise EmptyReportError(
            f"no runs to report: {root / RUNS_DB_NAME} does not exist yet;"
            " run 'zooprobe assess --data DATA' or 'zooprobe finetune' first (or pass --home)"
        )
    return RunStore(root)


def run_data_key(run: Run) -> str:
    """What identifies a run's dataset: its content hash, or its spec where none was stored."""
    return run.data_hash or run.data


def by_data(runs: Sequence[Run]) -> list[list[Run]]:
    """The runs grouped by dataset, in the order each dataset first appears."""
    groups: dict[str, list[Run]] = {}
    for run in runs:
        groups.setdefault(run_data_key(run), []).append(run)
    return list(groups.values())


def deciding_assessment(assessments: Sequence[Run], candidates: Sequence[CandidateRow]) -> Run | None:
    """The assessment whose recommendation a report on one dataset gives: the largest complete one (finished,
    nothing pending), by the number of candidates assessed, then of examples; the newest among equals
    (:func:`~zooprobe.runs.assessment_choice.largest_assessment`, which ``finetune --strategy recommended``
    follows too). Assessments without a recommendation do not decide; None when none has one.
    """
    deciding = [run for run in assessments if run.assess_summary is not None and run.assess_summary.recommended]
    return largest_assessment(deciding, candidates)
