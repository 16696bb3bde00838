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
``validate`` and ``render`` import.

Exit codes, the same for every command:

====  =====================================================================
0     success (``render --check``: fresh; ``deploy``: healthy or unchanged;
      ``plan``: no change)
1     the site file is invalid, a job could not be rendered or written,
      ``render --check`` found stale jobspecs, a deploy failed, a peer
      refused a request, or (``plan`` only) the plan has changes
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

from typing import Annotated

import typer

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


def main() -> None:
    """Entry point of the ``nomadwn`` console script."""
    app()


if __name__ == "__main__":
    main()
