"""The ``nomadwn`` command line: this module only assembles the Typer app.

Each command lives in a module of :mod:`nomadwn.cli`, one per verb or area:

* ``nomadwn/cli/_common.py``: ``say``, the one error handler ``handled``, JSON output,
  the shared options (site file, ``--json``, ``--address/--namespace/--region``) and
  the Nomad client;
* ``nomadwn/cli/site.py``: ``init``, ``validate``, ``render``;
* ``nomadwn/cli/deploy.py``: ``plan``, ``deploy``, ``promote``, ``rollback``, ``stop``;
* ``nomadwn/cli/status.py``: ``status``;
* ``nomadwn/cli/logs.py``: ``logs``;
* ``nomadwn/cli/autoscale.py``: ``autoscale``;
* ``nomadwn/cli/drain.py``: ``drain``;
* ``nomadwn/cli/simulate.py``: ``simulate``.

To add a verb: write ``nomadwn/cli/<area>.py`` with a function decorated ``@handled``
(its docstring is the command's help), then add one registration line below:
``app.command()(<area>.<verb>)``. Keep a command module's top-level imports to
typer, ``nomadwn.cli._common`` and what its signature needs: import the site model,
rich, the clients (python-nomad, py-consul, requests, htcondor2, prometheus_client)
and the autoscaler *inside the command body*. Typer builds every command's options
for any invocation, ``--help`` included, so a heavy top-level import in one command
module slows every command; ``tests/test_imports.py`` checks what ``--help``,
``validate`` and ``render`` import. The console script (:func:`main`) goes further: it
hands Typer only the command being run (:func:`lean`), since Typer builds the options of
every registered command before it parses anything; ``app`` stays whole for the tests,
and a test checks that both give the same output and exit code. Start-up times:
``python -m bench.cli_startup``.

Exit codes, the same for every command:

====  =====================================================================
0     success (``render --check``: fresh; ``deploy``: healthy or unchanged;
      ``plan``: no change)
1     the site file is invalid, a job could not be rendered or written,
      ``render --check`` found stale jobspecs, a deploy failed, a peer
      refused a request, an unexpected error (one line; ``NOMADWN_DEBUG=true``
      for the traceback), or (``plan`` only) the plan has changes
2     wrong usage (unknown option, missing argument), or a deploy timed out
130   interrupted (Ctrl-C); when watching, the job keeps running in Nomad
255   ``plan`` only: an error (as nomad-pack)
====  =====================================================================

Nomad is reached as HashiCorp's own tools do: ``NOMAD_ADDR``, ``NOMAD_TOKEN``,
``NOMAD_REGION``, ``NOMAD_NAMESPACE``, ``NOMAD_CACERT``, ``NOMAD_CLIENT_CERT``,
``NOMAD_CLIENT_KEY``, ``NOMAD_SKIP_VERIFY``; flags override the environment. The
token is read from the environment only, never from a flag (shell history).
"""

from __future__ import annotations

import copy
import inspect
import sys
from typing import Annotated

import typer
from typer.models import CommandInfo

from nomadwn import __version__
from nomadwn.cli import autoscale, deploy, drain, logs, simulate, site, status

app = typer.Typer(
    name="nomadwn",
    help="Containerised HTCondor worker nodes on Nomad and Consul: validate a site file and render its Nomad jobs.",
    no_args_is_help=True,
    add_completion=False,
    rich_markup_mode=None,
)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"nomadwn {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: Annotated[
        bool, typer.Option("--version", callback=_version, is_eager=True, help="Print the version and exit.")
    ] = False,
) -> None:
    """Containerised HTCondor worker nodes on Nomad and Consul."""


# One line per command, in the order `nomadwn --help` lists them.
app.command()(site.init)
app.command()(site.validate)
app.command()(site.render)
app.command()(deploy.plan)
app.command()(deploy.deploy)
app.command()(deploy.promote)
app.command()(deploy.rollback)
app.command()(deploy.stop)
app.command()(status.status)
app.command()(logs.logs)
app.command()(autoscale.autoscale)
app.command()(drain.drain)
app.command()(simulate.simulate)


def _name(info: CommandInfo) -> str:
    assert info.callback is not None
    return info.name or info.callback.__name__.lower().replace("_", "-")  # as Typer names a command


def _listed() -> None:
    """Stands in for a command in ``nomadwn --help``; never invoked."""


def _summary(info: CommandInfo) -> CommandInfo:
    """A command as the top-level help lists it: its name and help, without its options."""
    help_text = info.help if info.help is not None else inspect.getdoc(info.callback)
    return CommandInfo(
        _name(info),
        callback=_listed,
        help=help_text,
        short_help=info.short_help,
        hidden=info.hidden,
        deprecated=info.deprecated,
    )


def lean(argv: list[str]) -> typer.Typer:
    """``app`` reduced to what running ``argv`` needs: Typer builds every registered command's
    options before it parses anything (about as long as importing Typer), so the console script
    builds only the command it runs, or for the top-level help (and an unknown command) only the
    commands' names and help. ``app`` itself, which the tests use, stays whole."""
    commands = {_name(info): info for info in app.registered_commands}
    wanted = argv[0] if argv and not argv[0].startswith("-") else None
    reduced = copy.copy(app)
    if wanted in commands:
        reduced.registered_commands = [commands[wanted]]
    else:
        reduced.registered_commands = [_summary(info) for info in app.registered_commands]
    return reduced


def main() -> None:
    """Entry point of the ``nomadwn`` console script."""
    lean(sys.argv[1:])()


if __name__ == "__main__":
    main()
