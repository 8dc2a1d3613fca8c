"""Turning a dataset of texts into pooled features at a text backbone's cut points, cached like images.

The cache is :mod:`zooprobe.backbones.features`' own: the same content-addressed key (weights
identity including the repo's commit, preprocessing, dataset content hash, cut point) and the same
chunked ``.npy`` memory map renamed into place only when complete. Texts are batched in order of
length so that a batch pads to similar lengths; rows are written back at their original positions.

Sentence pairs (a dataset with ``texts_b``) get frozen pair features in one of two ways, named by
:func:`pair_features`:

- ``cross-encoding``: where the model's tokenizer has a pair encoding (BERT's
  ``[CLS] a [SEP] b [SEP]`` with segment ids, RoBERTa's ``<s> a </s></s> b </s>``), the pair is
  read as one input, ``tokenizer(text_a, text_b)``, as the model was pretrained (next-sentence
  prediction) and as it is fine-tuned on GLUE; truncation cuts the longer text first;
- ``bi-encoder``: a sentence-transformers model embeds each text on its own (that is how it was
  trained) and a model without a pair encoding has no way to read two texts as one: features are
  SBERT's classification input ``[u, v, |u-v|, u*v]`` (Reimers and Gurevych, 2019), four times the
  width of one embedding. Each distinct text is embedded once, and cached as a text of its own.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from ..catalog.store import default_home
from ..data.datasets import Dataset
from ..errors import ZooprobeError
from .contract import Backbone
from .feature_cache import cache_key, cached_file_ok, write_features

if TYPE_CHECKING:
    import numpy as np
    import numpy.typing as npt

PairFeatures = Literal["cross-encoding", "bi-encoder"]
PAIR_FEATURES_DESCRIPTION = {
    "cross-encoding": "sentence pairs cross-encoded as one input (tokenizer(text_a, text_b))",
    "bi-encoder": "sentence pairs as bi-encoder features [u, v, |u-v|, u*v]",
}


def pair_features(backbone: Backbone) -> PairFeatures:
    """How ``backbone`` reads a sentence pair: ``cross-encoding`` where it is a plain transformers model whose
    tokenizer adds special tokens between two texts, else ``bi-encoder`` (sentence-transformers models,
    tokenizers without a pair template)."""
    tokenizer = getattr(backbone, "processor", None)
    if getattr(backbone, "sentence_transformer", True) or tokenizer is None:
        return "bi-encoder"
    try:
        separated = tokenizer.num_special_tokens_to_add(pair=True) > tokenizer.num_special_tokens_to_add(pair=False)
    except (AttributeError, NotImplementedError, TypeError):
        return "bi-encoder"
    return "cross-encoding" if separated else "bi-encoder"


def extract_text_features(
    backbone: Backbone,
    dataset: Dataset,
    layers: Sequence[str],
    *,
    batch_size: int = 64,
    cache_dir: Path | None = None,
    progress: bool = True,
) -> dict[str, npt.NDArray[np.float32]]:
    """Pooled features (N x D, float32) of every text of ``dataset`` at each of ``layers``.

    Cached layers are read (memory-mapped); the rest are computed together, one forward pass per
    batch under ``torch.inference_mode``.

    :raises ZooprobeError: when the dataset holds no texts or the backbone is not a text model.
    """
    import numpy as np

    if dataset.texts is None:
        raise ZooprobeError(f"dataset '{dataset.name}' holds {dataset.modality}; text backbones need texts")
    if backbone.entry.modality != "text":
        raise ZooprobeError(
            f"'{backbone.entry.id}' is an {backbone.entry.modality} model; pick a text model for '{dataset.name}'"
        )
    backbone.check_cut_points(layers)
    cache = cache_dir or default_home() / "features"
    cache.mkdir(parents=True, exist_ok=True)
    second = dataset.texts_b
    if second is not None and pair_features(backbone) == "bi-encoder":
        return _bi_encoder_features(backbone, dataset.texts, second, layers, batch_size, cache, progress)
    digest = dataset.content_hash()
    # a pair's cross-encoding is the only feature of it: the layer name alone would also do, the suffix says so
    suffix = "" if second is None else " (cross-encoding)"
    paths = {layer: cache / f"{cache_key(backbone, dataset, layer + suffix, digest)}.npy" for layer in layers}
    missing = [layer for layer in layers if not cached_file_ok(paths[layer], len(dataset))]
    if missing:
        if second is None:
            batches = _token_batches(backbone, dataset.texts, batch_size)
        else:
            batches = _pair_batches(backbone, dataset.texts, second, batch_size)
        write_features(backbone, len(dataset), missing, paths, progress, batches, unit="texts")
    return {layer: np.load(paths[layer], mmap_mode="r") for layer in layers}


def _bi_encoder_features(
    backbone: Backbone,
    first: Sequence[str],
    second: Sequence[str],
    layers: Sequence[str],
    batch_size: int,
    cache: Path,
    progress: bool,
) -> dict[str, npt.NDArray[np.float32]]:
    """[u, v, |u-v|, u*v] per pair, from the features of each distinct text (cached as a text dataset)."""
    import numpy as np

    distinct = sorted(set(first) | set(second))
    row = {text: i for i, text in enumerate(distinct)}
    texts = Dataset("distinct texts", "text", np.zeros(len(distinct), dtype=np.int64), ("text",), texts=tuple(distinct))
    single = extract_text_features(backbone, texts, layers, batch_size=batch_size, cache_dir=cache, progress=progress)
    at_a = np.array([row[text] for text in first], dtype=np.int64)
    at_b = np.array([row[text] for text in second], dtype=np.int64)
    out: dict[str, npt.NDArray[np.float32]] = {}
    for layer in layers:
        u, v = np.asarray(single[layer][at_a]), np.asarray(single[layer][at_b])
        out[layer] = np.concatenate([u, v, np.abs(u - v), u * v], axis=1).astype(np.float32)
    return out


def _pair_batches(
    backbone: Backbone, first: Sequence[str], second: Sequence[str], batch_size: int
) -> Iterator[tuple[Any, Any]]:
    """(row indices, packed pair tokens) in order of pair length, as ``backbone.preprocess`` packs single texts."""
    import numpy as np
    import torch

    names = getattr(backbone, "input_names", ("input_ids", "attention_mask"))
    limit = getattr(backbone, "max_tokens", None)
    order = np.argsort([len(a) + len(b) for a, b in zip(first, second, strict=True)], kind="stable")
    for start in range(0, len(first), batch_size):
        rows = order[start : start + batch_size]
        encoded = backbone.processor(  # type: ignore[attr-defined]  # pair_features checked it has a tokenizer
            [first[i] for i in rows],
            [second[i] for i in rows],
            padding=True,
            truncation=True,
            max_length=limit,
            return_tensors="pt",
        )
        yield rows, torch.stack([encoded[name] for name in names], dim=1)


def _token_batches(backbone: Backbone, texts: Sequence[str], batch_size: int) -> Iterator[tuple[Any, Any]]:
    """(row indices, tokenized batch) in order of text length, so that each batch pads little."""
    import numpy as np

    order = np.argsort([len(text) for text in texts], kind="stable")
    for start in range(0, len(texts), batch_size):
        rows = order[start : start + batch_size]
        yield rows, backbone.preprocess([texts[i] for i in rows])
