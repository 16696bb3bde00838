"""``nomadwn simulate``: replay a queue history through the real autoscaler against a model pool.

The simulator, rich and matplotlib are imported inside the command, so only
``simulate`` pays for them.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from nomadwn.cli._common import JsonOpt, SiteArg, emit_json, handled, say, seconds
from nomadwn.errors import ConfigError, FieldProblem

if TYPE_CHECKING:
    from rich.console import Console

    from nomadwn.simulate.world import Cluster


def parse_cluster(text: str) -> Cluster:
    """``NODESxCORES[xMEMORY]``: ``16x32``, ``16x32x128GiB`` (memory with a unit, or MB)."""
    from nomadwn.simulate.world import Cluster
    from nomadwn.units import parse_size_mb

    parts = text.lower().split("x")
    bad = ConfigError(
        "--cluster", [FieldProblem("", f"write NODESxCORES[xMEMORY], such as 16x32x128GiB, not {text!r}")], context=""
    )
    if len(parts) not in (2, 3) or not parts[0].isdigit() or not parts[1].isdigit():
        raise bad
    nodes, cores = int(parts[0]), int(parts[1])
    if len(parts) == 3:
        raw = text.split("x" if "x" in text else "X")[2]
        try:
            memory = int(raw) if raw.isdigit() else parse_size_mb(raw)
        except ValueError:
            raise bad from None
    else:
        memory = cores * 4096
    if nodes < 1 or cores < 1 or memory < 1:
        raise bad
    return Cluster(nodes=nodes, cores=cores, memory_mb=memory)


def _baseline(text: str | None) -> int | None:
    if text is None:
        return None
    kind, _, n = text.partition(":")
    if kind != "static" or not n.isdigit() or int(n) < 1:
        raise ConfigError(
            "--baseline", [FieldProblem("", f"write static:N with N >= 1 workers, not {text!r}")], context=""
        )
    return int(n)


@handled
def simulate(
    site_file: SiteArg,
    trace: Annotated[
        Path,
        typer.Option(
            "--trace", help="Queue history: SWF (.swf, .swf.gz) or condor_history -af output.", show_default=False
        ),
    ],
    cluster: Annotated[
        str | None,
        typer.Option("--cluster", help="NODESxCORES[xMEMORY] Nomad clients (default: enough for the core quota)."),
    ] = None,
    start: Annotated[
        str | None, typer.Option("--start", help="Window start: offset from the first submit (30d) or ISO date.")
    ] = None,
    days: Annotated[float | None, typer.Option("--days", help="Window length in days (default: to the end).")] = None,
    scale: Annotated[float, typer.Option("--scale", help="Multiply the arrival rate by K.")] = 1.0,
    baseline: Annotated[
        str | None,
        typer.Option("--baseline", help="static:N to compare with N always-on workers (default: smallest no worse)."),
    ] = None,
    start_delay: Annotated[
        str, typer.Option("--start-delay", help="From Nomad placing a worker to its startd in the collector.")
    ] = "60s",
    negotiator_interval: Annotated[
        str, typer.Option("--negotiator-interval", help="HTCondor's NEGOTIATOR_INTERVAL.")
    ] = "60s",
    memory_per_core: Annotated[
        int, typer.Option("--memory-per-core", help="MB per core for jobs whose memory request is unknown.")
    ] = 2000,
    plot: Annotated[Path | None, typer.Option("--plot", help="Write a PNG of jobs and workers over time.")] = None,
    as_json: JsonOpt = False,
) -> None:
    """Replay a queue history through the real autoscaler on a simulated pool, against a static pool.

    The same observe/decide/act code as `nomadwn autoscale`, on a discrete-event model
    of Nomad (placement after --start-delay, a finite --cluster, scale-in by highest
    name index) and HTCondor (negotiation cycle, partitionable slots, payload run
    times, worker lifespan). Time is simulated. Prints a table (or --json): waits,
    core-hours provisioned/used/idle, peak workers, scaling actions, payloads killed.
    Exit: 0 ok (also when payloads were killed: read the table); 1 a bad site file,
    trace or option.
    """
    from nomadwn.simulate.report import plot as draw
    from nomadwn.simulate.report import table
    from nomadwn.simulate.runner import Options
    from nomadwn.simulate.runner import simulate as replay
    from nomadwn.simulate.trace import read_trace, window
    from nomadwn.sitefile import load_site

    site = load_site(site_file)
    if memory_per_core < 1:
        raise ConfigError("--memory-per-core", [FieldProblem("", "must be at least 1 MB")], context="")
    opts = Options(
        cluster=parse_cluster(cluster) if cluster else None,
        start_delay=seconds(start_delay, "--start-delay"),
        negotiator_interval=max(1.0, seconds(negotiator_interval, "--negotiator-interval")),
        baseline=_baseline(baseline),
    )
    jobs = window(read_trace(trace, memory_per_core_mb=memory_per_core), start=start, days=days, scale=scale)
    if sys.stderr.isatty():
        from rich.progress import Progress

        with Progress(transient=True, console=_stderr_console()) as bar:
            task = bar.add_task("simulating", total=1.0)
            result = replay(site, jobs, opts, progress=lambda done: bar.update(task, completed=done))
    else:
        result = replay(site, jobs, opts)
    if plot is not None:
        draw(result, plot)
    if as_json:
        doc = result.to_json()
        doc["plot"] = str(plot) if plot is not None else None
        emit_json(doc)
        return
    say(table(result))
    if plot is not None:
        say(f"plot: {plot}")


def _stderr_console() -> Console:
    from rich.console import Console

    return Console(stderr=True)
