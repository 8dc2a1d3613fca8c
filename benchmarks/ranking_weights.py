"""Fit the consensus weights on bench_ranking.py's saved runs, and judge them on targets not used to fit them.

Reads the ``--save`` files of bench_ranking.py (every target's assessment documents and fine-tuned
truths), so a refit costs no scoring. Each term of the consensus (a metric at the deepest cut point,
or the ImageNet top-1 prior) is z-scored across a target's candidates exactly as
:func:`zooprobe.evaluator.decision.consensus_terms` does; a weighting is a weighted mean of those.

- The grid: the probe's weight fixed at 1 (the consensus is invariant to a common scale), every other
  term at 0, 0.25, 0.5 or 1.
- The objective: mean Kendall tau plus mean weighted tau against the fine-tuned truth, over the tuning
  targets only; ties go to the simpler weighting (fewer non-zero terms, then a smaller total weight).
- Leave one tuning target out: the weights chosen on the other tuning targets, judged on the one left out,
  says how well the fit carries to a target it has not seen; the held-out targets (fashion, digits
  turned) are judged by the weights chosen on all tuning targets, and never choose anything.

    python benchmarks/ranking_weights.py run_A.json run_B.json [--current]
"""

from __future__ import annotations

import argparse
import itertools
import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

PRIOR = "prior_top1"
TERMS = ["logme", "leep", "nce", "knn_accuracy", "hscore", PRIOR]
GRID = (0.0, 0.25, 0.5, 1.0)

Weights = dict[str, float]


def load(paths: Sequence[Path]) -> tuple[dict[str, dict[str, Any]], list[str]]:
    """Every finished target of the ``--save`` files (a target in two files counts once, from the first)."""
    targets: dict[str, dict[str, Any]] = {}
    tuning: list[str] = []
    for path in paths:
        saved = json.loads(path.read_text())
        tuning = tuning or list(saved["run"]["tuning_targets"])
        for name in saved["run"]["finished_targets"]:
            targets.setdefault(name, saved["targets"][name])
    return targets, tuning


def z_scores(docs: Sequence[Mapping[str, Any]]) -> dict[str, dict[str, float]]:
    """``{candidate: {term: z}}`` over every term the consensus could weigh (weight 1 each: z does not depend on it)."""
    from zooprobe.evaluator.decision import MetricRoles, consensus_terms

    roles = MetricRoles(weights={term: 1.0 for term in ["probe_accuracy", *TERMS] if term != PRIOR})
    terms = consensus_terms([dict(d) for d in docs], roles)
    return {model.split(":", 1)[1]: {t: z for t, (z, _) in parts.items()} for model, parts in terms.items()}


def consensus(z: Mapping[str, Mapping[str, float]], weights: Mapping[str, float]) -> dict[str, float]:
    """The decision's consensus for ``weights``: the weighted mean of each candidate's z-scores it has."""
    out = {}
    for name, parts in z.items():
        used = {t: w for t, w in weights.items() if w > 0 and t in parts}
        total = sum(used.values())
        out[name] = sum(parts[t] * w for t, w in used.items()) / total if total else 0.0
    return out


def judge(scores: Mapping[str, float], truth: Mapping[str, float]) -> tuple[float, float, float]:
    """(Kendall tau, weighted tau, regret of the top-ranked) of ``scores`` against ``truth``."""
    from scipy.stats import kendalltau, weightedtau

    names = list(truth)
    true = np.array([truth[n] for n in names])
    predicted = np.array([scores.get(n, -np.inf) for n in names])
    chosen = names[int(np.argmax(predicted))]
    tau = float(kendalltau(predicted, true).statistic)
    return tau, float(weightedtau(true, predicted).statistic), float(true.max() - truth[chosen])


def mean_judgement(
    targets: Mapping[str, Mapping[str, Any]], names: Sequence[str], weights: Mapping[str, float]
) -> np.ndarray:
    return np.mean([judge(consensus(targets[t]["z"], weights), targets[t]["truth"]) for t in names], axis=0)


def grid() -> list[Weights]:
    return [{"probe_accuracy": 1.0, **dict(zip(TERMS, values, strict=True))} for values in itertools.product(
        GRID, repeat=len(TERMS)
    )]  # fmt: skip


def best(targets: Mapping[str, Mapping[str, Any]], names: Sequence[str], candidates: list[Weights]) -> Weights:
    """The weighting with the highest mean tau + weighted tau on ``names``; ties to the simpler one."""

    def key(w: Weights) -> tuple[float, int, float]:
        tau, wtau, _ = mean_judgement(targets, names, w)
        return (round(float(tau + wtau), 6), -sum(v > 0 for v in w.values()), -sum(w.values()))

    return max(candidates, key=key)


def single(targets: Mapping[str, Mapping[str, Any]], score: str, names: Sequence[str]) -> np.ndarray:
    """Mean (tau, weighted tau, regret) of one raw score as the benchmark computed it."""
    return np.mean([targets[t]["ranking"][score] for t in names], axis=0)


def label(w: Mapping[str, float]) -> str:
    return ", ".join(f"{t} {v:g}" for t, v in w.items() if v > 0)


# the weights before the refit on the 13-candidate zoo (chosen on the 7-candidate one)
BEFORE: Weights = {"probe_accuracy": 1.0, "logme": 1.0, "nce": 0.5, "leep": 0.5, PRIOR: 0.5}


def shipped() -> Weights:
    """The weights zooprobe ships: the metrics' declared ``weight`` and the decision's ``PRIOR_WEIGHT``."""
    from zooprobe.evaluator.decision import PRIOR_WEIGHT, MetricRoles

    return {**MetricRoles.registered().weights, PRIOR: PRIOR_WEIGHT}


def table(targets: Mapping[str, Mapping[str, Any]], tuning: Sequence[str], held: Sequence[str], rows: Any) -> None:
    """Mean tau, weighted tau and regret on the tuning and the held-out targets, one row per weighting or score."""
    groups = [(g, names) for g, names in (("tuning", tuning), ("held-out", held)) if names]
    print(f"\n  {'score':<34}" + "".join(f"{g + ': tau':>15}{'w.tau':>7}{'regret':>8}" for g, _ in groups))
    for name, how in rows:
        cells = []
        for _, names in groups:
            v = mean_judgement(targets, names, how) if isinstance(how, dict) else single(targets, how, names)
            cells.append(f"{v[0]:15.3f}{v[1]:7.3f}{v[2]:8.3f}")
        print(f"  {name:<34}" + "".join(cells))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("saved", type=Path, nargs="+", help="bench_ranking.py --save files")
    args = parser.parse_args()
    targets, tuning = load(args.saved)
    tuning = [t for t in tuning if t in targets]
    held = [t for t in targets if t not in tuning]
    for doc in targets.values():
        doc["z"] = z_scores(doc["assessment"])
    candidates = grid()
    print(f"tuning targets: {', '.join(tuning)}; held out: {', '.join(held) or 'none'}; {len(candidates)} weightings")
    print("\nleave one tuning target out: weights chosen on the others, judged on the one left out")
    loto = []
    for target in tuning:
        chosen = best(targets, [t for t in tuning if t != target], candidates)
        row = mean_judgement(targets, [target], chosen)
        loto.append(row)
        probe = single(targets, "probe_accuracy", [target])
        print(f"  {target:<14} tau {row[0]:6.3f} w.tau {row[1]:6.3f} regret {row[2]:.3f}"
              f" (probe alone {probe[0]:6.3f} {probe[1]:6.3f} {probe[2]:.3f})  weights: {label(chosen)}")  # fmt: skip
    mean, probe = np.mean(loto, axis=0), single(targets, "probe_accuracy", tuning)
    print(f"  {'mean':<14} tau {mean[0]:6.3f} w.tau {mean[1]:6.3f} regret {mean[2]:.3f}"
          f" (probe alone {probe[0]:6.3f} {probe[1]:6.3f} {probe[2]:.3f})")  # fmt: skip
    verdict = "beats" if mean[0] + mean[1] > probe[0] + probe[1] else "does not beat"
    print(f"  a fitted weighting {verdict} the probe alone on the tuning target it was not fitted on")
    fitted = best(targets, tuning, candidates)
    rows: list[tuple[str, Any]] = [
        ("consensus, weights before the refit", BEFORE),
        ("consensus, grid fit on tuning", fitted),
        ("consensus, shipped weights", shipped()),
    ]
    rows += [(score, score) for score in ("probe_accuracy", "logme", "leep", "nce", "knn_accuracy", "hscore")]
    rows.append(("imagenet_top1 (the prior alone)", "imagenet_top1"))
    print(f"\ngrid fit on all tuning targets: {label(fitted)}; shipped: {label(shipped())}")
    table(targets, tuning, held, rows)


if __name__ == "__main__":
    main()
