"""Follow a registered job to a verdict, and explain a failure in plain words.

The watcher reads Nomad with blocking queries (no fixed sleeps): it blocks on the
job's allocation list, re-reading the deployment whenever that changes, so a failed
allocation is seen as soon as Nomad records it. Where Nomad tracks the rollout (a
deployment: service jobs, and system jobs from Nomad 1.11/2.0) its verdict is
followed; where it does not (system jobs up to 1.10, batch jobs) nomadwn judges the
workers itself. The states::

    evaluating --eval has placement failures--------------------------> FAILED (unplaceable)
        |
        v
    rolling out --any current allocation failed---------------------------> FAILED (task events)
        |       --tracked: deployment failed (auto-revert noticed)----------> FAILED
        |       --tracked: deployment successful---------------------------> HEALTHY
        |       --untracked system: a new worker restarted by its check, or not
        |         healthy within healthy_deadline----------------------------> FAILED
        |       --untracked system: every node that runs a worker runs version V,
        |         no older worker left, each passing its Consul checks (or, with
        |         health_check task_states, running) for min_healthy_time----> HEALTHY
        |       --batch: every allocation running or complete (exit 0), steady for
        |         min_healthy_time--------------------------------------------> HEALTHY / COMPLETE
        |       --deadline passed-----------------------------------------> TIMEOUT
        v
    (canaries healthy and auto_promote asked: promote, keep rolling out)

"Passing for min_healthy_time" is measured by the watcher: Consul tells a check's
state, not since when. A worker's first check result may take one ``interval`` plus
``timeout`` (or ``check_restart.grace``) to reach Consul; ``healthy_deadline`` bounds
the whole wait per worker.

Exit codes: HEALTHY/COMPLETE 0, FAILED 1, TIMEOUT 2.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Literal

from nomadwn.consul import ConsulHealth
from nomadwn.errors import ConsulError
from nomadwn.nomad import Allocation, Deployment, Evaluation, NomadAPI, PlacementFailure

Outcome = Literal["healthy", "complete", "failed", "timeout"]
EXIT_CODES: dict[Outcome, int] = {"healthy": 0, "complete": 0, "failed": 1, "timeout": 2}

# Task events that explain a failure, most telling first.
_TELLING_EVENTS = (
    "Driver Failure",
    "Failed Validation",
    "Setup Failure",
    "Failed Artifact Download",
    "Template",
    "Restart Signaled",
    "Alloc Unhealthy",
    "Terminated",
    "Killing",
    "Not Restarting",
)


@dataclass(frozen=True)
class Rollout:
    """How to judge one job's rollout: what Nomad tracks, and nomadwn's own health rules.

    ``tracked``: Nomad makes a deployment for it (None: only for service jobs).
    ``health_check``, ``min_healthy_time``, ``healthy_deadline`` (seconds): the job's
    update strategy, applied by the watcher where Nomad does not. ``service``: the
    Consul service whose checks tell a worker's health. ``self_revert``: on failure
    nomadwn reverts the job (auto_revert asked where Nomad cannot do it).
    """

    tracked: bool | None = None
    health_check: str = "task_states"
    min_healthy_time: float = 10.0
    healthy_deadline: float = 300.0
    service: str | None = None
    nomad_version: str = "1.10"
    self_revert: bool = False


@dataclass(frozen=True)
class Progress:
    """Where a rollout stands, for live display.

    ``nodes`` is set for a system rollout Nomad does not track: the nodes that run a
    worker of any version, ``on_version`` those that run version ``version``.
    """

    job_id: str
    desired: int | None
    placed: int
    running: int
    healthy: int
    failed: int
    deployment: str
    nodes: int | None = None
    on_version: int = 0
    version: int | None = None

    def line(self) -> str:
        """One plain line, as printed when the output is not a terminal."""
        if self.nodes is not None:
            return (
                f"{self.job_id}: {self.on_version} of {self.nodes} nodes on version {self.version}, "
                f"{self.healthy} healthy, {self.failed} failed"
            )
        want = "?" if self.desired is None else str(self.desired)
        deploy = f", deployment {self.deployment}" if self.deployment else ""
        return (
            f"{self.job_id}: {self.placed}/{want} placed, {self.running} running, "
            f"{self.healthy} healthy, {self.failed} failed{deploy}"
        )


@dataclass(frozen=True)
class Verdict:
    """How a rollout ended, and why, in one or two lines per reason."""

    job_id: str
    outcome: Outcome
    summary: str
    reasons: list[str] = field(default_factory=list)

    @property
    def exit_code(self) -> int:
        """0 healthy or complete, 1 failed, 2 timed out."""
        return EXIT_CODES[self.outcome]


def explain_placement(group: str, failure: PlacementFailure) -> str:
    """Why a group could not be placed, from an evaluation's AllocMetric."""
    parts = [f"{failure.nodes_evaluated} node(s) evaluated"]
    for what, count in sorted(failure.constraint_filtered.items()):
        parts.append(f"{count} filtered by {_constraint_words(what)}")
    for what, count in sorted(failure.class_filtered.items()):
        parts.append(f"{count} of node class {what!r} filtered")
    for what, count in sorted(failure.dimension_exhausted.items()):
        parts.append(f"{count} out of {what}")
    if failure.quota_exhausted:
        parts.append("quota exhausted: " + ", ".join(failure.quota_exhausted))
    if failure.nodes_evaluated == 0:
        parts.append("no node in the job's datacenters and node pool is ready")
    return f"group {group} cannot be placed: " + "; ".join(parts)


def _constraint_words(key: str) -> str:
    lowered = key.lower()
    if "host volume" in lowered:
        return f"{key} (is the host volume, such as cvmfs, defined on the clients?)"
    if "driver" in lowered:
        return f"{key} (is the docker driver enabled and healthy on the clients?)"
    return f"constraint {key}"


def explain_allocation(alloc: Allocation) -> str:
    """The most telling task event of a failed or unhealthy allocation, with where it ran."""
    where = f"allocation {alloc.id[:8]} on node {alloc.node_name or alloc.node_id[:8]}"
    chosen = None
    for kind in _TELLING_EVENTS:
        found = [e for e in alloc.events if e.type == kind and e.message]
        if found:
            chosen = found[-1]
            break
    if chosen is None and alloc.events:
        chosen = alloc.events[-1]
    if chosen is None:
        return f"{where}: {alloc.client_status} (no task events)"
    message = chosen.message
    if "oom" in message.lower() or chosen.exit_code == 137:
        message += " (the worker ran out of memory: raise resources.memory or memory_max)"
    elif "pull" in message.lower() and chosen.type == "Driver Failure":
        message += " (check image.registry, image.repository and the tag or digest)"
    elif "check" in message.lower() and "unhealthy" in message.lower():
        message += " (the health check keeps failing: see the worker's startd)"
    return f"{where}: {chosen.type}: {message}"


def _dedupe(lines: list[str], limit: int = 3) -> list[str]:
    seen: dict[str, str] = {}
    for line in lines:
        key = line.split(": ", 1)[-1]
        seen.setdefault(key, line)
    unique = list(seen.values())
    extra = len(lines) - len(unique[:limit])
    return unique[:limit] + ([f"... and {extra} more allocation(s) like these"] if extra > 0 else [])


class _WorkerHealth:
    """The watcher's own clock on each worker: first seen, running, passing its checks since."""

    def __init__(self, rollout: Rollout, consul: ConsulHealth | None) -> None:
        self.rollout = rollout
        self.consul = consul
        self.first_seen: dict[str, float] = {}
        self.passing_since: dict[str, float] = {}
        self.nodes: dict[str, str] = {}  # every node that ran a worker of the job during the watch: id -> name

    @property
    def by_checks(self) -> bool:
        return self.rollout.health_check == "checks" and self.consul is not None and self.rollout.service is not None

    def observe(self, allocs: list[Allocation], now: float) -> None:
        instances = []
        if self.by_checks and any(a.client_status == "running" for a in allocs):
            assert self.consul is not None and self.rollout.service is not None
            instances = self.consul.service_health(self.rollout.service)
        for a in allocs:
            self.first_seen.setdefault(a.id, now)
            if a.client_status != "running":
                self.passing_since.pop(a.id, None)
                continue
            if self.by_checks:
                # Nomad's Consul service IDs carry the allocation ID (_nomad-task-<alloc>-...).
                own = [i for i in instances if a.id in i.service_id]
                passing = bool(own) and all(i.status == "passing" for i in own)
            else:
                passing = True
            if passing:
                self.passing_since.setdefault(a.id, now)
            else:
                self.passing_since.pop(a.id, None)

    def healthy(self, a: Allocation, now: float) -> bool:
        since = self.passing_since.get(a.id)
        return since is not None and now - since >= self.rollout.min_healthy_time

    def overdue(self, a: Allocation, now: float) -> bool:
        seen = self.first_seen.get(a.id, now)
        return not self.healthy(a, now) and now - seen > self.rollout.healthy_deadline

    def next_due(self, now: float) -> float | None:
        """Seconds until a passing worker completes min_healthy_time (None: none is on the way)."""
        waits = [s + self.rollout.min_healthy_time - now for s in self.passing_since.values()]
        waits = [w for w in waits if w > 0]
        return min(waits) if waits else None


def _live(a: Allocation) -> bool:
    return a.client_status in ("pending", "running")


@dataclass
class Watcher:
    """Follows one job to a :class:`Verdict` on a :class:`NomadAPI`.

    ``clock`` and ``block`` (the longest single blocking query, seconds) are
    injectable for tests; ``on_progress`` is called whenever the rollout changes.
    ``consul`` reads the workers' checks for rollouts Nomad does not track (see
    :class:`Rollout`); without it, or with ``health_check`` other than ``checks``,
    a worker counts as healthy once it has kept running for ``min_healthy_time``.
    """

    nomad: NomadAPI
    clock: Callable[[], float] = time.monotonic
    block: float = 5.0
    on_progress: Callable[[Progress], None] | None = None
    auto_promote: bool = False
    consul: ConsulHealth | None = None

    def watch(
        self, job_id: str, kind: str, eval_id: str, version: int, timeout: float, rollout: Rollout | None = None
    ) -> Verdict:
        """Follow ``job_id`` (registered as ``version``, evaluated by ``eval_id``) for at most ``timeout`` s."""
        rollout = rollout or Rollout()
        tracked = rollout.tracked if rollout.tracked is not None else kind == "service"
        if kind == "system" and not tracked:
            return self._watch_nodes(job_id, eval_id, version, timeout, rollout)
        deadline = self.clock() + timeout
        early = self._evaluated(job_id, eval_id, deadline, timeout)
        if early is not None:
            return early

        index = 0
        last: Progress | None = None
        steady_since: float | None = None  # when system/batch allocations last became steady
        steady_state: object = None
        while True:
            now = self.clock()
            remaining = deadline - now
            if remaining <= 0:
                return Verdict(
                    job_id, "timeout", f"{job_id}: no verdict within {timeout:g}s", self._stuck(job_id, version)
                )
            wait = min(self.block, remaining)
            if steady_since is not None:
                wait = min(wait, max(steady_since + rollout.min_healthy_time - now, 0.001))
            listed = self.nomad.allocations(job_id, index=index, wait=wait)
            index = listed.index
            allocs = [a for a in listed.value if a.job_version == version]
            deployment = self.nomad.latest_deployment(job_id).value if tracked else None
            if deployment is not None and deployment.job_version != version:
                deployment = None
            if deployment is not None and deployment.status not in ("running", "pending", "paused"):
                # The deployment may have ended after the allocations were read: explain it
                # from allocations at least as new as the deployment's verdict.
                allocs = [a for a in self.nomad.allocations(job_id).value if a.job_version == version]
            progress = self._progress(job_id, allocs, deployment)
            if progress != last and self.on_progress is not None:
                self.on_progress(progress)
            last = progress
            verdict = self._judge(job_id, kind, allocs, deployment, tracked)
            if verdict is not None and verdict.outcome == "healthy" and not tracked:
                # No deployment judges batch health: wait until nothing changed for min_healthy_time.
                state = [(a.id, a.client_status, len(a.events)) for a in allocs]
                if steady_since is None or state != steady_state:
                    steady_since, steady_state = self.clock(), state
                if self.clock() - steady_since < rollout.min_healthy_time:
                    continue
            else:
                steady_since, steady_state = None, None
            if verdict is not None:
                return verdict
            if deployment is not None and self.auto_promote:
                self._maybe_promote(deployment)

    def _settle(self, eval_id: str, deadline: float) -> Evaluation | None:
        index = 0
        while self.clock() < deadline:
            got = self.nomad.evaluation(eval_id, index=index, wait=min(self.block, max(deadline - self.clock(), 0.001)))
            index = got.index
            if got.value.status not in ("pending",):
                return got.value
        return None

    def _evaluated(self, job_id: str, eval_id: str, deadline: float, timeout: float) -> Verdict | None:
        evaluation = self._settle(eval_id, deadline)
        if evaluation is None:
            return Verdict(job_id, "timeout", f"{job_id}: the evaluation did not finish within {timeout:g}s")
        if evaluation.failed_allocs:
            reasons = [explain_placement(g, f) for g, f in sorted(evaluation.failed_allocs.items())]
            return Verdict(job_id, "failed", f"{job_id}: Nomad cannot place the workers", reasons)
        if evaluation.status not in ("complete",):
            desc = f" ({evaluation.status_description})" if evaluation.status_description else ""
            return Verdict(job_id, "failed", f"{job_id}: evaluation {evaluation.status}{desc}")
        return None

    def _watch_nodes(self, job_id: str, eval_id: str, version: int, timeout: float, rollout: Rollout) -> Verdict:
        """A system rollout Nomad does not track (up to 1.10): judge every node's worker ourselves."""
        deadline = self.clock() + timeout
        early = self._evaluated(job_id, eval_id, deadline, timeout)
        if early is not None:
            return early
        health = _WorkerHealth(rollout, self.consul)
        index = 0
        last: Progress | None = None
        while True:
            now = self.clock()
            remaining = deadline - now
            if remaining <= 0:
                reasons = self._stuck_nodes(job_id, version, health, now)
                return Verdict(job_id, "timeout", f"{job_id}: no verdict within {timeout:g}s", reasons)
            wait = min(self.block, remaining)
            due = health.next_due(now)
            if due is not None:
                wait = min(wait, max(due, 0.001))
            listed = self.nomad.allocations(job_id, index=index, wait=wait)
            index = listed.index
            now = self.clock()
            new = [a for a in listed.value if a.job_version == version and a.desired_status == "run"]
            try:
                health.observe([a for a in new if _live(a)], now)
            except ConsulError as exc:
                # No verdict (not a failure of the job: nomadwn reverts nothing).
                reasons = [
                    str(exc),
                    "the job is registered and Nomad keeps rolling it out; set CONSUL_HTTP_ADDR (and a token with "
                    "service:read and node:read) or use update.health_check: task_states, then watch with "
                    "`nomadwn status`",
                ]
                return Verdict(
                    job_id, "timeout", f"{job_id}: no verdict: cannot read the workers' Consul checks", reasons
                )
            health.nodes.update({a.node_id: a.node_name or a.node_id[:8] for a in listed.value if _live(a)})
            verdict, progress = self._judge_nodes(job_id, version, listed.value, health, rollout, now)
            if progress != last and self.on_progress is not None:
                self.on_progress(progress)
            last = progress
            if verdict is not None:
                return verdict

    def _judge_nodes(
        self,
        job_id: str,
        version: int,
        allocs: list[Allocation],
        health: _WorkerHealth,
        rollout: Rollout,
        now: float,
    ) -> tuple[Verdict | None, Progress]:
        new = [a for a in allocs if a.job_version == version and a.desired_status == "run"]
        new_live = [a for a in new if _live(a)]
        old_live = [a for a in allocs if a.job_version != version and _live(a)]
        # A node that ran a worker during the watch keeps counting: one whose old worker was
        # stopped and got no new one (say it no longer fits) is a node without a worker.
        nodes = {a.node_id for a in new} | {a.node_id for a in old_live} | set(health.nodes)
        healthy_nodes = {a.node_id for a in new_live if health.healthy(a, now)}
        failed = [a for a in new if a.client_status in ("failed", "lost")]
        restarted = [a for a in new_live if any(e.type == "Restart Signaled" for e in a.events)]
        overdue = [a for a in new_live if health.overdue(a, now)]
        progress = Progress(
            job_id=job_id,
            desired=len(nodes),
            placed=len(new),
            running=sum(a.client_status == "running" for a in new),
            healthy=len(healthy_nodes),
            failed=len(failed),
            deployment="",
            nodes=len(nodes),
            on_version=len({a.node_id for a in new}),
            version=version,
        )
        where = f"{progress.on_version} of {len(nodes)} nodes on version {version}"
        if failed:
            summary = f"{job_id}: {len(failed)} worker allocation(s) of version {version} failed ({where})"
            return Verdict(job_id, "failed", summary, _dedupe([explain_allocation(a) for a in failed])), progress
        if restarted:
            summary = f"{job_id}: Nomad restarted {len(restarted)} new worker(s): their health check failed ({where})"
            return Verdict(job_id, "failed", summary, _dedupe([explain_allocation(a) for a in restarted])), progress
        if overdue:
            how = "passing its Consul checks" if health.by_checks else "running"
            reasons = [
                f"allocation {a.id[:8]} on node {a.node_name or a.node_id[:8]}: not {how} for "
                f"{rollout.min_healthy_time:g}s within healthy_deadline ({rollout.healthy_deadline:g}s)"
                for a in overdue
            ]
            return Verdict(
                job_id, "failed", f"{job_id}: worker(s) not healthy in time ({where})", _dedupe(reasons)
            ), progress
        if nodes and not old_live and healthy_nodes == nodes:
            how = "passing its Consul checks" if health.by_checks else "running"
            summary = (
                f"{job_id}: {len(nodes)} of {len(nodes)} nodes on version {version}, "
                f"each {how} for {rollout.min_healthy_time:g}s"
            )
            return Verdict(job_id, "healthy", summary), progress
        return None, progress

    def _stuck_nodes(self, job_id: str, version: int, health: _WorkerHealth, now: float) -> list[str]:
        allocs = self.nomad.allocations(job_id).value
        old = sorted({a.node_name or a.node_id[:8] for a in allocs if a.job_version != version and _live(a)})
        new_live = [a for a in allocs if a.job_version == version and a.desired_status == "run" and _live(a)]
        waiting = sorted({a.node_name or a.node_id[:8] for a in new_live if not health.healthy(a, now)})
        empty = sorted(
            name for node, name in health.nodes.items() if not any(a.node_id == node for a in allocs if _live(a))
        )
        out = []
        if empty:
            out.append(f"{len(empty)} node(s) no longer run any worker of the job: {', '.join(empty[:10])}")
        if old:
            out.append(f"{len(old)} node(s) still run an older version: {', '.join(old[:10])}")
        if waiting:
            out.append(f"{len(waiting)} worker(s) of version {version} not healthy yet: {', '.join(waiting[:10])}")
        return out or ["no worker of this version runs on any node: check `nomad job status`"]

    def _judge(
        self, job_id: str, kind: str, allocs: list[Allocation], deployment: Deployment | None, tracked: bool
    ) -> Verdict | None:
        failed = [a for a in allocs if a.client_status in ("failed", "lost")]
        if failed:
            return Verdict(
                job_id,
                "failed",
                f"{job_id}: {len(failed)} worker allocation(s) failed",
                _dedupe([explain_allocation(a) for a in failed]),
            )
        if tracked:
            if deployment is None:
                return None
            if deployment.status == "successful":
                return Verdict(job_id, "healthy", f"{job_id}: deployment successful, {self._healthy_words(deployment)}")
            if deployment.status == "failed":
                unhealthy = [a for a in allocs if a.healthy is False]
                reasons = [f"deployment {deployment.id[:8]} failed: {deployment.status_description}"]
                reasons += _dedupe([explain_allocation(a) for a in unhealthy])
                if "rolling back" in deployment.status_description.lower():
                    reasons.append("Nomad's auto_revert rolled the job back to its last stable version")
                return Verdict(job_id, "failed", f"{job_id}: deployment failed", reasons)
            if deployment.status in ("cancelled", "blocked"):
                return Verdict(
                    job_id, "failed", f"{job_id}: deployment {deployment.status}: {deployment.status_description}"
                )
            return None
        if not allocs:
            return None
        if kind == "batch":
            if all(a.client_status == "complete" for a in allocs):
                return Verdict(job_id, "complete", f"{job_id}: all {len(allocs)} ephemeral worker(s) ran and completed")
            if all(a.client_status in ("running", "complete") for a in allocs):
                running = sum(a.client_status == "running" for a in allocs)
                return Verdict(job_id, "healthy", f"{job_id}: {running} ephemeral worker(s) running")
            return None
        if all(a.client_status == "running" for a in allocs if a.desired_status == "run"):
            return Verdict(job_id, "healthy", f"{job_id}: {len(allocs)} worker(s) running, one per eligible node")
        return None

    @staticmethod
    def _healthy_words(deployment: Deployment) -> str:
        healthy = sum(g.healthy for g in deployment.groups.values())
        desired = sum(g.desired_total for g in deployment.groups.values())
        return f"{healthy}/{desired} worker(s) healthy"

    def _maybe_promote(self, deployment: Deployment) -> None:
        if deployment.status != "running":
            return
        for group in deployment.groups.values():
            waiting = group.desired_canaries > 0 and not group.promoted
            if waiting and group.healthy >= group.desired_canaries:
                self.nomad.promote(deployment.id)
                return

    def _progress(self, job_id: str, allocs: list[Allocation], deployment: Deployment | None) -> Progress:
        desired = sum(g.desired_total for g in deployment.groups.values()) if deployment else None
        return Progress(
            job_id=job_id,
            desired=desired,
            placed=len(allocs),
            running=sum(a.client_status == "running" for a in allocs),
            healthy=sum(a.healthy is True for a in allocs),
            failed=sum(a.client_status in ("failed", "lost") for a in allocs),
            deployment=deployment.status if deployment else "",
        )

    def _stuck(self, job_id: str, version: int) -> list[str]:
        allocs = [a for a in self.nomad.allocations(job_id).value if a.job_version == version]
        pending = [a for a in allocs if a.client_status == "pending"]
        if not allocs:
            return ["no allocation was placed: check `nomad job status` for blocked evaluations"]
        return _dedupe([explain_allocation(a) for a in pending]) or [
            f"{len(allocs)} allocation(s) exist but none is healthy yet"
        ]
