"""The strategy grammar: ``as-is``, ``head``, ``full`` or ``cut:LAYER[+mlp:WIDTHS][:train=new|all]``."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal

from ..backbones.contract import PRE_LOGITS
from ..errors import InvalidChoiceError, ZooprobeError

STRATEGY_FORMS = ("as-is", "head", "full", "cut:LAYER[+mlp:WIDTHS][:train=new|all]", "recommended")
SCRATCH = "scratch"


class StrategyError(ZooprobeError):
    """A strategy string that does not parse."""


@dataclass(frozen=True)
class Strategy:
    """A parsed strategy: what is kept of the backbone, what is added, what trains.

    ``layer`` is the cut point the new head reads (``pre_logits`` for ``head`` and ``full``); ``mlp``
    the hidden widths of the new head; ``train`` whether only new layers train or all of them.
    """

    kind: Literal["as-is", "head", "full", "cut"]
    layer: str = PRE_LOGITS
    mlp: tuple[int, ...] = ()
    train: Literal["new", "all"] = "new"

    @property
    def trains_body(self) -> bool:
        return self.train == "all"


def parse_strategy(text: str) -> Strategy:
    """Parse ``as-is``, ``head``, ``full`` or ``cut:LAYER[+mlp:W1,W2][:train=new|all]``.

    :raises StrategyError: naming the accepted forms when ``text`` does not parse.
    """
    text = text.strip()
    if text == "as-is":
        return Strategy("as-is")
    if text == "head":
        return Strategy("head")
    if text == "full":
        return Strategy("full", train="all")
    if not text.startswith("cut:"):
        raise InvalidChoiceError("strategy", text, STRATEGY_FORMS)
    rest = text[len("cut:") :]
    train: Literal["new", "all"] = "new"
    match = re.fullmatch(r"(.*):train=(\w+)", rest)
    if match:
        rest, train_text = match.groups()
        if train_text not in ("new", "all"):
            raise StrategyError(f"strategy '{text}': train={train_text} is not one of new, all (e.g. ':train=new')")
        train = "new" if train_text == "new" else "all"
    layer, _, mlp_text = rest.partition("+mlp:")
    if not layer or ":" in layer or "+" in layer:
        raise StrategyError(
            f"strategy '{text}' does not parse: write cut:LAYER[+mlp:WIDTHS][:train=new|all], "
            "e.g. cut:features.13+mlp:256:train=new"
        )
    widths: tuple[int, ...] = ()
    if "+mlp:" in rest:
        try:
            widths = tuple(int(w) for w in mlp_text.split(","))
        except ValueError:
            widths = ()
        if not widths or min(widths) < 1:
            raise StrategyError(
                f"strategy '{text}': mlp widths '{mlp_text}' must be positive integers separated by commas, "
                "e.g. +mlp:256 or +mlp:512,128"
            )
    return Strategy("cut", layer=layer, mlp=widths, train=train)
