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
surface as images.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

from ..errors import ZooprobeError
from .backbone import TorchBackbone, pool

if TYPE_CHECKING:
    import torch

POOLED = "pooled"
EMBEDDINGS = "embeddings"


def hidden_state_cut_points(num_layers: int) -> list[str]:
    """``embeddings``, ``layer.0`` .. ``layer.{num_layers - 1}``, ``pooled``."""
    return [EMBEDDINGS, *(f"layer.{i}" for i in range(num_layers)), POOLED]


def masked_mean(hidden: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
    """Mean over tokens counting only those the attention mask keeps; plain pooling without a mask."""
    if mask is None or hidden.ndim != 3:
        return pool(hidden)
    weights = mask.to(hidden.dtype).unsqueeze(-1)
    return (hidden * weights).sum(dim=1) / weights.sum(dim=1).clamp(min=1e-9)


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
    resize_rule: ClassVar[str | None] = None  # the tokenizer or image processor shapes the input

    @property
    def modality(self) -> str:
        return self.entry.modality

    def preprocess(self, images: Sequence[Any]) -> torch.Tensor:
        """Texts -> a packed N x K x L token batch; uint8 H x W x C images -> the image processor's pixel values."""
        if self.modality == "text":
            return self._tokenize([str(text) for text in images])
        return self._pixels(images)

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
