"""``zooprobe assess``: rank candidate backbones on a dataset and recommend a strategy, before training."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from ._common import (
    MIN_RESOLUTION,
    batch_size_option,
    executor_options,
    format_choice_option,
    home_option,
    on_duplicates_option,
    trust_savedmodel_option,
)
from ._resume import refuse_options_with_resume

if TYPE_CHECKING:
    from ..runs.records import AssessSummary, CandidateResult


def _csv(value: str | None) -> list[str] | None:
    return [v.strip() for v in value.split(",") if v.strip()] if value else None


@click.command()
@click.option(
    "--data",
    metavar="DATA",
    help="sklearn:digits, an image or text (<class>/*.txt) folder, a CSV/Parquet manifest (path, text or"
    " text_a,text_b pairs; optional split column), .npz, or a save_to_disk dir. Given splits: train is scored.",
)
@click.option(
    "--models", metavar="ID,ID,...", help="Candidate catalog ids, or paths of your own models (./dir, /abs, local:dir)."
)
@click.option(
    "--query",
    metavar="'SEARCH FILTERS'",
    help='Candidates from a search, e.g. "mobilenet --max-params 10M --sort=-top1".',
)
@click.option(
    "--top", type=click.IntRange(min=1), default=5, show_default=True, help="How many results of --query to assess."
)
@click.option(
    "--metrics", metavar="NAME,NAME", help="Scores to compute [default: all built-in; see 'zooprobe plugins']."
)
@click.option(
    "--layers",
    default="auto",
    show_default=True,
    metavar="auto|all|NAMES",
    help="Cut points to score: auto (up to 6), all, or names.",
)
@click.option(
    "--budget",
    type=click.FloatRange(min=0, min_open=True),
    metavar="SECONDS",
    help="Stop starting new candidates after this long; resume the run later.",
)
@click.option(
    "--resolution",
    type=click.IntRange(min=MIN_RESOLUTION),
    metavar="PX",
    help="Score at this input size instead of each model's default (faster on CPU).",
)
@click.option(
    "--folds", type=click.IntRange(min=2), default=5, show_default=True, help="Cross-validation folds of the probe."
)
@click.option("--seed", type=int, default=0, show_default=True, help="Seed of the folds and subsets.")
@batch_size_option(64, "Examples per forward pass")
@click.option(
    "--on-error",
    type=click.Choice(["skip", "fail"]),
    default="fail",
    show_default=True,
    help="Unreadable images: drop them (listed) or stop.",
)
@on_duplicates_option
@click.option("--resume", metavar="RUN", help="Continue an interrupted assessment (its data, candidates and options).")
@click.option(
    "--trust-remote-code",
    is_flag=True,
    help="Run the repository's own Python code, pinned to the commit it resolves (hf: entries only).",
)
@trust_savedmodel_option
@executor_options("candidates")
@click.option(
    "--cache-dir",
    type=click.Path(file_okay=False, path_type=Path),
    help="Feature cache directory (on a cluster: storage every node sees)  [default: HOME/features].",
)
@click.option(
    "--device",
    metavar="cpu|cuda|cuda:N|mps",
    help="Where extraction, the probe and LogME run  [default: $ZOOPROBE_DEVICE, else cuda > mps > cpu].",
)
@format_choice_option("json", help="text: the ranked table and the recommendation; json: run, candidates, summary.")
@home_option
def assess(
    data: str | None,
    models: str | None,
    query: str | None,
    top: int,
    metrics: str | None,
    layers: str,
    budget: float | None,
    resolution: int | None,
    folds: int,
    seed: int,
    batch_size: int,
    on_error: str,
    on_duplicates: str,
    resume: str | None,
    trust_remote_code: bool,
    trust_savedmodel: bool,
    executor: str | None,
    ray_address: str,
    cache_dir: Path | None,
    device: str | None,
    fmt: str,
    home: Path | None,
) -> None:
    """Rank candidate backbones on DATA and recommend one, with a strategy and its evidence.

    Per candidate it checks the input type (modality, channels, resolution), the data ratio
    (pretraining examples against yours), then scores frozen features layer by layer: a
    cross-validated linear probe, kNN, LogME, H-score, and NCE/LEEP through the source head.
    The layer profile decides the strategy: as-is, head (frozen body), full (retrain all), or
    cut at a layer. Runs are stored; an interrupted one resumes. Nothing is trained.

    \b
    Examples:
      zooprobe assess --data sklearn:digits --models torchvision:mobilenet_v2.IMAGENET1K_V1 --resolution 64
      zooprobe assess --data ./photos --query "convnext --max-params 30M --sort=-top1" --top 5
      zooprobe assess --data train.csv --models hf:sentence-transformers/all-MiniLM-L6-v2 --format json
      zooprobe assess --data ./photos --query "resnet" --top 20 --executor ray --ray-address 10.0.0.5:6379
    """
    from ..allocator import keep_working_memory
    from ..evaluator.assess import AssessError
    from ..evaluator.assess import assess as run_assessment

    keep_working_memory()  # the networks' activations stay on the heap between batches (see zooprobe.allocator)

    if resume:
        fixed = ["models", "query", "top", "metrics", "layers", "budget", "resolution", "folds", "seed"]
        refuse_options_with_resume(click.get_current_context(), [*fixed, "trust_remote_code", "trust_savedmodel"])
    else:
        if data is None:
            raise AssessError("pass --data DATA (or --resume RUN to continue an interrupted assessment)")
        if bool(models) == bool(query):
            raise AssessError("pass exactly one of --models ID,ID,... or --query 'SEARCH FILTERS'")
    result = run_assessment(
        data,
        _csv(models),
        query=query,
        top=top,
        metrics=_csv(metrics),
        layers=layers,
        seed=seed,
        folds=folds,
        budget=budget,
        resolution=resolution,
        batch_size=batch_size,
        on_error=on_error,  # type: ignore[arg-type]
        on_duplicates=on_duplicates,  # type: ignore[arg-type]
        resume=resume,
        home=home,
        trust_remote_code=trust_remote_code,
        trust_savedmodel=trust_savedmodel,
        executor=executor,
        ray_address=ray_address,
        cache_dir=cache_dir,
        device=device,
    )
    results, outcome = result.results, result.outcome
    if fmt == "json":
        document = {"run": result.run_id, "candidates": [c.to_json() for c in results], "summary": outcome.to_json()}
        click.echo(json.dumps(document, indent=2))
        return
    click.echo(render_assessment(result.run_id, results, outcome))
    click.echo(next_step(result.run_id, outcome, home))


def _fmt(value: Any, digits: int = 3) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return str(value)


def render_assessment(run_id: str, candidates: Sequence[CandidateResult], summary: AssessSummary) -> str:
    """The ranked candidate table, the recommendation and its evidence, for a terminal."""
    from ..catalog.units import format_count
    from ..evaluator.interval import interval_meaning, stated

    headers = ["RANK", "MODEL", "PARAMS", "INPUT", "BEST LAYER", "PROBE", "KNN", "LOGME", "LEEP", "STRATEGY"]
    rows = []
    for result in candidates:
        probe = result.probe_accuracy
        strategy = result.recommendation.finetune_arg if result.recommendation else None
        rows.append(
            [
                _fmt(result.rank),
                result.model,
                format_count(result.params) if result.params else "-",
                result.input_check.status,
                _fmt(result.best_layer),
                f"{probe:.3f}±{result.probe_spread or 0:.3f}" if probe is not None else "-",
                _fmt(result.scores.get("knn_accuracy")),
                _fmt(result.scores.get("logme")),
                _fmt(result.scores.get("leep")),
                strategy or (result.status if result.status != "done" else "-"),
            ]
        )
    widths = [max(len(h), *(len(r[i]) for r in rows)) if rows else len(h) for i, h in enumerate(headers)]
    lines = ["  ".join(h.ljust(w) for h, w in zip(headers, widths, strict=True)).rstrip()]
    lines += ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in rows]
    for result in candidates:
        if result.status != "done":
            lines.append(f"  {result.model}: {result.status} - {result.skip_reason}")
    rec = summary.recommended
    lines.append("")
    if rec:
        lines.append(
            f"Recommended: {rec.model} with strategy {rec.finetune_arg}"
            " (expected accuracy "
            + stated(rec.expected_accuracy, rec.uncertainty, rec.interval_low, rec.interval_high, rec.interval_level)
            + ")"
        )
        lines.append(f"About the expected accuracy: {interval_meaning(rec.to_json())}.")
        lines.append(f"Evidence: {rec.evidence}")
    elif any(result.status == "done" for result in candidates):
        lines.append(
            "No recommendation: the strategy is read off the linear probe's layer profile;"
            " add probe_accuracy to --metrics."
        )
    else:
        lines.append("No recommendation: no candidate could be assessed (see the reasons above).")
    for caveat in summary.caveats:
        lines.append(f"Caveat: {caveat}")
    lines.append(f"Run {run_id} ({summary.seconds or 0:.0f}s)")
    return "\n".join(lines)


def next_step(run_id: str, summary: AssessSummary, home: Path | None) -> str:
    """The command to run next, with this run's data, recommended model and options filled in."""
    import shlex

    from ..runs.store import RunStore

    if summary.pending:
        return f"next: zooprobe assess --resume {run_id}{_home_arg(home)}  (to assess the candidates still pending)"
    rec = summary.recommended
    if rec is None or rec.model is None:
        return "next: zooprobe assess with other --models or --query, or other --metrics"
    with RunStore(home) as runs:
        run = runs.get(run_id)
    resolution = run.config.get("resolution")
    size = f" --resolution {resolution}" if resolution else ""
    return (
        f"next: zooprobe finetune --data {shlex.quote(run.data)} --model {shlex.quote(rec.model)}"
        f" --strategy recommended --baseline scratch{size}{_home_arg(home)}"
    )


def _home_arg(home: Path | None) -> str:
    import shlex

    return f" --home {shlex.quote(str(home))}" if home is not None else ""
