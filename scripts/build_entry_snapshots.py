"""Regenerate ``src/zooprobe/sources/data/entries_<source>.json.gz``: every entry a built-in source
yields from the installed package, listed by a sync on a machine where that package is missing.

Run it after upgrading torchvision, timm or keras, or after changing how a source builds entries
(``tests/test_offline.py`` fails while a snapshot differs from the live listing of the same version).

    KERAS_BACKEND=torch python scripts/build_entry_snapshots.py [--source torchvision ...]
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

DATA = Path(__file__).resolve().parents[1] / "src/zooprobe/sources/data"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--source", action="append", help="Only this built-in source (repeatable) [default: all].")
    args = parser.parse_args()
    os.environ.setdefault("KERAS_BACKEND", "torch")
    sys.path.insert(0, str(DATA.parents[2]))
    from zooprobe.plugins.entry_snapshot import EntrySnapshot, snapshot_file, write_entry_snapshot
    from zooprobe.plugins.manager import get_plugin_manager, get_sources

    sources = [s for s in get_sources(get_plugin_manager(load_entrypoints=False)).values() if s.ships_snapshot]
    for source in sources:
        if args.source and source.name not in args.source:
            continue
        source.require()
        started = time.time()
        version = source.package_version()
        assert source.package is not None and version is not None, source
        snapshot = EntrySnapshot(source.name, source.package, version, tuple(source.entries()))
        out = DATA / snapshot_file(source.name)
        write_entry_snapshot(out, snapshot)
        print(f"{source.name} {version}: {len(snapshot.entries)} entries, {time.time() - started:.0f}s -> {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
