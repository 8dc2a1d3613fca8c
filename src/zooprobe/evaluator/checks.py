"""The checks of when transfer makes sense, before any feature is extracted, and the cut points to score.

1. same input type: modality, channels, resolution (or text length) against the entry's input spec;
2. data ratio: pretraining examples against the target's size and its smallest class.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from ..catalog.schema import Entry
from ..errors import InvalidChoiceError, ZooprobeError

AUTO_LAYERS = 6
# Below these sizes, retraining every weight of a network is likely to overfit (a frozen body or a
# shallow new block is the safer start); they are rules of thumb, and the report says so.
SMALL_TARGET_EXAMPLES = 1_000
SMALL_TARGET_PER_CLASS = 20
# A target holding more than this fraction of the source's examples gains little from pretraining.
LARGE_TARGET_RATIO = 0.1


class AssessError(ZooprobeError):
    """An assessment that cannot start: no candidates, bad options."""


def check_input(entry: Entry, summary: dict[str, Any]) -> dict[str, Any]:
    """Whether the data fit the backbone's input: ``compatible``, ``adapted`` (saying how) or ``incompatible``."""
    modality = summary["modality"]
    if entry.modality not in (modality, "multimodal"):
        return {
            "status": "incompatible",
            "adaptations": [],
            "reason": f"{entry.id} takes {entry.modality} input; the data are {modality}",
        }
    adaptations: list[str] = []
    spec = entry.input
    if modality == "image":
        channels = summary.get("channels") or []
        expected = spec.channels or 3
        for count in channels:
            if count == expected:
                continue
            if count == 1 and expected == 3:
                adaptations.append("grayscale replicated to 3 channels")
            elif count == 4 and expected == 3:
                adaptations.append("alpha channel dropped (RGBA to RGB)")
            else:
                return {
                    "status": "incompatible",
                    "adaptations": [],
                    "reason": f"{entry.id} takes {expected}-channel images; the data have {count} channels",
                }
        if spec.default_resolution:
            height, width = spec.default_resolution
            small = summary["image_size"]["min"]
            large = summary["image_size"]["max"]
            if small[0] < height or small[1] < width:
                adaptations.append(f"upsampling from {small[0]}x{small[1]} to {height}x{width}")
            elif large[0] > 2 * height or large[1] > 2 * width:
                adaptations.append(f"downsampling from up to {large[0]}x{large[1]} to {height}x{width}")
    elif modality == "text" and spec.max_tokens:
        longest = summary.get("text_length", {}).get("max", 0)
        # ~4 characters per token for English subword tokenizers: only a hint, the tokenizer decides.
        if longest > 4 * spec.max_tokens:
            adaptations.append(f"truncation to {spec.max_tokens} tokens (longest text {longest} characters)")
    return {"status": "adapted" if adaptations else "compatible", "adaptations": adaptations, "reason": None}


def name_pair_features(check: dict[str, Any], choice: str, doc: dict[str, Any]) -> None:
    """Record in ``doc`` how the backbone read sentence pairs (``choice``, from
    :func:`~zooprobe.backbones.text_features.pair_features`), and name it among ``check``'s adaptations."""
    from ..backbones.text_features import PAIR_FEATURES_DESCRIPTION

    doc["pair_features"] = choice
    check.update(status="adapted", adaptations=[*check["adaptations"], PAIR_FEATURES_DESCRIPTION[doc["pair_features"]]])


def check_data_ratio(entry: Entry, summary: dict[str, Any]) -> dict[str, Any]:
    """Pretraining examples against the target's size and smallest class, with flags for the decision."""
    target = int(summary["examples"])
    per_class_min = min(summary["per_class"].values()) if summary["per_class"] else 0
    source = entry.pretrain_examples
    ratio = target / source if source else None
    flags: list[str] = []
    if source is None:
        flags.append("source size unknown")
    elif ratio is not None and ratio > LARGE_TARGET_RATIO:
        flags.append(
            f"target not much smaller than the source ({target:,} vs {source:,} examples):"
            " pretraining may add little over training from scratch"
        )
    if target < SMALL_TARGET_EXAMPLES or per_class_min < SMALL_TARGET_PER_CLASS:
        # whether that risks overfitting depends on the strategy: the caveats say so next to one that retrains the body
        flags.append(f"target small ({target:,} examples, {per_class_min} in the smallest class)")
    return {
        "source_examples": source,
        "target_examples": target,
        "examples_per_class_min": per_class_min,
        "ratio": ratio,
        "flags": flags,
    }


def is_small(ratio: dict[str, Any]) -> bool:
    """Whether a :func:`check_data_ratio` result describes a target too small to retrain a whole network on."""
    return bool(
        ratio["target_examples"] < SMALL_TARGET_EXAMPLES or ratio["examples_per_class_min"] < SMALL_TARGET_PER_CLASS
    )


# --- layers --------------------------------------------------------------------------------------


def select_layers(cut_points: Sequence[str], layers: str | Sequence[str]) -> list[str]:
    """The cut points to score: ``auto`` (up to 6 spread over the second half of the network, always the
    last), ``all``, or the names given (validated).

    :raises InvalidChoiceError: naming the valid cut points for an unknown name.
    """
    if layers == "all":
        return list(cut_points)
    if layers == "auto":
        count = len(cut_points)
        if count <= AUTO_LAYERS:
            return list(cut_points)
        # Early blocks hold generic edges and textures that rarely beat later ones on a probe;
        # sample the second half densely and keep one early point as a reference.
        picks = {count - 1, count // 4}
        for step in range(AUTO_LAYERS - 2):
            picks.add(round(count / 2 + step * (count / 2 - 1) / (AUTO_LAYERS - 2)))
        return [cut_points[i] for i in sorted(picks)]
    names = [layers] if isinstance(layers, str) else list(layers)
    for name in names:
        if name not in cut_points:
            raise InvalidChoiceError("cut point", name, list(cut_points))
    return sorted(names, key=list(cut_points).index)
