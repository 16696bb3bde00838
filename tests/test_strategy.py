"""The autoscaler's pure decision function: examples and hypothesis invariants."""

from __future__ import annotations

from dataclasses import replace

import pytest
import yaml
from hypothesis import given
from hypothesis import strategies as st

from nomadwn.autoscale.strategy import Decision, History, Policy, apply_quota, decide, drain_safe
from nomadwn.pool import WORKER_STATES, Demand, JobShape, Observation, Supply, Worker, WorkerState
from nomadwn.sitefile import parse_site
from tests.conftest import EXAMPLE

NOW = 10_000.0
POLICY = Policy(
    retirement=86400.0,
    min=0,
    max=40,
    worker_cores=8,
    worker_memory_mb=16384,
    max_scale_up=10,
    max_scale_down=2,
    ramp=3.0,
    cooldown=300.0,
    cooldown_on_scale_up=120.0,
    stale_after=180.0,
    scale_from_zero=True,
    can_scale_in=True,
)


def worker(i: int, state: WorkerState, free: tuple[int, int] | None = None) -> Worker:
    """An 8-core 16 GiB worker at index i: all free unless claimed, draining or other (or ``free``)."""
    cores, memory = free if free is not None else (8, 16384) if state in ("starting", "unclaimed") else (0, 0)
    return Worker(
        alloc_id=f"alloc-{i}",
        name=f"w{i}",
        index=i,
        state=state,
        cpus_total=8,
        cpus_free=cores,
        memory_total_mb=16384,
        memory_free_mb=memory,
        claimed_slots=1 if state in ("claimed", "draining") and cores < 8 else 0,
        oldest_job_start=NOW - 3600 if state in ("claimed", "draining") and cores < 8 else None,
    )


def supply(*states: WorkerState, count: int | None = None, at: float = NOW) -> Supply:
    workers = tuple(worker(i, s) for i, s in enumerate(states))
    return Supply(count=len(states) if count is None else count, workers=workers, taken_at=at)


def demand(*shapes: tuple[int, int, int], complete: bool = True, at: float = NOW) -> Demand:
    return Demand(tuple(JobShape(c, m, n) for c, m, n in shapes), at, ("s1",), () if complete else ("s2",))


def test_idle_jobs_scale_up_with_ramp_attenuation() -> None:
    d = decide(Observation(demand((1, 2048, 240)), supply("claimed", "claimed")), POLICY, History(), NOW)
    # 240 one-core jobs need 30 workers; shortfall 30 / ramp 3 = 10 (= max_scale_up)
    assert (d.current, d.count, d.direction) == (2, 12, "up")
    assert d.reason == (
        "240 idle job(s), 240 for this flavour (0 fit free capacity), 30 new worker(s) needed:"
        " up by 10 (shortfall 30, ramp 3)"
    )


def test_memory_bound_packing_and_jobs_that_do_not_fit() -> None:
    obs = Observation(demand((1, 16384, 4), (16, 2048, 5)), supply())
    d = decide(obs, POLICY, History(), NOW)
    assert d.count == 2  # 4 jobs of 16 GiB need 4 workers by memory; ceil(4/3) = 2; the 16-core jobs fit nowhere
    assert d.reason.startswith("9 idle job(s), 4 for this flavour (0 fit free capacity), 4 new worker(s) needed")


def test_starting_and_unclaimed_workers_count_as_supply() -> None:
    obs = Observation(demand((8, 1024, 3)), supply("starting", "unclaimed", "claimed"))
    d = decide(obs, POLICY, History(), NOW)
    assert d.direction == "up" and d.count == 4  # 2 of the 3 jobs fit the starting and unclaimed ones: 1 new
    assert "3 for this flavour (2 fit free capacity), 1 new worker(s) needed" in d.reason


def test_free_cores_of_a_claimed_worker_absorb_jobs_that_fit() -> None:
    half = Supply(workers=(worker(0, "claimed", free=(7, 14000)),), taken_at=NOW, count=1)
    d = decide(Observation(demand((1, 2000, 7)), half), POLICY, History(), NOW)
    assert d.direction == "none" and "7 for this flavour (7 fit free capacity), 0 new worker(s)" in d.reason
    # The eighth job does not fit (memory: 7 x 2000 of 14000 MiB): one new worker.
    assert decide(Observation(demand((1, 2000, 8)), half), POLICY, History(), NOW).count == 2


@pytest.mark.parametrize(
    ("obs", "why"),
    [
        (Observation(None, supply("unclaimed", "unclaimed")), "idle demand could not be observed"),
        (Observation(demand(complete=False), supply("unclaimed", "unclaimed")), "idle demand is partial"),
        (Observation(demand(at=NOW - 600), supply("unclaimed", "unclaimed")), "the observation is older than 180s"),
    ],
    ids=["unknown", "partial", "stale"],
)
def test_blind_observations_never_scale_in(obs: Observation, why: str) -> None:
    d = decide(obs, POLICY, History(), NOW)
    assert d.direction == "none"
    assert why in d.reason and "fail static" in d.reason


def test_unknown_supply_holds() -> None:
    assert decide(Observation(demand((1, 1, 1)), None), POLICY, History(), NOW).direction == "none"


def test_scale_in_only_through_the_idle_top_and_drains_the_claimed_in_the_way() -> None:
    four = supply("unclaimed", "claimed", "unclaimed", "unclaimed")
    obs = Observation(demand(), four)
    d = decide(obs, POLICY, History(), NOW)
    # 3 idle workers are surplus: the top two (index 3, 2) are drained before they go
    # (max_scale_down 2); nothing is removed on the collector's "Unclaimed" alone.
    assert (d.count, d.drain) == (4, ("w3", "w2"))
    drained = replace(
        four, workers=(*four.workers[:2], worker(2, "draining", (8, 16384)), worker(3, "draining", (8, 16384)))
    )
    d = decide(Observation(demand(), drained), POLICY, History(), NOW)
    # Now index 3 and 2 are drained and empty: they go; index 1, claimed, is in the way and is drained.
    assert (d.count, d.drain) == (2, ("w1",))
    blocked = decide(Observation(demand(), supply("unclaimed", "unclaimed", "claimed")), POLICY, History(), NOW)
    assert (blocked.direction, blocked.drain) == ("none", ("w2", "w1"))
    assert "draining 1 claimed worker(s) at the top (no new jobs; running ones finish)" in blocked.reason


def test_a_busy_pool_with_an_empty_queue_is_not_drained() -> None:
    d = decide(Observation(demand(), supply("claimed", "claimed")), POLICY, History(), NOW)
    assert (d.direction, d.drain) == ("none", ())


def test_jobs_packed_into_an_idle_worker_keep_it() -> None:
    d = decide(Observation(demand((8, 1024, 1)), supply("claimed", "unclaimed", "unclaimed")), POLICY, History(), NOW)
    # The job is packed into index 1 (lowest idle first): index 2 is surplus, drained to go.
    assert (d.count, d.drain) == (3, ("w2",))


def test_a_drained_empty_worker_at_the_top_is_removed() -> None:
    sup = Supply(workers=(worker(0, "claimed"), worker(1, "draining", free=(8, 16384))), taken_at=NOW, count=2)
    assert sup.workers[1].empty
    d = decide(Observation(demand(), sup), POLICY, History(), NOW)
    assert d.count == 1


def test_batch_flavours_never_scale_in() -> None:
    batch = replace(POLICY, can_scale_in=False)
    assert decide(Observation(demand(), supply("unclaimed", "unclaimed")), batch, History(), NOW).direction == "none"


def test_cooldowns() -> None:
    obs = Observation(demand((8, 1024, 30)), supply("claimed"))
    recent_up = History(last_action_at=NOW - 60, last_direction="up")
    d = decide(obs, POLICY, recent_up, NOW)
    assert d.direction == "none" and d.reason.startswith("cooling down (60s of 120s since the last scaling)")
    assert decide(obs, POLICY, History(NOW - 121, "up"), NOW).direction == "up"
    assert decide(obs, POLICY, History(NOW - 200, "down"), NOW).direction == "none"  # 300 s after a scale-in


def test_scale_from_zero_off_and_min() -> None:
    no_zero = replace(POLICY, scale_from_zero=False)
    assert decide(Observation(demand((1, 1, 5)), supply()), no_zero, History(), NOW).direction == "none"
    floor = replace(POLICY, min=3)
    d = decide(Observation(None, supply("claimed")), floor, History(NOW, "up"), NOW)
    assert (d.count, d.direction) == (3, "up")  # raising to min is safe even when blind or cooling down


def test_policy_of_a_flavour() -> None:
    data = yaml.safe_load(EXAMPLE.read_text(encoding="utf-8"))
    data["flavours"]["elastic"]["autoscale"] = {"ramp": 2, "max_scale_down": 4}
    p = Policy.of(parse_site(data).flavours["elastic"])
    assert (p.min, p.max, p.worker_cores, p.worker_memory_mb, p.ramp, p.max_scale_down) == (0, 40, 8, 16384, 2.0, 4)
    assert (p.cooldown, p.cooldown_on_scale_up, p.can_scale_in) == (300, 120, True)
    with pytest.raises(ValueError, match="need 0 <= min <= max"):
        replace(POLICY, min=5, max=2)


# ---------------------------------------------------------------------------
# invariants

ALL_STATES: tuple[WorkerState, ...] = WORKER_STATES
states = st.sampled_from(ALL_STATES)
policies = st.builds(
    Policy,
    min=st.integers(0, 5),
    max=st.integers(5, 50),
    worker_cores=st.integers(1, 16),
    worker_memory_mb=st.integers(1024, 65536),
    max_scale_up=st.integers(1, 20),
    max_scale_down=st.integers(0, 5),
    ramp=st.floats(1.0, 5.0),
    cooldown=st.floats(0, 600),
    cooldown_on_scale_up=st.floats(0, 600),
    stale_after=st.floats(1, 600),
    scale_from_zero=st.booleans(),
    can_scale_in=st.booleans(),
)
shapes = st.lists(st.tuples(st.integers(1, 32), st.integers(1, 131072), st.integers(1, 5000)), max_size=6)


@st.composite
def observations(draw: st.DrawFn) -> Observation:
    worker_states = draw(st.lists(states, max_size=60))
    count = draw(st.integers(0, 70))
    sup = draw(st.none() | st.just(supply(*worker_states, count=count, at=NOW - draw(st.floats(0, 900)))))
    dem = draw(
        st.none()
        | st.builds(lambda s, c, age: demand(*s, complete=c, at=NOW - age), shapes, st.booleans(), st.floats(0, 900))
    )
    return Observation(dem, sup)


histories = st.builds(History, st.none() | st.floats(NOW - 1000, NOW), st.sampled_from(["up", "down", "none"]))


@given(observations(), policies, histories)
def test_decisions_are_always_safe(obs: Observation, policy: Policy, history: History) -> None:
    d: Decision = decide(obs, policy, history, NOW)
    if obs.supply is None:
        assert d.direction == "none"
        return
    current = obs.supply.count
    assert d.current == current
    blind = (
        obs.demand is None
        or not obs.demand.complete
        or NOW - min(obs.demand.taken_at, obs.supply.taken_at) > policy.stale_after
    )
    if d.direction == "up":
        assert d.count <= max(policy.max, policy.min)
        assert d.count - current <= policy.max_scale_up or d.count == policy.min
    if d.drain:
        assert not blind, "an unknown, partial or stale observation must never drain"
        assert policy.can_scale_in and len(d.drain) <= policy.max_scale_down
        claimed = {w.name for w in obs.supply.workers if w.state == "claimed" and drain_safe(w, policy, NOW)}
        assert set(d.drain) <= claimed, "only claimed workers whose payloads are far from retirement are drained"
    if d.direction == "down":
        assert not blind, "an unknown, partial or stale observation must never scale in"
        assert policy.can_scale_in, "batch flavours shrink only by expiring"
        assert current - d.count <= min(obs.supply.removable_tail(), policy.max_scale_down)
        assert d.count >= policy.min
    if d.direction != "none" and current >= policy.min and history.last_action_at is not None:
        wait = policy.cooldown_on_scale_up if history.last_direction == "up" else policy.cooldown
        assert NOW - history.last_action_at >= wait, "acted during a cooldown"


# ---------------------------------------------------------------------------
# The site-wide core quota


def _policy(cores: int) -> Policy:
    return replace(POLICY, worker_cores=cores, max=100)


def test_quota_grants_scale_ups_in_site_order() -> None:
    policies = {"a": _policy(8), "b": _policy(4)}
    decisions = {"a": Decision(2, 5, "a wants 3"), "b": Decision(1, 4, "b wants 3")}
    # 2*8 + 1*4 = 20 cores held; 20 more fit: a gets 2 (16 cores), b gets 1 (4 cores).
    out = apply_quota(decisions, policies, 40)
    assert (out["a"].count, out["b"].count) == (4, 2)
    assert out["a"].reason == "a wants 3; trimmed to +2 by the site core quota (40 cores, 36 in use)"
    assert out["b"].reason == "b wants 3; trimmed to +1 by the site core quota (40 cores, 40 in use)"


def test_quota_never_lowers_a_count_and_ignores_none() -> None:
    policies = {"a": _policy(8)}
    decisions = {"a": Decision(10, 12, "up")}
    assert apply_quota(decisions, policies, 40)["a"].count == 10  # over quota already: hold, not shrink
    assert apply_quota(decisions, policies, None) == decisions


@given(
    st.lists(
        st.tuples(st.integers(1, 16), st.integers(0, 20), st.integers(-5, 10)),
        min_size=1,
        max_size=6,
    ),
    st.integers(1, 400),
    st.integers(0, 200),
)
def test_quota_invariants(rows: list[tuple[int, int, int]], quota: int, elsewhere: int) -> None:
    """The quota holds over every flavour: the ones deciding now and the cores ``elsewhere`` (not due)."""
    policies = {f"f{i}": _policy(c) for i, (c, _, _) in enumerate(rows)}
    decisions = {f"f{i}": Decision(cur, max(0, cur + delta), "r") for i, (_, cur, delta) in enumerate(rows)}
    out = apply_quota(decisions, policies, quota, elsewhere)
    held = elsewhere + sum(d.current * policies[n].worker_cores for n, d in decisions.items())
    after = elsewhere + sum(max(d.count, d.current) * policies[n].worker_cores for n, d in out.items())
    assert after <= max(quota, held)  # growth stops at the quota
    for name, d in out.items():
        asked = decisions[name]
        assert d.current == asked.current
        if asked.direction == "up":
            assert asked.current <= d.count <= asked.count  # only ever trimmed, never lowered
        else:
            assert d == asked  # holds and scale-ins pass through untouched


def _busy(i: int, started: float | None, *, ours: bool = False) -> Worker:
    w = worker(i, "draining" if ours else "claimed")
    return replace(w, oldest_job_start=started, drain_reason="nomadwn autoscale: scale-in" if ours else "")


def test_no_drain_where_a_payload_is_near_its_retirement() -> None:
    # Index 2 is claimed by a payload that started 23h50m ago: a graceful drain would evict
    # it at 24h (retirement counts from the job's start). Index 1's payload is an hour old.
    workers = (worker(0, "unclaimed"), _busy(1, NOW - 3600), _busy(2, NOW - 85800))
    sup = Supply(workers, NOW, 3)
    d = decide(Observation(demand(), sup), POLICY, History(), NOW)
    assert d.drain == () and "not draining 1 claimed worker(s) whose payloads are near their retirement" in d.reason
    unknown = Supply((worker(0, "unclaimed"), _busy(1, None)), NOW, 2)
    assert decide(Observation(demand(), unknown), POLICY, History(), NOW).drain == ()  # start unknown: no drain


@pytest.mark.parametrize("blind", [False, True], ids=["seen", "blind"])
def test_our_drain_ends_before_a_payload_reaches_its_retirement(blind: bool) -> None:
    sup = Supply((worker(0, "unclaimed"), _busy(1, NOW - 86000, ours=True), _busy(2, NOW - 60, ours=True)), NOW, 3)
    dem = Demand((), NOW, ()) if blind else demand()
    d = decide(Observation(dem, sup), POLICY, History(NOW - 1, "down"), NOW)
    assert d.cancel_drain == ("w1",), d  # even blind and cooling down; w2's payload has 24h left
    assert d.direction != "down"
