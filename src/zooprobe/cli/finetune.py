"""``zooprobe finetune``: train a strategy arm (and the scratch baseline) and print it epoch by epoch."""

from __future__ import annotations

import json
from pathlib import Path

import click

from ..errors import ZooprobeError
from . import _common
from ._common import (
    MIN_RESOLUTION,
    batch_size_option,
    executor_options,
    format_choice_option,
    home_option,
    on_duplicates_option,
)
from ._resume import refuse_options_with_resume

_HEADERS = ("Epoch", "Train Loss", "Validation Loss", "Accuracy", "Balanced Acc", "Time")


def parse_train_size(_ctx: click.Context, _param: click.Parameter, value: str | None) -> float | None:
    if value is None:
        return None
    try:
        number = float(value)
    except ValueError:
        number = -1.0
    if not (0 < number < 1 or (number >= 1 and number.is_integer())):
        raise click.BadParameter(
            f"'{value}' is neither a count of examples (e.g. 200) nor a fraction between 0 and 1 (e.g. 0.1)"
        )
    return number


@click.command(name="finetune")
@click.option(
    "--data",
    metavar="DATA",
    help="Dataset: sklearn:digits, a folder, a manifest, an .npz ...; a split column (or a DatasetDict's splits)"
    " is used as given: train on train, validate on validation.",
)
@click.option(
    "--model",
    metavar="ID",
    help="Catalog id, e.g. torchvision:mobilenet_v2.IMAGENET1K_V1, or a path of your own model (./dir, local:dir).",
)
@click.option(
    "--strategy",
    metavar="STRATEGY",
    help="as-is | head | full | cut:LAYER[+mlp:WIDTHS][:train=new|all] | recommended (what the largest complete"
    " assessment of this data recommends for the model, the one 'zooprobe report --data' names).",
)
@click.option(
    "--from-run",
    metavar="RUN",
    help="With --strategy recommended (implied): follow this assessment run's recommendation instead.",
)
@click.option("--epochs", type=click.IntRange(min=1), default=5, show_default=True, help="Epochs per arm.")
@click.option("--baseline", type=click.Choice(["scratch"]), help="Also train the architecture from random init.")
@click.option(
    "--lr",
    type=click.FloatRange(min=0, min_open=True),
    help="Learning rate [default: 2e-3 for images; text: 3e-5 when the transformer trains, 1e-2 for a head].",
)
@batch_size_option(32, "Training examples per optimiser step")
@click.option(
    "--seed", type=int, default=0, show_default=True, help="Seed of the split (unless given), the init and the order."
)
@click.option(
    "--train-size", callback=parse_train_size, metavar="N|FRACTION", help="Keep N training examples, or a fraction."
)
@click.option(
    "--resolution", type=click.IntRange(min=MIN_RESOLUTION), metavar="PX", help="Square input size in pixels."
)
@format_choice_option("json", help="text: a table of epochs per arm; json: run_id, arms and summary.")
@click.option("--resume", metavar="RUN", help="Continue an interrupted run from the last epoch of each arm.")
@click.option("--on-error", type=click.Choice(["skip", "fail"]), default="fail", show_default=True, help="Bad images.")
@on_duplicates_option
@click.option(
    "--trust-remote-code",
    is_flag=True,
    help="Run the repository's own Python code, pinned to the commit it resolves (hf: entries only).",
)
@_common.trust_savedmodel_option
@executor_options("arms (the strategy's, scratch)")
@home_option
def finetune_cmd(
    data: str | None,
    model: str | None,
    strategy: str | None,
    from_run: str | None,
    epochs: int,
    baseline: str | None,
    lr: float | None,
    batch_size: int,
    seed: int,
    train_size: float | None,
    resolution: int | None,
    fmt: str,
    resume: str | None,
    on_error: str,
    on_duplicates: str,
    trust_remote_code: bool,
    trust_savedmodel: bool,
    executor: str | None,
    ray_address: str,
    home: Path | None,
) -> None:
    """Fine-tune a pretrained backbone on a labelled dataset and print each epoch.

    Each epoch (train loss, validation loss, accuracy, balanced accuracy, time) is recorded in the
    run store as it finishes, with a safetensors checkpoint under $ZOOPROBE_HOME/runs/<run id>/.
    --resume RUN continues an interrupted run; the other options are then read from the run.
    --executor ray trains the arms concurrently, one Ray task each; the home must then be on
    storage every node sees (checkpoints are written there), and only this process writes runs.

    \b
    Examples:
      zooprobe finetune --data sklearn:digits --model torchvision:mobilenet_v2.IMAGENET1K_V1 \\
          --strategy full --baseline scratch --epochs 3 --train-size 200 --resolution 64
      zooprobe finetune --data photos/ --model timm:resnet50.a1_in1k --strategy cut:layer3+mlp:256
      zooprobe finetune --data photos/ --model timm:resnet50.a1_in1k --strategy recommended
      zooprobe finetune --data photos/ --model timm:resnet50.a1_in1k --from-run assess-20250101-120000-abc123
      zooprobe finetune --data fortunes.csv --model hf:sentence-transformers/all-MiniLM-L6-v2 \\
          --strategy full --baseline scratch --epochs 3
      zooprobe finetune --resume finetune-20250101-120000-abc123
      zooprobe finetune --data /shared/photos --model ID --strategy full --baseline scratch \\
          --executor ray --ray-address 10.0.0.5:6379 --home /shared/zooprobe
    """
    from ..allocator import keep_working_memory
    from ..data.hygiene import check_policy
    from ..finetuning.finetune import epochs_table_rows, finetune

    keep_working_memory()  # the networks' activations stay on the heap between batches (see zooprobe.allocator)

    if resume is not None:
        fixed = ["data", "model", "strategy", "from_run", "epochs", "baseline", "lr", "batch_size", "seed"]
        refuse_options_with_resume(
            click.get_current_context(),
            [*fixed, "train_size", "resolution", "on_error", "on_duplicates", "trust_remote_code", "trust_savedmodel"],
        )
    if from_run is not None and strategy is None:
        strategy = "recommended"
    if resume is None and (data is None or model is None or strategy is None):
        raise ZooprobeError("finetune needs --data, --model and --strategy (or --resume RUN to continue a run)")
    result = finetune(
        data,
        model,
        strategy or "head",
        epochs=epochs,
        baseline="scratch" if baseline == "scratch" else None,
        lr=lr,
        batch_size=batch_size,
        seed=seed,
        train_size=train_size,
        resolution=resolution,
        resume=resume,
        on_error="skip" if on_error == "skip" else "fail",
        on_duplicates=check_policy(on_duplicates),
        home=home,
        trust_remote_code=trust_remote_code,
        trust_savedmodel=trust_savedmodel,
        executor=executor,
        ray_address=ray_address,
        from_run=from_run,
    )
    if fmt == "json":
        click.echo(json.dumps(result.to_dict(), indent=2))
        return
    blocks = [f"run {result.run_id}"]
    for arm, records in result.arms.items():
        rows = epochs_table_rows(records)
        headers = list(_HEADERS) + (["F1"] if rows and len(rows[0]) > len(_HEADERS) else [])
        cells = [headers, *rows]
        widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]
        lines = ["  ".join(cell.rjust(width) for cell, width in zip(row, widths, strict=True)) for row in cells]
        blocks.append("\n".join([arm, *lines]))
    gain = result.outcome.gain_over_scratch
    if gain is not None:
        blocks.append(f"gain over scratch (validation accuracy of the checkpoints kept): {gain:+.4f}")
    click.echo("\n\n".join(blocks))
