"""Text data as users have it (pair manifests, text folders, Hugging Face DatasetDicts), fixed splits for
images and text, and the bad input each reader refuses with a one-line error."""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from click.testing import CliRunner

from zooprobe.cli import cli
from zooprobe.data.datasets import Dataset, read_dataset, stratified_split
from zooprobe.data.splits import fixed_split, training_part
from zooprobe.errors import ZooprobeError
from zooprobe.finetuning.finetune import split_indices
from zooprobe.runs.store import RunStore

from .test_datasets import gradient, save
from .test_finetune import MODEL, weights  # noqa: F401  (a fixture)

PAIRS = [
    ("The cat sat on the mat.", "A cat was sitting on the mat.", "1"),
    ("He bought a car.", "The weather is cold today.", "0"),
    ("Stocks fell sharply on Monday.", "Shares dropped steeply on Monday.", "1"),
    ("She plays the violin.", "The train leaves at noon.", "0"),
    ("Rain is expected tomorrow.", "Tomorrow it will probably rain.", "1"),
    ("I like green tea.", "The bridge was closed for repairs.", "0"),
]


def write_csv(path: Path, rows: list[tuple[Any, ...]], encoding: str = "utf-8") -> Path:
    with open(path, "w", newline="", encoding=encoding) as handle:
        csv.writer(handle).writerows(rows)
    return path


@pytest.mark.parametrize("names", [("text_a", "text_b"), ("sentence1", "sentence2"), ("Sentence1", "SENTENCE2")])
def test_pair_manifest_reads_both_texts_in_order(tmp_path: Path, names: tuple[str, str]) -> None:
    manifest = write_csv(tmp_path / "pairs.csv", [(*names, "label"), *PAIRS])
    ds = read_dataset(str(manifest))
    assert ds.modality == "text" and ds.classes == ("0", "1")
    assert ds.texts == tuple(a for a, _, _ in PAIRS) and ds.texts_b == tuple(b for _, b, _ in PAIRS)
    assert ds.labels.tolist() == [1, 0, 1, 0, 1, 0] and ds.splits is None
    summary = ds.summary()
    assert summary["pairs"] is True
    assert summary["text_length"]["max"] == max(len(a) + len(b) for a, b, _ in PAIRS)  # what a cross-encoder reads


def test_pair_order_and_pairing_are_part_of_the_content(tmp_path: Path) -> None:
    pairs = read_dataset(str(write_csv(tmp_path / "p.csv", [("text_a", "text_b", "label"), *PAIRS])))
    swapped_rows = [(b, a, label) for a, b, label in PAIRS]
    swapped = read_dataset(str(write_csv(tmp_path / "s.csv", [("text_a", "text_b", "label"), *swapped_rows])))
    assert pairs.content_hash() != swapped.content_hash()
    # a pair and its swap are two examples, not duplicates
    both = read_dataset(str(write_csv(tmp_path / "b.csv", [("text_a", "text_b", "label"), *PAIRS, *swapped_rows])))
    assert len(both) == 12
    single = read_dataset(str(write_csv(tmp_path / "t.csv", [("text", "label"), *((a, y) for a, _, y in PAIRS)])))
    assert single.texts_b is None and single.content_hash() != pairs.content_hash()


def test_pair_parquet_manifest_with_a_split_column(tmp_path: Path) -> None:
    pd = pytest.importorskip("pandas")
    pytest.importorskip("pyarrow")
    frame = pd.DataFrame(PAIRS, columns=["sentence1", "sentence2", "label"])
    frame["split"] = ["train", "train", "train", "train", "validation", "validation"]
    frame.to_parquet(tmp_path / "pairs.parquet")
    ds = read_dataset(str(tmp_path / "pairs.parquet"))
    assert ds.texts_b is not None and ds.splits == tuple(frame["split"])
    given = fixed_split(ds)
    assert given is not None
    assert given[0].tolist() == [0, 1, 2, 3] and given[1].tolist() == [4, 5] and given[2] == "validation"


def test_pair_manifest_missing_one_side(tmp_path: Path) -> None:
    no_column = write_csv(tmp_path / "half.csv", [("sentence1", "label"), *((a, y) for a, _, y in PAIRS)])
    with pytest.raises(ZooprobeError, match=r"'.*half.csv' has a 'sentence1' column but no 'sentence2'") as info:
        read_dataset(str(no_column))
    assert "\n" not in str(info.value)
    rows = [("text_a", "text_b", "label"), *PAIRS]
    rows[3] = (rows[3][0], "  ", rows[3][2])
    empty_cell = write_csv(tmp_path / "gap.csv", rows)
    with pytest.raises(ZooprobeError, match=r"gap.csv:4': empty 'text_b' cell; fill it in or remove the row"):
        read_dataset(str(empty_cell))
    assert read_dataset(str(empty_cell), on_error="skip").skipped == ((f"{empty_cell}:4", "empty 'text_b' cell"),)


def test_text_folder_one_example_per_file(tmp_path: Path) -> None:
    root = tmp_path / "quotes"
    for label, texts in {
        "wisdom": ["Know thyself.", "Less is more.\n"],
        "jokes": ["Why did the chicken...", "Knock"],
    }.items():
        (root / label).mkdir(parents=True)
        for i, text in enumerate(texts):
            (root / label / f"{i}.txt").write_text(text, encoding="utf-8")
    (root / "jokes" / "cover.md").write_text("not read")
    ds = read_dataset(str(root))
    assert ds.modality == "text" and ds.name == "quotes" and ds.classes == ("jokes", "wisdom")
    assert ds.texts == ("Why did the chicken...", "Knock", "Know thyself.", "Less is more.")
    (root / "wisdom" / "2.txt").write_text(" \n")
    with pytest.raises(ZooprobeError, match=r"2.txt': empty text file; write the text into it or remove it"):
        read_dataset(str(root))
    (root / "wisdom" / "2.txt").write_bytes("Caf\u00e9 cr\u00e8me".encode("latin-1"))
    with pytest.raises(ZooprobeError, match=r"'.*2.txt' is not UTF-8 .*: save it as UTF-8") as info:
        read_dataset(str(root))
    assert "\n" not in str(info.value)


def _mrpc_like(root: Path, splits: dict[str, list[tuple[str, str, int]]]) -> Path:
    hf = pytest.importorskip("datasets")
    features = hf.Features(
        {
            "sentence1": hf.Value("string"),
            "sentence2": hf.Value("string"),
            "label": hf.ClassLabel(names=["not_equivalent", "equivalent"]),
            "idx": hf.Value("int32"),
        }
    )
    tables = {}
    for name, rows in splits.items():
        columns: dict[str, list[Any]] = {"sentence1": [a for a, _, _ in rows], "sentence2": [b for _, b, _ in rows]}
        columns.update(label=[y for _, _, y in rows], idx=list(range(len(rows))))
        tables[name] = hf.Dataset.from_dict(columns, features=features)
    hf.DatasetDict(tables).save_to_disk(str(root))
    return root


def test_dataset_dict_keeps_its_own_splits(tmp_path: Path) -> None:
    rows = [(a, b, int(y)) for a, b, y in PAIRS]
    root = _mrpc_like(tmp_path / "mrpc", {"test": rows[4:], "train": rows[:4], "validation": rows[2:4][::-1]})
    with pytest.raises(ZooprobeError, match="duplicate"):  # validation copies two training pairs
        read_dataset(str(root))
    held = [("One more sentence.", "Another one entirely.", 0), ("The dog barked.", "A dog was barking.", 1)]
    root = _mrpc_like(tmp_path / "mrpc2", {"test": rows[4:], "train": rows[:4], "validation": held})
    ds = read_dataset(str(root))
    assert ds.classes == ("not_equivalent", "equivalent")  # the ClassLabel's order: 'equivalent' is GLUE's 1
    assert ds.labels.tolist() == [y for _, _, y in rows[:4] + held + rows[4:]]
    assert ds.splits == ("train",) * 4 + ("validation",) * 2 + ("test",) * 2  # in train, validation, test order
    assert ds.texts is not None and ds.texts_b is not None and ds.texts_b[4] == "Another one entirely."
    assert ds.texts[:4] == tuple(PAIRS[i][0] for i in range(4))
    given = fixed_split(ds)
    assert given is not None and given[1].tolist() == [4, 5] and given[2] == "validation"
    train = training_part(ds)
    assert len(train) == 4 and train.splits == ("train",) * 4 and train.texts == ds.texts[:4]
    # a test split without labels (GLUE hides them as -1) is left out, not an error
    hidden = [(a, b, -1) for a, b, _ in rows[4:]]
    glue = read_dataset(str(_mrpc_like(tmp_path / "glue", {"train": rows[:4], "validation": held, "test": hidden})))
    assert glue.splits == ("train",) * 4 + ("validation",) * 2
    assert glue.skipped == ((f"{tmp_path / 'glue'}[test]", "2 examples without labels (hidden test labels): left out"),)
    # without a validation part, the test part is validated on
    no_val = read_dataset(str(_mrpc_like(tmp_path / "tt", {"train": rows[:4], "test": rows[4:]})))
    given = fixed_split(no_val)
    assert given is not None and given[1].tolist() == [4, 5] and given[2] == "test"


def test_dataset_dict_with_other_splits_or_one_split(tmp_path: Path) -> None:
    rows = [(a, b, int(y)) for a, b, y in PAIRS]
    odd = _mrpc_like(tmp_path / "odd", {"train": rows[:4], "unsupervised": rows[4:]})
    with pytest.raises(ZooprobeError, match=r"has splits \['train', 'unsupervised'\]: only train, validation, test"):
        read_dataset(str(odd))
    alone = read_dataset(str(_mrpc_like(tmp_path / "alone", {"validation": rows})))
    assert alone.splits is None and len(alone) == 6  # one split: read unsplit, as before


@pytest.fixture
def image_manifest(tmp_path: Path) -> Path:
    rows: list[tuple[str, ...]] = [("path", "label", "split")]
    for i in range(12):
        name = f"img/{i}.png"
        save(tmp_path / name, gradient(8, 8, 3, offset=i))
        rows.append((name, "ab"[i % 2], "validation" if i >= 9 else "train"))
    return write_csv(tmp_path / "images.csv", rows)


def test_image_split_column_is_used_as_given_and_stratified_split_stays_without_it(image_manifest: Path) -> None:
    ds = read_dataset(str(image_manifest))
    assert ds.modality == "image" and ds.splits == ("train",) * 9 + ("validation",) * 3
    train, val = split_indices(ds, seed=0)
    assert train.tolist() == list(range(9)) and val.tolist() == [9, 10, 11]
    assert split_indices(ds, seed=1)[1].tolist() == [9, 10, 11]  # the seed does not move a given split
    assert split_indices(ds, seed=0, train_size=4)[1].tolist() == [9, 10, 11]
    assert len(split_indices(ds, seed=0, train_size=4)[0]) == 4
    # the same images without the column: the stratified split as before
    text = image_manifest.read_text().replace(",split", "")
    plain_manifest = image_manifest.with_name("plain.csv")
    plain_manifest.write_text(
        "\n".join(line.rsplit(",", 1)[0] if i else line for i, line in enumerate(text.splitlines()))
    )
    plain = read_dataset(str(plain_manifest))
    assert plain.splits is None
    for seed in (0, 1):
        assert all(
            np.array_equal(got, want)
            for got, want in zip(split_indices(plain, seed), stratified_split(plain, 0.2, seed), strict=True)
        )
    assert ds.content_hash() != plain.content_hash()  # a split is part of what the data are


def test_split_values_are_checked(tmp_path: Path) -> None:
    rows = [("text", "label", "split"), *((f"t{i}", "ab"[i % 2], "train") for i in range(6))]
    rows[5] = ("t4", "a", "valid")
    with pytest.raises(
        ZooprobeError, match=r"bad.csv:6': split is 'valid'; a split column takes only train, validation, test"
    ) as info:
        read_dataset(str(write_csv(tmp_path / "bad.csv", rows)))
    assert "\n" not in str(info.value)
    rows[5] = ("t4", "a", "")
    with pytest.raises(ZooprobeError, match=r"split is an empty cell"):
        read_dataset(str(write_csv(tmp_path / "empty.csv", rows)))
    rows[5] = ("t4", "c", "validation")
    rows.append(("t9", "c", "test"))
    with pytest.raises(ZooprobeError, match=r"class\(es\) 'c' appear in the 'validation' split but not in 'train'"):
        read_dataset(str(write_csv(tmp_path / "unseen.csv", rows)))
    only_train = read_dataset(str(write_csv(tmp_path / "train.csv", rows[:5])))
    with pytest.raises(
        ZooprobeError, match=r"only 'train' examples in its split column: mark the examples to validate"
    ):
        split_indices(only_train, seed=0)
    none_train = [(t, y, "validation") for t, y, _ in rows[1:5]]
    with pytest.raises(ZooprobeError, match=r"no 'train' examples"):
        read_dataset(str(write_csv(tmp_path / "nt.csv", [rows[0], *none_train])))


def test_text_manifest_bad_input(tmp_path: Path) -> None:
    rows = [("text", "label"), *((f"t{i}", "ab"[i % 2]) for i in range(6))]
    rows[3] = ("   ", "a")
    with pytest.raises(ZooprobeError, match=r"e.csv:4': empty 'text' cell; fill it in or remove the row"):
        read_dataset(str(write_csv(tmp_path / "e.csv", rows)))
    rows[3] = ("t2", "")
    with pytest.raises(ZooprobeError, match=r"l.csv:4': missing label .*; fill in the label"):
        read_dataset(str(write_csv(tmp_path / "l.csv", rows)))
    latin = write_csv(tmp_path / "latin.csv", [("text", "label"), ("caf\u00e9", "a"), ("cr\u00e8me", "b")], "latin-1")
    with pytest.raises(ZooprobeError, match=r"cannot read CSV manifest '.*latin.csv' .*: save it as UTF-8 CSV") as info:
        read_dataset(str(latin))
    assert "\n" not in str(info.value)


def _bad_inputs(tmp_path: Path) -> dict[str, tuple[Path, str]]:
    good = [(f"t{i}", f"u{i}", "ab"[i % 2]) for i in range(6)]
    bad_split = [("text", "label", "split"), *((a, y, "dev") for a, _, y in good)]
    unseen = [("text", "label", "split"), *((a, y, "train") for a, _, y in good), ("x", "c", "validation")]
    tmp_path.mkdir(parents=True, exist_ok=True)
    return {
        "empty text": (
            write_csv(tmp_path / "empty.csv", [("text", "label"), *((a, y) for a, _, y in good), ("", "a")]),
            "empty 'text' cell",
        ),
        "missing label": (
            write_csv(tmp_path / "nolabel.csv", [("text", "label"), *((a, y) for a, _, y in good), ("z", "")]),
            "missing label",
        ),
        "non-UTF-8": (
            write_csv(tmp_path / "latin.csv", [("text", "label"), ("caf\u00e9", "a")], "latin-1"),
            "save it as UTF-8",
        ),
        "half pair": (
            write_csv(tmp_path / "half.csv", [("text_a", "label"), *((a, y) for a, _, y in good)]),
            "no 'text_b'",
        ),
        "bad split": (write_csv(tmp_path / "split.csv", bad_split), "split is 'dev'"),
        "unseen class": (write_csv(tmp_path / "unseen.csv", unseen), "not in 'train'"),
    }


# the model is checked (and, for finetune, loaded) before the data are read: a real one, then the data fail
@pytest.mark.parametrize(
    "command", [["assess", "--models", MODEL], ["finetune", "--model", MODEL, "--strategy", "head"]]
)
def test_cli_bad_text_data_exit_2_with_one_line_naming_the_file_and_records_nothing(
    tmp_path: Path,
    weights: Path,  # noqa: F811
    command: list[str],
) -> None:
    for name, (path, message) in _bad_inputs(tmp_path / "data").items():
        result = CliRunner().invoke(cli, [*command, "--data", str(path)])
        assert result.exit_code == 2, (name, result.output)
        assert len(result.output.strip().splitlines()) == 1 and message in result.output, (name, result.output)
        assert path.name in result.output and "Traceback" not in result.output, (name, result.output)
    with RunStore(weights) as runs:
        assert runs.list() == []


def test_subset_keeps_classes_and_content_keys() -> None:
    from zooprobe.data import hygiene
    from zooprobe.data.splits import subset

    labels = np.array([0, 1, 0, 1], dtype=np.int64)
    ds = Dataset("d", "text", labels, ("a", "b"), texts=("w", "x", "y", "z"), texts_b=("1", "2", "3", "4"))
    part = subset(ds, np.array([1, 3], dtype=np.int64))
    assert part.classes == ("a", "b") and part.labels.tolist() == [1, 1] and part.texts_b == ("2", "4")
    assert hygiene.example_keys(part) == (hygiene.pair_key("x", "2"), hygiene.pair_key("z", "4"))


def test_finetune_validates_on_the_given_split_and_records_it(weights: Path, image_manifest: Path) -> None:  # noqa: F811
    import zooprobe

    result = zooprobe.finetune(str(image_manifest), MODEL, "as-is", resolution=32, progress=False)
    with RunStore(weights) as runs:
        config = runs.get(result.run_id).config
    assert config["splits"] == {"train": 9, "validation": 3} and config["validated_on"] == "validation"
    assert (config["train_examples"], config["val_examples"]) == (9, 3)


def test_fortune_files_one_category_each(tmp_path: Path) -> None:
    (tmp_path / "food").write_text(
        "%\nAn apple a day.\n%\nEat  your\n  greens.\n%\n%\nBread is life.\n", encoding="utf-8"
    )
    (tmp_path / "work").write_text(
        "Work is love made visible.\n%\n_\bI_\bm_\bp_\bo_\br_\bt_\ba_\bn_\bt work.\n", encoding="utf-8"
    )
    ds = read_dataset(f"fortunes:{tmp_path / 'food'},{tmp_path / 'work'}")
    assert ds.name == "fortunes:food,work" and ds.classes == ("food", "work")
    assert ds.texts == (
        "An apple a day.",
        "Eat  your\n  greens.",
        "Bread is life.",
        "Work is love made visible.",
        "Important work.",
    )
    assert ds.labels.tolist() == [0, 0, 0, 1, 1]
    with pytest.raises(
        ZooprobeError, match=r"fortune category 'nosuch' not found: give a category name or a file path"
    ):
        read_dataset(f"fortunes:{tmp_path / 'food'},nosuch")
    with pytest.raises(ZooprobeError, match=r"names 1 fortune category; give two or more"):
        read_dataset(f"fortunes:{tmp_path / 'food'}")


def test_debian_fortunes_by_category_name() -> None:
    if not Path("/usr/share/games/fortunes/food").is_file():
        pytest.skip("Debian's fortunes package is not installed (apt-get install fortunes)")
    ds = read_dataset("fortunes:food,love")
    assert ds.classes == ("food", "love") and min(ds.summary()["per_class"].values()) >= 100
    assert ds.texts is not None and not any("\b" in text for text in ds.texts)


def test_assess_needs_two_training_examples_per_class_of_a_given_split(tmp_path: Path, image_manifest: Path) -> None:
    from zooprobe.evaluator.assess import assess

    from .toy_backbone import toy_cnn, toy_entry

    lines = image_manifest.read_text().splitlines()
    # image 1 ('b') is the only 'b' left in train: 3, 5 and 7 move to validation
    moved = [line.replace(",train", ",validation") if i in (4, 6, 8) else line for i, line in enumerate(lines)]
    manifest = image_manifest.with_name("few.csv")
    manifest.write_text("\n".join(moved) + "\n")
    home = tmp_path / "home"
    with pytest.raises(ZooprobeError, match=r"class\(es\) 'b' have fewer than 2 examples in the 'train' split"):
        assess(str(manifest), [toy_entry("t")], home=home, progress=False, loader=toy_cnn, layers="all")
    with RunStore(home) as runs:
        assert runs.list() == []
    result = assess(str(image_manifest), [toy_entry("t")], home=home, progress=False, loader=toy_cnn, layers="all")
    assert result.candidates[0]["status"] == "done"
    assert result.candidates[0]["data_ratio"]["target_examples"] == 9
