"""Labelled datasets read from the user's files into one in-memory description.

Accepted specs (see :func:`read_dataset`): ``sklearn:digits``; an image folder ``root/<class>/<image>``;
a text folder ``root/<class>/<text>.txt`` (one example per file); a CSV or Parquet manifest with
``path,label`` (paths relative to the manifest's folder), ``text,label`` or sentence pairs
``text_a,text_b,label`` (or GLUE's ``sentence1,sentence2``) columns, and optionally a ``split`` column
(:mod:`zooprobe.data.splits`); a NumPy ``.npz`` with ``x`` images and ``y`` labels; a Hugging Face
``datasets`` directory written by ``save_to_disk`` (a ``DatasetDict``'s train/validation/test splits
are kept as given).

Every image is decoded once while reading (at a small size: :mod:`.decode`), so a bad file is reported
before any model runs. Images are uint8 H x W x C arrays with C = 1 (grayscale) or 3 (RGB); alpha is
dropped.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import math
import statistics
import zipfile
import zlib
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from ..errors import InvalidChoiceError, ZooprobeError
from . import decode, hygiene
from .hygiene import OnDuplicates
from .split_column import SPLIT_COLUMN, SPLITS, check_splits, split_name
from .text_readers import FORTUNES, fortune_items, is_text_folder, pair_columns, text_folder_items

if TYPE_CHECKING:
    import numpy as np
    import numpy.typing as npt

OnError = Literal["skip", "fail"]
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


def read_dataset(
    spec: str,
    on_error: OnError = "fail",
    on_duplicates: OnDuplicates = "error",
    *,
    max_pixels: int | None = None,
    paths_outside: bool = False,
) -> Dataset:
    """Read the labelled dataset that ``spec`` names (see the module docstring for the accepted forms).

    With ``on_error='fail'`` bad examples (undecodable image, missing file, missing or NaN label, empty
    class folder, class with one example) raise one error naming them all (the first ten, and the count);
    with ``'skip'`` they are dropped and listed in ``Dataset.skipped``. Examples with the same content
    (file bytes, image array, text) raise with ``on_duplicates='error'``; ``'keep-first'`` keeps the first
    of each, ``'drop'`` keeps one copy and drops contents given two labels (see
    :func:`~zooprobe.data.hygiene.resolve_duplicates`); what is dropped is listed in ``Dataset.skipped``.
    The built-in ``sklearn:digits`` holds no exact duplicates.

    Image files over ``max_pixels`` pixels (default ``$ZOOPROBE_MAX_PIXELS``, else 178,956,970; 0 for no
    limit) are bad examples, refused from their header. Manifest paths must lie inside the manifest's
    folder (relative, without ``..`` or ``~``) unless ``paths_outside`` is true.

    :raises ZooprobeError: for an unknown spec or bad input.
    """
    if on_error not in ("skip", "fail"):
        raise InvalidChoiceError("on_error", str(on_error), ("skip", "fail"))
    problems = _Problems(on_error, hygiene.check_policy(on_duplicates))
    problems.max_pixels = decode.max_pixels(max_pixels)
    problems.paths_outside = paths_outside
    if spec.startswith("sklearn:"):
        if spec != "sklearn:digits":
            raise ZooprobeError(f"unknown scikit-learn dataset '{spec}': the only one built in is 'sklearn:digits'")
        return _read_digits()
    if spec.startswith(FORTUNES):
        name, items = fortune_items(spec, problems.report)
        return _assemble(f"fortunes:{name}", "text", [_Example(*item[:2], text=item[2]) for item in items], problems)
    path = Path(spec).expanduser()
    if not path.exists():
        raise ZooprobeError(f"dataset '{spec}' does not exist: give {_accepted()}")
    if path.is_dir():
        if (path / "dataset_dict.json").is_file() or (path / "state.json").is_file():
            return _read_hf(path, problems)
        return _read_text_folder(path, problems) if is_text_folder(path) else _read_folder(path, problems)
    suffix = path.suffix.lower()
    if suffix == ".csv":
        return _read_csv(path, problems)
    if suffix in (".parquet", ".pq"):
        return _read_parquet(path, problems)
    if suffix == ".npz":
        return _read_npz(path, problems)
    raise ZooprobeError(f"cannot read dataset '{spec}' (unknown file type '{suffix}'): give {_accepted()}")


def stratified_split(
    dataset: Dataset, val_fraction: float = 0.2, seed: int = 0
) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int64]]:
    """Sorted (train, val) indices holding about ``val_fraction`` of each class in val, the same for a seed.

    A class with at least 2 examples has at least one in each part; a class with one example goes to train.
    Examples with the same content stay on one side, the side of the first of them (counted once, in its class).

    :raises ZooprobeError: when ``val_fraction`` is not strictly between 0 and 1.
    """
    import numpy as np

    if not 0 < val_fraction < 1:
        raise ZooprobeError(f"val_fraction {val_fraction!r} must be between 0 and 1 (exclusive), for example 0.2")
    rng = np.random.default_rng(seed)
    groups = hygiene.content_groups(dataset)
    firsts = np.arange(len(dataset)) if groups is None else np.flatnonzero(groups == np.arange(len(groups)))
    train: list[npt.NDArray[np.int64]] = []
    val: list[npt.NDArray[np.int64]] = []
    for label in range(len(dataset.classes)):
        members = rng.permutation(firsts[dataset.labels[firsts] == label]).astype(np.int64)
        if len(members) < 2:
            train.append(members)
            continue
        n_val = min(max(math.floor(len(members) * val_fraction + 0.5), 1), len(members) - 1)
        val.append(members[:n_val])
        train.append(members[n_val:])

    def join(parts: list[npt.NDArray[np.int64]]) -> npt.NDArray[np.int64]:
        chosen = np.sort(np.concatenate(parts)) if parts else np.empty(0, dtype=np.int64)
        return chosen if groups is None else np.flatnonzero(np.isin(groups, chosen)).astype(np.int64)

    return join(train), join(val)


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


def _shown(text: str) -> str:
    """``text`` with line breaks and other unprintable characters escaped: file names and cells are the
    user's, and every error stays on one line."""
    return text if text.isprintable() else "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)


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
