"""Training arms of Hugging Face text encoders: the pretrained encoder up to a cut point, pooled, under a new head.

An arm is a trainable copy of the encoder (``AutoModel``; for a sentence-transformers model, its
transformer and its own pooling modules after it):

- ``pooled`` (``head``, ``full``): the whole encoder and the model's own pooling, as ``extract`` pools
  at ``pooled`` (sentence-transformers' modules, else ``pooler_output``, else the masked mean);
- ``cut:layer.N`` / ``cut:embeddings``: the encoder blocks above N are dropped (never run), and the new
  head reads the attention-masked mean of block N's output, as ``extract`` pools there.

Sentence pairs are read as assessment reads them (:func:`~zooprobe.backbones.text_features.pair_features`):
cross-encoded as one input, or, for a bi-encoder, each text through the same (siamese) encoder and the
head reading ``[u, v, |u-v|, u*v]``. The scratch arm is the same architecture from its config
(``AutoModel.from_config``), seeded, with the same tokenizer and pooling.

Imported by the adapter only when an arm is built: it imports torch at import.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from typing import Any, Protocol, cast

import torch

from ..errors import ZooprobeError
from .contract import Arm, Backbone, HeadFactory, linear_head
from .hf_pooling import EMBEDDINGS, POOLED, masked_mean
from .text_features import pair_features


class HFEncoderBackbone(Protocol):
    """What an arm reads of :class:`~zooprobe.backbones.hf_backbone.HFEncoderBackbone` (named here, not
    imported: the adapter imports this module)."""

    entry: Any
    model: Any
    processor: Any
    sentence_transformer: bool
    max_tokens: int | None
    input_names: tuple[str, ...]
    pairs: bool

    @property
    def modality(self) -> str: ...

    def preprocess(self, images: Sequence[Any]) -> torch.Tensor: ...


class TextArmModel(torch.nn.Module):
    """Packed token batch (N x K x L, or N x 2K x L for bi-encoded pairs) -> logits."""

    def __init__(
        self, encoder: Any, pooling: Sequence[Any], input_names: Sequence[str], pooled: bool, bi_encoder: bool
    ) -> None:
        super().__init__()
        self.encoder = encoder
        self.pooling = torch.nn.ModuleList(pooling)
        self.input_names = tuple(input_names)
        self.pooled = pooled
        self.bi_encoder = bi_encoder
        self.head: torch.nn.Module = torch.nn.Identity()

    def embed(self, batch: torch.Tensor) -> torch.Tensor:
        """Pooled embeddings of a packed single-text batch (N x K x L)."""
        inputs = {name: batch[:, i] for i, name in enumerate(self.input_names)}
        mask = inputs.get("attention_mask")
        output = self.encoder(**inputs, output_hidden_states=False, return_dict=True)
        hidden = output.last_hidden_state
        if not self.pooled:
            return masked_mean(hidden, mask)
        if len(self.pooling):
            features: dict[str, Any] = {**inputs, "token_embeddings": hidden}
            for module in self.pooling:
                features = module(features)
            embedding: torch.Tensor = features["sentence_embedding"]
            return embedding
        pooler = getattr(output, "pooler_output", None)
        return pooler if pooler is not None else masked_mean(hidden, mask)

    def features(self, batch: torch.Tensor) -> torch.Tensor:
        """What the head reads: pooled embeddings, or [u, v, |u-v|, u*v] of a bi-encoded pair."""
        if not self.bi_encoder:
            return self.embed(batch)
        k = len(self.input_names)
        u, v = self.embed(batch[:, :k]), self.embed(batch[:, k:])
        return torch.cat([u, v, (u - v).abs(), u * v], dim=1)

    def forward(self, batch: torch.Tensor) -> torch.Tensor:
        logits: torch.Tensor = self.head(self.features(batch))
        return logits


def _pieces(backbone: HFEncoderBackbone) -> tuple[Any, list[Any]]:
    """(the transformers encoder, the sentence-transformers modules after it: none for plain models)."""
    if backbone.sentence_transformer:
        modules = list(backbone.model.children())
        return modules[0].auto_model, modules[1:]
    return backbone.model, []


def block_list(encoder: Any) -> torch.nn.ModuleList | None:
    """The ``ModuleList`` of the encoder's blocks: the one holding ``num_hidden_layers`` modules."""
    count = getattr(encoder.config, "num_hidden_layers", None)
    for _name, module in encoder.named_modules():
        if isinstance(module, torch.nn.ModuleList) and len(module) == count:
            return module
    return None


def _keep_blocks(encoder: Any, keep: int, entry_id: str) -> None:
    """Drop the encoder's blocks after the first ``keep``: they are never run."""
    blocks = block_list(encoder)
    if blocks is None:
        raise ZooprobeError(
            f"'{entry_id}' keeps no list of {encoder.config.num_hidden_layers} encoder blocks that a cut could"
            " shorten: fine-tune it with --strategy head or full"
        )
    name = next(name for name, module in encoder.named_modules() if module is blocks)
    encoder.set_submodule(name, torch.nn.ModuleList(list(blocks)[:keep]))
    encoder.config.num_hidden_layers = keep


def _kept_blocks(layer: str) -> int | None:
    """How many encoder blocks a cut at ``layer`` keeps; None for ``pooled`` (all of them, then pooling)."""
    if layer == POOLED:
        return None
    return 0 if layer == EMBEDDINGS else int(layer.removeprefix("layer.")) + 1


def _arm(backbone: HFEncoderBackbone, encoder: Any, pooling: list[Any], layer: str, make_head: HeadFactory) -> Arm:
    """``encoder`` (a copy the arm owns) cut at ``layer``, pooled, under ``make_head(width)``."""
    if backbone.modality != "text":
        raise ZooprobeError(
            f"'{backbone.entry.id}' is an {backbone.modality} encoder: zooprobe fine-tunes transformers text"
            " encoders only; assess it with zooprobe assess"
        )
    keep = _kept_blocks(layer)
    if keep is not None:
        _keep_blocks(encoder, keep, backbone.entry.id)
    encoder.config.output_hidden_states = False
    bi_encoder = backbone.pairs and pair_features(cast(Backbone, backbone)) == "bi-encoder"
    model = TextArmModel(encoder, pooling if keep is None else [], backbone.input_names, keep is None, bi_encoder)
    model.eval()
    with torch.inference_mode():
        width = int(model.embed(backbone.preprocess(["width"])).shape[1])
    model.head = make_head(4 * width if bi_encoder else width)
    return Arm(model, model.head)


def build_text_arm(backbone: HFEncoderBackbone, layer: str, make_head: HeadFactory) -> Arm:
    """The pretrained encoder (a copy) up to ``layer`` under ``make_head``; the loaded model stays as it is."""
    encoder, pooling = _pieces(backbone)
    return _arm(backbone, copy.deepcopy(encoder), [copy.deepcopy(m) for m in pooling], layer, make_head)


def build_text_scratch_arm(
    backbone: HFEncoderBackbone, layer: str, num_classes: int, *, seed: int, make_head: HeadFactory | None = None
) -> Arm:
    """The encoder's architecture from its config (``AutoModel.from_config``, initialised from ``seed``),
    with the same tokenizer and pooling, up to ``layer`` under ``make_head`` (default: a new linear head)."""
    from transformers import AutoModel

    encoder, pooling = _pieces(backbone)
    torch.manual_seed(seed)
    fresh = AutoModel.from_config(copy.deepcopy(encoder.config))  # type: ignore[no-untyped-call]
    pooling_copies = [copy.deepcopy(m) for m in pooling]
    head = make_head or linear_head(num_classes)
    return _arm(backbone, fresh, pooling_copies, layer, head)


def count_truncated(backbone: HFEncoderBackbone, examples: Sequence[Any]) -> int:
    """How many of ``examples`` (texts, or (text_a, text_b) pairs) the tokenizer cuts at ``max_tokens``."""
    limit = backbone.max_tokens
    if limit is None or not examples:
        return 0
    tokenizer = backbone.processor
    if isinstance(examples[0], tuple):
        if pair_features(cast(Backbone, backbone)) == "cross-encoding":
            first, second = [a for a, _ in examples], [b for _, b in examples]
            return sum(len(row) > limit for row in tokenizer(first, second, truncation=False)["input_ids"])
        lengths = _token_lengths(tokenizer, [text for pair in examples for text in pair])
        return sum(max(lengths[2 * i], lengths[2 * i + 1]) > limit for i in range(len(examples)))
    return sum(n > limit for n in _token_lengths(tokenizer, [str(text) for text in examples]))


def _token_lengths(tokenizer: Any, texts: list[str]) -> list[int]:
    return [len(row) for row in tokenizer(texts, truncation=False)["input_ids"]]
