"""The one exception tree of nomadwn.

::

    NomadwnError                  anything nomadwn raises on purpose
    ├── ConfigError               a site file is missing, unreadable or invalid
    ├── RenderError               a valid model could not be rendered or written
    └── BackendError              a peer could not be reached, or refused a request
        ├── NomadError            ... Nomad's HTTP API
        ├── ConsulError           ... Consul's HTTP API
        └── CondorError           ... HTCondor's collector or schedds

Messages say what failed, where (a file, or a dotted field path) and what to do
next. They never contain a secret: site-file values are not echoed back.
"""

from __future__ import annotations

from dataclasses import dataclass


class NomadwnError(Exception):
    """Base class of every error nomadwn raises on purpose."""


@dataclass(frozen=True)
class FieldProblem:
    """One problem in a site file: the dotted path of the field and what is wrong."""

    path: str
    message: str

    def __str__(self) -> str:
        return f"{self.path}: {self.message}" if self.path else self.message


class ConfigError(NomadwnError):
    """A site file is missing, unreadable or does not validate.

    ``problems`` holds one entry per bad field, each naming its dotted path.
    ``context`` ends the headline; settings from the environment or the command
    line pass an empty one.
    """

    SHOWN = 50
    """The message lists at most this many problems (``problems`` keeps them all, for ``--json``)."""

    def __init__(self, source: str, problems: list[FieldProblem], *, context: str = " in the site file") -> None:
        self.source = source
        self.problems = problems
        lines = [f"{source}: {len(problems)} problem(s){context}"]
        lines += [f"  {p}" for p in problems[: self.SHOWN]]
        if len(problems) > self.SHOWN:
            lines.append(f"  ... and {len(problems) - self.SHOWN} more")
        super().__init__("\n".join(lines))


class RenderError(NomadwnError):
    """A job could not be rendered, or rendered output could not be written."""


class BackendError(NomadwnError):
    """A peer (Nomad, Consul) could not be reached, or refused a request.

    ``status`` is the HTTP status when the peer answered, None for network errors
    (refused connection, timeout, TLS failure). The message says what was asked,
    of which address, and what to check; it never contains a token.
    """

    def __init__(self, message: str, *, status: int | None = None) -> None:
        self.status = status
        super().__init__(message)


class NomadError(BackendError):
    """A Nomad HTTP API call failed."""


class ConsulError(BackendError):
    """A Consul HTTP API call failed."""


class CondorError(BackendError):
    """An HTCondor query (collector, schedd) failed."""
