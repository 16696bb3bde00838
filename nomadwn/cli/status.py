"""``nomadwn status``: one row per flavour, Nomad's view joined with the workers' Consul checks.

rich (for the table) and the Nomad and Consul clients are imported inside the command.
"""

from __future__ import annotations

from typing import Annotated

import typer

from nomadwn.cli._common import (
    AddrOpt,
    FlavoursArg,
    JsonOpt,
    NamespaceOpt,
    RegionOpt,
    SiteArg,
    emit_json,
    handled,
    nomad_client,
)


@handled
def status(
    site_file: SiteArg,
    flavours: FlavoursArg = None,
    no_consul: Annotated[bool, typer.Option("--no-consul", help="Leave out the Consul health checks.")] = False,
    as_json: JsonOpt = False,
    address: AddrOpt = None,
    namespace: NamespaceOpt = None,
    region: RegionOpt = None,
) -> None:
    """One row per flavour: Nomad job and allocations, joined with the workers' Consul checks."""
    from nomadwn.deploy import select_flavours
    from nomadwn.sitefile import load_site
    from nomadwn.status import site_status

    site = load_site(site_file)
    nomad = nomad_client(address, namespace, region)
    consul = None
    if not no_consul:
        from nomadwn.consul_health import ConsulClient
        from nomadwn.consul_settings import ConsulSettings

        consul = ConsulClient(ConsulSettings.from_env())
    rows = site_status(site, select_flavours(site, flavours or []), nomad, consul)
    if as_json:
        emit_json({"site": site.name, "flavours": [r.as_json() for r in rows]})
        return
    from rich.console import Console
    from rich.table import Table
    from rich.text import Text

    table = Table(title=f"site {site.name}", title_justify="left")
    for column in ("flavour", "job", "version", "desired", "placed", "running", "healthy", "failed", "deployment"):
        table.add_column(column, overflow="fold")  # fold, never truncate, on narrow terminals
    if not no_consul:
        table.add_column("consul checks", overflow="fold")
    for r in rows:
        cells = [
            r.flavour,
            f"{r.job_id} ({r.kind}, {r.job_status})",
            "-" if r.version is None else str(r.version),
            "per node" if r.desired is None and r.registered else str(r.desired if r.desired is not None else "-"),
            str(r.placed),
            str(r.running),
            str(r.healthy),
            str(r.failed),
            r.deployment or "-",
        ]
        if not no_consul:
            c = r.checks
            cells.append("-" if c is None else f"{c.passing} passing, {c.warning} warning, {c.critical} critical")
        table.add_row(*(Text(cell) for cell in cells))
    Console(highlight=False, soft_wrap=True).print(table)
