"""Plan and deploy a site's flavours on Nomad.

The path, one way, per flavour::

    site model --render--> job --plan--> nothing changed? stop here (exit 0)
                                   |
                                   v
        register (EnforceIndex = the plan's JobModifyIndex, PreserveCounts)
                                   |
                                   v
                      watch to a verdict (unless detached)

``EnforceIndex`` makes the register a check-and-set: if someone changed the job
between plan and register, Nomad refuses it instead of overwriting their change.
``PreserveCounts`` keeps group counts that the autoscaler set since the last deploy.

How the verdict is reached depends on the Nomad version (:func:`rollout_of`): a
system job gets a deployment only from Nomad 1.11 (2.0) on; up to 1.10 nomadwn judges
each node's worker itself and, when the flavour asks for ``auto_revert``, reverts a
failed rollout itself (Nomad's system scheduler keeps rolling a broken version out,
``max_parallel`` nodes per ``stagger``).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, replace

from nomadwn import nomad_api as api
from nomadwn.errors import ConfigError, FieldProblem
from nomadwn.model import Site, system_deployments, update_strategy
from nomadwn.nomad import NomadAPI, PlanResult
from nomadwn.render import AUTOSCALER, build_autoscaler_job, build_job
from nomadwn.units import duration_seconds
from nomadwn.watch import Rollout, Verdict, Watcher, explain_placement


@dataclass(frozen=True)
class FlavourPlan:
    """What Nomad would do with one flavour's job."""

    flavour: str
    job: api.Job
    plan: PlanResult

    @property
    def placement_problems(self) -> list[str]:
        """Plain-words placement failures Nomad predicts."""
        return [explain_placement(g, f) for g, f in sorted(self.plan.failed_allocs.items())]


@dataclass(frozen=True)
class DeployResult:
    """How one flavour's deploy ended."""

    flavour: str
    job_id: str
    changed: bool
    registered: bool
    verdict: Verdict | None
    reverted_to: int | None = None

    @property
    def exit_code(self) -> int:
        """0 unchanged, registered (detached) or healthy; 1 failed; 2 timed out."""
        return self.verdict.exit_code if self.verdict is not None else 0


def select_flavours(site: Site, names: Iterable[str]) -> list[str]:
    """The flavours named (all when none is, then the autoscaler if the site has one), refusing unknown names."""
    known = list(site.flavours) + ([AUTOSCALER] if site.autoscaler is not None else [])
    wanted = list(names) or known
    unknown = [n for n in wanted if n not in known]
    if unknown:
        problems = [
            FieldProblem(f"flavours.{n}", f"no such flavour; the site has: {', '.join(known)}") for n in unknown
        ]
        raise ConfigError("command line", problems, context="")
    return wanted


def plan_site(site: Site, nomad: NomadAPI, flavours: Iterable[str] = ()) -> list[FlavourPlan]:
    """Plan every selected flavour."""
    plans = []
    for name in select_flavours(site, flavours):
        job = build_autoscaler_job(site) if name not in site.flavours else build_job(site, name)
        plans.append(FlavourPlan(flavour=name, job=job, plan=nomad.plan(job)))
    return plans


def rollout_of(site: Site, name: str) -> Rollout:
    """How to judge flavour ``name``'s rollout on the site's Nomad version (the autoscaler: a service)."""
    if name not in site.flavours:
        return Rollout(tracked=True, nomad_version=site.nomad.version)
    f = site.flavours[name]
    u = update_strategy(site, name)
    if f.kind == "service":
        tracked = True
    elif f.kind == "system":
        # 1.11+: Canonicalize gives system jobs the default strategy; max_parallel = 0 opts out.
        tracked = system_deployments(site) and (u is None or u.max_parallel > 0)
    else:
        tracked = False
    return Rollout(
        tracked=tracked,
        health_check=u.health_check if u is not None else "checks",
        min_healthy_time=duration_seconds(u.min_healthy_time) if u is not None else 10.0,
        healthy_deadline=duration_seconds(u.healthy_deadline) if u is not None else 300.0,
        service=f.service.name,
        nomad_version=site.nomad.version,
        self_revert=f.kind == "system" and not tracked and u is not None and u.auto_revert,
    )


def deploy_flavour(
    nomad: NomadAPI, planned: FlavourPlan, watcher: Watcher | None, *, timeout: float, rollout: Rollout | None = None
) -> DeployResult:
    """Register one planned flavour (unless unchanged) and, with a watcher, follow it to a verdict.

    When the rollout fails and ``rollout.self_revert`` is set, nomadwn reverts the job
    to the version before it (check-and-set on the failed version) and says so.
    """
    job = planned.job
    if not planned.plan.changed:
        return DeployResult(planned.flavour, job.ID, changed=False, registered=False, verdict=None)
    registered = nomad.register(job, enforce_index=planned.plan.job_modify_index, preserve_counts=True)
    if watcher is None:
        return DeployResult(planned.flavour, job.ID, changed=True, registered=True, verdict=None)
    if job.ParameterizedJob is not None:
        summary = "registered a parameterized job: `nomadwn autoscale` dispatches its workers"
        return DeployResult(planned.flavour, job.ID, True, True, Verdict(job.ID, "healthy", summary))
    status = nomad.job(job.ID)
    version = status.version if status is not None else 0
    verdict = watcher.watch(job.ID, job.Type, registered.eval_id, version, timeout, rollout)
    reverted_to = None
    if verdict.outcome == "failed" and rollout is not None and rollout.self_revert:
        target = previous_stable_version(nomad, job.ID, job.Type, deployments=False)
        if target is None:
            note = f"auto_revert: {job.ID} has no earlier version to revert to"
        else:
            again = nomad.revert(job.ID, target, enforce_prior_version=version)
            reverted_to = target
            note = (
                f"auto_revert: Nomad {rollout.nomad_version} cannot revert a system job, so nomadwn reverted "
                f"{job.ID} from version {version} to version {target} (evaluation {again.eval_id[:8]}); "
                "follow it with `nomadwn status`"
            )
        verdict = replace(verdict, reasons=[*verdict.reasons, note])
    return DeployResult(planned.flavour, job.ID, True, True, verdict, reverted_to)


def previous_stable_version(
    nomad: NomadAPI, job_id: str, kind: str = "service", *, deployments: bool | None = None
) -> int | None:
    """What ``rollback`` reverts to: the newest stable version older than the current one.

    Only deployments mark versions stable: service jobs always, system jobs from Nomad
    1.11 on (``deployments``; default: service jobs only). Without deployments this is
    simply the previous version.
    """
    tracked = kind == "service" if deployments is None else deployments
    versions = sorted(nomad.versions(job_id), key=lambda v: v.version, reverse=True)
    if not versions:
        return None
    current = versions[0].version
    for v in versions:
        if v.version < current and (v.stable or not tracked):
            return v.version
    return None
