"""Regenerate ``src/zooprobe/sources/data/keras_snapshot.json``: input shape, params and feature
dimension of every Keras application, built with ``weights=None`` on the torch backend (~1 min).

    python scripts/build_keras_snapshot.py
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

OUT = Path(__file__).resolve().parents[1] / "src/zooprobe/sources/data/keras_snapshot.json"


def main() -> int:
    os.environ.setdefault("KERAS_BACKEND", "torch")
    sys.path.insert(0, str(OUT.parents[3]))
    import keras

    from zooprobe.sources.keras_source import application_functions, count_application

    started = time.time()
    apps: dict[str, object] = {}
    failed: dict[str, str] = {}
    for name in sorted(application_functions()):
        try:
            apps[name] = count_application(name)
        except Exception as exc:  # noqa: BLE001 - NASNetMobile fails on the torch backend
            failed[name] = f"{type(exc).__name__}: {exc}"[:300]
        keras.backend.clear_session()
    payload = {"keras_version": keras.__version__, "applications": apps, "failed": failed}
    OUT.write_text(json.dumps(payload, indent=1, sort_keys=True) + "\n", encoding="utf-8")
    print(f"{len(apps)} applications, {len(failed)} failed, {time.time() - started:.0f}s -> {OUT}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
