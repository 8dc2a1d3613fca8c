"""Readers of the dataset formats a user has: image and text folders, CSV and Parquet manifests, the
built-in digits and fortunes; the problems found while reading, reported together."""

from __future__ import annotations

import csv
import math
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from ..errors import ZooprobeError
from . import decode, hygiene
from .dataset import Dataset, OnError, _shown
from .hygiene import OnDuplicates
from .split_column import SPLIT_COLUMN, check_splits, split_name
from .text_readers import pair_columns, text_folder_items

if TYPE_CHECKING:
    import numpy as np
    import numpy.typing as npt


IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff")


ACCEPTED_SPECS = (
    "'sklearn:digits'",
    "an image folder root/<class>/<image>.{jpg,jpeg,png,bmp,gif,webp}",
    "a text folder root/<class>/<text>.txt",
    "'fortunes:CATEGORY,CATEGORY,...' (the fortune program's files)",
    "a .csv or .parquet manifest with columns path,label or text,label or text_a,text_b,label (and optionally split)",
    "a .npz file with arrays x (N,H,W[,C]) and y (N,)",
    "a Hugging Face datasets directory written by save_to_disk",
)


_SKIP_HINT = "or drop it with --on-error skip (on_error='skip' from Python)"


class _Problems:
    """Bad examples: with on_error='fail' collected and raised together (:meth:`fail`), so that one pass
    fixes them all; with 'skip' collected and dropped."""

    SHOWN = 10  # bad examples named in the error; the rest are counted

    def __init__(self, on_error: OnError, on_duplicates: OnDuplicates = "error") -> None:
        self.on_error = on_error
        self.on_duplicates = on_duplicates
        self.skipped: list[tuple[str, str]] = []
        self.failed: list[tuple[str, str, str]] = []
        self.max_pixels = decode.DEFAULT_MAX_PIXELS
        self.paths_outside = False  # manifest paths may leave the manifest's folder

    def report(self, source: str, reason: str, fix: str) -> None:
        source, reason = _shown(source), " ".join(_shown(reason).split())
        if self.on_error == "fail":
            self.failed.append((source, reason, fix))
        else:
            self.skipped.append((source, reason))

    def fail(self) -> None:
        """:raises ZooprobeError: naming the bad examples reported so far (the first :attr:`SHOWN`), if any."""
        if len(self.failed) == 1:
            source, reason, fix = self.failed[0]
            raise ZooprobeError(f"'{source}': {reason}; {fix}, {_SKIP_HINT}")
        if self.failed:
            named = "; ".join(f"'{source}': {reason} ({fix})" for source, reason, fix in self.failed[: self.SHOWN])
            more = f"; and {len(self.failed) - self.SHOWN} more" if len(self.failed) > self.SHOWN else ""
            raise ZooprobeError(
                f"{len(self.failed)} bad examples: {named}{more}; fix them,"
                " or drop them with --on-error skip (on_error='skip' from Python)"
            )


@dataclass
class _Example:
    source: str
    label: str
    path: str | None = None
    array: npt.NDArray[np.uint8] | None = None
    text: str | None = None
    shape: tuple[int, int, int] = (0, 0, 0)
    text_b: str | None = None
    split: str | None = None


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


def _not_one_value(value: Any) -> str | None:
    """Why a cell cannot be one label, path or text (it holds a list, an array or a mapping), else None."""
    dimensions = getattr(value, "ndim", None)
    if isinstance(value, (list, tuple, set, dict)) or (isinstance(dimensions, int) and dimensions > 0):
        return f"holds a {type(value).__name__}, not one value"
    return None


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
    # a NaN written out as text (pandas, spreadsheets) is a missing label, not a class named 'nan'
    return text if text and text.lower() != "nan" else None


def _blank(value: Any) -> bool:
    """A missing cell: None, NaN or only whitespace."""
    return value is None or (isinstance(value, float) and math.isnan(value)) or not str(value).strip()


def _probe(path: Path, source: str, label: str, problems: _Problems) -> _Example | None:
    """An example for an image file, after checking it decodes; None (and a reported problem) when not."""
    if not path.is_file():
        problems.report(source, "image file not found", "fix the path (relative to the manifest's folder)")
        return None
    try:
        height, width, channels = decode.probe(path, limit=problems.max_pixels)
    except decode.TooLarge as exc:
        problems.report(source, exc.reason, exc.fix)
        return None
    except decode.BadImage as exc:
        problems.report(source, f"cannot decode image ({exc})", "re-save or remove the file")
        return None
    return _Example(source=source, label=label, path=str(path), shape=(height, width, channels))


def _assemble(
    name: str,
    modality: Literal["image", "text"],
    examples: list[_Example],
    problems: _Problems,
    order: Sequence[str] = (),
) -> Dataset:
    """Settle duplicates, drop classes with a single example (they cannot be stratified), build the Dataset.

    Classes follow ``order`` where the data declare one (a ``ClassLabel``'s names), else :func:`_sort_classes`.
    """
    import numpy as np

    problems.fail()  # the bad files first: a class may have one example left only because of them
    keys = [hygiene.example_key(e.path, e.array, e.text, e.text_b) for e in examples]
    kept_at, copies = hygiene.resolve_duplicates(
        name, keys, [_shown(e.label) for e in examples], [_shown(e.source) for e in examples], problems.on_duplicates
    )
    problems.skipped.extend(copies)
    examples = [examples[i] for i in kept_at]
    keys = [keys[i] for i in kept_at]
    if any(example.split is not None for example in examples):  # before a class of one example is dropped
        check_splits(name, [example.split or "" for example in examples], [example.label for example in examples])
    counts = Counter(example.label for example in examples)
    kept: list[_Example] = []
    kept_keys: list[str] = []
    for example, key in zip(examples, keys, strict=True):
        if counts[example.label] == 1:
            problems.report(
                example.source,
                f"class '{example.label}' has only one example, too few to split into train and validation",
                "add another example of it or remove the class",
            )
        else:
            kept.append(example)
            kept_keys.append(key)
    problems.fail()
    present = {example.label for example in kept}
    declared = tuple(label for label in order if label in present)
    classes = declared if len(declared) == len(present) else _sort_classes(present)
    if len(classes) < 2:
        dropped = f" after skipping {len(problems.skipped)} bad examples" if problems.skipped else ""
        raise ZooprobeError(
            f"dataset '{name}' has {len(classes)} usable class(es){dropped}: "
            "add labelled examples so that at least 2 classes have 2 or more each"
        )
    index = {label: i for i, label in enumerate(classes)}
    labels = np.array([index[example.label] for example in kept], dtype=np.int64)
    skipped = tuple(problems.skipped)
    splits = None
    if any(example.split is not None for example in kept):
        splits = tuple(example.split or "" for example in kept)
    if modality == "text":
        texts = tuple(example.text or "" for example in kept)
        seconds = tuple(e.text_b or "" for e in kept) if any(e.text_b is not None for e in kept) else None
        text_set = Dataset(name, "text", labels, classes, texts=texts, skipped=skipped, texts_b=seconds, splits=splits)
        return hygiene.remember_keys(text_set, kept_keys)
    shapes = tuple(example.shape for example in kept)
    if kept[0].path is not None:
        paths = tuple(example.path or "" for example in kept)
        return hygiene.remember_keys(
            Dataset(
                name,
                "image",
                labels,
                classes,
                paths=paths,
                shapes=shapes,
                skipped=skipped,
                splits=splits,
                max_pixels=problems.max_pixels,
            ),
            kept_keys,
        )
    arrays = tuple(example.array for example in kept if example.array is not None)
    return hygiene.remember_keys(
        Dataset(name, "image", labels, classes, arrays=arrays, shapes=shapes, skipped=skipped, splits=splits),
        kept_keys,
    )


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


def _read_text_folder(root: Path, problems: _Problems) -> Dataset:
    examples = [_Example(source, label, text=text) for source, label, text in text_folder_items(root, problems.report)]
    return _assemble(root.name, "text", examples, problems)


def _read_table(
    manifest: Path, columns: Sequence[str], rows: Iterable[tuple[str, dict[str, Any]]], problems: _Problems
) -> Dataset:
    """Examples from manifest rows ((where, cells) pairs, where is 'file:line' for messages)."""
    by_name = {column.strip().lower(): column for column in columns if column is not None}
    pair = pair_columns(manifest, by_name.values())
    has_path, has_text = "path" in by_name, "text" in by_name or pair is not None
    if "label" not in by_name or has_path == has_text:
        raise ZooprobeError(
            f"manifest '{manifest}' has columns {', '.join(repr(c) for c in columns)}: "
            "it needs a 'label' column and either a 'path' column (image files), a 'text' column,"
            " or 'text_a' and 'text_b' (sentence pairs)"
        )
    label_col = by_name["label"]
    item_cols = pair or (by_name["path" if has_path else "text"],)
    split_col = by_name.get(SPLIT_COLUMN)
    examples: list[_Example] = []
    for where, cells in rows:
        several = [(column, why) for column in (label_col, *item_cols) if (why := _not_one_value(cells.get(column)))]
        if several:
            column, why = several[0]
            problems.report(where, f"the '{column}' cell {why}", "give one value per cell (one class name per row)")
            continue
        label = _label_text(cells.get(label_col))
        if label is None:
            problems.report(where, "missing label (empty or NaN label cell)", "fill in the label")
            continue
        split = None if split_col is None else split_name(cells.get(split_col), where)
        items = [cells.get(column) for column in item_cols]
        items = [item.decode("utf-8", errors="replace") if isinstance(item, bytes) else item for item in items]
        empty = [c for c, v in zip(item_cols, items, strict=True) if _blank(v)]
        if empty:
            problems.report(where, f"empty '{empty[0]}' cell", "fill it in or remove the row")
            continue
        if has_text:
            second = str(items[1]) if pair else None
            examples.append(_Example(source=where, label=label, text=str(items[0]), text_b=second, split=split))
            continue
        written = str(items[0]).strip()
        path = Path(written).expanduser()
        if not problems.paths_outside and (
            written.startswith("~") or Path(written).is_absolute() or ".." in Path(written).parts
        ):
            problems.report(
                where,
                f"path '{written}' is outside the manifest's folder",
                "give paths relative to the manifest's folder, without '..' or '~' (move the manifest up to"
                " a folder that holds the images), or pass paths_outside=True from Python",
            )
            continue
        if not path.is_absolute():
            path = manifest.parent / path
        example = _probe(path, str(path), label, problems)
        if example is not None:
            example.split = split
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
