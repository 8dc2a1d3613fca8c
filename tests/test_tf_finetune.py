"""Fine-tuning a TF2 SavedModel (as TF-Hub and Kaggle serve them) in zooprobe's loop: TensorFlow computes
the body's forward pass and gradients, torch's optimizer steps, and every epoch is recorded as for torch."""

from __future__ import annotations

import json
import math
from importlib.util import find_spec
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from click.testing import CliRunner

import zooprobe
from zooprobe.catalog.schema import Entry, InputSpec
from zooprobe.cli import cli
from zooprobe.errors import ZooprobeError
from zooprobe.finetuning.arms import build_arm_model
from zooprobe.finetuning.strategy import SCRATCH, Strategy
from zooprobe.runs.store import EpochRecord, RunStore

if find_spec("tensorflow_hub") is None or find_spec("tf_keras") is None:
    pytest.skip("needs the tfhub extra: pip install 'zooprobe[tfhub]'", allow_module_level=True)

from zooprobe.backbones.tf_backbone import TFBackbone, import_tensorflow  # noqa: E402
from zooprobe.sources.tfhub_source import load_handle  # noqa: E402

# the SavedModels here are built by the tests and served as TF-Hub models: trusted as a user would trust them
pytestmark = pytest.mark.usefixtures("trusted_savedmodels")

RESOLUTION = 32
MODEL = "tfhub:local/conv-bn"
SMALL = {"resolution": RESOLUTION, "train_size": 80, "batch_size": 16, "progress": False}


@pytest.fixture(scope="module")
def saved_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A Keras-exported SavedModel (conv, BatchNorm, ReLU twice, mean-pooled: 16 features) with a
    ``training`` argument and non-trivial moving statistics, as TF-Hub's TF2 feature vectors are."""
    tf = import_tensorflow()
    import tf_keras

    tf_keras.utils.set_random_seed(3)
    inputs = tf_keras.Input((RESOLUTION, RESOLUTION, 3))
    x = tf_keras.layers.Conv2D(8, 3, strides=2, name="conv1")(inputs)
    x = tf_keras.layers.BatchNormalization(name="bn1")(x)
    x = tf_keras.layers.ReLU()(x)
    x = tf_keras.layers.Conv2D(16, 3, strides=2, name="conv2")(x)
    x = tf_keras.layers.BatchNormalization(name="bn2")(x)
    x = tf_keras.layers.ReLU()(x)
    model = tf_keras.Model(inputs, tf_keras.layers.GlobalAveragePooling2D()(x))
    for layer in model.layers:
        if isinstance(layer, tf_keras.layers.BatchNormalization):
            width = layer.moving_mean.shape[0]
            layer.moving_mean.assign(np.linspace(-0.2, 0.2, width, dtype=np.float32))
            layer.moving_variance.assign(np.linspace(0.5, 1.5, width, dtype=np.float32))
    folder = tmp_path_factory.mktemp("savedmodel") / "conv-bn"
    tf.saved_model.save(model, str(folder))
    return folder


@pytest.fixture
def home(saved_model: Path, zooprobe_home: Path) -> Path:
    """A catalog holding one TF-Hub entry whose handle is the local SavedModel folder."""
    from zooprobe.catalog.store import Catalog

    entry = Entry(
        source="tfhub",
        name="local/conv-bn",
        architecture="conv-bn",
        framework="tensorflow",
        tasks=("image-feature-extraction",),
        input=InputSpec(channels=3, default_resolution=(RESOLUTION, RESOLUTION)),
        handle=str(saved_model),
    )
    with Catalog(zooprobe_home) as catalog:
        catalog.replace_source("tfhub", None, [entry])
    return zooprobe_home


def _variables(model: Any) -> dict[str, np.ndarray]:
    return {v.name: v.numpy().copy() for v in model.variables}


def _checkpoint(home: Path, run_id: str, arm: str) -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    from zooprobe.finetuning.checkpoints import slug

    return load_file(str(home / "runs" / run_id / f"{slug(arm)}.safetensors"))


def test_gradients_through_tensorflow_equal_its_own_and_the_loaded_model_stays_as_loaded(saved_model: Path) -> None:
    tf = import_tensorflow()
    backbone = load_handle(str(saved_model))
    loaded = _variables(backbone.model)
    arm = build_arm_model(backbone, Strategy("full", layer="output", train="all"), 3, (RESOLUTION, RESOLUTION))
    model, head = arm.model, arm.head
    batch = torch.from_numpy(np.random.default_rng(0).random((6, 3, RESOLUTION, RESOLUTION), dtype=np.float32))
    labels = torch.tensor([0, 1, 2, 0, 1, 2])
    arm.train_mode(keep_statistics=True)
    torch.nn.functional.cross_entropy(model(batch), labels).backward()

    reference = tf.saved_model.load(str(saved_model))
    weight = tf.constant(head.weight.detach().numpy().T)
    bias = tf.constant(head.bias.detach().numpy())
    with tf.GradientTape() as tape:
        features = reference(tf.constant(batch.permute(0, 2, 3, 1).numpy()), training=False)
        logits = tf.matmul(features, weight) + bias
        loss = tf.reduce_mean(tf.nn.sparse_softmax_cross_entropy_with_logits(labels.numpy(), logits))
    expected = dict(
        zip(
            [v.name for v in reference.trainable_variables],
            tape.gradient(loss, reference.trainable_variables),
            strict=True,
        )
    )
    assert len(expected) == 8  # two kernels, two biases, two gammas, two betas
    for variable, param in zip(model.trainable_variables, model.body_parameters(), strict=True):
        assert param.grad is not None
        np.testing.assert_allclose(param.grad.numpy(), expected[variable.name].numpy(), rtol=1e-4, atol=1e-6)
    # the statistics stayed put (inference mode), and the copy the backbone extracts with was never touched
    for variable, buffer in zip(model.statistic_variables, model.body_buffers(), strict=True):
        np.testing.assert_array_equal(buffer.numpy(), loaded[variable.name])
    with torch.no_grad():
        next(iter(model.body_parameters())).add_(1.0)
    model(batch)
    assert all(np.array_equal(value, loaded[name]) for name, value in _variables(backbone.model).items())


def test_scratch_reinitialises_by_role_and_updates_batchnorm_statistics_in_training_mode(saved_model: Path) -> None:
    from zooprobe.backbones.tf_finetune import build_tf_arm, tf_arm

    backbone = load_handle(str(saved_model))
    arm, head = build_tf_arm(
        backbone, "output", (RESOLUTION, RESOLUTION), lambda width: torch.nn.Linear(width, 3), pretrained=False, seed=0
    )
    values = dict(
        zip(
            [v.name for v in arm.trainable_variables + arm.statistic_variables],
            arm.body_parameters() + arm.body_buffers(),
            strict=True,
        )
    )
    kernel = values["conv1/kernel:0"].detach()
    assert 0 < float(kernel.abs().max()) <= math.sqrt(6 / (27 + 72))  # Glorot-uniform: fans 3*3*3, 3*3*8
    assert not np.allclose(kernel.numpy(), _variables(backbone.model)["conv1/kernel:0"])
    assert torch.equal(values["bn1/gamma:0"].detach(), torch.ones(8))
    assert torch.equal(values["bn1/moving_mean:0"], torch.zeros(8))
    assert torch.equal(values["bn1/moving_variance:0"], torch.ones(8))
    tf_arm(arm, head).train_mode(keep_statistics=False)
    arm(torch.rand(4, 3, RESOLUTION, RESOLUTION))
    assert not torch.equal(values["bn1/moving_mean:0"], torch.zeros(8))  # read back from TensorFlow


def test_unknown_vector_role_is_refused_for_the_scratch_baseline() -> None:
    from zooprobe.backbones.tf_finetune import random_initial_value

    generator = torch.Generator().manual_seed(0)
    assert torch.equal(random_initial_value("block/bias:0", (4,), generator), torch.zeros(4))
    with pytest.raises(ZooprobeError, match="cannot tell how to re-initialise .*'block/scale:0'.*--baseline scratch"):
        random_initial_value("block/scale:0", (4,), generator)


def test_cli_full_and_scratch_record_every_epoch_and_freeze_what_they_should(home: Path, saved_model: Path) -> None:
    result = CliRunner().invoke(
        cli,
        ["finetune", "--data", "sklearn:digits", "--model", MODEL, "--strategy", "full", "--baseline", "scratch",
         "--epochs", "3", "--train-size", "80", "--batch-size", "16", "--format", "json"],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    document = json.loads(result.stdout)
    assert list(document["arms"]) == ["full", SCRATCH]
    full = document["arms"]["full"]
    assert [(e["epoch"], e["phase"], e["trained_on"]) for e in full] == [
        (1, "head", "features"),
        (2, "all", "images"),
        (3, "all", "images"),
    ]
    assert all(0 <= e["val_accuracy"] <= 1 and e["val_loss"] > 0 for arm in document["arms"].values() for e in arm)
    loaded = _variables(load_handle(str(saved_model)).model)
    full_state = _checkpoint(home, document["run_id"], "full")
    scratch_state = _checkpoint(home, document["run_id"], SCRATCH)
    # full: the body's weights trained, its pretrained BatchNorm statistics kept (Keras's recipe)
    assert not np.allclose(full_state["model/weights.conv1_kernel"].numpy(), loaded["conv1/kernel:0"])
    np.testing.assert_array_equal(full_state["model/statistics.bn2_moving_mean"].numpy(), loaded["bn2/moving_mean:0"])
    # scratch: BatchNorm in training mode moved its statistics away from their initial zeros
    assert float(scratch_state["model/statistics.bn2_moving_mean"].abs().max()) > 0
    with RunStore(home) as store:
        run = store.get(document["run_id"])
        assert run.status == "done" and "tensorflow" in json.dumps(run.versions)


def test_head_trains_on_cached_features_and_leaves_the_body_as_loaded(home: Path, saved_model: Path) -> None:
    result = zooprobe.finetune("sklearn:digits", MODEL, "head", epochs=2, **SMALL)
    assert [r.extra["trained_on"] for r in result.arms["head"]] == ["features", "features"]
    state = _checkpoint(home, result.run_id, "head")
    for name, value in _variables(load_handle(str(saved_model)).model).items():
        key = name.removesuffix(":0").replace("/", "_")
        prefix = "statistics" if "moving" in name else "weights"
        np.testing.assert_array_equal(state[f"model/{prefix}.{key}"].numpy(), value)


def test_a_killed_tensorflow_run_resumes_to_the_same_epochs(home: Path) -> None:
    settings = dict(SMALL, epochs=3)
    straight = zooprobe.finetune("sklearn:digits", MODEL, "full", **settings)

    class Interrupted(Exception):
        pass

    def interrupt(arm: str, record: EpochRecord) -> None:
        if record.epoch == 2:
            raise Interrupted

    with pytest.raises(Interrupted):
        zooprobe.finetune("sklearn:digits", MODEL, "full", on_epoch=interrupt, **settings)
    with RunStore(home) as store:
        interrupted = store.list(kind="finetune")[0]
    resumed = zooprobe.finetune(resume=interrupted.id, progress=False)
    expected = [(r.epoch, r.train_loss, r.val_loss, r.val_accuracy) for r in straight.arms["full"]]
    got = [(r.epoch, r.train_loss, r.val_loss, r.val_accuracy) for r in resumed.arms["full"]]
    assert np.allclose(np.array(got, dtype=float), np.array(expected, dtype=float), rtol=1e-4)


def test_a_model_with_several_outputs_asks_which_one_the_head_reads(tmp_path: Path) -> None:
    tf = import_tensorflow()

    class TwoOutputs(tf.Module):
        def __init__(self) -> None:
            super().__init__()
            self.kernel = tf.Variable(tf.ones((3, 4)), name="dense/kernel")

        @tf.function(input_signature=[tf.TensorSpec([None, RESOLUTION, RESOLUTION, 3], tf.float32)])
        def __call__(self, images: Any) -> Any:
            pooled = tf.reduce_mean(images, axis=(1, 2))
            return {"pooled_output": tf.matmul(pooled, self.kernel), "raw": pooled}

    tf.saved_model.save(TwoOutputs(), str(tmp_path / "two"))
    backbone = load_handle(str(tmp_path / "two"))
    with pytest.raises(ZooprobeError, match=r"several outputs \(pooled_output, raw\).*--strategy cut:pooled_output"):
        backbone.head_layer("head")
    with pytest.raises(ZooprobeError, match=r"--strategy cut:pooled_output:train=all$"):
        backbone.head_layer("full")


def test_a_saved_keras_file_is_refused_in_one_line() -> None:
    backbone = TFBackbone(
        entry=Entry(source="kaggle", name="a/b/keras/c/1", architecture="c", framework="keras"),
        model=object(),
        cut_points=["output"],
    )
    with pytest.raises(
        ZooprobeError, match=r"fine-tuning saved \.keras files \('kaggle:a/b/keras/c/1'\) is not supported yet"
    ) as caught:
        backbone.check_trainable()
    assert "\n" not in str(caught.value)
