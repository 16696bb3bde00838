"""Demand accounting: each job counted once, free capacity first, quota over every flavour, blind holds."""

from __future__ import annotations

from dataclasses import replace

from hypothesis import given, settings
from hypothesis import strategies as st

from nomadwn.autoscale.accounting import FlavourView, account, headroom
from nomadwn.autoscale.strategy import History, Policy, decide
from nomadwn.pool import WORKER_STATES, Demand, JobShape, Observation, Supply, Worker

NOW = 10_000.0
BASE = Policy(
    min=0,
    max=20,
    worker_cores=8,
    worker_memory_mb=16384,
    max_scale_up=10,
    max_scale_down=2,
    ramp=1.0,
    cooldown=0.0,
    cooldown_on_scale_up=0.0,
    stale_after=180.0,
    scale_from_zero=True,
    can_scale_in=True,
)
REQS = ("A", "B")

shapes = st.builds(
    JobShape,
    cpus=st.integers(1, 16),
    memory_mb=st.integers(0, 40000),
    count=st.integers(1, 300),
    matches=st.frozensets(st.sampled_from(REQS)),
)


@st.composite
def workers(draw: st.DrawFn, flavour: str) -> Worker:
    total = draw(st.integers(1, 16))
    memory = draw(st.integers(1024, 65536))
    return Worker(
        alloc_id=f"{flavour}-{draw(st.uuids())}",
        name=f"w-{flavour}",
        state=draw(st.sampled_from(WORKER_STATES)),
        flavour=flavour,
        index=draw(st.integers(0, 50)),
        cpus_total=total,
        cpus_free=draw(st.integers(0, total)),
        memory_total_mb=memory,
        memory_free_mb=draw(st.integers(0, memory)),
        healthy=draw(st.sampled_from([None, True, False])),
    )


@st.composite
def sites(draw: st.DrawFn) -> tuple[Demand, dict[str, FlavourView]]:
    views: dict[str, FlavourView] = {}
    for i in range(draw(st.integers(1, 4))):
        name = f"f{i}"
        policy = replace(
            BASE,
            worker_cores=draw(st.integers(1, 16)),
            worker_memory_mb=draw(st.integers(1024, 65536)),
            max=draw(st.integers(0, 30)),
            priority=draw(st.integers(-2, 2)),
            scale_from_zero=draw(st.booleans()),
        )
        ws = tuple(draw(st.lists(workers(name), max_size=8)))
        supply = draw(st.none() | st.just(Supply(ws, NOW, min(policy.max, len(ws)))))
        views[name] = FlavourView(policy, draw(st.none() | st.sampled_from(REQS)), supply)
    demand = Demand(tuple(draw(st.lists(shapes, max_size=6))), NOW, ("s1",))
    return demand, views


@given(sites())
@settings(max_examples=150)
def test_a_job_is_never_counted_for_two_flavours(site: tuple[Demand, dict[str, FlavourView]]) -> None:
    demand, views = site
    acc = account(demand, views)
    assert sum(s.jobs for s in acc.shares.values()) + acc.unfit + acc.unserved == demand.jobs
    for name, share in acc.shares.items():
        view = views[name]
        for shape in share.shapes:
            assert shape.eligible(view.requirements) and view.policy.fits(shape), (name, shape)
        assert share.absorbed + share.held <= share.jobs
        if view.supply is not None:
            assert share.new_workers <= headroom(view.policy, view.supply)
            assert share.used <= {w.alloc_id for w in view.supply.workers}
        else:
            assert share.new_workers == 0 and share.absorbed == 0


def _fit(shape: JobShape, w: Worker) -> int:
    spare = w.spare
    n = spare.cores // shape.cpus
    return min(n, spare.memory_mb // shape.memory_mb) if shape.memory_mb else n


@given(sites(), shapes)
@settings(max_examples=150)
def test_free_capacity_always_absorbs_demand_first(site: tuple[Demand, dict[str, FlavourView]], one: JobShape) -> None:
    """With one shape, packing is exact: the jobs the candidates' spare capacity holds never ask for a worker."""
    _, views = site
    acc = account(Demand((one,), NOW, ("s1",)), views)
    candidates = [n for n, v in views.items() if one.eligible(v.requirements) and v.policy.fits(one)]
    room = sum(_fit(one, w) for n in candidates if (s := views[n].supply) is not None for w in s.workers)
    absorbed = sum(acc.shares[n].absorbed for n in views)
    assert absorbed == min(one.count, room)
    if one.count <= room:
        assert all(s.new_workers == 0 for s in acc.shares.values())


def test_the_cheapest_flavour_takes_the_jobs_then_the_next_when_it_is_full() -> None:
    small = replace(BASE, worker_cores=4, worker_memory_mb=8192, max=20)
    views = {
        "elastic": FlavourView(BASE, "A", Supply((), NOW, 0)),
        "burst": FlavourView(small, None, Supply((), NOW, 0)),
    }
    acc = account(Demand((JobShape(1, 2048, 100, matches=frozenset({"A"})),), NOW, ("s1",)), views)
    # burst: 20 workers x 4 jobs = 80 jobs; elastic: the other 20 in 3 workers of 8.
    assert (acc.shares["burst"].jobs, acc.shares["burst"].new_workers) == (80, 20)
    assert (acc.shares["elastic"].jobs, acc.shares["elastic"].new_workers) == (20, 3)
    assert 20 * 4 + 3 * 8 <= 1.25 * 100
    favoured = {**views, "elastic": FlavourView(replace(BASE, priority=1), "A", Supply((), NOW, 0))}
    acc = account(Demand((JobShape(1, 2048, 100, matches=frozenset({"A"})),), NOW, ("s1",)), favoured)
    assert (acc.shares["elastic"].jobs, acc.shares["burst"].jobs) == (100, 0)  # priority wins over size


def test_jobs_of_a_flavour_that_cannot_be_seen_are_held_not_pushed_on() -> None:
    small = replace(BASE, worker_cores=4, worker_memory_mb=8192)
    views = {"elastic": FlavourView(BASE, None, Supply((), NOW, 0)), "burst": FlavourView(small, None, None)}
    acc = account(Demand((JobShape(1, 1024, 10),), NOW, ("s1",)), views)
    assert acc.shares["burst"].held == 10 and acc.shares["elastic"].jobs == 0


blind_demands = st.sampled_from(
    [
        Demand((), NOW, ()),  # the collector lists no schedd
        Demand((), NOW, ("s1",), ("s2",)),  # a schedd did not answer
        Demand((), NOW - 1000, ("s1",)),  # stale
    ]
)


@given(sites(), blind_demands, st.integers(1, 3))
@settings(max_examples=200)
def test_no_step_scales_in_or_drains_on_a_blind_observation(
    site: tuple[Demand, dict[str, FlavourView]], blind: Demand, want: int
) -> None:
    _, views = site
    for view in views.values():
        if view.supply is None:
            continue
        policy = replace(view.policy, min_schedds=want) if blind.schedds else view.policy
        d = decide(Observation(blind, view.supply), policy, History(), NOW)
        assert d.direction != "down" and d.drain == (), d
        assert "fail static" in d.reason or "raising to min" in d.reason


def test_expected_schedds_by_name_or_number() -> None:
    idle = Worker(alloc_id="a", name="w", state="draining", index=0, cpus_free=8, memory_free_mb=16384)
    sup = Supply((idle,), NOW, 1)  # drained and empty: removable when the observation can be trusted
    seen = Demand((), NOW, ("s1",))
    assert decide(Observation(seen, sup), BASE, History(), NOW).direction == "down"
    named = replace(BASE, schedds=("s1", "s2"), min_schedds=2)
    d = decide(Observation(seen, sup), named, History(), NOW)
    assert d.direction == "none" and "schedd(s) s2 not seen in the collector" in d.reason
    two = replace(BASE, min_schedds=2)
    d = decide(Observation(seen, sup), two, History(), NOW)
    assert "only 1 schedd(s) answered, the site expects at least 2" in d.reason
