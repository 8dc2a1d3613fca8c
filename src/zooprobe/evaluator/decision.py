"""The decision: a strategy per candidate from its layer profile, the consensus ranking, and the caveats.

Which metric leads the layer profile, which one says the frozen features serve as they are, and each
metric's weight in the consensus are read from the metrics' own declarations (:class:`MetricRoles`,
built from :class:`~zooprobe.plugins.metric.Metric`'s ``role`` and ``weight``); no metric is named here.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from .checks import AssessError, is_small

if TYPE_CHECKING:
    from ..plugins.metric import Metric

PRIOR = "prior_top1"
# The catalog's ImageNet top-1 is the prior (weighted tau 0.751 among ImageNet models on the standard
# benchmark), weighed against the metrics' declared weights (see zooprobe.evaluator.builtin_metrics);
# it only orders the candidates that report it.
PRIOR_WEIGHT = 0.5


@dataclass(frozen=True)
class MetricRoles:
    """Which metric plays which part in the decision, and the consensus weights: the metrics' declarations as data.

    Attributes:
        probe: the metric whose value and spread per cut point make the layer profile (``role="probe"``).
        neighbour: the metric whose match with the probe at the last cut point means "use as is".
        weights: consensus weight of each metric that has one (> 0).
    """

    probe: str | None = None
    neighbour: str | None = None
    weights: Mapping[str, float] = field(default_factory=dict)

    @classmethod
    def of(cls, metrics: Iterable[Metric]) -> MetricRoles:
        """The roles the given (chosen) metrics declare.

        :raises AssessError: when two of them take the role ``probe`` or ``neighbour``.
        """
        metrics = list(metrics)
        lead: dict[str, str] = {}
        for metric in metrics:
            if metric.role == "evidence":
                continue
            if metric.role in lead:
                raise AssessError(
                    f"metrics '{lead[metric.role]}' and '{metric.name}' both take the role '{metric.role}', and the"
                    " decision reads one; leave one of them out of --metrics"
                )
            lead[metric.role] = metric.name
        weights = {metric.name: float(metric.weight) for metric in metrics if metric.weight > 0}
        return cls(lead.get("probe"), lead.get("neighbour"), weights)

    @classmethod
    def registered(cls) -> MetricRoles:
        """The consensus weights of every registered metric (no roles: those are read from the chosen metrics)."""
        from ..plugins.metric_lookup import registered

        return cls(weights={m.name: float(m.weight) for m in registered().values() if m.weight > 0})


def _probe_accuracy(point: dict[str, Any]) -> float:
    return float(point["probe_accuracy"])


def recommend(doc: dict[str, Any]) -> dict[str, Any] | None:
    """The strategy for one assessed candidate, from its layer profile and data size.

    Rules, in order:

    - the probe peaks at the last cut point, or the last is within the spread of the peak, and kNN on
      those frozen final features does as well as the probe: (1) use as is — nothing to train.
    - the same profile without kNN's match: the source's final features serve the target; (2) new
      head on the frozen body for a small target, (3) new head and retrain everything otherwise.
    - an earlier cut point beats the last by more than the spread: the later layers are specific to
      the source task; (4) cut at the earliest layer within the spread of the peak, add new layers,
      train those only (small target) or everything.
    - the network's final cut point was not assessed (layers named by hand): (1)-(3) would rest on
      features nobody measured, so (4) at the earliest layer within the spread of the assessed peak.

    The expected accuracy is the probe's (kNN's for as-is) at that layer, ± the probe's spread over
    folds there.
    """
    profile = doc.get("layer_profile") or []
    if not profile:
        return None
    ratio = doc["data_ratio"]
    small = is_small(ratio)
    size = f"{ratio['target_examples']:,} examples ({ratio['examples_per_class_min']} in the smallest class)"
    best = max(profile, key=_probe_accuracy)
    last = profile[-1]
    noise = max(best["probe_spread"], last["probe_spread"], 0.005)
    knn_last = doc.get("knn_by_layer", {}).get(last["layer"])

    def rec(
        strategy: str, cut: str | None, train: str | None, arg: str, acc: float, spread: float, why: str
    ) -> dict[str, Any]:
        return {
            "strategy": strategy,
            "cut": cut,
            "train": train,
            "finetune_arg": arg,
            "expected_accuracy": acc,
            "uncertainty": spread,
            "evidence": why,
        }

    final_assessed = last.get("final", True)
    last_serves = final_assessed and last["probe_accuracy"] >= best["probe_accuracy"] - noise
    if last_serves and knn_last is not None and knn_last >= last["probe_accuracy"] - noise:
        return rec(
            "as-is",
            None,
            None,
            "as-is",
            knn_last,
            last["probe_spread"],
            f"kNN on the frozen features at {last['layer']} reaches {knn_last:.3f}, as good as a trained linear"
            f" probe ({last['probe_accuracy']:.3f} ± {last['probe_spread']:.3f}):"
            " training a head buys nothing measurable.",
        )
    if last_serves:
        peak = (
            f"probe accuracy is highest at the last cut point {last['layer']}"
            f" ({last['probe_accuracy']:.3f} ± {last['probe_spread']:.3f})"
            if best is last
            else f"the last cut point {last['layer']} ({last['probe_accuracy']:.3f}) is within the spread of"
            f" the peak at {best['layer']} ({best['probe_accuracy']:.3f} ± {best['probe_spread']:.3f})"
        )
        if small:
            return rec(
                "head",
                None,
                "new",
                "head",
                last["probe_accuracy"],
                last["probe_spread"],
                f"The {peak}: the source's final features serve this task, and with {size} a new head on the frozen"
                " body is the safe start.",
            )
        return rec(
            "full",
            None,
            "all",
            "full",
            last["probe_accuracy"],
            last["probe_spread"],
            f"The {peak}; with {size} there is enough data to retrain everything, which usually adds to the"
            " probe's accuracy (expected accuracy is the probe's, a lower bound).",
        )
    plateau = next(p for p in profile if p["probe_accuracy"] >= best["probe_accuracy"] - noise)
    train = "new" if small else "all"
    width = 256
    reached = (
        f"Probe accuracy peaks at {best['layer']} ({best['probe_accuracy']:.3f} ± {best['probe_spread']:.3f}),"
        f" reached within the spread by {plateau['layer']}"
    )
    if final_assessed:
        why = (
            f"{reached}, and falls to {last['probe_accuracy']:.3f} at {last['layer']}: the later layers are specific"
            " to the source task"
        )
    else:
        why = (
            f"The network's final cut point was not assessed (deepest assessed: {last['layer']}); among the layers"
            f" assessed, {reached[0].lower()}{reached[1:]}. Assess the final one (--layers auto) to see whether the"
            " whole body serves"
        )
    return rec(
        "cut",
        plateau["layer"],
        train,
        f"cut:{plateau['layer']}+mlp:{width}:train={train}",
        plateau["probe_accuracy"],
        plateau["probe_spread"],
        f"{why}; cut at {plateau['layer']}, add new layers and train {'only those' if small else 'everything'}"
        f" ({size}).",
    )


def consensus(docs: Sequence[dict[str, Any]], roles: MetricRoles | None = None) -> dict[str, float]:
    """One score per assessed candidate: the weighted mean of each score's z-score across candidates.

    Each metric weighs in with the weight it declares (``roles``: by default those of every
    registered metric), the prior with :data:`PRIOR_WEIGHT`.

    Each data-driven score is taken at the candidate's deepest assessed cut point, where the new
    head of the ``head`` and ``full`` strategies goes: the ranking predicts how well each backbone
    fine-tunes, while the layer profile decides where to cut it. Features of early layers often probe
    well on any task, so their scores would rank a backbone by what fine-tuning it end to end does not
    use. The prior is the catalog's ImageNet top-1, used when at least two candidates report it. A
    score missing for a candidate is left out of that candidate's mean.
    """
    import numpy as np

    weights = {**(roles or MetricRoles.registered()).weights, PRIOR: PRIOR_WEIGHT}
    columns: dict[str, dict[str, float]] = {}
    for doc in docs:
        for metric, value in doc.get("final_scores", doc.get("best_scores", {})).items():
            if value is not None and metric in weights:
                columns.setdefault(metric, {})[doc["model"]] = float(value)
        if doc.get(PRIOR) is not None:
            columns.setdefault(PRIOR, {})[doc["model"]] = float(doc[PRIOR])
    z: dict[str, list[tuple[float, float]]] = {doc["model"]: [] for doc in docs}
    for metric, values in columns.items():
        if len(values) < 2:
            continue
        array = np.array(list(values.values()))
        spread = array.std() or 1.0
        for model, value in values.items():
            z[model].append(((value - array.mean()) / spread, weights[metric]))
    return {
        model: (sum(v * w for v, w in parts) / sum(w for _, w in parts)) if parts else 0.0 for model, parts in z.items()
    }


def rank(
    docs: Sequence[dict[str, Any]], roles: MetricRoles | None = None
) -> tuple[list[dict[str, Any]], dict[str, Any] | None]:
    """Rank the assessed ``docs`` by :func:`consensus`, filling each one's ``consensus``, ``rank`` and
    ``recommendation``; with the recommended candidate's summary (``None`` when there is none)."""
    assessed = [d for d in docs if d["status"] == "done"]
    scores = consensus(assessed, roles)
    ranked = sorted(assessed, key=lambda d: -scores[d["model"]])
    for position, doc in enumerate(ranked, start=1):
        doc["consensus"] = scores[doc["model"]]
        doc["rank"] = position
        doc["recommendation"] = recommend(doc)
    recommended = None
    if ranked and ranked[0]["recommendation"]:
        top = ranked[0]
        rec = top["recommendation"]
        recommended = {
            "model": top["model"],
            "strategy": rec["strategy"],
            "cut": rec["cut"],
            "finetune_arg": rec["finetune_arg"],
            "expected_accuracy": rec["expected_accuracy"],
            "uncertainty": rec["uncertainty"],
            "evidence": f"{top['model']} ranks first of {len(ranked)} ({margin(ranked)}). {rec['evidence']}",
        }
    return ranked, recommended


def margin(ranked: Sequence[dict[str, Any]]) -> str:
    """How far the first candidate leads the second, in words: by the best-layer probe, else by consensus."""
    if len(ranked) < 2:
        return "the only candidate assessed"
    first, second = ranked[0], ranked[1]
    a, b = first.get("probe_accuracy"), second.get("probe_accuracy")
    if a is None or b is None:
        return f"consensus {first['consensus']:.2f} vs {second['consensus']:.2f}"
    spread = math.hypot(first.get("probe_spread") or 0.0, second.get("probe_spread") or 0.0)
    if a - b > spread:
        verdict = "a clear lead"
    elif b - a > spread:
        verdict = f"{second['model']} probes better by {b - a:.3f}; the other scores and the prior put it second"
    else:
        verdict = "within the fold-to-fold spread: treat the top two as tied"
    return f"best-layer probe {a:.3f} vs {b:.3f} for {second['model']}, {verdict}"


def caveats(ranked: Sequence[dict[str, Any]], docs: Sequence[dict[str, Any]]) -> list[str]:
    """Warnings for the summary: the top candidate's data-ratio flags and input adaptations; what the budget left."""
    caveats: list[str] = []
    if ranked:
        top = ranked[0]
        caveats.extend(
            f"{top['model']}: {flag}" for flag in top["data_ratio"]["flags"] if flag != "source size unknown"
        )
        caveats.extend(f"{top['model']}: input {a}" for a in top["input_check"]["adaptations"])
        pretraining = set(top.get("pretraining") or [])
        if top["input_check"]["adaptations"] and pretraining:
            caveats.append(
                f"domain mismatch likely: {top['model']} was pretrained on {', '.join(sorted(pretraining))}"
                " and the data needed adapting; confirm with 'zooprobe finetune' against --baseline scratch"
            )
    pending = [d["model"] for d in docs if d["status"] == "pending"]
    if pending:
        caveats.append(f"not assessed within the budget: {', '.join(pending)} (resume the run to finish)")
    return caveats
