"""Regenerate ``src/zooprobe/sources/data/timm_snapshot.json.gz``: exact parameter counts per timm architecture.

Building every architecture takes minutes, so the catalog ships this snapshot and computes at
sync time only what it lacks. Models are built on the meta device: no weights are allocated.

    python scripts/build_timm_snapshot.py [--limit N]
"""

from __future__ import annotations

import argparse
import gzip
import json
import sys
import time
from pathlib import Path

OUT = Path(__file__).resolve().parents[1] / "src/zooprobe/sources/data/timm_snapshot.json.gz"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--limit", type=int, default=None)
    args = parser.parse_args()
    sys.path.insert(0, str(OUT.parents[3]))
    import timm

    from zooprobe.sources.timm_source import count_architecture

    archs = sorted({name.split(".")[0] for name in timm.list_pretrained()})[: args.limit]
    started = time.time()
    result: dict[str, object] = {}
    failed: dict[str, str] = {}
    for i, arch in enumerate(archs):
        try:
            result[arch] = count_architecture(arch)
        except Exception as exc:  # noqa: BLE001 - one broken architecture must not stop the snapshot
            failed[arch] = f"{type(exc).__name__}: {exc}"[:300]
        if i % 50 == 0:
            print(f"{i}/{len(archs)} {time.time() - started:.0f}s", file=sys.stderr)
    payload = {"timm_version": timm.__version__, "architectures": result, "failed": failed}
    with gzip.open(OUT, "wt", encoding="utf-8") as fh:
        json.dump(payload, fh, sort_keys=True)
    print(f"{len(result)} architectures, {len(failed)} failed, {time.time() - started:.0f}s -> {OUT}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
