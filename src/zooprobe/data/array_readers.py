"""Readers of examples held in arrays: NumPy ``.npz`` files and Hugging Face ``save_to_disk`` directories."""

from __future__ import annotations

import io
import zipfile
import zlib
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from ..errors import ZooprobeError
from . import decode
from .dataset import Dataset
from .readers import _assemble, _Example, _label_text, _not_one_value, _Problems
from .split_column import SPLITS
from .text_readers import pair_columns

if TYPE_CHECKING:
    import numpy as np
    import numpy.typing as npt


def _images_from_array(x: npt.NDArray[Any], source: Path) -> npt.NDArray[np.uint8]:
    """(N, H, W) or (N, H, W, C) numbers -> (N, H, W, 1 or 3) uint8; floats in [0, 1] are scaled to 0..255."""
    import numpy as np

    if x.ndim == 3:
        x = x[..., None]
    if x.ndim != 4 or x.shape[-1] not in (1, 2, 3, 4) or 0 in x.shape[1:3]:
        raise ZooprobeError(
            f"'x' in '{source}' has shape {x.shape}: save images as (N, H, W) or (N, H, W, C) with C in 1, 3, 4"
            " and H, W at least 1"
        )
    if x.shape[-1] in (2, 4):
        x = x[..., :-1]  # drop alpha
    if x.dtype == np.uint8:
        return np.ascontiguousarray(x)
    if x.dtype.kind not in "iuf":
        raise ZooprobeError(f"'x' in '{source}' has dtype {x.dtype}: save images as uint8 or float")
    values = x.astype(np.float64)
    if not np.isfinite(values).all():
        raise ZooprobeError(f"'x' in '{source}' contains NaN or infinite values: fix or drop those images")
    low, high = (float(values.min()), float(values.max())) if values.size else (0.0, 0.0)
    if low < 0 or high > 255:
        raise ZooprobeError(
            f"'x' in '{source}' has values from {low:g} to {high:g}: scale images to 0..255 (or 0..1 for floats)"
        )
    if x.dtype.kind == "f" and high <= 1.0:
        values = values * 255.0
    return np.rint(values).astype(np.uint8)


def _read_npz(path: Path, problems: _Problems) -> Dataset:
    import numpy as np

    try:
        decode.check_npz(path, problems.max_pixels)
        with np.load(path, allow_pickle=False) as archive:
            keys = list(archive.keys())
            if "x" not in keys or "y" not in keys:
                raise ZooprobeError(
                    f"'{path}' has arrays {keys}: save images as 'x' and labels as 'y' (np.savez(path, x=..., y=...))"
                )
            x, y = archive["x"], archive["y"]
    except (OSError, ValueError, EOFError, zipfile.BadZipFile, zlib.error) as exc:
        # ValueError covers object arrays, which would need pickle to load
        raise ZooprobeError(
            f"cannot read '{path}' ({exc}): save plain numeric/string arrays with np.savez(path, x=..., y=...)"
        ) from exc
    images = _images_from_array(x, path)
    if y.ndim != 1 or len(y) != len(x):
        raise ZooprobeError(f"'y' in '{path}' has shape {y.shape} for {len(x)} images: save one label per image")
    if y.dtype.kind not in "iuUSf":
        raise ZooprobeError(f"'y' in '{path}' has dtype {y.dtype}: save labels as integers or strings")
    examples: list[_Example] = []
    for i, (image, raw) in enumerate(zip(images, y.tolist(), strict=True)):
        label = _label_text(raw)
        if label is None:
            problems.report(f"{path}[{i}]", "missing label", "fill in the label")
            continue
        height, width, channels = image.shape
        examples.append(_Example(f"{path}[{i}]", label, array=image, shape=(height, width, channels)))
    return _assemble(path.name, "image", examples, problems)


def _read_hf(root: Path, problems: _Problems) -> Dataset:
    try:
        import datasets
    except ImportError as exc:
        raise ZooprobeError(
            f"'{root}' is a Hugging Face datasets directory; reading it needs the datasets package: "
            "pip install datasets"
        ) from exc

    loaded = datasets.load_from_disk(str(root))
    # a DatasetDict's own splits are kept as given (zooprobe.data.splits); a lone split is read unsplit
    tables: list[tuple[str | None, Any]] = [(None, loaded)]
    if isinstance(loaded, datasets.DatasetDict):
        names = list(loaded.keys())
        tables = [(None, loaded[names[0]])] if len(names) == 1 else [(name, loaded[name]) for name in names]
        unknown = [name for name in names if name not in SPLITS] if len(names) > 1 else []
        if unknown:
            raise ZooprobeError(
                f"Hugging Face dataset '{root}' has splits {names}: only {', '.join(SPLITS)} are read;"
                f" save it without {', '.join(repr(n) for n in unknown)}"
                f" (DatasetDict({{k: d[k] for k in {[n for n in names if n in SPLITS]}}}).save_to_disk(...))"
            )
        tables.sort(key=lambda item: SPLITS.index(item[0] or "train"))
    examples: list[_Example] = []
    modality: Literal["image", "text"] = "text"
    for split, table in tables:
        where = f"{root}" if split is None else f"{root}[{split}]"
        modality = _hf_examples(table, where, split, problems, examples)
    # a ClassLabel's order is the data's own (GLUE's positive class, 1, stays second for F1)
    label_feature = next((f for f in tables[0][1].features.values() if isinstance(f, datasets.ClassLabel)), None)
    order = tuple(label_feature.names) if label_feature is not None else ()
    return _assemble(root.name, modality, examples, problems, order)


def _hf_examples(
    table: Any, source: str, split: str | None, problems: _Problems, examples: list[_Example]
) -> Literal["image", "text"]:
    """Append one Hugging Face table's examples to ``examples``; returns the table's modality."""
    import datasets

    features = table.features
    columns = list(features.keys())
    label_col = next((c for c, f in features.items() if isinstance(f, datasets.ClassLabel)), None)
    label_col = label_col or next((c for c in ("label", "labels") if c in features), None)
    image_col = next((c for c, f in features.items() if isinstance(f, datasets.Image)), None)
    pair = pair_columns(source, columns) if image_col is None else None
    text_col = pair[0] if pair else next((c for c in ("text", "sentence", "content") if c in features), None)
    if label_col is None or (image_col is None and text_col is None):
        raise ZooprobeError(
            f"Hugging Face dataset '{source}' has columns {columns}: it needs a ClassLabel or 'label' column "
            "and an Image or 'text' column (or 'text_a' and 'text_b', 'sentence1' and 'sentence2' for pairs)"
        )
    label_feature = features[label_col]
    names = label_feature.names if isinstance(label_feature, datasets.ClassLabel) else None
    raw_labels = list(table[label_col])
    unlabelled = names is not None and all(not isinstance(r, int) or not 0 <= r < len(names) for r in raw_labels)
    if split == "test" and unlabelled:  # GLUE and others hide their test labels (-1): nothing to evaluate on
        problems.skipped.append((source, f"{len(raw_labels)} examples without labels (hidden test labels): left out"))
        return "image" if image_col is not None else "text"
    if image_col is not None:
        # undecoded cells ({'bytes', 'path'}) so that one bad image is reported instead of failing the whole column
        cells = list(table.cast_column(image_col, datasets.Image(decode=False))[image_col])
    else:
        cells = list(table[text_col])
    seconds = list(table[pair[1]]) if pair else [None] * len(cells)
    for i, (cell, second, raw) in enumerate(zip(cells, seconds, raw_labels, strict=True)):
        where = f"{source}[{i}]"
        if (why := _not_one_value(raw)) is not None:
            problems.report(where, f"the label {why}", "give one class name per example")
            continue
        if names is not None and isinstance(raw, int):
            raw = names[raw] if 0 <= raw < len(names) else None  # ClassLabel uses -1 for missing
        label = _label_text(raw)
        if label is None:
            problems.report(where, "missing label", "fill in the label")
            continue
        if image_col is None:
            if (
                not isinstance(cell, str)
                or not cell.strip()
                or (pair and (not isinstance(second, str) or not second.strip()))
            ):
                problems.report(where, "empty text", "fill it in or remove the row")
                continue
            examples.append(_Example(where, label, text=cell, text_b=second if pair else None, split=split))
            continue
        data = cell.get("bytes") if isinstance(cell, dict) else None
        file = cell.get("path") if isinstance(cell, dict) else None
        if not data and not file:
            problems.report(where, "missing image", "add the image or remove the row")
            continue
        try:
            array = decode.decode(io.BytesIO(data) if data else Path(str(file)), limit=problems.max_pixels)[0]
        except decode.TooLarge as exc:
            problems.report(where, exc.reason, exc.fix)
            continue
        except decode.BadImage as exc:
            problems.report(where, f"cannot decode image ({exc})", "re-save or remove the image")
            continue
        height, width, channels = array.shape
        examples.append(_Example(where, label, array=array, shape=(height, width, channels), split=split))
    return "image" if image_col is not None else "text"
