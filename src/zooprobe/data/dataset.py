"""The Dataset record: a labelled dataset in memory (image files, image arrays or texts), the decoding
of its images and its content hash."""

from __future__ import annotations

import hashlib
import json
import statistics
import struct
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any, Literal

from ..errors import ZooprobeError

if TYPE_CHECKING:
    import numpy as np
    import numpy.typing as npt
    from PIL import Image

OnError = Literal["skip", "fail"]
_HASH_CHUNK = 1 << 20


@dataclass(frozen=True, eq=False)
class Dataset:
    """A labelled dataset: exactly one of ``paths`` (image files), ``arrays`` (in-memory images) or ``texts``.

    ``labels[i]`` indexes ``classes``; ``shapes[i]`` is image i's (height, width, channels) after decoding;
    ``skipped`` lists (file, reason) for what was dropped with ``on_error='skip'``.
    """

    name: str
    modality: Literal["image", "text"]
    labels: npt.NDArray[np.int64]
    classes: tuple[str, ...]
    paths: tuple[str, ...] | None = None
    arrays: tuple[npt.NDArray[np.uint8], ...] | None = None
    texts: tuple[str, ...] | None = None
    shapes: tuple[tuple[int, int, int], ...] = ()
    skipped: tuple[tuple[str, str], ...] = ()
    _content_hash: str | None = field(default=None, init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        sources = [s for s in (self.paths, self.arrays, self.texts) if s is not None]
        if len(sources) != 1:
            raise ValueError("a Dataset needs exactly one of paths, arrays or texts")
        if (self.texts is not None) != (self.modality == "text"):
            raise ValueError(f"modality {self.modality!r} does not match the items given")
        count = len(sources[0])
        if self.labels.shape != (count,):
            raise ValueError(f"labels have shape {self.labels.shape}, expected ({count},)")
        if self.modality == "image" and len(self.shapes) != count:
            raise ValueError(f"{len(self.shapes)} shapes for {count} images")

    def __len__(self) -> int:
        return len(self.labels)

    def load_image(self, index: int) -> npt.NDArray[np.uint8]:
        """Image ``index`` as a uint8 H x W x C array (C is 1 or 3).

        :raises ZooprobeError: when the file can no longer be decoded.
        """
        if self.arrays is not None:
            return self.arrays[index]
        if self.paths is None:
            raise TypeError(f"dataset {self.name!r} holds texts, not images")
        path = self.paths[index]
        try:
            return _decode(Path(path))
        except _BadImage as exc:
            raise ZooprobeError(f"cannot decode image '{path}' ({exc}): re-save or remove the file") from exc

    def summary(self) -> dict[str, Any]:
        """Counts per class and either image sizes and channel counts, or text lengths in characters.

        ``image_size`` holds the smallest and largest height and width seen, each as ``[height, width]``;
        more than one value in ``channels`` means grayscale and colour images are mixed.
        """
        import numpy as np

        counts = np.bincount(self.labels, minlength=len(self.classes))
        out: dict[str, Any] = {
            "name": self.name,
            "modality": self.modality,
            "examples": len(self),
            "classes": len(self.classes),
            "per_class": {name: int(n) for name, n in zip(self.classes, counts, strict=True)},
            "skipped": len(self.skipped),
        }
        if self.texts is not None:
            lengths = [len(text) for text in self.texts] or [0]
            out["text_length"] = {
                "min": min(lengths),
                "median": statistics.median(lengths),
                "max": max(lengths),
            }
        else:
            heights = [s[0] for s in self.shapes] or [0]
            widths = [s[1] for s in self.shapes] or [0]
            out["image_size"] = {"min": [min(heights), min(widths)], "max": [max(heights), max(widths)]}
            out["channels"] = sorted({s[2] for s in self.shapes})
        return out

    def content_hash(self) -> str:
        """sha256 hex digest of the examples' bytes (file contents, array bytes or texts), labels and classes.

        It ignores where the files live, so moving a dataset keeps its cache key. It is computed once per
        Dataset (an image folder is read in full) and kept on it: assess and finetune ask for it per
        candidate and per cached feature file.
        """
        if self._content_hash is None:
            object.__setattr__(self, "_content_hash", self._digest())
        assert self._content_hash is not None
        return self._content_hash

    def _digest(self) -> str:
        import numpy as np

        digest = hashlib.sha256()

        def put(data: bytes) -> None:
            # length prefixes keep concatenations unambiguous ("ab"+"c" vs "a"+"bc")
            digest.update(len(data).to_bytes(8, "little"))
            digest.update(data)

        put(self.modality.encode())
        put(json.dumps(list(self.classes)).encode())
        put(np.ascontiguousarray(self.labels, dtype="<i8").tobytes())
        if self.texts is not None:
            for text in self.texts:
                put(text.encode("utf-8"))
        elif self.arrays is not None:
            for array in self.arrays:
                put(json.dumps(list(array.shape)).encode())
                put(np.ascontiguousarray(array).tobytes())
        else:
            assert self.paths is not None
            for path in self.paths:
                try:
                    with open(path, "rb") as handle:
                        digest.update(Path(path).stat().st_size.to_bytes(8, "little"))
                        while chunk := handle.read(_HASH_CHUNK):
                            digest.update(chunk)
                except OSError as exc:
                    raise ZooprobeError(
                        f"cannot read '{path}' ({exc.strerror or exc}): restore the file or read the dataset again"
                    ) from exc
        return digest.hexdigest()


class _BadImage(Exception):
    """A file that Pillow cannot decode; the message is Pillow's reason."""


def _to_array(image: Image.Image) -> npt.NDArray[np.uint8]:
    import numpy as np
    from PIL import ImageOps

    image = ImageOps.exif_transpose(image)  # phone photos store their rotation in EXIF
    mode = image.mode
    if mode.startswith("I") or mode == "F":
        wide = np.asarray(image).astype(np.float64)
        # 16-bit grayscale (PNG, TIFF) keeps its top 8 bits; 8-bit values stored wide stay as they are
        if mode.startswith("I;16") or (mode == "I" and wide.max(initial=0) > 255):
            wide = wide / 257.0
        array = np.clip(np.rint(wide), 0, 255).astype(np.uint8)
    else:
        if mode in ("1", "LA", "La"):
            image = image.convert("L")
        elif mode in ("P", "PA"):
            image = image.convert("RGBA").convert("RGB")
        elif mode != "L" and mode != "RGB":
            image = image.convert("RGB")  # RGBA drops alpha; CMYK, YCbCr and the rest become RGB
        array = np.asarray(image, dtype=np.uint8)
    if array.ndim == 2:
        array = array[:, :, None]
    return np.ascontiguousarray(array)


def _decode(source: Path | IO[bytes]) -> npt.NDArray[np.uint8]:
    from PIL import Image

    try:
        with Image.open(source) as image:
            image.load()
            return _to_array(image)
    except (OSError, SyntaxError, ValueError, EOFError, IndexError, struct.error, Image.DecompressionBombError) as exc:
        raise _BadImage(str(exc) or type(exc).__name__) from exc
