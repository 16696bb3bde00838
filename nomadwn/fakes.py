"""In-memory, scriptable fakes of nomadwn's protocols (Nomad, Consul), for tests.

:class:`ScriptedNomad` implements :class:`~nomadwn.nomad.NomadAPI`. A test scripts
what Nomad reports step by step (allocations, deployment, evaluation); each
blocking read advances one step and, when given a :class:`FakeClock`, advances it
by the wait it would have blocked for when nothing changed. Writes are recorded in
``calls`` for assertions.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from nomadwn import nomad_api as api
from nomadwn.consul import ServiceInstance
from nomadwn.nomad import (
    Allocation,
    Deployment,
    Evaluation,
    Indexed,
    JobStatus,
    JobVersion,
    PlanResult,
    RegisterResult,
)


@dataclass
class FakeClock:
    """A monotonic clock that only moves when told to."""

    now: float = 0.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        """Move time forward."""
        self.now += seconds


@dataclass
class ScriptedNomad:
    """A :class:`NomadAPI` whose answers are scripted per step."""

    plan_result: PlanResult | None = None
    current: JobStatus | None = None
    evaluations: list[Evaluation] = field(default_factory=list)
    alloc_steps: list[list[Allocation]] = field(default_factory=list)
    deployment_steps: list[Deployment | None] = field(default_factory=list)
    clock: FakeClock | None = None
    calls: list[tuple[str, Any]] = field(default_factory=list)
    job_versions: list[JobVersion] = field(default_factory=list)
    _step: int = 0
    _eval_step: int = 0

    def _advance(self, steps: list[Any], wait: float) -> int:
        if self._step < len(steps) - 1:
            self._step += 1
        elif self.clock is not None:
            self.clock.advance(wait)  # nothing changed: the blocking query ran its full wait
        return self._step

    def plan(self, job: api.Job) -> PlanResult:
        self.calls.append(("plan", job.ID))
        assert self.plan_result is not None, "script a plan_result"
        return self.plan_result

    def register(self, job: api.Job, *, enforce_index: int | None, preserve_counts: bool) -> RegisterResult:
        self.calls.append(
            ("register", {"job": job.ID, "enforce_index": enforce_index, "preserve_counts": preserve_counts})
        )
        return RegisterResult(eval_id="eval-1", job_modify_index=(enforce_index or 0) + 1, warnings="")

    def job(self, job_id: str) -> JobStatus | None:
        return self.current

    def versions(self, job_id: str) -> list[JobVersion]:
        return self.job_versions

    def allocations(self, job_id: str, *, index: int = 0, wait: float = 0) -> Indexed[list[Allocation]]:
        if not self.alloc_steps:
            return Indexed([], 1)
        step = self._advance(self.alloc_steps, wait) if wait else min(self._step, len(self.alloc_steps) - 1)
        return Indexed(self.alloc_steps[step], step + 1)

    def evaluation(self, eval_id: str, *, index: int = 0, wait: float = 0) -> Indexed[Evaluation]:
        assert self.evaluations, "script evaluations"
        if wait and self._eval_step < len(self.evaluations) - 1:
            self._eval_step += 1
        elif wait and self.clock is not None:
            self.clock.advance(wait)
        return Indexed(self.evaluations[self._eval_step], self._eval_step + 1)

    def latest_deployment(self, job_id: str, *, index: int = 0, wait: float = 0) -> Indexed[Deployment | None]:
        if not self.deployment_steps:
            return Indexed(None, 1)
        return Indexed(self.deployment_steps[min(self._step, len(self.deployment_steps) - 1)], self._step + 1)

    def promote(self, deployment_id: str) -> None:
        self.calls.append(("promote", deployment_id))

    def revert(self, job_id: str, version: int, *, enforce_prior_version: int | None = None) -> RegisterResult:
        self.calls.append(
            ("revert", {"job": job_id, "version": version, "enforce_prior_version": enforce_prior_version})
        )
        return RegisterResult(eval_id="eval-revert", job_modify_index=0, warnings="")

    def stop(self, job_id: str, *, purge: bool = False) -> str:
        self.calls.append(("stop", {"job": job_id, "purge": purge}))
        return "eval-stop"

    def scale(self, job_id: str, group: str, count: int, message: str) -> str:
        self.calls.append(("scale", {"job": job_id, "group": group, "count": count, "message": message}))
        return "eval-scale"


@dataclass
class FakeConsulHealth:
    """A :class:`~nomadwn.consul.ConsulHealth` serving scripted instances per service name."""

    services: dict[str, list[ServiceInstance]] = field(default_factory=dict)

    def service_health(self, name: str, tag: str | None = None) -> list[ServiceInstance]:
        return [i for i in self.services.get(name, []) if tag is None or tag in i.tags]
