"""The Hugging Face Hub's cache and downloads: reaching the Hub once per process, resolving commits, and
fetching snapshots that are checked before anything loads.

Downloads: zooprobe fetches the repo's snapshot through ``snapshot_download`` itself (leaving out other
frameworks' formats, and torch pickles that have a safetensors twin), checks it, then lets the library
load from the cache with the client offline, so that nothing it loads was fetched unchecked. The client
checks only each file's size; zooprobe hashes every LFS blob against its sha256 name (once per blob per
process), deletes a corrupt one and fetches it again, and resumes a partial blob left in the cache by
an interrupted process with a ``Range`` request (the client itself resumes only within one download).
"""

from __future__ import annotations

import hashlib
import os
import re
import socket
import sys
from collections.abc import Iterable, Sequence
from functools import cache
from pathlib import Path
from urllib.parse import urlsplit

from ..errors import ZooprobeError, first_line

SHA256 = re.compile(r"^[0-9a-f]{64}$")
CONNECT_TIMEOUT_S = 3.0


COMMIT = re.compile(r"^[0-9a-f]{40}$")


PARTIAL = re.compile(r"^(?P<sha>[0-9a-f]{64})(?:\.[0-9a-f]{8})?\.incomplete$")


# Files no loader here reads (other frameworks and runtimes, training state): never downloaded.
OTHER_FORMATS: tuple[str, ...] = (
    "*.h5",
    "*.msgpack",
    "*.onnx",
    "*.onnx_data",
    "*.ot",
    "*.tflite",
    "*.gguf",
    "*.mlmodel",
    "*.mlpackage/*",
    "onnx/*",
    "openvino/*",
    "coreml/*",
    "tf_model*",
    "flax_model*",
    "rust_model*",
    "*optimizer.pt",
    "*scheduler.pt",
    "*rng_state*",
    "*training_args.bin",
)


TORCH_PICKLES = (".bin", ".pt", ".pth")


# (blob path, size, mtime) of the blobs whose content matched their sha256 name in this process
_verified: set[tuple[str, int, int]] = set()


class HubError(ZooprobeError):
    """A Hub repo that cannot be listed, downloaded or loaded (unknown, gated, not cached while offline)."""


def hub_endpoint() -> str:
    """The Hub the client talks to: ``$HF_ENDPOINT`` as huggingface_hub read it at import."""
    from huggingface_hub import constants

    return str(constants.ENDPOINT)


def hub_cache() -> Path:
    """The client's model cache (``$HF_HUB_CACHE``, default ``$HF_HOME/hub``)."""
    from huggingface_hub import constants

    return Path(constants.HF_HUB_CACHE)


def hub_reachable() -> tuple[bool, str]:
    """Whether the Hub can be reached, and why not: ``HF_HUB_OFFLINE`` or one short TCP connect.

    The connect result is remembered per endpoint for the life of the process.
    """
    from huggingface_hub import constants

    # the client reads HF_HUB_OFFLINE at import; a long-lived process may have set it since
    if constants.HF_HUB_OFFLINE or os.environ.get("HF_HUB_OFFLINE", "").upper() in ("1", "ON", "YES", "TRUE"):
        return False, "HF_HUB_OFFLINE is set"
    return _connects(hub_endpoint())


@cache
def _connects(endpoint: str) -> tuple[bool, str]:
    parts = urlsplit(endpoint)
    host = parts.hostname or ""
    port = parts.port or (443 if parts.scheme == "https" else 80)
    try:
        with socket.create_connection((host, port), timeout=CONNECT_TIMEOUT_S):
            return True, ""
    except OSError as exc:
        return False, f"{host}:{port} cannot be reached ({exc.strerror or type(exc).__name__})"


def repo_cache_folder(repo_id: str) -> Path:
    """Where the Hub client keeps ``repo_id`` (its ``refs``, ``snapshots`` and ``blobs``)."""
    return hub_cache() / f"models--{repo_id.replace('/', '--')}"


def cached_snapshots(repo_id: str) -> list[Path]:
    """Snapshot folders of ``repo_id`` in the local Hub cache (one per cached commit), newest first."""
    folder = repo_cache_folder(repo_id) / "snapshots"
    if not folder.is_dir():
        return []
    return sorted((p for p in folder.iterdir() if p.is_dir() and any(p.iterdir())), key=lambda p: -p.stat().st_mtime)


def resolve_commit(repo_id: str, revision: str | None) -> str:
    """The full 40-hex commit ``revision`` (default: the repo's head) points to."""
    from huggingface_hub import HfApi

    try:
        sha = HfApi().model_info(repo_id, revision=revision if revision else None).sha
    except Exception as exc:  # noqa: BLE001
        raise _hub_error(repo_id, exc) from exc
    if not sha or not COMMIT.match(sha):
        raise HubError(f"the Hub answered no full commit id for '{repo_id}' (got {sha!r}); pass a 40-hex revision")
    return sha


def ignore_patterns(files: Iterable[str]) -> list[str]:
    """What ``snapshot_download`` leaves out of a repo holding ``files``: :data:`OTHER_FORMATS`, and each
    torch pickle whose safetensors twin is there (``pytorch_model*.bin`` → ``model*.safetensors``,
    ``X.bin`` → ``X.safetensors``), since transformers, timm and sentence-transformers read that first."""
    from huggingface_hub.utils import filter_repo_objects  # type: ignore[attr-defined]  # lazily exported

    patterns = list(OTHER_FORMATS)
    kept = set(filter_repo_objects(list(files), ignore_patterns=patterns))
    for name in sorted(kept):
        if name.endswith(TORCH_PICKLES):
            folder, _, base = name.rpartition("/")
            twin = base.rsplit(".", 1)[0].replace("pytorch_model", "model") + ".safetensors"
            if (f"{folder}/{twin}" if folder else twin) in kept and not re.search(r"[][*?]", name):
                patterns.append(name)
    return patterns


def fetch_verified(repo_id: str, revision: str | None) -> Path:
    """Download the snapshot of ``repo_id`` at ``revision`` (default: main) into the Hub cache, checked.

    A partial blob an interrupted process left is resumed first; after the download every LFS blob is
    hashed against its sha256 name, and a corrupt one is deleted and fetched once more.

    :raises HubError: when a file downloads corrupt twice (it is deleted: nothing corrupt stays cached).
    """
    from huggingface_hub import HfApi, snapshot_download

    info = HfApi().model_info(repo_id, revision=revision)
    if not info.sha:
        raise HubError(f"the Hub answered no commit for '{repo_id}'; retry, or pass a 40-hex revision")
    ignore = ignore_patterns(s.rfilename for s in info.siblings or ())
    resume_partial_downloads(repo_id, info.sha, ignore)

    def download() -> Path:
        return Path(snapshot_download(repo_id, revision=revision, ignore_patterns=ignore))

    folder = download()
    bad = corrupt_files(folder, ignore)
    if not bad:
        return folder
    for name, blob, _actual in bad:
        print(f"zooprobe: {repo_id}/{name} downloaded corrupt (sha256 mismatch); downloading it again", file=sys.stderr)
        discard_blob(blob)
    folder = download()
    bad = corrupt_files(folder, ignore)
    for _name, blob, _actual in bad:
        discard_blob(blob)
    if bad:
        name, blob, actual = bad[0]
        raise HubError(
            f"'{name}' of '{repo_id}' downloaded corrupt twice from {hub_endpoint()} (sha256 {actual[:12]}..., "
            f"expected {blob.name[:12]}...) and was deleted from {hub_cache()}: retry later, or check the proxy "
            "or network between here and the Hub"
        )
    return folder


def verify_cached(repo_id: str) -> Path | None:
    """Check the cached snapshot of ``repo_id`` the client reads offline (``refs/main``, else the newest).

    :raises HubError: when a cached LFS blob is corrupt (it is deleted; connecting downloads it again).
    """
    storage = repo_cache_folder(repo_id)
    ref = storage / "refs" / "main"
    folder = storage / "snapshots" / ref.read_text().strip() if ref.is_file() else None
    if folder is None or not folder.is_dir():
        snapshots = cached_snapshots(repo_id)
        folder = snapshots[0] if snapshots else None
    if folder is None:
        return None
    files = [p.relative_to(folder).as_posix() for p in folder.rglob("*") if not p.is_dir()]
    bad = corrupt_files(folder, ignore_patterns(files))
    for _name, blob, _actual in bad:
        discard_blob(blob)
    if bad:
        raise HubError(
            f"the cached '{bad[0][0]}' of '{repo_id}' is corrupt (sha256 mismatch) and was deleted from "
            f"{hub_cache()}; connect to the Hub at {hub_endpoint()} once to download it again"
        )
    return folder


def corrupt_files(folder: Path, ignore: Sequence[str]) -> list[tuple[str, Path, str]]:
    """(path in the repo, blob, actual sha256) of each LFS file of the snapshot ``folder`` (outside
    ``ignore``) whose content does not hash to its blob's sha256 name.

    The client names an LFS blob after the ``X-Linked-Etag`` the Hub sent (the file's sha256) but checks
    only the size of what it received, so a transfer that went wrong with the length intact (a bad
    proxy, a flipped bit, an old client's resume over changed content) would load as it is.
    """
    from huggingface_hub.utils import filter_repo_objects  # type: ignore[attr-defined]  # lazily exported

    files = [p.relative_to(folder).as_posix() for p in folder.rglob("*") if not p.is_dir()]
    bad: list[tuple[str, Path, str]] = []
    for name in filter_repo_objects(files, ignore_patterns=list(ignore)):
        blob = (folder / name).resolve()
        if not SHA256.match(blob.name) or not blob.is_file():
            continue
        stat = blob.stat()
        key = (str(blob), stat.st_size, stat.st_mtime_ns)
        if key in _verified:
            continue
        actual = sha256_of(blob)
        if actual == blob.name:
            _verified.add(key)
        else:
            bad.append((name, blob, actual))
    return bad


def sha256_of(path: Path) -> str:
    with path.open("rb") as handle:
        return hashlib.file_digest(handle, "sha256").hexdigest()


def discard_blob(blob: Path) -> None:
    """Delete ``blob`` and every snapshot link of its repo pointing at it."""
    storage = blob.parent.parent
    for link in (storage / "snapshots").rglob("*"):
        if link.is_symlink() and link.resolve() == blob:
            link.unlink()
    blob.unlink(missing_ok=True)


def resume_partial_downloads(repo_id: str, commit: str, ignore: Sequence[str]) -> None:
    """Finish each partial LFS blob of ``repo_id`` left in the cache with a ``Range`` request, if the file
    is part of ``commit`` (outside ``ignore``); a finished blob whose sha256 is wrong is deleted.

    The client downloads each file to a fresh temporary name and never reuses what a killed process
    wrote, so without this a large download interrupted near its end starts over from zero. The
    client's lock on the blob is held meanwhile, as its own downloads hold it.
    """
    blobs = repo_cache_folder(repo_id) / "blobs"
    partials: dict[str, list[Path]] = {}
    if blobs.is_dir():
        for path in blobs.iterdir():
            match = PARTIAL.match(path.name)
            if match and not (blobs / match["sha"]).exists():
                partials.setdefault(match["sha"], []).append(path)
    if not partials:
        return
    from huggingface_hub import HfApi
    from huggingface_hub.hf_api import RepoFile
    from huggingface_hub.utils import WeakFileLock, filter_repo_objects  # type: ignore[attr-defined]

    tree = HfApi().list_repo_tree(repo_id, recursive=True, revision=commit)
    by_sha = {f.lfs.sha256: f.path for f in tree if isinstance(f, RepoFile) and f.lfs is not None}
    wanted = set(filter_repo_objects(list(by_sha.values()), ignore_patterns=list(ignore)))
    for sha, paths in partials.items():
        name = by_sha.get(sha)
        if name is None or name not in wanted:
            continue  # a file of another commit, or one this load does not need
        lock = hub_cache() / ".locks" / blobs.parent.name / f"{sha}.lock"
        lock.parent.mkdir(parents=True, exist_ok=True)
        with WeakFileLock(lock):
            present = [p for p in paths if p.is_file()]  # a download that held the lock moved or removed its own
            if not present or (blobs / sha).exists():
                continue
            partial = max(present, key=lambda p: p.stat().st_size)
            for other in present:
                if other != partial:
                    other.unlink()
            _resume(repo_id, commit, name, partial, blobs / sha)


def _resume(repo_id: str, commit: str, name: str, partial: Path, blob: Path) -> None:
    from huggingface_hub import get_hf_file_metadata, hf_hub_url
    from huggingface_hub.errors import HfHubHTTPError
    from huggingface_hub.file_download import http_get
    from huggingface_hub.utils import build_hf_headers  # type: ignore[attr-defined]

    meta = get_hf_file_metadata(hf_hub_url(repo_id, name, revision=commit))
    have = partial.stat().st_size
    if meta.etag != blob.name or meta.size is None or have > meta.size:
        partial.unlink()  # not a prefix of this file: the client downloads it afresh
        return
    print(f"zooprobe: resuming the download of {repo_id}/{name} at byte {have:,} of {meta.size:,}", file=sys.stderr)
    try:
        with partial.open("ab") as handle:
            http_get(
                meta.location,
                handle,
                resume_size=have,
                headers=build_hf_headers(),
                expected_size=meta.size,
                displayed_filename=name,
            )
    except HfHubHTTPError:  # the server refused the range: start over
        partial.unlink()
        return
    if sha256_of(partial) != blob.name:
        partial.unlink()
        return
    os.replace(partial, blob)
    stat = blob.stat()
    _verified.add((str(blob.resolve()), stat.st_size, stat.st_mtime_ns))


def _hub_error(repo_id: str, exc: Exception, *, fetched: bool = False) -> HubError:
    from huggingface_hub.errors import (
        GatedRepoError,
        LocalEntryNotFoundError,
        RepositoryNotFoundError,
        RevisionNotFoundError,
    )

    cause: BaseException | None = exc
    while cause is not None:  # transformers and timm wrap the client's errors in their own
        if isinstance(cause, GatedRepoError):
            return HubError(
                f"'{repo_id}' is a gated repo: accept its terms on {hub_endpoint()}/{repo_id} "
                "and set HF_TOKEN (or run 'hf auth login')"
            )
        if isinstance(cause, RevisionNotFoundError):
            return HubError(f"'{repo_id}' has no such revision; pass a branch, tag or 40-hex commit that exists")
        if isinstance(cause, RepositoryNotFoundError):
            return HubError(
                f"no repo '{repo_id}' on {hub_endpoint()} (or it is private: set HF_TOKEN); "
                "list repos with 'zooprobe search --source hf'"
            )
        if isinstance(cause, LocalEntryNotFoundError) and fetched:
            return HubError(
                f"'{repo_id}' needs a file zooprobe does not download (it skips ONNX, TensorFlow, Flax and other "
                f"runtimes' files: {', '.join(OTHER_FORMATS[:6])} ...); load it with its own library"
            )
        if isinstance(cause, LocalEntryNotFoundError):
            return HubError(f"'{repo_id}' is not fully in the local Hugging Face cache ({hub_cache()}); connect once")
        cause = cause.__cause__ or cause.__context__
    return HubError(f"cannot load '{repo_id}' from the Hugging Face Hub: {first_line(exc)}")


class _offline:
    """Offline mode for the client while one load runs, when the Hub was found unreachable."""

    def __init__(self, active: bool) -> None:
        self.active = active
        self.before = False

    def __enter__(self) -> None:
        from huggingface_hub import constants

        self.before = constants.HF_HUB_OFFLINE
        if self.active:
            constants.HF_HUB_OFFLINE = True

    def __exit__(self, *exc: object) -> None:
        from huggingface_hub import constants

        constants.HF_HUB_OFFLINE = self.before
