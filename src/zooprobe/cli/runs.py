"""``zooprobe runs check``."""

from __future__ import annotations

import json
import shlex
import sys
from pathlib import Path

import click

from ..catalog.store import default_home
from ..runs.recover import Salvage, check_store
from ..runs.store import RUNS_DB_NAME
from ._common import UserError, format_option, home_option, output_format


@click.group()
def runs() -> None:
    """Look after the run store (assessments and fine-tuning runs)."""


@runs.command(name="check")
@format_option(
    'text, or json: {"path", "intact", "problems", "tables": [{table, readable, unreadable, unparsable, orphaned}],'
    ' "copy"}.'
)
@home_option
def runs_check(fmt: str, as_json: bool, home: Path | None) -> None:
    """Check the run store; when it is damaged, copy what is readable into a fresh store beside it.

    \b
    The store is only read: the copy goes to runs.recovered-<time>.sqlite3, never over
    an existing file, and the output says how to switch to it. Exit code 0 when the
    store is intact, 1 when it is damaged (a copy was made when anything was readable).
    """
    root = home or default_home()
    path = root / RUNS_DB_NAME
    if not path.exists():
        raise UserError(f"no run store at {path}: nothing to check (pass --home for another zooprobe home)")
    salvage = check_store(path)
    if output_format(fmt, as_json) == "json":
        click.echo(json.dumps(_document(salvage), indent=2))
    else:
        _print(salvage)
    if not salvage.intact:
        sys.exit(1)


def _document(salvage: Salvage) -> dict[str, object]:
    return {
        "path": str(salvage.path),
        "intact": salvage.intact,
        "problems": salvage.problems,
        "tables": [vars(tally) for tally in salvage.tables],
        "copy": str(salvage.copy) if salvage.copy else None,
    }


def _print(salvage: Salvage) -> None:
    if salvage.intact:
        counts = ", ".join(f"{t.readable} {t.table}" for t in salvage.tables)
        click.echo(f"{salvage.path}: intact ({counts}); nothing to do")
        return
    if not salvage.readable:
        click.echo(
            f"{salvage.path}: unreadable ({salvage.problems[0]}); nothing can be copied out of it: move it aside"
            f" (mv {shlex.quote(str(salvage.path))} {shlex.quote(str(salvage.path))}.damaged) to start a new store"
        )
        return
    shown = "; ".join(salvage.problems[:3]) + ("; ..." if len(salvage.problems) > 3 else "")
    click.echo(f"{salvage.path}: damaged ({shown})")
    for tally in salvage.tables:
        lost = [
            f"{count} {what}"
            for count, what in (
                (tally.unreadable, "rowids on unreadable pages"),
                (tally.unparsable, "rows that do not parse"),
                (tally.orphaned, "rows of runs whose own record is unreadable"),
            )
            if count
        ]
        click.echo(
            f"  {tally.table:<11} {tally.readable:>6} readable, copied"
            + (f"; left out: {', '.join(lost)}" if lost else "")
        )
    assert salvage.copy is not None
    original, copy = salvage.path, salvage.copy
    aside = original.with_name(f"{original.stem}.damaged-{copy.stem.rsplit('recovered-', 1)[-1]}{original.suffix}")
    click.echo(f"copied what is readable to {copy}; {original} is unchanged")
    moves = [f"mv {shlex.quote(str(original))} {shlex.quote(str(aside))}"]
    for suffix in ("-wal", "-shm"):
        side = original.with_name(original.name + suffix)
        if side.exists():
            moves.append(f"mv {shlex.quote(str(side))} {shlex.quote(str(aside) + suffix)}")
    moves.append(f"mv {shlex.quote(str(copy))} {shlex.quote(str(original))}")
    click.echo("to switch to the copy (with no zooprobe command running): " + " && ".join(moves))
