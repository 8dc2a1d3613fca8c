"""glibc's allocator keeps a batch's working memory: what changes, and when zooprobe leaves it alone.

Each case runs in a fresh interpreter: the setting is the process's, and the test process keeps its own.
"""

from __future__ import annotations

import os
import platform
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="glibc's allocator only")

CHURN = """
import resource, sys
import numpy as np
from zooprobe.allocator import keep_working_memory
print(keep_working_memory())
def rounds(n):
    for _ in range(n):
        blocks = [np.ones(20 * 2**20 // 8) for _ in range(3)]  # three 20 MB blocks, as a batch's activations
        del blocks
rounds(2)  # glibc's thresholds settle
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
rounds(10)
print(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
"""


def churn(**environment: str) -> tuple[bool, int]:
    """(whether zooprobe set the thresholds, minor page faults of 10 rounds of 60 MB freed and allocated again)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("MALLOC_") and k != "ZOOPROBE_KEEP_MEMORY"}
    done = subprocess.run(
        [sys.executable, "-c", CHURN], env={**env, **environment}, capture_output=True, text=True, check=True
    )
    kept, faults = done.stdout.split()
    return kept == "True", int(faults)


def test_kept_memory_is_not_faulted_in_again_each_batch() -> None:
    kept, faults = churn()
    assert kept and faults < 500
    # glibc's own thresholds trim the heap after each round, and the next one faults it in again
    # (about 1,000 faults a round here, fewer than 4 KB pages: the kernel maps some in larger pieces)
    _, faults = churn(ZOOPROBE_KEEP_MEMORY="0")
    assert faults > 10 * 500


def test_the_users_own_choice_is_left_alone() -> None:
    assert churn(MALLOC_TRIM_THRESHOLD_="131072")[0] is False
    assert churn(MALLOC_MMAP_THRESHOLD_="131072")[0] is False
    assert churn(ZOOPROBE_KEEP_MEMORY="0")[0] is False


def test_the_commands_that_run_networks_keep_it(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from click.testing import CliRunner

    from zooprobe import allocator
    from zooprobe.cli import cli

    # as if already decided (opted out): the commands must ask, and this test process keeps glibc's own
    monkeypatch.setattr(allocator, "_kept", False)
    calls: list[str] = []
    original = allocator.keep_working_memory

    def recorded() -> bool:
        calls.append("called")
        return original()

    monkeypatch.setattr(allocator, "keep_working_memory", recorded)
    (tmp_path / "file").write_text("")
    # each fails on its input at once (exit 2), after the command has started
    for command in (["assess"], ["finetune"], ["quickstart", "--out", str(tmp_path / "file" / "reports")]):
        assert CliRunner().invoke(cli, command).exit_code == 2
    assert len(calls) == 3
