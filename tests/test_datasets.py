"""Dataset readers on real files: image folders, manifests, npz, digits; bad input; splits and hashes."""

from __future__ import annotations

import io
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

from zooprobe.data.datasets import Dataset, read_dataset, stratified_split
from zooprobe.errors import InvalidChoiceError, ZooprobeError


def gradient(height: int, width: int, channels: int, offset: int = 0) -> np.ndarray:
    """A deterministic uint8 image whose pixels all differ, so lossless round trips can be checked exactly."""
    values = (np.arange(height * width * channels, dtype=np.int64) * 7 + offset) % 256
    return values.astype(np.uint8).reshape(height, width, channels)


def save(path: Path, array: np.ndarray, mode: str | None = None) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    data = array[:, :, 0] if array.shape[2] == 1 else array
    Image.fromarray(data, mode=mode).save(path) if mode else Image.fromarray(data).save(path)
    return path


def jpeg_bytes(size: tuple[int, int] = (64, 48)) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(gradient(size[1], size[0], 3)).save(buffer, format="JPEG", quality=90)
    return buffer.getvalue()


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    """cat: two RGB PNGs of different sizes; dog: a grayscale PNG and an RGB JPEG (mixed channels)."""
    root = tmp_path / "pets"
    save(root / "cat" / "a.png", gradient(10, 12, 3))
    save(root / "cat" / "b.png", gradient(20, 6, 3, offset=1))
    save(root / "dog" / "c.png", gradient(9, 9, 1))
    (root / "dog" / "d.JPG").write_bytes(jpeg_bytes())
    (root / "dog" / "notes.txt").write_text("not an image, ignored by extension")
    return root


def test_image_folder_reads_classes_shapes_and_pixels(folder: Path) -> None:
    ds = read_dataset(str(folder))
    assert ds.modality == "image"
    assert ds.name == "pets"
    assert ds.classes == ("cat", "dog")
    assert ds.labels.dtype == np.int64
    assert ds.labels.tolist() == [0, 0, 1, 1]
    assert ds.paths is not None
    assert [Path(p).name for p in ds.paths] == ["a.png", "b.png", "c.png", "d.JPG"]
    assert ds.skipped == ()
    assert np.array_equal(ds.load_image(0), gradient(10, 12, 3))
    gray = ds.load_image(2)
    assert gray.dtype == np.uint8 and gray.shape == (9, 9, 1)
    assert np.array_equal(gray, gradient(9, 9, 1))
    assert ds.load_image(3).shape == (48, 64, 3)

    summary = ds.summary()
    assert summary["modality"] == "image"
    assert summary["classes"] == 2
    assert summary["per_class"] == {"cat": 2, "dog": 2}
    assert summary["image_size"] == {"min": [9, 6], "max": [48, 64]}
    assert summary["channels"] == [1, 3]  # mixed channels are recorded, not an error


def test_rgba_drops_alpha_and_palette_becomes_rgb(tmp_path: Path) -> None:
    rgba = gradient(5, 7, 4)
    save(tmp_path / "d" / "a" / "x.png", rgba)
    save(tmp_path / "d" / "a" / "y.png", gradient(5, 7, 4, offset=3))
    palette = Image.fromarray(gradient(6, 6, 3)).convert("P")
    (tmp_path / "d" / "b").mkdir()
    palette.save(tmp_path / "d" / "b" / "p.gif")
    palette.save(tmp_path / "d" / "b" / "q.bmp")
    ds = read_dataset(str(tmp_path / "d"))
    assert np.array_equal(ds.load_image(0), rgba[:, :, :3])
    assert ds.load_image(2).shape == (6, 6, 3)
    assert ds.summary()["channels"] == [3]


def test_truncated_jpeg_fails_naming_the_file_or_is_skipped(folder: Path) -> None:
    data = jpeg_bytes()
    bad = folder / "cat" / "broken.jpg"
    bad.write_bytes(data[: len(data) // 2])
    with pytest.raises(ZooprobeError) as info:
        read_dataset(str(folder))
    message = str(info.value)
    assert str(bad) in message and "on_error='skip'" in message and "\n" not in message

    ds = read_dataset(str(folder), on_error="skip")
    assert ds.paths is not None and str(bad) not in ds.paths
    assert len(ds) == 4
    assert [source for source, _ in ds.skipped] == [str(bad)]
    assert "truncated" in ds.skipped[0][1].lower()


def test_text_file_named_jpg_is_reported(folder: Path) -> None:
    fake = folder / "dog" / "fake.jpg"
    fake.write_text("hello, I am not a JPEG")
    with pytest.raises(ZooprobeError, match="fake.jpg"):
        read_dataset(str(folder))
    ds = read_dataset(str(folder), on_error="skip")
    assert ds.skipped[0][0] == str(fake)
    assert "cannot decode" in ds.skipped[0][1]
    assert ds.summary()["per_class"] == {"cat": 2, "dog": 2}


def test_tiff_images_are_read_and_images_in_subfolders_are_named(folder: Path) -> None:
    save(folder / "cat" / "e.tif", gradient(8, 8, 3))
    assert read_dataset(str(folder)).classes == ("cat", "dog") and len(read_dataset(str(folder)).labels) == 5
    save(folder / "bird" / "2024" / "f.png", gradient(8, 8, 3))
    with pytest.raises(ZooprobeError, match="images in its subfolders are not read"):
        read_dataset(str(folder))


def test_class_order_does_not_follow_the_hash_seed(tmp_path: Path) -> None:
    import os
    import subprocess

    # '1' and '01' are the same number: without a tie-break their order followed set iteration
    code = "from zooprobe.data.datasets import _sort_classes; print(_sort_classes(['1', '01', '1', '2', '01']))"
    orders = set()
    for seed in range(6):
        env = {**os.environ, "PYTHONHASHSEED": str(seed)}
        orders.add(subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True).stdout.strip())
    assert orders == {"('01', '1', '2')"}


def test_empty_class_folder(folder: Path) -> None:
    (folder / "bird").mkdir()
    (folder / "bird" / "readme.txt").write_text("no images here")
    with pytest.raises(ZooprobeError, match="empty class folder") as info:
        read_dataset(str(folder))
    assert str(folder / "bird") in str(info.value)
    ds = read_dataset(str(folder), on_error="skip")
    assert ds.classes == ("cat", "dog")
    assert ds.skipped == ((str(folder / "bird"), ds.skipped[0][1]),)


def test_class_with_one_example(folder: Path) -> None:
    lone = save(folder / "bird" / "only.png", gradient(4, 4, 3))
    with pytest.raises(ZooprobeError, match="only one example") as info:
        read_dataset(str(folder))
    assert str(lone) in str(info.value)
    ds = read_dataset(str(folder), on_error="skip")
    assert ds.classes == ("cat", "dog")
    assert len(ds) == 4
    assert ds.skipped[0][0] == str(lone) and "'bird'" in ds.skipped[0][1]


def test_skipping_that_leaves_one_class_still_fails(tmp_path: Path) -> None:
    save(tmp_path / "d" / "a" / "1.png", gradient(4, 4, 3))
    save(tmp_path / "d" / "a" / "2.png", gradient(5, 4, 3))
    (tmp_path / "d" / "b").mkdir()
    (tmp_path / "d" / "b" / "x.png").write_bytes(b"garbage")
    (tmp_path / "d" / "b" / "y.png").write_bytes(b"garbage")
    with pytest.raises(ZooprobeError, match="1 usable class"):
        read_dataset(str(tmp_path / "d"), on_error="skip")


def test_folder_without_class_subfolders(tmp_path: Path) -> None:
    save(tmp_path / "flat" / "a.png", gradient(4, 4, 3))
    with pytest.raises(ZooprobeError, match="no class subfolders"):
        read_dataset(str(tmp_path / "flat"))


def test_csv_path_manifest_relative_paths_and_missing_label(tmp_path: Path) -> None:
    save(tmp_path / "imgs" / "a.png", gradient(8, 8, 3))
    save(tmp_path / "imgs" / "b.png", gradient(8, 8, 3, offset=2))
    save(tmp_path / "imgs" / "c.png", gradient(5, 5, 1))
    save(tmp_path / "imgs" / "d.png", gradient(5, 5, 1, offset=9))
    save(tmp_path / "imgs" / "e.png", gradient(5, 5, 1, offset=4))
    manifest = tmp_path / "data.csv"
    # a byte-order mark, as spreadsheet exports write, and a row with an empty label (line 6)
    manifest.write_text(
        "\ufeffpath,label\nimgs/a.png,10\nimgs/b.png,10\nimgs/c.png,2\nimgs/d.png,2\nimgs/e.png,\n", encoding="utf-8"
    )
    with pytest.raises(ZooprobeError, match="missing label") as info:
        read_dataset(str(manifest))
    assert f"{manifest}:6" in str(info.value)

    ds = read_dataset(str(manifest), on_error="skip")
    assert ds.classes == ("2", "10")  # numeric labels sort as numbers
    assert ds.labels.tolist() == [1, 1, 0, 0]
    assert ds.skipped == ((f"{manifest}:6", "missing label (empty or NaN label cell)"),)
    assert np.array_equal(ds.load_image(0), gradient(8, 8, 3))
    assert ds.summary()["channels"] == [1, 3]


def test_csv_missing_image_file(tmp_path: Path) -> None:
    save(tmp_path / "a.png", gradient(4, 4, 3))
    save(tmp_path / "b.png", gradient(4, 5, 3))
    save(tmp_path / "c.png", gradient(5, 4, 3))
    save(tmp_path / "d.png", gradient(5, 5, 3))
    manifest = tmp_path / "m.csv"
    manifest.write_text("label,path\nx,a.png\nx,b.png\ny,c.png\ny,d.png\ny,gone.png\n")
    with pytest.raises(ZooprobeError, match="not found") as info:
        read_dataset(str(manifest))
    assert str(tmp_path / "gone.png") in str(info.value)
    assert len(read_dataset(str(manifest), on_error="skip")) == 4


def test_csv_text_manifest(tmp_path: Path) -> None:
    manifest = tmp_path / "reviews.csv"
    manifest.write_text('text,label\n"great, loved it",pos\nfine,pos\nawful,neg\n"bad\nreally bad",neg\n')
    ds = read_dataset(str(manifest))
    assert ds.modality == "text"
    assert ds.texts == ("great, loved it", "fine", "awful", "bad\nreally bad")
    assert ds.classes == ("neg", "pos")
    assert ds.labels.tolist() == [1, 1, 0, 0]
    summary = ds.summary()
    assert summary["text_length"] == {"min": 4, "median": 9.5, "max": 15}
    assert summary["per_class"] == {"neg": 2, "pos": 2}
    with pytest.raises(TypeError):
        ds.load_image(0)


def test_csv_without_needed_columns(tmp_path: Path) -> None:
    manifest = tmp_path / "m.csv"
    manifest.write_text("file,class\na.png,x\n")
    with pytest.raises(ZooprobeError, match="needs a 'label' column"):
        read_dataset(str(manifest))


def test_npz_grayscale_int_labels(tmp_path: Path) -> None:
    x = np.stack([gradient(6, 5, 1, offset=i)[:, :, 0] for i in range(6)])
    np.savez(tmp_path / "d.npz", x=x, y=np.array([0, 1, 2, 0, 1, 2]))
    ds = read_dataset(str(tmp_path / "d.npz"))
    assert ds.classes == ("0", "1", "2")
    assert ds.labels.tolist() == [0, 1, 2, 0, 1, 2]
    assert np.array_equal(ds.load_image(4), x[4][:, :, None])
    assert ds.summary()["image_size"] == {"min": [6, 5], "max": [6, 5]}


def test_npz_float_rgb_string_labels(tmp_path: Path) -> None:
    x = np.zeros((4, 3, 3, 3), dtype=np.float32)
    x[1] = 1.0
    x[2] = 0.5
    x[3] = 0.25  # not a copy of x[0]
    np.savez(tmp_path / "d.npz", x=x, y=np.array(["b", "a", "b", "a"]))
    ds = read_dataset(str(tmp_path / "d.npz"))
    assert ds.classes == ("a", "b")
    assert ds.labels.tolist() == [1, 0, 1, 0]
    assert ds.load_image(1).max() == 255 and ds.load_image(0).max() == 0
    assert int(ds.load_image(2)[0, 0, 0]) == 128
    assert ds.summary()["channels"] == [3]


@pytest.mark.parametrize(
    ("arrays", "match"),
    [
        ({"x": np.zeros((4, 3, 3), np.uint8)}, "save images as 'x' and labels as 'y'"),
        ({"x": np.zeros((4, 3, 3), np.uint8), "y": np.zeros(3, int)}, "one label per image"),
        ({"x": np.zeros((4, 3), np.uint8), "y": np.zeros(4, int)}, "has shape"),
        ({"x": np.full((4, 3, 3), 300.0), "y": np.zeros(4, int)}, "scale images"),
    ],
)
def test_npz_bad_arrays(tmp_path: Path, arrays: dict[str, np.ndarray], match: str) -> None:
    np.savez(tmp_path / "d.npz", **arrays)  # type: ignore[arg-type]
    with pytest.raises(ZooprobeError, match=match):
        read_dataset(str(tmp_path / "d.npz"))


def test_sklearn_digits() -> None:
    from sklearn.datasets import load_digits

    ds = read_dataset("sklearn:digits")
    assert len(ds) == 1797
    assert ds.classes == tuple(str(i) for i in range(10))
    image = ds.load_image(0)
    assert image.dtype == np.uint8 and image.shape == (8, 8, 1)
    expected = np.rint(load_digits().images[0] * 255 / 16).astype(np.uint8)
    assert np.array_equal(image[:, :, 0], expected)
    assert max(int(a.max()) for a in ds.arrays or ()) == 255
    assert ds.summary()["channels"] == [1]


def test_parquet_without_pandas_names_the_install(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    manifest = tmp_path / "m.parquet"
    manifest.write_bytes(b"PAR1")
    monkeypatch.setitem(sys.modules, "pandas", None)
    with pytest.raises(ZooprobeError, match="pip install pandas pyarrow"):
        read_dataset(str(manifest))


def test_parquet_manifest(tmp_path: Path) -> None:
    pd = pytest.importorskip("pandas")
    pytest.importorskip("pyarrow")
    manifest = tmp_path / "m.parquet"
    texts = ["a", "bb", "ccc", "dddd", "eeeee", "ffffff"]
    pd.DataFrame({"text": texts, "label": [1, 1, 3, 3, 2, None]}).to_parquet(manifest)
    with pytest.raises(ZooprobeError, match="missing label"):
        read_dataset(str(manifest))
    ds = read_dataset(str(manifest), on_error="skip")
    # the row without a label is dropped, and so is class 2, which has one example
    assert len(ds.skipped) == 2
    assert ds.modality == "text" and len(ds.classes) == 2 and ds.texts == ("a", "bb", "ccc", "dddd")


def test_hf_directory_without_datasets_names_the_install(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "hf").mkdir()
    (tmp_path / "hf" / "state.json").write_text("{}")
    monkeypatch.setitem(sys.modules, "datasets", None)
    with pytest.raises(ZooprobeError, match="pip install datasets"):
        read_dataset(str(tmp_path / "hf"))


def test_hf_directory(tmp_path: Path) -> None:
    hf = pytest.importorskip("datasets")
    images = [Image.fromarray(gradient(5, 4, 3, offset=i)) for i in range(4)]
    features = hf.Features({"image": hf.Image(), "label": hf.ClassLabel(names=["cat", "dog"])})
    hf.Dataset.from_dict({"image": images, "label": [0, 1, 0, 1]}, features=features).save_to_disk(tmp_path / "hf")
    ds = read_dataset(str(tmp_path / "hf"))
    assert ds.classes == ("cat", "dog")
    assert ds.labels.tolist() == [0, 1, 0, 1]
    assert np.array_equal(ds.load_image(2), gradient(5, 4, 3, offset=2))


def test_unknown_specs(tmp_path: Path) -> None:
    with pytest.raises(ZooprobeError, match="does not exist.*sklearn:digits.*npz"):
        read_dataset(str(tmp_path / "nowhere"))
    other = tmp_path / "data.xlsx"
    other.write_bytes(b"x")
    with pytest.raises(ZooprobeError, match=r"unknown file type '\.xlsx'.*csv"):
        read_dataset(str(other))
    with pytest.raises(ZooprobeError, match="sklearn:iris"):
        read_dataset("sklearn:iris")
    with pytest.raises(InvalidChoiceError):
        bad_choice: Any = "ignore"
        read_dataset("sklearn:digits", on_error=bad_choice)


def test_content_hash_is_stable_and_tracks_bytes_and_labels(folder: Path, tmp_path: Path) -> None:
    first = read_dataset(str(folder)).content_hash()
    assert first == read_dataset(str(folder)).content_hash()
    assert len(first) == 64

    moved = tmp_path / "elsewhere" / "pets"
    moved.parent.mkdir()
    folder.rename(moved)
    assert read_dataset(str(moved)).content_hash() == first  # location is not content

    save(moved / "cat" / "a.png", gradient(10, 12, 3, offset=5))
    changed = read_dataset(str(moved))
    assert changed.content_hash() != first

    relabelled = Dataset(
        changed.name,
        "image",
        changed.labels[::-1].copy(),
        changed.classes,
        paths=changed.paths,
        shapes=changed.shapes,
    )
    assert relabelled.content_hash() != changed.content_hash()

    digits = read_dataset("sklearn:digits").content_hash()
    assert digits == read_dataset("sklearn:digits").content_hash() != first


def test_content_hash_of_texts(tmp_path: Path) -> None:
    manifest = tmp_path / "t.csv"
    manifest.write_text("text,label\nab,x\nc,x\nd,y\ne,y\n")
    before = read_dataset(str(manifest)).content_hash()
    manifest.write_text("text,label\na,x\nbc,x\nd,y\ne,y\n")
    assert read_dataset(str(manifest)).content_hash() != before


def make_labels(counts: list[int]) -> Dataset:
    labels = np.repeat(np.arange(len(counts)), counts).astype(np.int64)
    texts = tuple(f"t{i}" for i in range(len(labels)))
    return Dataset("synthetic", "text", labels, tuple(f"c{i}" for i in range(len(counts))), texts=texts)


def test_stratified_split_is_stratified_disjoint_and_deterministic() -> None:
    ds = make_labels([50, 10, 2, 3, 1])
    train, val = stratified_split(ds, val_fraction=0.2, seed=0)
    assert train.dtype == np.int64 and val.dtype == np.int64
    assert np.intersect1d(train, val).size == 0
    assert sorted(np.concatenate([train, val]).tolist()) == list(range(len(ds)))
    assert np.bincount(ds.labels[val], minlength=5).tolist() == [10, 2, 1, 1, 0]
    assert np.bincount(ds.labels[train], minlength=5).tolist() == [40, 8, 1, 2, 1]

    again_train, again_val = stratified_split(ds, val_fraction=0.2, seed=0)
    assert np.array_equal(train, again_train) and np.array_equal(val, again_val)
    other = stratified_split(ds, val_fraction=0.2, seed=1)[1]
    assert not np.array_equal(val, other)


def test_stratified_split_rejects_bad_fraction() -> None:
    ds = make_labels([4, 4])
    for fraction in (0.0, 1.0, -0.1, 1.5):
        with pytest.raises(ZooprobeError, match="val_fraction"):
            stratified_split(ds, val_fraction=fraction)


def test_stratified_split_on_digits_keeps_every_class_in_both() -> None:
    ds = read_dataset("sklearn:digits")
    train, val = stratified_split(ds, val_fraction=0.25, seed=3)
    assert set(ds.labels[train].tolist()) == set(range(10)) == set(ds.labels[val].tolist())
    assert abs(len(val) / len(ds) - 0.25) < 0.01


def test_content_hash_reads_the_files_once_per_dataset(folder: Path) -> None:
    import dataclasses

    dataset = read_dataset(str(folder))
    first = dataset.content_hash()
    (folder / "cat" / "a.png").unlink()  # a second read of the folder would fail on it
    assert dataset.content_hash() == first
    # a dataset made from it with other labels is other content: its hash is computed afresh (and reads the files)
    relabelled = dataclasses.replace(dataset, labels=dataset.labels[::-1].copy())
    with pytest.raises(ZooprobeError, match="cannot read"):
        relabelled.content_hash()
