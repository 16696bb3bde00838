"""Honest verdicts per Nomad version: system rollouts Nomad 1.10 does not track, and 2.0 deployments.

Step by step on a scripted Nomad with a fake clock and scripted Consul checks, then
end to end on the stateful fake Nomad (with its version switch) and a fake Consul fed
by the fake's service registrations.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest
import yaml

from nomadwn.consul import ServiceCheck, ServiceInstance
from nomadwn.consul_health import ConsulClient
from nomadwn.consul_settings import ConsulSettings
from nomadwn.deploy import deploy_flavour, plan_site, rollout_of
from nomadwn.fakes import FakeClock, FakeConsulHealth, ScriptedNomad
from nomadwn.nomad import Allocation, Evaluation, NomadSettings
from nomadwn.nomad_client import NomadClient
from nomadwn.sitefile import parse_site
from nomadwn.watch import Progress, Rollout, Watcher
from tests.fake_consul import FakeConsul
from tests.fake_nomad import FakeNode, FakeNomad

EXAMPLE = Path(__file__).resolve().parent.parent / "examples" / "glasgow.yaml"
DONE = Evaluation("eval-1", "complete", "", "job-register", "", {})
RULES = Rollout(tracked=False, health_check="checks", min_healthy_time=30.0, healthy_deadline=300.0, service="condor")


def alloc(node: int, version: int, status: str = "running", desired: str = "run") -> Allocation:
    return Allocation(
        id=f"{version}{node:07d}-aaaa-bbbb-cccc-dddddddddddd",
        group="worker",
        node_id=f"node-{node}",
        node_name=f"wn{node:02d}",
        client_status=status,
        desired_status=desired,
        job_version=version,
        healthy=None,
        canary=False,
        task_failed=status == "failed",
        events=[],
        name="glasgow-cntwn.worker[0]",
    )


def consul_for(allocs: list[Allocation], status: str = "passing") -> FakeConsulHealth:
    instances = [
        ServiceInstance(
            node=a.node_name,
            service_id=f"_nomad-task-{a.id}-condor-condor-condor",
            service_name="condor",
            address="10.0.0.1",
            port=9621,
            tags=[],
            meta={},
            checks=[ServiceCheck("startd", "c1", status, "", f"_nomad-task-{a.id}-condor-condor-condor")],  # type: ignore[arg-type]
        )
        for a in allocs
    ]
    return FakeConsulHealth(services={"condor": instances})


def watch(nomad: ScriptedNomad, consul: FakeConsulHealth, rules: Rollout = RULES, timeout: float = 600) -> Any:
    nomad.clock = nomad.clock or FakeClock()
    progress: list[Progress] = []
    w = Watcher(nomad, clock=nomad.clock, block=5.0, consul=consul, on_progress=progress.append)
    return w.watch("glasgow-cntwn", "system", "eval-1", 1, timeout=timeout, rollout=rules), progress


def test_1_10_healthy_only_when_every_node_runs_the_new_version_and_passes_for_min_healthy_time() -> None:
    new = [alloc(n, 1) for n in range(4)]
    half = [*new[:2], alloc(2, 0), alloc(3, 0)]
    nomad = ScriptedNomad(evaluations=[DONE], alloc_steps=[half, half, new])
    verdict, progress = watch(nomad, consul_for(new))
    assert verdict.outcome == "healthy"
    assert verdict.summary == ("glasgow-cntwn: 4 of 4 nodes on version 1, each passing its Consul checks for 30s")
    assert progress[0].line() == "glasgow-cntwn: 2 of 4 nodes on version 1, 0 healthy, 0 failed"
    assert nomad.clock is not None and nomad.clock.now >= 30.0


def test_1_10_an_old_version_allocation_still_running_keeps_it_in_progress() -> None:
    new = [alloc(n, 1) for n in range(3)]
    old = alloc(3, 0)  # Nomad's next rolling batch has not come yet
    nomad = ScriptedNomad(evaluations=[DONE], alloc_steps=[[*new, old]])
    verdict, _ = watch(nomad, consul_for(new), timeout=120)
    assert verdict.outcome == "timeout"
    assert "1 node(s) still run an older version: wn03" in verdict.reasons


def test_1_10_a_stopping_old_allocation_still_counts() -> None:
    new = [alloc(n, 1) for n in range(2)]
    stopping = alloc(2, 0, desired="stop")  # told to stop, its payloads still retiring
    nomad = ScriptedNomad(evaluations=[DONE], alloc_steps=[[*new, stopping]])
    assert watch(nomad, consul_for(new), timeout=90)[0].outcome == "timeout"


def test_1_10_a_node_that_lost_its_worker_is_never_healthy() -> None:
    """The old worker was stopped and no new one came (it no longer fits): not healthy."""
    new = [alloc(n, 1) for n in range(2)]
    before = [*new, alloc(2, 0)]
    nomad = ScriptedNomad(evaluations=[DONE], alloc_steps=[before, before, [*new, alloc(2, 0, "complete", "stop")]])
    verdict, _ = watch(nomad, consul_for(new), timeout=120)
    assert verdict.outcome == "timeout"
    assert "1 node(s) no longer run any worker of the job: wn02" in verdict.reasons


def test_1_10_running_but_failing_its_checks_is_never_healthy_and_fails_at_healthy_deadline() -> None:
    new = [alloc(n, 1) for n in range(2)]
    nomad = ScriptedNomad(evaluations=[DONE], alloc_steps=[new])
    verdict, _ = watch(nomad, consul_for(new, status="critical"))
    assert verdict.outcome == "failed"
    assert verdict.summary == "glasgow-cntwn: worker(s) not healthy in time (2 of 2 nodes on version 1)"
    assert "not passing its Consul checks for 30s within healthy_deadline (300s)" in verdict.reasons[0]
    assert nomad.clock is not None and nomad.clock.now > 300


def test_1_10_no_consul_instance_is_not_passing() -> None:
    new = [alloc(n, 1) for n in range(2)]
    nomad = ScriptedNomad(evaluations=[DONE], alloc_steps=[new])
    verdict, _ = watch(nomad, consul_for(new[:1]))  # wn01 never registered in Consul
    assert verdict.outcome == "failed"
    assert "wn01" in verdict.reasons[0]


def test_1_10_failed_new_allocation_fails_at_once() -> None:
    new = [alloc(0, 1, "failed"), alloc(1, 1), alloc(2, 0), alloc(3, 0)]
    nomad = ScriptedNomad(evaluations=[DONE], alloc_steps=[new])
    verdict, _ = watch(nomad, consul_for(new[1:2]))
    assert verdict.outcome == "failed"
    assert verdict.summary == "glasgow-cntwn: 1 worker allocation(s) of version 1 failed (2 of 4 nodes on version 1)"


def _site(version: str, **update: Any) -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load(EXAMPLE.read_text(encoding="utf-8"))
    data["nomad"]["version"] = version
    data.pop("autoscaler")
    data["flavours"] = {"cntwn": data["flavours"]["cntwn"]}
    # A short retirement (kill_timeout 51s), so that a 2m progress deadline covers it.
    data["defaults"]["lifespan"]["retirement"] = "5s"
    data["flavours"]["cntwn"]["update"] = {
        "max_parallel": 1,
        "stagger": "3s",
        "auto_revert": True,
        "min_healthy_time": "1s",
        "healthy_deadline": "20s",
        "progress_deadline": "2m",
        **update,
    }
    return data


def _nodes() -> list[FakeNode]:
    return [FakeNode(id=f"node-{i}", name=f"wn{i:02d}") for i in range(4)]


def _deploy(fake: FakeNomad, consul: FakeConsul, data: dict[str, Any]) -> Any:
    site = parse_site(data)
    nomad = NomadClient(NomadSettings(address=fake.address))
    health = ConsulClient(ConsulSettings(address=consul.address))
    watcher = Watcher(nomad, consul=health, block=0.5)
    (planned,) = plan_site(site, nomad, ["cntwn"])
    return deploy_flavour(nomad, planned, watcher, timeout=60, rollout=rollout_of(site, "cntwn"))


@pytest.mark.parametrize("version", ["1.10.5", "2.0.5"])
def test_a_good_system_rollout_is_healthy_on_each_version(version: str) -> None:
    with FakeNomad(step_delay=0.02, version=version, nodes=_nodes()) as fake, FakeConsul(fake) as consul:
        result = _deploy(fake, consul, _site(version[:4].rstrip(".")))
        assert result.verdict.outcome == "healthy", result.verdict
        if version.startswith("1."):
            assert result.verdict.summary.startswith("glasgow-cntwn: 4 of 4 nodes on version 0")
        else:
            assert "deployment successful" in result.verdict.summary


def test_1_10_bad_image_fails_at_the_first_batch_and_nomadwn_reverts() -> None:
    with FakeNomad(step_delay=0.02, version="1.10.5", nodes=_nodes()) as fake, FakeConsul(fake) as consul:
        assert _deploy(fake, consul, _site("1.10")).verdict.outcome == "healthy"
        fake.settle()
        fake.script("glasgow-cntwn", "bad_image", version=1)
        bad = _site("1.10")
        bad["flavours"]["cntwn"]["image"] = {"tag": "broken"}
        result = _deploy(fake, consul, bad)
        verdict = result.verdict
        assert verdict.outcome == "failed"
        assert "Driver Failure: Failed to pull" in "\n".join(verdict.reasons)
        assert verdict.summary.endswith("(1 of 4 nodes on version 1)")  # the first batch: max_parallel 1
        assert result.reverted_to == 0
        assert verdict.reasons[-1].startswith(
            "auto_revert: Nomad 1.10 cannot revert a system job, so nomadwn reverted glasgow-cntwn from version 1 "
            "to version 0"
        )
        reverts = fake.requests_to("POST", "/v1/job/glasgow-cntwn/revert")
        assert [r.body["JobVersion"] for r in reverts] == [0]
        assert [r.body["EnforcePriorVersion"] for r in reverts] == [1]
        fake.settle(timeout=20)
        job = fake.job("glasgow-cntwn")
        assert job is not None and job["Version"] == 2
        broken = [a for a in fake.allocations("glasgow-cntwn") if a["Job"]["Version"] == 1]
        assert len({a["NodeID"] for a in broken}) == 1  # the revert came before Nomad's next batch


def test_2_0_system_rollout_follows_the_deployment_and_leaves_the_revert_to_nomad() -> None:
    with FakeNomad(step_delay=0.02, version="2.0.5", nodes=_nodes()) as fake, FakeConsul(fake) as consul:
        assert _deploy(fake, consul, _site("2.0")).verdict.outcome == "healthy"
        fake.settle()
        fake.script("glasgow-cntwn", "bad_image", version=1)
        bad = _site("2.0")
        bad["flavours"]["cntwn"]["image"] = {"tag": "broken"}
        result = _deploy(fake, consul, bad)
        assert result.verdict.outcome == "failed"
        assert "Driver Failure: Failed to pull" in "\n".join(result.verdict.reasons)
        assert result.reverted_to is None
        dep = next(d for d in fake.deployments("glasgow-cntwn") if d["JobVersion"] == 1)
        assert dep["Status"] == "failed" and "rolling back to job version 0" in dep["StatusDescription"]
        assert fake.requests_to("POST", "/v1/job/glasgow-cntwn/revert") == []
        time.sleep(0.1)
        fake.settle(timeout=20)
        broken = [a for a in fake.allocations("glasgow-cntwn") if a["Job"]["Version"] == 1]
        assert len(broken) == 1


def test_1_10_consul_unreachable_gives_no_verdict_and_no_revert() -> None:
    with FakeNomad(step_delay=0.02, version="1.10.5", nodes=_nodes()) as fake:
        site = parse_site(_site("1.10"))
        nomad = NomadClient(NomadSettings(address=fake.address))
        nowhere = ConsulClient(ConsulSettings(address="http://127.0.0.1:1", timeout=2))
        (planned,) = plan_site(site, nomad, ["cntwn"])
        result = deploy_flavour(
            nomad, planned, Watcher(nomad, consul=nowhere, block=0.5), timeout=30, rollout=rollout_of(site, "cntwn")
        )
        assert result.verdict is not None
        assert (result.verdict.outcome, result.verdict.exit_code) == ("timeout", 2)
        assert result.verdict.summary == "glasgow-cntwn: no verdict: cannot read the workers' Consul checks"
        assert result.reverted_to is None
