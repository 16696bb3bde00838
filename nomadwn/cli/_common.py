"""What every command shares: plain output, the one error handler, JSON output, shared options.

Nothing here imports a client library, rich or the site model: ``nomadwn --help``
imports this module and the command modules' signatures only (see ``typer_cli``).
"""

from __future__ import annotations

import functools
import json
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, ParamSpec, TypeVar

import typer

from nomadwn.errors import NomadwnError

if TYPE_CHECKING:
    from nomadwn.condor import CondorSource
    from nomadwn.nomad import NomadAPI

P = ParamSpec("P")
R = TypeVar("R")

SiteArg = Annotated[Path, typer.Argument(help="The site file (YAML).", show_default=False)]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print one JSON document on stdout instead of text.")]
AddrOpt = Annotated[str | None, typer.Option("--address", help="Nomad's address (default: NOMAD_ADDR).")]
NamespaceOpt = Annotated[str | None, typer.Option("--namespace", help="Nomad namespace (default: NOMAD_NAMESPACE).")]
RegionOpt = Annotated[str | None, typer.Option("--region", help="Nomad region (default: NOMAD_REGION).")]
FlavoursArg = Annotated[list[str] | None, typer.Argument(help="Flavours to act on (default: all).", show_default=False)]
FlavourArg = Annotated[str, typer.Argument(help="The flavour to act on.", show_default=False)]


def say(text: str, *, style: str | None = None, stderr: bool = False) -> None:
    """Print plain text, coloured only on a terminal: never read as markup, so site-file values cannot inject any."""
    typer.secho(text, fg=style, err=stderr)


DEBUG_VARIABLE = "NOMADWN_DEBUG"
"""Set to true to see the traceback of an unexpected error instead of its one-line summary."""


def handled(command: Callable[P, R], error_code: int = 1) -> Callable[P, R]:
    """The CLI's one error handler: a nomadwn error prints its message and exits 1; Ctrl-C exits 130.

    Anything else (a bug: no input should get this far) prints one line naming the
    exception and exits 1 too, never a traceback, unless ``NOMADWN_DEBUG`` is true.
    """

    @functools.wraps(command)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return command(*args, **kwargs)
        except NomadwnError as exc:
            say(f"error: {exc}", style="red", stderr=True)
            raise typer.Exit(error_code) from None
        except KeyboardInterrupt:
            say("interrupted: stopped watching; anything already submitted keeps running in Nomad", stderr=True)
            raise typer.Exit(130) from None
        except (typer.Exit, typer.Abort, typer.TyperException):
            raise  # Typer's own: usage errors (exit 2) and explicit exits
        except Exception as exc:
            if _debugging():
                raise
            say(
                f"error: unexpected {type(exc).__name__}: {_first_line(exc)}. This is a bug in nomadwn: please"
                f" report it with the command and its input ({DEBUG_VARIABLE}=true shows the traceback)",
                style="red",
                stderr=True,
            )
            raise typer.Exit(error_code) from None

    return wrapper


def _debugging() -> bool:
    import os

    from nomadwn.env import env_bool

    return bool(env_bool(os.environ, DEBUG_VARIABLE, []))


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return (text.splitlines()[0][:300] if text else "no message").rstrip(".")


def emit_json(document: Any) -> None:
    """Print ``document`` as one indented JSON document on stdout."""
    typer.echo(json.dumps(document, indent=2, sort_keys=True))


def nomad_client(address: str | None, namespace: str | None, region: str | None) -> NomadAPI:
    """The real Nomad client for the shared ``--address/--namespace/--region`` options (imported only here)."""
    from nomadwn.nomad import NomadSettings
    from nomadwn.nomad_client import NomadClient

    return NomadClient(NomadSettings.from_env(address=address, namespace=namespace, region=region))


def condor_source(collectors: Sequence[str]) -> CondorSource:
    """The real HTCondor source (imported only here) for a pool whose collectors the site file names.

    Precedence: the site file's collectors < the environment (``CONDOR_HOST``,
    ``_CONDOR_COLLECTOR_HOST``, ``NOMADWN_CONDOR_*``).
    """
    import os

    from nomadwn.condor import CondorSettings, HTCondorSource

    return HTCondorSource(CondorSettings.from_env({"CONDOR_HOST": ",".join(collectors), **os.environ}))


def seconds(text: str, option: str) -> float:
    """A duration option (``10m``, ``30s``) in seconds; a bad one is a usage error (exit 2)."""
    from nomadwn.units import parse_duration_ns

    try:
        return parse_duration_ns(text) / 1e9
    except ValueError as exc:
        raise typer.BadParameter(str(exc), param_hint=option) from None
