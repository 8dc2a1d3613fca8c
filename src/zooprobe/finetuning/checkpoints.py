"""Arm checkpoints: the arm's state, the optimizer's moments and the arm's bookkeeping in one safetensors file.

A checkpoint is written to a temporary file, fsynced and renamed into place, so an interrupted run never
leaves a torn file; resuming reads it back and continues at the next epoch.
"""

from __future__ import annotations

import json
import math
import os
import re
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..backbones.contract import Arm
from ..runs.store import EpochRecord

if TYPE_CHECKING:
    import torch


@dataclass
class ArmState:
    """Where an arm stands: the next epoch to train and the early-stopping bookkeeping."""

    next_epoch: int = 1
    best_val_loss: float = math.inf
    best_epoch: int = 0
    bad_epochs: int = 0
    finished: bool = False


def slug(arm: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", arm)


@dataclass
class Checkpoint:
    model_state: dict[str, torch.Tensor]
    optimizer_state: dict[str, Any] | None
    phase: str
    state: ArmState
    record: EpochRecord


def _atomic_save(
    path: Path,
    tensors: dict[str, torch.Tensor],
    metadata: dict[str, str],
    before_rename: Callable[[Path], None] | None = None,
) -> None:
    """Write a safetensors file under a temporary name, sync it, then rename it into place.

    ``before_rename`` sees the complete temporary file first (to record its checksum, keep the file it replaces).
    """
    from safetensors.torch import save_file

    path.parent.mkdir(parents=True, exist_ok=True)
    temp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        save_file(tensors, str(temp), metadata=metadata)
        with open(temp, "rb") as written:  # on disk before the rename, or a crash can leave a torn file
            os.fsync(written.fileno())
        if before_rename is not None:
            before_rename(temp)
        os.replace(temp, path)
    finally:
        temp.unlink(missing_ok=True)


def _model_tensors(state: dict[str, torch.Tensor], prefix: str = "") -> dict[str, torch.Tensor]:
    return {f"{prefix}{name}": value.detach().cpu().contiguous() for name, value in state.items()}


def write_model(path: Path, arm: Arm) -> None:
    """The arm's state alone (the best epoch's weights), as a plain safetensors file."""
    _atomic_save(path, _model_tensors(arm.state()), {"format": "pt"})


def write_checkpoint(
    path: Path,
    arm: Arm,
    optimizer: torch.optim.Optimizer,
    phase: str,
    state: ArmState,
    record: EpochRecord,
    before_rename: Callable[[Path], None] | None = None,
) -> None:
    """Model, optimizer moments and the arm's bookkeeping in one safetensors file (JSON in its metadata);
    ``before_rename`` sees the complete file under its temporary name (see :mod:`.checkpoint_guard`)."""
    import torch

    tensors = _model_tensors(arm.state(), "model/")
    optimizer_state = optimizer.state_dict()
    scalars: dict[str, dict[str, Any]] = {}
    for index, values in optimizer_state["state"].items():
        for key, value in values.items():
            if isinstance(value, torch.Tensor):
                tensors[f"optimizer/{index}/{key}"] = value.detach().cpu().contiguous()
            else:
                scalars.setdefault(str(index), {})[key] = value
    metadata = {
        "format": "pt",
        "phase": phase,
        "state": json.dumps(asdict(state)),
        "param_groups": json.dumps(optimizer_state["param_groups"]),
        "optimizer_scalars": json.dumps(scalars),
        "record": json.dumps(record.to_json()),
    }
    _atomic_save(path, tensors, metadata, before_rename)


def read_checkpoint(path: Path) -> Checkpoint:
    from safetensors import safe_open

    model_state: dict[str, torch.Tensor] = {}
    per_param: dict[int, dict[str, Any]] = {}
    with safe_open(str(path), framework="pt") as handle:
        metadata = handle.metadata()
        for key in handle.keys():
            if key.startswith("model/"):
                model_state[key[len("model/") :]] = handle.get_tensor(key)
            else:
                _, index, name = key.split("/", 2)
                per_param.setdefault(int(index), {})[name] = handle.get_tensor(key)
    for index, values in json.loads(metadata["optimizer_scalars"]).items():
        per_param.setdefault(int(index), {}).update(values)
    state_doc = json.loads(metadata["state"])
    best = state_doc.pop("best_val_loss")
    state = ArmState(best_val_loss=math.inf if best is None else float(best), **state_doc)
    record = EpochRecord.from_json(json.loads(metadata["record"]))
    optimizer_state = {"state": per_param, "param_groups": json.loads(metadata["param_groups"])}
    return Checkpoint(model_state, optimizer_state, metadata["phase"], state, record)
