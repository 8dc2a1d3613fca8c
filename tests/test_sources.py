"""The built-in sources against the real installed libraries."""

from __future__ import annotations

from pathlib import Path

import pytest

from zooprobe.catalog.store import Catalog, Query


def _source_entries(home: Path, source: str) -> dict:
    with Catalog(home) as cat:
        return {e.name: e for e in cat.search(Query(source=source, limit=None))}


def test_timm_count_equals_list_pretrained(synced: Path) -> None:
    import timm

    entries = _source_entries(synced, "timm")
    assert set(entries) == set(timm.list_pretrained())


def test_torchvision_count_equals_every_weight(synced: Path) -> None:
    from torchvision.models import get_model_weights, list_models

    expected = {f"{m}.{w.name}" for m in list_models() for w in get_model_weights(m)}
    assert set(_source_entries(synced, "torchvision")) == expected


def test_keras_count_equals_application_functions(synced: Path) -> None:
    import keras

    apps = {n for n in dir(keras.applications) if n[:1].isupper()}
    assert set(_source_entries(synced, "keras")) == apps


@pytest.mark.parametrize(
    "name", ["resnet18.a1_in1k", "mobilenetv3_small_100.lamb_in1k", "vit_tiny_patch16_224.augreg_in21k"]
)
def test_timm_params_and_features_match_model(synced: Path, name: str) -> None:
    import timm

    entry = _source_entries(synced, "timm")[name]
    model = timm.create_model(name, pretrained=False)
    assert entry.params == sum(p.numel() for p in model.parameters())
    assert entry.num_classes == model.num_classes
    features = model.forward_head(
        model.forward_features(__import__("torch").zeros(1, 3, *entry.input.default_resolution)), pre_logits=True
    )
    assert entry.feature_dim == features.shape[-1]
    body = timm.create_model(name, pretrained=False, num_classes=0)
    assert entry.params_no_head == sum(p.numel() for p in body.parameters())


def test_timm_entry_carries_reference_metrics_and_units(synced: Path) -> None:
    entry = _source_entries(synced, "timm")["resnet50.a1_in1k"]
    # results-imagenet.csv has rows at 288 px (81.240) and 224 px (80.382): top1 is at the default 224
    assert entry.top1 == 80.382
    assert {(m.metric, m.resolution, m.value) for m in entry.metrics if m.metric == "top1"} == {
        ("top1", 224, 80.382),
        ("top1", 288, 81.24),
    }
    # the benchmark table has 160 px (2.1 GMACs) before 224 px (4.11): compute is at the entry's 224
    assert entry.compute is not None and (entry.compute.value, entry.compute.unit, entry.compute.resolution) == (
        4.11,
        "GMACs",
        224,
    )
    assert entry.weights_license == "apache-2.0"
    assert [s.dataset for s in entry.pretraining] == ["imagenet-1k"]
    assert entry.handle == "hf-hub:timm/resnet50.a1_in1k"
    for fieldname in ("params", "metrics", "macs", "input"):
        assert fieldname in dict(entry.provenance)


@pytest.mark.parametrize(
    "name", ["mobilenet_v2.IMAGENET1K_V1", "resnet50.IMAGENET1K_V2", "vit_b_16.IMAGENET1K_SWAG_E2E_V1"]
)
def test_torchvision_params_and_features_match_model(synced: Path, name: str) -> None:
    import torch
    from torchvision.models import get_model

    entry = _source_entries(synced, "torchvision")[name]
    # the SWAG ViT weights are for 384 px: their position embeddings, and so params, depend on it
    extra = {"image_size": entry.input.default_resolution[0]} if name.startswith("vit") else {}
    model = get_model(entry.architecture, weights=None, num_classes=entry.num_classes, **extra)
    assert entry.params == sum(p.numel() for p in model.parameters())
    last = [m for m in model.modules() if isinstance(m, torch.nn.Linear)][-1]
    assert entry.feature_dim == last.in_features
    assert entry.params_no_head == entry.params - sum(p.numel() for p in last.parameters())
    assert entry.compute is not None and entry.compute.unit == "GFLOPS"


def test_torchvision_swag_pretraining_and_resolution(synced: Path) -> None:
    entry = _source_entries(synced, "torchvision")["vit_b_16.IMAGENET1K_SWAG_E2E_V1"]
    assert [s.dataset for s in entry.pretraining] == ["ig-3.5b", "imagenet-1k"]
    assert entry.input.default_resolution == (384, 384)
    assert entry.weights_license is not None  # SWAG weights carry their own licence in meta


def test_keras_params_and_features_match_model(synced: Path) -> None:
    import keras

    entry = _source_entries(synced, "keras")["MobileNetV2"]
    model = keras.applications.MobileNetV2(weights=None)
    assert entry.params == model.count_params()
    assert entry.input.default_resolution == (224, 224)
    body = keras.applications.MobileNetV2(weights=None, include_top=False, pooling="avg")
    assert entry.feature_dim == body.output_shape[-1] == 1280
    assert entry.input.preprocessing == "tf"
    assert entry.top1 == pytest.approx(71.3)


def test_resync_is_incremental(synced: Path) -> None:
    from zooprobe.plugins.manager import get_sources
    from zooprobe.plugins.sync import sync_sources

    with Catalog(synced) as cat:
        results = sync_sources(cat, get_sources().values())
    assert {r.status for r in results} == {"unchanged"}


def test_every_timm_torchvision_tag_has_its_torchvision_alias(synced: Path) -> None:
    timm_entries = _source_entries(synced, "timm")
    tagged = {name: e for name, e in timm_entries.items() if name.endswith((".tv_in1k", ".tv2_in1k"))}
    assert len(tagged) >= 40
    for name, entry in tagged.items():
        (alias,) = [a for a in entry.aliases if a.startswith("torchvision:")]
        assert alias.endswith(".IMAGENET1K_V2" if name.endswith(".tv2_in1k") else ".IMAGENET1K_V1"), name
    # same file, different architecture names: proven by the weights URL, in both directions
    regnet = timm_entries["regnetx_004_tv.tv2_in1k"]
    assert regnet.aliases == ("torchvision:regnet_x_400mf.IMAGENET1K_V2",)
    tv = _source_entries(synced, "torchvision")["regnet_x_400mf.IMAGENET1K_V2"]
    assert tv.aliases == ("timm:regnetx_004_tv.tv2_in1k",)
    assert tv.weights_url == regnet.weights_url
    # the file proves aliases beyond the tv tags too: torchvision's SWAG RegNets in timm
    swag = timm_entries["regnety_160.swag_ft_in1k"]
    assert swag.aliases == ("torchvision:regnet_y_16gf.IMAGENET1K_SWAG_E2E_V1",)
    assert timm_entries["resnet50.a1_in1k"].aliases == ()


def test_show_prints_aliases_and_why(synced: Path) -> None:
    from click.testing import CliRunner

    from zooprobe.cli import cli

    out = CliRunner().invoke(cli, ["show", "timm:vgg16.tv_in1k"]).output
    fields, provenance = out.split("where the numbers come from:")
    assert ["aliases", "torchvision:vgg16.IMAGENET1K_V1"] in [line.split() for line in fields.splitlines()]
    why = [line.split(None, 1)[1] for line in provenance.splitlines() if line.split()[:1] == ["aliases"]]
    assert why == [
        "torchvision:vgg16.IMAGENET1K_V1: timm tag 'tv_in1k' names torchvision's IMAGENET1K_V1 weights"
        " of the same architecture"
    ]


def test_timm_counts_from_a_snapshot_of_another_version_say_so(monkeypatch: pytest.MonkeyPatch) -> None:
    import timm

    from zooprobe.sources import timm_source

    older = {**timm_source.load_snapshot(), "timm_version": "0.0.1"}
    monkeypatch.setattr(timm_source, "load_snapshot", lambda: older)
    entry = next(e for e in timm_source.TimmSource().entries() if e.params is not None)
    assert dict(entry.provenance)["params"] == (
        f"timm_snapshot.json.gz (timm 0.0.1, meta-device build); installed timm is {timm.__version__}"
    )


@pytest.mark.parametrize(("name", "preprocessing"), [("ResNet50", "caffe"), ("EfficientNetB0", "built-in")])
def test_keras_sample_params_and_features_match_model(synced: Path, name: str, preprocessing: str) -> None:
    import keras

    entry = _source_entries(synced, "keras")[name]
    builder = getattr(keras.applications, name)
    model = builder(weights=None)
    assert entry.params == model.count_params()
    assert entry.input.default_resolution == tuple(model.input_shape[1:3])
    body = builder(weights=None, include_top=False, pooling="avg")
    assert entry.params_no_head == body.count_params()
    assert entry.feature_dim == body.output_shape[-1]
    assert entry.input.preprocessing == preprocessing
