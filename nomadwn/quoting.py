"""Strings embedded in the files a worker runs: the one place that quotes them.

* :func:`string_literal` writes a value as a double-quoted string literal that reads
  back as exactly that value in HTCondor's ClassAd language (the worker's
  ``condor_config`` knobs, ``START`` expressions, the autoscaler's query constraints)
  and in Go templates (consul-template's ``{{ nomadVar "..." }}`` and
  ``{{ secret "..." }}``). It uses only the escapes both languages share: ``\\\\``,
  ``\\"``, ``\\n``, ``\\t``, ``\\r`` and three-digit octal (``\\ooo``) for any other
  control character but NUL, so a value can never end the literal or the line early.
  A NUL cannot be embedded (HTCondor's strings are C strings): :class:`ValueError`.
* :func:`template_text` makes text literal for consul-template, which would run
  ``{{ ... }}`` as code.

HCL has its own rules and its own module (:mod:`nomadwn.hcl`); shell words use
:func:`shlex.quote`.
"""

from __future__ import annotations

import re

_NEEDS_ESCAPE = re.compile(r'[\\"\x00-\x1f\x7f]')
_SHORT = {"\\": "\\\\", '"': '\\"', "\n": "\\n", "\t": "\\t", "\r": "\\r"}


def _escape(match: re.Match[str]) -> str:
    char = match.group()
    return _SHORT.get(char) or f"\\{ord(char):03o}"


def string_literal(value: str) -> str:
    """``value`` as a double-quoted ClassAd / Go string literal."""
    if "\x00" in value:
        raise ValueError("a string with a NUL character cannot be embedded in a ClassAd or a template")
    return '"' + _NEEDS_ESCAPE.sub(_escape, value) + '"'


def template_text(text: str) -> str:
    """``text`` as consul-template copies it literally (``{{`` becomes ``{{ "{{" }}``)."""
    return text.replace("{{", '{{ "{{" }}')
