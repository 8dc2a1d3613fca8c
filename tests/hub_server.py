"""A loopback HTTP server speaking the subset of the Hugging Face Hub API that ``huggingface_hub`` calls.

Routes (all read-only, models only):

- ``GET /api/models`` with ``search``, ``filter`` (repeatable, every one must be a tag, the library or
  the pipeline tag), ``pipeline_tag``, ``author``, ``sort`` (descending), ``limit``, ``expand``
- ``GET /api/models/{repo}`` and ``/api/models/{repo}/revision/{rev}``: model info with a 40-hex ``sha``
- ``GET /api/models/{repo}/tree/{rev}[/{folder}]``: the files, with git blob and LFS ids
- ``HEAD``/``GET /{repo}/resolve/{rev}/{path}``: the bytes, with ``X-Repo-Commit``, ``ETag``,
  ``X-Linked-Etag``/``X-Linked-Size`` for LFS files, ``Content-Length``, and ``Range`` support

Errors answer the way the Hub does: ``X-Error-Code: RepoNotFound`` (404), ``RevisionNotFound`` (404),
``EntryNotFound`` (404) and ``GatedRepo`` (403 on files of a gated repo). Every request is recorded
in ``HubServer.requests`` (and the ``Range`` header of each ranged one in ``HubServer.ranges``) so
that tests can assert what the real client asked for.

Faults, per ``(repo_id, path)``, for the next N ``GET``s of that file: ``corrupt`` sends bytes of the
right length that are not the file's (headers unchanged, as from a bad proxy); ``cut`` sends the
headers of the whole file, half the body, then closes the connection (a dropped download).
"""

from __future__ import annotations

import hashlib
import json
import re
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

LFS_SUFFIXES = (".safetensors", ".bin", ".pth", ".pt", ".h5", ".onnx", ".msgpack")
_INVERT = bytes(255 - i for i in range(256))


@dataclass
class HubRepo:
    """One model repository: its files and the metadata the Hub's API reports about it."""

    repo_id: str
    files: dict[str, bytes]
    sha: str = ""
    tags: list[str] = field(default_factory=list)
    pipeline_tag: str | None = None
    library_name: str | None = None
    downloads: int = 0
    likes: int = 0
    card_data: dict[str, Any] | None = None
    safetensors: dict[str, Any] | None = None
    gated: bool | str = False

    def __post_init__(self) -> None:
        if not self.sha:
            digest = hashlib.sha1(self.repo_id.encode())
            for path in sorted(self.files):
                digest.update(path.encode() + hashlib.sha1(self.files[path]).digest())
            self.sha = digest.hexdigest()

    def is_lfs(self, path: str) -> bool:
        return path.endswith(LFS_SUFFIXES)

    def info(self) -> dict[str, Any]:
        return {
            "id": self.repo_id,
            "modelId": self.repo_id,
            "author": self.repo_id.split("/")[0],
            "sha": self.sha,
            "lastModified": "2025-01-02T03:04:05.000Z",
            "createdAt": "2024-01-02T03:04:05.000Z",
            "private": False,
            "gated": self.gated,
            "disabled": False,
            "downloads": self.downloads,
            "likes": self.likes,
            "tags": self.tags,
            "pipeline_tag": self.pipeline_tag,
            "library_name": self.library_name,
            "cardData": self.card_data,
            "safetensors": self.safetensors,
            "siblings": [{"rfilename": path} for path in sorted(self.files)],
        }

    def tree(self, folder: str) -> list[dict[str, Any]]:
        prefix = f"{folder.strip('/')}/" if folder.strip("/") else ""
        out: list[dict[str, Any]] = []
        for path in sorted(self.files):
            if not path.startswith(prefix):
                continue
            data = self.files[path]
            item: dict[str, Any] = {"type": "file", "path": path, "size": len(data), "oid": git_blob_id(data)}
            if self.is_lfs(path):
                item["lfs"] = {"oid": hashlib.sha256(data).hexdigest(), "size": len(data), "pointerSize": 134}
            out.append(item)
        return out


def git_blob_id(data: bytes) -> str:
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


def repo_from_folder(repo_id: str, folder: Path, **metadata: Any) -> HubRepo:
    """A repo holding every file under ``folder`` (paths relative to it, dot-files skipped)."""
    files = {
        p.relative_to(folder).as_posix(): p.read_bytes()
        for p in sorted(folder.rglob("*"))
        if p.is_file() and not p.name.startswith(".") and "__pycache__" not in p.parts
    }
    return HubRepo(repo_id, files, **metadata)


class HubServer:
    """The server, started on 127.0.0.1 on a free port; use as a context manager."""

    def __init__(self, repos: list[HubRepo]) -> None:
        self.repos = {r.repo_id: r for r in repos}
        self.requests: list[tuple[str, str]] = []
        self.ranges: list[tuple[str, str]] = []
        self.corrupt: dict[tuple[str, str], int] = {}
        self.cut: dict[tuple[str, str], int] = {}
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), _handler_for(self))
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}"

    def __enter__(self) -> HubServer:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join()

    def listing(self, query: dict[str, list[str]]) -> list[dict[str, Any]]:
        def matches(repo: HubRepo) -> bool:
            labels = {*repo.tags, repo.library_name, repo.pipeline_tag}
            if any(f not in labels for f in query.get("filter", [])):
                return False
            if "pipeline_tag" in query and repo.pipeline_tag != query["pipeline_tag"][0]:
                return False
            if "author" in query and repo.repo_id.split("/")[0] != query["author"][0]:
                return False
            return query.get("search", [""])[0].lower() in repo.repo_id.lower()

        found = [r for r in self.repos.values() if matches(r)]
        sort = query.get("sort", [""])[0]
        if sort in ("downloads", "likes"):
            found.sort(key=lambda r: getattr(r, sort), reverse=True)
        if "limit" in query:
            found = found[: int(query["limit"][0])]
        infos = [r.info() for r in found]
        expand = query.get("expand", [])
        if expand:  # the Hub answers only the expanded properties (and the id)
            keys = {"id", "modelId", *expand}
            infos = [{k: v for k, v in info.items() if k in keys} for info in infos]
        else:
            for info in infos:
                info.pop("cardData")
                info.pop("safetensors")
        return infos

    def reset(self) -> None:
        """Forget the requests and faults of earlier tests."""
        self.requests.clear()
        self.ranges.clear()
        self.corrupt.clear()
        self.cut.clear()

    def take_fault(self, faults: dict[tuple[str, str], int], repo_id: str, path: str) -> bool:
        """Whether this request gets the fault (counting it down)."""
        left = faults.get((repo_id, path), 0)
        if left > 0:
            faults[(repo_id, path)] = left - 1
        return left > 0

    def resolve(self, repo_id: str, revision: str, path: str) -> tuple[HubRepo, bytes] | tuple[None, str]:
        repo = self.repos.get(repo_id)
        if repo is None:
            return None, "RepoNotFound"
        if revision not in ("main", repo.sha):
            return None, "RevisionNotFound"
        if path not in repo.files:
            return None, "EntryNotFound"
        return repo, repo.files[path]


_API_MODEL = re.compile(
    r"^/api/models/(?P<repo>[^/]+/[^/]+)(?:/(?P<kind>revision|tree)/(?P<rev>[^/]+)(?P<rest>/.*)?)?$"
)
_RESOLVE = re.compile(r"^/(?P<repo>[^/]+/[^/]+)/resolve/(?P<rev>[^/]+)/(?P<path>.+)$")


def _handler_for(hub: HubServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: Any) -> None:
            return None

        def do_HEAD(self) -> None:
            self._serve(body=False)

        def do_GET(self) -> None:
            self._serve(body=True)

        def _serve(self, body: bool) -> None:
            parts = urlsplit(self.path)
            path = unquote(parts.path)
            query = parse_qs(parts.query)
            hub.requests.append((self.command, self.path))
            if "Range" in self.headers:
                hub.ranges.append((self.path, self.headers["Range"]))
            if path == "/api/models":
                return self._json(hub.listing(query), body)
            api = _API_MODEL.match(path)
            if api:
                return self._api_model(api, body)
            resolve = _RESOLVE.match(path)
            if resolve:
                return self._resolve(resolve["repo"], resolve["rev"], resolve["path"], body)
            self._error(404, "RepoNotFound", body)

        def _api_model(self, api: re.Match[str], body: bool) -> None:
            repo = hub.repos.get(api["repo"])
            if repo is None:
                return self._error(404, "RepoNotFound", body)
            if api["rev"] and unquote(api["rev"]) not in ("main", repo.sha):
                return self._error(404, "RevisionNotFound", body)
            if api["kind"] == "tree":
                items = repo.tree(api["rest"] or "")
                if not items and (api["rest"] or "").strip("/"):
                    return self._error(404, "EntryNotFound", body)
                return self._json(items, body)
            return self._json(repo.info(), body)

        def _resolve(self, repo_id: str, revision: str, file_path: str, body: bool) -> None:
            found, data = hub.resolve(repo_id, unquote(revision), file_path)
            if found is None:
                assert isinstance(data, str)
                return self._error(404, data, body)
            assert isinstance(data, bytes)
            if found.gated:
                return self._error(403, "GatedRepo", body)
            start, end = 0, len(data)
            status = 200
            ranged = re.match(r"bytes=(\d+)-(\d*)", self.headers.get("Range", ""))
            if ranged and int(ranged[1]) < len(data):
                start = int(ranged[1])
                end = int(ranged[2]) + 1 if ranged[2] else len(data)
                status = 206
            self.send_response(status)
            self.send_header("X-Repo-Commit", found.sha)
            self.send_header("ETag", f'"{git_blob_id(data)}"')
            if found.is_lfs(file_path):
                self.send_header("X-Linked-Etag", f'"{hashlib.sha256(data).hexdigest()}"')
                self.send_header("X-Linked-Size", str(len(data)))
            if status == 206:
                self.send_header("Content-Range", f"bytes {start}-{end - 1}/{len(data)}")
            self.send_header("Accept-Ranges", "bytes")
            self.send_header("Content-Length", str(end - start))
            self.end_headers()
            if not body:
                return
            if hub.take_fault(hub.cut, repo_id, file_path):
                self.wfile.write(data[start : start + (end - start) // 2])
                self.wfile.flush()
                self.close_connection = True
                return
            if hub.take_fault(hub.corrupt, repo_id, file_path):
                data = data.translate(_INVERT)
            self.wfile.write(data[start:end])

        def _json(self, payload: Any, body: bool) -> None:
            raw = json.dumps(payload).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(raw)))
            self.end_headers()
            if body:
                self.wfile.write(raw)

        def _error(self, status: int, code: str, body: bool) -> None:
            raw = json.dumps({"error": code}).encode()
            self.send_response(status)
            self.send_header("X-Error-Code", code)
            self.send_header("X-Error-Message", code)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(raw)))
            self.end_headers()
            if body:
                self.wfile.write(raw)

    return Handler


def iter_requests(hub: HubServer, method: str = "GET") -> Iterator[str]:
    """Paths the client requested with ``method``, in order."""
    return (path for m, path in hub.requests if m == method)
