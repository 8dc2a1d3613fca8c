from __future__ import annotations

import fnmatch
import json
import random
import sqlite3
from pathlib import Path

import pytest

from zooprobe.catalog.schema import Compute, Entry, PretrainStage, ReportedMetric
from zooprobe.catalog.store import MIGRATIONS, SCHEMA_VERSION, Catalog, Query, _row, search_terms
from zooprobe.errors import InvalidChoiceError, InvalidIdError, MixedUnitsError, StoreError, UnknownEntryError

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


def test_compute_sorts_within_one_unit_and_refuses_a_mix(catalog: Catalog) -> None:
    catalog.replace_source(
        "tv",
        "1",
        [
            make_entry(source="tv", name="a", compute=Compute(4.1, "GFLOPS", 224)),
            make_entry(source="tv", name="b", compute=Compute(0.7, "GFLOPS", 224)),
            make_entry(source="tv", name="c", compute=None),
        ],
    )
    ids = lambda q: [e.id for e in catalog.search(q)]  # noqa: E731
    assert ids(Query(source="tv", sort=("compute",))) == ["tv:b", "tv:a", "tv:c"]  # unknown last
    assert ids(Query(source="tv", sort=("-compute",))) == ["tv:a", "tv:b", "tv:c"]
    assert ids(Query(source="tv", sort=("compute",), limit=2)) == ["tv:b", "tv:a"]
    assert catalog._walk_sort_index(Query(source="tv", sort=("compute",), limit=2)) is not None
    assert ids(Query(source="demo", min_top1=50, sort=("-compute",))) == ["demo:big.a", "demo:tiny.a"]  # GMACs
    with pytest.raises(MixedUnitsError, match=r"matches report it in GFLOPS \(demo, tv\) and GMACs \(demo\)"):
        catalog.search(Query(sort=("-compute",)))
    # gmacs sorts what is reported in GMACs and lists the rest after it
    assert ids(Query(sort=("gmacs",))) == ["demo:tiny.a", "demo:big.a", "demo:mid.a", "tv:a", "tv:b", "tv:c"]


def test_id_without_source_suggests_ids_of_each_source(tmp_path: Path) -> None:
    top1 = lambda value: (ReportedMetric("imagenet-1k", "top1", value),)  # noqa: E731
    with Catalog(tmp_path) as cat:
        cat.replace_source(
            "timm",
            "1",
            [
                make_entry(source="timm", name="resnet50.tv_in1k", architecture="resnet50", metrics=top1(76.1)),
                make_entry(source="timm", name="resnet50.a1_in1k", architecture="resnet50", metrics=top1(81.2)),
                make_entry(source="timm", name="resnet50d.ra2_in1k", architecture="resnet50d", metrics=top1(80.5)),
                make_entry(source="timm", name="vit_small.augreg", architecture="vit_small"),
            ],
        )
        cat.replace_source(
            "torchvision",
            "1",
            [
                make_entry(
                    source="torchvision", name="resnet50.IMAGENET1K_V1", architecture="resnet50", metrics=top1(76.1)
                ),
                make_entry(
                    source="torchvision", name="resnet50.IMAGENET1K_V2", architecture="resnet50", metrics=top1(80.9)
                ),
            ],
        )

        def suggested(typed: str) -> list[str]:
            with pytest.raises(InvalidIdError) as info:
                cat.get(typed)
            assert isinstance(info.value, ValueError) and "ids look like 'source:name'" in str(info.value)
            return info.value.suggestions

        best = ["timm:resnet50.a1_in1k", "torchvision:resnet50.IMAGENET1K_V2", "timm:resnet50.tv_in1k"]
        assert suggested("resnet50") == best
        assert suggested(":RESNET50") == best
        assert suggested("resnt50") == best  # close to an architecture
        assert suggested("resnet50.IMAGENET1K_V2")[0] == "torchvision:resnet50.IMAGENET1K_V2"
        assert suggested("resnet50d") == ["timm:resnet50d.ra2_in1k"]
        assert suggested("vit") == ["timm:vit_small.augreg"]
        assert suggested("zzz") == [] and suggested("timm:") == []
        with pytest.raises(
            InvalidIdError, match="did you mean 'timm:resnet50.a1_in1k', 'torchvision:resnet50.IMAGENET1K_V2'"
        ):
            cat.get("resnet50")


def test_filter_values_no_entry_has_are_refused(tmp_path: Path) -> None:
    with Catalog(tmp_path) as cat:
        assert cat.search(Query(task="anything")) == []  # an empty catalog has nothing to compare with
        wide = make_entry(
            name="net.v2",
            tasks=("image-classification", "image-feature-extraction"),
            pretraining=(PretrainStage("ImageNet-21k"),),
            framework="pytorch",
        )
        cat.replace_source("demo", "1", [make_entry(framework="pytorch"), wide])
        ids = lambda q: [e.id for e in cat.search(q)]  # noqa: E731
        assert ids(Query(task="image-feature-extraction")) == ["demo:net.v2"]
        assert ids(Query(pretrain_dataset="imagenet-21K")) == ["demo:net.v2"]
        assert ids(Query(framework="pytorch", sort=("id",))) == ["demo:net.v1", "demo:net.v2"]
        assert ids(Query(framework="pytorch", source="nowhere")) == []  # each value exists: no error
        with pytest.raises(
            InvalidChoiceError,
            match=r"unknown task 'image-clasification'; did you mean 'image-classification'.*"
            r"\(valid: image-classification, image-feature-extraction\); hub tasks come with "
            r"'zooprobe catalog sync --source hf --task TASK'",
        ):
            cat.search(Query(task="image-clasification"))
        with pytest.raises(
            InvalidChoiceError, match=r"unknown framework 'pytorh'; did you mean 'pytorch'\? \(valid: pytorch\)"
        ):
            cat.search(Query(framework="pytorh"))
        with pytest.raises(
            InvalidChoiceError,
            match=r"pretraining dataset 'imagenet21k'; did you mean 'imagenet-21k'.*imagenet-1k, imagenet-21k",
        ):
            cat.search(Query(pretrain_dataset="imagenet21k", sort=("-top1",), limit=5))
        # the known values follow each source's entries as they are replaced
        cat.replace_source("other", "1", [make_entry(source="other", framework="keras")])
        assert ids(Query(framework="keras")) == ["other:net.v1"]
        cat.replace_source("other", "2", [])
        with pytest.raises(InvalidChoiceError, match="unknown framework 'keras'"):
            cat.search(Query(framework="keras"))
        assert cat.facet_values("framework") == ["pytorch"]


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


# --- the two query strategies against a brute-force filter -----------------------------------------

WORDS = ["resnet", "resnext", "vit", "conv", "convnext", "augreg", "in1k", "in21k", "a1_b", "tv", "café", "Deep"]


def random_entries(rng: random.Random, n: int) -> list:
    entries = []
    for i in range(n):
        arch = f"{rng.choice(WORDS[:5])}{rng.randint(1, 40)}"
        words = rng.sample(WORDS, 3)
        top1 = rng.choice([None, 70.0, 75.5, 80.0, round(rng.uniform(60, 90), 1)])  # repeats make ties
        entries.append(
            make_entry(
                name=f"{arch}.{words[0]}_{i}",
                architecture=arch,
                params=rng.choice([None, 5_000_000, 25_000_000, rng.randint(1_000_000, 900_000_000)]),
                compute=rng.choice([None, Compute(round(rng.uniform(0.1, 20), 1), "GMACs", 224)]),
                metrics=(ReportedMetric("imagenet-1k", "top1", top1),) if top1 is not None else (),
                tags=tuple(words[1:]),
                description=rng.choice([None, "A Deep-Café network", "ViT/Augreg weights"]),
            )
        )
    return entries


def brute_force(entries: list[Entry], tokens: list[list[str]], q: Query) -> list[str]:
    """The expected answer, filtered and sorted in plain Python (insertion order breaks ties)."""
    (key,) = q.sort
    field, desc = key.lstrip("-"), key.startswith("-")
    words = search_terms(q.text or "")
    hits = []
    for position, e in enumerate(entries):
        if not all(any(t.startswith(w) for t in tokens[position]) for w in words):
            continue
        if q.arch is not None and not fnmatch.fnmatchcase(e.architecture, q.arch):
            continue
        if q.max_params is not None and (e.params is None or e.params > q.max_params):
            continue
        if q.min_top1 is not None and (e.top1 is None or e.top1 < q.min_top1):
            continue
        if q.max_gmacs is not None and (e.compute is None or e.compute.gmacs > q.max_gmacs):
            continue
        value = {
            "params": e.params,
            "top1": e.top1,
            "gmacs": e.compute.gmacs if e.compute else None,
            "compute": e.compute.value if e.compute else None,
        }[field]
        hits.append(
            (value is None, 0 if value is None else (-value if desc else value), -position if desc else position, e.id)
        )
    return [h[-1] for h in sorted(hits)][: q.limit]


def test_sort_index_walk_and_sorted_matches_equal_brute_force(tmp_path: Path) -> None:
    rng = random.Random(7)
    entries = random_entries(rng, 2000)
    tokens = [search_terms(" ".join((e.id, e.name, e.architecture, *e.tags, e.description or ""))) for e in entries]
    with Catalog(tmp_path) as cat:
        cat.replace_source("demo", "1", entries)
        walked = ranged = 0
        for _ in range(100):
            q = Query(
                text=" ".join(
                    rng.sample(
                        ["res", "resnet", "vit", "conv", "aug", "in1", "a1_", "cafe", "deep", "tv", "dem", "net"],
                        rng.randint(0, 2),
                    )
                )
                or None,
                max_params=rng.choice([None, 30e6, 300e6]),
                min_top1=rng.choice([None, 75.5]),
                max_gmacs=rng.choice([None, 5.0]),
                arch=rng.choice([None, None, "res*", "vit1*", "*1"]),
                sort=(rng.choice(["params", "-params", "top1", "-top1", "gmacs", "-gmacs", "compute", "-compute"]),),
                limit=rng.choice([1, 5, 20]),
            )
            expected = brute_force(entries, tokens, q)
            assert [e.id for e in cat.search(q)] == expected, q
            assert [json.loads(d)["id"] for d in cat._matches_sorted(q)] == expected, q
            window = cat._walk_sort_index(q, window=rng.choice([50, 500, 5000]))
            if window is not None:
                walked += 1
                assert [json.loads(d)["id"] for d in window] == expected, q
            in_range = cat._walk_filter_range(q, window=rng.choice([100, 1000, 5000]))
            if in_range is not None:
                ranged += 1
                assert [json.loads(d)["id"] for d in in_range] == expected, q
        # each shortcut answered a good share of the queries, not only the fallback
        assert walked > 20 and ranged > 20


def test_walk_gives_up_when_the_window_holds_too_few_matches(tmp_path: Path) -> None:
    entries = random_entries(random.Random(3), 500)
    with Catalog(tmp_path) as cat:
        cat.replace_source("demo", "1", entries)
        rare = Query(text=entries[-1].name, sort=("-params",), limit=1)
        assert cat._walk_sort_index(rare, window=5) is None
        assert [e.id for e in cat.search(rare)] == [entries[-1].id]


def test_text_words_are_normalised_for_both_strategies(catalog: Catalog) -> None:
    catalog.replace_source("more", "1", [make_entry(source="more", name="x.v1", description="Réseau Profond")])
    for sort in ((), ("params",)):
        assert [e.id for e in catalog.search(Query(text="RESEAU prof", sort=sort))] == ["more:x.v1"]


# --- aliases and the schema-4 migration ----------------------------------------------------------


def test_aliases_link_the_same_file_and_timm_torchvision_tags(tmp_path: Path) -> None:
    url = "https://download.pytorch.org/models/regnet_x_400mf-62229a5f.pth"
    with Catalog(tmp_path) as cat:
        cat.replace_source(
            "timm",
            "1",
            [
                make_entry(
                    source="timm", name="regnetx_004_tv.tv2_in1k", architecture="regnetx_004_tv", weights_url=url
                ),
                make_entry(source="timm", name="vgg11.tv_in1k", architecture="vgg11"),
                make_entry(source="timm", name="vgg11.tv2_in1k", architecture="vgg11"),  # torchvision has no V2
                make_entry(source="timm", name="resnet50.a1_in1k", architecture="resnet50", aliases=("x:declared",)),
            ],
        )
        assert cat.get("timm:vgg11.tv_in1k").aliases == ()  # torchvision not synced yet
        cat.replace_source(
            "torchvision",
            "1",
            [
                make_entry(
                    source="torchvision",
                    name="regnet_x_400mf.IMAGENET1K_V2",
                    architecture="regnet_x_400mf",
                    weights_url=url,
                ),
                make_entry(source="torchvision", name="vgg11.IMAGENET1K_V1", architecture="vgg11"),
                make_entry(source="torchvision", name="resnet50.IMAGENET1K_V1", architecture="resnet50"),
            ],
        )
        regnet = cat.get("timm:regnetx_004_tv.tv2_in1k")
        assert regnet.aliases == ("torchvision:regnet_x_400mf.IMAGENET1K_V2",)
        assert "same weights file" in dict(regnet.provenance)["aliases"]
        assert cat.get("torchvision:regnet_x_400mf.IMAGENET1K_V2").aliases == ("timm:regnetx_004_tv.tv2_in1k",)
        vgg = cat.get("torchvision:vgg11.IMAGENET1K_V1")
        assert vgg.aliases == ("timm:vgg11.tv_in1k",)
        assert "timm tag 'tv_in1k'" in dict(vgg.provenance)["aliases"]
        assert cat.get("timm:vgg11.tv2_in1k").aliases == ()
        assert cat.get("timm:resnet50.a1_in1k").aliases == ("x:declared",)  # a1 is timm's own recipe
        assert [e.aliases for e in cat.search(Query(text="vgg11", source="timm", sort=("id",)))] == [
            (),
            ("torchvision:vgg11.IMAGENET1K_V1",),
        ]
        cat.replace_source("torchvision", "2", [])
        assert cat.get("timm:vgg11.tv_in1k").aliases == ()


def test_migration_4_fills_terms_and_normalises_the_text_index(tmp_path: Path) -> None:
    db = sqlite3.connect(tmp_path / "catalog.sqlite3", isolation_level=None)
    for migration in MIGRATIONS[:3]:
        migration(db)
    db.execute("PRAGMA user_version = 3")
    old = make_entry(name="ResNet-X.v1", architecture="ResNet-X", description="Réseau")
    db.execute(f"INSERT INTO entries VALUES ({','.join('?' * 19)})", _row(old)[:19])  # the schema-3 columns
    db.execute(
        "INSERT INTO entries_fts(rowid, id, name, architecture, tags, description) VALUES (1, ?, ?, ?, ?, ?)",
        (old.id, old.name, old.architecture, "small", "Réseau"),
    )
    db.close()
    with Catalog(tmp_path) as cat:
        assert cat.db.execute("SELECT terms FROM entries").fetchone()[0] == (
            "demo resnet x v1 resnet x v1 resnet x small reseau"
        )
        for sort in ((), ("params",)):
            assert [e.id for e in cat.search(Query(text="reseau resnet", sort=sort))] == [old.id]
        assert cat.get(old.id).weights_url is None


def test_migration_5_fills_the_filter_values(tmp_path: Path) -> None:
    db = sqlite3.connect(tmp_path / "catalog.sqlite3", isolation_level=None)
    for migration in MIGRATIONS[:4]:
        migration(db)
    db.execute("PRAGMA user_version = 4")
    old = make_entry(framework="keras", compute=Compute(0.3, "GMACs", 224))
    db.execute(f"INSERT INTO entries VALUES ({','.join('?' * 21)})", _row(old))
    db.close()
    with Catalog(tmp_path) as cat:
        assert cat.facet_values("framework") == ["keras"]
        assert cat.facet_values("task") == ["image-classification"]
        assert cat.facet_values("pretrain_dataset") == ["imagenet-1k"]
        with pytest.raises(InvalidChoiceError, match="did you mean 'keras'"):
            cat.search(Query(framework="kera"))
        assert [e.id for e in cat.search(Query(sort=("-compute",)))] == [old.id]


def _sources_after(tmp_path: Path, migration: int) -> dict[str, str | None]:
    """Stored source versions after migration ``migration`` alone ran on a catalog of the version before it."""
    db = sqlite3.connect(tmp_path / "catalog.sqlite3", isolation_level=None)
    for earlier in MIGRATIONS[: migration - 1]:
        earlier(db)
    db.executemany(
        "INSERT INTO sources VALUES (?, ?, 'test', 0, 0)",
        [("timm", "1.0.31"), ("torchvision", "0.29.1"), ("keras", "3.8.0")],
    )
    MIGRATIONS[migration - 1](db)
    db.execute(f"PRAGMA user_version = {migration}")
    versions = dict(db.execute("SELECT source, version FROM sources").fetchall())
    db.close()
    return versions


def test_migration_6_makes_the_next_sync_read_timm_again(tmp_path: Path) -> None:
    assert _sources_after(tmp_path, 6) == {"timm": None, "torchvision": "0.29.1", "keras": "3.8.0"}


def test_migration_7_makes_the_next_sync_read_torchvision_and_timm_again(tmp_path: Path) -> None:
    # their entries' preprocessing facts changed (torchvision's default resize, timm's crop mode)
    assert _sources_after(tmp_path, 7) == {"timm": None, "torchvision": None, "keras": "3.8.0"}
    with Catalog(tmp_path) as cat:
        assert cat.source_versions() == {"timm": None, "torchvision": None, "keras": "3.8.0"}


def _open_run_store(home: str) -> None:
    from zooprobe.runs.store import RunStore

    with RunStore(home) as store:
        store.list()


def _open_catalog(home: str) -> None:
    with Catalog(home) as catalog:
        catalog.count()


def test_processes_opening_a_new_store_at_once_all_succeed(tmp_path: Path) -> None:
    """A run in one process and `zooprobe report` in another may both create the store's tables."""
    import multiprocessing

    context = multiprocessing.get_context("fork")
    failures = 0
    for attempt in range(30):
        home = str(tmp_path / f"home{attempt}")
        processes = [context.Process(target=f, args=(home,)) for f in [_open_run_store] * 3 + [_open_catalog] * 3]
        for process in processes:
            process.start()
        for process in processes:
            process.join()
        failures += sum(process.exitcode != 0 for process in processes)
    assert failures == 0
