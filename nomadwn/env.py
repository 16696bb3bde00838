"""Reading settings from environment variables: one parser per kind of value.

Each parser takes the environment, the variable's name and a list of problems; a bad
value adds a :class:`~nomadwn.errors.FieldProblem` named after the variable and
returns None, so that a settings class can report every bad variable at once in one
:class:`~nomadwn.errors.ConfigError` (``raise_problems``).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Final

from nomadwn.errors import ConfigError, FieldProblem

TRUE: Final = frozenset({"1", "t", "true"})
"""Go's ``strconv.ParseBool`` true values (case-insensitively), as HashiCorp's tools read them."""
FALSE: Final = frozenset({"0", "f", "false"})
SOURCE: Final = "environment"


def env_bool(env: Mapping[str, str], var: str, problems: list[FieldProblem]) -> bool | None:
    """``var`` as a boolean (None when unset or empty, or bad: then a problem is added)."""
    value = env.get(var, "")
    if not value:
        return None
    if value.strip().lower() in TRUE:
        return True
    if value.strip().lower() in FALSE:
        return False
    problems.append(FieldProblem(var, f"{value!r} is not a boolean: use true or false"))
    return None


def env_seconds(env: Mapping[str, str], var: str, problems: list[FieldProblem]) -> float | None:
    """``var`` as a positive, finite number of seconds (None when unset or blank, or bad)."""
    value = env.get(var, "")
    if not value.strip():
        return None
    try:
        seconds = float(value)
    except ValueError:
        seconds = math.nan
    if not (math.isfinite(seconds) and seconds > 0):
        problems.append(FieldProblem(var, f"{value!r} is not a positive number of seconds, such as 20"))
        return None
    return seconds


def env_line(env: Mapping[str, str], var: str, problems: list[FieldProblem], *, limit: int = 200) -> str | None:
    """``var`` as one line of printable text of at most ``limit`` characters (None when unset or blank, or bad)."""
    value = env.get(var, "").strip()
    if not value:
        return None
    if len(value) > limit or not value.isprintable():
        problems.append(FieldProblem(var, f"must be one line of printable text of at most {limit} characters"))
        return None
    return value


def raise_problems(problems: list[FieldProblem]) -> None:
    """Raise one :class:`ConfigError` for every bad variable, if there is any."""
    if problems:
        raise ConfigError(SOURCE, problems, context="")
