"""Typed durations and sizes for site files.

Site admins write durations the way Nomad and Consul do (``"60s"``, ``"5m"``,
``"1h30m"``) and sizes with a unit (``"16GB"``, ``"16GiB"``, ``"512MB"``). A bare
integer is refused for both: ``interval = 60`` means 60 *nanoseconds* to Nomad,
and a silent unit mistake is worse than an error.
"""

from __future__ import annotations

import re
from datetime import timedelta
from typing import Annotated, Any

from pydantic import BeforeValidator, PlainSerializer

_DURATION_PART = re.compile(r"(\d+(?:\.\d+)?)(ns|us|µs|ms|s|m|h|d)")
_DURATION_UNITS_NS = {
    "ns": 1,
    "us": 1_000,
    "µs": 1_000,
    "ms": 1_000_000,
    "s": 1_000_000_000,
    "m": 60_000_000_000,
    "h": 3_600_000_000_000,
    "d": 86_400_000_000_000,
}

_SIZE = re.compile(r"(\d+(?:\.\d+)?)\s*(B|KB|MB|GB|TB|KiB|MiB|GiB|TiB|K|M|G|T)", re.IGNORECASE)
_SIZE_BYTES = {
    "b": 1,
    "kb": 1000,
    "mb": 1000**2,
    "gb": 1000**3,
    "tb": 1000**4,
    "kib": 1024,
    "mib": 1024**2,
    "gib": 1024**3,
    "tib": 1024**4,
    "k": 1024,
    "m": 1024**2,
    "g": 1024**3,
    "t": 1024**4,
}
_MIB = 1024**2


def parse_duration_ns(text: str) -> int:
    """Parse a Go-style duration (``"1h30m"``, ``"60s"``, ``"1.5h"``) into nanoseconds."""
    s = text.strip()
    if not s:
        raise ValueError("empty duration; write it with a unit, such as 60s or 5m")
    pos = 0
    total = 0.0
    for m in _DURATION_PART.finditer(s):
        if m.start() != pos:
            break
        total += float(m.group(1)) * _DURATION_UNITS_NS[m.group(2)]
        pos = m.end()
    if pos != len(s) or pos == 0:
        raise ValueError("not a duration: write a number with a unit (ns, ms, s, m, h, d), such as 60s or 1h30m")
    return round(total)


def format_duration(ns: int) -> str:
    """Format nanoseconds the way Go prints whole durations (``"1h30m0s"`` -> ``"1h30m"``)."""
    if ns == 0:
        return "0s"
    parts: list[str] = []
    rest = ns
    # Go prints hours as the largest unit, never days.
    for unit in ("h", "m", "s", "ms", "us", "ns"):
        size = _DURATION_UNITS_NS[unit]
        if rest >= size:
            parts.append(f"{rest // size}{unit}")
            rest %= size
    return "".join(parts)


def _to_timedelta(value: Any) -> timedelta:
    if isinstance(value, timedelta):
        return value
    if isinstance(value, bool) or not isinstance(value, str):
        raise ValueError("a duration needs a unit: write it as a string such as 60s, 5m or 1h30m")
    ns = parse_duration_ns(value)
    return timedelta(microseconds=ns // 1000)


def duration_ns(value: timedelta) -> int:
    """Nanoseconds in a duration, as Nomad's JSON API wants them."""
    return (value.days * 86_400 + value.seconds) * 1_000_000_000 + value.microseconds * 1000


def duration_text(value: timedelta) -> str:
    """A duration as HCL and HTCondor readers expect it (``"1h30m"``)."""
    return format_duration(duration_ns(value))


def duration_seconds(value: timedelta) -> int:
    """Whole seconds in a duration (HTCondor's config takes seconds)."""
    return int(value.total_seconds())


Duration = Annotated[
    timedelta,
    BeforeValidator(_to_timedelta),
    PlainSerializer(duration_text, return_type=str),
]
"""A duration written with a unit, such as ``60s``, ``5m`` or ``1h30m``."""


def parse_size_mb(value: Any) -> int:
    """Parse a size with a unit into whole MiB (Nomad's ``MemoryMB`` and ``SizeMB`` unit)."""
    if isinstance(value, bool) or not isinstance(value, str):
        raise ValueError("a size needs a unit: write it as a string such as 512MB, 16GB or 16GiB")
    m = _SIZE.fullmatch(value.strip())
    if not m:
        raise ValueError("not a size: write a number with a unit (MB, GB, MiB, GiB), such as 16GB")
    size_bytes = float(m.group(1)) * _SIZE_BYTES[m.group(2).lower()]
    mb = int(size_bytes // _MIB)
    if mb < 1:
        raise ValueError("size is below 1 MiB")
    return mb


def _mb_text(mb: int) -> str:
    return f"{mb // 1024}GiB" if mb % 1024 == 0 else f"{mb}MiB"


SizeMB = Annotated[
    int,
    BeforeValidator(parse_size_mb),
    PlainSerializer(_mb_text, return_type=str),
]
"""A size written with a unit (``16GB``, ``16GiB``, ``512MB``), held as whole MiB.

Decimal units are converted to MiB, rounding down: ``16GB`` is 15258 MiB, ``16GiB``
is 16384 MiB. Nomad counts memory and disk in MiB and calls them ``MB``.
"""
