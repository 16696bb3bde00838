"""Drain first: stop workers taking payloads, follow their payloads to the end, then stop them.

``nomadwn drain`` and ``deploy --drain`` use this. A drain goes through HTCondor's
own drain command (htcondor2 ``Startd.drainJobs`` / ``cancelDrainJobs``, behind
:class:`nomadwn.condor.CondorSource`), not the Autopilot way (a template that
watches a Consul key and reconfigures ``StartJobs``). Why:

* the startd acknowledges the request (a request id) and advertises it at once
  (``Draining``, ``DrainReason``) in the slot ads that ``status`` and the autoscaler
  already read; a Consul key would take a template re-render and a reconfig, with no
  answer to say it happened;
* a graceful drain honours ``MaxJobRetirementTime``: the same retirement as every
  other way a worker stops (:class:`nomadwn.model.ShutdownPlan`);
* it needs no Consul write path and no extra template in every worker, and a worker
  that restarts comes back in service (a forgotten Consul key would keep it drained).

The cost: the host running nomadwn needs ADMINISTRATOR access to the startds.

One target (one worker, one Nomad allocation)::

    selected --drain--> draining --no claimed slot--> empty --stop allocation--> stopped
        ^                  |
        +-----cancel-------+

*Stopping* is Nomad's per-allocation stop (``POST /v1/allocation/<id>/stop``): the
group's count is unchanged, so Nomad places a fresh replacement (on any eligible
node; mark a node ineligible first to empty it). To shrink a flavour instead, scale
it (the autoscaler drains the workers a scale-in will remove).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from nomadwn.condor import CondorSource
from nomadwn.errors import ConfigError, FieldProblem
from nomadwn.model import Site, dispatched, shutdown_plan
from nomadwn.nomad import Allocation, NomadAPI, PlanResult
from nomadwn.pool import DrainResult, Worker

DRAIN_REASON = "nomadwn drain"


@dataclass(frozen=True)
class Target:
    """One worker to drain: its Nomad allocation and, once it reached the collector, its startd."""

    alloc: Allocation
    worker: Worker | None

    @property
    def startd(self) -> str:
        """The startd's name ("" until the worker reached the collector)."""
        return self.worker.name if self.worker is not None else ""

    @property
    def running(self) -> int:
        """Payloads (claimed slots) still running on it, as its last advertised slot ads say."""
        return self.worker.claimed_slots if self.worker is not None else 0

    @property
    def empty(self) -> bool:
        """Drained and running nothing, or gone from the pool.

        Only an ad that says *draining* counts: the startd republishes its slots when
        it takes the drain, so that ad is newer than the request, and a payload that
        started just before it (and which an older ad, still in the collector a few
        seconds, does not show) is in it. Measured on HTCondor 23.9: a payload the
        schedd already reports running was missing from the collector's ads for ~1 s.
        """
        if self.worker is None:
            return True
        return self.worker.state == "draining" and self.worker.claimed_slots == 0


@dataclass(frozen=True)
class Progress:
    """Where a wait for drained workers stands."""

    elapsed: float
    payloads: int
    busy: int
    total: int


def job_ids(site: Site, flavour: str, nomad: NomadAPI) -> list[str]:
    """The Nomad jobs holding the flavour's workers (a dispatched flavour's children)."""
    job_id = site.job_id(flavour)
    if dispatched(site.flavours[flavour]):
        return [child.id for child in nomad.dispatched(job_id) if child.running or child.starting]
    return [job_id]


def targets(
    site: Site,
    flavour: str,
    nomad: NomadAPI,
    condor: CondorSource,
    *,
    alloc_ids: Sequence[str] = (),
    node: str | None = None,
) -> list[Target]:
    """The flavour's live workers, narrowed to ``alloc_ids`` (full IDs or prefixes) and ``node``."""
    if flavour not in site.flavours:
        known = ", ".join(site.flavours)
        raise ConfigError("the command line", [FieldProblem("FLAVOUR", f"no flavour {flavour!r}; use one of: {known}")])
    allocs = [
        a
        for job_id in job_ids(site, flavour, nomad)
        for a in nomad.allocations(job_id).value
        if a.desired_status == "run" and a.client_status in ("pending", "running")
    ]
    if alloc_ids:
        chosen = []
        for wanted in alloc_ids:
            matches = [a for a in allocs if a.id.startswith(wanted)]
            if len(matches) != 1:
                why = "matches no live allocation" if not matches else f"matches {len(matches)} allocations"
                raise ConfigError(
                    "the command line", [FieldProblem("--alloc", f"{wanted} {why} of {site.job_id(flavour)}")]
                )
            chosen.append(matches[0])
        allocs = list(dict.fromkeys(chosen))
    if node is not None:
        allocs = [a for a in allocs if node in (a.node_name, a.node_id)]
    workers = {w.alloc_id: w for w in condor.workers(site.name).workers}
    return [Target(alloc=a, worker=workers.get(a.id)) for a in allocs]


def replaced(plan: PlanResult, chosen: Sequence[Target]) -> list[Target]:
    """The workers a planned job change will stop: all of them on a destructive update, else the top ``Stop``.

    Nomad's plan counts, per group, ``DestructiveUpdate`` (every allocation is replaced)
    and ``Stop``/``Migrate`` (a smaller count stops the highest name indexes first).
    """
    counts = {k: sum(g.get(k, 0) for g in plan.desired_updates.values()) for k in ("DestructiveUpdate", "Stop")}
    if counts["DestructiveUpdate"]:
        return list(chosen)
    if not counts["Stop"]:
        return []
    by_index = sorted(chosen, key=lambda t: t.alloc.index if t.alloc.index is not None else -1, reverse=True)
    return by_index[: counts["Stop"]]


def drain(condor: CondorSource, chosen: Sequence[Target], *, reason: str = DRAIN_REASON) -> DrainResult:
    """Ask each target's startd to take no new payload (running ones keep their retirement)."""
    return condor.drain([t.startd for t in chosen], reason=reason)


def cancel(condor: CondorSource, chosen: Sequence[Target]) -> DrainResult:
    """Put each target back in service."""
    return condor.cancel_drain([t.startd for t in chosen])


def default_timeout(site: Site, flavour: str) -> float:
    """How long a drain can take: the retirement HTCondor grants, its vacate time, and slack."""
    plan = shutdown_plan(site, flavour)
    return (plan.startd_graceful_timeout + plan.vacate).total_seconds() + 60


def wait_empty(
    site: Site,
    condor: CondorSource,
    chosen: Sequence[Target],
    *,
    timeout: float,
    poll: float = 10.0,
    on_progress: Callable[[Progress], None] | None = None,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
) -> list[Target]:
    """Wait until every target is :attr:`Target.empty`; return those still busy at ``timeout``."""
    start = clock()
    wanted = {t.alloc.id for t in chosen}
    while True:
        workers = {w.alloc_id: w for w in condor.workers(site.name).workers if w.alloc_id in wanted}
        now = [Target(alloc=t.alloc, worker=workers.get(t.alloc.id)) for t in chosen]
        busy = [t for t in now if not t.empty]
        if on_progress is not None:
            on_progress(Progress(clock() - start, sum(t.running for t in busy), len(busy), len(now)))
        if not busy or clock() - start >= timeout:
            return busy
        sleep(poll)


def stop(nomad: NomadAPI, chosen: Sequence[Target]) -> list[str]:
    """Stop each target's allocation; Nomad places a fresh replacement (the count is kept)."""
    return [nomad.stop_allocation(t.alloc.id) for t in chosen]
