"""Writing values as HCL2 literals that cannot break out of their place.

Every string that reaches a rendered jobspec passes through :func:`string` (a
quoted literal) or :func:`heredoc` (a block of text). Quotes, backslashes, newlines
and control characters are escaped, and HCL's template sequences ``${`` and ``%{``
are doubled (``$${``, ``%%{``) so HCL reads them as literal text. Nomad then sees
exactly the same string as in the JSON form of the job.
"""

from __future__ import annotations

import re

_ESCAPES = {"\\": "\\\\", '"': '\\"', "\n": "\\n", "\r": "\\r", "\t": "\\t"}
_NEEDS_ESCAPE = re.compile(r'[\\"\x00-\x1f\x7f]|[$%]\{')
_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_-]*")


def _escape(match: re.Match[str]) -> str:
    text = match.group(0)
    if text in _ESCAPES:
        return _ESCAPES[text]
    if text in ("${", "%{"):
        return text[0] + text
    return f"\\u{ord(text):04x}"


def string(value: str) -> str:
    """``value`` as a quoted HCL string literal."""
    return '"' + _NEEDS_ESCAPE.sub(_escape, value) + '"'


def key(name: str) -> str:
    """An attribute name: bare if it is an HCL identifier, refused otherwise."""
    if not _IDENTIFIER.fullmatch(name):
        raise ValueError(f"not an HCL identifier: {name!r}")
    return name


def heredoc(value: str, marker: str = "EOT") -> str:
    """``value`` as an HCL heredoc (``<<EOT ... EOT``), for multi-line text.

    Heredocs keep backslashes and quotes as they are, but HCL still reads template
    sequences, so ``${`` and ``%{`` are doubled. The text must end with a newline
    and may hold no control character other than newline and tab; the end marker is
    made longer until no line of the text equals it.
    """
    if not value.endswith("\n"):
        raise ValueError("heredoc text must end with a newline")
    if re.search(r"[\x00-\x08\x0b-\x1f\x7f]", value):
        raise ValueError("heredoc text may not contain control characters")
    lines = {line.strip() for line in value.splitlines()}
    while marker in lines:
        marker += "_"
    body = re.sub(r"([$%])\{", r"\1\1{", value)
    return f"<<{marker}\n{body}{marker}"


def value(item: object) -> str:
    """Any plain value (string, number, bool, list, mapping) as a one-line HCL expression."""
    if isinstance(item, bool):
        return boolean(item)
    if isinstance(item, (int, float)):
        return number(item)
    if isinstance(item, str):
        return string(item)
    if isinstance(item, (list, tuple)):
        return "[" + ", ".join(value(v) for v in item) + "]"
    if isinstance(item, dict):
        return "{ " + ", ".join(f"{key(str(k))} = {value(v)}" for k, v in item.items()) + " }"
    raise TypeError(f"no HCL form for {type(item).__name__}")


def number(value: int | float) -> str:
    """A number literal."""
    if isinstance(value, bool):
        raise TypeError("use boolean() for booleans")
    return repr(value)


def boolean(value: bool) -> str:
    """A boolean literal."""
    return "true" if value else "false"
