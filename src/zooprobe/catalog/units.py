"""Human units for counts: ``25M``, ``1.2B``, ``4.1G``."""

from __future__ import annotations

from ..errors import ZooprobeError

_SUFFIXES = {"": 1, "K": 10**3, "M": 10**6, "G": 10**9, "B": 10**9, "T": 10**12}


def parse_count(text: str) -> float:
    """Parse ``25M`` -> 25e6, ``1.2B`` -> 1.2e9, ``300k`` -> 3e5, ``42`` -> 42.

    :raises ZooprobeError: naming the value and the accepted suffixes.
    """
    raw = text.strip().replace(",", "").replace("_", "")
    suffix = raw[-1:].upper() if raw[-1:].isalpha() else ""
    number = raw[:-1] if suffix else raw
    try:
        if suffix not in _SUFFIXES:
            raise ValueError
        return float(number) * _SUFFIXES[suffix]
    except ValueError:
        raise ZooprobeError(
            f"cannot read '{text}' as a count; write a number with an optional suffix K, M, B/G or T, e.g. 25M"
        ) from None


def format_count(value: float | None, digits: int = 1) -> str:
    """``25_557_032`` -> ``25.6M``; None -> ``-``."""
    if value is None:
        return "-"
    for suffix, scale in (("T", 1e12), ("B", 1e9), ("M", 1e6), ("K", 1e3)):
        if abs(value) >= scale:
            return f"{value / scale:.{digits}f}{suffix}"
    return f"{value:g}"
