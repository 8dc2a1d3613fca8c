"""The reference result, rerun: a text model fine-tuned on GLUE MRPC against the same model trained from scratch.

The protocol of the reference (bert-base-uncased on MRPC, 3,668 training and 408 validation sentence
pairs): fine-tuned end to end (``full``) for 3 epochs, trained from scratch (the architecture from its
config, same tokenizer) for 5, validation loss, accuracy and F1 after each epoch, no early stopping.
The reference numbers (issue 17): fine-tuned 0.81 / 0.83 / 0.87 accuracy, validation loss 0.42 -> 0.34;
from scratch 0.68-0.69 in every epoch (the majority class: 279 of 408 validation pairs, 0.684),
validation loss rising 0.63 -> 0.77.

The scratch arm comes from a second run whose strategy is ``head`` (a new head on frozen features,
cheap): zooprobe trains a strategy and its scratch baseline for the same number of epochs, and the
protocol gives them different ones. The head's table is printed too.

Needs a GLUE MRPC ``DatasetDict`` saved to disk (``train`` and ``validation``; ``sentence1``,
``sentence2``, ``label``) and the model in the local Hugging Face cache; both once, with a network:

    python -c 'import datasets; datasets.load_dataset("glue", "mrpc").save_to_disk("mrpc")'
    huggingface-cli download bert-base-uncased
    python benchmarks/bench_mrpc.py --data mrpc [--model hf:bert-base-uncased] [--home DIR]

An ``hf:`` model that the catalog does not list (an offline catalog lists none) gets its entry from the
cached files. Exit code 2, with one line saying what is missing, without ``--data`` or for bad input.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any

DEFAULT_MODEL = "hf:bert-base-uncased"
FINETUNED_EPOCHS = 3
SCRATCH_EPOCHS = 5
# the reference's per-epoch figures, where it reports them (None: not reported)
REFERENCE_FINETUNED = ((1, 0.42, 0.81), (2, None, 0.83), (3, 0.34, 0.87))
REFERENCE_SCRATCH = "accuracy 0.68-0.69 in each of 5 epochs (majority class 0.684), validation loss 0.63 -> 0.77"
NEEDS = (
    "bench_mrpc needs --data DIR: a GLUE MRPC DatasetDict saved with save_to_disk (train and validation splits;"
    " sentence1, sentence2, label); make it once, with a network:"
    ' python -c \'import datasets; datasets.load_dataset("glue", "mrpc").save_to_disk("DIR")\''
)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, help="GLUE MRPC save_to_disk directory (required)")
    parser.add_argument("--model", default=DEFAULT_MODEL, help=f"catalog id [default: {DEFAULT_MODEL}]")
    parser.add_argument("--finetuned-epochs", type=int, default=FINETUNED_EPOCHS, metavar="N")
    parser.add_argument("--scratch-epochs", type=int, default=SCRATCH_EPOCHS, metavar="N")
    parser.add_argument("--batch-size", type=int, default=8, help="the reference's (transformers' Trainer default)")
    parser.add_argument("--lr", type=float, help="[default: zooprobe's per strategy]")
    parser.add_argument("--home", type=Path, help="zooprobe home [default: $ZOOPROBE_HOME or ~/.cache/zooprobe]")
    return parser.parse_args(argv)


def fail(message: str) -> int:
    print(f"error: {message}", file=sys.stderr)
    return 2


def check_data(folder: Path) -> str | None:
    """Why ``folder`` is not a DatasetDict directory with train and validation splits (None: it is)."""
    if not folder.is_dir():
        return f"--data {folder} is not a directory. {NEEDS}"
    if not (folder / "dataset_dict.json").is_file():
        return f"--data {folder} holds no dataset_dict.json: it is not a DatasetDict saved with save_to_disk. {NEEDS}"
    missing = [split for split in ("train", "validation") if not (folder / split).is_dir()]
    if missing:
        return f"--data {folder} has no {' or '.join(missing)} split; GLUE MRPC has train, validation and test"
    return None


def ensure_entry(model: str, home: Path | None) -> str | None:
    """Give an ``hf:`` model in the local Hub cache a catalog entry if it has none; why not, else None."""
    from zooprobe.catalog.store import Catalog
    from zooprobe.errors import ZooprobeError
    from zooprobe.sources.hf_hub import cached_snapshots, hub_cache
    from zooprobe.sources.offline_text_weights import add_hf_entry, cached_entry

    with Catalog(home) as catalog:
        if model in catalog.ids() or not model.startswith("hf:"):
            return None
        repo = model.removeprefix("hf:")
        snapshots = cached_snapshots(repo)
        if not snapshots:
            return (
                f"'{repo}' is not in the local Hugging Face cache ({hub_cache()}) and this catalog does not list it:"
                f" download it once with a network (huggingface-cli download {repo}), or pass --model with a cached one"
            )
        try:
            add_hf_entry(catalog, cached_entry(repo, snapshots[0], f"the local Hugging Face cache ({snapshots[0]})"))
        except ZooprobeError as exc:
            return str(exc)
    return None


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.data is None:
        return fail(NEEDS)
    for name in ("finetuned_epochs", "scratch_epochs", "batch_size"):
        if getattr(args, name) < 1:
            return fail(f"--{name.replace('_', '-')} {getattr(args, name)} must be at least 1")
    problem = check_data(args.data) or ensure_entry(args.model, args.home)
    if problem:
        return fail(problem)

    import zooprobe
    from zooprobe.errors import ZooprobeError
    from zooprobe.reports.side_by_side import Row, rows_of, side_by_side

    common: dict[str, Any] = {"batch_size": args.batch_size, "home": args.home}
    if args.lr is not None:
        common["lr"] = args.lr
    started = time.perf_counter()
    try:
        finetuned = zooprobe.finetune(
            str(args.data), args.model, "full", epochs=args.finetuned_epochs, patience=args.finetuned_epochs, **common
        )
        middle = time.perf_counter()
        baseline = zooprobe.finetune(
            str(args.data),
            args.model,
            "head",
            epochs=args.scratch_epochs,
            baseline="scratch",
            patience=args.scratch_epochs,
            **common,
        )
    except ZooprobeError as exc:
        return fail(str(exc))
    ended = time.perf_counter()
    print(f"{args.model} on {args.data}: runs {finetuned.run_id} (full) and {baseline.run_id} (head, scratch);"
          f" {middle - started:.0f}s and {ended - middle:.0f}s")  # fmt: skip
    blocks = {
        f"scratch, {args.scratch_epochs} epochs": rows_of(baseline.arms["scratch"]),
        f"full, {args.finetuned_epochs} epochs": rows_of(finetuned.arms["full"]),
        "reference: bert-base fine-tuned": [Row(e, None, loss, acc) for e, loss, acc in REFERENCE_FINETUNED],
    }
    print(side_by_side(blocks))
    print(f"reference, from scratch: {REFERENCE_SCRATCH}")
    print(side_by_side({f"head (frozen body), {args.scratch_epochs} epochs": rows_of(baseline.arms["head"])}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
