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

from .test_plugins import install_plugin, installed_plugin  # noqa: F401 - a fixture
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


class SameVersionSnapshotSource(SnapshotSource):
    """A source whose shipped snapshot was listed from the installed version."""

    def offline_snapshot(self) -> EntrySnapshot | None:
        entry = make_entry(source="snapzoo", name="shipped.v2", architecture="shipped")
        return EntrySnapshot("snapzoo", "snapzoo-pkg", "2.0", (entry,))


def ids(cat: Catalog) -> list[str]:
    return [e.id for e in cat.search(Query(source="snapzoo"))]


def test_installed_version_of_the_snapshot_reads_it_and_force_lists_live(tmp_path: Path) -> None:
    with Catalog(tmp_path) as cat:
        (result,) = sync_sources(cat, [SameVersionSnapshotSource()])
        assert (result.status, result.entries, result.version) == ("synced", 1, "2.0")
        assert result.note == "from entries_snapzoo.json.gz, listed from 2.0"
        assert ids(cat) == ["snapzoo:shipped.v2"]
        # what a live listing stores: no snapshot provenance, the source's module as origin
        assert "listing" not in dict(cat.get("snapzoo:shipped.v2").provenance)
        assert cat.stats()[0]["origin"] == __name__
        assert [r.status for r in sync_sources(cat, [SameVersionSnapshotSource()])] == ["unchanged"]
        (forced,) = sync_sources(cat, [SameVersionSnapshotSource()], force=True)
        assert (forced.status, forced.note) == ("synced", "")
        assert ids(cat) == ["snapzoo:live.v2"]


def test_first_use_answers_from_a_snapshot_of_another_version_then_sync_lists_live(tmp_path: Path) -> None:
    with Catalog(tmp_path) as cat:
        (result,) = sync_sources(cat, [SnapshotSource()], first_use=True)
        assert (result.status, result.entries, result.version) == ("snapshot", 1, "1.0 (snapshot)")
        assert result.note == "listed from snapzoo-pkg 1.0, 2.0 is installed: run 'zooprobe catalog sync' to list 2.0"
        assert ids(cat) == ["snapzoo:old.v1"]
        listing = dict(cat.get("snapzoo:old.v1").provenance)["listing"]
        assert listing.endswith("snapzoo-pkg 2.0 is installed here: 'zooprobe catalog sync' lists it")
        # a later sync (not a first use) lists the installed version live
        assert [r.status for r in sync_sources(cat, [SnapshotSource()])] == ["synced"]
        assert ids(cat) == ["snapzoo:live.v2"]


def test_unchanged_sources_report_the_entries_they_hold(zooprobe_home: Path) -> None:
    first = CliRunner().invoke(cli, ["catalog", "sync"])
    assert first.exit_code == 0, first.output
    again = CliRunner().invoke(cli, ["catalog", "sync"])
    assert again.exit_code == 0, again.output
    with Catalog(zooprobe_home) as cat:
        held = {str(s["source"]): s["entries"] for s in cat.stats()}
    assert held["timm"] > 1000
    for name, count in held.items():
        assert f"{name}: unchanged, {count} entries, version" in again.output


STALE_PLUGIN = """
from zooprobe import Entry, Source, hookimpl
from zooprobe.plugins.entry_snapshot import EntrySnapshot


class StaleSource(Source):
    name = "stalezoo"
    ships_snapshot = True

    def package_version(self):
        return "2.0"

    def entries(self):
        yield Entry(source="stalezoo", name="net.v2", architecture="net", tags=("stale",))

    def offline_snapshot(self):
        entry = Entry(source="stalezoo", name="net.v1", architecture="net", tags=("stale",))
        return EntrySnapshot("stalezoo", "stalezoo-pkg", "1.0", (entry,))


@hookimpl
def register_sources():
    return [StaleSource()]
"""


def test_first_search_answers_from_another_version_and_says_so(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    install_plugin(tmp_path, monkeypatch, "stalezoo", "0.1", STALE_PLUGIN)
    monkeypatch.setenv("ZOOPROBE_PLUGINS", "stalezoo")
    first = CliRunner().invoke(cli, ["search", "stale", "--format", "json", "--fields", "id"])
    assert first.exit_code == 0, first.output
    assert json.loads(first.stdout) == [{"id": "stalezoo:net.v1"}]
    (said,) = [line for line in first.stderr.splitlines() if "stalezoo:" in line]
    assert said.startswith("  stalezoo: snapshot, 1 entries, ")
    assert said.endswith("(listed from stalezoo-pkg 1.0, 2.0 is installed: run 'zooprobe catalog sync' to list 2.0)")
    synced = CliRunner().invoke(cli, ["catalog", "sync"])
    assert "stalezoo: synced, 1 entries, version 2.0" in synced.output
    again = CliRunner().invoke(cli, ["search", "stale", "--format", "json", "--fields", "id"])
    assert json.loads(again.stdout) == [{"id": "stalezoo:net.v2"}]
