"""Reports that say what this run measured: the scratch baseline that predicted one class, the accuracy of
the checkpoint kept, the assessment a ``--data`` report decides by, and the scores the ranking used."""

from __future__ import annotations

import json
from typing import Any

import pytest

from zooprobe.runs.store import RunStore

from .test_reports import DATA, add_assessment, add_finetune, run_cli, store  # noqa: F401  (store: a fixture)

# a scratch arm that predicted one class: 0.5 on two balanced classes
ONE_CLASS = [(0.41, 1.7, 0.5), (0.12, 2.4, 0.5), (0.03, 3.1, 0.5)]


def _caveats(*run_ids: str) -> list[str]:
    code, out = run_cli("report", *run_ids, "--format", "json")
    assert code == 0, out
    (decision,) = json.loads(out)["decisions"]
    caveats: list[str] = decision["caveats"]
    return caveats


@pytest.mark.parametrize(
    ("extra", "expected"),
    [
        ({"top_class_share": 1.0, "precise_bn_examples": 160}, "recomputed on 160 training examples (precise BN)"),
        ({"top_class_share": 0.97}, "precise BN was not applied"),
        ({"top_class_share": 1.0, "precise_bn_examples": 0}, "could not be recomputed"),
    ],
)
def test_a_one_class_scratch_arm_is_a_caveat_on_the_gain(
    store: RunStore,  # noqa: F811
    extra: dict[str, Any],
    expected: str,
) -> None:
    assess_id = add_assessment(store)
    tune = add_finetune(store, assess_id, scratch_epochs=ONE_CLASS, scratch_extra=extra)
    (caveat,) = [c for c in _caveats(assess_id, tune) if "one class" in c]
    assert f"the scratch baseline of run {tune} predicted one class for" in caveat
    assert "(epoch 3)" in caveat and expected in caveat


def test_no_one_class_caveat_for_a_scratch_arm_that_spreads_its_predictions(store: RunStore) -> None:  # noqa: F811
    assess_id = add_assessment(store)
    spread = add_finetune(store, assess_id, scratch_extra={"top_class_share": 0.6, "precise_bn_examples": 160})
    unrecorded = add_finetune(store, assess_id, scratch_epochs=ONE_CLASS)  # a run before the share was recorded
    for tune in (spread, unrecorded):
        assert not any("one class" in caveat for caveat in _caveats(assess_id, tune))
