"""Nomad commands that change jobs: ``plan``, ``deploy``, ``promote``, ``rollback`` and ``stop``.

Each builds the real Nomad client inside its body (:func:`~nomadwn.cli._common.nomad_client`),
so python-nomad and requests are imported only when a command talks to Nomad.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from nomadwn.cli._common import (
    AddrOpt,
    FlavourArg,
    FlavoursArg,
    NamespaceOpt,
    RegionOpt,
    SiteArg,
    handled,
    nomad_client,
    say,
    seconds,
)

if TYPE_CHECKING:
    from rich.status import Status

    from nomadwn.deploy import FlavourPlan
    from nomadwn.model import Site
    from nomadwn.nomad import NomadAcl, NomadAPI
    from nomadwn.watch import Progress


VerboseOpt = Annotated[
    bool, typer.Option("--verbose", "-v", help="Also print the field-by-field diff of every changed job.")
]


def _print_plan(planned: FlavourPlan, *, verbose: bool = False) -> None:
    """One job's plan in Nomad's own style: job, groups with counts, tasks; templates as line diffs.

    A new job's summary fits on a screen; ``verbose`` adds every changed field.
    """
    plan = planned.plan
    if not plan.changed:
        say(f"{planned.flavour} ({planned.job.ID}): no change")
        return
    updates = ", ".join(f"{k} {v}" for g in plan.desired_updates.values() for k, v in sorted(g.items()) if v)
    headline = f"{planned.flavour} ({planned.job.ID}): {plan.diff_type.lower()}"
    say(headline + (f" ({updates})" if updates else ""), style="yellow")
    for line in plan.summary:
        say(f"  {line}")
    if verbose:
        for line in plan.changes:
            say(f"    {line}")
    if plan.diff_type != "Added":  # a new job's templates are all new: the rendered jobspec shows them
        for change in plan.templates:
            say(f"    template {change.destination} (task {change.task}):")
            for line in change.diff():
                say(f"      {line}", style="green" if line.startswith("+") else "red" if line.startswith("-") else None)
    for problem in planned.placement_problems:
        say(f"    placement: {problem}", style="red")
    if plan.warnings:
        say(f"    warnings: {plan.warnings}", style="yellow")


def _plan(
    site_file: Path,
    flavours: list[str] | None,
    address: str | None,
    namespace: str | None,
    region: str | None,
    verbose: bool = False,
) -> None:
    from nomadwn.deploy import plan_site
    from nomadwn.sitefile import load_site

    site = load_site(site_file)
    plans = plan_site(site, nomad_client(address, namespace, region), flavours or [])
    for planned in plans:
        _print_plan(planned, verbose=verbose)
    if any(p.plan.changed for p in plans):
        raise typer.Exit(1)


def plan(
    site_file: SiteArg,
    flavours: FlavoursArg = None,
    verbose: VerboseOpt = False,
    address: AddrOpt = None,
    namespace: NamespaceOpt = None,
    region: RegionOpt = None,
) -> None:
    """Show what deploying would change, as Nomad's plan does (exit 0 no change, 1 changes, 255 error).

    Per job: the job, its groups with create/destroy/in-place/destructive counts, its
    tasks; a changed template (the HTCondor config, start script) as a line diff of its
    text. --verbose adds the field diff.
    """
    handled(_plan, error_code=255)(site_file, flavours, address, namespace, region, verbose)


class _ProgressView:
    """Live progress: a rich status line on a terminal, plain lines otherwise (logs, CI)."""

    def __init__(self) -> None:
        self._status: Status | None = None

    def __call__(self, progress: Progress) -> None:
        if self._status is not None:
            from rich.text import Text

            self._status.update(Text(progress.line()))
        else:
            typer.echo(progress.line())

    @contextlib.contextmanager
    def showing(self, what: str) -> Iterator[None]:
        """Show a live status line while ``what`` is watched (on a terminal only)."""
        from rich.console import Console
        from rich.text import Text

        out = Console(highlight=False, soft_wrap=True)
        if not out.is_terminal:
            yield
            return
        with out.status(Text(what)) as status:
            self._status = status
            try:
                yield
            finally:
                self._status = None


@handled
def deploy(
    site_file: SiteArg,
    flavours: FlavoursArg = None,
    detach: Annotated[bool, typer.Option("--detach", help="Register and return without watching.")] = False,
    timeout: Annotated[str, typer.Option("--timeout", help="How long to watch each flavour, e.g. 10m.")] = "10m",
    auto_promote: Annotated[
        bool, typer.Option("--auto-promote", help="Promote canaries once they are healthy.")
    ] = False,
    min_healthy_time: Annotated[
        str | None,
        typer.Option(
            "--min-healthy-time",
            help="Where nomadwn judges health itself (batch jobs; system jobs up to Nomad 1.10): how long each "
            "worker must pass its checks (default: the flavour's update.min_healthy_time, else Nomad's 10s).",
        ),
    ] = None,
    apply_policies: Annotated[
        bool,
        typer.Option(
            "--apply-policies",
            help="With the autoscaler: attach its Nomad ACL policy (jobspecs/<site>/acl/) to its job first "
            "(needs a management token); without it the command to do so is printed.",
        ),
    ] = False,
    drain: Annotated[
        bool,
        typer.Option(
            "--drain",
            help="Before registering a change that replaces or stops workers, drain those workers and wait "
            "until their payloads are done, so Nomad's stop finds them empty (see nomadwn drain).",
        ),
    ] = False,
    address: AddrOpt = None,
    namespace: NamespaceOpt = None,
    region: RegionOpt = None,
) -> None:
    """Plan, register (check-and-set, keeping scaled counts) and watch each flavour to a verdict.

    Service jobs (and system jobs from Nomad 2.0) follow Nomad's deployment. Up to Nomad
    1.10 a system job has none: nomadwn waits until every node runs the new version and
    each worker has passed its Consul checks (CONSUL_HTTP_ADDR) for min_healthy_time,
    and with auto_revert it reverts a failed rollout itself.
    """
    import dataclasses

    from nomadwn.consul_health import ConsulClient
    from nomadwn.consul_settings import ConsulSettings
    from nomadwn.deploy import deploy_flavour, plan_site, rollout_of
    from nomadwn.render import AUTOSCALER
    from nomadwn.sitefile import load_site
    from nomadwn.watch import Watcher

    timeout_s = seconds(timeout, "--timeout")
    min_healthy_s = None if min_healthy_time is None else seconds(min_healthy_time, "--min-healthy-time")
    site = load_site(site_file)
    nomad = nomad_client(address, namespace, region)
    view = _ProgressView()
    # Consul tells the workers' health where Nomad does not track a rollout (system jobs up to 1.10).
    consul = ConsulClient(ConsulSettings.from_env())
    watcher = None if detach else Watcher(nomad, on_progress=view, auto_promote=auto_promote, consul=consul)
    worst = 0
    plans = plan_site(site, nomad, flavours or [])
    if any(p.flavour == AUTOSCALER for p in plans):
        from nomadwn.nomad import NomadSettings
        from nomadwn.nomad_client import NomadClient

        acl = NomadClient(NomadSettings.from_env(address=address, namespace=namespace, region=region))
        _autoscaler_policies(site, acl, apply=apply_policies)
    for planned in plans:
        _print_plan(planned)
        if drain and planned.plan.changed and planned.flavour in site.flavours:
            _drain_replaced(site, planned, nomad)
        rollout = rollout_of(site, planned.flavour)
        if min_healthy_s is not None:
            rollout = dataclasses.replace(rollout, min_healthy_time=min_healthy_s)
        with view.showing(f"watching {planned.job.ID}"):
            result = deploy_flavour(nomad, planned, watcher, timeout=timeout_s, rollout=rollout)
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


def _drain_replaced(site: Site, planned: FlavourPlan, nomad: NomadAPI) -> None:
    """Drain the workers ``planned`` will stop and wait until they are empty (exit 2 on timeout)."""
    from nomadwn import drain as d
    from nomadwn.cli._common import condor_source

    condor = condor_source(site.flavours[planned.flavour].htcondor.collector)
    chosen = d.replaced(planned.plan, d.targets(site, planned.flavour, nomad, condor))
    if not chosen:
        return
    result = d.drain(condor, chosen, reason="nomadwn deploy --drain")
    if not result.ok:
        for name, why in result.failed.items():
            say(f"  {name or '(not in the pool yet)'}: {why}", style="red")
        say(f"{planned.flavour}: not registered: some workers it replaces could not be drained", style="red")
        raise typer.Exit(1)
    say(f"{planned.flavour}: draining the {len(chosen)} worker(s) this change replaces before Nomad stops them")

    def progress(p: d.Progress) -> None:
        say(f"  {p.elapsed:5.0f}s: {p.payloads} payload(s) still running on {p.busy} of {p.total} worker(s)")

    busy = d.wait_empty(site, condor, chosen, timeout=d.default_timeout(site, planned.flavour), on_progress=progress)
    if busy:
        say(f"{planned.flavour}: not registered: {len(busy)} worker(s) still run payloads", style="red")
        raise typer.Exit(2)


def _autoscaler_policies(site: Site, nomad: NomadAcl, *, apply: bool) -> None:
    """Say (or, with ``apply``, do) the ACL step of the autoscaler: it runs on workload identity, no token."""
    from nomadwn.render import acl_policies

    for policy in acl_policies(site):
        path = Path("jobspecs") / site.name / "acl" / policy.file_name
        if policy.system == "nomad" and apply:
            a = site.autoscaler
            nomad.apply_acl_policy(
                policy.name,
                policy.rules,
                description=f"nomadwn autoscaler of site {site.name}",
                namespace=a.placement.namespace if a is not None else "default",
                job_id=site.autoscaler_job_id,
            )
            say(f"autoscaler: applied Nomad ACL policy {policy.name} to job {site.autoscaler_job_id}")
        elif policy.system == "nomad":
            say("autoscaler: its Nomad ACL policy must be attached to its job (or pass --apply-policies):")
            say(f"    {policy.install_command(site, path)}")
        else:
            say("autoscaler: its Consul token comes from Nomad's workload login; the Consul role needs:")
            say(f"    {policy.install_command(site, path)}")


def _job_id(site_file: Path, flavour: str) -> str:
    from nomadwn.deploy import select_flavours
    from nomadwn.sitefile import load_site

    site = load_site(site_file)
    select_flavours(site, [flavour])
    return site.job_id(flavour) if flavour in site.flavours else site.autoscaler_job_id


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
    nomad = nomad_client(address, namespace, region)
    deployment = nomad.latest_deployment(job_id).value
    if deployment is None or deployment.status != "running":
        say(f"error: {job_id} has no running deployment to promote", style="red", stderr=True)
        raise typer.Exit(1)
    nomad.promote(deployment.id)
    say(f"promoted deployment {deployment.id} of {job_id}")


@handled
def rollback(
    site_file: SiteArg,
    flavour: FlavourArg,
    address: AddrOpt = None,
    namespace: NamespaceOpt = None,
    region: RegionOpt = None,
) -> None:
    """Revert a flavour's job to its previous stable version.

    Stable versions come from deployments: service jobs, and system jobs from Nomad 2.0;
    a system job on 1.10 reverts to its previous version.
    """
    from nomadwn.deploy import previous_stable_version, rollout_of, select_flavours
    from nomadwn.sitefile import load_site

    site = load_site(site_file)
    select_flavours(site, [flavour])
    job_id = site.job_id(flavour) if flavour in site.flavours else site.autoscaler_job_id
    nomad = nomad_client(address, namespace, region)
    current = nomad.job(job_id)
    tracked = rollout_of(site, flavour).tracked
    target = previous_stable_version(nomad, job_id, current.type if current else "service", deployments=tracked)
    if current is None or target is None:
        say(f"error: {job_id} has no earlier stable version to roll back to", style="red", stderr=True)
        raise typer.Exit(1)
    nomad.revert(job_id, target, enforce_prior_version=current.version)
    say(f"reverted {job_id} from version {current.version} to version {target}")


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
    eval_id = nomad_client(address, namespace, region).stop(job_id, purge=purge)
    say(f"stopped {job_id}" + (" and purged it" if purge else "") + (f" (evaluation {eval_id})" if eval_id else ""))
