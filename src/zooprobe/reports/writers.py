"""Report writers: Markdown, CSV and JSON for machines and pull requests, one self-contained HTML file
for people. Each writer is a function ``Report -> str`` registered in :data:`WRITERS` by format name.
"""

from __future__ import annotations

import base64
import csv
import html
import io
import json
import os
import re
import stat
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from ..errors import InvalidChoiceError, ZooprobeError
from . import plots
from .model import Report
from .tables import (
    Table,
    candidates_table,
    decision_lines,
    finetune_lines,
    finetune_table,
    in_progress_note,
    predictions_table,
    profile_table,
    runs_table,
    skipped_files_table,
    timestamp,
)

Writer = Callable[[Report], str]


# --- Markdown -------------------------------------------------------------------------------------


def _md_text(text: str) -> str:
    """Text from the user's files (paths, class and model names) and what quotes them, safe in Markdown:
    renderers pass raw HTML through, so ``<``, ``>`` and ``&`` become entities (shown as themselves)."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _md_cell(text: str) -> str:
    return _md_text(text).replace("|", "\\|").replace("\n", " ")


def _md_table(table: Table) -> str:
    align = ["---:" if i in table.numeric else "---" for i in range(len(table.headers))]
    lines = ["| " + " | ".join(_md_cell(h) for h in table.headers) + " |", "| " + " | ".join(align) + " |"]
    lines += ["| " + " | ".join(_md_cell(c) for c in row) + " |" for row in table.rows]
    return "\n".join(lines)


def render_markdown(report: Report) -> str:
    """The report as GitHub-flavoured Markdown (tables only; plots are in the HTML report)."""
    out = [f"# zooprobe report: {_md_text(report.name)}", "", f"Generated {timestamp(report.generated)}.", ""]
    note = in_progress_note(report)
    if note:
        out += [f"> **{_md_text(note)}**", ""]
    out += ["## Decision", ""]
    for decision in report.decisions:
        headline, evidence, caveats = decision_lines(decision)
        out += [f"**{_md_text(decision.data)}**: {_md_text(headline)}", ""]
        out += ["Evidence:", "", *(f"- {_md_text(line)}" for line in evidence or ["none recorded"]), ""]
        if caveats:
            out += ["Caveats:", "", *(f"- {_md_text(line)}" for line in caveats), ""]
    if report.candidates:
        with_run = len({row.run_id for row in report.candidates}) > 1
        out += ["## Candidates", "", _md_table(candidates_table(report.candidates, report.metrics, with_run)), ""]
    for comparison in report.finetunes:
        title = f"## Fine-tuning: {_md_text(comparison.model)} ({comparison.run_id})"
        lines = (f"- {_md_text(x)}" for x in finetune_lines(comparison))
        out += [title, "", _md_table(finetune_table(comparison)), "", *lines]
        out.append("")
    if report.predictions:
        out += ["## Predicted vs achieved", "", _md_table(predictions_table(report.predictions)), ""]
    for profile in report.profiles:
        rank = f"#{profile.rank} " if profile.rank else ""
        out += [f"## Layer profile: {rank}{_md_text(profile.model)}", "", _md_table(profile_table(profile)), ""]
    skipped = skipped_files_table(report.runs)
    if skipped is not None:
        out += ["## Skipped files", "", _md_table(skipped), ""]
    out += ["## Runs", "", _md_table(runs_table(report.runs)), ""]
    return "\n".join(out)


# --- JSON -----------------------------------------------------------------------------------------


def render_json(report: Report) -> str:
    """The whole report model as one JSON document (``Report.to_dict()``)."""
    return json.dumps(report.to_dict(), indent=2, allow_nan=False) + "\n"


# --- CSV ------------------------------------------------------------------------------------------

CSV_COLUMNS = (
    "table", "run_id", "run_status", "data", "model", "source", "params", "macs", "macs_unit", "macs_resolution",
    "input_check", "data_ratio", "target_examples", "best_layer", "probe_accuracy", "probe_spread",
)  # fmt: skip
CSV_TAIL = (
    "consensus", "rank", "strategy", "cut", "finetune_arg", "expected_accuracy", "uncertainty", "interval_low",
    "interval_high", "interval_level", "status",
    "layer", "depth", "arm", "epoch", "train_loss", "val_loss", "val_accuracy", "val_balanced_accuracy",
    "seconds", "achieved_accuracy", "gain_over_scratch", "val_f1",
)  # fmt: skip


def render_csv(report: Report) -> str:
    """One CSV with a ``table`` column (candidates, layers, epochs, predictions, skipped_files); each table
    fills its own columns and leaves the others empty, so ``df[df.table == "epochs"].dropna(axis=1, how="all")``
    is a table.
    """
    status = {run.id: run.status for run in report.runs}
    data = {run.id: run.data for run in report.runs}
    records: list[dict[str, Any]] = []
    # the scores the ranking read (deepest assessed layer) and the prior, in runs that stored them
    ranked = [f"ranked_{name}" for name in ("probe_accuracy", *report.metrics)]
    ranked = ["ranked_layer", *ranked, "prior_top1"] if any(row.final_scores for row in report.candidates) else []

    def add(table: str, run_id: str, **values: Any) -> None:
        records.append({"table": table, "run_id": run_id, "run_status": status[run_id], "data": data[run_id], **values})

    for row in report.candidates:
        add(
            "candidates", row.run_id, model=row.model, source=row.source, params=row.params, macs=row.macs,
            macs_unit=row.macs_unit, macs_resolution=row.macs_resolution, input_check=row.input_check,
            data_ratio=row.data_ratio, target_examples=row.target_examples, best_layer=row.best_layer,
            probe_accuracy=row.probe_accuracy, probe_spread=row.probe_spread, consensus=row.consensus, rank=row.rank,
            strategy=row.strategy, cut=row.cut, finetune_arg=row.finetune_arg,
            expected_accuracy=row.expected_accuracy, uncertainty=row.uncertainty, interval_low=row.interval_low,
            interval_high=row.interval_high, interval_level=row.interval_level, status=row.status,
            **{name: row.scores.get(name) for name in report.metrics},
            **({"ranked_layer": row.final_layer, "prior_top1": row.prior_top1} if ranked else {}),
            **{column: row.final_scores.get(column[len("ranked_"):]) for column in ranked[1:-1]},
        )  # fmt: skip
    for profile in report.profiles:
        for point in profile.points:
            add(
                "layers", profile.run_id, model=profile.model, rank=profile.rank, layer=point.layer,
                depth=point.depth, probe_accuracy=point.probe_accuracy, probe_spread=point.probe_spread,
            )  # fmt: skip
    for tune in report.finetunes:
        for arm in tune.arms:
            for epoch in arm.epochs:
                add(
                    "epochs", tune.run_id, model=tune.model, arm=arm.name, epoch=epoch.epoch,
                    train_loss=epoch.train_loss, val_loss=epoch.val_loss, val_accuracy=epoch.val_accuracy,
                    val_balanced_accuracy=epoch.val_balanced_accuracy, val_f1=epoch.val_f1, seconds=epoch.seconds,
                    gain_over_scratch=None if arm.is_scratch else tune.gain_over_scratch,
                )  # fmt: skip
    for check in report.predictions:
        add(
            "predictions", check.finetune_run, model=check.model, arm=check.arm, finetune_arg=check.predicted_strategy,
            expected_accuracy=check.predicted, uncertainty=check.uncertainty, consensus=check.consensus,
            achieved_accuracy=check.achieved,
        )  # fmt: skip
    for run in report.runs:
        for path, reason in run.skipped_files.files:
            add("skipped_files", run.id, file=path, reason=reason)
        if run.skipped_files.unlisted:
            add("skipped_files", run.id, file=None, reason=f"{run.skipped_files.unlisted} more files dropped")
    # the file columns only when a run dropped files: CSVs of other runs keep their columns
    tail = (*CSV_TAIL, "file", "reason") if any(run.skipped_files.count for run in report.runs) else CSV_TAIL
    buffer = io.StringIO()
    fieldnames = [*CSV_COLUMNS, *report.metrics, *ranked, *tail]
    writer = csv.DictWriter(buffer, fieldnames=fieldnames, lineterminator="\n")
    writer.writeheader()
    writer.writerows(records)
    return buffer.getvalue()


# --- HTML -----------------------------------------------------------------------------------------

# Nothing may be fetched: images are data: URLs, the style is inline, and the policy forbids the rest.
_CSP = "default-src 'none'; img-src data:; style-src 'unsafe-inline'"
_STYLE = """
body { font: 14px/1.45 system-ui, sans-serif; margin: 2em auto; max-width: 1200px; padding: 0 1em; color: #222; }
h1 { font-size: 1.5em; } h2 { font-size: 1.2em; margin-top: 2em; border-bottom: 1px solid #ddd; }
table { border-collapse: collapse; margin: .6em 0; font-size: 13px; }
th, td { border: 1px solid #ccc; padding: 3px 7px; text-align: left; vertical-align: top; white-space: nowrap; }
td.wrap { white-space: normal; min-width: 18em; }
th { background: #f3f3f3; } td.num { text-align: right; font-variant-numeric: tabular-nums; }
.progress { background: #fff4d6; border: 1px solid #e0b64c; padding: .5em 1em; }
.decision { background: #eef6ee; border: 1px solid #8bbf8b; padding: .5em 1em; margin: .6em 0; }
.caveats li { color: #8a4b00; } .scroll { overflow-x: auto; } img { max-width: 100%; }
"""


def _esc(text: str) -> str:
    return html.escape(text, quote=True)


def _html_table(table: Table) -> str:
    head = "".join(f"<th>{_esc(h)}</th>" for h in table.headers)
    body = "".join(
        "<tr>" + "".join(f"<td{_cell_class(i, c, table)}>{_esc(c)}</td>" for i, c in enumerate(row)) + "</tr>"
        for row in table.rows
    )
    return f'<div class="scroll"><table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table></div>'


def _cell_class(column: int, text: str, table: Table) -> str:
    if column in table.numeric:
        return " class=num"
    return " class=wrap" if len(text) > 40 else ""


def _img(png: bytes, alt: str) -> str:
    encoded = base64.b64encode(png).decode("ascii")
    return f'<figure><img src="data:image/png;base64,{encoded}" alt="{_esc(alt)}"></figure>'


def _list(items: Sequence[str], css: str = "") -> str:
    return f"<ul{f' class={css}' if css else ''}>" + "".join(f"<li>{_esc(i)}</li>" for i in items) + "</ul>"


def _html_parts(report: Report) -> list[str]:
    """The report's HTML elements, heading to runs table, without a document around them."""
    parts = [f"<h1>zooprobe report: {_esc(report.name)}</h1>", f"<p>Generated {_esc(timestamp(report.generated))}.</p>"]
    note = in_progress_note(report)
    if note:
        parts.append(f'<p class="progress" id="in-progress">{_esc(note)}</p>')
    parts.append("<h2>Decision</h2>")
    for decision in report.decisions:
        headline, evidence, caveats = decision_lines(decision)
        parts.append(f'<div class="decision"><p><b>{_esc(decision.data)}</b>: {_esc(headline)}</p>')
        parts.append("<p>Evidence:</p>" + _list(evidence or ["none recorded"]))
        if caveats:
            parts.append("<p>Caveats:</p>" + _list(caveats, "caveats"))
        parts.append("</div>")
    if report.candidates:
        with_run = len({row.run_id for row in report.candidates}) > 1
        parts += ["<h2>Candidates</h2>", _html_table(candidates_table(report.candidates, report.metrics, with_run))]
    for comparison in report.finetunes:
        parts.append(f"<h2>Fine-tuning: {_esc(comparison.model)} ({_esc(comparison.run_id)})</h2>")
        if any(arm.epochs for arm in comparison.arms):
            parts.append(_img(plots.learning_curves(comparison), f"learning curves of {comparison.run_id}"))
        parts += [_html_table(finetune_table(comparison)), _list(finetune_lines(comparison))]
    if report.predictions:
        parts.append("<h2>Predicted vs achieved</h2>")
        parts += [_img(plots.predicted_vs_achieved(report.predictions), "predicted against achieved accuracy")]
        parts.append(_html_table(predictions_table(report.predictions)))
    if report.profiles:
        parts.append("<h2>Layer profiles of the top candidates</h2>")
        for run_id in dict.fromkeys(profile.run_id for profile in report.profiles):
            mine = [profile for profile in report.profiles if profile.run_id == run_id]
            parts.append(_img(plots.layer_profiles(mine), f"layer profiles of {run_id}"))
            for profile in mine:
                rank = f"#{profile.rank} " if profile.rank else ""
                parts += [f"<h3>{_esc(rank + profile.model)}</h3>", _html_table(profile_table(profile))]
    skipped = skipped_files_table(report.runs)
    if skipped is not None:
        parts += ["<h2>Skipped files</h2>", _html_table(skipped)]
    parts += ["<h2>Runs</h2>", _html_table(runs_table(report.runs))]
    return parts


def render_html(report: Report) -> str:
    """The report as one self-contained HTML file: tables plus matplotlib plots embedded as base64 PNG."""
    return (
        "<!DOCTYPE html>\n<html lang=en><head><meta charset=utf-8>"
        f'<meta http-equiv="Content-Security-Policy" content="{_CSP}">'
        f"<title>zooprobe report: {_esc(report.name)}</title><style>{_STYLE}</style></head>\n<body>\n"
        + "\n".join(_html_parts(report))
        + "\n</body></html>\n"
    )


def render_html_fragment(report: Report) -> str:
    """The HTML report as one ``<div>`` to embed in a page (a notebook's output): the same decision,
    tables and plots, its style scoped to the div so that it leaves the page around it alone."""
    scoped = re.sub(r"(^|})\s*([^{}]+?)\s*{", lambda m: m[1] + "\n" + _scope(m[2]) + " {", _STYLE)
    return f'<div class="zooprobe-report"><style>{scoped}</style>\n' + "\n".join(_html_parts(report)) + "\n</div>"


def _scope(selectors: str) -> str:
    """``h1, th`` -> ``.zooprobe-report h1, .zooprobe-report th`` (``body`` is the div itself)."""
    scoped = (
        s.strip().replace("body", "", 1) if s.strip().startswith("body") else " " + s.strip()
        for s in selectors.split(",")
    )
    return ", ".join(f".zooprobe-report{s}" for s in scoped)


# --- registry of writers and atomic output ----------------------------------------------------------

# Format name -> writer; a later ``register_report_writers`` hook can add entries here.
WRITERS: dict[str, Writer] = {"md": render_markdown, "html": render_html, "csv": render_csv, "json": render_json}


def render(report: Report, fmt: str) -> str:
    """The report in ``fmt`` (one of :data:`WRITERS`).

    :raises InvalidChoiceError: for an unknown format.
    """
    if fmt not in WRITERS:
        raise InvalidChoiceError("report format", fmt, WRITERS)
    return WRITERS[fmt](report)


def _umask() -> int:
    mask = os.umask(0o022)  # reading the umask means setting it: put it straight back
    os.umask(mask)
    return mask


def write_atomic(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` through a temporary file renamed into place (no half-written report).

    The file's own folder is created when missing, but not the folders above it: a mistyped path
    should fail, not leave a tree of folders behind.

    :raises ZooprobeError: when the folder above the file's folder does not exist.
    """
    try:
        path.parent.mkdir(exist_ok=True)
    except FileNotFoundError:
        raise ZooprobeError(
            f"cannot write {path}: the folder {path.parent.parent} does not exist; create it first,"
            " or give a path in an existing folder"
        ) from None
    handle, temp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(handle, "w", encoding="utf-8", newline="") as file:
            file.write(text)
        # mkstemp creates the file owner-only: give it the permissions the file had, or a new file's
        os.chmod(temp, stat.S_IMODE(path.stat().st_mode) if path.exists() else 0o666 & ~_umask())
        os.replace(temp, path)
    except BaseException:
        Path(temp).unlink(missing_ok=True)
        raise
