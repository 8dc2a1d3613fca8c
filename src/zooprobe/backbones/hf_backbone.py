"""Hugging Face ``transformers`` and ``sentence-transformers`` encoders as backbones.

Cut points are the model's hidden states, in order: ``embeddings`` (the embedding layer's output),
``layer.0`` .. ``layer.{n-1}`` (each encoder block's output), then ``pooled``: the model's own pooling.
For a sentence-transformers repo that is the repo's own module chain after the transformer (for
all-MiniLM-L6-v2: attention-masked mean pooling, then L2 normalisation); for a plain transformers
model it is its ``pooler_output`` when it has one, else the (masked) mean of the last hidden state.
Features at a hidden state are its mean over tokens, counting only real tokens for text (the
attention mask), or over spatial positions for convolutional image models.

A text batch is one tensor: the tokenizer's outputs (``input_ids``, ``attention_mask``, ...) stacked
along dimension 1 into N x K x L, so that text flows through the same ``preprocess``/``extract``
surface as images. A batch of (text_a, text_b) pairs is read as assessment reads pairs
(:func:`~zooprobe.backbones.text_features.pair_features`): cross-encoded into one N x K x L batch, or,
for a bi-encoder, both texts packed side by side into N x 2K x L, which ``extract`` turns into
``[u, v, |u-v|, u*v]``. Text encoders fine-tune through :mod:`zooprobe.backbones.hf_finetune`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

from ..errors import ZooprobeError
from .backbone import TorchBackbone, pool
from .contract import Arm, HeadFactory
from .hf_pooling import EMBEDDINGS, POOLED, masked_mean

if TYPE_CHECKING:
    import torch


def hidden_state_cut_points(num_layers: int) -> list[str]:
    """``embeddings``, ``layer.0`` .. ``layer.{num_layers - 1}``, ``pooled``."""
    return [EMBEDDINGS, *(f"layer.{i}" for i in range(num_layers)), POOLED]


@dataclass
class HFEncoderBackbone(TorchBackbone):
    """A transformers encoder (``AutoModel``) or a ``SentenceTransformer``, with its tokenizer or image processor.

    ``model`` is the ``SentenceTransformer`` itself when ``sentence_transformer`` is true (its
    ``forward`` runs the repo's pooling modules), else the ``AutoModel``. ``input_names`` orders the
    tokenizer outputs packed into a text batch.
    """

    processor: Any
    sentence_transformer: bool
    max_tokens: int | None
    input_names: tuple[str, ...] = ("input_ids", "attention_mask")
    pairs: bool = False  # whether arms read (text_a, text_b) pairs: see expect_pairs
    resize_rule: ClassVar[str | None] = None  # the tokenizer or image processor shapes the input

    @property
    def modality(self) -> str:
        return self.entry.modality

    def preprocess(self, images: Sequence[Any]) -> torch.Tensor:
        """Texts -> a packed N x K x L token batch, (text_a, text_b) pairs -> N x K x L cross-encoded or
        N x 2K x L bi-encoded; uint8 H x W x C images -> the image processor's pixel values."""
        if self.modality != "text":
            return self._pixels(images)
        if images and isinstance(images[0], tuple):
            return self._pairs([str(a) for a, _ in images], [str(b) for _, b in images])
        return self._tokenize([str(text) for text in images])

    def _pairs(self, first: list[str], second: list[str]) -> torch.Tensor:
        import torch

        from .text_features import pair_features

        if pair_features(self) == "cross-encoding":
            encoded = self.processor(
                first, second, padding=True, truncation=True, max_length=self.max_tokens, return_tensors="pt"
            )
            return torch.stack([encoded[name] for name in self.input_names], dim=1)
        both = self._tokenize(first + second)  # one padding length for both sides
        return torch.cat([both[: len(first)], both[len(first) :]], dim=1)

    def _tokenize(self, texts: list[str]) -> torch.Tensor:
        import torch

        encoded = self.processor(texts, padding=True, truncation=True, max_length=self.max_tokens, return_tensors="pt")
        return torch.stack([encoded[name] for name in self.input_names], dim=1)

    def _pixels(self, images: Sequence[Any]) -> torch.Tensor:
        import numpy as np

        rgb = []
        for image in images:
            array = np.asarray(image)
            if array.ndim == 2:
                array = array[:, :, None]
            if array.shape[2] == 1:
                array = np.repeat(array, 3, axis=2)
            rgb.append(array[:, :, :3])
        pixels: torch.Tensor = self.processor(images=rgb, return_tensors="pt")["pixel_values"]
        return pixels

    def extract(self, batch: torch.Tensor, layers: Sequence[str]) -> dict[str, torch.Tensor]:
        """Pooled features of ``batch`` at each of ``layers``, from one forward pass with all hidden states."""
        import torch

        self.check_cut_points(layers)
        if self.modality == "text" and batch.shape[1] == 2 * len(self.input_names):
            k = len(self.input_names)  # a bi-encoded pair batch: [u, v, |u-v|, u*v] per layer
            us, vs = self.extract(batch[:, :k], layers), self.extract(batch[:, k:], layers)
            return {
                name: torch.cat([u, v, (u - v).abs(), u * v], dim=1)
                for name, u, v in zip(layers, us.values(), vs.values(), strict=True)
            }
        with torch.inference_mode():
            hidden_states, pooled, mask = self._forward(batch)
        out: dict[str, torch.Tensor] = {}
        for layer in layers:
            if layer == POOLED:
                out[layer] = pooled
            else:
                index = 0 if layer == EMBEDDINGS else int(layer.removeprefix("layer.")) + 1
                out[layer] = masked_mean(hidden_states[index], mask)
        return out

    def _forward(self, batch: torch.Tensor) -> tuple[Sequence[torch.Tensor], torch.Tensor, torch.Tensor | None]:
        if self.modality != "text":
            output = self.model(pixel_values=batch, output_hidden_states=True)
            pooled = getattr(output, "pooler_output", None)
            last = output.hidden_states[-1]
            return output.hidden_states, pool(pooled) if pooled is not None else pool(last), None
        inputs = {name: batch[:, i] for i, name in enumerate(self.input_names)}
        mask = inputs.get("attention_mask")
        if self.sentence_transformer:
            features = self.model.forward({**inputs, "modality": "text"})
            return features["all_layer_embeddings"], features["sentence_embedding"], mask
        output = self.model(**inputs, output_hidden_states=True)
        pooled = getattr(output, "pooler_output", None)
        return output.hidden_states, pooled if pooled is not None else masked_mean(output[0], mask), mask

    # --- fine-tuning (text encoders) ---

    def check_trainable(self) -> None:
        """:raises ZooprobeError: for image encoders (no arm here) and text models without a tokenizer."""
        if self.modality != "text":
            raise ZooprobeError(
                f"'{self.entry.id}' is a transformers {self.modality} encoder: zooprobe fine-tunes transformers"
                " text encoders only; assess it with zooprobe assess, or fine-tune a torchvision or timm model"
            )
        if not has_vocabulary(self.processor):
            raise ZooprobeError(
                f"'{self.entry.id}' has no tokenizer: text fine-tuning needs the model's own; pick a repo that"
                " ships its tokenizer files (tokenizer.json or vocab)"
            )

    def expect_pairs(self, pairs: bool) -> None:
        """Arms built next read sentence pairs (the head's input is [u, v, |u-v|, u*v] for a bi-encoder)."""
        self.pairs = pairs

    def head_layer(self, kind: str) -> str:
        """``pooled``: the model's own pooling is what a new head reads."""
        return POOLED

    def build_arm(self, layer: str, make_head: HeadFactory, resolution: tuple[int, int], *, seed: int) -> Arm:
        """A trainable copy of the encoder up to ``layer``, pooled, under ``make_head`` (see hf_finetune)."""
        from .hf_finetune import build_text_arm

        self.check_trainable()
        return build_text_arm(self, layer, make_head)

    def build_scratch_arm(
        self,
        layer: str,
        num_classes: int,
        resolution: tuple[int, int],
        *,
        seed: int,
        make_head: HeadFactory | None = None,
    ) -> Arm:
        """The same architecture up to ``layer`` from its config, seeded, with the same tokenizer and pooling."""
        from .hf_finetune import build_text_scratch_arm

        self.check_trainable()
        return build_text_scratch_arm(self, layer, num_classes, seed=seed, make_head=make_head)

    def count_truncated(self, examples: Sequence[Any]) -> int:
        """How many of ``examples`` (texts or pairs) are longer than ``max_tokens`` and cut."""
        from .hf_finetune import count_truncated

        return count_truncated(self, examples) if self.modality == "text" else 0


def has_vocabulary(tokenizer: Any) -> bool:
    """Whether ``tokenizer`` is a tokenizer with more tokens than its special ones."""
    try:
        return callable(tokenizer) and len(tokenizer) > len(set(tokenizer.all_special_tokens))
    except (AttributeError, TypeError):
        return False


def sentence_transformer_backbone(entry: Any, model: Any) -> HFEncoderBackbone:
    """Wrap a loaded ``SentenceTransformer`` whose first module is a transformers encoder."""
    encoder = model[0]
    auto_model = getattr(encoder, "auto_model", None)
    if auto_model is None or not hasattr(auto_model, "config"):
        raise ZooprobeError(
            f"'{entry.id}' is a sentence-transformers model without a transformers encoder first; "
            "only encoder-then-pooling models load as backbones"
        )
    auto_model.config.output_hidden_states = True
    model.eval()
    tokenizer = model.tokenizer
    names = tuple(n for n in ("input_ids", "attention_mask", "token_type_ids") if n in tokenizer.model_input_names)
    return HFEncoderBackbone(
        entry=entry,
        model=model,
        cut_points=hidden_state_cut_points(auto_model.config.num_hidden_layers),
        classifier=None,
        processor=tokenizer,
        sentence_transformer=True,
        max_tokens=model.max_seq_length,
        input_names=names,
    )


def transformers_backbone(entry: Any, model: Any, processor: Any) -> HFEncoderBackbone:
    """Wrap a transformers ``AutoModel`` and its tokenizer (text) or image processor (images)."""
    model.eval()
    config = model.config
    layers = getattr(config, "num_hidden_layers", None)
    if layers is None:  # convolutional image models report stages instead of layers
        layers = len(getattr(config, "depths", ()) or getattr(config, "hidden_sizes", ()))
    names: tuple[str, ...] = ()
    max_tokens = None
    if entry.modality == "text":
        names = tuple(n for n in ("input_ids", "attention_mask", "token_type_ids") if n in processor.model_input_names)
        limit = getattr(processor, "model_max_length", None)
        max_tokens = limit if isinstance(limit, int) and limit < 1_000_000 else None
        if max_tokens is None:
            # a tokenizer saved without its limit reports a placeholder (1e30): the model's position
            # table is the real one, and longer input would fail inside the model
            positions = getattr(config, "max_position_embeddings", None)
            max_tokens = positions if isinstance(positions, int) and positions > 0 else None
    return HFEncoderBackbone(
        entry=entry,
        model=model,
        cut_points=hidden_state_cut_points(int(layers)),
        classifier=None,
        processor=processor,
        sentence_transformer=False,
        max_tokens=max_tokens,
        input_names=names,
    )
