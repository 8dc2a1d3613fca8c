"""The format readers behind :func:`~zooprobe.data.datasets.read_dataset`: scikit-learn's digits, image
folders, CSV and Parquet manifests, ``.npz`` arrays and Hugging Face ``save_to_disk`` directories.

Every image is decoded once while reading, so a bad file is reported before any model runs; a bad
example raises at once (``on_error='fail'``) or is dropped and listed (``'skip'``).
"""

from __future__ import annotations

import csv
import io
import math
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from ..errors import ZooprobeError
from .dataset import Dataset, OnError, _BadImage, _decode

if TYPE_CHECKING:
    import numpy as np
    import numpy.typing as npt

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff")
ACCEPTED_SPECS = (
    "'sklearn:digits'",
    "an image folder root/<class>/<image>.{jpg,jpeg,png,bmp,gif,webp}",
    "a .csv or .parquet manifest with columns path,label or text,label",
    "a .npz file with arrays x (N,H,W[,C]) and y (N,)",
    "a Hugging Face datasets directory written by save_to_disk",
)
_SKIP_HINT = "or drop it with --on-error skip (on_error='skip' from Python)"


class _Problems:
    """Bad examples: raised at once with on_error='fail', collected with 'skip'."""

    def __init__(self, on_error: OnError) -> None:
        self.on_error = on_error
        self.skipped: list[tuple[str, str]] = []

    def report(self, source: str, reason: str, fix: str) -> None:
        reason = " ".join(reason.split())
        if self.on_error == "fail":
            raise ZooprobeError(f"'{source}': {reason}; {fix}, {_SKIP_HINT}")
        self.skipped.append((source, reason))


@dataclass
class _Example:
    source: str
    label: str
    path: str | None = None
    array: npt.NDArray[np.uint8] | None = None
    text: str | None = None
    shape: tuple[int, int, int] = (0, 0, 0)


def _accepted() -> str:
    return "one of: " + "; ".join(ACCEPTED_SPECS)


def _sort_classes(names: Iterable[str]) -> tuple[str, ...]:
    """Numeric order when every name is an integer ('2' before '10'), else string order."""
    unique = set(names)
    try:
        # the name breaks ties ('1' and '01'): set order would follow the hash seed
        return tuple(sorted(unique, key=lambda name: (int(name), name)))
    except ValueError:
        return tuple(sorted(unique))


def _label_text(value: Any) -> str | None:
    """A label cell as a class name, or None when it is missing (None, NaN, empty)."""
    if value is None:
        return None
    if isinstance(value, bytes):
        value = value.decode("utf-8", errors="replace")
    if isinstance(value, float):
        if math.isnan(value):
            return None
        if value.is_integer():
            return str(int(value))
    if hasattr(value, "item") and not isinstance(value, str):
        return _label_text(value.item())  # numpy scalars
    text = str(value).strip()
    return text or None


def _probe(path: Path, source: str, label: str, problems: _Problems) -> _Example | None:
    """An example for an image file, after checking it decodes; None (and a reported problem) when not."""
    if not path.is_file():
        problems.report(source, "image file not found", "fix the path (relative to the manifest's folder)")
        return None
    try:
        array = _decode(path)
    except _BadImage as exc:
        problems.report(source, f"cannot decode image ({exc})", "re-save or remove the file")
        return None
    height, width, channels = array.shape
    return _Example(source=source, label=label, path=str(path), shape=(height, width, channels))


def _assemble(name: str, modality: Literal["image", "text"], examples: list[_Example], problems: _Problems) -> Dataset:
    """Drop classes with a single example (they cannot be stratified) and build the Dataset."""
    import numpy as np

    counts = Counter(example.label for example in examples)
    kept: list[_Example] = []
    for example in examples:
        if counts[example.label] == 1:
            problems.report(
                example.source,
                f"class '{example.label}' has only one example, too few to split into train and validation",
                "add another example of it or remove the class",
            )
        else:
            kept.append(example)
    classes = _sort_classes(example.label for example in kept)
    if len(classes) < 2:
        dropped = f" after skipping {len(problems.skipped)} bad examples" if problems.skipped else ""
        raise ZooprobeError(
            f"dataset '{name}' has {len(classes)} usable class(es){dropped}: "
            "add labelled examples so that at least 2 classes have 2 or more each"
        )
    index = {label: i for i, label in enumerate(classes)}
    labels = np.array([index[example.label] for example in kept], dtype=np.int64)
    skipped = tuple(problems.skipped)
    if modality == "text":
        texts = tuple(example.text or "" for example in kept)
        return Dataset(name=name, modality="text", labels=labels, classes=classes, texts=texts, skipped=skipped)
    shapes = tuple(example.shape for example in kept)
    if kept[0].path is not None:
        paths = tuple(example.path or "" for example in kept)
        return Dataset(name, "image", labels, classes, paths=paths, shapes=shapes, skipped=skipped)
    arrays = tuple(example.array for example in kept if example.array is not None)
    return Dataset(name, "image", labels, classes, arrays=arrays, shapes=shapes, skipped=skipped)


def _read_digits() -> Dataset:
    import numpy as np
    from sklearn.datasets import load_digits

    bunch = load_digits()
    # pixel values are 0..16
    images = np.rint(np.asarray(bunch.images, dtype=np.float64) * (255.0 / 16.0)).astype(np.uint8)[..., None]
    labels = np.asarray(bunch.target, dtype=np.int64)
    arrays = tuple(images)
    shapes = tuple((8, 8, 1) for _ in arrays)
    classes = tuple(str(i) for i in range(10))
    return Dataset("sklearn:digits", "image", labels, classes, arrays=arrays, shapes=shapes)


def _read_folder(root: Path, problems: _Problems) -> Dataset:
    class_dirs = sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    if not class_dirs:
        raise ZooprobeError(
            f"image folder '{root}' has no class subfolders: put each class's images in {root}/<class name>/"
        )
    examples: list[_Example] = []
    for class_dir in class_dirs:
        files = sorted(
            p
            for p in class_dir.iterdir()
            if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS and not p.name.startswith(".")
        )
        if not files:
            nested = any(p.is_dir() and not p.name.startswith(".") for p in class_dir.iterdir())
            problems.report(
                str(class_dir),
                f"empty class folder (no {', '.join(IMAGE_EXTENSIONS)} files"
                + (" directly in it; images in its subfolders are not read)" if nested else ")"),
                "move the images up into it or remove it" if nested else "add images to it or remove it",
            )
        for file in files:
            example = _probe(file, str(file), class_dir.name, problems)
            if example is not None:
                examples.append(example)
    return _assemble(root.name, "image", examples, problems)


def _read_table(
    manifest: Path, columns: Sequence[str], rows: Iterable[tuple[str, dict[str, Any]]], problems: _Problems
) -> Dataset:
    """Examples from manifest rows ((where, cells) pairs, where is 'file:line' for messages)."""
    by_name = {column.strip().lower(): column for column in columns if column is not None}
    has_path, has_text = "path" in by_name, "text" in by_name
    if "label" not in by_name or has_path == has_text:
        raise ZooprobeError(
            f"manifest '{manifest}' has columns {', '.join(repr(c) for c in columns)}: "
            "it needs a 'label' column and either a 'path' column (image files) or a 'text' column"
        )
    label_col = by_name["label"]
    item_col = by_name["path" if has_path else "text"]
    examples: list[_Example] = []
    for where, cells in rows:
        label = _label_text(cells.get(label_col))
        if label is None:
            problems.report(where, "missing label (empty label cell)", "fill in the label")
            continue
        item = cells.get(item_col)
        if item is None or (isinstance(item, float) and math.isnan(item)) or not str(item).strip():
            problems.report(where, f"empty {'path' if has_path else 'text'} cell", "fill it in or remove the row")
            continue
        if has_text:
            examples.append(_Example(source=where, label=label, text=str(item)))
            continue
        path = Path(str(item).strip()).expanduser()
        if not path.is_absolute():
            path = manifest.parent / path
        example = _probe(path, str(path), label, problems)
        if example is not None:
            examples.append(example)
    return _assemble(manifest.name, "image" if has_path else "text", examples, problems)


def _read_csv(manifest: Path, problems: _Problems) -> Dataset:
    try:
        # utf-8-sig: spreadsheet programs often start CSV exports with a byte-order mark
        with open(manifest, newline="", encoding="utf-8-sig") as handle:
            reader = csv.DictReader(handle)
            columns = list(reader.fieldnames or [])
            rows = [(f"{manifest}:{reader.line_num}", dict(row)) for row in reader]
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise ZooprobeError(f"cannot read CSV manifest '{manifest}' ({exc}): save it as UTF-8 CSV") from exc
    return _read_table(manifest, columns, rows, problems)


def _read_parquet(manifest: Path, problems: _Problems) -> Dataset:
    try:
        import pandas as pd
        import pyarrow  # noqa: F401
    except ImportError as exc:
        raise ZooprobeError(
            f"reading the Parquet manifest '{manifest}' needs pandas and pyarrow: pip install pandas pyarrow"
        ) from exc
    try:
        frame = pd.read_parquet(manifest)
    except (OSError, ValueError) as exc:
        raise ZooprobeError(f"cannot read Parquet manifest '{manifest}' ({exc}): check the file") from exc
    columns = [str(column) for column in frame.columns]
    frame.columns = columns
    records = frame.to_dict(orient="records")
    rows = [(f"{manifest} row {i}", record) for i, record in enumerate(records)]
    return _read_table(manifest, columns, rows, problems)


def _images_from_array(x: npt.NDArray[Any], source: Path) -> npt.NDArray[np.uint8]:
    """(N, H, W) or (N, H, W, C) numbers -> (N, H, W, 1 or 3) uint8; floats in [0, 1] are scaled to 0..255."""
    import numpy as np

    if x.ndim == 3:
        x = x[..., None]
    if x.ndim != 4 or x.shape[-1] not in (1, 2, 3, 4):
        raise ZooprobeError(
            f"'x' in '{source}' has shape {x.shape}: save images as (N, H, W) or (N, H, W, C) with C in 1, 3, 4"
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
        with np.load(path, allow_pickle=False) as archive:
            keys = list(archive.keys())
            if "x" not in keys or "y" not in keys:
                raise ZooprobeError(
                    f"'{path}' has arrays {keys}: save images as 'x' and labels as 'y' (np.savez(path, x=..., y=...))"
                )
            x, y = archive["x"], archive["y"]
    except (OSError, ValueError, EOFError) as exc:
        # ValueError covers object arrays, which would need pickle to load
        raise ZooprobeError(
            f"cannot read '{path}' ({exc}): save plain numeric/string arrays with np.savez(path, x=..., y=...)"
        ) from exc
    if y.ndim != 1 or len(y) != len(x):
        raise ZooprobeError(f"'y' in '{path}' has shape {y.shape} for {len(x)} images: save one label per image")
    if y.dtype.kind not in "iuUSf":
        raise ZooprobeError(f"'y' in '{path}' has dtype {y.dtype}: save labels as integers or strings")
    images = _images_from_array(x, path)
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
    if isinstance(loaded, datasets.DatasetDict):
        splits = list(loaded.keys())
        if "train" in loaded:
            table = loaded["train"]
        elif len(splits) == 1:
            table = loaded[splits[0]]
        else:
            raise ZooprobeError(
                f"Hugging Face dataset '{root}' has splits {splits} and none is 'train': "
                "save the split you want on its own with save_to_disk"
            )
    else:
        table = loaded
    features = table.features
    columns = list(features.keys())
    label_col = next((c for c, f in features.items() if isinstance(f, datasets.ClassLabel)), None)
    label_col = label_col or next((c for c in ("label", "labels") if c in features), None)
    image_col = next((c for c, f in features.items() if isinstance(f, datasets.Image)), None)
    text_col = next((c for c in ("text", "sentence", "content") if c in features), None)
    if label_col is None or (image_col is None and text_col is None):
        raise ZooprobeError(
            f"Hugging Face dataset '{root}' has columns {columns}: it needs a ClassLabel or 'label' column "
            "and an Image or 'text' column"
        )
    label_feature = features[label_col]
    names = label_feature.names if isinstance(label_feature, datasets.ClassLabel) else None
    raw_labels = list(table[label_col])
    examples: list[_Example] = []
    if image_col is not None:
        # undecoded cells ({'bytes', 'path'}) so that one bad image is reported instead of failing the whole column
        cells = list(table.cast_column(image_col, datasets.Image(decode=False))[image_col])
    else:
        cells = list(table[text_col])
    for i, (cell, raw) in enumerate(zip(cells, raw_labels, strict=True)):
        where = f"{root}[{i}]"
        if names is not None and isinstance(raw, int):
            raw = names[raw] if 0 <= raw < len(names) else None  # ClassLabel uses -1 for missing
        label = _label_text(raw)
        if label is None:
            problems.report(where, "missing label", "fill in the label")
            continue
        if image_col is None:
            if not isinstance(cell, str) or not cell.strip():
                problems.report(where, "empty text", "fill it in or remove the row")
                continue
            examples.append(_Example(where, label, text=cell))
            continue
        data = cell.get("bytes") if isinstance(cell, dict) else None
        file = cell.get("path") if isinstance(cell, dict) else None
        if not data and not file:
            problems.report(where, "missing image", "add the image or remove the row")
            continue
        try:
            array = _decode(io.BytesIO(data) if data else Path(str(file)))
        except _BadImage as exc:
            problems.report(where, f"cannot decode image ({exc})", "re-save or remove the image")
            continue
        height, width, channels = array.shape
        examples.append(_Example(where, label, array=array, shape=(height, width, channels)))
    return _assemble(root.name, "image" if image_col is not None else "text", examples, problems)
