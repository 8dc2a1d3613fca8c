from __future__ import annotations

import json
import math
import re

import pytest

from zooprobe.catalog.schema import Compute, Entry, InputSpec, PretrainStage, ReportedMetric, split_id
from zooprobe.catalog.units import format_count, parse_count
from zooprobe.errors import InvalidEntryError, InvalidIdError, ZooprobeError
from zooprobe.sources.timm_source import pretraining_from_tag


def make_entry(**overrides: object) -> Entry:
    values: dict[str, object] = dict(
        source="demo",
        name="net.v1",
        architecture="net",
        tasks=("image-classification",),
        input=InputSpec(channels=3, default_resolution=(224, 224), mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5)),
        params=1_000_000,
        compute=Compute(0.3, "GMACs", 224),
        pretraining=(PretrainStage("imagenet-1k", 1_281_167, "supervised"),),
        metrics=(ReportedMetric("imagenet-1k", "top1", 71.5, 224),),
        tags=("small",),
        provenance=(("params", "test"),),
    )
    values.update(overrides)
    return Entry(**values)  # type: ignore[arg-type]


def test_entry_round_trips_through_dict() -> None:
    entry = make_entry()
    data = entry.to_dict()
    assert data["id"] == "demo:net.v1"
    assert data["provenance"] == {"params": "test"}
    assert Entry.from_dict(data) == entry


def test_entry_from_dict_rejects_unknown_field() -> None:
    with pytest.raises(ValueError, match="unknown entry fields \\['bogus'\\]"):
        Entry.from_dict({**make_entry().to_dict(), "bogus": 1})


def test_compute_keeps_units() -> None:
    assert Compute(4.1, "GMACs").gmacs == 4.1
    assert Compute(4.1, "GFLOPS").gmacs is None


@pytest.mark.parametrize("bad", ["resnet50", ":x", "timm:"])
def test_split_id_rejects(bad: str) -> None:
    with pytest.raises(ValueError, match="source:name") as info:
        split_id(bad)
    assert isinstance(info.value, InvalidIdError) and isinstance(info.value, ZooprobeError)


def test_nan_metrics_and_compute_count_as_missing() -> None:
    entry = make_entry(
        metrics=(ReportedMetric("imagenet-1k", "top1", math.nan), ReportedMetric("imagenet-1k", "top5", 90.0)),
        compute=Compute(math.inf, "GFLOPS", 224),
        provenance=(("macs", "meta _ops"), ("metrics", "meta _metrics"), ("params", "test")),
    )
    assert entry.top1 is None and entry.metric("imagenet-1k", "top5") == 90.0
    assert entry.compute is None and dict(entry.provenance) == {"metrics": "meta _metrics", "params": "test"}
    nothing = make_entry(metrics=(ReportedMetric("imagenet-1k", "top1", math.nan),), provenance=(("metrics", "x"),))
    assert nothing.metrics == () and "metrics" not in dict(nothing.provenance)
    # an entry stored with NaN before the guard is cleaned as it is read back, and its JSON is valid JSON
    stored = json.loads(
        json.dumps(
            make_entry().to_dict()
            | {"metrics": [{"dataset": "imagenet-1k", "metric": "top1", "value": math.nan, "resolution": None}]}
        )
    )
    read = Entry.from_dict(stored)
    assert read.metrics == ()
    json.loads(read.to_json(), parse_constant=lambda name: pytest.fail(f"{name} in the JSON"))


@pytest.mark.parametrize(
    ("text", "value"), [("25M", 25e6), ("1.2B", 1.2e9), ("4.1G", 4.1e9), ("300k", 3e5), ("42", 42.0), ("1,000", 1000.0)]
)
def test_parse_count(text: str, value: float) -> None:
    assert parse_count(text) == pytest.approx(value)


def test_parse_count_error_names_value() -> None:
    with pytest.raises(ZooprobeError, match="cannot read '25Q'.*suffix K, M, B/G or T"):
        parse_count("25Q")


def test_format_count() -> None:
    assert format_count(25_557_032) == "25.6M"
    assert format_count(1_200_000_000) == "1.2B"
    assert format_count(None) == "-"
    assert format_count(512) == "512"


@pytest.mark.parametrize(
    ("tag", "datasets"),
    [
        ("a1_in1k", ["imagenet-1k"]),
        ("in21k_ft_in1k", ["imagenet-21k", "imagenet-1k"]),
        ("laion2b_ft_in12k_in1k", ["laion-2b", "imagenet-12k", "imagenet-1k"]),
        ("fb_swsl_ig1b_ft_in1k", ["ig-1b", "imagenet-1k"]),
        ("sw_in12k_ft_in1k", ["imagenet-12k", "imagenet-1k"]),  # 'sw' is a recipe tag, not a dataset
        ("augreg", []),
    ],
)
def test_pretraining_from_tag(tag: str, datasets: list[str]) -> None:
    stages = pretraining_from_tag(tag)
    assert [s.dataset for s in stages] == datasets
    if "in1k" in tag:
        assert stages[-1].examples == 1_281_167


def test_noisy_student_jft_is_semi_supervised() -> None:
    assert [(s.dataset, s.method) for s in pretraining_from_tag("ns_jft_in1k")] == [
        ("jft-300m", "semi-supervised"),
        ("imagenet-1k", "supervised"),
    ]


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"tasks": "image-classification"}, "tasks is 'image-classification', expected a tuple of strings"),
        ({"modality": "pictures"}, "modality is 'pictures', expected one of image"),
        ({"params": "25M"}, "params is '25M', expected an int"),
        ({"name": ""}, "name is '', expected a non-empty string"),
        ({"input": InputSpec(default_resolution=224)}, "input.default_resolution is 224"),  # type: ignore[arg-type]
    ],
)
def test_an_entry_of_the_wrong_shape_names_itself_and_the_field(fields: dict[str, object], message: str) -> None:
    with pytest.raises(InvalidEntryError, match=re.escape(message)):
        Entry(**{"source": "src", "name": "net", "architecture": "net", **fields})  # type: ignore[arg-type]
