"""A loaded pretrained backbone: its model, preprocessing, cut points and pooled-feature extraction.

Cut points are module names ordered from input to output, plus ``pre_logits``: the input of the
classifier (the pooled features a new head would see). Features at a cut point are the module's
output pooled to one vector per example: the mean over spatial positions (N, C, H, W) or over
tokens (N, L, C).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

from ..catalog.schema import Entry
from ..errors import InvalidChoiceError, ZooprobeError
from .contract import PRE_LOGITS, Arm, Backbone, HeadFactory
from .resize import RESIZE_RULE, resize_and_crop

if TYPE_CHECKING:
    import numpy as np
    import numpy.typing as npt
    import torch

__all__ = ["PRE_LOGITS", "Backbone", "TorchBackbone", "block_cut_points", "last_linear", "pick_device", "pool"]


class _StopForward(Exception):
    """Raised by the hook of the deepest requested cut point: nothing after it needs computing."""


def pool(output: Any, channels_last: bool = False) -> torch.Tensor:
    """One vector per example: mean over H, W for (N, C, H, W) — or (N, H, W, C) with
    ``channels_last`` — and over tokens for (N, L, C)."""
    import torch

    if isinstance(output, tuple | list):
        output = output[0]
    assert isinstance(output, torch.Tensor)
    if output.ndim == 4:
        return output.mean(dim=(1, 2) if channels_last else (2, 3))
    if output.ndim == 3:
        return output.mean(dim=1)
    return output.flatten(1)


def blocks_output_channels_last(model: Any) -> bool:
    """Whether the model's blocks output (N, H, W, C) maps: Swin-style transformers. timm marks them
    with ``output_fmt = 'NHWC'``; torchvision's SwinTransformer permutes to (N, C, H, W) only in front
    of its pooling, after the last cut point before ``pre_logits``."""
    layout = getattr(model, "output_fmt", None)
    if str(getattr(layout, "value", layout)) == "NHWC":
        return True
    try:
        from torchvision.models import SwinTransformer
    except ImportError:
        return False
    return isinstance(model, SwinTransformer)


@dataclass
class TorchBackbone(Backbone):
    """The torch adapter: a ``torch.nn.Module`` whose cut points are module names, ``classifier`` its head.

    The Keras, TensorFlow and Hugging Face adapters reuse its fields and its image preprocessing
    (resize, centre crop, the entry's mean and std) and override what their framework does differently.
    """

    entry: Entry
    model: torch.nn.Module
    cut_points: list[str]
    classifier: torch.nn.Module | None
    # how resize_and_crop shapes images, part of the feature-cache key
    resize_rule: ClassVar[str | None] = RESIZE_RULE

    def to(self, device: str, channels_last: bool = False) -> None:
        """Run the model on ``device`` (batches move there in :meth:`extract`), optionally channels-last."""
        import torch

        if isinstance(self.model, torch.nn.Module):
            memory_format = torch.channels_last if channels_last else torch.contiguous_format
            self.model.to(device)
            self.model.to(memory_format=memory_format)
        self.device, self.channels_last = device, channels_last

    def preprocess(self, images: Sequence[np.ndarray]) -> torch.Tensor:
        """uint8 H x W x C arrays -> a normalised N x 3 x H x W batch, as the entry's input spec says.

        Resize and centre-crop to the resolution as the entry's crop_pct, crop_mode and interpolation
        say, scale to [0, 1] and normalise with the entry's mean and std; grayscale is replicated to
        3 channels.
        """
        import torch

        spec = self.entry.input
        out = self.resize_and_crop(images)
        if spec.mean and spec.std:
            mean = torch.tensor(spec.mean).view(1, -1, 1, 1)
            std = torch.tensor(spec.std).view(1, -1, 1, 1)
            out = (out - mean) / std
        return out

    def resize_and_crop(self, images: Sequence[np.ndarray]) -> torch.Tensor:
        """uint8 H x W x C arrays -> an N x 3 x H x W batch in [0, 1], resized and centre-cropped the
        way the weights' own evaluation transform does (:mod:`zooprobe.backbones.resize`)."""
        import numpy as np
        import torch

        spec = self.entry.input
        fill = tuple(round(255 * v) for v in spec.mean) if spec.mean else (0, 0, 0)
        batch = [
            resize_and_crop(
                image,
                self.resolution,
                crop_pct=spec.crop_pct,
                crop_mode=spec.crop_mode,
                interpolation=spec.interpolation,
                fill=fill,
            )
            for image in images
        ]
        # contiguous while still uint8: the float conversion and normalisation then run on dense memory
        return torch.from_numpy(np.stack(batch)).permute(0, 3, 1, 2).contiguous().float().div_(255.0)

    def extract(self, batch: torch.Tensor, layers: Sequence[str]) -> dict[str, torch.Tensor]:
        """Pooled float32 CPU features of ``batch`` at each of ``layers``, in one forward pass that stops
        at the deepest; on CUDA under autocast (bfloat16 where supported, else float16)."""
        import torch

        self.check_cut_points(layers)
        memory_format = torch.channels_last if self.channels_last else torch.contiguous_format
        batch = batch.to(self.device, non_blocking=True, memory_format=memory_format)
        on_cuda = batch.device.type == "cuda"
        half = torch.bfloat16 if on_cuda and torch.cuda.is_bf16_supported() else torch.float16
        wanted = set(layers)
        deepest = max(layers, key=self.cut_points.index)
        modules = dict(self.model.named_modules())
        captured: dict[str, torch.Tensor] = {}
        handles = []
        channels_last = blocks_output_channels_last(self.model)

        def make_hook(name: str) -> Any:
            def hook(_module: torch.nn.Module, inputs: Any, output: Any = None) -> None:
                captured[name] = pool(inputs if name == PRE_LOGITS else output, channels_last)
                if name == deepest:
                    raise _StopForward

            return hook

        for name in wanted:
            if name == PRE_LOGITS:
                assert self.classifier is not None
                handles.append(self.classifier.register_forward_pre_hook(make_hook(name)))
            else:
                handles.append(modules[name].register_forward_hook(make_hook(name)))
        try:
            with torch.inference_mode(), torch.autocast(batch.device.type, dtype=half, enabled=on_cuda):
                self.model(batch)
        except _StopForward:
            pass
        finally:
            for handle in handles:
                handle.remove()
        return {name: captured[name].float().cpu() for name in layers}

    @property
    def pooling(self) -> str:
        # channels-last blocks were once pooled over W and C: their features get keys of their own
        return "mean over H, W of (N, H, W, C)" if blocks_output_channels_last(self.model) else "mean"

    # --- the source head ---

    @property
    def has_source_head(self) -> bool:
        return self.classifier is not None and PRE_LOGITS in self.cut_points

    @property
    def head_gives_probabilities(self) -> bool:
        """Whether the classifier's output is already probabilities (a softmax built in), not logits."""
        return False

    def source_probabilities(self, pre_logits: npt.NDArray[np.float32]) -> npt.NDArray[np.float64]:
        """The classifier applied to pooled ``pre_logits`` features, then a softmax unless it has one built in."""
        import numpy as np
        import torch

        if self.classifier is None:
            return super().source_probabilities(pre_logits)
        outputs = []
        with torch.inference_mode():
            for start in range(0, len(pre_logits), 4096):
                chunk = torch.from_numpy(np.array(pre_logits[start : start + 4096], dtype=np.float32))
                output = torch.as_tensor(self.classifier(chunk)).double()
                probabilities = output if self.head_gives_probabilities else torch.softmax(output, dim=1)
                outputs.append(probabilities.cpu().numpy())
        return np.concatenate(outputs)

    def source_logits(self, batch: torch.Tensor) -> torch.Tensor:
        self.model.eval()
        logits: torch.Tensor = self.model(batch)
        return logits

    # --- fine-tuning ---

    def build_arm(self, layer: str, make_head: HeadFactory, resolution: tuple[int, int], *, seed: int) -> Arm:
        """A copy of the model with every cut point after ``layer`` replaced by an identity (so pooling and
        flattening in its forward still apply) and the classifier replaced by ``make_head(width)``."""
        from .torch_arm import cut_arm

        return cut_arm(self.entry.id, self.model, self.classifier, self.cut_points, layer, make_head, resolution)

    def scratch_model(self) -> torch.nn.Module:
        """The architecture with random initialisation; by default a copy with every layer's parameters and
        running statistics reset. Adapters of a source with its own initialisation scheme override it."""
        from .torch_arm import reset_copy

        return reset_copy(self.model)

    def build_scratch_arm(
        self,
        layer: str,
        num_classes: int,
        resolution: tuple[int, int],
        *,
        seed: int,
        make_head: HeadFactory | None = None,
    ) -> Arm:
        """:meth:`scratch_model` with its classifier replaced by a new linear layer of ``num_classes`` outputs,
        or with ``make_head``, cut at ``layer`` under ``make_head(width)`` as :meth:`build_arm` cuts the
        pretrained model."""
        from .torch_arm import cut_arm, module_name, scratch_arm

        if make_head is None:
            return scratch_arm(self.entry.id, self.model, self.classifier, self.scratch_model, num_classes)
        fresh = self.scratch_model()
        classifier = fresh.get_submodule(module_name(self.model, self.classifier)) if self.classifier else None
        return cut_arm(self.entry.id, fresh, classifier, self.cut_points, layer, make_head, resolution)


def pick_device(requested: str | None = None) -> str:
    """``requested``, else ``$ZOOPROBE_DEVICE``, else the best present: cuda, then mps, then cpu.

    :raises InvalidChoiceError: for a name other than cpu, cuda, cuda:N or mps.
    :raises ZooprobeError: when the requested accelerator is not present.
    """
    import os

    import torch

    requested = requested or os.environ.get("ZOOPROBE_DEVICE") or None
    if requested is None:
        if torch.cuda.is_available():
            return "cuda"
        return "mps" if torch.backends.mps.is_available() else "cpu"
    kind = requested.split(":", 1)[0]
    if kind not in ("cpu", "cuda", "mps") or (kind != "cuda" and requested != kind):
        raise InvalidChoiceError("device", requested, ["cpu", "cuda", "cuda:N", "mps"])
    present = {"cpu": True, "cuda": torch.cuda.is_available(), "mps": torch.backends.mps.is_available()}
    if not present[kind]:
        raise ZooprobeError(f"device '{requested}' is not present here; use --device cpu or leave it unset (auto)")
    return requested


def last_linear(model: torch.nn.Module) -> torch.nn.Linear | None:
    import torch

    last = None
    for module in model.modules():
        if isinstance(module, torch.nn.Linear):
            last = module
    return last


def block_cut_points(model: torch.nn.Module, classifier: torch.nn.Module | None) -> list[str]:
    """Top-level children in order (a long Sequential body expanded into its blocks), minus the head."""
    import torch

    names: list[str] = []
    head_ids = {id(m) for m in classifier.modules()} if classifier is not None else set()
    for name, child in model.named_children():
        if any(id(m) in head_ids for m in child.modules()):
            continue
        if isinstance(child, torch.nn.Sequential | torch.nn.ModuleList) and len(child) > 3:
            names.extend(f"{name}.{sub}" for sub, _ in child.named_children())
        elif sum(1 for _ in child.parameters()) or isinstance(child, torch.nn.Sequential):
            names.append(name)
    if classifier is not None:
        names.append(PRE_LOGITS)
    return names
