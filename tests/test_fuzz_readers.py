"""Fuzzed readers (hypothesis): image folders, CSV and Parquet manifests, .npz files.

Every generated case either loads (every image then decodes, at its recorded shape) or raises one
one-line ZooprobeError; any other exception, or a multi-line message, fails.
"""

from __future__ import annotations

import io
import os
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from PIL import Image

from zooprobe.data.datasets import Dataset, read_dataset
from zooprobe.errors import ZooprobeError

# ZOOPROBE_FUZZ_EXAMPLES=2000 runs a longer, random search; by default the same 40 cases on every run
LONG = os.environ.get("ZOOPROBE_FUZZ_EXAMPLES")
FUZZ = settings(
    max_examples=int(LONG or 40),
    deadline=None,
    derandomize=not LONG,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow, HealthCheck.data_too_large],
)
FORMATS = ["PNG", "JPEG", "BMP", "GIF", "WEBP", "TIFF"]
SUFFIXES = [".png", ".jpg", ".gif", ".webp", ".tif", ".bmp"]
MODES = ["L", "RGB", "RGBA", "P", "1", "LA", "I;16", "CMYK"]


@contextmanager
def scratch() -> Iterator[Path]:
    with tempfile.TemporaryDirectory() as folder:
        yield Path(folder)


def loads_or_says_why(read: Callable[[], Dataset]) -> Dataset | None:
    """The dataset ``read`` returns, checked image by image, or None after a one-line ZooprobeError."""
    try:
        dataset = read()
    except ZooprobeError as exc:
        message = str(exc)
        assert message and "\n" not in message and "Traceback" not in message, message
        event(f"refused: {message.split(':')[0][-30:] if False else type(exc).__name__}")
        return None
    event("loaded")
    assert len(dataset) == len(dataset.labels) >= 4
    assert len(dataset.classes) >= 2
    if dataset.modality == "image":
        for index in range(len(dataset)):
            try:
                pixels = dataset.load_image(index)
            except ZooprobeError as exc:  # a file changed since it was read; not in these tests
                pytest.fail(f"image {index} was read but does not load: {exc}")
            assert pixels.dtype == np.uint8 and pixels.ndim == 3 and pixels.shape[2] in (1, 3)
            assert pixels.shape == dataset.shapes[index]
            assert min(pixels.shape[:2]) >= 1
    return dataset


@st.composite
def image_bytes(draw: st.DrawFn, damage: float = 0.3) -> bytes:
    """A small image in any format and mode Pillow writes; with probability about ``damage``, damaged,
    truncated, random or no bytes instead."""
    kind = "image"
    if draw(st.floats(0, 1)) < damage:
        kind = draw(st.sampled_from(["truncated", "flipped", "random", "empty"]))
    if kind == "random":
        return draw(st.binary(min_size=1, max_size=300))
    if kind == "empty":
        return b""
    height, width = draw(st.integers(1, 24)), draw(st.integers(1, 24))
    seed = draw(st.integers(0, 2**16))
    values = np.random.default_rng(seed).integers(0, 256, (height, width, 4), dtype=np.uint8)
    mode = draw(st.sampled_from(MODES))
    image = Image.fromarray(values, "RGBA")
    if mode == "I;16":
        image = Image.fromarray(values[:, :, 0].astype(np.uint16) * 257)
    elif mode != "RGBA":
        image = image.convert(mode)
    buffer = io.BytesIO()
    fmt = draw(st.sampled_from(FORMATS))
    try:
        image.save(buffer, fmt)
    except (OSError, ValueError, KeyError):  # a mode this format cannot hold: write it as PNG
        buffer = io.BytesIO()
        image.convert("RGB").save(buffer, "PNG")
    data = buffer.getvalue()
    if kind == "truncated":
        return data[: draw(st.integers(0, len(data) - 1))]
    if kind == "flipped":
        at = draw(st.integers(0, len(data) - 1))
        return data[:at] + bytes([data[at] ^ draw(st.integers(1, 255))]) + data[at + 1 :]
    return data


ODD_NAMES = st.text(alphabet=st.characters(codec="utf-8", exclude_characters="/\\\x00"), min_size=1, max_size=8)
NAMES = st.one_of(st.sampled_from(["cat", "dog", "10", "2", "émile", " space "]), ODD_NAMES)


@FUZZ
@given(
    classes=st.dictionaries(
        NAMES.filter(lambda name: name not in (".", "..")),
        st.lists(st.tuples(st.sampled_from(SUFFIXES), image_bytes(damage=0.15)), min_size=1, max_size=5),
        min_size=1,
        max_size=3,
    ),
    on_error=st.sampled_from(["fail", "skip"]),
    on_duplicates=st.sampled_from(["error", "keep-first", "drop"]),
)
def test_image_folders(classes: dict[str, list[tuple[str, bytes]]], on_error: Any, on_duplicates: Any) -> None:
    with scratch() as root:
        for name, files in classes.items():
            try:
                (root / name).mkdir()
            except OSError:
                continue  # a name this file system refuses
            for index, (suffix, data) in enumerate(files):
                (root / name / f"{index}{suffix}").write_bytes(data)
        loads_or_says_why(lambda: read_dataset(str(root), on_error=on_error, on_duplicates=on_duplicates))


IMAGES = [f"{index}.png" for index in range(8)]
ODD_CELLS = st.one_of(
    st.sampled_from(["missing.png", "", " ", "../0.png", "/etc/hosts", "~/0.png", "sub/../0.png", "nan", "NaN"]),
    st.text(max_size=6),
    st.integers(-3, 3).map(str),
    st.sampled_from(["None", '"quoted, comma"', "a\nb", "0.png\x00"]),
)
PATH_CELLS = st.one_of(st.sampled_from(IMAGES), st.sampled_from(IMAGES), st.sampled_from(IMAGES), ODD_CELLS)
LABEL_CELLS = st.one_of(st.sampled_from(["a", "b", "c", "1", "2"]), st.sampled_from(["a", "b"]), ODD_CELLS)
HEADERS = st.one_of(
    st.just(["path", "label"]),
    st.just(["label", "path", "extra"]),
    st.just(["text", "label"]),
    st.lists(st.sampled_from(["path", "label", "text", "Path", " LABEL ", "", "x"]), max_size=4),
)


def write_images(root: Path) -> None:
    for index in range(len(IMAGES)):
        pixels = np.random.default_rng(index).integers(0, 256, (8, 9, 3), dtype=np.uint8)
        Image.fromarray(pixels).save(root / IMAGES[index])


@st.composite
def manifest_rows(draw: st.DrawFn) -> tuple[list[str], list[list[Any]]]:
    """Half the time a valid path,label table with a few cells changed; else anything."""
    if draw(st.booleans()):
        order = draw(st.permutations(IMAGES))[: draw(st.integers(4, len(IMAGES)))]
        table = [[name, "ab"[i % 2]] for i, name in enumerate(order)]
        for _ in range(draw(st.integers(0, 2))):
            row, column = draw(st.integers(0, len(table) - 1)), draw(st.integers(0, 1))
            table[row][column] = draw([PATH_CELLS, LABEL_CELLS][column])
        return ["path", "label"], [list(row) for row in table]
    header = draw(HEADERS)
    cells = {"path": PATH_CELLS, "label": LABEL_CELLS, "text": st.text(max_size=10)}
    column = [cells.get(name.strip().lower(), ODD_CELLS) for name in header]
    rows = draw(st.lists(st.tuples(*column).map(list) if column else st.just([]), min_size=0, max_size=12))
    if rows and draw(st.booleans()):  # ragged rows: cells missing or extra
        rows[0] = rows[0][: draw(st.integers(0, len(rows[0])))] + draw(st.lists(ODD_CELLS, max_size=2))
    return header, rows


@FUZZ
@given(
    table=manifest_rows(),
    encoding=st.sampled_from(["utf-8", "utf-8", "utf-8-sig", "utf-16", "latin-1"]),
    junk=st.one_of(st.just(b""), st.binary(max_size=8)),
    on_error=st.sampled_from(["fail", "skip"]),
    on_duplicates=st.sampled_from(["error", "keep-first", "drop"]),
)
def test_csv_manifests(
    table: tuple[list[str], list[list[Any]]], encoding: str, junk: bytes, on_error: Any, on_duplicates: Any
) -> None:
    import csv

    header, rows = table
    with scratch() as root:
        write_images(root)
        text = io.StringIO()
        writer = csv.writer(text)
        writer.writerow(header)
        writer.writerows(rows)
        (root / "m.csv").write_bytes(text.getvalue().encode(encoding, errors="replace") + junk)
        loads_or_says_why(lambda: read_dataset(str(root / "m.csv"), on_error=on_error, on_duplicates=on_duplicates))


ODD_VALUES = st.one_of(
    st.none(),
    st.floats(allow_nan=True),
    st.integers(-2, 2),
    st.binary(max_size=4),
    st.lists(st.integers(0, 2), max_size=2),
    ODD_CELLS,
)


@FUZZ
@given(table=manifest_rows(), odd=st.lists(st.tuples(st.integers(0, 11), ODD_VALUES), max_size=3))
def test_parquet_manifests(table: tuple[list[str], list[list[Any]]], odd: list[tuple[int, Any]]) -> None:
    pd = pytest.importorskip("pandas")
    pytest.importorskip("pyarrow")
    header, rows = table
    names = list(dict.fromkeys(header))  # a Parquet file's column names are unique
    columns: dict[str, list[Any]] = {
        name: [row[i] if i < len(row) else None for row in rows] for i, name in enumerate(names)
    }
    for at, value in odd:  # typed values a spreadsheet export would hold: numbers, NaN, bytes, lists
        if names and at < len(rows):
            columns[names[at % len(names)]][at] = value
    frame = pd.DataFrame({name: pd.Series(values, dtype=object) for name, values in columns.items()})
    with scratch() as root:
        write_images(root)
        try:
            frame.to_parquet(root / "m.parquet")
        except Exception:  # noqa: BLE001 - pyarrow refuses some mixed object columns; nothing to read then
            return
        loads_or_says_why(lambda: read_dataset(str(root / "m.parquet"), on_error="skip"))


@st.composite
def arrays(draw: st.DrawFn) -> np.ndarray:
    """Arrays of any shape up to 5 dimensions and a mix of dtypes; floats in 0..1 or 0..255, some NaN."""
    shape = tuple(draw(st.lists(st.integers(0, 6), max_size=5)))
    dtype = draw(st.sampled_from(["uint8", "int64", "float32", "float64", "bool", "complex64", "<U3", "S2", "uint16"]))
    size = int(np.prod(shape)) if shape else 1
    seed = draw(st.integers(0, 2**16))
    values = np.random.default_rng(seed).integers(0, 300, size).reshape(shape)
    if dtype.startswith(("<U", "S")):
        return values.astype(dtype)
    scaled = values / 255.0 if dtype.startswith("float") and draw(st.booleans()) else values
    if dtype.startswith("float") and size and draw(st.booleans()):
        scaled = scaled.astype(np.float64)
        scaled.flat[0] = draw(st.sampled_from([np.nan, np.inf, -1.0]))
    return scaled.astype(dtype)


@st.composite
def image_sets(draw: st.DrawFn) -> dict[str, np.ndarray]:
    """Mostly what np.savez(path, x=images, y=labels) writes, now and then with a wrong part."""
    count = draw(st.integers(0, 12))
    shape = (count, draw(st.integers(1, 9)), draw(st.integers(1, 9)))
    shape += draw(st.sampled_from([(), (1,), (3,), (4,)]))
    dtype = draw(st.sampled_from(["uint8", "float32", "uint16", "int64"]))
    seed = draw(st.integers(0, 2**16))
    x = np.random.default_rng(seed).integers(0, 256, shape)
    x = (x / 255.0).astype(dtype) if dtype == "float32" else x.astype(dtype)
    y = np.array(draw(st.lists(st.sampled_from([0, 1, 2]), min_size=count, max_size=count)), dtype=np.int64)
    if draw(st.booleans()):
        y = y.astype(str)
    contents = {"x": x, "y": y}
    if draw(st.floats(0, 1)) < 0.3:
        contents[draw(st.sampled_from(["x", "y", "z"]))] = draw(arrays())
    return contents


def write_npz(root: Path, contents: dict[str, np.ndarray], cut: int | None) -> Path:
    """``contents`` saved as ``root/d.npz``, cut to its first ``cut`` bytes unless None."""
    path = root / "d.npz"
    np.savez(path, **contents)
    if cut is not None:
        path.write_bytes(path.read_bytes()[:cut])
    return path


@FUZZ
@given(contents=image_sets(), cut=st.one_of(st.none(), st.integers(0, 600)))
def test_npz_files(contents: dict[str, np.ndarray], cut: int | None) -> None:
    with scratch() as root:
        path = write_npz(root, contents, cut)
        dataset = loads_or_says_why(lambda: read_dataset(str(path), on_duplicates="drop"))
        if dataset is not None and cut is None:
            assert all(pixels.shape[:2] == contents["x"].shape[1:3] for pixels in dataset.arrays or ())


class Payload:
    """Unpickling this creates the file ``marker``: what a hostile .npz would do."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[Any, ...]:
        return (os.makedirs, (str(self.marker), 0o777, True))


@pytest.mark.parametrize("where", ["x", "y"])
def test_npz_object_arrays_never_unpickle(where: str, tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    evil = np.empty(6, dtype=object)
    evil[:] = [Payload(marker) for _ in range(6)]
    plain = {"x": np.zeros((6, 4, 4), dtype=np.uint8), "y": np.array([0, 0, 0, 1, 1, 1])}
    np.savez(tmp_path / "d.npz", **{**plain, where: evil})
    # the payload is real: loading it with pickle allowed creates the marker
    with np.load(tmp_path / "d.npz", allow_pickle=True) as archive:
        archive[where]
    assert marker.is_dir()
    marker.rmdir()
    with pytest.raises(ZooprobeError, match="pickle|object") as caught:
        read_dataset(str(tmp_path / "d.npz"))
    assert "\n" not in str(caught.value)
    assert not marker.exists()


def test_found_by_fuzzing_parquet_list_cells_are_bad_rows(tmp_path: Path) -> None:
    pd = pytest.importorskip("pandas")
    pytest.importorskip("pyarrow")
    write_images(tmp_path)
    labels: list[Any] = [["a"], ["a"], ["b"], ["b"], []]  # multi-label rows, as a list column holds them
    pd.DataFrame({"path": IMAGES[:5], "label": labels}).to_parquet(tmp_path / "m.parquet")
    with pytest.raises(ZooprobeError, match="row 4': the 'label' cell holds a ndarray, not one value"):
        read_dataset(str(tmp_path / "m.parquet"))


def test_found_by_fuzzing_line_breaks_in_names_stay_escaped(tmp_path: Path) -> None:
    write_images(tmp_path)
    (tmp_path / "m.csv").write_text('path,label\n0.png,a\n1.png,a\n2.png,b\n3.png,b\n"4\n.png",b\n')
    with pytest.raises(ZooprobeError) as caught:
        read_dataset(str(tmp_path / "m.csv"))
    assert "\n" not in str(caught.value) and "4\\n.png" in str(caught.value)
    root = tmp_path / "folder"
    for name in ("a", "b\nc"):
        (root / name).mkdir(parents=True)
        (root / name / "x.png").write_bytes(b"not a png")
    with pytest.raises(ZooprobeError) as caught:
        read_dataset(str(root))
    assert "\n" not in str(caught.value) and "b\\nc" in str(caught.value)


@pytest.mark.parametrize(
    ("contents", "cut"),
    [({"x": np.array(3), "y": np.array([1])}, None), ({"x": np.zeros((4, 0, 3)), "y": np.arange(4)}, None)]
    + [({"x": np.zeros((4, 3, 3), dtype=np.uint8), "y": np.arange(4) % 2}, cut) for cut in (30, 200, 400)],
)
def test_found_by_fuzzing_npz_shapes_and_truncation(contents: dict[str, np.ndarray], cut: int | None) -> None:
    with scratch() as root:
        path = write_npz(root, contents, cut)
        with pytest.raises(ZooprobeError):
            read_dataset(str(path))


def npz_member(shape: tuple[int, ...], dtype: str = "uint8", data: bytes = b"") -> bytes:
    from numpy.lib import format as npy_format

    header = io.BytesIO()
    npy_format.write_array_header_1_0(header, {"descr": np.dtype(dtype).str, "fortran_order": False, "shape": shape})
    return header.getvalue() + data


@pytest.mark.parametrize(
    ("shape", "match"),
    [((10**6, 10**4, 10**4), "declares shape"), ((4, 100_000, 100_000), "declares shape"), ((4, 300, 200), "")],
)
def test_found_by_fuzzing_npz_headers_that_declare_too_much(
    shape: tuple[int, ...], match: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Headers are checked before numpy allocates what they declare (a MemoryError traceback before)."""
    import zipfile

    path = tmp_path / "forged.npz"
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as archive:
        # the last case is honest, its images over the limit
        data = bytes(int(np.prod(shape))) if not match else b""
        archive.writestr("x.npy", npz_member(shape, data=data))
        archive.writestr("y.npy", npz_member((4,), "int64", np.arange(4).tobytes()))
    if not match:
        monkeypatch.setenv("ZOOPROBE_MAX_PIXELS", "10000")
    with pytest.raises(
        ZooprobeError, match=match or r"holds images of 200x300 \(60,000 pixels\), over the pixel"
    ) as caught:
        read_dataset(str(path))
    assert "\n" not in str(caught.value)
