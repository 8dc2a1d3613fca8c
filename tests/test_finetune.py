"""Fine-tuning the real ImageNet MobileNetV2 on scikit-learn's digits: strategies, freezing, resume, errors."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from click.testing import CliRunner

import zooprobe
from zooprobe.backbones.backbone import Backbone
from zooprobe.cli import cli
from zooprobe.errors import InvalidChoiceError, ZooprobeError
from zooprobe.finetuning.arms import build_arm_model
from zooprobe.finetuning.strategy import SCRATCH, Strategy, StrategyError, parse_strategy
from zooprobe.finetuning.trainer import lr_factor
from zooprobe.runs.records import AssessSummary, CandidateResult, Recommendation
from zooprobe.runs.store import EpochRecord, RunStore

from .conftest import recorded_epochs, run_and_kill
from .test_backbone import mobilenet  # noqa: F401  (a fixture)

MODEL = "torchvision:mobilenet_v2.IMAGENET1K_V1"
# 32 px keeps each CPU epoch to seconds: MobileNetV2 still sees a 1x1 map at its last block
SMALL = {"resolution": 32, "train_size": 60, "batch_size": 16, "progress": False}


@pytest.fixture
def weights(torch_home: Path, synced_home: Path, zooprobe_home: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Real MobileNetV2 weights in the torch hub cache and this test's own home holding a copy of the synced
    catalog (runs, checkpoints and features stay per test); returns the home."""
    import sqlite3

    monkeypatch.setenv("TORCH_HOME", str(torch_home))
    zooprobe_home.mkdir(parents=True, exist_ok=True)
    source, copy = sqlite3.connect(synced_home / "catalog.sqlite3"), sqlite3.connect(zooprobe_home / "catalog.sqlite3")
    try:
        source.backup(copy)
    finally:
        source.close()
        copy.close()
    return zooprobe_home


def _tensors(path: Path) -> dict[str, Any]:
    from safetensors.torch import load_file

    return load_file(str(path))


# --- strategies -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("as-is", Strategy("as-is")),
        ("head", Strategy("head")),
        ("full", Strategy("full", train="all")),
        ("cut:features.13", Strategy("cut", layer="features.13")),
        ("cut:features.13+mlp:256:train=new", Strategy("cut", layer="features.13", mlp=(256,))),
        ("cut:blocks.2.1+mlp:512,128:train=all", Strategy("cut", layer="blocks.2.1", mlp=(512, 128), train="all")),
    ],
)
def test_strategies_parse(text: str, expected: Strategy) -> None:
    assert parse_strategy(text) == expected


@pytest.mark.parametrize(
    ("text", "error", "message"),
    [
        ("finetune", InvalidChoiceError, "unknown strategy 'finetune'.*valid: as-is, head, full, cut:LAYER"),
        ("cut:", StrategyError, "write cut:LAYER"),
        ("cut:features.3+mlp:big", StrategyError, "mlp widths 'big' must be positive integers"),
        ("cut:features.3+mlp:0", StrategyError, "mlp widths '0'"),
        ("cut:features.3:train=some", StrategyError, "train=some is not one of new, all"),
    ],
)
def test_bad_strategies_say_what_is_accepted(text: str, error: type[Exception], message: str) -> None:
    with pytest.raises(error, match=message):
        parse_strategy(text)


def test_cut_removes_exactly_the_blocks_after_the_layer(mobilenet: Backbone) -> None:  # noqa: F811
    import torch

    arm = build_arm_model(mobilenet, parse_strategy("cut:features.13+mlp:32"), 10, (32, 32))
    model, head = arm.model, arm.head
    kept_blocks = {name.split(".")[1] for name, _ in model.named_parameters() if name.startswith("features.")}
    assert kept_blocks == {str(i) for i in range(14)}
    assert all(isinstance(model.get_submodule(f"features.{i}"), torch.nn.Identity) for i in range(14, 19))
    assert [type(m).__name__ for m in head] == ["Linear", "ReLU", "Linear"]
    assert (head[0].in_features, head[2].out_features) == (96, 10)  # features.13 has 96 channels
    assert model.get_submodule("classifier.1") is head
    original = dict(mobilenet.model.named_parameters())
    for name, param in model.named_parameters():
        if name.startswith("features."):
            assert torch.equal(param, original[name])
    batch = mobilenet.preprocess([np.full((8, 8), v, np.uint8) for v in (0, 90, 255)])
    seen: list[torch.Tensor] = []
    head.register_forward_pre_hook(lambda _m, args: seen.append(args[0]))
    model.eval()
    with torch.inference_mode():
        assert model(batch).shape == (3, 10)
    torch.testing.assert_close(seen[0], mobilenet.extract(batch, ["features.13"])["features.13"])


def test_frozen_body_keeps_weights_and_batchnorm_statistics(mobilenet: Backbone) -> None:  # noqa: F811
    import torch

    arm = build_arm_model(mobilenet, parse_strategy("head"), 10, (32, 32))
    model = arm.model
    arm.set_trainable(train_body=False)
    trainable = [name for name, p in model.named_parameters() if p.requires_grad]
    assert trainable == ["classifier.1.weight", "classifier.1.bias"]
    before = {k: v.clone() for k, v in model.state_dict().items()}
    arm.train_mode()
    batch_norms = [m for m in model.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    assert batch_norms and not any(m.training for m in batch_norms)
    assert model.classifier[0].training  # the dropout before the head still trains
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=0.1)
    images = torch.randn(8, 3, 32, 32) * 3 + 1  # statistics far from ImageNet's
    torch.nn.functional.cross_entropy(model(images), torch.arange(8) % 10).backward()
    optimizer.step()
    after = model.state_dict()
    changed = {k for k in before if not torch.equal(before[k], after[k])}
    assert changed == {"classifier.1.weight", "classifier.1.bias"}


def test_whole_model_trains_but_pretrained_batchnorm_keeps_its_statistics(mobilenet: Backbone) -> None:  # noqa: F811
    import torch

    arm = build_arm_model(mobilenet, parse_strategy("full"), 10, (32, 32))
    model = arm.model
    arm.set_trainable(train_body=True)
    assert all(p.requires_grad for p in model.parameters())
    arm.train_mode(keep_statistics=True)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    optimizer = torch.optim.AdamW(model.parameters(), lr=0.01)
    torch.nn.functional.cross_entropy(model(torch.randn(8, 3, 32, 32) * 3 + 1), torch.arange(8) % 10).backward()
    optimizer.step()
    after = model.state_dict()
    assert not torch.equal(before["features.0.0.weight"], after["features.0.0.weight"])
    assert not torch.equal(before["features.0.1.weight"], after["features.0.1.weight"])  # BN affine trains
    assert torch.equal(before["features.0.1.running_mean"], after["features.0.1.running_mean"])
    arm.train_mode()  # without keep_statistics, trainable BatchNorm updates its statistics
    model(torch.randn(8, 3, 32, 32) * 3 + 1)
    assert not torch.equal(before["features.0.1.running_mean"], model.state_dict()["features.0.1.running_mean"])


def test_a_last_batch_of_one_joins_the_one_before() -> None:
    import torch

    from zooprobe.finetuning.batches import Batches

    # BatchNorm in training mode cannot normalise one example: 33 at 16 a batch is 16 + 17, not 16 + 16 + 1
    for count, sizes in ((33, [16, 17]), (32, [16, 16]), (34, [16, 16, 2]), (1, [1]), (17, [17])):
        batches = Batches(torch.zeros(count, 2), torch.arange(count), 16)
        got = [len(y) for _, y in batches.iterate(shuffle_seed=0)]
        assert got == sizes and len(batches) == len(sizes)
        assert sorted(int(v) for _, y in batches.iterate(shuffle_seed=1) for v in y) == list(range(count))


def test_learning_rate_warms_up_linearly_then_decays_by_cosine() -> None:
    factors = [lr_factor(step, 20, 0.1) for step in range(20)]
    assert factors[:3] == [0.5, 1.0, 1.0]  # two warm-up steps, then the cosine starts at its peak
    assert all(a > b for a, b in zip(factors[2:], factors[3:], strict=False))
    assert factors[11] == pytest.approx(0.5 * (1 + math.cos(math.pi * 9 / 18)))
    assert 0 < factors[-1] < 0.01


# --- runs -----------------------------------------------------------------------------------------


def test_head_trains_on_cached_features_and_leaves_the_body_untouched(weights: Path) -> None:
    import torch

    result = zooprobe.finetune("sklearn:digits", MODEL, "head", epochs=2, **SMALL)
    records = result.arms["head"]
    assert [r.epoch for r in records] == [1, 2]
    assert all(r.extra.items() >= {"phase": "head", "trained_on": "features"}.items() for r in records)
    assert all("precise_bn_examples" not in r.extra for r in records)  # no BatchNorm trains
    assert any((weights / "features").iterdir())
    checkpoint = Path(result.summary["checkpoints"]["head"])
    assert checkpoint.parent == weights / "runs" / result.run_id
    # the summary names the epoch the best checkpoint holds: the lowest validation loss
    lowest = min(records, key=lambda r: (r.val_loss, r.epoch)).epoch
    assert result.summary["arms"]["head"]["checkpoint_epoch"] == lowest and result.summary["seconds"] > 0
    kept = next(r.val_accuracy for r in records if r.epoch == lowest)
    assert result.summary["arms"]["head"]["kept_val_accuracy"] == kept == result.outcome.arms["head"].achieved
    saved = _tensors(checkpoint)
    pretrained = zooprobe.load(MODEL).model.state_dict()
    body = [k for k in pretrained if not k.startswith("classifier.")]
    assert all(torch.equal(saved[k], pretrained[k]) for k in body)  # weights and BatchNorm statistics
    assert saved["classifier.1.weight"].shape == (10, 1280)
    state = _tensors(checkpoint.with_name("head.safetensors"))
    optimizer_keys = sorted(k for k in state if k.startswith("optimizer/"))
    # the optimizer held the new head's weight and bias, nothing else
    assert {k.split("/")[1] for k in optimizer_keys} == {"0", "1"}
    assert state["optimizer/0/exp_avg"].shape == (10, 1280)


def test_an_arm_stops_when_validation_loss_stops_falling(weights: Path) -> None:
    # at a learning rate of 1e-9 the validation loss stays put after the first epoch
    result = zooprobe.finetune("sklearn:digits", MODEL, "head", epochs=6, lr=1e-9, patience=2, **SMALL)
    records = result.arms["head"]
    assert [r.epoch for r in records] == [1, 2, 3] and records[-1].extra.get("early_stop") is True


def test_full_warms_up_the_head_then_trains_everything_with_a_lower_body_rate(weights: Path) -> None:
    result = zooprobe.finetune("sklearn:digits", MODEL, "full", epochs=2, **SMALL)
    first, second = result.arms["full"]
    assert first.extra.items() >= {"phase": "head", "trained_on": "features"}.items()
    assert second.extra.items() >= {"phase": "all", "trained_on": "images"}.items()
    assert "precise_bn_examples" not in second.extra  # pretrained BatchNorm keeps its statistics
    run_dir = weights / "runs" / result.run_id
    state = _tensors(run_dir / "full.safetensors")
    model_params = sum(1 for k in state if k.startswith("model/") and not k.endswith(("running_mean", "running_var")))
    model_params -= sum(1 for k in state if k.endswith("num_batches_tracked"))
    optimized = {k.split("/")[1] for k in state if k.startswith("optimizer/")}
    assert len(optimized) == model_params  # every parameter trains in the second phase
    with RunStore(weights) as store:
        run = store.get(result.run_id)
    assert run.status == "done" and run.kind == "finetune"
    assert run.config["arms"] == ["full"] and run.config["train_examples"] == 60


def test_resume_after_an_interruption_continues_from_the_last_epoch(weights: Path) -> None:
    settings = dict(SMALL, epochs=3, baseline="scratch")
    straight = zooprobe.finetune("sklearn:digits", MODEL, "cut:features.10:train=all", **settings)

    class Interrupted(Exception):
        pass

    def interrupt(arm: str, record: EpochRecord) -> None:
        if arm == SCRATCH and record.epoch == 1:
            raise Interrupted

    with pytest.raises(Interrupted):
        zooprobe.finetune("sklearn:digits", MODEL, "cut:features.10:train=all", on_epoch=interrupt, **settings)
    with RunStore(weights) as store:
        interrupted = store.list(kind="finetune")[0]
        assert interrupted.status == "failed"
        assert [(r.arm, r.epoch) for r in store.epochs(interrupted.id, SCRATCH)] == [(SCRATCH, 1)]
    trained: list[tuple[str, int]] = []
    resumed = zooprobe.finetune(
        resume=interrupted.id, progress=False, on_epoch=lambda arm, record: trained.append((arm, record.epoch))
    )
    assert trained == [(SCRATCH, 2), (SCRATCH, 3)]
    assert resumed.run_id == interrupted.id
    for arm in ("cut:features.10:train=all", SCRATCH):
        expected = [value for r in straight.arms[arm] for value in (r.epoch, r.train_loss, r.val_loss, r.val_accuracy)]
        got = [value for r in resumed.arms[arm] for value in (r.epoch, r.train_loss, r.val_loss, r.val_accuracy)]
        assert got == pytest.approx(expected, rel=1e-5)
    with RunStore(weights) as store:
        assert store.get(interrupted.id).status == "done"


def test_recommended_reads_the_latest_assessment_of_this_data_and_model(weights: Path) -> None:
    from zooprobe.data.datasets import read_dataset

    with pytest.raises(ZooprobeError, match="no finished assessment.*zooprobe assess"):
        zooprobe.finetune("sklearn:digits", MODEL, "recommended", epochs=1, **SMALL)
    digest = read_dataset("sklearn:digits").content_hash()
    with RunStore(weights) as store:
        for arg in ("head", "cut:features.13+mlp:16:train=new"):  # the second is the latest
            run = store.create("assess", "sklearn:digits", {"models": [MODEL]}, data_hash=digest)
            recommendation = Recommendation(arg.split(":")[0], None, arg, 0.9, 0.01, "a test")
            store.put_candidate(run.id, 0, CandidateResult(MODEL, recommendation=recommendation))
            store.finish(run.id, AssessSummary(ranking=[MODEL]))
    result = zooprobe.finetune("sklearn:digits", MODEL, "recommended", epochs=1, **SMALL)
    assert list(result.arms) == ["cut:features.13+mlp:16:train=new"]
    assert result.arms["cut:features.13+mlp:16:train=new"][0].extra["trained_on"] == "features"
    with RunStore(weights) as store:
        config = store.get(result.run_id).config
    assert config["strategy"] == "recommended" and config["assess_run"] == run.id
    assert config["parsed_strategy"] == {"kind": "cut", "layer": "features.13", "mlp": [16], "train": "new"}


def test_as_is_classifies_by_nearest_class_mean_without_training(weights: Path) -> None:
    result = zooprobe.finetune("sklearn:digits", MODEL, "as-is", **SMALL)
    (record,) = result.arms["as-is"]
    assert record.epoch == 0 and record.train_loss is None
    assert record.extra == {"method": "nearest class mean"}
    assert record.val_accuracy is not None and record.val_accuracy > 0.5  # chance is 0.1
    assert result.summary["checkpoints"] == {}


def test_as_is_uses_the_source_head_when_the_classes_are_its_own(weights: Path, tmp_path: Path) -> None:
    from sklearn.datasets import load_sample_image

    china, flower = (np.asarray(load_sample_image(name)) for name in ("china.jpg", "flower.jpg"))
    corners = [(0, 0), (20, 60), (40, 120), (60, 30), (10, 90)]
    crops = [image[top : top + 360, left : left + 360] for image in (china, flower) for top, left in corners]
    labels = ["palace"] * 5 + ["honeycomb"] * 5  # what ImageNet MobileNetV2 sees in each photo
    np.savez(tmp_path / "photos.npz", x=np.stack(crops), y=np.array(labels))
    result = zooprobe.finetune(str(tmp_path / "photos.npz"), MODEL, "as-is", progress=False)
    (record,) = result.arms["as-is"]
    assert record.extra == {"method": "source head", "val_f1": 1.0}  # a binary task: F1 of label 1 too
    assert record.val_accuracy == 1.0 and record.val_loss is not None and record.val_loss < 0.5


# --- bad arguments and the CLI --------------------------------------------------------------------


def test_cli_prints_one_json_document_and_a_table_per_arm(weights: Path) -> None:
    args = ["finetune", "--data", "sklearn:digits", "--model", MODEL, "--strategy", "cut:features.13+mlp:16"]
    args += ["--epochs", "2", "--resolution", "32", "--train-size", "60", "--batch-size", "16"]
    runner = CliRunner()
    as_json = runner.invoke(cli, [*args, "--format", "json"])
    assert as_json.exit_code == 0, as_json.output
    document = json.loads(as_json.stdout)
    (epochs,) = document["arms"].values()
    assert list(document["arms"]) == ["cut:features.13+mlp:16"]
    assert [e["epoch"] for e in epochs] == [1, 2]
    assert set(epochs[0]) >= {"train_loss", "val_loss", "val_accuracy", "val_balanced_accuracy", "seconds"}
    with RunStore(weights) as store:
        recorded = store.epochs(document["run_id"], "cut:features.13+mlp:16")
    assert [r.val_accuracy for r in recorded] == [e["val_accuracy"] for e in epochs]
    table = runner.invoke(cli, args).stdout.splitlines()
    assert table[2] == "cut:features.13+mlp:16" and table[3].split()[0] == "Epoch"
    assert [line.split()[0] for line in table[4:]] == ["1", "2"]
    assert not any("gain over scratch" in line for line in table)


def test_unknown_cut_point_exits_2_listing_the_valid_ones(weights: Path) -> None:
    args = ["finetune", "--data", "sklearn:digits", "--model", MODEL, "--strategy", "cut:features.99"]
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 2
    assert "unknown cut point of torchvision:mobilenet_v2.IMAGENET1K_V1 'features.99'" in result.output
    assert "features.18, pre_logits" in result.output and "Traceback" not in result.output


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--strategy", "head", "--train-size", "0"], "neither a count of examples"),
        (["--strategy", "head", "--train-size", "2.5"], "neither a count of examples"),
        (["--strategy", "head", "--train-size", "5000"], "train size 5000 is more than the 1,438 training examples"),
        (["--strategy", "head", "--epochs", "0"], "--epochs"),
        (["--strategy", "head", "--baseline", "imagenet"], "'imagenet' is not 'scratch'"),
        (["--strategy", "wide"], "unknown strategy 'wide'"),
        ([], "finetune needs --data, --model and --strategy"),
    ],
)
def test_bad_arguments_exit_2_with_one_line(weights: Path, args: list[str], message: str) -> None:
    result = CliRunner().invoke(cli, ["finetune", "--data", "sklearn:digits", "--model", MODEL, *args])
    assert result.exit_code == 2, result.output
    assert message in result.output and "Traceback" not in result.output


def test_weights_missing_offline_are_a_one_line_error(
    weights: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from huggingface_hub import constants

    # an empty Hugging Face cache, offline (huggingface_hub read the variables at import already)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hub"))
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    args = ["finetune", "--data", "sklearn:digits", "--model", "timm:resnet18.a1_in1k", "--strategy", "head"]
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 2, result.output
    assert "cannot load 'timm:resnet18.a1_in1k'" in result.output and "Traceback" not in result.output
    assert len(result.output.strip().splitlines()) == 1


def test_resume_refuses_options_the_run_fixes(weights: Path) -> None:
    result = CliRunner().invoke(cli, ["finetune", "--resume", "finetune-any", "--epochs", "9", "--lr", "0.1"])
    assert result.exit_code == 2
    assert "drop --epochs, --lr" in result.output


def test_resume_of_an_unknown_run_names_recent_runs(weights: Path) -> None:
    result = CliRunner().invoke(cli, ["finetune", "--resume", "finetune-nope"])
    assert result.exit_code == 2
    assert "unknown run 'finetune-nope'" in result.output


# --- the headline ---------------------------------------------------------------------------------


@pytest.mark.slow
def test_pretrained_full_and_head_beat_scratch_at_every_epoch(weights: Path) -> None:
    """ImageNet MobileNetV2 on 200 training digits at 64 px, 3 epochs; about 2-4 minutes on 2 CPU cores."""
    common = ["--data", "sklearn:digits", "--model", MODEL, "--epochs", "3", "--train-size", "200"]
    common += ["--resolution", "64", "--batch-size", "16"]
    runner = CliRunner()
    full = runner.invoke(cli, ["finetune", *common, "--strategy", "full", "--baseline", "scratch", "--format", "json"])
    assert full.exit_code == 0, full.output
    document = json.loads(full.stdout)
    head = runner.invoke(cli, ["finetune", *common, "--strategy", "head"])
    assert head.exit_code == 0, head.output
    scratch = [e["val_accuracy"] for e in document["arms"]["scratch"]]
    full_accuracy = [e["val_accuracy"] for e in document["arms"]["full"]]
    with RunStore(weights) as store:
        head_run = store.list(kind="finetune")[0]
        head_accuracy = [r.val_accuracy for r in store.epochs(head_run.id, "head")]
    assert len(scratch) == len(full_accuracy) == len(head_accuracy) == 3
    assert all(f > s for f, s in zip(full_accuracy, scratch, strict=True)), (full_accuracy, scratch)
    assert all(h > s for h, s in zip(head_accuracy, scratch, strict=True)), (head_accuracy, scratch)
    arms = document["summary"]["arms"]  # the gain is read between the checkpoints kept
    gain = arms["full"]["kept_val_accuracy"] - arms["scratch"]["kept_val_accuracy"]
    assert document["summary"]["gain_over_scratch"] == pytest.approx(gain)
    table = head.stdout.splitlines()
    assert table[0] == f"run {head_run.id}" and table[2] == "head"
    assert table[3].split() == ["Epoch", "Train", "Loss", "Validation", "Loss", "Accuracy", "Balanced", "Acc", "Time"]
    assert [line.split()[0] for line in table[4:7]] == ["1", "2", "3"]
    print("\nfull:", full_accuracy, "\nhead:", head_accuracy, "\nscratch:", scratch)


def test_a_killed_run_resumes_from_its_last_recorded_epoch(weights: Path, torch_home: Path) -> None:
    """SIGKILL mid-run (no cleanup runs at all), then `zooprobe finetune --resume RUN` finishes it."""
    import os
    import sys

    args = ["--data", "sklearn:digits", "--model", MODEL, "--strategy", "full", "--epochs", "6"]
    args += ["--resolution", "32", "--train-size", "60", "--batch-size", "16"]
    env = {**os.environ, "ZOOPROBE_HOME": str(weights), "TORCH_HOME": str(torch_home)}
    command = [sys.executable, "-m", "zooprobe", "finetune", *args]
    log = weights / "killed-run.log"
    recorded: list[EpochRecord] = []

    def two_epochs_recorded() -> bool:
        recorded[:] = recorded_epochs(weights, "full")
        return len(recorded) >= 2

    run_and_kill(command, env, log, two_epochs_recorded)
    assert 2 <= len(recorded) < 6, log.read_text()[-2000:]
    with RunStore(weights) as store:
        (run,) = store.list(kind="finetune")
        assert run.status == "running"  # nothing marked it finished or failed
        before = [r.epoch for r in store.epochs(run.id, "full")]
    result = CliRunner().invoke(cli, ["finetune", "--resume", run.id, "--format", "json"])
    assert result.exit_code == 0, result.output
    document = json.loads(result.stdout)
    epochs = [e["epoch"] for e in document["arms"]["full"]]
    assert epochs == list(range(1, 7)) and epochs[: len(before)] == before
    with RunStore(weights) as store:
        assert store.get(run.id).status == "done"
