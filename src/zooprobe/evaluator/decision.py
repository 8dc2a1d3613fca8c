"""The decision: a strategy per candidate from its layer profile, and the consensus ranking with its reasons.

Which metric leads the layer profile, which one measures the classifier the as-is strategy runs, and
each metric's weight in the consensus are read from the metrics' own declarations
(:class:`MetricRoles`, built from :class:`~zooprobe.plugins.metric.Metric`'s ``role`` and ``weight``);
no metric is named here. The caveats are in :mod:`.caveats`.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from .baseline import negative_transfer
from .checks import AssessError, is_small

if TYPE_CHECKING:
    from ..plugins.metric import Metric

PRIOR = "prior_top1"
# The catalog's ImageNet top-1 is the prior (weighted tau 0.751 among ImageNet models on the standard
# benchmark, above LogME's 0.676), weighed against the metrics' declared weights (see
# zooprobe.evaluator.builtin_metrics); it only orders the candidates that report it. Its weight comes from
# that published evidence, not from benchmarks/bench_ranking.py, which cannot judge it: its ImageNet models,
# fine-tuned 15 steps at 32 px, under-train and rank against their top-1 (tau -0.48 there). The one
# comparison at a real budget agrees with it: on the quickstart's digits (64 px, 3 epochs) EfficientNet-Lite0
# (top-1 75.1) fine-tuned to 0.986 and MobileNetV2 (71.9), ahead on the probe, to 0.944. On the benchmark's
# held-out targets it costs tau 0.40 -> 0.31 against a weight of 0.1, with the same regret.
PRIOR_WEIGHT = 1.0


@dataclass(frozen=True)
class MetricRoles:
    """Which metric plays which part in the decision, and the consensus weights: the metrics' declarations as data.

    Attributes:
        probe: the metric whose value and spread per cut point make the layer profile (``role="probe"``).
        as_is: the metric measuring the as-is strategy's classifier on held-out examples (``role="as-is"``):
            the expected accuracy of that strategy, and matching the probe at the last cut point means "use as is".
        weights: consensus weight of each metric that has one (> 0).
    """

    probe: str | None = None
    as_is: str | None = None
    weights: Mapping[str, float] = field(default_factory=dict)

    @classmethod
    def of(cls, metrics: Iterable[Metric]) -> MetricRoles:
        """The roles the given (chosen) metrics declare.

        :raises AssessError: when two of them take the role ``probe`` or ``as-is``.
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
        return cls(lead.get("probe"), lead.get("as-is"), weights)

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

    - the probe peaks at the last cut point, or the last is within the spread of the peak, and the
      as-is classifier (cosine nearest class mean, on held-out folds) on those frozen final features
      does as well as the probe: (1) use as is — nothing to train.
    - the same profile without that match: the source's final features serve the target; (2) new
      head on the frozen body for a small target, (3) new head and retrain everything otherwise.
    - an earlier cut point beats the last by more than the spread: the later layers are specific to
      the source task; (4) cut at the earliest layer within the spread of the peak, add new layers,
      train those only (small target) or everything.
    - the network's final cut point was not assessed (layers named by hand): (1)-(3) would rest on
      features nobody measured, so (4) at the earliest layer within the spread of the assessed peak.

    The expected accuracy is that of the classifier the strategy trains, measured on held-out
    folds: the as-is metric's for as-is, the linear probe's otherwise (at the layer the new head
    reads), ± its spread over folds there.
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
    as_is_last = (doc.get("as_is_by_layer") or {}).get(last["layer"])

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
    probe_last = f"{last['probe_accuracy']:.3f} ± {last['probe_spread']:.3f}"
    if as_is_last is not None and last_serves:
        as_is, as_is_spread = float(as_is_last["accuracy"]), float(as_is_last["spread"])
        held_out = f"nearest class mean on the frozen features at {last['layer']}, the classifier the as-is"
        held_out += f" strategy runs, reaches {as_is:.3f} ± {as_is_spread:.3f} on held-out folds"
        if as_is >= last["probe_accuracy"] - max(noise, as_is_spread):
            return rec(
                "as-is",
                None,
                None,
                "as-is",
                as_is,
                as_is_spread,
                f"{held_out[0].upper()}{held_out[1:]}, as good as a trained linear probe ({probe_last}):"
                " training a head buys nothing measurable.",
            )
        trained = f"; {held_out}, so a trained head adds {last['probe_accuracy'] - as_is:.3f}"
    else:
        trained = ""
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
                f"{peak[0].upper()}{peak[1:]}{trained}: the source's final features serve this task, and with"
                f" {size} a new head on the frozen body is the safe start.",
            )
        return rec(
            "full",
            None,
            "all",
            "full",
            last["probe_accuracy"],
            last["probe_spread"],
            f"{peak[0].upper()}{peak[1:]}{trained}; with {size} there is enough data to retrain everything, which"
            " usually adds to the probe's accuracy (expected accuracy is the probe's, a lower bound).",
        )
    plateau = next(p for p in profile if p["probe_accuracy"] >= best["probe_accuracy"] - noise)
    train = "new" if small else "all"
    width = 256
    reached = f"Probe accuracy peaks at {best['layer']} ({best['probe_accuracy']:.3f} ± {best['probe_spread']:.3f})" + (
        f", reached within the spread by {plateau['layer']}" if plateau is not best else ""
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
        f"{why}; cut at {plateau['layer']}, add new layers and train {'only those' if small else 'everything'},"
        f" with {size}.",
    )


def consensus_terms(
    docs: Sequence[dict[str, Any]], roles: MetricRoles | None = None
) -> dict[str, dict[str, tuple[float, float]]]:
    """Each candidate's consensus terms: ``{model: {term: (z-score across candidates, weight)}}``.

    A term is a metric with a consensus weight (``roles``: by default those of every registered
    metric) or the prior (:data:`PRIOR`, weight :data:`PRIOR_WEIGHT`), kept where at least two
    candidates have it; see :func:`consensus`.
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
    terms: dict[str, dict[str, tuple[float, float]]] = {doc["model"]: {} for doc in docs}
    for metric, values in columns.items():
        if len(values) < 2:
            continue
        array = np.array(list(values.values()))
        spread = array.std() or 1.0
        for model, value in values.items():
            terms[model][metric] = (float((value - array.mean()) / spread), weights[metric])
    return terms


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
    return {
        model: (sum(z * w for z, w in parts.values()) / sum(w for _, w in parts.values())) if parts else 0.0
        for model, parts in consensus_terms(docs, roles).items()
    }


def rank(
    docs: Sequence[dict[str, Any]], roles: MetricRoles | None = None, baseline: dict[str, Any] | None = None
) -> tuple[list[dict[str, Any]], dict[str, Any] | None]:
    """Rank the assessed ``docs`` by :func:`consensus`, filling each one's ``consensus``, ``consensus_terms``
    (z-score per term), ``rank`` and ``recommendation``; with the recommended candidate's summary (``None``
    when there is none). With a raw-feature ``baseline`` (:func:`~zooprobe.evaluator.raw_baseline.baseline_summary`)
    that no candidate beats, the summary says so first and carries ``negative_transfer``."""
    from .interval import attach, shipped

    assessed = [d for d in docs if d["status"] == "done"]
    terms = consensus_terms(assessed, roles)
    scores = consensus(assessed, roles)
    ranked = sorted(assessed, key=lambda d: -scores[d["model"]])
    for position, doc in enumerate(ranked, start=1):
        doc["consensus"] = scores[doc["model"]]
        doc["consensus_terms"] = {term: z for term, (z, _) in terms[doc["model"]].items()}
        doc["rank"] = position
        doc["recommendation"] = recommend(doc)
        attach(doc["recommendation"], (doc.get("data_ratio") or {}).get("target_examples"), shipped())
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
            "evidence": f"{why_first(ranked, roles)}. {rec['evidence']}",
            "negative_transfer": False,
        }
        recommended |= {k: v for k, v in rec.items() if k.startswith("interval_")}
        verdict = negative_transfer(ranked, baseline)
        if verdict:
            recommended["negative_transfer"] = True
            recommended["evidence"] = (
                f"Pretraining buys nothing measurable here: {verdict}; train a small model from scratch. If a"
                f" pretrained backbone is still wanted: {recommended['evidence']}"
            )
    return ranked, recommended


# z-scores closer than this count as a tie in the reason for a rank (a quarter of the candidates' spread)
TIED_Z = 0.25


def why_first(ranked: Sequence[dict[str, Any]], roles: MetricRoles | None = None) -> str:
    """Why the first candidate ranks first, in one sentence: the consensus terms it leads the second on,
    those tied (the probe: within the fold-to-fold spread at the last cut point) and those it trails on,
    largest weighted difference first (when it leads on none by more than a tie, the tied terms it edges decided:
    "narrowly on the probe"); and the best-layer probe when that would have put the second first."""
    first = ranked[0]
    if len(ranked) < 2:
        return f"{first['model']} is the only candidate assessed"
    second = ranked[1]
    probe = roles.probe if roles else None
    mine, theirs = first.get("consensus_terms") or {}, second.get("consensus_terms") or {}
    weights = {**(roles or MetricRoles.registered()).weights, PRIOR: PRIOR_WEIGHT}
    shared = sorted(
        (term for term in mine if term in theirs), key=lambda t: -weights.get(t, 0.0) * (mine[t] - theirs[t])
    )
    ahead: list[str] = []
    tied: list[str] = []
    behind: list[str] = []
    labels = ["the ImageNet top-1 prior" if t == PRIOR else "the probe" if t == probe else t for t in shared]
    for term, label in zip(shared, labels, strict=True):
        if term == probe and _probes_tie(first, second):
            tied.append(label)
        elif abs(mine[term] - theirs[term]) < TIED_Z:
            tied.append(label)
        else:
            (ahead if mine[term] > theirs[term] else behind).append(label)
    # nothing apart: the tied terms it edges, heaviest first, decided
    edged = [label for term, label in zip(shared, labels, strict=True) if label in tied and mine[term] > theirs[term]]
    if not ahead and edged:
        tied = [label for label in tied if label not in edged]
    lead = (
        f"on {_and(ahead)}" if ahead else f"narrowly on {_and(edged)}" if edged else "on small differences that add up"
    )
    sentence = (
        f"{first['model']} ranks first of {len(ranked)} {lead} (consensus {first['consensus']:+.2f} vs"
        f" {second['consensus']:+.2f} for {second['model']})"
    )
    if tied:
        sentence += f"; tied on {_and(tied)}"
    if behind:
        sentence += f"; {second['model']} leads on {_and(behind)}"
    a, b = first.get("probe_accuracy"), second.get("probe_accuracy")
    spread = math.hypot(first.get("probe_spread") or 0.0, second.get("probe_spread") or 0.0)
    if a is not None and b is not None and b - a > spread:
        sentence += (
            f"; {second['model']} probes better at its best layer ({b:.3f} vs {a:.3f}), which the ranking does not"
            " read: it scores the deepest cut point, where a new head goes"
        )
    return sentence


def _probes_tie(first: dict[str, Any], second: dict[str, Any]) -> bool:
    """Whether the two candidates' probes at their deepest assessed cut point are within the fold spread."""
    a, b = ((doc.get("layer_profile") or [None])[-1] for doc in (first, second))
    if not a or not b:
        return False
    spread = math.hypot(a["probe_spread"], b["probe_spread"])
    return bool(abs(a["probe_accuracy"] - b["probe_accuracy"]) <= spread)


def _and(items: Sequence[str]) -> str:
    return items[0] if len(items) == 1 else f"{', '.join(items[:-1])} and {items[-1]}"
