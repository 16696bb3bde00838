"""The watcher and the deploy path, step by step on a scripted Nomad with a fake clock."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from nomadwn.deploy import FlavourPlan, deploy_flavour, plan_site, previous_stable_version, select_flavours
from nomadwn.errors import ConfigError
from nomadwn.fakes import FakeClock, ScriptedNomad
from nomadwn.nomad import (
    Allocation,
    Deployment,
    DeploymentGroup,
    Evaluation,
    JobStatus,
    JobVersion,
    PlacementFailure,
    PlanResult,
    TaskEvent,
)
from nomadwn.sitefile import load_site
from nomadwn.watch import Progress, Watcher

EXAMPLE = Path(__file__).resolve().parent.parent / "examples" / "glasgow.yaml"
DONE = Evaluation("eval-1", "complete", "", "job-register", "", {})


def alloc(
    n: int,
    status: str = "running",
    healthy: bool | None = None,
    events: list[TaskEvent] | None = None,
    version: int = 1,
) -> Allocation:
    return Allocation(
        id=f"{n:08d}-aaaa-bbbb-cccc-dddddddddddd",
        group="worker",
        node_id=f"node-{n}",
        node_name=f"wn{n:02d}",
        client_status=status,
        desired_status="run",
        job_version=version,
        healthy=healthy,
        canary=False,
        task_failed=status == "failed",
        events=events or [],
    )


def deployment(status: str, healthy: int = 0, desc: str = "", canaries: int = 0, promoted: bool = False) -> Deployment:
    return Deployment(
        id="dep-12345678",
        status=status,
        status_description=desc,
        job_version=1,
        groups={"worker": DeploymentGroup(4, 4, healthy, 0, canaries, canaries, promoted)},
    )


def event(kind: str, message: str, exit_code: int = 0) -> TaskEvent:
    return TaskEvent("condor", kind, message, 1, exit_code, True)


def watcher(nomad: ScriptedNomad, progress: list[Progress] | None = None, auto_promote: bool = False) -> Watcher:
    clock = nomad.clock or FakeClock()
    nomad.clock = clock
    return Watcher(
        nomad,
        clock=clock,
        block=5.0,
        on_progress=progress.append if progress is not None else None,
        auto_promote=auto_promote,
    )


def test_service_rollout_to_healthy_reports_progress() -> None:
    nomad = ScriptedNomad(
        evaluations=[Evaluation("eval-1", "pending", "", "", "", {}), DONE],
        alloc_steps=[[], [alloc(1, "pending")], [alloc(1), alloc(2)], [alloc(1, healthy=True), alloc(2, healthy=True)]],
        deployment_steps=[
            deployment("running"),
            deployment("running"),
            deployment("running"),
            deployment("successful", 2),
        ],
    )
    seen: list[Progress] = []
    verdict = watcher(nomad, seen).watch("glasgow-elastic", "service", "eval-1", 1, timeout=60)
    assert (verdict.outcome, verdict.exit_code) == ("healthy", 0)
    assert verdict.summary == "glasgow-elastic: deployment successful, 2/4 worker(s) healthy"
    assert [p.line() for p in seen][
        -1
    ] == "glasgow-elastic: 2/4 placed, 2 running, 2 healthy, 0 failed, deployment successful"


def test_bad_image_fails_with_the_pull_error_and_where() -> None:
    pull = event("Driver Failure", "Failed to pull `registry.example/cntwn:9.9`: manifest unknown")
    nomad = ScriptedNomad(
        evaluations=[DONE],
        alloc_steps=[[alloc(1, "pending")], [alloc(1, "failed", events=[event("Received", "Task received"), pull])]],
        deployment_steps=[deployment("running")],
    )
    verdict = watcher(nomad).watch("glasgow-elastic", "service", "eval-1", 1, timeout=60)
    assert verdict.outcome == "failed" and verdict.exit_code == 1
    assert verdict.reasons == [
        "allocation 00000001 on node wn01: Driver Failure: "
        "Failed to pull `registry.example/cntwn:9.9`: manifest unknown "
        "(check image.registry, image.repository and the tag or digest)"
    ]


def test_unplaceable_job_explains_the_placement_failure() -> None:
    failure = PlacementFailure(
        nodes_evaluated=3,
        nodes_filtered=3,
        nodes_exhausted=1,
        nodes_available={"scotgrid": 3},
        class_filtered={},
        constraint_filtered={"missing compatible host volumes": 2},
        class_exhausted={},
        dimension_exhausted={"memory": 1},
        quota_exhausted=[],
        coalesced_failures=0,
    )
    nomad = ScriptedNomad(evaluations=[Evaluation("eval-1", "complete", "", "", "eval-2", {"worker": failure})])
    verdict = watcher(nomad).watch("glasgow-cntwn", "system", "eval-1", 1, timeout=60)
    assert verdict.outcome == "failed"
    assert verdict.reasons == [
        "group worker cannot be placed: 3 node(s) evaluated; 2 filtered by missing compatible host volumes "
        "(is the host volume, such as cvmfs, defined on the clients?); 1 out of memory"
    ]


def test_failing_health_check_and_auto_revert_are_explained() -> None:
    check = event("Restart Signaled", 'healthcheck: check "startd" unhealthy')
    nomad = ScriptedNomad(
        evaluations=[DONE],
        alloc_steps=[[alloc(1)], [alloc(1, healthy=False, events=[check])]],
        deployment_steps=[
            deployment("running"),
            deployment("failed", desc="Failed due to unhealthy allocations - rolling back to job version 0"),
        ],
    )
    verdict = watcher(nomad).watch("glasgow-elastic", "service", "eval-1", 1, timeout=60)
    assert verdict.outcome == "failed"
    assert verdict.reasons == [
        "deployment dep-1234 failed: Failed due to unhealthy allocations - rolling back to job version 0",
        'allocation 00000001 on node wn01: Restart Signaled: healthcheck: check "startd" unhealthy'
        " (the health check keeps failing: see the worker's startd)",
        "Nomad's auto_revert rolled the job back to its last stable version",
    ]


def test_oom_kill_is_named() -> None:
    oom = event("Terminated", "Exit Code: 137, Exit Message: OOM Killed", exit_code=137)
    nomad = ScriptedNomad(evaluations=[DONE], alloc_steps=[[alloc(1, "failed", events=[oom])]])
    verdict = watcher(nomad).watch("glasgow-cntwn", "system", "eval-1", 1, timeout=60)
    assert verdict.reasons[0].endswith("(the worker ran out of memory: raise resources.memory or memory_max)")


def test_many_identical_failures_are_summarised() -> None:
    pull = event("Driver Failure", "Failed to pull image")
    nomad = ScriptedNomad(evaluations=[DONE], alloc_steps=[[alloc(i, "failed", events=[pull]) for i in range(6)]])
    verdict = watcher(nomad).watch("glasgow-cntwn", "system", "eval-1", 1, timeout=60)
    assert len(verdict.reasons) == 2
    assert verdict.reasons[1] == "... and 5 more allocation(s) like these"


def test_batch_workers_that_complete_are_not_a_failure() -> None:
    nomad = ScriptedNomad(
        evaluations=[DONE], alloc_steps=[[alloc(1, "pending")], [alloc(1, "complete"), alloc(2, "complete")]]
    )
    verdict = watcher(nomad).watch("glasgow-ephemeral", "batch", "eval-1", 1, timeout=60)
    assert (verdict.outcome, verdict.exit_code) == ("complete", 0)


def test_running_batch_workers_are_healthy() -> None:
    nomad = ScriptedNomad(evaluations=[DONE], alloc_steps=[[alloc(1, "pending")], [alloc(1), alloc(2, "complete")]])
    verdict = watcher(nomad).watch("glasgow-ephemeral", "batch", "eval-1", 1, timeout=60)
    assert verdict.outcome == "healthy"
    assert verdict.summary == "glasgow-ephemeral: 1 ephemeral worker(s) running"


def test_allocations_of_other_versions_are_ignored() -> None:
    old = alloc(9, "failed", events=[event("Driver Failure", "old")], version=0)
    nomad = ScriptedNomad(evaluations=[DONE], alloc_steps=[[old, alloc(1, "pending")], [old, alloc(1)]])
    assert watcher(nomad).watch("glasgow-cntwn", "system", "eval-1", 1, timeout=60).outcome == "healthy"


def test_timeout_exits_2_and_says_what_is_stuck() -> None:
    nomad = ScriptedNomad(
        evaluations=[DONE], alloc_steps=[[alloc(1, "pending")]], deployment_steps=[deployment("running")]
    )
    verdict = watcher(nomad).watch("glasgow-elastic", "service", "eval-1", 1, timeout=12)
    assert (verdict.outcome, verdict.exit_code) == ("timeout", 2)
    assert verdict.summary == "glasgow-elastic: no verdict within 12s"
    assert nomad.clock is not None and nomad.clock.now >= 12


def test_auto_promote_promotes_healthy_canaries() -> None:
    nomad = ScriptedNomad(
        evaluations=[DONE],
        alloc_steps=[[alloc(1)], [alloc(1, healthy=True)], [alloc(1, healthy=True)]],
        deployment_steps=[
            deployment("running", canaries=1),
            deployment("running", healthy=1, canaries=1),
            deployment("successful", healthy=4, canaries=1, promoted=True),
        ],
    )
    assert (
        watcher(nomad, auto_promote=True).watch("glasgow-elastic", "service", "eval-1", 1, timeout=60).outcome
        == "healthy"
    )
    assert ("promote", "dep-12345678") in nomad.calls


# ---------------------------------------------------------------------------
# deploy


def _plan(changed: bool, modify_index: int = 42) -> PlanResult:
    return PlanResult(modify_index, "Edited" if changed else "None", [], {}, {}, "")


def test_unchanged_job_registers_nothing() -> None:
    site = load_site(EXAMPLE)
    nomad = ScriptedNomad(plan_result=_plan(changed=False))
    (planned,) = plan_site(site, nomad, ["cntwn"])
    result = deploy_flavour(nomad, planned, None, timeout=60)
    assert (result.changed, result.registered, result.exit_code) == (False, False, 0)
    assert [c for c, _ in nomad.calls] == ["plan"]


def test_changed_job_registers_with_check_and_set_and_preserved_counts() -> None:
    site = load_site(EXAMPLE)
    nomad = ScriptedNomad(
        plan_result=_plan(changed=True, modify_index=42),
        current=JobStatus("glasgow-elastic", "service", "running", 1, False, 43, {"worker": 7}),
        evaluations=[DONE],
        alloc_steps=[[alloc(1, healthy=True)]],
        deployment_steps=[deployment("successful", 1)],
    )
    (planned,) = plan_site(site, nomad, ["elastic"])
    result = deploy_flavour(nomad, planned, watcher(nomad), timeout=60)
    assert result.exit_code == 0
    assert ("register", {"job": "glasgow-elastic", "enforce_index": 42, "preserve_counts": True}) in nomad.calls


def test_unknown_flavour_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match=r"flavours.nope: no such flavour; the site has: cntwn, elastic, ephemeral"):
        select_flavours(load_site(EXAMPLE), ["nope"])


def test_rollback_target_is_the_previous_stable_version() -> None:
    nomad = ScriptedNomad(job_versions=[JobVersion(3, False, 3), JobVersion(2, False, 2), JobVersion(1, True, 1)])
    assert previous_stable_version(nomad, "j") == 1
    assert previous_stable_version(ScriptedNomad(job_versions=[JobVersion(0, True, 0)]), "j") is None


def test_flavour_plan_reports_predicted_placement_problems() -> None:
    site = load_site(EXAMPLE)
    failure = PlacementFailure(2, 2, 0, {}, {}, {"${attr.kernel.name} = linux": 2}, {}, {}, [], 0)
    planned = FlavourPlan(
        "cntwn",
        plan_site(site, ScriptedNomad(plan_result=_plan(True)), ["cntwn"])[0].job,
        PlanResult(1, "Added", [], {}, {"worker": failure}, ""),
    )
    assert planned.placement_problems == [
        "group worker cannot be placed: 2 node(s) evaluated; 2 filtered by constraint ${attr.kernel.name} = linux"
    ]


# ---------------------------------------------------------------------------
# status: Nomad joined with Consul


def _instance(alloc_id: str, state: str) -> Any:
    from nomadwn.consul import ServiceCheck, ServiceInstance

    sid = f"_nomad-task-{alloc_id}-worker-condor-condor-master-condor"
    return ServiceInstance(
        node="wn01",
        service_id=sid,
        service_name="condor-master",
        address="10.0.0.1",
        port=9621,
        tags=["cntwn", "prod"],
        meta={},
        checks=[ServiceCheck("startd", f"_nomad-check-{alloc_id}", state, "True", sid)],  # type: ignore[arg-type]
    )


def test_status_joins_nomad_and_consul_by_allocation_id() -> None:
    from nomadwn.fakes import FakeConsulHealth
    from nomadwn.status import flavour_status

    site = load_site(EXAMPLE)
    a1, a2, other = alloc(1, healthy=True), alloc(2, healthy=False), alloc(7)
    nomad = ScriptedNomad(
        current=JobStatus("glasgow-elastic", "service", "running", 1, True, 50, {"worker": 4}),
        alloc_steps=[[a1, a2]],
        deployment_steps=[deployment("running", healthy=1)],
    )
    consul = FakeConsulHealth(
        {"condor-master": [_instance(a1.id, "passing"), _instance(a2.id, "critical"), _instance(other.id, "passing")]}
    )
    row = flavour_status(site, "elastic", nomad, consul)
    assert (row.version, row.desired, row.placed, row.running, row.healthy, row.deployment) == (
        1,
        4,
        2,
        2,
        1,
        "running (v1)",
    )
    assert row.checks is not None
    assert (row.checks.passing, row.checks.critical, row.checks.total) == (
        1,
        1,
        2,
    )  # the other job's worker is not counted
    assert row.as_json()["checks"] == {"passing": 1, "warning": 0, "critical": 1, "maintenance": 0}


def test_status_of_an_unregistered_flavour() -> None:
    from nomadwn.status import flavour_status

    row = flavour_status(load_site(EXAMPLE), "ephemeral", ScriptedNomad(), None)
    assert (row.registered, row.job_status, row.desired, row.checks) == (False, "not registered", 2, None)


def test_system_workers_must_keep_running_through_min_healthy_time() -> None:
    """A system job has no deployment: a crash soon after start still fails the deploy."""
    oom = event("Terminated", "Exit Code: 137, Exit Message: OOM Killed", exit_code=137)
    nomad = ScriptedNomad(evaluations=[DONE], alloc_steps=[[alloc(1)], [alloc(1)], [alloc(1, "failed", events=[oom])]])
    assert watcher(nomad).watch("glasgow-cntwn", "system", "eval-1", 1, timeout=60).outcome == "failed"
    steady = ScriptedNomad(evaluations=[DONE], alloc_steps=[[alloc(1, "pending")], [alloc(1)]])
    verdict = watcher(steady).watch("glasgow-cntwn", "system", "eval-1", 1, timeout=60)
    assert verdict.outcome == "healthy"
    assert steady.clock is not None and steady.clock.now >= 10.0  # Nomad's default min_healthy_time, on the fake clock


def test_site_status_asks_consul_once_per_service() -> None:
    from nomadwn.fakes import FakeConsulHealth
    from nomadwn.status import site_status

    calls: list[str] = []

    class Counting(FakeConsulHealth):
        def service_health(self, name: str, tag: str | None = None) -> list[Any]:
            calls.append(name)
            return super().service_health(name, tag)

    nomad = ScriptedNomad(
        current=JobStatus("j", "system", "running", 1, True, 5, {"worker": 1}), alloc_steps=[[alloc(1)]]
    )
    rows = site_status(load_site(EXAMPLE), ["cntwn", "elastic", "ephemeral"], nomad, Counting())
    assert len(rows) == 3
    assert calls == ["condor-master"]  # all three flavours register the same service name
