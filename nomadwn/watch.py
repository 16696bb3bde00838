"""Follow a registered job to a verdict, and explain a failure in plain words.

The watcher reads Nomad with blocking queries (no fixed sleeps): it blocks on the
job's allocation list, re-reading the deployment whenever that changes, so a failed
allocation is seen as soon as Nomad records it. The states::

    evaluating --eval has placement failures--------------------------> FAILED (unplaceable)
        |
        v
    rolling out --any current allocation failed---------------------------> FAILED (task events)
        |       --service: deployment failed (auto-revert noticed)----------> FAILED
        |       --service: deployment successful---------------------------> HEALTHY
        |       --system: every current allocation running------------------> HEALTHY
        |       --batch: every allocation running or complete (exit 0)-------> HEALTHY / COMPLETE
        |       --deadline passed-----------------------------------------> TIMEOUT
        v
    (canaries healthy and auto_promote asked: promote, keep rolling out)

Exit codes: HEALTHY/COMPLETE 0, FAILED 1, TIMEOUT 2.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Literal

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
class Progress:
    """Where a rollout stands, for live display."""

    job_id: str
    desired: int | None
    placed: int
    running: int
    healthy: int
    failed: int
    deployment: str

    def line(self) -> str:
        """One plain line, as printed when the output is not a terminal."""
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


@dataclass
class Watcher:
    """Follows one job to a :class:`Verdict` on a :class:`NomadAPI`.

    ``clock`` and ``block`` (the longest single blocking query, seconds) are
    injectable for tests; ``on_progress`` is called whenever the rollout changes.
    ``min_running``: system and batch jobs have no deployment to judge their health
    (Nomad 1.9), so their allocations must stay running, unchanged, this long before
    the verdict is healthy; a worker that crashes right after starting is caught.
    """

    nomad: NomadAPI
    clock: Callable[[], float] = time.monotonic
    block: float = 5.0
    on_progress: Callable[[Progress], None] | None = None
    auto_promote: bool = False
    min_running: float = 10.0

    def watch(self, job_id: str, kind: str, eval_id: str, version: int, timeout: float) -> Verdict:
        """Follow ``job_id`` (registered as ``version``, evaluated by ``eval_id``) for at most ``timeout`` s."""
        deadline = self.clock() + timeout
        evaluation = self._settle(eval_id, deadline)
        if evaluation is None:
            return Verdict(job_id, "timeout", f"{job_id}: the evaluation did not finish within {timeout:g}s")
        if evaluation.failed_allocs:
            reasons = [explain_placement(g, f) for g, f in sorted(evaluation.failed_allocs.items())]
            return Verdict(job_id, "failed", f"{job_id}: Nomad cannot place the workers", reasons)
        if evaluation.status not in ("complete",):
            desc = f" ({evaluation.status_description})" if evaluation.status_description else ""
            return Verdict(job_id, "failed", f"{job_id}: evaluation {evaluation.status}{desc}")

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
                wait = min(wait, max(steady_since + self.min_running - now, 0.001))
            listed = self.nomad.allocations(job_id, index=index, wait=wait)
            index = listed.index
            allocs = [a for a in listed.value if a.job_version == version]
            deployment = self.nomad.latest_deployment(job_id).value if kind == "service" else None
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
            verdict = self._judge(job_id, kind, allocs, deployment)
            if verdict is not None and verdict.outcome == "healthy" and kind != "service":
                # No deployment judges system/batch health: wait until nothing changed for min_running.
                state = [(a.id, a.client_status, len(a.events)) for a in allocs]
                if steady_since is None or state != steady_state:
                    steady_since, steady_state = self.clock(), state
                if self.clock() - steady_since < self.min_running:
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

    def _judge(self, job_id: str, kind: str, allocs: list[Allocation], deployment: Deployment | None) -> Verdict | None:
        failed = [a for a in allocs if a.client_status in ("failed", "lost")]
        if failed:
            return Verdict(
                job_id,
                "failed",
                f"{job_id}: {len(failed)} worker allocation(s) failed",
                _dedupe([explain_allocation(a) for a in failed]),
            )
        if kind == "service":
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
