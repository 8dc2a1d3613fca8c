"""Resizing and centre-cropping images exactly as the weights' own evaluation transforms do.

torchvision's ``ImageClassification`` and timm's ``transforms_imagenet_eval`` both resize a PIL
image (antialiased, in 8-bit) and centre-crop it; this module does the same steps with the same
size arithmetic, so the crop a backbone sees is the one its weights were evaluated on:

- ``center`` (timm's default, and torchvision's only mode): the shorter side goes to
  ``floor(size / crop_pct)`` (the longer side ``int(short * long / short_original)``), or, for a
  non-square target, the image is scaled by the smaller ratio (timm's ``ResizeKeepRatio``); then
  a centre crop.
- ``squash``: each side goes to ``floor(size / crop_pct)`` (the aspect ratio changes), then a
  centre crop.
- ``border``: the longer side goes to ``floor(size / crop_pct)``, then a centre crop that pads
  with the mean colour where the image is smaller than the target.

A ``crop_pct`` of None (sources without a crop convention, such as Keras) means 1.0: the shorter
side goes to the target size.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import numpy as np
    import numpy.typing as npt

CROP_MODES: tuple[str, ...] = ("center", "squash", "border")

# Part of every feature-cache key of backbones preprocessed here: changing the arithmetic below
# must change this text, so features computed with the old arithmetic are not read back.
RESIZE_RULE = (
    "PIL antialiased resize, torchvision/timm eval size arithmetic, crop modes center/squash/border;"
    " files over 4x the resize decoded reduced (JPEG draft, box reduce) to at least 2x"
)


def resized_size(
    height: int, width: int, target: tuple[int, int], crop_pct: float | None, crop_mode: str | None
) -> tuple[int, int]:
    """(height, width) an image of ``height`` x ``width`` is resized to before the centre crop."""
    pct = crop_pct or 1.0
    scale_h, scale_w = (math.floor(side / pct) for side in target)
    if crop_mode == "squash":
        return scale_h, scale_w
    if crop_mode == "border":
        ratio = max(height / scale_h, width / scale_w)
        return round(height / ratio), round(width / ratio)
    if scale_h == scale_w:  # torchvision's Resize(int): shorter side to the size, longer side floored
        if width <= height:
            return int(scale_w * height / width), scale_w
        return scale_h, int(scale_h * width / height)
    ratio = min(height / scale_h, width / scale_w)  # timm's ResizeKeepRatio for a non-square target
    return round(height / ratio), round(width / ratio)


def center_crop_or_pad(
    pixels: npt.NDArray[np.uint8], target: tuple[int, int], fill: tuple[int, ...] = (0, 0, 0)
) -> npt.NDArray[np.uint8]:
    """Centre crop of an H x W x C array, padded with ``fill`` where it is smaller than ``target``
    (torchvision's ``center_crop`` and timm's ``center_crop_or_pad``: offsets rounded half to even)."""
    import numpy as np

    crop_h, crop_w = target
    height, width = pixels.shape[:2]
    if crop_h > height or crop_w > width:
        top, left = max(crop_h - height, 0) // 2, max(crop_w - width, 0) // 2
        padded = np.empty((max(height, crop_h), max(width, crop_w), pixels.shape[2]), dtype=pixels.dtype)
        padded[...] = np.asarray(fill, dtype=pixels.dtype)
        padded[top : top + height, left : left + width] = pixels
        pixels = padded
        height, width = pixels.shape[:2]
    top = int(round((height - crop_h) / 2.0))
    left = int(round((width - crop_w) / 2.0))
    return pixels[top : top + crop_h, left : left + crop_w]


def to_rgb(image: npt.NDArray[np.generic]) -> npt.NDArray[np.uint8]:
    """An H x W, H x W x 1, H x W x 3 or H x W x 4 array of 0..255 values -> uint8 H x W x 3."""
    import numpy as np

    pixels = np.asarray(image)
    if pixels.dtype != np.uint8:
        pixels = np.clip(np.rint(pixels), 0, 255).astype(np.uint8)
    if pixels.ndim == 2:
        pixels = pixels[:, :, None]
    if pixels.shape[2] == 1:
        pixels = np.repeat(pixels, 3, axis=2)
    return np.ascontiguousarray(pixels[:, :, :3])


def resize_and_crop(
    image: npt.NDArray[np.generic],
    target: tuple[int, int],
    *,
    crop_pct: float | None = None,
    crop_mode: str | None = None,
    interpolation: str | None = None,
    fill: tuple[int, ...] = (0, 0, 0),
) -> npt.NDArray[np.uint8]:
    """One image -> uint8 ``target`` height x width x 3, resized and cropped as described above.

    ``interpolation`` is bilinear (the default), bicubic or nearest; ``fill`` is the padding colour
    of the ``border`` mode.
    """
    import numpy as np
    from PIL import Image

    pixels = to_rgb(image)
    size = resized_size(pixels.shape[0], pixels.shape[1], target, crop_pct, crop_mode)
    if size != pixels.shape[:2]:
        resample = {"bicubic": Image.Resampling.BICUBIC, "nearest": Image.Resampling.NEAREST}.get(
            interpolation or "", Image.Resampling.BILINEAR
        )
        pixels = np.asarray(Image.fromarray(pixels).resize((size[1], size[0]), resample))
    return center_crop_or_pad(pixels, target, fill if crop_mode == "border" else (0, 0, 0))
