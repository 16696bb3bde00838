"""The autoscaler's decision: a pure function of (observation, share, policy, history, clock).

One evaluation, in the order nomad-autoscaler uses::

    observation unknown, partial, blind or stale? --yes--> hold (fail static; only ever up to min)
        |  blind: fewer schedds answered than the site expects (autoscaler.schedds)
        | no
        v
    share (accounting.account): the idle jobs this flavour took, after the spare
    capacity of every worker absorbed what fits; shortfall = the new workers they need
        |   (the free cores of workers we drain count too: their drain is cancelled,
        |   a kept worker instead of a new one)
        +-- shortfall > 0: up by ceil(shortfall / ramp), at most max_scale_up
        +-- no shortfall, service flavour above min: scale in by drain
        |     surplus  = unclaimed workers no job was packed into, drained empty
        |                workers, and the workers this autoscaler drains
        |     the top `surplus` workers by allocation index (Nomad stops those first):
        |       the unbroken run of drained, empty ones at the top goes now: down by
        |       that many, at most max_scale_down; idle ones among them are drained
        |       first (removed at a later evaluation: the collector's "Unclaimed" may
        |       predate a match, a startd's "Draining" never does); claimed ones are
        |       drained (no new job; running ones finish),
        |       unless a payload would reach its retirement within drain_margin
        |   and always, blind or not: a drain we started is cancelled before its oldest
        |   payload reaches its retirement (HTCondor would evict it then)
        |   never for batch flavours (they expire by their lifespan)
        v
    clamp to [min, max] -> cooldown since the last action? hold (cancelling drains is
    never held back) -> Decision

Invariants (tested with hypothesis): the result stays within [min, max] unless only
an unsafe move could get it there; an unknown, partial, blind or stale observation
never lowers the count nor drains; a scale-in never exceeds the drained, empty tail; no
step exceeds its maximum; a drain never evicts (HTCondor's graceful drain).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import Literal

from nomadwn.autoscale.accounting import DRAIN_REASON, FlavourView, Share, account, ours
from nomadwn.autoscale.policy import Policy
from nomadwn.pool import Demand, Observation, Supply, Worker

__all__ = [
    "DRAIN_REASON",
    "Decision",
    "Direction",
    "History",
    "Policy",
    "apply_quota",
    "blindness",
    "decide",
    "drain_safe",
    "ours",
]

Direction = Literal["up", "down", "none"]


@dataclass(frozen=True, slots=True)
class History:
    """When the autoscaler last acted on this flavour, and which way."""

    last_action_at: float | None = None
    last_direction: Direction = "none"


@dataclass(frozen=True, slots=True)
class Decision:
    """The count to set and why, in words a site admin can read in a log.

    ``drain`` names the startds (:attr:`Worker.name`) to drain before they can be
    removed; ``cancel_drain`` those whose drain (ours) to cancel, to keep them.
    """

    current: int
    count: int
    reason: str
    drain: tuple[str, ...] = ()
    cancel_drain: tuple[str, ...] = ()

    @property
    def direction(self) -> Direction:
        """Which way the count moves."""
        return "up" if self.count > self.current else "down" if self.count < self.current else "none"


def blindness(demand: Demand | None, supply: Supply, policy: Policy, now: float) -> str | None:
    """Why the observation cannot be trusted to scale in on (None: it can)."""
    if demand is None:
        return "idle demand could not be observed"
    if not demand.complete:
        return "idle demand is partial (a schedd did not answer)"
    missing = [name for name in policy.schedds if name not in demand.schedds]
    if missing:
        return f"schedd(s) {', '.join(missing)} not seen in the collector (the observation is blind)"
    if len(demand.schedds) < policy.min_schedds:
        return (
            f"only {len(demand.schedds)} schedd(s) answered, the site expects at least {policy.min_schedds}"
            " (the observation is blind)"
        )
    if now - min(demand.taken_at, supply.taken_at) > policy.stale_after:
        return f"the observation is older than {policy.stale_after:g}s"
    return None


def _clamp(value: int, policy: Policy) -> int:
    return min(max(value, policy.min), policy.max)


def _removable(worker: Worker) -> bool:
    """Nomad may stop it now: drained (the startd itself refuses new jobs) and empty.

    An idle worker is drained first and removed at a later evaluation: the collector's
    "Unclaimed" can be a few seconds old when the negotiator has just matched a job to
    it, while a startd that advertises Draining was drained before that ad was sent.
    """
    return worker.state == "draining" and worker.empty


def drain_safe(worker: Worker, policy: Policy, now: float) -> bool:
    """Whether a graceful drain of ``worker`` evicts no payload for the next ``drain_margin`` seconds.

    HTCondor's graceful drain lets each running job finish within its
    ``MaxJobRetirementTime`` counted from the job's start, then evicts it. A worker
    whose oldest payload is that close to its retirement, or whose payloads' starts
    are unknown, is not drained (a payload may run longer than its retirement; an
    undrained worker never evicts it).
    """
    if worker.claimed_slots == 0:
        return True
    start = worker.oldest_job_start
    return start is not None and start + policy.retirement > now + policy.drain_margin


def _expiring(supply: Supply, policy: Policy, now: float) -> tuple[str, ...]:
    """Our drains that must end now, before HTCondor evicts a payload at its retirement."""
    return tuple(w.name for w in supply.workers if ours(w) and w.name and not drain_safe(w, policy, now))


def decide(
    observation: Observation, policy: Policy, history: History, now: float, share: Share | None = None
) -> Decision:
    """The count this flavour should have now, and what to drain, and why (see the module docstring).

    ``share`` is this flavour's part of the site's demand (:func:`accounting.account`
    over every autoscaled flavour); without it, the flavour is taken to be alone.
    """
    demand, supply = observation.demand, observation.supply
    if supply is None:
        return Decision(0, 0, "holding: the flavour's workers could not be observed (fail static)")
    current = supply.count
    # Payload safety first, whatever the observation of demand: a drain we started ends
    # before it would evict a payload at its retirement (cancelling kills nothing).
    expiring = _expiring(supply, policy, now)
    problem = blindness(demand, supply, policy, now)
    if problem is not None and expiring:
        problem += f"; {len(expiring)} drain(s) cancelled before a payload's retirement"
    if problem is not None:
        if current < policy.min:
            why = f"raising to min {policy.min}; {problem}, so nothing else changes"
            return Decision(current, policy.min, why, cancel_drain=expiring)
        return Decision(current, current, f"holding at {current}: {problem} (fail static)", cancel_drain=expiring)
    assert demand is not None
    if share is None:
        share = account(demand, {"": FlavourView(policy, None, supply)}).shares[""]

    shortfall = share.new_workers
    seen = (
        f"{demand.jobs} idle job(s), {share.jobs} for this flavour ({share.absorbed} fit free capacity), "
        f"{shortfall} new worker(s) needed"
    )
    cancel: tuple[str, ...] = expiring
    drain: tuple[str, ...] = ()
    if expiring:
        seen += f", {len(expiring)} drain(s) cancelled before a payload's retirement"
    # Demand is back: the workers we drain whose free cores took jobs are kept (drain cancelled).
    kept = tuple(w.name for w in supply.workers if w.alloc_id in share.reclaim and w.name and w.name not in cancel)
    if kept:
        cancel += kept
        seen += f", {len(kept)} kept by cancelling their drain"
    if shortfall > 0 and (current > 0 or policy.scale_from_zero):
        step = min(math.ceil(shortfall / policy.ramp), policy.max_scale_up)
        # Never down from here, even above max: only the scale-in rule may remove workers.
        target = max(current, _clamp(current + step, policy))
        reason = f"{seen}: up by {target - current} (shortfall {shortfall}, ramp {policy.ramp:g})"
    elif shortfall > 0:
        target = _clamp(current, policy)
        reason = f"{seen}: holding at {current}, scale_from_zero is off"
    elif not cancel and policy.can_scale_in and current > policy.min:
        target, drain, reason = _scale_in(supply, share, policy, seen, now)
    else:
        target = current
        reason = f"{seen}: holding at {current}"
        if current < policy.min:
            target, reason = policy.min, f"{seen}: raising to min {policy.min}"

    if (target != current or drain) and history.last_action_at is not None:
        wait = policy.cooldown_on_scale_up if history.last_direction == "up" else policy.cooldown
        since = now - history.last_action_at
        if since < wait and not (current < policy.min):
            why = f"cooling down ({since:g}s of {wait:g}s since the last scaling); {reason}"
            return Decision(current, current, why, cancel_drain=cancel)
    return Decision(current, target, reason, drain=drain, cancel_drain=cancel)


def _scale_in(supply: Supply, share: Share, policy: Policy, seen: str, now: float) -> tuple[int, tuple[str, ...], str]:
    """Down through the removable top of the allocation index; drain the claimed workers in the way."""
    current = supply.count
    used = share.used
    # Surplus: idle workers no waiting job was packed into, drained empty ones, and the ones we drain.
    surplus = sum(
        1 for w in supply.workers if (w.state == "unclaimed" and w.alloc_id not in used) or _removable(w) or ours(w)
    )
    wanted = min(surplus, current - policy.min)
    if wanted <= 0:
        return current, (), f"{seen}: holding at {current}, no worker to spare"
    top = supply.top()[:wanted]
    run = 0
    for w in top:
        if not _removable(w):
            break
        run += 1
    removing = min(run, policy.max_scale_down)
    idle = [w for w in top if w.state == "unclaimed" and w.alloc_id not in used and w.name]
    claimed = [w for w in top if w.state == "claimed" and w.name]
    safe = [w for w in claimed if drain_safe(w, policy, now)]
    chosen = {w.alloc_id for w in (*idle, *safe)}
    drain = tuple(w.name for w in top if w.alloc_id in chosen)[: policy.max_scale_down]  # the top first
    unsafe = len(claimed) - len(safe)
    parts = []
    if removing:
        parts.append(f"down by {removing} drained empty worker(s) at the top of the allocation index")
    drained_idle = sum(1 for name in drain if name in {w.name for w in idle})
    if drained_idle:
        parts.append(f"draining {drained_idle} idle worker(s) at the top before removing them")
    if len(drain) - drained_idle:
        n = len(drain) - drained_idle
        parts.append(f"draining {n} claimed worker(s) at the top (no new jobs; running ones finish)")
    if unsafe and policy.retirement <= 0:
        parts.append(
            f"not draining {unsafe} claimed worker(s): without lifespan.retirement a drain evicts their payloads"
        )
    elif unsafe:
        parts.append(f"not draining {unsafe} claimed worker(s) whose payloads are near their retirement")
    if not parts:
        waiting = sum(1 for w in top if w.state == "draining")
        parts.append(
            f"holding at {current}: {waiting} draining worker(s) at the top still run jobs"
            if waiting
            else f"holding at {current}: the top of the allocation index is not idle"
        )
    return current - removing, drain, f"{seen}: {'; '.join(parts)}"


def apply_quota(
    decisions: dict[str, Decision], policies: dict[str, Policy], core_quota: int | None, held_cores: int = 0
) -> dict[str, Decision]:
    """Trim scale-ups so that all flavours together hold at most ``core_quota`` cores.

    Cores held are counted from the *current* counts (a planned scale-in frees nothing
    until it has happened), over every flavour in ``decisions`` plus ``held_cores``
    (the flavours that take no decision in this step: pass every autoscaled flavour).
    Scale-ups are granted in the order of ``decisions`` (the site file's) until the
    quota is used up. The quota never lowers a count, and
    already being over it (say, after the quota was lowered) only stops growth.
    """
    if core_quota is None:
        return dict(decisions)
    used = held_cores + sum(d.current * policies[name].worker_cores for name, d in decisions.items())
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
            out[name] = replace(d, count=d.current + grant, reason=why)
    return out
