"""``nomadwn autoscale``: the autoscaler service (or one pass with ``--once``).

The autoscaler, htcondor2, prometheus_client and the Consul lock are imported inside
the command, so only ``autoscale`` pays for them.
"""

from __future__ import annotations

import os
import sys
from typing import TYPE_CHECKING, Annotated

import typer

from nomadwn.cli._common import (
    AddrOpt,
    JsonOpt,
    NamespaceOpt,
    RegionOpt,
    SiteArg,
    condor_source,
    emit_json,
    handled,
    nomad_client,
    say,
)
from nomadwn.errors import ConfigError, FieldProblem

if TYPE_CHECKING:
    from nomadwn.autoscale.loop import StepReport
    from nomadwn.model import Site


def _host_port(text: str) -> tuple[str, int]:
    host, _, port = text.rpartition(":")
    if not host or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise ConfigError(
            "--metrics-address",
            [FieldProblem("", f"write host:port, such as 0.0.0.0:9120, not {text!r}")],
            context="",
        )
    return host, int(port)


def _print_step(step: StepReport) -> None:
    if not step.leader:
        say("standby: another replica holds the autoscaler lock; nothing observed, nothing done")
    for r in step.flavours:
        count = "unknown" if r.current is None else f"{r.current} -> {r.target}"
        say(f"{r.flavour} ({r.kind})")
        say(f"  demand: {r.demand}")
        say(f"  supply: {r.supply}")
        say(f"  count:  {count}")
        say(f"  reason: {r.reason}")
        say(f"  action: {r.action}")
    for e in step.errors:
        say(f"error: {e}", style="red", stderr=True)


def _env_holder() -> str | None:
    from nomadwn.env import env_line, raise_problems

    problems: list[FieldProblem] = []
    holder = env_line(os.environ, "NOMADWN_HOLDER", problems)
    raise_problems(problems)
    return holder


def _collectors(site: Site) -> list[str]:
    names = site.autoscaled()
    return list(site.flavours[names[0]].htcondor.collector) if names else []


@handled
def autoscale(
    site_file: SiteArg,
    once: Annotated[bool, typer.Option("--once", help="Evaluate every autoscaled flavour once, print, exit.")] = False,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Decide and log, but never scale or dispatch (needs no lock).")
    ] = False,
    no_lock: Annotated[
        bool, typer.Option("--no-lock", help="Act without the Consul leader lock (only ever one replica!).")
    ] = False,
    metrics_address: Annotated[
        str | None,
        typer.Option("--metrics-address", help="Serve /metrics and /healthz on host:port (default: not served)."),
    ] = None,
    holder: Annotated[
        str | None,
        typer.Option("--holder", help="This replica's name in the lock (default: NOMADWN_HOLDER or host:pid)."),
    ] = None,
    as_json: JsonOpt = False,
    address: AddrOpt = None,
    namespace: NamespaceOpt = None,
    region: RegionOpt = None,
) -> None:
    """Size the autoscaled flavours from HTCondor idle demand (a service; --once for one pass).

    Each evaluation: observe HTCondor (idle jobs by shape, workers by state) and Nomad,
    decide per flavour, then scale service flavours through Nomad's scale endpoint and
    dispatch workers of batch flavours. Logs are JSON lines on stderr. SIGTERM stops
    it gracefully and releases the lock. Exit: 0 ok; 1 an error (with --once: any
    observation or action failed).
    """
    import logging
    import signal
    import socket
    import threading
    import time
    from dataclasses import asdict

    from nomadwn.autoscale.loop import Autoscaler
    from nomadwn.consul_lock import ConsulLock
    from nomadwn.consul_settings import ConsulSettings
    from nomadwn.metrics import MetricsServer, recently
    from nomadwn.sitefile import load_site
    from nomadwn.units import duration_seconds

    site = load_site(site_file)
    logging.basicConfig(level=logging.INFO, format="%(message)s", stream=sys.stderr)
    nomad = nomad_client(address, namespace, region)
    condor = condor_source(_collectors(site))
    leadership = None
    if not (dry_run or no_lock):
        a = site.autoscaler
        leadership = ConsulLock(
            ConsulSettings.from_env(),
            site.lock_key,
            holder=holder or _env_holder() or f"{socket.gethostname()}:{os.getpid()}",
            ttl=duration_seconds(a.lock_ttl) if a is not None else 20.0,
            lock_delay=duration_seconds(a.lock_delay) if a is not None else 15.0,
        )
    scaler = Autoscaler(site, condor, nomad, leadership=leadership, dry_run=dry_run)
    if once:
        step = scaler.step(force=True)
        if leadership is not None:
            leadership.release()
        if as_json:
            emit_json(
                {
                    "site": site.name,
                    "leader": step.leader,
                    "flavours": [asdict(r) for r in step.flavours],
                    "errors": step.errors,
                }
            )
        else:
            _print_step(step)
        raise typer.Exit(1 if step.errors else 0)
    server = None
    if metrics_address is not None:
        host, port = _host_port(metrics_address)
        alive = recently(time.time, lambda: scaler.last_step_at, 3 * scaler.tick() + 60)
        server = MetricsServer(scaler.metrics, host, port, alive).start()
        say(f"serving /metrics and /healthz on {host}:{server.port}", stderr=True)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    say(
        f"autoscaling site {site.name}: {', '.join(site.autoscaled())}" + (" (dry run)" if dry_run else ""), stderr=True
    )
    try:
        scaler.run(stop)
    finally:
        if server is not None:
            server.close()
