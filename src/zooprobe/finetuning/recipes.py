"""Training recipes per modality: default learning rates, schedule, and the input adaptations a run records.

Images keep zooprobe's recipe: AdamW at 2e-3 for the head, the pretrained body at a tenth of it after
one head-only epoch, linear warm-up then cosine decay.

Text follows the recipe transformers' ``Trainer`` and BERT's paper use: AdamW with weight decay 0.01,
linear warm-up over the first 10% of steps then linear decay to zero (``get_linear_schedule_with_warmup``),
one learning rate for the whole model and no head-only epoch first. Its default depends on what trains:
3e-5 when the transformer trains (``full``, ``cut:...:train=all``, and the scratch baseline with them:
BERT's paper searched 2e-5..5e-5), 1e-2 when only a new head trains on the frozen encoder (``head``,
``cut:...:train=new``). A head reads normalised embeddings (unit length, so each feature is small)
and starts from zero knowledge of the classes, so it needs a far larger step than a pretrained body:
on the fortune category task (5 classes, 350 training texts, all-MiniLM-L6-v2) a linear head reached
0.49 validation accuracy after 3 epochs at 1e-3 and 0.77 at 1e-2.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .strategy import Strategy
from .trainer import TrainSettings

if TYPE_CHECKING:
    import numpy as np
    import numpy.typing as npt

    from ..backbones.contract import Backbone
    from ..data.dataset import Dataset

IMAGE_LR = 2e-3
TEXT_HEAD_LR = 1e-2
TEXT_BODY_LR = 3e-5


def default_lr(modality: str, strategy: Strategy) -> float:
    """The learning rate a run uses when the user gives none (see the module docstring)."""
    if modality != "text":
        return IMAGE_LR
    return TEXT_BODY_LR if strategy.trains_body else TEXT_HEAD_LR


def train_settings(
    modality: str, *, epochs: int, lr: float, batch_size: int, seed: int, patience: int
) -> TrainSettings:
    """The run's settings: zooprobe's image recipe, or transformers' text recipe (module docstring)."""
    common: dict[str, Any] = {"epochs": epochs, "lr": lr, "batch_size": batch_size, "seed": seed, "patience": patience}
    if modality != "text":
        return TrainSettings(**common)
    return TrainSettings(**common, weight_decay=0.01, body_lr_factor=1.0, head_warmup_epochs=0, schedule="linear")


def input_adaptations(backbone: Backbone, dataset: Dataset, *splits: npt.NDArray[np.int64]) -> dict[str, Any]:
    """What the run's inputs (the examples of ``splits``) lose to fit the model, for its config: texts cut
    at the model's token limit, as ``adaptations`` lines and ``truncated_share`` (the share cut)."""
    from .batches import load_examples

    indices = [int(i) for split in splits for i in split]
    if dataset.texts is None or not indices:
        return {}
    cut = 0
    for start in range(0, len(indices), 512):
        cut += backbone.count_truncated(load_examples(backbone, dataset, indices[start : start + 512]))
    share = cut / len(indices)
    limit = getattr(backbone, "max_tokens", None)
    line = f"truncation to {limit} tokens: {share:.1%} of examples cut ({cut} of {len(indices)})"
    return {"truncated_share": share, "adaptations": [line] if cut else []}
