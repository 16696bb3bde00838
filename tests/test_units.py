"""Durations and sizes in site files."""

from __future__ import annotations

from datetime import timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import BaseModel

from nomadwn.units import Duration, SizeMB, duration_ns, format_duration, parse_duration_ns, parse_size_mb


class _Holder(BaseModel):
    d: Duration
    s: SizeMB


@pytest.mark.parametrize(
    ("text", "ns"),
    [
        ("60s", 60 * 10**9),
        ("1m", 60 * 10**9),
        ("1h30m", 5400 * 10**9),
        ("1.5h", 5400 * 10**9),
        ("250ms", 250 * 10**6),
        ("2d", 172800 * 10**9),
        ("0s", 0),
    ],
    ids=lambda v: str(v),
)
def test_durations_parse_like_go(text: str, ns: int) -> None:
    assert parse_duration_ns(text) == ns


@pytest.mark.parametrize("bad", ["60", "", "1x", "s", "1h 30m", "-5s"], ids=repr)
def test_bad_durations_are_refused(bad: str) -> None:
    with pytest.raises(ValueError, match="duration"):
        parse_duration_ns(bad)


def test_bare_number_is_not_a_duration() -> None:
    with pytest.raises(ValueError, match="a duration needs a unit"):
        _Holder.model_validate({"d": 60, "s": "1GiB"})


@given(st.integers(min_value=0, max_value=10**6 * 3600).map(lambda s: s * 10**9))
def test_format_then_parse_round_trips(ns: int) -> None:
    assert parse_duration_ns(format_duration(ns)) == ns


def test_format_uses_go_style() -> None:
    assert format_duration(90 * 10**9) == "1m30s"
    assert format_duration(3600 * 10**9) == "1h"
    assert duration_ns(timedelta(seconds=1, microseconds=5)) == 1_000_005_000


@pytest.mark.parametrize(
    ("text", "mb"),
    [("16GiB", 16384), ("16GB", 15258), ("512MiB", 512), ("1.5GiB", 1536), ("2048M", 2048), ("1TiB", 1048576)],
    ids=lambda v: str(v),
)
def test_sizes(text: str, mb: int) -> None:
    assert parse_size_mb(text) == mb


@pytest.mark.parametrize("bad", [16, "16", "16 parsecs", "100KB", True], ids=repr)
def test_bad_sizes_are_refused(bad: object) -> None:
    with pytest.raises(ValueError, match="size"):
        parse_size_mb(bad)
