"""How reports word what a fine-tuning run's arm reached: an ``as-is`` arm trains nothing, so it is "used as
is", not "fine-tuned"; a trained arm reached its accuracy after so many epochs."""

from __future__ import annotations

from .achieved import kept_note
from .model import Arm, FinetuneComparison

AS_IS = "as-is"


def _epochs(count: int) -> str:
    return f"{count} epoch" if count == 1 else f"{count} epochs"


def arm_sentence(tune: FinetuneComparison, arm: Arm, scratch: Arm | None) -> str:
    """What the run's strategy arm reached and, with a scratch baseline, what scratch reached and the gain,
    e.g. "fine-tuning M with 'head' reached 0.813 validation accuracy after 3 epochs (checkpoint kept: ...);
    trained from scratch, the same architecture reached 0.200 (...): +0.613 from pretraining"."""
    assert arm.achieved is not None
    if arm.name == AS_IS:
        method = next((str(r.extra["method"]) for r in arm.epochs if r.extra.get("method")), None)
        method = "its own classification head" if method == "source head" else method
        how = f"{method}; nothing trained" if method else "nothing trained"
        line = f"{tune.model} used as is ({how}) reached {arm.achieved:.3f} validation accuracy"
    else:
        line = f"fine-tuning {tune.model} with '{arm.name}' reached {arm.achieved:.3f} validation accuracy"
        trained = [r for r in arm.epochs if r.epoch > 0]
        line += f" after {_epochs(len(trained))}" if trained else ""
    line += kept_note(arm)
    if scratch is not None and scratch.achieved is not None and tune.gain_over_scratch is not None:
        line += (
            f"; trained from scratch, the same architecture reached {scratch.achieved:.3f}{kept_note(scratch)}:"
            f" {tune.gain_over_scratch:+.3f} from pretraining"
        )
    return line


def reached(arm: str | None) -> str:
    """The subject and verb before an arm's accuracy: "used as is, it reached" or "fine-tuning reached"."""
    return "used as is, it reached" if arm == AS_IS else "fine-tuning reached"


def budget_note(arm: str, train_examples: int | None, epochs: int | None) -> str:
    """Why an arm fell short of the assessment's estimate: what it had, against the whole data the probe saw."""
    budget = f"{train_examples} training examples" if train_examples else "its training split"
    if arm == AS_IS:
        return f" (its class means came from {budget}, nothing trained; the assessment's folds saw the whole data)"
    return f" (fine-tuning had {budget} and {epochs or '?'} epochs; the probe saw the whole data)"
