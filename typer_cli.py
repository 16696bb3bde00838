"""The ``nomadwn`` command line (Typer).

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

import contextlib
import functools
import json
import logging
import os
import signal
import socket
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict
from pathlib import Path
from typing import Annotated, Any, ParamSpec, TypeVar

import typer
from rich.console import Console
from rich.status import Status
from rich.table import Table
from rich.text import Text

from nomadwn import __version__
from nomadwn.autoscale.loop import Autoscaler, StepReport
from nomadwn.condor import CondorSettings, HTCondorSource
from nomadwn.consul import ConsulClient, ConsulLock, ConsulSettings
from nomadwn.deploy import FlavourPlan, deploy_flavour, plan_site, previous_stable_version, select_flavours
from nomadwn.errors import ConfigError, FieldProblem, NomadwnError
from nomadwn.metrics import MetricsServer, recently
from nomadwn.model import Site, dispatched, shutdown_plan, site_warnings
from nomadwn.nomad import NomadAPI, NomadClient, NomadSettings
from nomadwn.render import Format, jobspec_files, privileges, stale_jobspecs, write_jobspecs
from nomadwn.resources import example_site_text
from nomadwn.sitefile import load_site
from nomadwn.status import site_status
from nomadwn.units import duration_seconds, duration_text, parse_duration_ns
from nomadwn.watch import Progress, Watcher

app = typer.Typer(
    name="nomadwn",
    help="Containerised HTCondor worker nodes on Nomad and Consul: validate a site file and render its Nomad jobs.",
    no_args_is_help=True,
    add_completion=False,
    rich_markup_mode=None,
)
out = Console(highlight=False, soft_wrap=True)
err = Console(stderr=True, highlight=False, soft_wrap=True)

P = ParamSpec("P")
R = TypeVar("R")

SiteArg = Annotated[Path, typer.Argument(help="The site file (YAML).", show_default=False)]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print one JSON document on stdout instead of text.")]


def say(text: str, *, style: str | None = None, stderr: bool = False) -> None:
    """Print plain text: never read as rich markup, so site-file values cannot inject any."""
    (err if stderr else out).print(text, markup=False, style=style)


def handled(command: Callable[P, R], error_code: int = 1) -> Callable[P, R]:
    """The CLI's one error handler: a nomadwn error prints its message and exits 1; Ctrl-C exits 130."""

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

    return wrapper


def _emit_json(document: Any) -> None:
    typer.echo(json.dumps(document, indent=2, sort_keys=True))


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


@app.command()
@handled
def init(
    path: Annotated[Path, typer.Argument(help="Where to write the example site file.")] = Path("site.yaml"),
    force: Annotated[bool, typer.Option("--force", help="Overwrite the file if it exists.")] = False,
) -> None:
    """Write a commented example site file to start from."""
    if path.exists() and not force:
        say(f"error: {path} exists; choose another path or pass --force to overwrite it", style="red", stderr=True)
        raise typer.Exit(1)
    try:
        path.write_text(example_site_text(), encoding="utf-8")
    except OSError as exc:
        say(f"error: cannot write {path}: {exc.strerror}", style="red", stderr=True)
        raise typer.Exit(1) from None
    say(f"wrote {path}: edit it, then run `nomadwn validate {path}`")


@app.command()
@handled
def validate(site_file: SiteArg, as_json: JsonOpt = False) -> None:
    """Check a site file; name every bad field and how to fix it (exit 1 if any)."""
    try:
        site = load_site(site_file)
    except ConfigError as exc:
        if not as_json:
            raise
        _emit_json(
            {
                "ok": False,
                "file": str(site_file),
                "problems": [{"path": p.path, "message": p.message} for p in exc.problems],
            }
        )
        raise typer.Exit(1) from None
    warnings = site_warnings(site)
    summary = [
        {
            "flavour": name,
            "job_id": site.job_id(name),
            "kind": f.kind,
            "image": f.image.reference,
            "cvmfs": f.cvmfs.mode,
            "count": f.count if f.kind != "system" else None,
            "privileges": privileges(f),
            "retirement": duration_text(shutdown_plan(site, name).retirement),
            "kill_timeout": duration_text(shutdown_plan(site, name).kill_timeout),
        }
        for name, f in site.flavours.items()
    ]
    if as_json:
        _emit_json(
            {
                "ok": True,
                "file": str(site_file),
                "site": site.name,
                "flavours": summary,
                "warnings": [{"path": w.path, "message": w.message} for w in warnings],
            }
        )
        return
    say(f"{site_file}: valid site {site.name!r} with {len(summary)} flavour(s)", style="green")
    for name, f in site.flavours.items():
        count = "one per node" if f.kind == "system" else f"count {1 if f.count is None else f.count}"
        if dispatched(f):
            count = "parameterized, dispatched by the autoscaler"
        say(f"  {name}: {f.kind} job {site.job_id(name)} ({count}), image {f.image.reference}, CVMFS {f.cvmfs.mode}")
        plan = shutdown_plan(site, name)
        say(
            f"    stop: no new payloads, running ones retire up to {duration_text(plan.retirement)}; "
            f"Nomad kill_timeout {duration_text(plan.kill_timeout)}"
        )
        for line in privileges(f):
            say(f"    PRIVILEGE: {line}", style="yellow")
    for warning in warnings:
        say(f"warning: {warning.path}: {warning.message}", style="yellow", stderr=True)


@app.command()
@handled
def render(
    site_file: SiteArg,
    out_dir: Annotated[Path, typer.Option("--out", help="Directory for <site>/<flavour>.nomad.hcl and .json.")] = Path(
        "jobspecs"
    ),
    check: Annotated[
        bool, typer.Option("--check", help="Write nothing; show a diff and exit 1 if the files on disk are stale.")
    ] = False,
    fmt: Annotated[Format, typer.Option("--format", help="Which files to render.")] = "both",
    as_json: JsonOpt = False,
) -> None:
    """Render a site's Nomad jobs (HCL for review, JSON for the HTTP API)."""
    site = load_site(site_file)
    files = jobspec_files(site, out_dir, fmt)
    if check:
        stale = stale_jobspecs(files)
        if as_json:
            _emit_json({"fresh": not stale, "stale": sorted(str(p) for p in stale)})
        else:
            for path, diff in stale.items():
                typer.echo(diff, nl=False)
                say(f"stale: {path}", style="red", stderr=True)
            if stale:
                say(
                    f"{len(stale)} jobspec file(s) are stale: run `nomadwn render {site_file}` and commit them",
                    stderr=True,
                )
            else:
                say(f"{len(files)} jobspec file(s) are fresh", style="green")
        if stale:
            raise typer.Exit(1)
        return
    changed = write_jobspecs(files)
    if as_json:
        _emit_json({"written": [str(p) for p in changed], "unchanged": [str(p) for p in files if p not in changed]})
        return
    for path in files:
        say(f"{'wrote    ' if path in changed else 'unchanged'} {path}")


# ---------------------------------------------------------------------------
# Nomad commands

AddrOpt = Annotated[str | None, typer.Option("--address", help="Nomad's address (default: NOMAD_ADDR).")]
NamespaceOpt = Annotated[str | None, typer.Option("--namespace", help="Nomad namespace (default: NOMAD_NAMESPACE).")]
RegionOpt = Annotated[str | None, typer.Option("--region", help="Nomad region (default: NOMAD_REGION).")]
FlavoursArg = Annotated[list[str] | None, typer.Argument(help="Flavours to act on (default: all).", show_default=False)]
FlavourArg = Annotated[str, typer.Argument(help="The flavour to act on.", show_default=False)]


def _nomad(address: str | None, namespace: str | None, region: str | None) -> NomadAPI:
    return NomadClient(NomadSettings.from_env(address=address, namespace=namespace, region=region))


def _print_plan(planned: FlavourPlan) -> None:
    plan = planned.plan
    if not plan.changed:
        say(f"{planned.flavour} ({planned.job.ID}): no change")
        return
    updates = ", ".join(f"{k} {v}" for g in plan.desired_updates.values() for k, v in sorted(g.items()) if v)
    headline = f"{planned.flavour} ({planned.job.ID}): {plan.diff_type.lower()}"
    say(headline + (f" ({updates})" if updates else ""), style="yellow")
    for line in plan.changes:
        say(f"    {line}")
    for problem in planned.placement_problems:
        say(f"    placement: {problem}", style="red")
    if plan.warnings:
        say(f"    warnings: {plan.warnings}", style="yellow")


def _plan(
    site_file: Path, flavours: list[str] | None, address: str | None, namespace: str | None, region: str | None
) -> None:
    site = load_site(site_file)
    plans = plan_site(site, _nomad(address, namespace, region), flavours or [])
    for planned in plans:
        _print_plan(planned)
    if any(p.plan.changed for p in plans):
        raise typer.Exit(1)


@app.command()
def plan(
    site_file: SiteArg,
    flavours: FlavoursArg = None,
    address: AddrOpt = None,
    namespace: NamespaceOpt = None,
    region: RegionOpt = None,
) -> None:
    """Show what deploying would change (exit 0 no change, 1 changes, 255 error)."""
    handled(_plan, error_code=255)(site_file, flavours, address, namespace, region)


def _seconds(text: str, option: str) -> float:
    try:
        return parse_duration_ns(text) / 1e9
    except ValueError as exc:
        raise typer.BadParameter(str(exc), param_hint=option) from None


class _ProgressView:
    """Live progress: a rich status line on a terminal, plain lines otherwise (logs, CI)."""

    def __init__(self) -> None:
        self._status: Status | None = None

    def __call__(self, progress: Progress) -> None:
        if self._status is not None:
            self._status.update(Text(progress.line()))
        else:
            typer.echo(progress.line())

    @contextlib.contextmanager
    def showing(self, what: str) -> Iterator[None]:
        """Show a live status line while ``what`` is watched (on a terminal only)."""
        if not out.is_terminal:
            yield
            return
        with out.status(Text(what)) as status:
            self._status = status
            try:
                yield
            finally:
                self._status = None


@app.command()
@handled
def deploy(
    site_file: SiteArg,
    flavours: FlavoursArg = None,
    detach: Annotated[bool, typer.Option("--detach", help="Register and return without watching.")] = False,
    timeout: Annotated[str, typer.Option("--timeout", help="How long to watch each flavour, e.g. 10m.")] = "10m",
    auto_promote: Annotated[
        bool, typer.Option("--auto-promote", help="Promote canaries once they are healthy.")
    ] = False,
    min_running: Annotated[
        str, typer.Option("--min-running", help="System/batch jobs: how long workers must keep running to be healthy.")
    ] = "10s",
    address: AddrOpt = None,
    namespace: NamespaceOpt = None,
    region: RegionOpt = None,
) -> None:
    """Plan, register (check-and-set, keeping scaled counts) and watch each flavour to a verdict."""
    timeout_s = _seconds(timeout, "--timeout")
    min_running_s = _seconds(min_running, "--min-running")
    site = load_site(site_file)
    nomad = _nomad(address, namespace, region)
    view = _ProgressView()
    watcher = None if detach else Watcher(nomad, on_progress=view, auto_promote=auto_promote, min_running=min_running_s)
    worst = 0
    for planned in plan_site(site, nomad, flavours or []):
        _print_plan(planned)
        with view.showing(f"watching {planned.job.ID}"):
            result = deploy_flavour(nomad, planned, watcher, timeout=timeout_s)
        if not result.changed:
            continue
        if result.verdict is None:
            say(f"{planned.flavour}: registered {result.job_id}; not watching (--detach)")
            continue
        verdict = result.verdict
        style = "green" if verdict.exit_code == 0 else "red"
        say(f"{planned.flavour}: {verdict.outcome}: {verdict.summary}", style=style)
        for reason in verdict.reasons:
            say(f"    {reason}", style=style)
        worst = max(worst, verdict.exit_code)
    if worst:
        raise typer.Exit(worst)


def _job_id(site_file: Path, flavour: str) -> str:
    site = load_site(site_file)
    select_flavours(site, [flavour])
    return site.job_id(flavour)


@app.command()
@handled
def promote(
    site_file: SiteArg,
    flavour: FlavourArg,
    address: AddrOpt = None,
    namespace: NamespaceOpt = None,
    region: RegionOpt = None,
) -> None:
    """Promote the canaries of a flavour's running deployment."""
    job_id = _job_id(site_file, flavour)
    nomad = _nomad(address, namespace, region)
    deployment = nomad.latest_deployment(job_id).value
    if deployment is None or deployment.status != "running":
        say(f"error: {job_id} has no running deployment to promote", style="red", stderr=True)
        raise typer.Exit(1)
    nomad.promote(deployment.id)
    say(f"promoted deployment {deployment.id} of {job_id}")


@app.command()
@handled
def rollback(
    site_file: SiteArg,
    flavour: FlavourArg,
    address: AddrOpt = None,
    namespace: NamespaceOpt = None,
    region: RegionOpt = None,
) -> None:
    """Revert a flavour's job to its previous stable version."""
    job_id = _job_id(site_file, flavour)
    nomad = _nomad(address, namespace, region)
    current = nomad.job(job_id)
    target = previous_stable_version(nomad, job_id, current.type if current else "service")
    if current is None or target is None:
        say(f"error: {job_id} has no earlier stable version to roll back to", style="red", stderr=True)
        raise typer.Exit(1)
    nomad.revert(job_id, target, enforce_prior_version=current.version)
    say(f"reverted {job_id} from version {current.version} to version {target}")


@app.command()
@handled
def stop(
    site_file: SiteArg,
    flavour: FlavourArg,
    purge: Annotated[bool, typer.Option("--purge", help="Also forget the job and its history.")] = False,
    address: AddrOpt = None,
    namespace: NamespaceOpt = None,
    region: RegionOpt = None,
) -> None:
    """Stop a flavour's job (its workers shut down gracefully within kill_timeout)."""
    job_id = _job_id(site_file, flavour)
    eval_id = _nomad(address, namespace, region).stop(job_id, purge=purge)
    say(f"stopped {job_id}" + (" and purged it" if purge else "") + (f" (evaluation {eval_id})" if eval_id else ""))


@app.command()
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
    site = load_site(site_file)
    nomad = _nomad(address, namespace, region)
    consul = None if no_consul else ConsulClient(ConsulSettings.from_env())
    rows = site_status(site, select_flavours(site, flavours or []), nomad, consul)
    if as_json:
        _emit_json({"site": site.name, "flavours": [r.as_json() for r in rows]})
        return
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
    out.print(table)


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


@app.command()
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
    site = load_site(site_file)
    logging.basicConfig(level=logging.INFO, format="%(message)s", stream=sys.stderr)
    nomad = _nomad(address, namespace, region)
    # Precedence: the site file's collector < the environment (CONDOR_HOST, _CONDOR_COLLECTOR_HOST).
    file_collectors = {"CONDOR_HOST": ",".join(_collectors(site))}
    condor = HTCondorSource(CondorSettings.from_env({**file_collectors, **os.environ}))
    leadership = None
    if not (dry_run or no_lock):
        a = site.autoscaler
        leadership = ConsulLock(
            ConsulSettings.from_env(),
            site.lock_key,
            holder=holder or os.environ.get("NOMADWN_HOLDER") or f"{socket.gethostname()}:{os.getpid()}",
            ttl=duration_seconds(a.lock_ttl) if a is not None else 20.0,
            lock_delay=duration_seconds(a.lock_delay) if a is not None else 15.0,
        )
    scaler = Autoscaler(site, condor, nomad, leadership=leadership, dry_run=dry_run)
    if once:
        step = scaler.step(force=True)
        if leadership is not None:
            leadership.release()
        if as_json:
            _emit_json(
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


def _collectors(site: Site) -> list[str]:
    names = site.autoscaled()
    return list(site.flavours[names[0]].htcondor.collector) if names else []


def main() -> None:
    """Entry point of the ``nomadwn`` console script."""
    app()


if __name__ == "__main__":
    main()
