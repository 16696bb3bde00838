"""Fuzzing the site-file loader: whatever the file holds, the answer is a site or a ConfigError.

Four kinds of input, each with a fixed budget (``max_examples``; the ``ci`` profile in
``tests/conftest.py`` derandomises them): raw bytes, text made of YAML's own syntax
characters, the example site with characters inserted, deleted or replaced, and the
example's data with one value anywhere replaced by arbitrary YAML data. Any exception
other than a :class:`~nomadwn.errors.NomadwnError` fails the test, from ``load_site``
and, for a site that loads, from rendering it. A few examples also go through the CLI's
``validate``.
"""

from __future__ import annotations

import contextlib
import copy
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from nomadwn.errors import NomadwnError
from nomadwn.render import render_site
from nomadwn.sitefile import load_site
from tests.conftest import EXAMPLE
from typer_cli import app

EXAMPLE_TEXT = EXAMPLE.read_text(encoding="utf-8")
EXAMPLE_DATA = yaml.safe_load(EXAMPLE_TEXT)
FUZZ = settings(max_examples=200, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])

YAML_SYNTAX = ":-?,[]{}#&*!|>'\"%@`\\ \t\n\r.0123456789eExyz_~<=+$^()/\x00\x7f\u00e9\u2028\ufeff"
scalars = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(max_size=40)
    | st.sampled_from(["10m", "1h", "-1s", "0", "8G", "1e999", "system", "batch", "service", "fuse", "host"])
)
values = st.recursive(
    scalars,
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=12) | st.integers(), inner, max_size=4)
    ),
    max_leaves=12,
)


@pytest.fixture(scope="module")
def scratch() -> Iterator[Path]:
    with tempfile.TemporaryDirectory() as directory:
        yield Path(directory) / "site.yaml"


def _paths(data: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    found = [prefix]
    if isinstance(data, dict):
        for key, value in data.items():
            found += _paths(value, (*prefix, key))
    elif isinstance(data, list):
        for i, value in enumerate(data):
            found += _paths(value, (*prefix, i))
    return found


PATHS = _paths(EXAMPLE_DATA)


def _replaced(path: tuple[Any, ...], value: Any) -> Any:
    if not path:
        return value
    data = copy.deepcopy(EXAMPLE_DATA)
    parent = data
    for part in path[:-1]:
        parent = parent[part]
    parent[path[-1]] = value
    return data


def _survives(scratch: Path, content: str | bytes) -> None:
    """Load ``content`` as a site file: a site (then rendered) or a nomadwn error, nothing else."""
    if isinstance(content, bytes):
        scratch.write_bytes(content)
    else:
        scratch.write_text(content, encoding="utf-8", errors="surrogatepass")
    try:
        site = load_site(scratch)
    except NomadwnError:
        return
    with contextlib.suppress(NomadwnError):
        render_site(site)


@FUZZ
@given(st.binary(max_size=600))
def test_any_bytes(scratch: Path, content: bytes) -> None:
    _survives(scratch, content)


@FUZZ
@given(st.text(alphabet=st.sampled_from(YAML_SYNTAX), max_size=300))
def test_yaml_syntax_soup(scratch: Path, content: str) -> None:
    _survives(scratch, content)


@FUZZ
@given(
    st.lists(
        st.tuples(
            st.integers(0, len(EXAMPLE_TEXT)),
            st.integers(0, 8),
            st.text(alphabet=st.sampled_from(YAML_SYNTAX), max_size=8),
        ),
        min_size=1,
        max_size=4,
    )
)
def test_example_with_edits(scratch: Path, edits: list[tuple[int, int, str]]) -> None:
    text = EXAMPLE_TEXT
    for at, cut, insert in edits:
        text = text[:at] + insert + text[at + cut :]
    _survives(scratch, text)


@FUZZ
@given(st.sampled_from(PATHS), values)
def test_example_with_one_value_replaced(scratch: Path, path: tuple[Any, ...], value: Any) -> None:
    _survives(scratch, yaml.safe_dump(_replaced(path, value), allow_unicode=True))


@settings(max_examples=15, suppress_health_check=[HealthCheck.too_slow])
@given(st.sampled_from(PATHS), values)
def test_cli_validate_never_shows_a_traceback(scratch: Path, path: tuple[Any, ...], value: Any) -> None:
    scratch.write_text(yaml.safe_dump(_replaced(path, value), allow_unicode=True), encoding="utf-8")
    result = CliRunner().invoke(app, ["validate", str(scratch)])
    assert result.exit_code in (0, 1), result.output
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    assert "Traceback" not in result.output
