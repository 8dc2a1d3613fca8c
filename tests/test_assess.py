"""The assessment: input and data-ratio checks, layer selection, the decision rules, and real runs."""

from __future__ import annotations

import dataclasses
import json
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from click.testing import CliRunner

from zooprobe.backbones.backbone import Backbone, TorchBackbone, block_cut_points, last_linear
from zooprobe.catalog.schema import Entry, InputSpec, PretrainStage
from zooprobe.catalog.store import Catalog
from zooprobe.cli import cli
from zooprobe.errors import InvalidChoiceError, SourceUnavailableError
from zooprobe.evaluator import assess as assess_module
from zooprobe.evaluator import candidate as candidate_module
from zooprobe.evaluator.assess import AssessError, assess
from zooprobe.evaluator.checks import check_data_ratio, check_input, select_layers
from zooprobe.evaluator.decision import consensus, recommend
from zooprobe.runs.records import AssessSummary, CandidateResult
from zooprobe.runs.store import RunStore

from .conftest import home_with_catalog, write_digits_npz

MOBILENET = "torchvision:mobilenet_v2.IMAGENET1K_V1"
MOBILENET_V2_WEIGHTS = "torchvision:mobilenet_v2.IMAGENET1K_V2"


def image_entry(**changes: Any) -> Entry:
    entry = Entry(
        source="test",
        name="net",
        architecture="net",
        modality="image",
        input=InputSpec(channels=3, default_resolution=(224, 224)),
        pretraining=(PretrainStage("imagenet-1k", 1_281_167),),
    )
    return dataclasses.replace(entry, **changes)


def summary(**changes: Any) -> dict[str, Any]:
    base = {
        "name": "d",
        "modality": "image",
        "examples": 500,
        "classes": 2,
        "per_class": {"a": 250, "b": 250},
        "image_size": {"min": [8, 8], "max": [8, 8]},
        "channels": [1],
    }
    return {**base, **changes}


# --- checks --------------------------------------------------------------------------------------


def test_input_check_names_each_adaptation_and_rejects_other_modalities() -> None:
    check = check_input(image_entry(), summary())
    assert check["status"] == "adapted"
    assert check["adaptations"] == ["grayscale replicated to 3 channels", "upsampling from 8x8 to 224x224"]
    same = check_input(image_entry(), summary(image_size={"min": [224, 224], "max": [300, 300]}, channels=[3]))
    assert same == {"status": "compatible", "adaptations": [], "reason": None}
    text = check_input(image_entry(), summary(modality="text", text_length={"min": 3, "median": 9, "max": 40}))
    assert text["status"] == "incompatible" and "takes image input; the data are text" in text["reason"]
    two_channel = check_input(image_entry(), summary(channels=[2]))
    assert two_channel["status"] == "incompatible" and "2 channels" in two_channel["reason"]


def test_data_ratio_flags_small_targets_and_targets_close_to_the_source_size() -> None:
    ratio = check_data_ratio(image_entry(), summary())
    assert ratio["source_examples"] == 1_281_167 and ratio["ratio"] == pytest.approx(500 / 1_281_167)
    # the size, as a fact: whether it risks overfitting depends on the strategy (see test_decision)
    assert ratio["flags"] == ["target small (500 examples, 250 in the smallest class)"]
    big = summary(examples=50_000, per_class={"a": 25_000, "b": 25_000})
    tiny_source = image_entry(pretraining=(PretrainStage("tiny-set", 60_000),))
    flags = check_data_ratio(tiny_source, big)["flags"]
    assert flags == [
        "target not much smaller than the source (50,000 vs 60,000 examples):"
        " pretraining may add little over training from scratch"
    ]
    unknown = check_data_ratio(image_entry(pretraining=()), big)
    assert unknown["ratio"] is None and unknown["flags"] == ["source size unknown"]


def test_layer_selection() -> None:
    points = [f"block{i}" for i in range(20)] + ["pre_logits"]
    auto = select_layers(points, "auto")
    assert len(auto) == 6 and auto[-1] == "pre_logits" and auto == sorted(auto, key=points.index)
    assert select_layers(points, "all") == points
    assert select_layers(points, ["pre_logits", "block3"]) == ["block3", "pre_logits"]
    with pytest.raises(InvalidChoiceError, match="did you mean 'block3'"):
        select_layers(points, ["blok3"])


# --- decision rules ------------------------------------------------------------------------------


def profile(*accuracies: float, spread: float = 0.01) -> list[dict[str, Any]]:
    return [
        {"layer": f"l{i}", "depth": i / (len(accuracies) - 1), "probe_accuracy": a, "probe_spread": spread}
        for i, a in enumerate(accuracies)
    ]


def decision_doc(points: list[dict[str, Any]], examples: int, as_is_last: float = 0.0) -> dict[str, Any]:
    per_class = examples // 10
    return {
        "layer_profile": points,
        "as_is_by_layer": {points[-1]["layer"]: {"accuracy": as_is_last, "spread": 0.02}} if points else {},
        "data_ratio": {"target_examples": examples, "examples_per_class_min": per_class},
    }


def test_recommendation_reads_the_layer_profile_and_the_data_size() -> None:
    rising = profile(0.6, 0.8, 0.9)
    head = recommend(decision_doc(rising, examples=300))
    assert head is not None and head["strategy"] == "head" and head["finetune_arg"] == "head"
    assert head["expected_accuracy"] == 0.9 and head["uncertainty"] == 0.01 and "l2" in head["evidence"]
    full = recommend(decision_doc(rising, examples=20_000))
    assert full is not None and full["strategy"] == "full" and full["train"] == "all"
    # Peak in the middle, reached within the spread at l1, clear drop at the end: cut at l1.
    peaked = profile(0.6, 0.895, 0.9, 0.7)
    cut = recommend(decision_doc(peaked, examples=300))
    assert cut is not None and cut["strategy"] == "cut" and cut["cut"] == "l1"
    assert cut["finetune_arg"] == "cut:l1+mlp:256:train=new" and "falls to 0.700 at l3" in cut["evidence"]
    cut_all = recommend(decision_doc(peaked, examples=20_000))
    assert cut_all is not None and cut_all["finetune_arg"] == "cut:l1+mlp:256:train=all"
    as_is = recommend(decision_doc(rising, examples=300, as_is_last=0.89))
    assert as_is is not None and as_is["strategy"] == "as-is" and as_is["expected_accuracy"] == 0.89
    # the as-is classifier's own held-out accuracy and spread, not the probe's, are what as-is is expected to reach
    assert as_is["uncertainty"] == 0.02 and as_is["evidence"].startswith("Nearest class mean")
    assert recommend(decision_doc([], examples=300)) is None


def test_recommendation_never_uses_as_is_or_the_final_features_against_the_profile() -> None:
    # the as-is classifier matching a poor last layer is no reason to use it as is when an earlier layer probes
    # far better
    peaked = profile(0.6, 0.9, 0.6)
    cut = recommend(decision_doc(peaked, examples=300, as_is_last=0.6))
    assert cut is not None and cut["strategy"] == "cut" and cut["cut"] == "l1" and cut["expected_accuracy"] == 0.9
    # Layers named by hand without the final cut point: the final features were never measured.
    partial = profile(0.6, 0.8, 0.9)
    partial[-1]["final"] = False
    for as_is in (0.0, 0.9):
        rec = recommend(decision_doc(partial, examples=300, as_is_last=as_is))
        assert rec is not None and rec["strategy"] == "cut" and rec["cut"] == "l2"
        assert "final cut point was not assessed" in rec["evidence"]


def test_consensus_combines_scores_and_the_catalog_prior() -> None:
    docs: list[dict[str, Any]] = [
        {"model": "a", "final_scores": {"probe_accuracy": 0.9, "logme": 1.0}, "prior_top1": None},
        {"model": "b", "final_scores": {"probe_accuracy": 0.8, "logme": 0.5}, "prior_top1": None},
        {"model": "c", "final_scores": {"probe_accuracy": 0.5, "logme": 0.1}, "prior_top1": None},
    ]
    scores = consensus(docs)
    assert scores["a"] > scores["b"] > scores["c"]
    # A prior for a and b moves b, the one with the higher ImageNet top-1, up against a.
    docs[0]["prior_top1"], docs[1]["prior_top1"] = 70.0, 80.0
    with_prior = consensus(docs)
    assert with_prior["b"] - with_prior["a"] > scores["b"] - scores["a"]
    # The prior alone separates two candidates whose data scores tie.
    tied = [
        {"model": "a", "final_scores": {"probe_accuracy": 0.8}, "prior_top1": 70.0},
        {"model": "b", "final_scores": {"probe_accuracy": 0.8}, "prior_top1": 80.0},
    ]
    assert consensus(tied)["b"] > consensus(tied)["a"]


def test_consensus_ranks_by_the_deepest_cut_point_not_the_best_layer() -> None:
    # "early" probes best at an early block, but its last layer (where a new head goes) is poor.
    docs = [
        {"model": "early", "best_scores": {"probe_accuracy": 0.98, "logme": 0.9},
         "final_scores": {"probe_accuracy": 0.70, "logme": 0.1}},
        {"model": "late", "best_scores": {"probe_accuracy": 0.90, "logme": 0.6},
         "final_scores": {"probe_accuracy": 0.90, "logme": 0.6}},
    ]  # fmt: skip
    assert consensus(docs)["late"] > consensus(docs)["early"]
    # kNN and H-score are reported but left out: they do not move the consensus.
    docs[0]["final_scores"] |= {"knn_accuracy": 1.0, "hscore": 50.0}
    assert consensus(docs)["late"] > consensus(docs)["early"]


def test_decision_roles_and_weights_come_from_the_metrics_declarations() -> None:
    from zooprobe.evaluator.decision import MetricRoles
    from zooprobe.metrics import Metric, registered

    builtin = registered()
    roles = MetricRoles.of(builtin.values())
    assert (roles.probe, roles.as_is) == ("probe_accuracy", "ncm_accuracy")
    docs = [
        {"model": "a", "final_scores": {"probe_accuracy": 0.9, "hscore": 1.0}},
        {"model": "b", "final_scores": {"probe_accuracy": 0.8, "hscore": 9.0}},
    ]
    assert consensus(docs, roles) == consensus(docs)  # the chosen metrics' weights are the registered ones
    assert consensus(docs)["a"] > consensus(docs)["b"]  # H-score weighs nothing by default
    by_hscore = MetricRoles.of([dataclasses.replace(builtin["hscore"], weight=2.0)])
    assert consensus(docs, by_hscore)["b"] > consensus(docs, by_hscore)["a"]
    rival = Metric("my_probe", lambda f, y: 0.0, "features", "another probe", role="probe")
    with pytest.raises(AssessError, match="'probe_accuracy' and 'my_probe' both take the role 'probe'"):
        MetricRoles.of([builtin["probe_accuracy"], rival])


# --- real runs -----------------------------------------------------------------------------------


@pytest.fixture
def digits_npz(tmp_path: Path) -> Path:
    """300 of scikit-learn's 8x8 digits as an .npz dataset (30 per class)."""
    return write_digits_npz(tmp_path / "digits.npz", 30)


@pytest.fixture
def home(synced: Path, torch_home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A zooprobe home with the synced catalog and its own run store and feature cache."""
    monkeypatch.setenv("TORCH_HOME", str(torch_home))
    return home_with_catalog(synced, tmp_path / "home")


def random_init_loader(calls: list[str]) -> Any:
    """The real source loader, except that the V2 entry gets a randomly initialised MobileNetV2 (a control)."""
    import torch
    import torchvision

    from zooprobe.sources.torchvision_source import load_backbone

    def load(entry: Entry) -> Backbone:
        calls.append(entry.id)
        if entry.id != MOBILENET_V2_WEIGHTS:
            return load_backbone(entry)
        torch.manual_seed(0)
        model = torchvision.models.mobilenet_v2(weights=None).eval()
        classifier = last_linear(model)
        return TorchBackbone(entry, model, block_cut_points(model, classifier), classifier)

    return load


def test_assess_ranks_candidates_profiles_layers_and_records_the_run(home: Path, digits_npz: Path) -> None:
    calls: list[str] = []
    result = assess(
        str(digits_npz),
        [MOBILENET_V2_WEIGHTS, MOBILENET],
        resolution=32,
        folds=3,
        home=home,
        progress=False,
        loader=random_init_loader(calls),
    )
    assert calls == [MOBILENET_V2_WEIGHTS, MOBILENET]
    first, second = result.candidates
    assert first["rank"] == 1 and second["rank"] == 2 and first["consensus"] > second["consensus"]
    pretrained, control = (first, second) if first["model"] == MOBILENET else (second, first)
    # At its best layer the ImageNet body separates digits better than a random one. (At the last
    # layer, which the ranking reads, 1,280 random ReLU features probe about as well on digits.)
    assert pretrained["probe_accuracy"] > control["probe_accuracy"]
    assert pretrained["layer_profile"][-1]["probe_accuracy"] < pretrained["probe_accuracy"]
    assert first["input_check"]["adaptations"] == ["grayscale replicated to 3 channels", "upsampling from 8x8 to 32x32"]
    layers = [p["layer"] for p in first["layer_profile"]]
    # 6 cut points scored; the probe at the deepest and the 3 others of the highest kNN accuracy only
    assert len(layers) == 4 and layers[-1] == "pre_logits" and len(first["as_is_by_layer"]) == 6
    assert set(first["scores"]) >= {"probe_accuracy", "knn_accuracy", "logme", "hscore", "nce", "leep"}
    rec = result.recommended
    assert (
        rec is not None
        and rec["model"] == first["model"]
        and f"{first['model']} ranks first of 2 on" in rec["evidence"]
    )
    # digits are 8x8 pixels: a probe on the pixels themselves does as well as either body, and the summary says so
    assert rec["negative_transfer"] and rec["evidence"].startswith("Pretraining buys nothing measurable here")
    assert rec["finetune_arg"] == first["recommendation"]["finetune_arg"]

    with RunStore(home) as runs:
        run = runs.get(result.run_id)
        assert run.status == "done" and run.kind == "assess" and run.config["folds"] == 3
        stored = runs.candidates(result.run_id)
        assert [d.to_json() for d in stored] == [first, second]
        rows = {(s.model, s.layer, s.metric): s for s in runs.scores(result.run_id)}
    # Stored scores are the metric functions' values on the cached features.
    from zooprobe import metrics
    from zooprobe.data.datasets import read_dataset

    dataset = read_dataset(str(digits_npz))
    feature_files = sorted((home / "features").glob("*.npy"))
    assert len(feature_files) == 12  # 6 cut points x 2 candidates
    logme_rows = [s for key, s in rows.items() if key[0] == MOBILENET and key[2] == "logme"]
    values = {float(metrics.get("logme")(np.load(f), dataset.labels)) for f in feature_files}
    assert all(any(abs(s.value - v) < 1e-9 for v in values) for s in logme_rows)  # type: ignore[operator]


def test_incompatible_and_unloadable_candidates_are_skipped_with_reasons(home: Path, tmp_path: Path) -> None:
    manifest = tmp_path / "texts.csv"
    manifest.write_text("text,label\n" + "".join(f"sentence {i},{'ab'[i % 2]}\n" for i in range(20)))
    calls: list[str] = []
    result = assess(str(manifest), [MOBILENET], home=home, progress=False, loader=random_init_loader(calls))
    assert calls == []  # skipped before loading anything
    (doc,) = result.candidates
    assert doc["status"] == "skipped" and "takes image input; the data are text" in doc["skip_reason"]
    assert result.recommended is None and result.summary["skipped"] == {MOBILENET: doc["skip_reason"]}

    def unavailable(entry: Entry) -> Backbone:
        raise SourceUnavailableError(f"weights of '{entry.id}' are not in the local cache and there is no network")

    npz = tmp_path / "tiny.npz"
    np.savez(npz, x=(np.arange(512) // 2).astype(np.uint8).reshape(8, 8, 8), y=np.array([0, 1] * 4))
    result = assess(str(npz), [MOBILENET], home=home, progress=False, loader=unavailable)
    assert result.candidates[0]["skip_reason"].startswith("cannot load: weights of")

    # a model that fails on these data is skipped with the reason; the other candidate is assessed
    class Failing(TorchBackbone):
        def extract(self, batch: Any, layers: Any) -> Any:
            raise RuntimeError("size of tensor a (302) must match the size of tensor b (64)")

    def failing_v2(entry: Entry) -> Backbone:
        loaded = random_init_loader([])(entry)
        return Failing(**vars(loaded)) if entry.id == MOBILENET_V2_WEIGHTS else loaded

    options: dict[str, Any] = {"resolution": 32, "folds": 2, "layers": "pre_logits", "metrics": ["knn_accuracy"]}
    both = assess(str(npz), [MOBILENET_V2_WEIGHTS, MOBILENET], home=home, progress=False, loader=failing_v2, **options)
    status = {doc["model"]: (doc["status"], doc.get("skip_reason")) for doc in both.candidates}
    assert status[MOBILENET][0] == "done"
    assert status[MOBILENET_V2_WEIGHTS] == ("skipped", "scoring failed: RuntimeError: size of tensor a (302) must"
                                            " match the size of tensor b (64)")  # fmt: skip


def test_an_interrupted_assessment_resumes_without_recomputing(home: Path, digits_npz: Path) -> None:
    calls: list[str] = []
    real = random_init_loader(calls)

    def interrupted(entry: Entry) -> Backbone:
        if entry.id == MOBILENET:
            raise KeyboardInterrupt  # the user pressed Ctrl-C while the second candidate loaded
        return real(entry)

    options: dict[str, Any] = {"resolution": 32, "folds": 3, "home": home, "progress": False}
    with pytest.raises(KeyboardInterrupt):
        assess(str(digits_npz), [MOBILENET_V2_WEIGHTS, MOBILENET], loader=interrupted, **options)
    with RunStore(home) as runs:
        (run,) = runs.list(kind="assess")
        assert run.status == "running"
        first_scores = {(s.model, s.layer, s.metric): s.seconds for s in runs.scores(run.id)}
    assert {key[0] for key in first_scores} == {MOBILENET_V2_WEIGHTS}

    calls.clear()
    result = assess(str(digits_npz), [MOBILENET_V2_WEIGHTS, MOBILENET], loader=real, **options)
    assert result.resumed and result.run_id == run.id
    assert calls == [MOBILENET]  # the finished candidate is neither reloaded nor rescored
    with RunStore(home) as runs:
        assert runs.get(run.id).status == "done"
        after = {(s.model, s.layer, s.metric): s.seconds for s in runs.scores(run.id)}
    assert {k: v for k, v in after.items() if k[0] == MOBILENET_V2_WEIGHTS} == first_scores
    assert sorted(d["model"] for d in result.candidates) == [MOBILENET, MOBILENET_V2_WEIGHTS]
    assert [d["rank"] for d in result.candidates] == [1, 2]


def test_cli_assess_prints_the_ranking_and_json(home: Path, digits_npz: Path) -> None:
    runner = CliRunner()
    args = ["assess", "--data", str(digits_npz), "--models", MOBILENET, "--resolution", "32", "--folds", "3"]
    args += ["--metrics", "probe_accuracy,knn_accuracy,logme"]
    result = runner.invoke(cli, [*args, "--home", str(home)])
    assert result.exit_code == 0, result.output
    assert "RANK  MODEL" in result.output and MOBILENET in result.output
    assert "Recommended: torchvision:mobilenet_v2.IMAGENET1K_V1 with strategy" in result.output
    assert "Evidence:" in result.output
    as_json = runner.invoke(cli, [*args, "--layers", "pre_logits", "--format", "json", "--home", str(home)])
    assert as_json.exit_code == 0, as_json.output
    document = json.loads(as_json.stdout)
    assert document["candidates"][0]["layer_profile"][0]["layer"] == "pre_logits"


def test_cli_assess_bad_inputs_exit_2_with_one_line(home: Path, digits_npz: Path) -> None:
    runner = CliRunner()
    base = ["assess", "--data", str(digits_npz), "--home", str(home)]
    cases = {
        "--models x --query y": (["--models", MOBILENET, "--query", "mobilenet"], "exactly one of"),
        "unknown metric": (["--models", MOBILENET, "--metrics", "logmee"], "did you mean 'logme'"),
        "unknown model": (["--models", "torchvision:mobilenet_v9"], "mobilenet_v9"),
        "bad query option": (["--query", "mobilenet --max-parms 10M"], "bad --query"),
        "empty query": (["--query", "nosuchbackbonexyz"], "matches no catalog entry"),
        "missing data": (["--models", MOBILENET, "--data", "/nonexistent/dir"], "/nonexistent/dir"),
    }
    for name, (extra, message) in cases.items():
        result = runner.invoke(cli, [*base, *extra])
        assert result.exit_code == 2, (name, result.output)
        assert message in result.output, (name, result.output)
        assert "Traceback" not in result.output


def test_query_selects_top_k_candidates(home: Path) -> None:
    with Catalog(home) as catalog:
        entries = assess_module.resolve_candidates(catalog, None, "mobilenet --source torchvision --sort=-top1", top=2)
    assert len(entries) == 2 and all(e.source == "torchvision" and "mobilenet" in e.id for e in entries)
    assert entries[0].top1 >= entries[1].top1  # type: ignore[operator]
    with pytest.raises(AssessError, match="no candidates"):
        assess_module.resolve_candidates(Catalog(home), None, None, top=2)


def test_cli_resume_needs_only_the_run_id(home: Path, digits_npz: Path, tmp_path: Path) -> None:
    def interrupted(entry: Entry) -> Backbone:
        raise KeyboardInterrupt

    options: dict[str, Any] = {"resolution": 32, "folds": 3, "home": home, "progress": False, "layers": "pre_logits"}
    with pytest.raises(KeyboardInterrupt):
        assess(str(digits_npz), [MOBILENET], metrics=["logme", "knn_accuracy"], loader=interrupted, **options)
    with RunStore(home) as runs:
        (run,) = runs.list(kind="assess")
    result = CliRunner().invoke(cli, ["assess", "--resume", run.id, "--home", str(home), "--format", "json"])
    assert result.exit_code == 0, result.output
    document = json.loads(result.stdout)
    assert document["run"] == run.id
    (candidate,) = document["candidates"]
    assert candidate["model"] == MOBILENET and set(candidate["final_scores"]) == {"logme", "knn_accuracy"}
    with RunStore(home) as runs:
        assert runs.get(run.id).status == "done"
    other = tmp_path / "other.npz"
    np.savez(other, x=(np.arange(512) // 2).astype(np.uint8).reshape(8, 8, 8), y=np.array([0, 1] * 4))
    wrong = CliRunner().invoke(cli, ["assess", "--resume", run.id, "--data", str(other), "--home", str(home)])
    assert wrong.exit_code == 2 and f"run '{run.id}' assessed" in wrong.output and "drop --data" in wrong.output
    no_data = CliRunner().invoke(cli, ["assess", "--models", MOBILENET, "--home", str(home)])
    assert no_data.exit_code == 2 and "pass --data DATA" in no_data.output


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--query", 'mobilenet "unclosed'], "balance the quotes"),
        (["--models", MOBILENET, "--layers", ","], "no cut points given"),
        (["--models", MOBILENET, "--budget", "-1"], "--budget"),
        (["--models", MOBILENET, "--budget", "0"], "--budget"),
    ],
)
def test_cli_bad_assess_arguments_exit_2_before_any_work(
    home: Path, digits_npz: Path, args: list[str], message: str
) -> None:
    result = CliRunner().invoke(cli, ["assess", "--data", str(digits_npz), "--home", str(home), *args])
    assert result.exit_code == 2, result.output
    assert message in result.output and "Traceback" not in result.output
    with RunStore(home) as runs:
        assert not runs.list(kind="assess")


def test_cli_resume_refuses_options_the_run_fixes(home: Path) -> None:
    args = ["assess", "--resume", "assess-any", "--metrics", "logme", "--layers", "all", "--home", str(home)]
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 2 and "drop --metrics, --layers" in result.output


def test_repeated_candidates_are_assessed_once(home: Path) -> None:
    entries = assess_module.resolve_candidates(Catalog(home), [MOBILENET, MOBILENET], None, top=5)
    assert [e.id for e in entries] == [MOBILENET]


def test_scored_candidates_without_a_probe_say_why_there_is_no_recommendation() -> None:
    from zooprobe.cli.assess import render_assessment

    result = CandidateResult(MOBILENET, status="done", rank=1)
    text = render_assessment("assess-x", [result], AssessSummary(seconds=1.0))
    assert "add probe_accuracy to --metrics" in text and "no candidate could be assessed" not in text


def test_loading_keeps_the_preprocessing_the_loader_found() -> None:
    # an hf: listing of a timm repo has no input spec; the loader reads it from the weights' config
    import torch

    listed = Entry(source="hf", name="timm/some.model", architecture="some", modality="image",
                   input=InputSpec(channels=3), source_version="a" * 40)  # fmt: skip
    found = InputSpec(channels=1, default_resolution=(96, 96), mean=(0.5,) * 3, std=(0.25,) * 3, crop_pct=0.95)

    def loader(entry: Entry) -> Backbone:
        # the commit that loaded: main moved since the listing
        loaded = dataclasses.replace(entry, input=found, source_version="b" * 40)
        return TorchBackbone(loaded, torch.nn.Identity(), ["pre_logits"], None)

    entry = candidate_module._load(listed, None, loader).entry
    assert entry.input == dataclasses.replace(found, channels=3)  # the catalog's own facts win
    assert entry.source_version == "b" * 40
    assert candidate_module._load(listed, 64, loader).entry.input.default_resolution == (64, 64)


def test_no_registered_metric_is_an_error_naming_the_allow_list(
    home: Path, digits_npz: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ZOOPROBE_PLUGINS", "torchvision")  # leaves out the built-in 'metrics' plugin
    with pytest.raises(AssessError, match="add 'metrics'"):
        assess(str(digits_npz), [MOBILENET], home=home, progress=False)


PLUGIN_METRICS = """
import numpy as np

from zooprobe import hookimpl
from zooprobe.metrics import Metric, MetricResult


def centroid_gap(features, labels):  # a plain float, and no room for options it did not ask for
    means = np.stack([features[labels == c].mean(axis=0) for c in np.unique(labels)])
    return float(np.linalg.norm(means - means.mean(axis=0), axis=1).mean())


def seeded(features, labels, *, seed, folds):
    return MetricResult(seed + 0.5, spread=0.25, details={"folds": folds, "rows": len(features)})


@hookimpl
def register_metrics():
    return [
        Metric("centroid_gap", centroid_gap, "features", "mean distance of the class means to their centre"),
        Metric("seeded", seeded, "features", "the run's seed, as a score", options=("seed", "folds")),
    ]
"""


def toy_loader(entry: Entry) -> Backbone:
    """A two-layer convolutional network with random weights: a backbone that needs no weight file."""
    import torch

    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Conv2d(3, 6, 3), torch.nn.ReLU(), torch.nn.Conv2d(6, 12, 3)).eval()
    return TorchBackbone(entry, model, ["0", "2"], None)


def test_hook_register_metrics_scores_a_plugin_metric_like_the_builtins(
    home: Path, digits_npz: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from tests.test_plugins import install_plugin

    install_plugin(tmp_path, monkeypatch, "gapzoo", "1.0", PLUGIN_METRICS)
    entry = image_entry(input=InputSpec(channels=3, default_resolution=(8, 8)))
    chosen = ["probe_accuracy", "probe_balanced_accuracy", "knn_accuracy", "ncm_accuracy", "centroid_gap", "seeded"]
    try:
        result = assess(
            str(digits_npz), [entry], metrics=chosen, layers="all", seed=7, folds=2, home=home, progress=False,
            loader=toy_loader,
        )  # fmt: skip
    finally:
        sys.modules.pop("gapzoo_plugin", None)
    (doc,) = result.candidates
    assert doc["status"] == "done", doc["skip_reason"]
    with RunStore(home) as runs:
        rows = {(s.layer, s.metric): s for s in runs.scores(result.run_id)}
    assert {metric for _, metric in rows} == set(chosen)
    # a MetricResult keeps its spread and details; the metric got the seed and folds it asked for
    seeded = rows[("2", "seeded")]
    assert (seeded.value, seeded.spread, seeded.extra) == (7.5, 0.25, {"folds": 2, "rows": 300})
    # a plain float is the value, with no spread; it equals the function on the features assessed
    from zooprobe import metrics
    from zooprobe.data.datasets import read_dataset

    labels = read_dataset(str(digits_npz)).labels
    gaps = {float(metrics.get("centroid_gap")(np.load(f), labels)) for f in (home / "features").glob("*.npy")}
    assert rows[("2", "centroid_gap")].spread is None and rows[("2", "centroid_gap")].value in gaps
    # the built-ins go through the same door: one probe fit gives both probe scores, with its folds
    probe, balanced = rows[("2", "probe_accuracy")], rows[("2", "probe_balanced_accuracy")]
    assert probe.extra == balanced.extra and probe.extra["folds"] == 2 and probe.spread is not None
    assert [p["layer"] for p in doc["layer_profile"]] == ["0", "2"]
    assert doc["as_is_by_layer"] == {
        layer: {"accuracy": rows[(layer, "ncm_accuracy")].value, "spread": rows[(layer, "ncm_accuracy")].spread}
        for layer in ("0", "2")
    }
    # weight 0 (the default): a plugin metric is reported, not ranked by
    assert doc["final_scores"]["seeded"] == 7.5 and doc["rank"] == 1
