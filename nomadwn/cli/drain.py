"""``nomadwn drain``: take workers out of service without killing a payload (see :mod:`nomadwn.drain`)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated

import typer

from nomadwn.cli._common import (
    AddrOpt,
    FlavourArg,
    NamespaceOpt,
    RegionOpt,
    SiteArg,
    condor_source,
    handled,
    nomad_client,
    say,
)

if TYPE_CHECKING:
    pass


@handled
def drain(
    site_file: SiteArg,
    flavour: FlavourArg,
    alloc: Annotated[
        list[str] | None, typer.Option("--alloc", help="Only this allocation (ID or prefix); repeat for more.")
    ] = None,
    node: Annotated[
        str | None, typer.Option("--node", help="Only the workers on this Nomad node (name or ID).")
    ] = None,
    wait: Annotated[
        bool,
        typer.Option(
            "--wait", help="Follow the payloads to their end, then stop the allocations (Nomad replaces them)."
        ),
    ] = False,
    keep: Annotated[bool, typer.Option("--keep", help="With --wait: leave the drained workers running.")] = False,
    cancel: Annotated[bool, typer.Option("--cancel", help="Put the workers back in service instead.")] = False,
    timeout: Annotated[
        str | None, typer.Option("--timeout", help="With --wait: give up after this long (default: the retirement).")
    ] = None,
    poll: Annotated[str, typer.Option("--poll", help="With --wait: how often to look at the workers.")] = "10s",
    address: AddrOpt = None,
    namespace: NamespaceOpt = None,
    region: RegionOpt = None,
) -> None:
    """Stop workers taking payloads (HTCondor's graceful drain); with --wait, stop them once empty.

    Running payloads keep their retirement (lifespan.retirement). Exit 0 when every
    worker was drained (or, with --wait, emptied and stopped), 1 when a startd refused
    or Nomad failed, 2 when --wait timed out (the workers stay drained).
    """
    from datetime import timedelta

    from nomadwn import drain as d
    from nomadwn.cli._common import seconds
    from nomadwn.sitefile import load_site
    from nomadwn.units import duration_text

    if cancel and wait:
        raise typer.BadParameter("--cancel puts workers back in service; it cannot be combined with --wait")
    site = load_site(site_file)
    nomad = nomad_client(address, namespace, region)
    condor = condor_source(site.flavours[flavour].htcondor.collector)
    chosen = d.targets(site, flavour, nomad, condor, alloc_ids=alloc or [], node=node)
    if not chosen:
        say(f"{flavour}: no live worker matches; nothing to do")
        return
    result = (d.cancel if cancel else d.drain)(condor, chosen)
    what = "back in service" if cancel else "draining (no new payloads)"
    for t in chosen:
        failed = result.failed.get(t.startd)
        where = f"{t.alloc.id[:8]} on {t.alloc.node_name or t.alloc.node_id}"
        if failed is None:
            say(f"  {where}: {what}, {t.running} payload(s) running")
        else:
            say(f"  {where}: {failed}", style="red")
    if not result.ok:
        raise typer.Exit(1)
    if not wait:
        if not cancel:
            say(f"{flavour}: {len(chosen)} worker(s) draining; `--wait` follows them and stops them once empty")
        return
    limit = seconds(timeout, "--timeout") if timeout else d.default_timeout(site, flavour)

    def progress(p: d.Progress) -> None:
        say(f"  {p.elapsed:5.0f}s: {p.payloads} payload(s) still running on {p.busy} of {p.total} worker(s)")

    busy = d.wait_empty(site, condor, chosen, timeout=limit, poll=seconds(poll, "--poll"), on_progress=progress)
    if busy:
        waited = duration_text(timedelta(seconds=int(limit)))
        say(
            f"{flavour}: {len(busy)} worker(s) still run payloads after {waited}; "
            "they stay drained (nomadwn drain --cancel puts them back)",
            style="red",
        )
        raise typer.Exit(2)
    if keep:
        say(f"{flavour}: {len(chosen)} worker(s) drained and empty; left running (--keep)", style="green")
        return
    d.stop(nomad, chosen)
    say(
        f"{flavour}: {len(chosen)} worker(s) empty and stopped; Nomad places fresh replacements (the count is kept)",
        style="green",
    )
