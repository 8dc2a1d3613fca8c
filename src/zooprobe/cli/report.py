"""``zooprobe report``: rebuild a report from the run store in Markdown, HTML, CSV or JSON."""

from __future__ import annotations

from pathlib import Path

import click

from ..catalog.store import default_home
from ..runs.store import Run, RunStore
from ._common import home_option


def _has_results(store: RunStore, run: Run) -> bool:
    if run.status == "done":
        return True
    if run.kind == "assess":
        return any(result.status == "done" for result in store.candidates(run.id))
    return bool(store.epochs(run.id))


def _latest_with_results(store: RunStore) -> tuple[str, ...]:
    """The most recent run with a result (an assessed candidate, an epoch), saying which newer ones have none.

    An empty tuple when the store has no run (the report then says so); the latest run when none has a result.
    """
    runs = store.list()
    without: list[Run] = []
    for run in runs:
        if _has_results(store, run):
            if without:
                names = ", ".join(f"{r.id} ({r.status})" for r in without)
                stopped = [r for r in without if r.status == "running"]
                resume = f"; continue with: zooprobe {stopped[0].kind} --resume {stopped[0].id}" if stopped else ""
                click.echo(
                    f"note: reporting {run.id}, the latest run with results; newer runs have none yet: {names}{resume}",
                    err=True,
                )
            return (run.id,)
        without.append(run)
    return (runs[0].id,) if runs else ()


@click.command(name="report")
@click.argument("run_ids", metavar="[RUN]...", nargs=-1)
@click.option("--latest", is_flag=True, help="Report the most recent run (the default without RUN or --data).")
@click.option("--data", metavar="DATA", help="Report every run on this dataset (its spec, path or hash prefix).")
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["md", "html", "csv", "json"]),
    default="md",
    show_default=True,
    help="Markdown, one self-contained HTML file, CSV or JSON.",
)
@click.option(
    "--out",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Write the report to this file [html default: $ZOOPROBE_HOME/reports/<run>.html].",
)
@home_option
def report_cmd(
    run_ids: tuple[str, ...], latest: bool, data: str | None, fmt: str, out: Path | None, home: Path | None
) -> None:
    """Report assessment and fine-tuning runs: candidates, fine-tuning curves, layer profiles, decision.

    The report is rebuilt from the run store each time and never changes a run. md, csv and json
    print to stdout unless --out is given; html is written to --out, or to
    $ZOOPROBE_HOME/reports/<run>.html, and the path is printed. A fine-tuning run brings in the
    assessment it followed. A run still running is reported as in progress.

    \b
    Examples:
      zooprobe report --latest
      zooprobe report --data sklearn:digits --format html --out digits.html
      zooprobe report assess-20250101-120000-abc123 finetune-20250101-121500-def456 --format json
    """
    from ..reports import build_report, open_store_readonly, render, write_atomic

    with open_store_readonly(home) as store:
        if not run_ids and not data:  # --latest, which is also the default (with RUN or --data it is refused)
            run_ids, latest = _latest_with_results(store), False
        report = build_report(store, run_ids, latest=latest, data=data)
    text = render(report, fmt)
    if out is None and fmt == "html":
        out = (home or default_home()) / "reports" / f"{report.name}.html"
    if out is None:
        click.echo(text, nl=False)
        return
    write_atomic(out, text)
    click.echo(f"report written to {out}")
