"""The files a run's dataset dropped (``on_error='skip'``, duplicates dropped): a typed record kept in the
run's config, so that every report lists them.

At most :data:`LISTED` files are kept, each with its one-line reason; ``count`` is the number dropped.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

# files listed per run; the rest are counted
LISTED = 50
CONFIG_KEY = "skipped_files"


@dataclass(frozen=True)
class SkippedFiles:
    """``count`` files dropped while reading the data, the first :data:`LISTED` as (path, reason)."""

    count: int = 0
    files: tuple[tuple[str, str], ...] = ()

    @classmethod
    def of(cls, skipped: Iterable[tuple[str, str]]) -> SkippedFiles:
        every = [(str(path), " ".join(str(reason).split())) for path, reason in skipped]
        return cls(len(every), tuple(every[:LISTED]))

    @property
    def unlisted(self) -> int:
        """How many were dropped beyond those listed."""
        return self.count - len(self.files)

    def to_json(self) -> dict[str, Any]:
        return {"count": self.count, "files": [[path, reason] for path, reason in self.files]}

    @classmethod
    def from_json(cls, doc: Mapping[str, Any] | None) -> SkippedFiles:
        if not isinstance(doc, Mapping):
            return cls()
        files = tuple((str(item[0]), str(item[1])) for item in doc.get("files") or [] if len(item) == 2)
        return cls(int(doc.get("count") or len(files)), files)


def record_skipped(config: dict[str, Any], skipped: Iterable[tuple[str, str]]) -> None:
    """Put the dropped files into a new run's ``config`` (nothing when none were dropped: configs of runs
    without any keep the shape that unfinished earlier runs are matched by)."""
    record = SkippedFiles.of(skipped)
    if record.count:
        config[CONFIG_KEY] = record.to_json()


def skipped_of(config: Mapping[str, Any]) -> SkippedFiles:
    """The dropped files a run's config records (none for runs that dropped none, or from before this record)."""
    return SkippedFiles.from_json(config.get(CONFIG_KEY))
