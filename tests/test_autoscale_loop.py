"""The autoscaler loop, one step at a time, on in-memory fakes with a fake clock.

Every phase has its outage: HTCondor (demand, workers), Nomad (job, allocations,
dispatched children, scale, dispatch) and Consul (the lock). The rules under test:
nothing scales in on a blind observation, no claimed worker is removed, only the
leader acts, and a failed action is retried from a fresh observation.
"""

from __future__ import annotations

import threading
from typing import Any

import pytest

from nomadwn.autoscale.loop import Autoscaler
from nomadwn.errors import ConfigError
from nomadwn.fakes import FakeClock, FakeLock, MemoryCondor, MemoryNomad
from nomadwn.model import Site
from nomadwn.sitefile import load_site
from tests.conftest import EXAMPLE

ELASTIC, BURST = "glasgow-elastic", "glasgow-burst"
NOW = 1_800_000_000.0


@pytest.fixture
def site() -> Site:
    return load_site(EXAMPLE)


class World:
    """The example site's autoscaled flavours on fakes: elastic with 4 workers, no burst workers."""

    def __init__(self, site: Site, *, workers: int = 4, lock: FakeLock | None = None, dry_run: bool = False) -> None:
        self.clock = FakeClock(NOW)
        self.nomad = MemoryNomad()
        self.nomad.add_service(ELASTIC, workers)
        self.condor = MemoryCondor(self.nomad, self.clock, flavours={ELASTIC: "elastic", BURST: "burst"})
        self.events: list[dict[str, Any]] = []
        self.lock = lock
        self.scaler = Autoscaler(
            site,
            self.condor,
            self.nomad,
            leadership=lock,
            clock=self.clock,
            dry_run=dry_run,
            log_event=lambda e: self.events.append(dict(e)),
        )

    def ids(self) -> list[str]:
        return [a.id for a in self.nomad.allocs[ELASTIC]]

    def claim(self, *indexes: int) -> None:
        for i in indexes:
            self.condor.claims[self.ids()[i]] = "claimed"

    def scales(self) -> list[dict[str, Any]]:
        return [c for kind, c in self.nomad.calls if kind == "scale"]

    def dispatches(self) -> list[dict[str, Any]]:
        return [c for kind, c in self.nomad.calls if kind == "dispatch"]


# ---------------------------------------------------------------------------
# Scaling up and down


def test_idle_demand_scales_the_service_up_with_the_reason_as_message(site: Site) -> None:
    w = World(site)
    w.claim(0, 1, 2, 3)
    w.condor.idle[(8, 16000)] = 40  # 40 whole-worker jobs, every worker busy
    step = w.scaler.step()
    # shortfall 40 workers, ramp 2: +20, capped by max_scale_up 8.
    assert w.scales() == [
        {
            "job": ELASTIC,
            "group": "worker",
            "count": 12,
            "message": "nomadwn autoscale: 40 idle job(s) (40 fit), 40 worker(s) needed, 0 spare: "
            "up by 8 (shortfall 40, ramp 2)",
        }
    ]
    report = {r.flavour: r for r in step.flavours}["elastic"]
    assert (report.current, report.target, report.action) == (4, 12, "scaled up to 12")
    assert report.demand == "40 idle job(s), 40 fit" and report.supply == "4 worker(s) (4 claimed)"
    assert w.scaler.metrics.value("nomadwn_scaling_actions_total", flavour="elastic", direction="up", dry_run="false")


def test_new_workers_count_as_spare_so_the_next_step_does_not_ask_again(site: Site) -> None:
    w = World(site)
    w.claim(0, 1, 2, 3)
    w.condor.idle[(8, 16000)] = 6
    w.scaler.step()
    assert w.scales()[-1]["count"] == 7  # shortfall 6, ramp 2: +3
    w.clock.advance(600)  # past every cooldown
    w.scaler.step()
    # 3 new unclaimed workers, 6 idle jobs: shortfall 3, ramp 2: +2.
    assert [s["count"] for s in w.scales()] == [7, 9]


def test_cooldown_after_scaling_up_holds_the_next_evaluation(site: Site) -> None:
    w = World(site)
    w.claim(0, 1, 2, 3)
    w.condor.idle[(8, 16000)] = 40
    w.scaler.step()
    w.clock.advance(61)  # the next evaluation is due, cooldown_on_scale_up (2m) is not over
    step = w.scaler.step()
    assert len(w.scales()) == 1
    assert step.flavours[0].reason.startswith("cooling down (61s of 120s since the last scaling)")


def test_scale_in_removes_only_the_unclaimed_workers_at_the_top(site: Site) -> None:
    w = World(site)
    w.claim(0, 2)  # indexes 1 and 3 unclaimed: only index 3 sits at the top
    step = w.scaler.step()
    assert [s["count"] for s in w.scales()] == [3]
    assert "down by 1 unclaimed worker(s) at the top of the allocation index" in step.flavours[0].reason


def test_a_claimed_worker_at_the_top_blocks_scale_in(site: Site) -> None:
    w = World(site)
    w.claim(3)
    step = w.scaler.step()
    assert w.scales() == []
    assert "no unclaimed worker at the top of the allocation index to remove" in step.flavours[0].reason


def test_a_worker_claimed_between_observation_and_action_is_not_removed(site: Site) -> None:
    w = World(site)
    calls = {"n": 0}

    def claim_on_second_look() -> None:
        calls["n"] += 1
        if calls["n"] == 2:
            w.claim(3)

    w.condor.on_workers = claim_on_second_look
    step = w.scaler.step()
    assert w.scales() == []
    elastic = {r.flavour: r for r in step.flavours}["elastic"]
    assert elastic.action.startswith("not scaled: the workers changed since the observation")


def test_batch_flavour_dispatches_one_child_per_worker_and_never_scales_in(site: Site) -> None:
    w = World(site)
    w.claim(0, 1, 2, 3)
    w.condor.idle[(4, 8000)] = 30
    w.scaler.step(force=True)
    burst = w.dispatches()
    # burst: 30 four-core jobs -> 30 workers; ramp 3 -> 10, capped by max_scale_up 5.
    assert len(burst) == 5
    assert {d["job"] for d in burst} == {BURST}
    assert len({d["token"] for d in burst}) == 5  # one idempotency token per worker
    assert burst[0]["meta"]["nomadwn_reason"].startswith("30 idle job(s) (30 fit), 30 worker(s) needed, 0 spare")
    w.condor.idle.clear()
    w.clock.advance(3600)
    step = w.scaler.step()
    assert len(w.dispatches()) == 5  # no demand: no new workers, and none removed
    assert {r.flavour: r for r in step.flavours}["burst"].target == 5


def test_the_site_core_quota_trims_scale_ups(site: Site) -> None:
    w = World(site)
    w.claim(0, 1, 2, 3)
    w.condor.idle[(4, 8000)] = 400  # fits both flavours
    w.scaler.core_quota = 64  # 4 elastic workers hold 32 cores: 32 left
    step = w.scaler.step(force=True)
    counts = {r.flavour: (r.current, r.target) for r in step.flavours}
    assert counts == {"elastic": (4, 8), "burst": (0, 0)}
    assert "trimmed to +0 by the site core quota (64 cores, 64 in use)" in step.flavours[1].reason


def test_dry_run_decides_and_counts_but_never_acts(site: Site) -> None:
    w = World(site, dry_run=True)
    w.claim(0, 1, 2, 3)
    w.condor.idle[(8, 16000)] = 40
    step = w.scaler.step(force=True)
    assert w.nomad.calls == []
    assert step.flavours[0].action == "would scale up to 12 (dry run)"
    assert w.scaler.metrics.value("nomadwn_scaling_actions_total", flavour="elastic", direction="up", dry_run="true")


# ---------------------------------------------------------------------------
# Outages in every phase: nothing scales in blind


BLIND = [
    pytest.param("condor", "idle_demand", "idle demand could not be observed", id="condor-demand-down"),
    pytest.param("condor", "workers", "the flavour's workers could not be observed", id="condor-workers-down"),
    pytest.param("nomad", "job", "the flavour's workers could not be observed", id="nomad-job-read-down"),
    pytest.param("nomad", "allocations", "the flavour's workers could not be observed", id="nomad-allocs-down"),
    pytest.param("partial", "", "idle demand is partial (a schedd did not answer)", id="condor-schedd-partial"),
    pytest.param("stale", "", "the observation is older than 180s", id="condor-demand-stale"),
]


@pytest.mark.parametrize(("where", "what", "reason"), BLIND)
def test_no_scale_in_on_a_blind_observation(site: Site, where: str, what: str, reason: str) -> None:
    w = World(site)  # four unclaimed workers, no demand: a clear scale-in if it could see
    if where == "condor":
        w.condor.fail.add(what)
    elif where == "nomad":
        w.nomad.fail.add(what)
    elif where == "partial":
        w.condor.partial = True
    else:
        w.condor.demand_age = 600
    step = w.scaler.step(force=True)
    assert w.scales() == [] and w.dispatches() == []
    assert reason in {r.flavour: r for r in step.flavours}["elastic"].reason
    assert step.errors or where == "stale"
    # Sight comes back: the scale-in happens, from a fresh observation.
    w.condor.fail.clear()
    w.nomad.fail.clear()
    w.condor.partial, w.condor.demand_age = False, 0
    w.clock.advance(60)
    w.scaler.step(force=True)
    assert [s["count"] for s in w.scales()] == [2]


@pytest.mark.parametrize("where", ["idle_demand", "workers"])
def test_no_scale_up_either_while_condor_is_down(site: Site, where: str) -> None:
    w = World(site)
    w.claim(0, 1, 2, 3)
    w.condor.idle[(8, 16000)] = 40
    w.condor.fail.add(where)
    w.scaler.step(force=True)
    assert w.nomad.calls == []
    # One demand query per distinct requirements (elastic's and burst's), one workers query.
    assert w.scaler.metrics.value("nomadwn_errors_total", phase="condor") == (2 if where == "idle_demand" else 1)


def test_nomad_down_for_the_action_is_counted_and_retried_without_cooldown(site: Site) -> None:
    w = World(site)
    w.claim(0, 1, 2, 3)
    w.condor.idle[(8, 16000)] = 40
    w.nomad.fail.add("scale")
    step = w.scaler.step()
    assert step.flavours[0].action.startswith("failed: Nomad: scale at http://nomad.test:4646 failed")
    assert w.scaler.metrics.value("nomadwn_errors_total", phase="act") == 1
    assert [e["outcome"] for e in w.events if e.get("outcome")] == ["failed"]
    w.nomad.fail.clear()
    w.clock.advance(60)
    w.scaler.step()
    assert [s["count"] for s in w.scales()] == [12]  # not held back by a cooldown: nothing was done


def test_dispatch_failing_half_way_reports_what_was_started(site: Site) -> None:
    w = World(site)
    w.condor.idle[(4, 8000)] = 30
    w.claim(0, 1, 2, 3)
    real = w.nomad.dispatch
    calls = {"n": 0}

    def flaky(*args: Any, **kwargs: Any) -> Any:
        calls["n"] += 1
        if calls["n"] == 3:
            w.nomad.fail.add("dispatch")
        return real(*args, **kwargs)

    w.nomad.dispatch = flaky  # type: ignore[method-assign]
    step = w.scaler.step(force=True)
    assert len(w.dispatches()) == 2
    assert {r.flavour: r for r in step.flavours}["burst"].action == "dispatched 2 of 5 worker(s); the rest failed"


def test_batch_supply_down_means_no_dispatch(site: Site) -> None:
    w = World(site)
    w.condor.idle[(4, 8000)] = 30
    w.nomad.fail.add("dispatched")
    step = w.scaler.step(force=True)
    assert w.dispatches() == []
    assert "could not be observed" in {r.flavour: r for r in step.flavours}["burst"].reason


# ---------------------------------------------------------------------------
# Leadership: exactly one replica acts


def test_a_follower_observes_nothing_and_acts_never(site: Site) -> None:
    w = World(site, lock=FakeLock(held=False))
    w.condor.idle[(8, 16000)] = 40
    step = w.scaler.step(force=True)
    assert not step.leader and step.flavours == [] and w.nomad.calls == []
    assert w.scaler.metrics.value("nomadwn_leader") == 0


def test_consul_down_means_not_leader(site: Site) -> None:
    w = World(site, lock=FakeLock(down=True))
    step = w.scaler.step(force=True)
    assert not step.leader and w.nomad.calls == []
    assert w.scaler.metrics.value("nomadwn_errors_total", phase="consul") == 1
    assert step.errors == ["Consul: renewing session at http://127.0.0.1:8500 failed: connection refused"]


def test_two_replicas_on_one_lock_only_the_holder_scales(site: Site) -> None:
    shared = {"holder": "a"}

    class Shared(FakeLock):
        def __init__(self, me: str) -> None:
            super().__init__()
            self.me = me

        def hold(self) -> bool:
            return shared["holder"] == self.me

    a, b = World(site, lock=Shared("a")), World(site, lock=Shared("b"))
    b.nomad, b.condor = a.nomad, a.condor  # the same cluster
    b.scaler.nomad, b.scaler.condor = a.nomad, a.condor
    a.claim(0, 1, 2, 3)
    a.condor.idle[(8, 16000)] = 40
    assert a.scaler.step(force=True).leader and not b.scaler.step(force=True).leader
    assert len(a.scales()) == 1
    shared["holder"] = "b"  # a died; b took the lock
    a.clock.advance(600)
    b.clock.advance(600)
    assert b.scaler.step(force=True).leader
    assert [s["count"] for s in a.scales()] == [12, 20]


def test_run_stops_on_the_event_and_releases_the_lock(site: Site) -> None:
    lock = FakeLock()
    w = World(site, lock=lock)
    stop = threading.Event()
    w.scaler.tick = lambda: 0.01  # type: ignore[method-assign]
    done = threading.Thread(target=w.scaler.run, args=(stop,))
    done.start()
    while lock.holds < 3:
        threading.Event().wait(0.01)
    stop.set()
    done.join(5)
    assert not done.is_alive() and lock.released == 1
    assert w.events[-1] == {"event": "stopped"}


# ---------------------------------------------------------------------------
# Requirements


def test_each_distinct_requirement_is_one_demand_query(site: Site) -> None:
    w = World(site)
    w.scaler.step(force=True)
    assert w.condor.requirements_seen == ["WantGPU =!= true", None]  # elastic's, then burst's


def test_a_bad_requirement_is_a_config_error_naming_the_field(site: Site) -> None:
    elastic = site.flavours["elastic"]
    assert elastic.autoscale is not None
    bad = site.model_copy(
        update={
            "flavours": {
                **site.flavours,
                "elastic": elastic.model_copy(
                    update={"autoscale": elastic.autoscale.model_copy(update={"requirements": "(WantGPU"})}
                ),
            }
        }
    )
    clock = FakeClock(NOW)
    nomad = MemoryNomad()
    with pytest.raises(ConfigError) as caught:
        Autoscaler(bad, MemoryCondor(nomad, clock), nomad, clock=clock)
    assert [str(p) for p in caught.value.problems] == [
        "flavours.elastic.autoscale.requirements: not a ClassAd expression: Unable to parse string into a ClassAd."
    ]


def test_metrics_carry_demand_supply_and_desired_count(site: Site) -> None:
    w = World(site)
    w.claim(0)
    w.condor.idle[(8, 16000)] = 3
    w.scaler.step(force=True)
    m = w.scaler.metrics
    assert m.value("nomadwn_idle_jobs", flavour="elastic") == 3
    assert m.value("nomadwn_workers", flavour="elastic", state="claimed") == 1
    assert m.value("nomadwn_workers", flavour="elastic", state="unclaimed") == 3
    assert m.value("nomadwn_current_count", flavour="elastic") == 4
    assert m.value("nomadwn_desired_count", flavour="elastic") == 4
    assert b"nomadwn_step_duration_seconds_count 1.0" in m.render()
