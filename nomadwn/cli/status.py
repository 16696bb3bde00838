"""``nomadwn status``: the pool view, per flavour and per worker, across Nomad, Consul and HTCondor.

rich (for the terminal) and the Nomad, Consul and HTCondor clients are imported inside the command.
"""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING, Annotated, Any

import typer

from nomadwn.cli._common import (
    AddrOpt,
    FlavoursArg,
    JsonOpt,
    NamespaceOpt,
    RegionOpt,
    SiteArg,
    condor_source,
    emit_json,
    handled,
    nomad_client,
    seconds,
)

if TYPE_CHECKING:
    from nomadwn.model import Site
    from nomadwn.nomad import NomadAPI
    from nomadwn.status import PoolStatus


def _rich(status: PoolStatus) -> Any:
    """The pool view as rich renderables (a terminal): one table per flavour."""
    from rich.console import Group
    from rich.table import Table
    from rich.text import Text

    from nomadwn.status import SYSTEM_NAMES, WORKER_COLUMNS, flavour_line, said, worker_cells

    parts: list[Any] = []
    systems = Text(f"site {status.site}  ")
    for s, name in SYSTEM_NAMES.items():
        state = "skipped" if s in status.skipped else "UNREACHABLE" if s in status.errors else "ok"
        systems.append(f"{name} {state}  ", style={"ok": "green", "skipped": "dim"}.get(state, "bold red"))
    parts.append(systems)
    for s, message in status.errors.items():
        parts.append(Text(said(s, message), style="red"))
    for r in status.flavours:
        table = Table(title=Text(flavour_line(r)), title_justify="left", expand=False)
        for column in WORKER_COLUMNS:
            table.add_column(column, overflow="fold", no_wrap=False)
        for w in r.workers:
            table.add_row(*(Text(cell) for cell in worker_cells(w)))
        parts.append(table)
    parts.append(Text("CPU: cores in use/free; MEM: GiB in use/free; JOBS: payloads; LEFT: of max_age", style="dim"))
    return Group(*parts)


def _wait_for_change(nomad: NomadAPI | None, job_ids: list[str], indexes: dict[str, int], timeout: float) -> None:
    """Block until one of the jobs' allocations changes in Nomad (blocking queries) or ``timeout`` passes."""
    import time

    if nomad is None or not job_ids:
        time.sleep(timeout)
        return
    from concurrent.futures import FIRST_COMPLETED, ThreadPoolExecutor, wait

    from nomadwn.errors import NomadwnError

    def one(job_id: str) -> None:
        try:
            indexes[job_id] = nomad.allocations(job_id, index=indexes.get(job_id, 0), wait=timeout).index
        except NomadwnError:
            time.sleep(timeout)  # the next refresh says what is wrong

    pool = ThreadPoolExecutor(max_workers=min(8, len(job_ids)), thread_name_prefix="nomadwn-status")
    try:
        wait([pool.submit(one, job_id) for job_id in job_ids], timeout=timeout + 1, return_when=FIRST_COMPLETED)
    finally:
        pool.shutdown(wait=False, cancel_futures=True)


def _collectors(site: Site, names: list[str]) -> list[str]:
    for name in [*names, *site.flavours]:
        if name in site.flavours:
            return list(site.flavours[name].htcondor.collector)
    return []


@handled
def status(
    site_file: SiteArg,
    flavours: FlavoursArg = None,
    no_consul: Annotated[bool, typer.Option("--no-consul", help="Leave out the Consul health checks.")] = False,
    no_condor: Annotated[
        bool, typer.Option("--no-condor", help="Leave out HTCondor (workers' slots, demand).")
    ] = False,
    watch: Annotated[
        bool, typer.Option("--watch", "-w", help="Refresh live (on a terminal) as Nomad's allocations change.")
    ] = False,
    interval: Annotated[
        str, typer.Option("--interval", help="With --watch: refresh at least this often (HTCondor, Consul).")
    ] = "10s",
    as_json: JsonOpt = False,
    address: AddrOpt = None,
    namespace: NamespaceOpt = None,
    region: RegionOpt = None,
) -> None:
    """The pool view: per flavour and worker, Nomad's allocation, Consul's checks and HTCondor's slots, plus the
    idle jobs each flavour would take. Exit 1 when Nomad, Consul or HTCondor cannot be reached (it says which)."""
    import time

    from nomadwn.deploy import select_flavours
    from nomadwn.sitefile import load_site
    from nomadwn.status import pool_status, status_lines

    every = seconds(interval, "--interval")
    site = load_site(site_file)
    names = select_flavours(site, flavours or [])
    nomad = nomad_client(address, namespace, region)
    consul = None
    if not no_consul:
        from nomadwn.consul_health import ConsulClient
        from nomadwn.consul_settings import ConsulSettings

        consul = ConsulClient(ConsulSettings.from_env())
    condor = None
    if not no_condor:
        condor = condor_source(_collectors(site, names))

    def snapshot() -> PoolStatus:
        return pool_status(site, names, nomad, consul, condor, clock=time.time)

    terminal = sys.stdout.isatty()
    if watch and terminal and not as_json:
        from rich.console import Console
        from rich.live import Live

        job_ids = [site.job_id(n) if n in site.flavours else site.autoscaler_job_id for n in names]
        indexes: dict[str, int] = {}
        with Live(_rich(snapshot()), console=Console(highlight=False), auto_refresh=False) as live:
            while True:
                _wait_for_change(nomad, job_ids, indexes, every)
                live.update(_rich(snapshot()), refresh=True)
    while True:
        current = snapshot()
        if as_json:
            emit_json(current.as_json())
        elif terminal:
            from rich.console import Console

            Console(highlight=False, soft_wrap=False).print(_rich(current))
        else:
            typer.echo("\n".join(status_lines(current, width=80)))
        if not watch:
            break
        time.sleep(every)
    if not current.ok:
        raise typer.Exit(1)
