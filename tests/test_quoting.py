"""The one quoting helper for strings in the worker's files, checked against HTCondor's own ClassAd parser."""

from __future__ import annotations

import classad2
import pytest
from hypothesis import given
from hypothesis import strategies as st

from nomadwn.quoting import string_literal, template_text


@given(st.text(alphabet=st.characters(exclude_characters="\x00", exclude_categories=["Cs"])))
def test_classad_reads_back_exactly_the_value(value: str) -> None:
    literal = string_literal(value)
    assert "\n" not in literal and "\r" not in literal
    assert classad2.ExprTree(literal).eval() == value


@pytest.mark.parametrize(
    ("value", "literal"),
    [
        ("plain", '"plain"'),
        ('say "hi"', '"say \\"hi\\""'),
        ("C:\\path", '"C:\\\\path"'),
        ("two\nlines\ttab\rcr", '"two\\nlines\\ttab\\rcr"'),
        ("bell\x07del\x7f", '"bell\\007del\\177"'),
    ],
    ids=["plain", "quote", "backslash", "newline-tab-cr", "octal"],
)
def test_string_literal_escapes(value: str, literal: str) -> None:
    assert string_literal(value) == literal


def test_a_nul_cannot_be_embedded() -> None:
    with pytest.raises(ValueError, match="a string with a NUL character cannot be embedded"):
        string_literal("a\x00b")


def test_template_text_keeps_consul_template_from_running_code() -> None:
    assert template_text("x {{ env `HOME` }} y") == 'x {{ "{{" }} env `HOME` }} y'
