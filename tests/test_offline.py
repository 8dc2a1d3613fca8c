"""Listing and searching with none of the frameworks installed, from the shipped entry snapshots."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from zooprobe.catalog.schema import Entry
from zooprobe.catalog.store import Catalog
from zooprobe.plugins.entry_snapshot import EntrySnapshot, read_entry_snapshot, snapshot_file
from zooprobe.plugins.manager import get_sources
from zooprobe.plugins.sync import sync_sources

FRAMEWORKS = ("torch", "torchvision", "timm", "keras", "tensorflow", "pandas")

# Runs in a fresh interpreter where importing (or finding) any framework fails as if uninstalled.
BLOCKED_RUN = textwrap.dedent(
    """
    import importlib.abc, json, sys
    BLOCKED = {blocked!r}

    class Uninstalled(importlib.abc.MetaPathFinder):
        def find_spec(self, name, path=None, target=None):
            if name.split(".")[0] in BLOCKED:
                raise ModuleNotFoundError(f"No module named {{name!r}}", name=name)
            return None

    sys.meta_path.insert(0, Uninstalled())
    from zooprobe.cli import cli

    for args in {commands!r}:
        try:
            cli.main(args, standalone_mode=False)
        except SystemExit:
            pass
        print("\\n=====")
    print(json.dumps(sorted(m for m in sys.modules if m.split(".")[0] in BLOCKED)))
    """
)


def run_blocked(home: Path, *commands: list[str]) -> list[str]:
    code = BLOCKED_RUN.format(blocked=set(FRAMEWORKS), commands=list(commands))
    env = {**os.environ, "ZOOPROBE_HOME": str(home)}
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    return done.stdout.split("\n=====\n")


def test_search_and_show_work_with_no_framework_installed(tmp_path: Path) -> None:
    stats, found, shown, imported = run_blocked(
        tmp_path,
        ["catalog", "sync"],
        ["search", "resnet50", "--min-top1", "80", "--sort=-top1", "--format", "json", "--fields", "id,top1"],
        ["show", "timm:resnet50.tv_in1k", "--format", "json"],
    )
    assert json.loads(imported) == []
    snapshots = {name: read_entry_snapshot(name) for name in ("torchvision", "timm", "keras")}
    for name, snap in snapshots.items():
        assert snap is not None
        assert f"{name}: snapshot, {len(snap.entries)} entries, version {snap.package_version} (snapshot)" in stats
    rows = json.loads(found)
    assert rows and all(r["top1"] >= 80 and "resnet50" in r["id"] for r in rows)
    assert [r["top1"] for r in rows] == sorted((r["top1"] for r in rows), reverse=True)
    entry = json.loads(shown)
    assert "torchvision:resnet50.IMAGENET1K_V1" in entry["aliases"]
    assert "not installed" in entry["provenance"]["listing"]
    assert entry["params"] == 25_557_032


def stored(home: Path) -> tuple[list[tuple[str, str | None, str]], list[Entry]]:
    """The catalog's sources (name, version, origin) and its entries, in stored order."""
    with Catalog(home) as cat:
        sources = list(cat.db.execute("SELECT source, version, origin FROM sources ORDER BY source"))
        rows = cat.db.execute("SELECT data FROM entries ORDER BY rowid")
        return sources, [Entry.from_dict(json.loads(data)) for (data,) in rows]


@pytest.mark.parametrize("name", ["torchvision", "timm", "keras"])
def test_a_snapshot_served_catalog_equals_the_live_listed_one(
    name: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    source = get_sources()[name]
    installed = source.package_version()
    shipped = read_entry_snapshot(name)
    assert shipped is not None and installed is not None
    if shipped.package_version != installed:
        # the shipped listing is of another version, which a sync lists live: serve one of this version instead
        assert source.package is not None
        built = EntrySnapshot(name, source.package, installed, tuple(source.entries()))
        monkeypatch.setattr(source, "offline_snapshot", lambda: built)
    with Catalog(tmp_path / "served") as cat:
        (served,) = sync_sources(cat, [source])
    with Catalog(tmp_path / "live") as cat:
        (live,) = sync_sources(cat, [source], force=True)
    assert (served.status, served.version) == (live.status, live.version) == ("synced", installed)
    assert f"from {snapshot_file(name)}" in served.note and live.note == ""
    assert served.entries == live.entries > 0
    # a difference means the shipped snapshot is stale: run scripts/build_entry_snapshots.py
    assert stored(tmp_path / "served") == stored(tmp_path / "live")
