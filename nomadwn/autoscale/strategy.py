"""The autoscaler's decision: a pure function of (observation, policy, history, clock).

One evaluation, in the order nomad-autoscaler uses::

    observation unknown, partial or stale? --yes--> hold (fail static; only ever up to min)
        | no
        v
    workers needed = idle demand that fits a worker, packed by cores and by memory
    shortfall      = needed - (starting + unclaimed workers)
        |
        +-- shortfall > 0: up by ceil(shortfall / ramp), at most max_scale_up
        +-- no idle demand and spare workers: down, only through the unclaimed workers
        |   at the top of the allocation index (Nomad stops those first), at most
        |   max_scale_down; never for batch flavours (they expire by their lifespan)
        v
    clamp to [min, max] -> cooldown since the last action? hold -> Decision

Invariants (tested with hypothesis): the result stays within [min, max] unless only
an unsafe move could get it there; an unknown or stale observation never lowers the
count; a scale-in never exceeds the unclaimed tail; no step exceeds its maximum.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

from nomadwn.model import Flavour
from nomadwn.pool import Capacity, Demand, JobShape, Observation
from nomadwn.units import duration_seconds

Direction = Literal["up", "down", "none"]


@dataclass(frozen=True)
class Policy:
    """Everything :func:`decide` needs to know about a flavour, in plain numbers."""

    min: int
    max: int
    worker_cores: int
    worker_memory_mb: int
    max_scale_up: int
    max_scale_down: int
    ramp: float
    cooldown: float
    cooldown_on_scale_up: float
    stale_after: float
    scale_from_zero: bool
    can_scale_in: bool

    def __post_init__(self) -> None:
        if not 0 <= self.min <= self.max:
            raise ValueError(f"need 0 <= min <= max, got min={self.min} max={self.max}")
        if self.worker_cores < 1 or self.worker_memory_mb < 1:
            raise ValueError("a worker has at least one core and 1 MiB of memory")
        if self.max_scale_up < 1 or self.max_scale_down < 0 or self.ramp < 1:
            raise ValueError("need max_scale_up >= 1, max_scale_down >= 0 and ramp >= 1")

    @property
    def size(self) -> Capacity:
        """One worker's cores and memory."""
        return Capacity(self.worker_cores, self.worker_memory_mb)

    def fits(self, shape: JobShape) -> bool:
        """Whether one job of ``shape`` fits one worker of this flavour."""
        return shape.cpus <= self.worker_cores and shape.memory_mb <= self.worker_memory_mb

    def fitting(self, demand: Demand) -> int:
        """How many of the idle jobs fit one worker."""
        return sum(s.count for s in demand.shapes if self.fits(s))

    @classmethod
    def of(cls, flavour: Flavour) -> Policy:
        """The policy of a flavour with ``autoscale`` and ``scaling`` blocks."""
        auto, bounds = flavour.autoscale, flavour.scaling
        if auto is None or bounds is None:
            raise ValueError("the flavour has no autoscale and scaling blocks")
        slots = flavour.htcondor.slots
        cores = slots.cores or flavour.resources.cores or max(1, (flavour.resources.cpu or 1000) // 1000)
        return cls(
            min=bounds.min,
            max=bounds.max,
            worker_cores=cores,
            worker_memory_mb=slots.memory or flavour.resources.memory_max or flavour.resources.memory,
            max_scale_up=auto.max_scale_up,
            max_scale_down=auto.max_scale_down,
            ramp=auto.ramp,
            cooldown=duration_seconds(auto.cooldown),
            cooldown_on_scale_up=duration_seconds(auto.cooldown_on_scale_up),
            stale_after=duration_seconds(auto.stale_after),
            scale_from_zero=auto.scale_from_zero,
            can_scale_in=flavour.kind != "batch",
        )


@dataclass(frozen=True)
class History:
    """When the autoscaler last acted on this flavour, and which way."""

    last_action_at: float | None = None
    last_direction: Direction = "none"


@dataclass(frozen=True)
class Decision:
    """The count to set and why, in words a site admin can read in a log."""

    current: int
    count: int
    reason: str

    @property
    def direction(self) -> Direction:
        """Which way the count moves."""
        return "up" if self.count > self.current else "down" if self.count < self.current else "none"


def workers_needed(observation: Observation, policy: Policy) -> tuple[int, int]:
    """(workers the fitting idle jobs need, idle jobs that fit no worker of this flavour)."""
    assert observation.demand is not None
    cores = memory = 0
    unfit = 0
    for shape in observation.demand.shapes:
        if not policy.fits(shape):
            unfit += shape.count
            continue
        cores += shape.cpus * shape.count
        memory += shape.memory_mb * shape.count
    return max(math.ceil(cores / policy.worker_cores), math.ceil(memory / policy.worker_memory_mb)), unfit


def _clamp(value: int, policy: Policy) -> int:
    return min(max(value, policy.min), policy.max)


def decide(observation: Observation, policy: Policy, history: History, now: float) -> Decision:
    """The count this flavour should have now, and why (see the module docstring)."""
    demand, supply = observation.demand, observation.supply
    if supply is None:
        return Decision(0, 0, "holding: the flavour's workers could not be observed (fail static)")
    current = supply.count
    problem = None
    if demand is None:
        problem = "idle demand could not be observed"
    elif not demand.complete:
        problem = "idle demand is partial (a schedd did not answer)"
    elif now - min(demand.taken_at, supply.taken_at) > policy.stale_after:
        problem = f"the observation is older than {policy.stale_after:g}s"
    if problem is not None:
        if current < policy.min:
            return Decision(current, policy.min, f"raising to min {policy.min}; {problem}, so nothing else changes")
        return Decision(current, current, f"holding at {current}: {problem} (fail static)")
    assert demand is not None

    needed, unfit = workers_needed(observation, policy)
    spare = supply.in_state("starting") + supply.in_state("unclaimed")
    shortfall = needed - spare
    seen = f"{demand.jobs} idle job(s) ({demand.jobs - unfit} fit), {needed} worker(s) needed, {spare} spare"

    if shortfall > 0 and (current > 0 or policy.scale_from_zero):
        step = min(math.ceil(shortfall / policy.ramp), policy.max_scale_up)
        # Never down from here, even above max: only the scale-in rule may remove workers.
        target = max(current, _clamp(current + step, policy))
        reason = f"{seen}: up by {target - current} (shortfall {shortfall}, ramp {policy.ramp:g})"
    elif shortfall > 0:
        target = _clamp(current, policy)
        reason = f"{seen}: holding at {current}, scale_from_zero is off"
    elif demand.jobs - unfit == 0 and policy.can_scale_in and current > policy.min:
        removable = min(supply.unclaimed_tail(), policy.max_scale_down, current - policy.min)
        target = current - removable
        reason = (
            f"{seen}: down by {removable} unclaimed worker(s) at the top of the allocation index"
            if removable
            else f"{seen}: no unclaimed worker at the top of the allocation index to remove"
        )
    else:
        target = current
        reason = f"{seen}: holding at {current}"
        if current < policy.min:
            target, reason = policy.min, f"{seen}: raising to min {policy.min}"

    if target != current and history.last_action_at is not None:
        wait = policy.cooldown_on_scale_up if history.last_direction == "up" else policy.cooldown
        since = now - history.last_action_at
        if since < wait and not (current < policy.min):
            return Decision(
                current, current, f"cooling down ({since:g}s of {wait:g}s since the last scaling); {reason}"
            )
    return Decision(current, target, reason)


def apply_quota(
    decisions: dict[str, Decision], policies: dict[str, Policy], core_quota: int | None
) -> dict[str, Decision]:
    """Trim scale-ups so that all flavours together hold at most ``core_quota`` cores.

    Cores held are counted from the *current* counts (a planned scale-in frees nothing
    until it has happened). Scale-ups are granted in the order of ``decisions`` (the
    site file's) until the quota is used up. The quota never lowers a count, and
    already being over it (say, after the quota was lowered) only stops growth.
    """
    if core_quota is None:
        return dict(decisions)
    used = sum(d.current * policies[name].worker_cores for name, d in decisions.items())
    out: dict[str, Decision] = {}
    for name, d in decisions.items():
        if d.direction != "up":
            out[name] = d
            continue
        cores = policies[name].worker_cores
        grant = min(d.count - d.current, max(0, (core_quota - used) // cores))
        used += grant * cores
        if grant == d.count - d.current:
            out[name] = d
        else:
            why = f"{d.reason}; trimmed to +{grant} by the site core quota ({core_quota} cores, {used} in use)"
            out[name] = Decision(d.current, d.current + grant, why)
    return out
