"""Truths for the ``cut:`` strategies of bench_ranking.py: the cut network fine-tuned as zooprobe builds it.

For a candidate the assessment recommends ``cut:LAYER+mlp:256:train=...``, the benchmark builds that arm
with zooprobe's own arm builder (the body up to LAYER, later cut points replaced by identities, a new MLP
head) and fine-tunes it with the protocol of the ``full`` truth (AdamW, one-cycle schedule, the candidate's
learning rate, the same split, epochs and seed), twice: training the new layers only (``train=new``, the
body frozen, its BatchNorm statistics kept) and everything (``train=all``). At 300 examples the
recommendation is always ``train=new``; ``train=all`` is what a larger target gets (the quickstart's
1,797 digits), so both are measured at the layer the assessment chose. Each value is cached under
``cut``, keyed on everything that determines it (ranking_support.py).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

TRAINS = ("new", "all")


def cut_truths(
    cache: Path,
    parts: Mapping[str, Any],
    candidate: Any,
    recommendation: Mapping[str, Any] | None,
    data: tuple[Any, Any, Any, Any],
    classes: int,
) -> dict[str, float]:
    """``{"cut:new": accuracy, "cut:all": accuracy}`` on the test split for a ``cut`` ``recommendation``
    (``{}`` for any other strategy); ``data`` is (x_train, y_train, x_test, y_test) as the ``full`` truth's."""
    from ranking_support import cached_json

    if not recommendation or recommendation.get("strategy") != "cut":
        return {}
    layer = str(recommendation["cut"])
    found = {}
    for train in TRAINS:
        strategy = f"cut:{layer}+mlp:256:train={train}"
        key = {**parts, "strategy": strategy, "lr": candidate.lrs[0]}

        def compute(text: str = strategy) -> float:
            return fine_tune_cut(candidate, text, data, classes, int(parts["epochs"]))

        found[f"cut:{train}"] = float(cached_json(cache, "cut", key, compute))
    return found


def fine_tune_cut(candidate: Any, text: str, data: tuple[Any, Any, Any, Any], classes: int, epochs: int) -> float:
    """Build the arm of strategy ``text`` for ``candidate`` as zooprobe does, fine-tune it, and return its
    accuracy on the test split."""
    import torch
    from ranking_zoo import RESOLUTION, accuracy, backbone_of, train

    from zooprobe.finetuning.arms import build_arm_model
    from zooprobe.finetuning.strategy import parse_strategy

    x_train, y_train, x_test, y_test = data
    torch.manual_seed(0)
    strategy = parse_strategy(text)
    arm = build_arm_model(backbone_of(candidate, candidate.build()), strategy, classes, (RESOLUTION, RESOLUTION))
    arm.set_trainable(strategy.trains_body)
    train(arm.model, x_train, y_train, epochs, candidate.lrs[0], enter_training=arm.train_mode)
    return accuracy(arm.model, x_test, y_test)
