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
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from nomadwn import nomad_api as api
from nomadwn.errors import ConfigError, FieldProblem
from nomadwn.model import Site
from nomadwn.nomad import NomadAPI, PlanResult
from nomadwn.render import AUTOSCALER, build_autoscaler_job, build_job
from nomadwn.watch import Verdict, Watcher, explain_placement


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


def deploy_flavour(nomad: NomadAPI, planned: FlavourPlan, watcher: Watcher | None, *, timeout: float) -> DeployResult:
    """Register one planned flavour (unless unchanged) and, with a watcher, follow it to a verdict."""
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
    verdict = watcher.watch(job.ID, job.Type, registered.eval_id, version, timeout)
    return DeployResult(planned.flavour, job.ID, changed=True, registered=True, verdict=verdict)


def previous_stable_version(nomad: NomadAPI, job_id: str, kind: str = "service") -> int | None:
    """What ``rollback`` reverts to: the newest stable version older than the current one.

    Only deployments mark versions stable, and Nomad 1.9 gives deployments to service
    jobs only; for system and batch jobs this is simply the previous version.
    """
    versions = sorted(nomad.versions(job_id), key=lambda v: v.version, reverse=True)
    if not versions:
        return None
    current = versions[0].version
    for v in versions:
        if v.version < current and (v.stable or kind != "service"):
            return v.version
    return None
