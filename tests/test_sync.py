"""Syncing: the one silent first-use sync, and the entry snapshots used when a package is missing."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner

from zooprobe.catalog.schema import Entry
from zooprobe.catalog.store import Catalog, Query
from zooprobe.cli import cli
from zooprobe.plugins.entry_snapshot import EntrySnapshot, read_entry_snapshot, snapshot_file, write_entry_snapshot
from zooprobe.plugins.source import Source
from zooprobe.plugins.sync import sync_if_empty, sync_sources

from .test_plugins import installed_plugin  # noqa: F401 - a fixture
from .test_schema_units import make_entry


class SnapshotSource(Source):
    """A source whose package can be made to vanish, with a snapshot of an older version."""

    name = "snapzoo"
    package = "json"  # importable
    ships_snapshot = True

    def package_version(self) -> str | None:
        return "2.0"

    def entries(self) -> Iterator[Entry]:
        yield make_entry(source="snapzoo", name="live.v2", architecture="live")

    def offline_snapshot(self) -> EntrySnapshot | None:
        entry = make_entry(source="snapzoo", name="old.v1", architecture="old", provenance=(("params", "table"),))
        return EntrySnapshot("snapzoo", "snapzoo-pkg", "1.0", (entry,))


def test_sync_if_empty_syncs_once(installed_plugin: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:  # noqa: F811
    monkeypatch.setenv("ZOOPROBE_PLUGINS", "toyzoo")
    with Catalog(tmp_path) as cat:
        results = sync_if_empty(cat)
        assert [(r.source, r.status, r.entries) for r in results] == [("toyzoo", "synced", 2)]
        assert sync_if_empty(cat) == []
        assert cat.count() == 2


def test_first_search_syncs_with_a_notice(installed_plugin: str, monkeypatch: pytest.MonkeyPatch) -> None:  # noqa: F811
    monkeypatch.setenv("ZOOPROBE_PLUGINS", "toyzoo")
    result = CliRunner().invoke(cli, ["search", "toy", "--sort", "id", "--format", "json", "--fields", "id"])
    assert result.exit_code == 0, result.output
    assert "syncing the offline sources once" in result.stderr
    assert json.loads(result.stdout) == [{"id": "toyzoo:toynet16"}, {"id": "toyzoo:toynet8"}]
    again = CliRunner().invoke(cli, ["search", "toy", "--format", "json", "--fields", "id"])
    assert "syncing" not in again.stderr


def test_load_on_an_empty_catalog_syncs_first(
    installed_plugin: str,  # noqa: F811
    monkeypatch: pytest.MonkeyPatch,
    zooprobe_home: Path,
) -> None:
    import zooprobe

    monkeypatch.setenv("ZOOPROBE_PLUGINS", "toyzoo")
    # the id is found only because load() synced the empty catalog; then the toy source cannot load
    with pytest.raises(zooprobe.ZooprobeError, match="lists 'toyzoo:toynet8' but cannot load weights"):
        zooprobe.load("toyzoo:toynet8")
    with Catalog(zooprobe_home) as cat:
        assert cat.count() == 2


def test_missing_package_lists_the_snapshot_and_says_so(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    source = SnapshotSource()
    monkeypatch.setattr(source, "package", "zooprobe_no_such_package")
    with Catalog(tmp_path) as cat:
        (result,) = sync_sources(cat, [source])
        assert (result.status, result.entries, result.version) == ("snapshot", 1, "1.0 (snapshot)")
        entry = cat.get("snapzoo:old.v1")
        provenance = dict(entry.provenance)
        assert provenance["params"] == "table"
        assert "snapshot entries_snapzoo.json.gz of snapzoo-pkg 1.0" in provenance["listing"]
        assert "not installed" in provenance["listing"]
        assert cat.stats()[0]["origin"] == provenance["listing"]
        assert [r.status for r in sync_sources(cat, [source])] == ["unchanged"]
        # installing the package (any version) replaces the snapshot with the live listing
        monkeypatch.setattr(source, "package", "json")
        assert [r.status for r in sync_sources(cat, [source])] == ["synced"]
        assert [e.id for e in cat.search(Query(source="snapzoo"))] == ["snapzoo:live.v2"]
        assert "listing" not in dict(cat.get("snapzoo:live.v2").provenance)


def test_entry_snapshot_round_trips_reproducibly(tmp_path: Path) -> None:
    entries = (make_entry(name="b.v1"), make_entry(name="a.v1", description="Réseau"))
    snapshot = EntrySnapshot("demo", "demo-pkg", "3.1", entries)
    first, second = tmp_path / "one.json.gz", tmp_path / "two.json.gz"
    write_entry_snapshot(first, snapshot)
    write_entry_snapshot(second, EntrySnapshot("demo", "demo-pkg", "3.1", entries[::-1]))
    assert first.read_bytes() == second.read_bytes()
    assert first.stat().st_mode & 0o777 == 0o644
    assert snapshot_file("demo") == "entries_demo.json.gz"
    assert read_entry_snapshot("no-such-source") is None
