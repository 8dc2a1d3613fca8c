"""TF-Hub source: the snapshot, and loading real SavedModels through tensorflow_hub (local and http)."""

from __future__ import annotations

import http.server
import json
import os
import subprocess
import sys
import threading
from collections.abc import Iterator
from importlib.util import find_spec
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from tests.tiny_tf import RESOLUTION, save_tiny_feature_vector, tar_gz
from zooprobe.backbones.tf_backbone import import_tensorflow
from zooprobe.errors import ZooprobeError
from zooprobe.sources.tfhub_source import TFHubLoadError, TFHubSource, load_handle

if find_spec("tensorflow_hub") is None:
    pytest.skip("needs the tfhub extra: pip install 'zooprobe[tfhub]'", allow_module_level=True)


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Any]:
    folder = tmp_path_factory.mktemp("tiny") / "savedmodel"
    return folder, save_tiny_feature_vector(folder)


class _Archives(http.server.BaseHTTPRequestHandler):
    """Serves ``routes`` (path -> bytes) only when asked with ``?tf-hub-format=compressed``, as tfhub.dev did."""

    routes: dict[str, bytes] = {}
    requests: list[str] = []

    def do_GET(self) -> None:  # noqa: N802 - http.server's naming
        path, _, query = self.path.partition("?")
        type(self).requests.append(self.path)
        body = self.routes.get(path)
        if body is None or query != "tf-hub-format=compressed":
            self.send_error(404)
            return
        self.send_response(200)
        self.send_header("Content-Type", "application/x-tar")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: Any) -> None:
        return None


@pytest.fixture
def hub_server(tiny: tuple[Path, Any]) -> Iterator[str]:
    _Archives.routes = {"/google/tiny/1": tar_gz(tiny[0]), "/google/corrupt/1": b"\x1f\x8b not really gzip"}
    _Archives.requests = []
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Archives)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def _images(n: int = 5) -> list[np.ndarray]:
    rng = np.random.default_rng(0)
    return [rng.integers(0, 256, size=(40 + i, 50, 3), dtype=np.uint8) for i in range(n)]


def _assert_features_equal_direct_call(backbone: Any, module: Any) -> None:
    tf = import_tensorflow()

    batch = backbone.preprocess(_images())
    assert tuple(batch.shape) == (5, 3, RESOLUTION, RESOLUTION)
    features = backbone.extract(batch, ["output"])["output"].numpy()
    expected = module(tf.constant(batch.permute(0, 2, 3, 1).numpy())).numpy()
    assert features.shape == (5, 8)
    np.testing.assert_allclose(features, expected, rtol=1e-5, atol=1e-6)


def test_snapshot_entries_carry_doc_facts_with_provenance() -> None:
    entries = {e.name: e for e in TFHubSource().entries()}
    mobilenet = entries["google/imagenet/mobilenet_v2_100_224/feature_vector/5"]
    assert mobilenet.id == "tfhub:google/imagenet/mobilenet_v2_100_224/feature_vector/5"
    assert (mobilenet.feature_dim, mobilenet.input.default_resolution, mobilenet.input.fixed_resolution) == (
        1280,
        (224, 224),
        True,
    )
    assert [s.dataset for s in mobilenet.pretraining] == ["imagenet-1k"]
    assert "tfhub.dev" in dict(mobilenet.provenance)["feature_dim"]
    use = entries["google/universal-sentence-encoder/4"]
    assert (use.modality, use.feature_dim, use.tasks) == ("text", 512, ("text-embedding",))
    for entry in entries.values():
        assert entry.handle and entry.handle.startswith("https://tfhub.dev/")
        assert entry.weights_license is None  # no tfhub.dev page states one: unknown, not guessed
        if entry.feature_dim is not None:
            assert "feature_dim" in dict(entry.provenance)


def test_search_never_imports_tensorflow_or_kagglehub(tmp_path: Path) -> None:
    script = (
        "import sys\n"
        "from zooprobe.plugins.manager import get_sources\n"
        "from zooprobe.catalog.store import Catalog, Query\n"
        "from zooprobe.plugins.sync import sync_sources\n"
        f"with Catalog({str(tmp_path)!r}) as cat:\n"
        "    sync_sources(cat, get_sources().values())\n"
        "    hits = [e.id for e in cat.search(Query(source='tfhub', limit=None))]\n"
        "    hits += [e.id for e in cat.search(Query(source='kaggle', limit=None))]\n"
        "heavy = sorted(m for m in ('tensorflow', 'tensorflow_hub', 'kagglehub', 'kagglesdk') if m in sys.modules)\n"
        "print(len(hits), heavy)\n"
    )
    env = {**os.environ, "ZOOPROBE_PLUGINS": "tfhub,kaggle", "KAGGLE_CONFIG_DIR": str(tmp_path / "no-kaggle")}
    for key in ("KAGGLE_USERNAME", "KAGGLE_KEY", "KAGGLE_API_TOKEN"):
        env.pop(key, None)
    out = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, check=True)
    count, heavy = out.stdout.strip().split(" ", 1)
    assert int(count) >= 9
    assert heavy == "[]"


def test_local_folder_and_file_url_load_and_match_a_direct_call(tiny: tuple[Path, Any]) -> None:
    folder, module = tiny
    for handle in (str(folder), folder.as_uri()):
        backbone = load_handle(handle)
        assert backbone.cut_points == ["output"]
        assert backbone.entry.input.default_resolution == (RESOLUTION, RESOLUTION)  # read off the signature
        _assert_features_equal_direct_call(backbone, module)


@pytest.mark.usefixtures("trusted_savedmodels")
def test_http_handle_downloads_the_archive_into_tfhub_cache_dir(
    tiny: tuple[Path, Any], hub_server: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cache = tmp_path / "tfhub-cache"
    monkeypatch.setenv("TFHUB_CACHE_DIR", str(cache))
    handle = f"{hub_server}/google/tiny/1"
    _assert_features_equal_direct_call(load_handle(handle), tiny[1])
    assert _Archives.requests == ["/google/tiny/1?tf-hub-format=compressed"]
    assert [p.name for p in cache.glob("*/saved_model.pb")] == ["saved_model.pb"]
    # a filled cache folder means no second download
    _assert_features_equal_direct_call(load_handle(handle), tiny[1])
    assert len(_Archives.requests) == 1


def test_extract_features_runs_a_tf_backbone(tiny: tuple[Path, Any], tmp_path: Path) -> None:
    from zooprobe.backbones.features import extract_features
    from zooprobe.data.datasets import Dataset

    images = _images(6)
    dataset = Dataset(
        name="tiny",
        modality="image",
        labels=np.array([0, 1] * 3),
        classes=("a", "b"),
        arrays=tuple(images),
        shapes=tuple(i.shape for i in images),
    )
    backbone = load_handle(str(tiny[0]))
    features = extract_features(backbone, dataset, ["output"], batch_size=4, cache_dir=tmp_path, progress=False)
    direct = backbone.extract(backbone.preprocess(images), ["output"])["output"].numpy()
    np.testing.assert_allclose(np.asarray(features["output"]), direct, rtol=1e-5, atol=1e-6)


def test_text_embedding_handle(tmp_path: Path) -> None:
    tf = import_tensorflow()

    class Lengths(tf.Module):
        @tf.function(input_signature=[tf.TensorSpec([None], tf.string)])
        def __call__(self, texts: Any) -> Any:
            return {"length": tf.cast(tf.strings.length(texts)[:, None], tf.float32)}

    tf.saved_model.save(Lengths(), str(tmp_path / "text"))
    backbone = load_handle(str(tmp_path / "text"), modality="text")
    assert backbone.cut_points == ["length"]
    assert backbone.extract_text(["ab", "abcd"], ["length"])["length"].numpy().ravel().tolist() == [2.0, 4.0]


@pytest.mark.parametrize(
    ("path", "message"),
    [("/google/missing/1", "answered HTTP 404"), ("/google/corrupt/1", "not a valid TF-Hub archive")],
)
@pytest.mark.usefixtures("trusted_savedmodels")
def test_http_failures_are_one_line_and_leave_no_cache(
    hub_server: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, path: str, message: str
) -> None:
    cache = tmp_path / "tfhub-cache"
    monkeypatch.setenv("TFHUB_CACHE_DIR", str(cache))
    with pytest.raises(TFHubLoadError) as info:
        load_handle(hub_server + path)
    assert message in str(info.value) and "\n" not in str(info.value)
    assert not list(cache.glob("*/saved_model.pb"))


def test_missing_local_folder_is_a_one_line_error(tmp_path: Path) -> None:
    with pytest.raises(ZooprobeError, match="is not a SavedModel folder") as info:
        load_handle(str(tmp_path / "nowhere"))
    assert "\n" not in str(info.value)


def test_snapshot_file_names_its_source_for_every_record() -> None:
    from importlib import resources

    data = json.loads(resources.files("zooprobe.sources.data").joinpath("tfhub_snapshot.json").read_text())
    assert data["doc_repo"] == "tensorflow/tfhub.dev"
    for record in data["models"]:
        assert record["doc"].startswith("assets/docs/") and len(record["commit"]) == 40
