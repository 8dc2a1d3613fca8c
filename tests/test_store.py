from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from zooprobe.errors import InvalidChoiceError, StoreError, UnknownEntryError
from zooprobe.registry.schema import Compute, ReportedMetric
from zooprobe.registry.store import MIGRATIONS, SCHEMA_VERSION, Catalog, Query

from .test_schema_units import make_entry


def demo_entries() -> list:
    return [
        make_entry(
            name="tiny.a",
            architecture="tiny",
            params=2_000_000,
            compute=Compute(0.1, "GMACs", 224),
            metrics=(ReportedMetric("imagenet-1k", "top1", 60.0),),
            tags=("mobile",),
        ),
        make_entry(
            name="big.a",
            architecture="big",
            params=90_000_000,
            compute=Compute(15.0, "GMACs", 224),
            metrics=(ReportedMetric("imagenet-1k", "top1", 84.0),),
            description="large residual network",
        ),
        make_entry(
            name="mid.a", architecture="mid", params=25_000_000, compute=Compute(4.0, "GFLOPS", 224), metrics=()
        ),
    ]


@pytest.fixture
def catalog(tmp_path: Path) -> Catalog:
    cat = Catalog(tmp_path)
    cat.replace_source("demo", "1.0", demo_entries())
    return cat


def test_store_uses_wal(catalog: Catalog) -> None:
    assert catalog.db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_filters_and_sorts(catalog: Catalog) -> None:
    ids = lambda q: [e.id for e in catalog.search(q)]  # noqa: E731
    assert ids(Query(sort=("params",))) == ["demo:tiny.a", "demo:mid.a", "demo:big.a"]
    assert ids(Query(sort=("-top1",))) == ["demo:big.a", "demo:tiny.a", "demo:mid.a"]  # nulls last
    assert ids(Query(max_params=30e6, sort=("params",))) == ["demo:tiny.a", "demo:mid.a"]
    assert ids(Query(min_top1=70)) == ["demo:big.a"]
    # GFLOPS are not GMACs: an entry reporting GFLOPS never passes a GMACs filter
    assert ids(Query(max_gmacs=5.0)) == ["demo:tiny.a"]
    assert ids(Query(arch="t*")) == ["demo:tiny.a"]
    assert ids(Query(limit=1, sort=("-params",))) == ["demo:big.a"]


def test_full_text_search_prefixes_and_descriptions(catalog: Catalog) -> None:
    assert [e.id for e in catalog.search(Query(text="residual"))] == ["demo:big.a"]
    assert [e.id for e in catalog.search(Query(text="mobi"))] == ["demo:tiny.a"]
    assert catalog.search(Query(text='"); DROP TABLE entries; --')) == []


def test_unknown_sort_field(catalog: Catalog) -> None:
    with pytest.raises(InvalidChoiceError, match="unknown sort field 'param'; did you mean 'params'"):
        catalog.search(Query(sort=("param",)))


def test_get_and_did_you_mean(catalog: Catalog) -> None:
    assert catalog.get("demo:big.a").params == 90_000_000
    with pytest.raises(UnknownEntryError, match="did you mean 'demo:big.a'"):
        catalog.get("demo:bg.a")


def test_replace_source_is_whole_and_counted(catalog: Catalog) -> None:
    catalog.replace_source("demo", "2.0", demo_entries()[:1])
    assert catalog.count() == 1
    assert catalog.source_versions() == {"demo": "2.0"}
    assert [e.id for e in catalog.search(Query(text="residual"))] == []
    with pytest.raises(ValueError, match="twice"):
        catalog.replace_source("demo", "3.0", demo_entries()[:1] * 2)
    assert catalog.count() == 1  # the failed sync changed nothing


def test_migrations_are_named_in_order() -> None:
    names = [m.__name__ for m in MIGRATIONS]
    assert names == sorted(names) and len(set(n[:4] for n in names)) == len(names)
    assert SCHEMA_VERSION == len(MIGRATIONS)


def test_migrates_from_an_older_schema(tmp_path: Path) -> None:
    db = sqlite3.connect(tmp_path / "catalog.sqlite3")
    MIGRATIONS[0](db)
    db.execute("PRAGMA user_version = 1")
    db.commit()
    db.close()
    with Catalog(tmp_path) as cat:
        assert cat.db.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
        cat.replace_source("demo", "1.0", demo_entries())
        assert cat.stats()[0]["entries"] == 3


def test_newer_schema_is_refused(tmp_path: Path) -> None:
    Catalog(tmp_path).close()
    db = sqlite3.connect(tmp_path / "catalog.sqlite3")
    db.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    db.commit()
    db.close()
    with pytest.raises(StoreError, match="newer than this zooprobe.*zooprobe catalog rebuild"):
        Catalog(tmp_path)


def test_corrupt_database_is_refused_not_replaced(tmp_path: Path) -> None:
    path = tmp_path / "catalog.sqlite3"
    path.write_bytes(b"this is not sqlite" * 100)
    with pytest.raises(StoreError, match="cannot be read.*zooprobe catalog rebuild"):
        Catalog(tmp_path)
    assert path.read_bytes() == b"this is not sqlite" * 100
