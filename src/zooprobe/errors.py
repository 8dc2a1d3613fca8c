"""Errors shown to users: each says what was wrong, quotes the value, lists choices and the fix."""

from __future__ import annotations

import difflib
from collections.abc import Iterable


class ZooprobeError(Exception):
    """Base class for errors meant for the user (the CLI prints them on one line, exit code 2)."""


class UnknownEntryError(ZooprobeError, LookupError):
    """An id that is not in the catalog."""

    def __init__(self, entry_id: str, candidates: Iterable[str] = ()) -> None:
        self.entry_id = entry_id
        close = difflib.get_close_matches(entry_id, list(candidates), n=3, cutoff=0.6)
        hint = f"; did you mean {', '.join(repr(c) for c in close)}?" if close else ""
        super().__init__(f"unknown catalog id '{entry_id}'{hint} (list ids with 'zooprobe search')")


class InvalidChoiceError(ZooprobeError, ValueError):
    """A value outside a fixed set of choices."""

    def __init__(self, what: str, value: str, choices: Iterable[str]) -> None:
        choices = list(choices)
        close = difflib.get_close_matches(value, choices, n=3, cutoff=0.5)
        hint = f"; did you mean {', '.join(repr(c) for c in close)}?" if close else ""
        super().__init__(f"unknown {what} '{value}'{hint} (valid: {', '.join(choices)})")
        self.value = value
        self.choices = choices


class StoreError(ZooprobeError):
    """The catalog database cannot be used as it is (corrupt, or written by a newer zooprobe)."""


class SourceUnavailableError(ZooprobeError):
    """A source needs a package that is not installed; the message names the pip extra."""
