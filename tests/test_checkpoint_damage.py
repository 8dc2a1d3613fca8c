"""A damaged newest checkpoint falls back to the previous good one, or to the arm's start, in one line."""

from __future__ import annotations

import os
import struct
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

import zooprobe
from zooprobe.finetuning.finetune import FinetuneResult
from zooprobe.runs.store import EpochRecord, RunStore

from .test_toy_framework import TOY_ID as MODEL
from .test_toy_framework import toy_home  # noqa: F401  (a fixture: the toy framework's catalog)

# the toy framework's small CNN keeps each run to seconds
SETTINGS: dict[str, Any] = {"epochs": 3, "train_size": 120, "batch_size": 32, "progress": False}
ARM = "head"


class Interrupted(Exception):
    pass


def _interrupted_run(home: Path, after: int = 2) -> tuple[str, Path]:
    """A head run stopped after epoch ``after``: (its id, its folder of checkpoints)."""

    def interrupt(arm: str, record: EpochRecord) -> None:
        if record.epoch == after:
            raise Interrupted

    with pytest.raises(Interrupted):
        zooprobe.finetune("sklearn:digits", MODEL, ARM, on_epoch=interrupt, home=home, **SETTINGS)
    with RunStore(home) as store:
        run_id = store.list(kind="finetune")[0].id
    return run_id, home / "runs" / run_id


def _truncate(path: Path) -> None:
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


def _empty(path: Path) -> None:
    path.write_bytes(b"")


def _random(path: Path) -> None:
    path.write_bytes(os.urandom(path.stat().st_size))


def _huge_header(path: Path) -> None:
    data = path.read_bytes()
    path.write_bytes(struct.pack("<Q", 1 << 60) + data[8:])


def _foreign_keys(path: Path) -> None:
    import torch
    from safetensors.torch import save_file

    save_file({"model/not.this.arm": torch.zeros(3)}, str(path), metadata={"format": "pt"})


def _rename_a_model_tensor(path: Path) -> None:
    """The checkpoint as it was, metadata and all, but one model tensor under another name."""
    from safetensors import safe_open
    from safetensors.torch import load_file, save_file

    with safe_open(str(path), framework="pt") as handle:
        metadata = handle.metadata()
    tensors = load_file(str(path))
    first = sorted(k for k in tensors if k.startswith("model/"))[0]
    tensors["model/renamed"] = tensors.pop(first)
    save_file(tensors, str(path), metadata=metadata)


DAMAGE: dict[str, Callable[[Path], None]] = {
    "truncated": _truncate,
    "zero bytes": _empty,
    "random bytes": _random,
    "huge header": _huge_header,
    "foreign keys": _foreign_keys,
}


def _resume(run_id: str, home: Path) -> tuple[list[int], FinetuneResult]:
    trained: list[int] = []
    result = zooprobe.finetune(
        resume=run_id, progress=False, home=home, on_epoch=lambda arm, record: trained.append(record.epoch)
    )
    return trained, result


@pytest.mark.parametrize("kind", sorted(DAMAGE))
def test_damaged_newest_falls_back_to_the_previous(
    kind: str,
    toy_home: Path,  # noqa: F811
    capsys: pytest.CaptureFixture[str],
) -> None:
    run_id, folder = _interrupted_run(toy_home)
    assert sorted(p.name for p in folder.glob(f"{ARM}*.safetensors")) == [
        "head.best.safetensors",
        "head.prev.safetensors",
        "head.safetensors",
    ]
    capsys.readouterr()
    DAMAGE[kind](folder / "head.safetensors")
    trained, result = _resume(run_id, toy_home)
    assert trained == [2, 3]
    lines = [line for line in capsys.readouterr().err.splitlines() if "head.safetensors" in line]
    assert len(lines) == 1 and "resuming from the previous checkpoint (after epoch 1)" in lines[0], lines
    assert [r.epoch for r in result.arms[ARM]] == [1, 2, 3]
    assert (folder / "head.safetensors.damaged").exists()


def test_both_damaged_restart_the_arm(toy_home: Path, capsys: pytest.CaptureFixture[str]) -> None:  # noqa: F811
    run_id, folder = _interrupted_run(toy_home)
    _truncate(folder / "head.safetensors")
    _random(folder / "head.prev.safetensors")
    capsys.readouterr()
    trained, _ = _resume(run_id, toy_home)
    assert trained == [1, 2, 3]
    lines = [line for line in capsys.readouterr().err.splitlines() if "damaged" in line]
    assert len(lines) == 1 and "starts again from its first epoch" in lines[0]


def test_fallback_resumes_as_an_uninterrupted_run(toy_home: Path) -> None:  # noqa: F811
    straight = zooprobe.finetune("sklearn:digits", MODEL, ARM, home=toy_home, **SETTINGS)
    run_id, folder = _interrupted_run(toy_home)
    _truncate(folder / "head.safetensors")
    _, resumed = _resume(run_id, toy_home)
    expected = [(r.epoch, r.train_loss, r.val_loss, r.val_accuracy) for r in straight.arms[ARM]]
    got = [(r.epoch, r.train_loss, r.val_loss, r.val_accuracy) for r in resumed.arms[ARM]]
    assert [v for row in got for v in row] == pytest.approx([v for row in expected for v in row], rel=1e-5)


def test_checksums_are_in_the_run_store_and_checked(toy_home: Path, capsys: pytest.CaptureFixture[str]) -> None:  # noqa: F811
    from safetensors.torch import load_file, save_file

    run_id, folder = _interrupted_run(toy_home)
    with RunStore(toy_home) as store:
        rows = store.db.execute("SELECT arm, epoch, length(sha256) FROM checkpoints WHERE run_id = ?", (run_id,))
        assert sorted(rows) == [(ARM, 1, 64), (ARM, 2, 64)]
    # the arm's own tensors, one value changed: it parses and fits the arm, only the checksum tells
    newest = folder / "head.safetensors"
    tensors = load_file(str(newest))
    from safetensors import safe_open

    with safe_open(str(newest), framework="pt") as handle:
        metadata = handle.metadata()
    first = sorted(k for k in tensors if k.startswith("model/"))[0]
    tensors[first] = tensors[first] + 1
    save_file(tensors, str(newest), metadata=metadata)
    capsys.readouterr()
    trained, _ = _resume(run_id, toy_home)
    assert trained == [2, 3]
    assert "sha256 is not one the run store recorded" in capsys.readouterr().err


def test_a_run_from_before_checksums_is_checked_by_its_contents(
    toy_home: Path,  # noqa: F811
    capsys: pytest.CaptureFixture[str],
) -> None:
    run_id, folder = _interrupted_run(toy_home)
    with RunStore(toy_home) as store:
        store.db.execute("DELETE FROM checkpoints WHERE run_id = ?", (run_id,))  # as an older release left it
    _rename_a_model_tensor(folder / "head.safetensors")
    capsys.readouterr()
    trained, _ = _resume(run_id, toy_home)
    assert trained == [2, 3]
    assert "head.safetensors: its tensors are not this arm's" in capsys.readouterr().err
    with RunStore(toy_home) as store:
        epochs = sorted(row[0] for row in store.db.execute("SELECT epoch FROM checkpoints WHERE run_id = ?", (run_id,)))
    assert epochs == [2, 3]  # checksummed again from the resumed epochs on
