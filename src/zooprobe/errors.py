"""Errors shown to users: each says what was wrong, quotes the value, lists choices and the fix."""

from __future__ import annotations

import difflib
from collections.abc import Iterable


def first_line(exc: BaseException) -> str:
    """The first line of an exception's message, or its type's name when it has none: one-line reports."""
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0]


class ZooprobeError(Exception):
    """Base class for errors meant for the user (the CLI prints them on one line, exit code 2)."""


class UnknownEntryError(ZooprobeError, LookupError):
    """An id that is not in the catalog."""

    def __init__(
        self, entry_id: str, candidates: Iterable[str] = (), fix: str = "list ids with 'zooprobe search'"
    ) -> None:
        self.entry_id = entry_id
        close = difflib.get_close_matches(entry_id, list(candidates), n=3, cutoff=0.6)
        hint = f"; did you mean {', '.join(repr(c) for c in close)}?" if close else ""
        super().__init__(f"unknown catalog id '{entry_id}'{hint} ({fix})")


class InvalidChoiceError(ZooprobeError, ValueError):
    """A value outside a fixed set of choices."""

    def __init__(self, what: str, value: str, choices: Iterable[str], fix: str = "") -> None:
        choices = list(choices)
        close = difflib.get_close_matches(value, choices, n=3, cutoff=0.5)
        hint = f"; did you mean {', '.join(repr(c) for c in close)}?" if close else ""
        tail = f"; {fix}" if fix else ""
        super().__init__(f"unknown {what} '{value}'{hint} (valid: {', '.join(choices)}){tail}")
        self.value = value
        self.choices = choices


class InvalidIdError(ZooprobeError, ValueError):
    """A catalog id that is not of the form ``source:name``; suggests ids that look like what was typed."""

    def __init__(self, entry_id: str, suggestions: Iterable[str] = ()) -> None:
        self.entry_id = entry_id
        self.suggestions = list(suggestions)
        hint = f"; did you mean {', '.join(repr(s) for s in self.suggestions)}?" if self.suggestions else ""
        super().__init__(
            f"'{entry_id}' is not a catalog id; ids look like 'source:name', e.g. 'timm:resnet50.a1_in1k'{hint}"
            " (list ids with 'zooprobe search')"
        )


class InvalidEntryError(ZooprobeError, ValueError):
    """A catalog entry a source built with a field of the wrong kind; names the entry and the field."""

    def __init__(self, entry_id: str, field: str, value: object, expected: str) -> None:
        super().__init__(f"entry '{entry_id}': {field} is {value!r}, expected {expected}; fix the source that built it")


class MixedUnitsError(ZooprobeError, ValueError):
    """Numbers in different units asked to be ordered together (zooprobe never converts units)."""


class StoreError(ZooprobeError):
    """The catalog database cannot be used as it is (corrupt, or written by a newer zooprobe)."""


class SourceUnavailableError(ZooprobeError):
    """A source needs a package that is not installed; the message names the pip extra."""
