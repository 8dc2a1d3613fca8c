"""The Dataset record: the examples read (files, arrays or texts), their labels, classes and splits."""

from __future__ import annotations

import hashlib
import json
import statistics
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from ..errors import ZooprobeError
from . import decode, hygiene

if TYPE_CHECKING:
    import numpy as np
    import numpy.typing as npt


OnError = Literal["skip", "fail"]


@dataclass(frozen=True, eq=False)
class Dataset:
    """A labelled dataset: exactly one of ``paths`` (image files), ``arrays`` (in-memory images) or ``texts``.

    ``labels[i]`` indexes ``classes``; ``shapes[i]`` is image i's (height, width, channels) after decoding;
    ``skipped`` lists (file, reason) for what was dropped with ``on_error='skip'``; image files are
    decoded within the pixel limit ``max_pixels``. ``texts_b`` holds the second text of each sentence
    pair (``texts`` the first); ``splits`` the split each example was given (``train``, ``validation``,
    ``test``), None when the data bring none.
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
    texts_b: tuple[str, ...] | None = None
    splits: tuple[str, ...] | None = None
    max_pixels: int | None = None  # the pixel limit it was read with (None: the default, see decode.max_pixels)
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
        if self.texts_b is not None and (self.texts is None or len(self.texts_b) != count):
            raise ValueError("texts_b needs texts, one second text per first text")
        if self.splits is not None and len(self.splits) != count:
            raise ValueError(f"{len(self.splits)} splits for {count} examples")

    def __len__(self) -> int:
        return len(self.labels)

    def load_image(self, index: int, min_size: tuple[int, int] | None = None) -> npt.NDArray[np.uint8]:
        """Image ``index`` as a uint8 H x W x C array (C is 1 or 3).

        With ``min_size``, the (height, width) the caller resizes the image to, a large image file is
        decoded at a size reduced by an integer factor that keeps at least twice ``min_size`` on each side
        (see :mod:`zooprobe.data.decode`), so memory follows what is needed rather than the original.

        :raises ZooprobeError: when the file can no longer be decoded or is over the pixel limit.
        """
        if self.arrays is not None:
            return self.arrays[index]
        if self.paths is None:
            raise TypeError(f"dataset {self.name!r} holds texts, not images")
        path = self.paths[index]
        try:
            return decode.decode(Path(path), limit=decode.max_pixels(self.max_pixels), min_size=min_size)[0]
        except decode.TooLarge as exc:
            raise ZooprobeError(f"'{_shown(path)}': {exc}") from exc
        except decode.BadImage as exc:
            reason = " ".join(str(exc).split())
            raise ZooprobeError(f"cannot decode image '{_shown(path)}' ({reason}): re-save or remove the file") from exc

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
        if self.texts_b is not None:
            out["pairs"] = True
        if self.splits is not None:
            out["splits"] = dict(Counter(self.splits))
        if self.texts is not None:
            # a pair is read as one input by a cross-encoder: its length is both texts'
            seconds = self.texts_b or ("",) * len(self.texts)
            lengths = [len(text) + len(second) for text, second in zip(self.texts, seconds, strict=True)] or [0]
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
            if self.texts_b is not None:  # only then: hashes of single-text datasets stay as they were
                put(b"pairs")
                for text in self.texts_b:
                    put(text.encode("utf-8"))
        elif self.arrays is not None:
            for array in self.arrays:
                put(json.dumps(list(array.shape)).encode())
                put(np.ascontiguousarray(array).tobytes())
        else:
            assert self.paths is not None
            for path in self.paths:
                for chunk in hygiene.file_chunks(path):
                    digest.update(chunk)
        if self.splits is not None:
            put(json.dumps(list(self.splits)).encode())
        return digest.hexdigest()


def _shown(text: str) -> str:
    """``text`` with line breaks and other unprintable characters escaped: file names and cells are the
    user's, and every error stays on one line."""
    return text if text.isprintable() else "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)
