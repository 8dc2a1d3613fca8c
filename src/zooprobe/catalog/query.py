"""The search filters, once: their names, types and help, and a parser for a search command line.

``zooprobe search`` builds its options from :data:`FILTERS`, and ``zooprobe assess --query`` parses
its text with :func:`parse_search_words`, so both take the same words with the same meaning.
"""

from __future__ import annotations

import shlex
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from ..errors import ZooprobeError
from .schema import MODALITIES
from .store import SORT_FIELDS, Query, sort_field
from .units import parse_count


class QuerySyntaxError(ZooprobeError, ValueError):
    """A search command line that cannot be parsed (unknown option, missing or bad value, quotes)."""


@dataclass(frozen=True)
class Filter:
    """One search filter: ``--option VALUE`` sets the :class:`Query` field ``field``."""

    option: str
    field: str
    help: str
    metavar: str = "TEXT"
    convert: Callable[[str], Any] = str
    choices: tuple[str, ...] = ()


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise ValueError(f"{value} is below 1")
    return value


FILTERS: tuple[Filter, ...] = (
    Filter("--source", "source", "Only entries of this source (timm, torchvision, keras, ...)."),
    Filter("--task", "task", "Only entries for this task, e.g. image-classification."),
    Filter("--modality", "modality", "Only this input modality.", "MODALITY", choices=MODALITIES),
    Filter("--framework", "framework", "Only this framework: pytorch, keras, ..."),
    Filter("--arch", "arch", "Architecture name glob, e.g. 'resnet*'.", "GLOB"),
    Filter("--min-params", "min_params", "At least N parameters (25M, 1.2B, 300K).", "N", parse_count),
    Filter("--max-params", "max_params", "At most N parameters (25M, 1.2B, 300K).", "N", parse_count),
    Filter("--max-gmacs", "max_gmacs", "At most G GMACs (entries whose source reports GMACs).", "G", float),
    Filter("--min-top1", "min_top1", "At least this ImageNet-1k top-1 (%).", "PCT", float),
    Filter(
        "--pretrain-dataset", "pretrain_dataset", "Pretrained on this dataset, e.g. imagenet-21k, laion-2b.", "NAME"
    ),
    Filter("--license", "license", "Weights license containing TEXT, e.g. apache."),
    Filter("--resolution", "resolution", "Default input resolution equal to PX.", "PX", int),
    Filter(
        "--sort",
        "sort",
        f"Sort keys, '-' for descending: {', '.join(SORT_FIELDS)}. 'gmacs' orders entries reported in GMACs "
        "(the others last); 'compute' orders the reported number in its own unit, one unit at a time.",
        "FIELD[,FIELD]",
        lambda text: sort_keys(text),
    ),
)
_BY_OPTION = {f.option: f for f in FILTERS}


def sort_keys(text: str | None) -> tuple[str, ...]:
    """The keys of a ``--sort`` value (``-top1,params``), each checked against the sortable fields."""
    keys = tuple(k.strip() for k in text.split(",") if k.strip()) if text else ()
    for key in keys:
        sort_field(key)
    return keys


def query_from_values(text: str | None, values: Mapping[str, Any], limit: int | None) -> Query:
    """The :class:`Query` of already converted filter values, keyed by :attr:`Filter.field`."""
    return Query(
        text=text, limit=limit, **{f.field: values[f.field] for f in FILTERS if values.get(f.field) is not None}
    )


def parse_search_words(words: Sequence[str], limit: int | None) -> Query:
    """The :class:`Query` of a ``zooprobe search`` command line split into words (without ``search``).

    :raises QuerySyntaxError: for an unknown option, a missing or invalid value, or several query words.
    """
    text: str | None = None
    values: dict[str, Any] = {}
    items = list(words)
    while items:
        word = items.pop(0)
        if not word.startswith("--"):
            if text is not None:
                raise QuerySyntaxError(f'two query words {text!r} and {word!r}; quote them as one: "{text} {word}"')
            text = word
            continue
        option, has_value, value = word.partition("=")
        spec = _BY_OPTION.get(option)
        if spec is None:
            valid = ", ".join(f.option for f in FILTERS)
            raise QuerySyntaxError(f"unknown option {option!r} (valid: {valid})")
        if not has_value:
            if not items:
                raise QuerySyntaxError(f"option {option} needs a value ({spec.metavar})")
            value = items.pop(0)
        if spec.choices and value not in spec.choices:
            raise QuerySyntaxError(f"{option} {value!r} is not one of {', '.join(spec.choices)}")
        try:
            values[spec.field] = spec.convert(value)
        except (ValueError, ZooprobeError) as exc:
            raise QuerySyntaxError(f"{option} {value!r}: {exc}") from None
    return query_from_values(text, values, limit)


def parse_search_line(line: str, limit: int | None) -> Query:
    """:func:`parse_search_words` of a shell-quoted line (``'mobilenet --max-params 10M --sort=-top1'``)."""
    try:
        words = shlex.split(line)
    except ValueError as exc:  # an unbalanced quote
        raise QuerySyntaxError(f"{exc}; balance the quotes") from None
    return parse_search_words(words, limit)
