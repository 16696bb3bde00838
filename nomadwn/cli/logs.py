"""``nomadwn logs``: a worker's stdout (its HTCondor daemon logs) or stderr, through Nomad's API.

The Nomad client is imported inside the command.
"""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING, Annotated

import typer

from nomadwn.cli._common import AddrOpt, NamespaceOpt, RegionOpt, SiteArg, handled, nomad_client, say

if TYPE_CHECKING:
    from nomadwn.nomad import Allocation, LogStream


def choose_allocation(allocs: list[Allocation], wanted: str | None, job_id: str) -> tuple[Allocation, str]:
    """The allocation to read, and a note saying which (and what else there is).

    ``wanted`` is a full ID or a prefix (as Nomad's CLI takes them); without it, the
    one running allocation, or the first of several (the note names the others' count).
    """
    from nomadwn.errors import ConfigError, FieldProblem

    if wanted:
        found = [a for a in allocs if a.id.startswith(wanted)]
        if len(found) != 1:
            problem = "no allocation of" if not found else f"{len(found)} allocations of"
            known = ", ".join(a.id[:8] for a in allocs) or "none"
            raise ConfigError(
                "command line",
                [FieldProblem("--alloc", f"{problem} {job_id} start with {wanted!r}; it has: {known}")],
                context="",
            )
        return found[0], ""
    running = [a for a in allocs if a.client_status == "running"] or [a for a in allocs if a.desired_status == "run"]
    if not running:
        raise ConfigError(
            "command line", [FieldProblem("flavour", f"{job_id} has no allocation to read logs from")], context=""
        )
    chosen = sorted(running, key=lambda a: (a.index is None, a.index or 0, a.id))[0]
    note = ""
    if len(running) > 1:
        note = f"{len(running) - 1} other allocation(s) of {job_id}; choose one with --alloc"
    return chosen, note


@handled
def logs(
    site_file: SiteArg,
    flavour: Annotated[str, typer.Argument(help="The flavour (or 'autoscaler') whose worker to read.")],
    alloc: Annotated[
        str | None, typer.Option("--alloc", help="Allocation ID or prefix (default: a running one).")
    ] = None,
    follow: Annotated[bool, typer.Option("--follow", "-f", help="Keep following the log as it grows.")] = False,
    stderr: Annotated[bool, typer.Option("--stderr", help="Read the task's stderr instead of stdout.")] = False,
    address: AddrOpt = None,
    namespace: NamespaceOpt = None,
    region: RegionOpt = None,
) -> None:
    """Print a worker's task log through Nomad's API: stdout carries its HTCondor daemon logs, one line per log
    line with the daemon's name (see the README, Logs); --stderr shows start.sh's own messages."""
    from nomadwn.deploy import select_flavours
    from nomadwn.render import AUTOSCALER, TASK
    from nomadwn.sitefile import load_site
    from nomadwn.status import job_allocations

    site = load_site(site_file)
    (name,) = select_flavours(site, [flavour])
    job_id = site.autoscaler_job_id if name == AUTOSCALER and name not in site.flavours else site.job_id(name)
    task = "autoscale" if job_id == site.autoscaler_job_id else TASK
    nomad = nomad_client(address, namespace, region)
    chosen, note = choose_allocation(job_allocations(site, name, nomad), alloc, job_id)
    stream: LogStream = "stderr" if stderr else "stdout"
    say(f"{stream} of allocation {chosen.id[:8]} ({chosen.name or job_id}) on {chosen.node_name or '?'}", stderr=True)
    if note:
        say(note, stderr=True)
    out = sys.stdout.buffer
    for frame in nomad.logs(chosen.id, task, stream=stream, follow=follow):
        if frame.file_event:
            say(f"[nomadwn logs] {frame.file} {frame.file_event}", stderr=True)
        out.write(frame.data)
        out.flush()
