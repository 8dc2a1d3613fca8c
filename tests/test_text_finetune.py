"""Fine-tuning text encoders: the real all-MiniLM-L6-v2 (a sentence-transformers bi-encoder) and a tiny BERT
with BERT's tokenizer (a cross-encoder), served by the loopback Hub, on small text and pair manifests."""

from __future__ import annotations

import csv
import json
import os
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.hub_server import HubRepo, repo_from_folder
from zooprobe.runs.store import EpochRecord, RunStore

from .conftest import recorded_epochs, run_and_kill
from .test_hf_source import (  # noqa: F401  (fixtures)
    MINILM,
    TINY_BERT,
    HubServer,
    _tiny_bert,
    hub,
    hub_server,
    minilm_package,
    synced,
    zooprobe_cli,
)

NO_TOKENIZER = "tiny-org/bert-without-tokenizer"


@pytest.fixture(scope="module")
def hub_repos(tmp_path_factory: pytest.TempPathFactory) -> list[HubRepo]:
    """MiniLM, the tiny BERT, and the tiny BERT's weights without its tokenizer files."""
    root = tmp_path_factory.mktemp("text-repos")
    _tiny_bert(root / "bert")
    (root / "bare").mkdir()
    for name in ("config.json", "model.safetensors"):
        (root / "bare" / name).write_bytes((root / "bert" / name).read_bytes())
    tags = ["transformers", "safetensors", "bert", "feature-extraction"]
    return [
        repo_from_folder(
            MINILM,
            minilm_package.get_model_path(),
            tags=["sentence-transformers", "pytorch", "safetensors", "bert", "feature-extraction"],
            pipeline_tag="sentence-similarity",
            library_name="sentence-transformers",
        ),
        *(
            repo_from_folder(
                repo, root / folder, tags=tags, pipeline_tag="feature-extraction", library_name="transformers"
            )
            for repo, folder in ((TINY_BERT, "bert"), (NO_TOKENIZER, "bare"))
        ),
    ]


pytest.importorskip("transformers")
pytest.importorskip("sentence_transformers")

GOOD = ["a lovely sunny day", "what a wonderful meal", "great friends and fun", "happy music all night"]
BAD = ["a dreadful rainy day", "what an awful meal", "terrible traffic and noise", "sad news all night"]


def _texts(tmp_path: Path, repeat: int = 4) -> Path:
    path = tmp_path / "texts.csv"
    with open(path, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["text", "label"])
        for i in range(repeat):
            writer.writerows([f"{t} {i}", "good"] for t in GOOD)
            writer.writerows([f"{t} {i}", "bad"] for t in BAD)
    return path


def _pairs(tmp_path: Path) -> Path:
    path = tmp_path / "pairs.csv"
    with open(path, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["text_a", "text_b", "label"])
        for i in range(3):
            for a, b in zip(GOOD, BAD, strict=True):
                writer.writerow([f"{a} {i}", f"{a} again {i}", 1])
                writer.writerow([f"{a} {i}", f"{b} {i}", 0])
    return path


def _finetune(*args: str) -> dict[str, Any]:
    result = zooprobe_cli("finetune", *args, "--format", "json")
    assert result.exit_code == 0, result.output
    document: dict[str, Any] = json.loads(result.stdout)
    return document


def _config(run_id: str) -> dict[str, Any]:
    with RunStore() as runs:
        return runs.get(run_id).config


@pytest.mark.parametrize("strategy", ["full", "head", "cut:layer.0+mlp:16:train=all", "as-is"])
def test_a_text_encoder_fine_tunes_against_scratch(hub: HubServer, tmp_path: Path, strategy: str) -> None:  # noqa: F811
    synced()
    data = str(_texts(tmp_path))
    doc = _finetune("--data", data, "--model", f"hf:{TINY_BERT}", "--strategy", strategy, "--baseline", "scratch")
    arms = doc["arms"]
    assert list(arms) == [strategy, "scratch"]
    if strategy == "as-is":
        (record,) = arms[strategy]
        assert record["epoch"] == 0 and record["method"] == "nearest class mean"
    else:
        assert [r["epoch"] for r in arms[strategy]] == [1, 2, 3, 4, 5][: len(arms[strategy])]
        trained_on = {r["trained_on"] for r in arms[strategy]}
        assert trained_on == ({"features"} if strategy == "head" else {"texts"})
    # a binary task: F1 of label 1 is kept per epoch, for every arm
    assert all(0.0 <= r["val_f1"] <= 1.0 for records in arms.values() for r in records)
    assert all(r["trained_on"] == "texts" for r in arms["scratch"])
    # a transformer keeps no running statistics: nothing to recompute, and the report knows why scratch is what it is
    assert all(r.get("running_statistics") is False for r in arms["scratch"])
    config = _config(doc["run_id"])
    # the text recipe's default learning rate: 3e-5 when the transformer trains, 1e-2 for a head alone
    assert config["lr"] == (3e-5 if strategy in ("full", "cut:layer.0+mlp:16:train=all") else 1e-2)
    assert config["truncated_share"] == 0.0 and config["adaptations"] == []


def test_pairs_train_as_assessment_reads_them(hub: HubServer, tmp_path: Path) -> None:  # noqa: F811
    """MiniLM reads a pair as a bi-encoder ([u, v, |u-v|, u*v] under the head), BERT cross-encodes it."""
    synced()
    data = str(_pairs(tmp_path))
    for model in (f"hf:{MINILM}", f"hf:{TINY_BERT}"):
        doc = _finetune("--data", data, "--model", model, "--strategy", "full", "--epochs", "2", "--lr", "1e-4")
        records = doc["arms"]["full"]
        assert [r["epoch"] for r in records] == [1, 2] and all("val_f1" in r for r in records)


def test_text_arms_cut_pool_and_read_pairs_like_extraction() -> None:
    """The arm's head reads what extract gives at the cut point (so a head trains on cached features), the
    cut drops the blocks above it, and the scratch arm has the same architecture with other weights."""
    import torch
    from sentence_transformers import SentenceTransformer
    from transformers import AutoTokenizer, BertConfig, BertModel

    from zooprobe.backbones.hf_backbone import sentence_transformer_backbone, transformers_backbone
    from zooprobe.backbones.hf_finetune import block_list

    from .test_pair_features import _entry, minilm_package  # noqa: F401

    folder = str(minilm_package.get_model_path())
    torch.manual_seed(7)  # not the scratch arm's seed
    config = BertConfig(hidden_size=32, num_hidden_layers=3, num_attention_heads=2, intermediate_size=64)
    bert = transformers_backbone(_entry("tiny-bert"), BertModel(config), AutoTokenizer.from_pretrained(folder))
    minilm = sentence_transformer_backbone(_entry("minilm"), SentenceTransformer(folder, device="cpu"))
    texts = ["A man is eating food.", "short", "The new movie is awesome and long, very long indeed"]
    pairs = [(t, texts[(i + 1) % 3]) for i, t in enumerate(texts)]
    for backbone, layer, batch_of in (
        (bert, "layer.1", texts),
        (bert, "pooled", pairs),
        (minilm, "pooled", texts),
        (minilm, "layer.2", pairs),
    ):
        seen: list[torch.Tensor] = []
        backbone.expect_pairs(batch_of is pairs)
        arm = backbone.build_arm(layer, lambda width: torch.nn.Linear(width, 2), (224, 224), seed=0)
        arm.head.register_forward_pre_hook(lambda _m, args, seen=seen: seen.append(args[0]))
        batch = backbone.preprocess(batch_of)
        arm.model.eval()
        with torch.inference_mode():
            arm.model(batch)
        expected = backbone.extract(batch, [layer])[layer]
        assert seen[0].shape == expected.shape and torch.allclose(seen[0], expected, atol=1e-5), (layer, batch_of)
        blocks = block_list(arm.model.encoder) if layer != "pooled" else None
        if blocks is not None:
            assert len(blocks) == int(layer.removeprefix("layer.")) + 1
        scratch = backbone.build_scratch_arm(layer, 2, (224, 224), seed=0)
        pretrained, fresh = arm.model.state_dict(), scratch.model.state_dict()
        assert {k: v.shape for k, v in pretrained.items()} == {k: v.shape for k, v in fresh.items()}
        matrices = [k for k, v in pretrained.items() if k.startswith("encoder.") and v.ndim == 2]
        assert matrices and not any(torch.equal(pretrained[k], fresh[k]) for k in matrices)
        again = backbone.build_scratch_arm(layer, 2, (224, 224), seed=0).model.state_dict()
        assert all(torch.equal(fresh[k], again[k]) for k in fresh)  # seeded


def test_truncation_is_recorded_with_the_share_cut(hub: HubServer, tmp_path: Path) -> None:  # noqa: F811
    from zooprobe.reports.build import build_report
    from zooprobe.reports.writers import render_markdown

    synced()
    data = _texts(tmp_path, repeat=3)
    rows = data.read_text().splitlines()
    long_text = " ".join(["word"] * 600)  # the tiny BERT takes 512 tokens
    rows[1] = f"{long_text},{rows[1].rsplit(',', 1)[1]}"
    rows[2] = f"{long_text} two,{rows[2].rsplit(',', 1)[1]}"
    data.write_text("\n".join(rows) + "\n")
    doc = _finetune("--data", str(data), "--model", f"hf:{TINY_BERT}", "--strategy", "head", "--epochs", "1")
    config = _config(doc["run_id"])
    assert config["truncated_share"] == pytest.approx(2 / 24)
    assert config["adaptations"] == ["truncation to 512 tokens: 8.3% of examples cut (2 of 24)"]
    with RunStore() as runs:
        report = render_markdown(build_report(runs, [doc["run_id"]]))
    assert "truncation to 512 tokens: 8.3% of examples cut" in report
    assert "F1" in report


def test_a_text_model_without_a_tokenizer_is_a_one_line_error(hub: HubServer, tmp_path: Path) -> None:  # noqa: F811
    synced()
    args = ["--data", str(_texts(tmp_path)), "--model", f"hf:{NO_TOKENIZER}", "--strategy", "head"]
    result = zooprobe_cli("finetune", *args)
    assert result.exit_code == 2, result.output
    (line,) = [line for line in result.output.splitlines() if line.startswith("Error")]  # progress bars aside
    assert "has no tokenizer (only special tokens)" in line and NO_TOKENIZER in line
    with RunStore() as runs:
        assert runs.list(kind="finetune") == []  # nothing written


def test_a_killed_text_run_resumes_to_the_records_of_an_uninterrupted_one(hub: HubServer, tmp_path: Path) -> None:  # noqa: F811
    """SIGKILL after the first epoch is recorded, then --resume: every record equals an uninterrupted run's."""
    from huggingface_hub import constants

    synced()
    data = str(_texts(tmp_path))
    args = ["--data", data, "--model", f"hf:{TINY_BERT}", "--strategy", "full", "--epochs", "4", "--baseline"]
    args += ["scratch", "--batch-size", "8"]
    whole = _finetune(*args)
    home = tmp_path / "killed-home"
    home.mkdir()
    (home / "catalog.sqlite3").write_bytes((Path(os.environ["ZOOPROBE_HOME"]) / "catalog.sqlite3").read_bytes())
    env = {**os.environ, "ZOOPROBE_HOME": str(home), "HF_HUB_CACHE": constants.HF_HUB_CACHE}
    recorded: list[EpochRecord] = []

    def first_epoch_recorded() -> bool:
        recorded[:] = recorded_epochs(home, "full")
        return bool(recorded)

    log = tmp_path / "killed.log"
    run_and_kill([sys.executable, "-m", "zooprobe", "finetune", *args], env, log, first_epoch_recorded)
    assert 1 <= len(recorded) < 4, log.read_text()[-2000:]
    with RunStore(home) as store:
        (run,) = store.list(kind="finetune")
    os.environ["ZOOPROBE_HOME"] = str(home)  # monkeypatched by the autouse fixture: restored after the test
    resumed = _finetune("--resume", run.id)

    def numbers(doc: dict[str, Any]) -> dict[str, list[tuple[Any, ...]]]:
        keys = ("epoch", "train_loss", "val_loss", "val_accuracy", "val_f1", "phase")
        return {arm: [tuple(r[k] for k in keys) for r in records] for arm, records in doc["arms"].items()}

    assert numbers(resumed) == numbers(whole)


def test_text_learning_rate_warms_up_then_decays_linearly_as_transformers_does() -> None:
    from zooprobe.finetuning.recipes import train_settings
    from zooprobe.finetuning.trainer import lr_factor

    settings = train_settings("text", epochs=3, lr=3e-5, batch_size=8, seed=0, patience=3)
    assert (settings.schedule, settings.head_warmup_epochs, settings.body_lr_factor) == ("linear", 0, 1.0)
    assert train_settings("image", epochs=3, lr=2e-3, batch_size=8, seed=0, patience=3).schedule == "cosine"
    factors = [lr_factor(step, 20, 0.1, settings.schedule) for step in range(20)]
    assert factors[:3] == [0.5, 1.0, 1.0]
    assert factors[11] == pytest.approx(1 - 9 / 18)
    steps = [a - b for a, b in zip(factors[2:], factors[3:], strict=False)]
    assert all(step == pytest.approx(1 / 18) for step in steps)


def test_f1_is_that_of_label_one() -> None:
    import torch

    from zooprobe.finetuning.trainer import positive_f1

    labels = torch.tensor([1, 1, 1, 0, 0, 0])
    predicted = torch.tensor([1, 1, 0, 1, 0, 0])  # precision 2/3, recall 2/3
    assert positive_f1(predicted, labels) == pytest.approx(2 / 3)
    assert positive_f1(torch.zeros(6, dtype=torch.long), labels) == 0.0
