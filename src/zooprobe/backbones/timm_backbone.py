"""timm models as torch backbones: the classifier timm names, and loading through ``timm.create_model``."""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

from ..catalog.schema import Entry, InputSpec
from .backbone import TorchBackbone, block_cut_points

if TYPE_CHECKING:
    import torch

# what timm's eval transform (transforms_imagenet_eval) uses when a pretrained_cfg names no crop_pct
DEFAULT_CROP_PCT = 0.875


def classifier_of(model: Any) -> Any:
    """timm's ``get_classifier()``: a module, a (head, head_dist) tuple for distilled models, or None."""
    get_classifier = getattr(model, "get_classifier", None)
    return get_classifier() if get_classifier is not None else None


@dataclass
class TimmBackbone(TorchBackbone):
    """A model of the ``timm:`` source (``entry.name`` is the timm model name): timm knows its ImageNet
    class names and builds the architecture with its own initialisation."""

    def source_class_names(self) -> list[str] | None:
        """ImageNet class descriptions (synonyms separated by commas) for a model timm infers a subset for."""
        from timm.data.imagenet_info import ImageNetInfo, infer_imagenet_subset

        subset = infer_imagenet_subset(self.model)
        return list(ImageNetInfo(subset).label_descriptions(as_dict=False)) if subset else None

    def scratch_model(self) -> torch.nn.Module:
        """``timm.create_model(name, pretrained=False)``."""
        import timm

        built: torch.nn.Module = timm.create_model(self.entry.name, pretrained=False)
        return built


def load_timm_model(entry: Entry, model_name: str, adapter: type[TorchBackbone] = TorchBackbone) -> TorchBackbone:
    """``timm.create_model(model_name, pretrained=True)`` as an ``adapter`` of ``entry``.

    An entry that knows no preprocessing (a Hub listing) takes the model's own ``pretrained_cfg``.
    """
    import timm
    import torch

    model = timm.create_model(model_name, pretrained=True)
    model.eval()
    if entry.input == InputSpec():
        cfg: dict[str, Any] = getattr(model, "pretrained_cfg", {})
        channels, height, width = cfg["input_size"]
        spec = InputSpec(
            channels=channels,
            default_resolution=(height, width),
            fixed_resolution=bool(cfg.get("fixed_input_size")),
            mean=tuple(cfg["mean"]),
            std=tuple(cfg["std"]),
            interpolation=cfg.get("interpolation"),
            crop_pct=cfg.get("crop_pct") or DEFAULT_CROP_PCT,
            crop_mode=cfg.get("crop_mode") or "center",
        )
        entry = replace(entry, input=spec, provenance=(*entry.provenance, ("input", "the loaded timm pretrained_cfg")))
    head = classifier_of(model)
    classifier = head if isinstance(head, torch.nn.Module) else None
    return adapter(entry=entry, model=model, cut_points=block_cut_points(model, classifier), classifier=classifier)
