"""Two processes extracting the same features at once: one computes, the other waits and reads its file."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

from zooprobe.backbones.feature_lock import lock_path

REPO = Path(__file__).resolve().parent.parent

# Extracts the toy CNN's last cut point of 40 fixed images into CACHE, counting forward passes into OUT.
# With a GATE file named, the first forward pass says it has started (touches STARTED) and then waits
# for GATE: the extraction is then surely in progress, holding its lock, when the other process starts.
SCRIPT = """
import json, sys, time
from pathlib import Path
import numpy as np
sys.path.insert(0, sys.argv[5])
from tests.toy_backbone import toy_cnn, toy_entry
from zooprobe.backbones.features import extract_features
from zooprobe.data.datasets import Dataset

cache, out, gate, started = (Path(a) for a in sys.argv[1:5])
rng = np.random.default_rng(0)
images = [rng.integers(0, 255, (16, 16, 3), dtype=np.uint8) for _ in range(40)]
dataset = Dataset(name="shared", modality="image", labels=np.array([0, 1] * 20), classes=("a", "b"),
                  arrays=tuple(images), shapes=tuple(i.shape for i in images))
backbone = toy_cnn(toy_entry("net"))
real_extract, passes = backbone.extract, []

def counting(batch, layers):
    passes.append(len(batch))
    if gate.name != "-":
        started.touch()
        while not gate.exists():
            time.sleep(0.05)
    return real_extract(batch, layers)

backbone.extract = counting
layer = backbone.cut_points[-1]
features = extract_features(backbone, dataset, [layer], batch_size=8, cache_dir=cache, progress=False,
                            num_workers=0, device="cpu")
out.write_text(json.dumps({"passes": len(passes), "features": np.asarray(features[layer]).tolist()}))
"""


def _start(tmp_path: Path, name: str, gate: str) -> subprocess.Popen[str]:
    script = tmp_path / "extract.py"
    script.write_text(SCRIPT)
    args = [str(tmp_path / "cache"), str(tmp_path / f"{name}.json"), gate, str(tmp_path / "started"), str(REPO)]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO / "src"), os.environ.get("PYTHONPATH", "")])}
    return subprocess.Popen(
        [sys.executable, str(script), *args], stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True, env=env
    )


def _wait_started(tmp_path: Path, process: subprocess.Popen[str]) -> None:
    while not (tmp_path / "started").exists():
        assert process.poll() is None, process.stderr.read() if process.stderr else ""
        time.sleep(0.05)


def test_the_second_process_waits_and_reads_the_first_ones_file(tmp_path: Path) -> None:
    first = _start(tmp_path, "first", str(tmp_path / "go"))
    _wait_started(tmp_path, first)
    second = _start(tmp_path, "second", "-")
    assert second.stderr is not None
    waited = second.stderr.readline()  # blocks until the second process says it waits (or ends)
    assert f"waiting for process {first.pid}" in waited, waited + second.stderr.read()
    (tmp_path / "go").touch()
    assert first.wait() == 0 and second.wait() == 0
    one, two = (json.loads((tmp_path / f"{name}.json").read_text()) for name in ("first", "second"))
    assert one["passes"] == 5 and two["passes"] == 0  # 40 images in batches of 8, computed once
    assert one["features"] == two["features"]
    assert not list((tmp_path / "cache").glob("*.lock"))


def test_a_killed_holders_lock_is_broken(tmp_path: Path) -> None:
    first = _start(tmp_path, "first", str(tmp_path / "go"))
    _wait_started(tmp_path, first)
    first.kill()  # SIGKILL: its lock stays behind
    first.wait()
    (lock,) = (tmp_path / "cache").glob("*.lock")
    assert lock.read_text().split()[0] == str(first.pid)
    second = _start(tmp_path, "second", "-")
    _, err = second.communicate()
    assert second.returncode == 0, err
    assert json.loads((tmp_path / "second.json").read_text())["passes"] == 5
    assert "waiting" not in err and not lock.exists()
    assert lock_path(tmp_path / "x.npy").name == "x.lock"
