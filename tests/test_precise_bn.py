"""Precise BatchNorm: a scratch arm that fits its training data is not evaluated with statistics that lag
behind its weights (the collapse to one class that issue 21 measured)."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from zooprobe.backbones.backbone import Backbone
from zooprobe.data.datasets import read_dataset
from zooprobe.finetuning.batches import split_indices
from zooprobe.finetuning.precise_bn import recompute_statistics, training_batchnorms
from zooprobe.finetuning.strategy import SCRATCH, Strategy
from zooprobe.finetuning.trainer import Trainer, TrainSettings
from zooprobe.runs.store import EpochRecord, RunStore

from .test_backbone import mobilenet  # noqa: F401  (a fixture)


def test_recompute_statistics_averages_the_batches_and_restores_momentum() -> None:
    import torch

    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 1), torch.nn.BatchNorm2d(4), torch.nn.ReLU())
    frozen = torch.nn.BatchNorm2d(4)
    model.append(frozen)
    model.train()
    frozen.eval()  # kept statistics: not recomputed
    frozen_before = frozen.running_mean.clone()
    batches = [torch.randn(8, 3, 5, 5) * 2 + 3 for _ in range(4)]
    assert training_batchnorms(model) == [model[1]]
    assert recompute_statistics(model, iter(batches), max_examples=24) == 24  # 3 batches of 8
    with torch.no_grad():
        means = [model[0](b).mean(dim=(0, 2, 3)) for b in batches[:3]]
    torch.testing.assert_close(model[1].running_mean, torch.stack(means).mean(0))
    assert model[1].momentum == 0.1 and model.training and not frozen.training
    assert torch.equal(frozen.running_mean, frozen_before)
    model.eval()
    assert recompute_statistics(model, iter(batches)) == 0  # nothing trains: nothing recomputed


def _two_digits(path: Path, per_class: int) -> str:
    """Digits 0 and 1 of scikit-learn (well separated) as an .npz dataset."""
    from sklearn.datasets import load_digits

    digits = load_digits()
    keep = np.concatenate([np.flatnonzero(digits.target == c)[:per_class] for c in (0, 1)])
    np.savez(path, x=(digits.images[keep] * 255 / 16).astype(np.uint8), y=digits.target[keep])
    return str(path)


def _scratch_epochs(backbone: Backbone, data: str, home: Path, precise_bn: bool) -> list[EpochRecord]:
    dataset = read_dataset(data)
    train_idx, val_idx = split_indices(dataset, 0)
    settings = TrainSettings(epochs=2, batch_size=16, precise_bn=precise_bn)
    with RunStore(home) as store:
        run = store.create("finetune", data, {}, data_hash=dataset.content_hash())
        trainer = Trainer(
            store=store,
            run_id=run.id,
            run_dir=home / "runs" / run.id,
            backbone=backbone,
            dataset=dataset,
            train_idx=train_idx,
            val_idx=val_idx,
            settings=settings,
            device="cpu",
            progress=False,
            on_epoch=None,
        )
        trainer.run_arm(SCRATCH, Strategy("full", train="all"))
        records = store.epochs(run.id, SCRATCH)
        store.finish(run.id)
    return records


@pytest.mark.slow
def test_scratch_arm_is_not_evaluated_at_one_class_because_of_batchnorm_statistics(
    mobilenet: Backbone,  # noqa: F811
    tmp_path: Path,
) -> None:
    """MobileNetV2 from scratch on 160 digits 0 and 1 at 32 px, 2 epochs (20 steps): it fits the training
    data, and with the running statistics momentum left after 20 steps it predicts one class in eval mode.
    About 2.5 CPU minutes (two runs of the arm)."""
    spec = replace(mobilenet.entry.input, default_resolution=(32, 32))
    mobilenet.entry = replace(mobilenet.entry, input=spec)
    data = _two_digits(tmp_path / "two.npz", 100)
    stale = _scratch_epochs(mobilenet, data, tmp_path / "stale", precise_bn=False)
    precise = _scratch_epochs(mobilenet, data, tmp_path / "precise", precise_bn=True)
    # the same weights train either way (precise BN runs after the epoch, without gradients)
    assert [r.train_loss for r in precise] == pytest.approx([r.train_loss for r in stale], rel=1e-4)
    assert precise[-1].train_loss is not None and precise[-1].train_loss < 0.5  # it fits its training data
    assert stale[-1].extra["top_class_share"] >= 0.95 and "precise_bn_examples" not in stale[-1].extra
    assert stale[-1].val_accuracy is not None and stale[-1].val_accuracy <= 0.6
    assert precise[-1].extra["precise_bn_examples"] == 160
    assert precise[-1].val_accuracy is not None and precise[-1].val_accuracy >= 0.75, precise
    assert precise[-1].extra["top_class_share"] < 0.7
