"""The caveats of an assessment's summary: each one fires on evidence from this run, and says what it rests on."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from .baseline import negative_transfer, no_better
from .checks import is_small


def caveats(
    ranked: Sequence[dict[str, Any]], docs: Sequence[dict[str, Any]], baseline: Mapping[str, Any] | None = None
) -> list[str]:
    """Warnings for the summary: the top candidate's data-ratio flags and input adaptations (facts); overfitting
    risk when its strategy retrains the body of a small target; domain mismatch when its own layer profile or
    the raw-feature ``baseline`` shows it; negative transfer when no candidate beats that baseline; what the
    budget left."""
    found: list[str] = []
    if ranked:
        top = ranked[0]
        model = top["model"]
        found.extend(f"{model}: {flag}" for flag in top["data_ratio"]["flags"] if flag != "source size unknown")
        found.extend(f"{model}: input {a}" for a in top["input_check"]["adaptations"])
        rec = top.get("recommendation") or {}
        risk = overfitting_risk(rec.get("finetune_arg"), rec.get("train"), top["data_ratio"])
        if risk:
            found.append(f"{model}: {risk}")
        found.extend(domain_mismatch(top, ranked, baseline))
        verdict = negative_transfer(ranked, baseline)
        if verdict:
            strategy = rec.get("finetune_arg") or "head"
            found.append(
                f"negative transfer likely: {verdict}; train a small model from scratch, or compare with"
                f" 'zooprobe finetune --model {model} --strategy {strategy} --baseline scratch'"
            )
    pending = [d["model"] for d in docs if d["status"] == "pending"]
    if pending:
        found.append(f"not assessed within the budget: {', '.join(pending)} (resume the run to finish)")
    return found


def overfitting_risk(strategy: str | None, train: str | None, ratio: Mapping[str, Any]) -> str | None:
    """The overfitting warning for a strategy that retrains the body (``train`` is ``all``: ``full``,
    ``cut:...:train=all``) on a small target; ``None`` for any other strategy (as-is, head, train=new)."""
    if train != "all" or not is_small(dict(ratio)):
        return None
    return (
        f"'{strategy}' retrains the whole network on {ratio['target_examples']:,} examples"
        f" ({ratio['examples_per_class_min']} in the smallest class), which risks overfitting; 'head' keeps the body"
        " frozen"
    )


def domain_mismatch(
    top: dict[str, Any], ranked: Sequence[dict[str, Any]], baseline: Mapping[str, Any] | None
) -> list[str]:
    """Domain-mismatch caveats for the first candidate, each from the assessment itself: an earlier cut point
    probing better than the final one by more than the spread (its last layers are specific to the source
    task), or its features probing no better than raw features while another candidate's do (when none
    does, that is negative transfer, said separately)."""
    found: list[str] = []
    profile = top.get("layer_profile") or []
    pretraining = ", ".join(sorted(set(top.get("pretraining") or []))) or "its source task"
    if profile and profile[-1].get("final", True):
        best = max(profile, key=lambda point: float(point["probe_accuracy"]))
        last = profile[-1]
        noise = max(best["probe_spread"], last["probe_spread"], 0.005)
        if best is not last and best["probe_accuracy"] - last["probe_accuracy"] > noise:
            found.append(
                f"domain mismatch likely: {top['model']}'s probe peaks at {best['layer']} ({best['probe_accuracy']:.3f}"
                f" ± {best['probe_spread']:.3f}) and falls to {last['probe_accuracy']:.3f} at its final cut point"
                f" {last['layer']}, more than the fold-to-fold spread: its last layers are specific to {pretraining}"
            )
    if (
        baseline is not None
        and top.get("probe_accuracy") is not None
        and no_better(top, baseline)
        and not negative_transfer(ranked, baseline)
    ):
        found.append(
            f"domain mismatch likely: {top['model']}'s features probe no better than {baseline['features']}"
            f" ({top['probe_accuracy']:.3f} vs {baseline['accuracy']:.3f} ± {baseline['spread']:.3f}), while another"
            " candidate's do"
        )
    return found
