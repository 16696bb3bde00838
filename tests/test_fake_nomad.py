"""Tests of tests/fake_nomad.py: the fake Nomad HTTP API that nomadwn's deploy tests run against."""

from __future__ import annotations

import copy
import itertools
import json
import re
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import nomad
import nomad.api.exceptions as nomad_exc
import pytest
import requests

from nomadwn.errors import NomadError
from nomadwn.nomad import DispatchedJob, NomadSettings
from nomadwn.nomad_client import NomadClient
from tests.fake_nomad import (
    ENFORCE_INDEX_PREFIX,
    FakeNode,
    FakeNomad,
    go_duration,
    job_diff,
    parse_go_duration,
    snappy_literal,
)

ROOT = Path(__file__).resolve().parent.parent
FIXTURES = Path(__file__).resolve().parent / "fixtures" / "nomad"
GLASGOW = ROOT / "jobspecs" / "glasgow"
STEP = 0.02

Json = dict[str, Any]


@pytest.fixture
def fake() -> Iterator[FakeNomad]:
    with FakeNomad(step_delay=STEP) as f:
        yield f


@pytest.fixture(autouse=True)
def _no_nomad_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """python-nomad reads NOMAD_* from the environment; keep the host's out of these tests."""
    for var in (
        "NOMAD_ADDR",
        "NOMAD_TOKEN",
        "NOMAD_NAMESPACE",
        "NOMAD_REGION",
        "NOMAD_CLIENT_CERT",
        "NOMAD_CLIENT_KEY",
    ):
        monkeypatch.delenv(var, raising=False)


def job_body(
    job_id: str = "web",
    *,
    type_: str = "service",
    count: int | None = 2,
    image: str = "registry.example/scotgrid/condor:1.0",
    canary: int = 0,
    auto_promote: bool = False,
    auto_revert: bool = False,
) -> Json:
    """A job shaped like nomadwn's: one group "worker", one docker task "condor" with a "startd" check."""
    group: Json = {
        "Name": "worker",
        "RestartPolicy": {"Attempts": 2, "Delay": 15_000_000_000, "Interval": 1_800_000_000_000, "Mode": "fail"},
        "Tasks": [
            {
                "Name": "condor",
                "Driver": "docker",
                "Config": {"image": image, "entrypoint": ["/bin/sh", "/local/start.sh"]},
                "Resources": {"Cores": 2, "MemoryMB": 4096},
                "KillTimeout": 30_000_000_000,
                "Services": [
                    {
                        "Name": "condor-startd",
                        "Provider": "consul",
                        "Checks": [{"Name": "startd", "Type": "script", "Command": "condor_who"}],
                    }
                ],
            }
        ],
    }
    if count is not None:
        group["Count"] = count
    job: Json = {
        "ID": job_id,
        "Name": job_id,
        "Type": type_,
        "Datacenters": ["scotgrid"],
        "Namespace": "default",
        "Region": "global",
        "Meta": {"nomadwn_site": "glasgow"},
        "TaskGroups": [group],
    }
    if type_ == "service":
        job["Update"] = {
            "MaxParallel": 2,
            "Canary": canary,
            "AutoPromote": auto_promote,
            "AutoRevert": auto_revert,
            "MinHealthyTime": 10_000_000_000,
        }
    return {"Job": job}


def url(fake: FakeNomad, path: str) -> str:
    return f"{fake.address}{path}"


def get(fake: FakeNomad, path: str, **params: Any) -> requests.Response:
    return requests.get(url(fake, path), params=params, timeout=10)


def register(fake: FakeNomad, body: Json, **extra: Any) -> requests.Response:
    return requests.post(url(fake, "/v1/jobs"), json={**body, **extra}, timeout=10)


def index_of(response: requests.Response) -> int:
    return int(response.headers["X-Nomad-Index"])


def load_fixture(name: str) -> Any:
    return json.loads((FIXTURES / name).read_text(encoding="utf-8"))["payload"]


def assert_keys(doc: Any, ours: Any, where: str) -> None:
    """Every key of Nomad's documented payload is in the fake's."""
    assert isinstance(doc, dict), where
    assert isinstance(ours, dict), f"{where}: fake gave {type(ours).__name__}"
    missing = sorted(set(doc) - set(ours))
    assert not missing, f"{where}: fake lacks {missing}"


def live_allocs(fake: FakeNomad, job_id: str = "web") -> list[Json]:
    """The job's allocations that are neither stopping nor terminal."""
    return [
        a
        for a in get(fake, f"/v1/job/{job_id}/allocations").json()
        if a["DesiredStatus"] == "run" and a["ClientStatus"] in ("pending", "running")
    ]


def wait_deployment(fake: FakeNomad, job_id: str, version: int, status: str, timeout: float = 5.0) -> Json:
    """Follow the job's latest deployment with blocking queries until it is ``version`` in ``status``."""
    deadline = time.monotonic() + timeout
    index = 0
    while time.monotonic() < deadline:
        response = get(fake, f"/v1/job/{job_id}/deployment", index=index, wait="1s")
        index = index_of(response)
        dep = response.json()
        if dep and (dep["JobVersion"], dep["Status"]) == (version, status):
            return dict(dep)
    raise AssertionError(f"no {status} deployment of {job_id} version {version} within {timeout}s")


def deployed(fake: FakeNomad, body: Json) -> Json:
    """Register ``body``, let the fake settle, return the job."""
    assert register(fake, body).status_code == 200
    fake.settle()
    job = fake.job(body["Job"]["ID"])
    assert job is not None
    return job


# ---------------------------------------------------------------------------
# Basics


def test_address_binds_a_free_port_and_answers() -> None:
    session = requests.Session()
    with FakeNomad() as one, FakeNomad() as two:
        assert one.address.startswith("http://127.0.0.1:")
        assert one.port != two.port
        assert get(one, "/v1/status/leader").json() == "127.0.0.1:4647"
        assert session.get(url(one, "/v1/status/leader"), timeout=2).status_code == 200  # a kept-alive connection
    with pytest.raises(requests.ConnectionError):
        requests.get(url(one, "/v1/status/leader"), timeout=2)
    with pytest.raises(requests.ConnectionError):
        session.get(url(one, "/v1/status/leader"), timeout=2)
    session.close()


def test_go_durations() -> None:
    assert parse_go_duration("5s") == 5
    assert parse_go_duration("300ms") == pytest.approx(0.3)
    assert parse_go_duration("1m30s") == 90
    assert parse_go_duration("1.5h") == 5400
    assert parse_go_duration("0") == 0
    for bad in ("", "5", "5x", "s", "1m30"):
        with pytest.raises(ValueError):
            parse_go_duration(bad)
    assert go_duration(1_800_000_000_000) == "30m0s"
    assert go_duration(15_000_000_000) == "15s"
    assert go_duration(3_600_000_000_000) == "1h0m0s"


def test_every_get_carries_x_nomad_index(fake: FakeNomad) -> None:
    deployed(fake, job_body())
    allocs = get(fake, "/v1/job/web/allocations").json()
    ev = fake.evaluations("web")[0]
    dep = get(fake, "/v1/job/web/deployment").json()
    for path in (
        "/v1/jobs",
        "/v1/job/web",
        "/v1/job/web/versions",
        "/v1/job/web/allocations",
        "/v1/job/web/evaluations",
        "/v1/job/web/deployment",
        "/v1/job/web/deployments",
        "/v1/job/web/summary",
        "/v1/job/web/scale",
        f"/v1/allocation/{allocs[0]['ID']}",
        f"/v1/evaluation/{ev['ID']}",
        f"/v1/deployment/{dep['ID']}",
        "/v1/job/missing",
    ):
        response = get(fake, path, namespace="default")
        assert int(response.headers["X-Nomad-Index"]) >= 1, path
        assert response.headers["X-Nomad-KnownLeader"] == "true", path


def test_missing_objects_are_404_with_nomads_texts(fake: FakeNomad) -> None:
    for path, text in (
        ("/v1/job/nope", "job not found"),
        ("/v1/job/nope/versions", "job versions not found"),
        ("/v1/allocation/nope", "alloc not found"),
        ("/v1/evaluation/nope", "eval not found"),
        ("/v1/deployment/nope", "deployment not found"),
    ):
        response = get(fake, path)
        assert (response.status_code, response.text) == (404, text), path
    assert get(fake, "/v1/job/nope/deployment").json() is None
    assert get(fake, "/v1/job/nope/allocations").json() == []
    assert get(fake, "/v1/no/such/endpoint").status_code == 404
    assert get(fake, "/v1/job/web", region="elsewhere").text == "No path to region"


# ---------------------------------------------------------------------------
# Blocking queries


def _blocking_get(fake: FakeNomad, path: str, out: dict[str, Any], **params: Any) -> None:
    start = time.monotonic()
    out["response"] = get(fake, path, **params)
    out["elapsed"] = time.monotonic() - start


def test_blocking_query_returns_early_on_change(fake: FakeNomad) -> None:
    deployed(fake, job_body())
    first = get(fake, "/v1/job/web/allocations")
    index = index_of(first)
    out: dict[str, Any] = {}
    waiter = threading.Thread(
        target=_blocking_get, args=(fake, "/v1/job/web/allocations", out), kwargs={"index": index, "wait": "5s"}
    )
    waiter.start()
    time.sleep(0.2)
    assert waiter.is_alive(), "the query returned before anything changed"
    fake.fail_alloc(first.json()[0]["ID"], "Driver Failure", "boom")
    waiter.join(timeout=10)
    assert index_of(out["response"]) > index
    assert out["elapsed"] < 4.0
    assert {a["ClientStatus"] for a in out["response"].json()} == {"running", "failed"}


def test_blocking_query_times_out_without_change(fake: FakeNomad) -> None:
    deployed(fake, job_body())
    response = get(fake, "/v1/job/web/deployment")
    index = index_of(response)
    start = time.monotonic()
    again = get(fake, "/v1/job/web/deployment", index=index, wait="300ms")
    elapsed = time.monotonic() - start
    assert index_of(again) == index
    assert again.json() == response.json()
    assert 0.25 <= elapsed < 3.0


def test_blocking_query_ignores_unrelated_changes(fake: FakeNomad) -> None:
    deployed(fake, job_body("alpha"))
    job = get(fake, "/v1/job/alpha")
    index = index_of(job)
    assert index == job.json()["ModifyIndex"]  # a single object answers with its own ModifyIndex
    out: dict[str, Any] = {}
    waiter = threading.Thread(
        target=_blocking_get, args=(fake, "/v1/job/alpha", out), kwargs={"index": index, "wait": "500ms"}
    )
    waiter.start()
    time.sleep(0.05)
    deployed(fake, job_body("beta"))
    waiter.join(timeout=10)
    assert index_of(out["response"]) == index  # beta did not wake alpha's query
    assert out["elapsed"] >= 0.45


def test_list_query_answers_with_the_table_index(fake: FakeNomad) -> None:
    """Like Nomad, a list answers with its table's index, which other jobs move too."""
    deployed(fake, job_body("alpha"))
    index = index_of(get(fake, "/v1/job/alpha/allocations"))
    deployed(fake, job_body("beta"))
    again = get(fake, "/v1/job/alpha/allocations", index=index, wait="2s")
    assert index_of(again) > index  # returned at once: the allocs table moved past index


def test_blocking_query_parameters_are_validated(fake: FakeNomad) -> None:
    assert (get(fake, "/v1/jobs", index="x").status_code, get(fake, "/v1/jobs", index="x").text) == (
        400,
        "Invalid index",
    )
    bad_wait = get(fake, "/v1/jobs", index=1, wait="soon")
    assert (bad_wait.status_code, bad_wait.text) == (400, "Invalid wait time")


def test_close_releases_blocked_queries() -> None:
    f = FakeNomad(step_delay=STEP).start()
    index = index_of(get(f, "/v1/jobs"))
    out: dict[str, Any] = {}
    waiter = threading.Thread(target=_blocking_get, args=(f, "/v1/jobs", out), kwargs={"index": index, "wait": "60s"})
    waiter.start()
    time.sleep(0.1)
    f.close()
    # The query asked to block for 60 s: it is back long before that only because close released it.
    waiter.join(timeout=30)
    assert not waiter.is_alive()


# ---------------------------------------------------------------------------
# Register and its semantics


def test_register_creates_a_pending_eval_then_completes_it(fake: FakeNomad) -> None:
    response = register(fake, job_body())
    body = response.json()
    assert set(body) == {
        "EvalID",
        "EvalCreateIndex",
        "JobModifyIndex",
        "Warnings",
        "Index",
        "LastContact",
        "KnownLeader",
    }
    assert body["EvalCreateIndex"] == body["JobModifyIndex"] == index_of(response)
    ev = get(fake, f"/v1/evaluation/{body['EvalID']}").json()
    assert (ev["Status"], ev["TriggeredBy"], ev["Type"]) == ("pending", "job-register", "service")
    done = get(fake, f"/v1/evaluation/{body['EvalID']}", index=ev["ModifyIndex"], wait="5s").json()
    assert done["Status"] == "complete"
    assert done["DeploymentID"]
    job = get(fake, "/v1/job/web").json()
    assert (job["Version"], job["JobModifyIndex"], job["CreateIndex"]) == (
        0,
        body["JobModifyIndex"],
        body["JobModifyIndex"],
    )


def test_register_on_job_path_checks_the_id(fake: FakeNomad) -> None:
    ok = requests.post(url(fake, "/v1/job/web"), json=job_body(), timeout=10)
    assert ok.status_code == 200
    wrong = requests.post(url(fake, "/v1/job/other"), json=job_body(), timeout=10)
    assert (wrong.status_code, wrong.text) == (400, "Job ID does not match name")
    assert register(fake, {"Job": None}).text == "Job must be specified"
    nothing = requests.post(url(fake, "/v1/jobs"), timeout=10)
    assert nothing.status_code == 400
    no_groups = copy.deepcopy(job_body("empty"))
    no_groups["Job"]["TaskGroups"] = []
    invalid = register(fake, no_groups)
    assert invalid.status_code == 500
    assert "Missing job task groups" in invalid.text


def test_enforce_index_conflicts(fake: FakeNomad) -> None:
    missing = register(fake, job_body(), EnforceIndex=True, JobModifyIndex=5)
    assert (missing.status_code, missing.text) == (500, f"{ENFORCE_INDEX_PREFIX} 5: job does not exist")
    created = register(fake, job_body(), EnforceIndex=True, JobModifyIndex=0)
    assert created.status_code == 200
    jmi = created.json()["JobModifyIndex"]
    exists = register(fake, job_body(), EnforceIndex=True, JobModifyIndex=0)
    assert (exists.status_code, exists.text) == (500, f"{ENFORCE_INDEX_PREFIX} 0: job already exists")
    stale = register(fake, job_body(image="x:2"), EnforceIndex=True, JobModifyIndex=jmi - 1)
    assert stale.status_code == 500
    assert stale.text == f"{ENFORCE_INDEX_PREFIX} {jmi - 1}: job exists with conflicting job modify index: {jmi}"
    fresh = register(fake, job_body(image="x:2"), EnforceIndex=True, JobModifyIndex=jmi)
    assert fresh.status_code == 200
    assert fresh.json()["JobModifyIndex"] > jmi
    sent = fake.requests_to("POST", "/v1/jobs")[-1]
    assert (sent.body["EnforceIndex"], sent.body["JobModifyIndex"]) == (True, jmi)


def test_identical_register_keeps_version_but_evaluates(fake: FakeNomad) -> None:
    job = deployed(fake, job_body())
    again = register(fake, job_body())
    assert again.status_code == 200
    assert again.json()["JobModifyIndex"] == job["JobModifyIndex"]
    assert again.json()["EvalID"]  # Nomad still creates an evaluation
    assert again.json()["EvalCreateIndex"] > job["JobModifyIndex"]
    fake.settle()
    after = fake.job("web")
    assert after is not None
    assert (after["Version"], after["JobModifyIndex"]) == (0, job["JobModifyIndex"])
    # re-submitting what GET returned (with server-set fields) is identical too
    assert register(fake, {"Job": get(fake, "/v1/job/web").json()}).json()["JobModifyIndex"] == job["JobModifyIndex"]
    changed = register(fake, job_body(image="registry.example/scotgrid/condor:2.0"))
    assert changed.json()["JobModifyIndex"] > job["JobModifyIndex"]
    assert get(fake, "/v1/job/web").json()["Version"] == 1


def test_preserve_counts_keeps_the_scaled_count(fake: FakeNomad) -> None:
    deployed(fake, job_body(count=2))
    fake.set_count("web", "worker", 5)
    fake.settle()
    register(fake, job_body(count=2, image="x:2"), PreserveCounts=True)
    fake.settle()
    job = get(fake, "/v1/job/web").json()
    assert job["TaskGroups"][0]["Count"] == 5
    live = live_allocs(fake)
    assert len(live) == 5
    assert fake.requests_to("POST", "/v1/jobs")[-1].body["PreserveCounts"] is True
    register(fake, job_body(count=2, image="x:3"))
    fake.settle()
    assert get(fake, "/v1/job/web").json()["TaskGroups"][0]["Count"] == 2


def test_jobs_list_and_prefix(fake: FakeNomad) -> None:
    deployed(fake, job_body("glasgow-a"))
    deployed(fake, job_body("other"))
    everything = get(fake, "/v1/jobs").json()
    assert [j["ID"] for j in everything] == ["glasgow-a", "other"]
    some = get(fake, "/v1/jobs", prefix="glasgow").json()
    assert [j["ID"] for j in some] == ["glasgow-a"]
    assert some[0]["JobSummary"]["Summary"]["worker"]["Running"] == 2
    assert "Meta" in get(fake, "/v1/jobs", meta="true").json()[0]


# ---------------------------------------------------------------------------
# Scenarios


def test_scenario_healthy_service(fake: FakeNomad) -> None:
    job = deployed(fake, job_body())
    assert (job["Status"], job["Stable"]) == ("running", True)
    allocs = get(fake, "/v1/job/web/allocations").json()
    assert len(allocs) == 2
    for alloc in allocs:
        assert (alloc["ClientStatus"], alloc["DesiredStatus"], alloc["JobVersion"]) == ("running", "run", 0)
        assert alloc["DeploymentStatus"]["Healthy"] is True
        assert alloc["NodeID"] in {n.id for n in fake.nodes}
        assert alloc["NodeName"] in {n.name for n in fake.nodes}
        state = alloc["TaskStates"]["condor"]
        assert (state["State"], state["Failed"], state["Restarts"]) == ("running", False, 0)
        assert [e["Type"] for e in state["Events"]] == ["Received", "Task Setup", "Driver", "Started"]
    dep = get(fake, "/v1/job/web/deployment").json()
    assert (dep["Status"], dep["StatusDescription"]) == ("successful", "Deployment completed successfully")
    group = dep["TaskGroups"]["worker"]
    assert (group["DesiredTotal"], group["PlacedAllocs"], group["HealthyAllocs"], group["UnhealthyAllocs"]) == (
        2,
        2,
        2,
        0,
    )
    assert group["RequireProgressBy"].endswith("Z")


def test_scenario_bad_image(fake: FakeNomad) -> None:
    fake.script("web", "bad_image")
    job = deployed(fake, job_body(image="registry.example/x:broken"))
    allocs = get(fake, "/v1/job/web/allocations").json()
    assert {a["ClientStatus"] for a in allocs} == {"failed"}
    state = allocs[0]["TaskStates"]["condor"]
    assert (state["State"], state["Failed"]) == ("dead", True)
    failure = next(e for e in state["Events"] if e["Type"] == "Driver Failure")
    assert failure["DisplayMessage"].startswith(
        "Failed to pull `registry.example/x:broken`: Error response from daemon"
    )
    assert "manifest unknown" in failure["DriverError"]
    assert state["Events"][-1]["Type"] == "Not Restarting"
    assert allocs[0]["DeploymentStatus"]["Healthy"] is False
    dep = get(fake, "/v1/job/web/deployment").json()
    assert (dep["Status"], dep["StatusDescription"]) == ("failed", "Failed due to unhealthy allocations")
    assert job["Status"] == "dead"


def test_scenario_unplaceable(fake: FakeNomad) -> None:
    fake.script("web", "unplaceable", constraint="${attr.kernel.name} = linux", filtered=2, dimension=None)
    register_eval = register(fake, job_body()).json()["EvalID"]
    fake.settle()
    assert get(fake, "/v1/job/web/allocations").json() == []
    ev = get(fake, f"/v1/evaluation/{register_eval}").json()
    assert ev["Status"] == "complete"
    metric = ev["FailedTGAllocs"]["worker"]
    assert metric["NodesEvaluated"] == 2
    assert metric["NodesFiltered"] == 2
    assert metric["ConstraintFiltered"] == {"${attr.kernel.name} = linux": 2}
    assert metric["NodesAvailable"] == {"scotgrid": 2}
    blocked = get(fake, f"/v1/evaluation/{ev['BlockedEval']}").json()
    assert (blocked["Status"], blocked["PreviousEval"]) == ("blocked", ev["ID"])
    assert blocked["StatusDescription"] == "created to place remaining allocations"
    assert get(fake, "/v1/job/web").json()["Status"] == "pending"
    assert get(fake, "/v1/job/web/summary").json()["Summary"]["worker"]["Queued"] == 2
    related = get(fake, f"/v1/evaluation/{ev['ID']}", related="true").json()["RelatedEvals"]
    assert [r["ID"] for r in related] == [blocked["ID"]]


def test_unplaceable_default_metric_and_recovery(fake: FakeNomad) -> None:
    fake.script("web", "unplaceable")
    deployed(fake, job_body())
    ev = next(e for e in fake.evaluations("web") if e["FailedTGAllocs"])
    metric = ev["FailedTGAllocs"]["worker"]
    assert metric["ConstraintFiltered"] == {"${attr.kernel.name} = linux": 1}
    assert metric["DimensionExhausted"] == {"memory": 1}
    assert metric["NodesFiltered"] + metric["NodesExhausted"] == metric["NodesEvaluated"] == 2
    # capacity arrives: the blocked evaluation runs again and places the job
    fake.script("web", "healthy")
    fake.add_node(FakeNode(id="00000000-0000-4000-8000-000000000003", name="nomad-client-3"))
    fake.settle()
    assert get(fake, "/v1/job/web/deployment").json()["Status"] == "successful"
    assert len(get(fake, "/v1/job/web/allocations").json()) == 2


def test_scenario_failing_check(fake: FakeNomad) -> None:
    fake.script("web", "failing_check")
    deployed(fake, job_body())
    allocs = get(fake, "/v1/job/web/allocations").json()
    assert {a["ClientStatus"] for a in allocs} == {"running"}
    assert {a["DeploymentStatus"]["Healthy"] for a in allocs} == {False}
    state = allocs[0]["TaskStates"]["condor"]
    signaled = next(e for e in state["Events"] if e["Type"] == "Restart Signaled")
    assert signaled["DisplayMessage"] == 'healthcheck: check "startd" unhealthy'
    assert state["Restarts"] == 1
    dep = get(fake, "/v1/job/web/deployment").json()
    assert (dep["Status"], dep["StatusDescription"]) == ("failed", "Failed due to unhealthy allocations")
    assert dep["TaskGroups"]["worker"]["UnhealthyAllocs"] == 2


def test_scenario_oom(fake: FakeNomad) -> None:
    fake.script("web", "oom")
    deployed(fake, job_body())
    alloc = get(fake, "/v1/job/web/allocations").json()[0]
    assert alloc["ClientStatus"] == "failed"
    events = alloc["TaskStates"]["condor"]["Events"]
    oom = [e for e in events if e["Type"] == "Terminated"]
    assert oom
    assert oom[-1]["ExitCode"] == 137
    assert oom[-1]["Details"]["oom_killed"] == "true"
    assert oom[-1]["DisplayMessage"] == 'Exit Code: 137, Exit Message: "OOM Killed"'
    assert events[-1]["Type"] == "Not Restarting"
    assert events[-1]["DisplayMessage"] == 'Exceeded allowed attempts 2 in interval 30m0s and mode is "fail"'
    assert alloc["TaskStates"]["condor"]["Restarts"] == 1
    assert get(fake, "/v1/job/web/deployment").json()["Status"] == "failed"


def test_scenario_batch_complete(fake: FakeNomad) -> None:
    fake.script("batchy", "batch_complete")
    job = deployed(fake, job_body("batchy", type_="batch", count=2))
    allocs = get(fake, "/v1/job/batchy/allocations").json()
    assert {a["ClientStatus"] for a in allocs} == {"complete"}
    state = allocs[0]["TaskStates"]["condor"]
    assert (state["State"], state["Failed"]) == ("dead", False)
    assert state["Events"][-1]["DisplayMessage"] == "Exit Code: 0"
    assert job["Status"] == "dead"
    assert get(fake, "/v1/job/batchy/deployment").json() is None  # batch jobs have no deployments
    assert allocs[0]["DeploymentStatus"] is None


def test_scenario_affects_only_some_allocations_and_versions(fake: FakeNomad) -> None:
    fake.script("web", "bad_image", affected=1)
    deployed(fake, job_body(count=3))
    statuses = sorted(a["ClientStatus"] for a in get(fake, "/v1/job/web/allocations").json())
    assert statuses == ["failed", "running", "running"]
    fake.script("other", "oom", version=1)
    deployed(fake, job_body("other"))
    assert get(fake, "/v1/job/other/deployment").json()["Status"] == "successful"
    with pytest.raises(ValueError, match="unknown scenario"):
        fake.script("web", "meteor")


def test_system_job_gets_one_alloc_per_node_and_no_deployment(fake: FakeNomad) -> None:
    job = deployed(fake, job_body("sys", type_="system", count=None))
    allocs = get(fake, "/v1/job/sys/allocations").json()
    assert sorted(a["NodeID"] for a in allocs) == sorted(n.id for n in fake.nodes)
    assert {a["Name"] for a in allocs} == {"sys.worker[0]"}
    assert {a["ClientStatus"] for a in allocs} == {"running"}
    assert get(fake, "/v1/job/sys/deployment").json() is None
    assert job["Status"] == "running"
    three = FakeNomad(step_delay=STEP, nodes=[FakeNode(id=f"node-{i}", name=f"n{i}") for i in range(3)])
    with three:
        deployed(three, job_body("sys", type_="system", count=None))
        assert len(get(three, "/v1/job/sys/allocations").json()) == 3


@pytest.mark.parametrize("name", ["cntwn", "elastic", "ephemeral"])
def test_glasgow_jobspecs_deploy(fake: FakeNomad, name: str) -> None:
    body = json.loads((GLASGOW / f"{name}.json").read_text(encoding="utf-8"))
    job = deployed(fake, body)
    allocs = get(fake, f"/v1/job/{job['ID']}/allocations").json()
    assert allocs
    assert {a["ClientStatus"] for a in allocs} == {"running"}
    dep = get(fake, f"/v1/job/{job['ID']}/deployment").json()
    if job["Type"] == "service":
        assert dep["Status"] == "successful"
    else:
        assert dep is None


def test_fail_alloc_helper(fake: FakeNomad) -> None:
    deployed(fake, job_body(count=1))
    alloc = get(fake, "/v1/job/web/allocations").json()[0]
    fake.fail_alloc(alloc["ID"], "Driver Failure", "docker daemon unreachable")
    again = get(fake, f"/v1/allocation/{alloc['ID']}").json()
    assert again["ClientStatus"] == "failed"
    last = again["TaskStates"]["condor"]["Events"][-1]
    assert (last["Type"], last["DisplayMessage"]) == ("Driver Failure", "docker daemon unreachable")
    assert again["Job"]["ID"] == "web"  # the full allocation carries its job


# ---------------------------------------------------------------------------
# Plan


def test_plan_new_identical_and_changed(fake: FakeNomad) -> None:
    new = requests.post(url(fake, "/v1/job/web/plan"), json={**job_body(), "Diff": True}, timeout=10).json()
    assert new["Diff"]["Type"] == "Added"
    assert new["JobModifyIndex"] == 0
    assert new["Annotations"]["DesiredTGUpdates"]["worker"]["Place"] == 2
    assert new["FailedTGAllocs"] is None
    assert new["Diff"]["TaskGroups"][0]["Updates"] == {"create": 2}
    job = deployed(fake, job_body())
    same = requests.post(url(fake, "/v1/job/web/plan"), json={**job_body(), "Diff": True}, timeout=10).json()
    assert same["Diff"]["Type"] == "None"
    assert same["JobModifyIndex"] == job["JobModifyIndex"]
    assert same["Annotations"]["DesiredTGUpdates"]["worker"]["Ignore"] == 2
    changed_body = job_body(image="registry.example/scotgrid/condor:2.0", count=3)
    changed = requests.post(url(fake, "/v1/job/web/plan"), json={**changed_body, "Diff": True}, timeout=10).json()
    diff = changed["Diff"]
    assert diff["Type"] == "Edited"
    group = diff["TaskGroups"][0]
    count = next(f for f in group["Fields"] if f["Name"] == "Count")
    assert (count["Type"], count["Old"], count["New"], count["Annotations"]) == ("Edited", "2", "3", ["forces create"])
    task = group["Tasks"][0]
    config = next(o for o in task["Objects"] if o["Name"] == "Config")
    image = next(f for f in config["Fields"] if f["Name"] == "image")
    assert (image["Old"], image["New"]) == (
        "registry.example/scotgrid/condor:1.0",
        "registry.example/scotgrid/condor:2.0",
    )
    assert task["Annotations"] == ["forces create/destroy update"]
    updates = changed["Annotations"]["DesiredTGUpdates"]["worker"]
    assert (updates["DestructiveUpdate"], updates["Place"]) == (2, 1)
    assert get(fake, "/v1/job/web").json()["Version"] == 0  # plan changes nothing
    mismatch = requests.post(url(fake, "/v1/job/other/plan"), json=job_body(), timeout=10)
    assert (mismatch.status_code, mismatch.text) == (400, "Job ID does not match")


def test_plan_reports_failed_allocations_when_unplaceable(fake: FakeNomad) -> None:
    fake.script("web", "unplaceable", dimension="cpu", filtered=0)
    plan = requests.post(url(fake, "/v1/job/web/plan"), json={**job_body(), "Diff": True}, timeout=10).json()
    assert plan["FailedTGAllocs"]["worker"]["DimensionExhausted"] == {"cpu": 2}
    assert plan["CreatedEvals"][0]["Status"] == "blocked"


def test_job_diff_of_meta_and_datacenters() -> None:
    old = job_body()["Job"]
    new = copy.deepcopy(old)
    new["Meta"]["nomadwn_site"] = "edinburgh"
    new["Datacenters"] = ["scotgrid", "ecdf"]
    diff = job_diff(old, new)
    meta = next(f for f in diff["Fields"] if f["Name"] == "Meta[nomadwn_site]")
    assert (meta["Type"], meta["Old"], meta["New"]) == ("Edited", "glasgow", "edinburgh")
    dcs = next(o for o in diff["Objects"] if o["Name"] == "Datacenters")
    assert dcs["Type"] == "Edited"
    assert dcs["Fields"] == [{"Type": "Added", "Name": "Datacenters", "Old": "", "New": "ecdf", "Annotations": None}]
    assert job_diff(old, old)["Type"] == "None"


# ---------------------------------------------------------------------------
# Versions, revert, scale, stop


def test_versions_and_revert(fake: FakeNomad) -> None:
    fake.script("web", "bad_image", version=1)
    deployed(fake, job_body(image="good:1"))
    deployed(fake, job_body(image="bad:2"))
    assert get(fake, "/v1/job/web/deployment").json()["Status"] == "failed"
    versions = get(fake, "/v1/job/web/versions").json()
    assert versions["Diffs"] is None
    assert [(v["Version"], v["Stable"]) for v in versions["Versions"]] == [(1, False), (0, True)]
    with_diffs = get(fake, "/v1/job/web/versions", diffs="true").json()
    assert with_diffs["Diffs"][0]["Type"] == "Edited"
    current = requests.post(url(fake, "/v1/job/web/revert"), json={"JobID": "web", "JobVersion": 1}, timeout=10)
    assert (current.status_code, current.text) == (500, "can't revert to current version")
    enforced = requests.post(
        url(fake, "/v1/job/web/revert"), json={"JobID": "web", "JobVersion": 0, "EnforcePriorVersion": 5}, timeout=10
    )
    assert (enforced.status_code, enforced.text) == (500, "Current job has version 1; enforcing version 5")
    reverted = requests.post(
        url(fake, "/v1/job/web/revert"), json={"JobID": "web", "JobVersion": 0, "EnforcePriorVersion": 1}, timeout=10
    )
    assert reverted.status_code == 200
    assert reverted.json()["EvalID"]
    fake.settle()
    job = get(fake, "/v1/job/web").json()
    assert job["Version"] == 2
    assert job["TaskGroups"][0]["Tasks"][0]["Config"]["image"] == "good:1"
    assert get(fake, "/v1/job/web/deployment").json()["Status"] == "successful"
    live = live_allocs(fake)
    assert {(a["JobVersion"], a["ClientStatus"]) for a in live} == {(2, "running")}
    assert len(live) == 2
    missing = requests.post(url(fake, "/v1/job/web/revert"), json={"JobID": "web", "JobVersion": 9}, timeout=10)
    assert missing.text == 'job "web" in namespace "default" at version 9 not found'


def test_auto_revert_rolls_back_to_the_stable_version(fake: FakeNomad) -> None:
    fake.script("web", "failing_check", version=1)
    deployed(fake, job_body(image="good:1", auto_revert=True))
    deployed(fake, job_body(image="bad:2", auto_revert=True))
    fake.settle()
    deployments = get(fake, "/v1/job/web/deployments").json()
    failed = next(d for d in deployments if d["JobVersion"] == 1)
    assert failed["StatusDescription"] == "Failed due to unhealthy allocations - rolling back to job version 0"
    job = get(fake, "/v1/job/web").json()
    assert (job["Version"], job["TaskGroups"][0]["Tasks"][0]["Config"]["image"]) == (2, "good:1")


def test_scale(fake: FakeNomad) -> None:
    deployed(fake, job_body(count=2))
    fake.script("web", "healthy", delay=0.3)  # slow clients keep the next deployment running a while
    scaled = requests.post(
        url(fake, "/v1/job/web/scale"),
        json={"Count": 3, "Target": {"Group": "worker"}, "Message": "more pilots", "PolicyOverride": False},
        timeout=10,
    )
    assert scaled.status_code == 200
    body = scaled.json()
    assert body["EvalID"]
    wait_deployment(fake, "web", 1, "running")
    blocked = requests.post(
        url(fake, "/v1/job/web/scale"), json={"Count": 4, "Target": {"Group": "worker"}}, timeout=10
    )
    assert (blocked.status_code, blocked.text) == (400, "job scaling blocked due to active deployment")
    fake.settle()
    job = get(fake, "/v1/job/web").json()
    assert (job["Version"], job["TaskGroups"][0]["Count"]) == (1, 3)
    status = get(fake, "/v1/job/web/scale").json()
    group = status["TaskGroups"]["worker"]
    assert (group["Desired"], group["Running"]) == (3, 3)
    event = group["Events"][0]
    assert (event["Count"], event["PreviousCount"], event["Message"], event["EvalID"]) == (
        3,
        2,
        "more pilots",
        body["EvalID"],
    )
    live = live_allocs(fake)
    assert len(live) == 3
    assert {a["JobVersion"] for a in live} == {1}  # the two old ones were updated in place
    nogroup = requests.post(url(fake, "/v1/job/web/scale"), json={"Count": 1, "Target": {"Group": "x"}}, timeout=10)
    assert (nogroup.status_code, nogroup.text) == (400, 'task group "x" specified for scaling does not exist in job')
    down = requests.post(url(fake, "/v1/job/web/scale"), json={"Count": 1, "Target": {"Group": "worker"}}, timeout=10)
    assert down.status_code == 200
    fake.settle()
    assert len(live_allocs(fake)) == 1


def test_scale_refuses_system_jobs_and_unknown_jobs(fake: FakeNomad) -> None:
    deployed(fake, job_body("sys", type_="system", count=None))
    system = requests.post(url(fake, "/v1/job/sys/scale"), json={"Count": 3, "Target": {"Group": "worker"}}, timeout=10)
    assert (system.status_code, system.text) == (400, 'cannot scale jobs of type "system"')
    unknown = requests.post(url(fake, "/v1/job/nope/scale"), json={"Count": 3, "Target": {"Group": "w"}}, timeout=10)
    assert (unknown.status_code, unknown.text) == (404, 'job "nope" not found')


def test_stop_and_purge(fake: FakeNomad) -> None:
    deployed(fake, job_body())
    stopped = requests.delete(url(fake, "/v1/job/web"), params={"purge": "false"}, timeout=10)
    assert stopped.status_code == 200
    assert stopped.json()["EvalID"]
    fake.settle()
    job = get(fake, "/v1/job/web").json()
    assert (job["Stop"], job["Status"], job["Version"]) == (True, "dead", 1)
    allocs = get(fake, "/v1/job/web/allocations").json()
    assert {(a["DesiredStatus"], a["ClientStatus"]) for a in allocs} == {("stop", "complete")}
    events = [e["Type"] for e in allocs[0]["TaskStates"]["condor"]["Events"]]
    assert events[-3:] == ["Killing", "Terminated", "Killed"]
    ev = fake.evaluations("web")[-1]
    assert ev["TriggeredBy"] == "job-deregister"
    purged = requests.delete(url(fake, "/v1/job/web"), params={"purge": "true"}, timeout=10)
    assert purged.status_code == 200
    gone = get(fake, "/v1/job/web")
    assert (gone.status_code, gone.text) == (404, "job not found")
    assert get(fake, "/v1/jobs").json() == []
    again = deployed(fake, job_body())
    assert again["Version"] == 0  # a purged job starts over
    assert len(get(fake, "/v1/job/web/allocations").json()) == 2
    assert len(get(fake, "/v1/job/web/allocations", all="true").json()) == 4


def test_purge_of_a_running_job_stops_its_allocations(fake: FakeNomad) -> None:
    deployed(fake, job_body())
    requests.delete(url(fake, "/v1/job/web"), params={"purge": "true"}, timeout=10)
    fake.settle()
    assert get(fake, "/v1/job/web").status_code == 404
    assert {a["ClientStatus"] for a in get(fake, "/v1/job/web/allocations").json()} == {"complete"}


# ---------------------------------------------------------------------------
# Deployments: canaries, promote, fail


def test_canaries_need_promotion(fake: FakeNomad) -> None:
    deployed(fake, job_body(count=2, canary=1))
    first = get(fake, "/v1/job/web/deployment").json()
    assert first["TaskGroups"]["worker"]["DesiredCanaries"] == 0  # no canaries for a new job
    deployed(fake, job_body(count=2, canary=1, image="registry.example/scotgrid/condor:2.0"))
    dep = get(fake, "/v1/job/web/deployment").json()
    group = dep["TaskGroups"]["worker"]
    assert (dep["Status"], dep["StatusDescription"]) == (
        "running",
        "Deployment is running but requires manual promotion",
    )
    assert (group["DesiredCanaries"], len(group["PlacedCanaries"]), group["Promoted"]) == (1, 1, False)
    canary = get(fake, f"/v1/allocation/{group['PlacedCanaries'][0]}").json()
    assert canary["DeploymentStatus"] == {
        "Healthy": True,
        "Timestamp": canary["DeploymentStatus"]["Timestamp"],
        "Canary": True,
        "ModifyIndex": canary["DeploymentStatus"]["ModifyIndex"],
    }
    live = live_allocs(fake)
    assert sorted(a["JobVersion"] for a in live) == [0, 0, 1]
    promoted = requests.post(
        url(fake, f"/v1/deployment/promote/{dep['ID']}"), json={"DeploymentID": dep["ID"], "All": True}, timeout=10
    )
    assert promoted.status_code == 200
    assert set(promoted.json()) == {"EvalID", "EvalCreateIndex", "DeploymentModifyIndex", "RevertedJobVersion", "Index"}
    fake.settle()
    dep = get(fake, f"/v1/deployment/{dep['ID']}").json()
    assert (dep["Status"], dep["TaskGroups"]["worker"]["Promoted"]) == ("successful", True)
    live = live_allocs(fake)
    assert sorted(a["JobVersion"] for a in live) == [1, 1]
    assert sorted(a["Name"] for a in live) == ["web.worker[0]", "web.worker[1]"]
    again = requests.post(
        url(fake, f"/v1/deployment/promote/{dep['ID']}"), json={"DeploymentID": dep["ID"], "All": True}, timeout=10
    )
    assert (again.status_code, again.text) == (500, "can't promote terminal deployment")


def test_auto_promote(fake: FakeNomad) -> None:
    deployed(fake, job_body(count=3, canary=1, auto_promote=True))
    deployed(fake, job_body(count=3, canary=1, auto_promote=True, image="new:2"))
    dep = get(fake, "/v1/job/web/deployment").json()
    assert (dep["Status"], dep["TaskGroups"]["worker"]["Promoted"]) == ("successful", True)
    live = live_allocs(fake)
    assert sorted(a["JobVersion"] for a in live) == [1, 1, 1]


def test_promote_without_canaries_and_fail(fake: FakeNomad) -> None:
    fake.script("web", "healthy", delay=0.5)  # slow clients: the deployment stays running for a while
    register(fake, job_body())
    dep = wait_deployment(fake, "web", 0, "running")
    no_canaries = requests.post(
        url(fake, f"/v1/deployment/promote/{dep['ID']}"), json={"DeploymentID": dep["ID"], "All": True}, timeout=10
    )
    assert (no_canaries.status_code, no_canaries.text) == (500, "no canaries to promote")
    failed = requests.post(url(fake, f"/v1/deployment/fail/{dep['ID']}"), json={"DeploymentID": dep["ID"]}, timeout=10)
    assert failed.status_code == 200
    assert failed.json()["RevertedJobVersion"] is None
    dep = get(fake, f"/v1/deployment/{dep['ID']}").json()
    assert (dep["Status"], dep["StatusDescription"]) == ("failed", "Deployment marked as failed")
    again = requests.post(url(fake, f"/v1/deployment/fail/{dep['ID']}"), timeout=10)
    assert (again.status_code, again.text) == (500, "can't fail terminal deployment")
    missing = requests.post(url(fake, "/v1/deployment/fail/nope"), timeout=10)
    assert (missing.status_code, missing.text) == (500, "deployment not found")


# ---------------------------------------------------------------------------
# ACL, faults, request log


def test_acl_token() -> None:
    with FakeNomad(step_delay=STEP, token="s3cret") as f:
        anonymous = get(f, "/v1/jobs")
        assert (anonymous.status_code, anonymous.text) == (403, "Permission denied")
        wrong = requests.get(url(f, "/v1/jobs"), headers={"X-Nomad-Token": "nope"}, timeout=10)
        assert (wrong.status_code, wrong.text) == (403, "ACL token not found")
        right = requests.get(url(f, "/v1/jobs"), headers={"X-Nomad-Token": "s3cret"}, timeout=10)
        assert right.status_code == 200
        bearer = requests.get(url(f, "/v1/jobs"), headers={"Authorization": "Bearer s3cret"}, timeout=10)
        assert bearer.status_code == 200
        client = nomad.Nomad(host="127.0.0.1", port=f.port, token="s3cret")
        client.jobs.register_job(job_body())
        assert client.job.get_job("web")["ID"] == "web"
        with pytest.raises(nomad_exc.URLNotAuthorizedNomadException):
            nomad.Nomad(host="127.0.0.1", port=f.port).jobs.get_jobs()


def test_fail_next_answers_errors_then_recovers(fake: FakeNomad) -> None:
    fake.fail_next(2, status=503, message="rpc error: No cluster leader", path="/v1/job/")
    first = get(fake, "/v1/job/web")
    assert (first.status_code, first.text) == (503, "rpc error: No cluster leader")
    assert get(fake, "/v1/jobs").status_code == 200  # does not match the path prefix
    assert get(fake, "/v1/job/web").status_code == 503
    assert get(fake, "/v1/job/web").status_code == 404  # back to normal
    fake.fail_next(1, status=500, method="POST")
    assert register(fake, job_body()).status_code == 500
    assert fake.job("web") is None  # the failed register was not processed


def test_hang_next_times_out_clients(fake: FakeNomad) -> None:
    fake.hang_next(1, seconds=2)
    with pytest.raises(requests.Timeout):  # the client gave up: the fake held the answer back
        requests.get(url(fake, "/v1/jobs"), timeout=0.3)
    assert get(fake, "/v1/jobs").status_code == 200
    fake.hang_next(1)  # until close: closing must not wait for it


def test_requests_are_recorded(fake: FakeNomad) -> None:
    register(fake, job_body(), EnforceIndex=True, JobModifyIndex=0, PreserveCounts=True)
    get(fake, "/v1/job/web/allocations", index=3, wait="10ms", namespace="default")
    method, path, query, body = fake.requests[0]
    assert (method, path) == ("POST", "/v1/jobs")
    assert (body["EnforceIndex"], body["JobModifyIndex"], body["PreserveCounts"]) == (True, 0, True)
    assert query == {}
    last = fake.requests[-1]
    assert last.query == {"index": "3", "wait": "10ms", "namespace": "default"}
    fake.clear_requests()
    assert fake.requests == []


# ---------------------------------------------------------------------------
# python-nomad 2.1.0 against the fake


def test_python_nomad_client(fake: FakeNomad) -> None:
    client = nomad.Nomad(host="127.0.0.1", port=fake.port, timeout=5)
    registered = client.jobs.register_job(job_body())
    assert registered["EvalID"]
    assert client.job.get_job("web")["Version"] == 0
    assert [j["ID"] for j in client.jobs.get_jobs(prefix="we")] == ["web"]
    plan = client.job.plan_job("web", job_body(image="x:2"), diff=True)
    assert plan["Diff"]["Type"] == "Edited"
    fake.settle()
    allocs = client.job.get_allocations("web")
    assert {a["ClientStatus"] for a in allocs} == {"running"}
    assert client.allocation.get_allocation(allocs[0]["ID"])["ID"] == allocs[0]["ID"]
    assert client.evaluation.get_evaluation(registered["EvalID"])["Status"] == "complete"
    assert client.job.get_evaluations("web")[0]["JobID"] == "web"
    deployment = client.job.get_deployment("web")
    assert client.deployment.get_deployment(deployment["ID"])["Status"] == "successful"
    assert client.job.get_versions("web")["Versions"][0]["Stable"] is True
    assert client.job.register_job("web", job_body(image="x:2"))["JobModifyIndex"] > registered["JobModifyIndex"]
    fake.settle()
    reverted = client.job.revert_job("web", 0, enforce_prior_version=1)
    assert reverted["EvalID"]
    fake.settle()
    stopped = client.job.deregister_job("web", purge=True)
    assert stopped["EvalID"]
    with pytest.raises(nomad_exc.URLNotFoundNomadException):
        client.job.get_job("web")
    sent = fake.requests_to("DELETE", "/v1/job/web")[-1]
    assert sent.query["purge"] == "True"


# ---------------------------------------------------------------------------
# Shapes recorded from Nomad's documentation (tests/fixtures/nomad)


def test_fixtures_cite_their_source() -> None:
    for path in FIXTURES.glob("*.json"):
        data = json.loads(path.read_text(encoding="utf-8"))
        assert data["_source"]["doc"].startswith("https://github.com/hashicorp/nomad/"), path.name
        assert "payload" in data, path.name


def test_shapes_match_nomads_documented_payloads(fake: FakeNomad) -> None:
    register_reply = register(fake, job_body()).json()
    assert_keys(load_fixture("job_register_response.json"), register_reply, "register")
    fake.settle()

    doc_allocs = load_fixture("allocations_list.json")[0]
    alloc = get(fake, "/v1/job/web/allocations").json()[0]
    assert_keys(doc_allocs, alloc, "allocation stub")
    assert_keys(doc_allocs["TaskStates"]["redis"], alloc["TaskStates"]["condor"], "TaskState")
    assert_keys(doc_allocs["TaskStates"]["redis"]["Events"][0], alloc["TaskStates"]["condor"]["Events"][0], "TaskEvent")

    assert_keys(load_fixture("evaluation.json"), get(fake, f"/v1/evaluation/{register_reply['EvalID']}").json(), "eval")

    for name in ("deployment.json", "job_latest_deployment.json"):
        doc = load_fixture(name)
        ours = get(fake, "/v1/job/web/deployment").json()
        assert_keys(doc, ours, name)
        doc_group = next(iter(doc["TaskGroups"].values()))
        assert_keys(doc_group, ours["TaskGroups"]["worker"], f"{name} TaskGroups")

    doc_list = load_fixture("jobs_list.json")[0]
    ours_list = get(fake, "/v1/jobs").json()[0]
    assert_keys(doc_list, ours_list, "jobs list stub")
    assert_keys(doc_list["JobSummary"], ours_list["JobSummary"], "JobSummary")
    assert_keys(doc_list["JobSummary"]["Summary"]["cache"], ours_list["JobSummary"]["Summary"]["worker"], "Summary")

    doc_versions = load_fixture("job_versions.json")
    ours_versions = get(fake, "/v1/job/web/versions").json()
    assert_keys(doc_versions, ours_versions, "versions")
    assert_keys(doc_versions["Versions"][0], ours_versions["Versions"][0], "job")

    doc_scale = load_fixture("job_scale_status.json")
    ours_scale = get(fake, "/v1/job/web/scale").json()
    assert_keys(doc_scale, ours_scale, "scale status")
    assert_keys(doc_scale["TaskGroups"]["cache"], ours_scale["TaskGroups"]["worker"], "scale status group")

    doc_plan = load_fixture("job_plan_response.json")
    ours_plan = requests.post(
        url(fake, "/v1/job/web/plan"), json={**job_body(image="y:1"), "Diff": True}, timeout=10
    ).json()
    assert_keys(doc_plan, ours_plan, "plan")
    assert_keys(doc_plan["Diff"], ours_plan["Diff"], "plan diff")
    assert_keys(doc_plan["Diff"]["TaskGroups"][0], ours_plan["Diff"]["TaskGroups"][0], "task group diff")
    assert_keys(
        doc_plan["Diff"]["TaskGroups"][0]["Tasks"][0], ours_plan["Diff"]["TaskGroups"][0]["Tasks"][0], "task diff"
    )
    field = ours_plan["Diff"]["TaskGroups"][0]["Tasks"][0]["Objects"][0]["Fields"][0]
    assert_keys(doc_plan["Diff"]["TaskGroups"][0]["Tasks"][0]["Fields"][0], field, "field diff")
    assert_keys(
        doc_plan["Annotations"]["DesiredTGUpdates"]["cache"],
        ours_plan["Annotations"]["DesiredTGUpdates"]["worker"],
        "DesiredTGUpdates",
    )

    scale_reply = requests.post(
        url(fake, "/v1/job/web/scale"), json={"Count": 1, "Target": {"Group": "worker"}}, timeout=10
    )
    assert_keys(load_fixture("job_scale_response.json"), scale_reply.json(), "scale response")

    fake.settle()
    dep = get(fake, "/v1/job/web/deployment").json()
    fail_reply = requests.post(url(fake, f"/v1/deployment/fail/{dep['ID']}"), timeout=10)
    assert fail_reply.status_code == 500  # already successful: terminal
    fake.script("slow", "healthy", delay=1.0)
    register(fake, job_body("slow"))
    slow_dep = wait_deployment(fake, "slow", 0, "running")
    fail_reply = requests.post(url(fake, f"/v1/deployment/fail/{slow_dep['ID']}"), timeout=10)
    assert_keys(load_fixture("deployment_update_response.json"), fail_reply.json(), "deployment update")

    stop_reply = requests.delete(url(fake, "/v1/job/web"), timeout=10).json()
    assert_keys(load_fixture("job_deregister_response.json"), stop_reply, "deregister")


def test_blocked_evaluation_shape(fake: FakeNomad) -> None:
    doc = load_fixture("evaluation_blocked.json")
    fake.script("web", "unplaceable")
    eval_id = register(fake, job_body()).json()["EvalID"]
    fake.settle()
    placement = get(fake, f"/v1/evaluation/{eval_id}").json()
    assert_keys(doc["placement_eval"], placement, "placement eval")
    assert_keys(doc["placement_eval"]["FailedTGAllocs"]["cache"], placement["FailedTGAllocs"]["worker"], "AllocMetric")
    blocked = get(fake, f"/v1/evaluation/{placement['BlockedEval']}").json()
    assert_keys(doc["blocked_eval"], blocked, "blocked eval")
    assert blocked["Status"] == doc["blocked_eval"]["Status"] == "blocked"
    assert blocked["StatusDescription"] == doc["blocked_eval"]["StatusDescription"]


# ---------------------------------------------------------------------------
# Parameterized jobs and dispatch (nomad/job_endpoint.go Job.Dispatch)

CHILD_ID = re.compile(r"^burst/dispatch-\d{10}-[0-9a-f]{8}$")


def parameterized_body(
    job_id: str = "burst",
    *,
    payload: str = "forbidden",
    required: list[str] | None = None,
    optional: list[str] | None = None,
) -> Json:
    """A batch job shaped like nomadwn's dispatched flavours: parameterized, count 1."""
    body = job_body(job_id, type_="batch", count=1)
    body["Job"]["ParameterizedJob"] = {
        "Payload": payload,
        "MetaRequired": required,
        "MetaOptional": ["nomadwn_reason"] if optional is None else optional,
    }
    return body


def dispatch(fake: FakeNomad, job_id: str = "burst", *, token: str | None = None, **body: Any) -> requests.Response:
    params = {"idempotency_token": token} if token else {}
    payload = {"Meta": {"nomadwn_reason": "3 idle jobs"}, **body}
    return requests.post(url(fake, f"/v1/job/{job_id}/dispatch"), params=params, json=payload, timeout=10)


def children(fake: FakeNomad, parent: str = "burst") -> list[Json]:
    return [j for j in get(fake, "/v1/jobs", prefix=f"{parent}/dispatch-").json() if j["ParentID"] == parent]


def test_parameterized_parent_never_gets_an_evaluation_or_allocation(fake: FakeNomad) -> None:
    registered = register(fake, parameterized_body()).json()
    assert (registered["EvalID"], registered["EvalCreateIndex"]) == ("", 0)
    fake.settle()
    job = get(fake, "/v1/job/burst").json()
    assert (job["Status"], job["Dispatched"]) == ("running", False)  # running until stopped, like Nomad
    evaluate = requests.post(url(fake, "/v1/job/burst/evaluate"), json={"JobID": "burst"}, timeout=10)
    assert (evaluate.status_code, evaluate.text) == (500, "can't evaluate parameterized job")
    scaled = requests.post(
        url(fake, "/v1/job/burst/scale"), json={"Count": 3, "Target": {"Group": "worker"}}, timeout=10
    )
    assert scaled.status_code == 200
    assert (scaled.json()["EvalID"], scaled.json()["EvalCreateIndex"]) == ("", 0)  # Job.Scale: no eval
    stopped = requests.delete(url(fake, "/v1/job/burst"), timeout=10).json()
    assert stopped["EvalID"] == ""  # Job.Deregister: no eval either
    fake.settle()
    assert fake.evaluations("burst") == []
    assert fake.allocations("burst") == []
    assert get(fake, "/v1/job/burst").json()["Status"] == "dead"
    turned = register(fake, job_body("burst", type_="batch", count=1))
    assert (turned.status_code, turned.text) == (500, "cannot update parameterized job to being non-parameterized")


def test_dispatch_creates_a_child_as_nomad_does(fake: FakeNomad) -> None:
    register(fake, parameterized_body())
    response = dispatch(fake, token="tok-1")
    assert response.status_code == 200
    reply = response.json()
    assert set(reply) == set(load_fixture("job_dispatch_response.json"))
    child_id = reply["DispatchedJobID"]
    assert CHILD_ID.match(child_id), child_id
    assert reply["Index"] == reply["EvalCreateIndex"] == index_of(response)
    assert reply["JobCreateIndex"] < reply["EvalCreateIndex"]
    child = get(fake, f"/v1/job/{child_id}").json()
    assert (child["ParentID"], child["Name"], child["Dispatched"], child["Type"]) == ("burst", child_id, True, "batch")
    assert child["Meta"] == {"nomadwn_site": "glasgow", "nomadwn_reason": "3 idle jobs"}  # merged over the parent's
    assert (child["DispatchIdempotencyToken"], child["Payload"]) == ("tok-1", "AA==")  # snappy of no payload
    assert child["ParameterizedJob"]["Payload"] == "forbidden"  # kept, but a child is not parameterized
    assert (child["CreateIndex"], child["Version"], child["Status"]) == (reply["JobCreateIndex"], 0, "pending")
    ev = get(fake, f"/v1/evaluation/{reply['EvalID']}").json()
    assert (ev["JobID"], ev["TriggeredBy"], ev["Type"]) == (child_id, "job-register", "batch")
    assert ev["JobModifyIndex"] == reply["JobCreateIndex"]
    fake.settle()
    (alloc,) = get(fake, f"/v1/job/{child_id}/allocations").json()
    assert (alloc["Name"], alloc["ClientStatus"], alloc["JobID"]) == (f"{child_id}.worker[0]", "running", child_id)
    assert get(fake, f"/v1/job/{child_id}").json()["Status"] == "running"
    assert fake.allocations("burst") == []
    assert fake.evaluations("burst") == []
    wrong = requests.get(url(fake, "/v1/job/burst/dispatch"), timeout=10)
    assert (wrong.status_code, wrong.text) == (405, "Invalid method")


DISPATCH_ERRORS: list[tuple[str, str, Json, int, str]] = [
    ("missing-job", "nope", {}, 500, "parameterized job not found"),
    ("not-parameterized", "web", {}, 500, 'Specified job "web" is not a parameterized job'),
    ("stopped", "stopped", {}, 500, 'Specified job "stopped" is stopped'),
    (
        "unpermitted-meta",
        "burst",
        {"Meta": {"color": "red", "alpha": "1"}},
        500,
        "Dispatch request included unpermitted metadata keys: [alpha color]",
    ),
    (
        "missing-meta",
        "needy",
        {"Meta": {}, "Payload": "aGk="},
        500,
        "Dispatch did not provide required meta keys: [site]",
    ),
    ("payload-forbidden", "burst", {"Payload": "aGk="}, 500, "Payload provided but forbidden by parameterized job"),
    (
        "payload-required",
        "needy",
        {"Meta": {"site": "gla"}},
        500,
        "Payload is not provided but required by parameterized job",
    ),
    (
        "payload-too-big",
        "open",
        {"Meta": {}, "Payload": "QUFB" * 5462},
        500,
        "Payload exceeds maximum size; 16386 > 16384",
    ),
    ("bad-base64", "open", {"Meta": {}, "Payload": "aG!k"}, 400, "illegal base64 data at input byte 2"),
    ("job-id-mismatch", "burst", {"JobID": "other"}, 400, "Job ID does not match"),
    (
        "meta-not-strings",
        "burst",
        {"Meta": {"nomadwn_reason": 3}},
        400,
        "json: cannot unmarshal number into Go struct field JobDispatchRequest.Meta of type string",
    ),
]


@pytest.mark.parametrize(
    ("job_id", "body", "status", "text"), [c[1:] for c in DISPATCH_ERRORS], ids=[c[0] for c in DISPATCH_ERRORS]
)
def test_dispatch_errors_use_nomads_texts(fake: FakeNomad, job_id: str, body: Json, status: int, text: str) -> None:
    register(fake, parameterized_body())
    register(fake, parameterized_body("needy", payload="required", required=["site"], optional=[]))
    register(fake, parameterized_body("open", payload="optional", optional=[]))
    register(fake, parameterized_body("stopped"))
    requests.delete(url(fake, "/v1/job/stopped"), timeout=10)
    register(fake, job_body("web"))
    answer = dispatch(fake, job_id, token="tok", **body)
    assert (answer.status_code, answer.text) == (status, text)
    assert children(fake, job_id) == []


def test_dispatch_with_a_payload_stores_it_snappy_encoded(fake: FakeNomad) -> None:
    register(fake, parameterized_body("open", payload="optional", optional=[]))
    reply = dispatch(fake, "open", Meta=None, Payload="aGVsbG8=").json()
    child = get(fake, f"/v1/job/{reply['DispatchedJobID']}").json()
    assert child["Payload"] == "BRBoZWxsbw=="  # varint 5, one 5-byte literal, "hello"
    assert snappy_literal(b"") == b"\x00"
    assert child["Meta"] == {"nomadwn_site": "glasgow"}


def test_idempotency_token_returns_any_child_not_yet_collected(fake: FakeNomad) -> None:
    """Nomad 1.9 Job.Dispatch: same parent and token -> that child, running or dead; nothing new."""
    register(fake, parameterized_body())
    first = dispatch(fake, token="t").json()
    child_id = first["DispatchedJobID"]
    again = dispatch(fake, token="t")
    assert again.status_code == 200
    child = get(fake, f"/v1/job/{child_id}").json()
    assert again.json() == {
        "DispatchedJobID": child_id,
        "EvalID": "",
        "EvalCreateIndex": 0,
        "JobCreateIndex": first["JobCreateIndex"],
        "Index": child["ModifyIndex"],
    }
    in_body = requests.post(
        url(fake, "/v1/job/burst/dispatch"), json={"Meta": {}, "IdempotencyToken": "t"}, timeout=10
    ).json()
    assert in_body["DispatchedJobID"] == child_id  # WriteRequest.IdempotencyToken decodes from the body too
    refused = dispatch(fake, token="t", Meta={"bad": "x"})
    assert refused.status_code == 500  # meta is validated before the token is looked up
    other = dispatch(fake, token="u").json()["DispatchedJobID"]
    untokened = {dispatch(fake).json()["DispatchedJobID"] for _ in range(2)}
    assert len({child_id, other, *untokened}) == 4
    assert len(children(fake)) == 4
    requests.delete(url(fake, f"/v1/job/{child_id}"), timeout=10)
    fake.settle()
    assert get(fake, f"/v1/job/{child_id}").json()["Status"] == "dead"
    assert dispatch(fake, token="t").json()["DispatchedJobID"] == child_id  # dead but not collected
    requests.delete(url(fake, f"/v1/job/{child_id}"), params={"purge": "true"}, timeout=10)
    fresh = dispatch(fake, token="t").json()
    assert fresh["DispatchedJobID"] != child_id
    assert fresh["EvalID"]


def test_job_list_stubs_follow_the_children(fake: FakeNomad) -> None:
    register(fake, parameterized_body())
    ids = [dispatch(fake).json()["DispatchedJobID"] for _ in range(2)]
    register(fake, job_body("burst/dispatch-manual", type_="batch", count=1))  # shares the prefix, no parent
    fake.settle()
    listed = get(fake, "/v1/jobs", prefix="burst/dispatch-")
    stubs = {j["ID"]: j for j in listed.json()}
    assert set(stubs) == {*ids, "burst/dispatch-manual"}
    assert stubs["burst/dispatch-manual"]["ParentID"] == ""
    for child_id in ids:
        stub = stubs[child_id]
        assert (stub["ParentID"], stub["ParameterizedJob"], stub["Status"]) == ("burst", False, "running")
        assert stub["JobSummary"]["Summary"]["worker"]["Running"] == 1
    parent = get(fake, "/v1/jobs", prefix="burst").json()[0]
    assert (parent["ID"], parent["ParameterizedJob"]) == ("burst", True)
    assert parent["JobSummary"]["Children"] == {"Pending": 0, "Running": 2, "Dead": 0}
    assert parent["JobSummary"]["Summary"]["worker"] == dict.fromkeys(
        ("Queued", "Complete", "Failed", "Running", "Starting", "Lost", "Unknown"), 0
    )

    out: dict[str, Any] = {}
    waiter = threading.Thread(
        target=_blocking_get,
        args=(fake, "/v1/jobs", out),
        kwargs={"prefix": "burst/dispatch-", "index": index_of(listed), "wait": "5s"},
    )
    waiter.start()
    time.sleep(0.1)
    fake.complete_alloc(fake.allocations(ids[0])[0]["ID"])
    waiter.join(timeout=10)
    assert out["elapsed"] < 4.0
    assert index_of(out["response"]) > index_of(listed)
    done = next(j for j in out["response"].json() if j["ID"] == ids[0])
    assert (done["Status"], done["JobSummary"]["Summary"]["worker"]["Complete"]) == ("dead", 1)
    assert done["JobSummary"]["Summary"]["worker"]["Running"] == 0
    parent = get(fake, "/v1/jobs", prefix="burst").json()[0]
    assert parent["JobSummary"]["Children"] == {"Pending": 0, "Running": 1, "Dead": 1}


def test_children_follow_the_parents_script(fake: FakeNomad) -> None:
    register(fake, parameterized_body())
    fake.script("burst", "bad_image", affected=1)
    ids = [dispatch(fake).json()["DispatchedJobID"] for _ in range(2)]
    fake.settle()
    summaries = [get(fake, f"/v1/job/{i}/summary").json()["Summary"]["worker"] for i in ids]
    assert [(s["Failed"], s["Running"]) for s in summaries] == [(1, 0), (0, 1)]
    fake.script("burst", "unplaceable")
    queued = dispatch(fake).json()["DispatchedJobID"]
    fake.settle()
    stub = next(j for j in children(fake) if j["ID"] == queued)
    assert (stub["Status"], stub["JobSummary"]["Summary"]["worker"]["Queued"]) == ("pending", 1)
    assert fake.allocations(queued) == []


# ---------------------------------------------------------------------------
# Hooks for end-to-end tests, complete_alloc, scale-in order


def test_complete_alloc_ends_a_running_allocation(fake: FakeNomad) -> None:
    deployed(fake, job_body(count=1))
    (alloc,) = fake.allocations("web")
    fake.complete_alloc(alloc["ID"])
    done = get(fake, f"/v1/allocation/{alloc['ID']}").json()
    assert (done["ClientStatus"], done["ClientDescription"]) == ("complete", "All tasks have completed")
    state = done["TaskStates"]["condor"]
    assert (state["State"], state["Failed"], state["Events"][-1]["DisplayMessage"]) == ("dead", False, "Exit Code: 0")
    with pytest.raises(ValueError, match="is complete, not running"):
        fake.complete_alloc(alloc["ID"])
    with pytest.raises(ValueError, match="no allocation 'nope'"):
        fake.complete_alloc("nope")
    register(fake, parameterized_body())
    child_id = dispatch(fake).json()["DispatchedJobID"]
    fake.settle()
    (child_alloc,) = fake.allocations(child_id)
    fake.complete_alloc(child_alloc["ID"], exit_code=3)
    failed = get(fake, f"/v1/allocation/{child_alloc['ID']}").json()
    assert failed["ClientStatus"] == "failed"
    assert [e["Type"] for e in failed["TaskStates"]["condor"]["Events"][-2:]] == ["Terminated", "Not Restarting"]
    assert failed["TaskStates"]["condor"]["Events"][-2]["ExitCode"] == 3
    assert get(fake, f"/v1/job/{child_id}").json()["Status"] == "dead"


def test_hooks_see_allocations_start_and_stop_without_the_lock() -> None:
    running: list[Json] = []
    stopped: list[Json] = []
    holder: list[FakeNomad] = []

    def on_running(alloc: Json) -> None:
        fake = holder[0]
        # Called without the fake's lock: the HTTP API answers from here.
        assert get(fake, f"/v1/allocation/{alloc['ID']}").json()["ClientStatus"] == "running"
        running.append(alloc)
        if alloc["JobID"].startswith("burst/"):
            fake.complete_alloc(alloc["ID"])  # the worker went idle and shut down at once

    with FakeNomad(step_delay=STEP, on_running=on_running, on_stop=stopped.append) as fake:
        holder.append(fake)
        deployed(fake, job_body(count=3))
        assert sorted(a["Name"] for a in running) == ["web.worker[0]", "web.worker[1]", "web.worker[2]"]
        assert {"ID", "JobID", "TaskGroup", "Name"} <= set(running[0])
        assert running[0]["TaskGroup"] == "worker"
        requests.post(url(fake, "/v1/job/web/scale"), json={"Count": 1, "Target": {"Group": "worker"}}, timeout=10)
        fake.settle()
        assert [a["Name"] for a in stopped] == ["web.worker[2]", "web.worker[1]"]
        assert {a["DesiredStatus"] for a in stopped} == {"stop"}
        requests.delete(url(fake, "/v1/job/web"), timeout=10)
        fake.settle()
        assert [a["Name"] for a in stopped][-1] == "web.worker[0]"
        register(fake, parameterized_body())
        child_id = dispatch(fake).json()["DispatchedJobID"]
        fake.settle()
        assert running[-1]["Name"] == f"{child_id}.worker[0]"
        assert get(fake, f"/v1/job/{child_id}").json()["Status"] == "dead"
        assert len(stopped) == 3  # a process that ended by itself is not stopped by Nomad


def test_a_failing_hook_is_reported_on_exit() -> None:
    def boom(alloc: Json) -> None:
        raise RuntimeError("hook bug")

    with pytest.raises(RuntimeError, match="scheduler failed"), FakeNomad(step_delay=STEP, on_running=boom) as fake:
        deployed(fake, job_body(count=1))
        assert get(fake, "/v1/job/web").json()["Status"] == "running"  # still serving


def test_scale_in_stops_the_highest_name_indexes_first_and_records_the_message(fake: FakeNomad) -> None:
    deployed(fake, job_body(count=4))
    down = requests.post(
        url(fake, "/v1/job/web/scale"),
        json={
            "Count": 2,
            "Target": {"Group": "worker"},
            "Message": "nomadwn autoscale: 2 idle",
            "PolicyOverride": False,
        },
        timeout=10,
    ).json()
    fake.settle()
    allocs = get(fake, "/v1/job/web/allocations").json()
    assert sorted(a["Name"] for a in allocs if a["DesiredStatus"] == "run") == ["web.worker[0]", "web.worker[1]"]
    stopped = [a for a in allocs if a["DesiredStatus"] == "stop"]
    assert sorted(a["Name"] for a in stopped) == ["web.worker[2]", "web.worker[3]"]
    assert {a["DesiredDescription"] for a in stopped} == {"alloc not needed due to job update"}
    fake.set_count("web", "worker", 1)
    fake.settle()
    assert [a["Name"] for a in live_allocs(fake)] == ["web.worker[0]"]
    events = get(fake, "/v1/job/web/scale").json()["TaskGroups"]["worker"]["Events"]
    assert [(e["Count"], e["PreviousCount"], e["Message"]) for e in events] == [
        (1, 2, ""),
        (2, 4, "nomadwn autoscale: 2 idle"),
    ]
    assert events[1]["EvalID"] == down["EvalID"]


# ---------------------------------------------------------------------------
# NomadClient and python-nomad against the fake's dispatch


def test_nomad_client_dispatches_and_lists_children(fake: FakeNomad) -> None:
    requests.post(url(fake, "/v1/jobs"), params={"namespace": "grid"}, json=parameterized_body(), timeout=10)
    register(fake, parameterized_body())  # the same ID in another namespace
    client = NomadClient(NomadSettings(address=fake.address, namespace="grid"))
    first = client.dispatch("burst", meta={"nomadwn_reason": "5 idle"}, idempotency_token="nomadwn-burst-1-0")
    assert CHILD_ID.match(first.dispatched_job_id)
    assert first.eval_id
    sent = fake.requests_to("POST", "/v1/job/burst/dispatch")[-1]
    assert sent.query == {"namespace": "grid", "idempotency_token": "nomadwn-burst-1-0"}
    assert sent.body == {"Meta": {"nomadwn_reason": "5 idle"}}
    retried = client.dispatch("burst", meta={"nomadwn_reason": "5 idle"}, idempotency_token="nomadwn-burst-1-0")
    assert (retried.dispatched_job_id, retried.eval_id) == (first.dispatched_job_id, "")
    second = client.dispatch("burst", meta={}, idempotency_token="nomadwn-burst-1-1")
    requests.post(
        url(fake, "/v1/jobs"),
        params={"namespace": "grid"},
        json=job_body("burst/dispatch-manual", type_="batch"),
        timeout=10,
    )
    fake.settle()
    listed = client.dispatched("burst")
    assert sorted(c.id for c in listed) == sorted([first.dispatched_job_id, second.dispatched_job_id])
    assert {c.status for c in listed} == {"running"}
    assert all(c == DispatchedJob(c.id, "running", 0, 0, 1, 0, 0, 0) and c.live == 1 for c in listed)
    assert fake.requests_to("GET", "/v1/jobs")[-1].query == {"prefix": "burst/dispatch-", "namespace": "grid"}
    (alloc,) = client.allocations(first.dispatched_job_id).value
    assert (alloc.name, alloc.index) == (f"{first.dispatched_job_id}.worker[0]", 0)
    assert NomadClient(NomadSettings(address=fake.address)).dispatched("burst") == []  # default namespace: none
    with pytest.raises(NomadError) as caught:
        client.dispatch("nope", meta={}, idempotency_token="x")
    assert caught.value.status == 500
    assert str(caught.value) == (
        f"dispatching job nope at {fake.address}: Nomad answered HTTP 500: parameterized job not found"
    )


def test_python_nomads_dispatch_job_loses_the_idempotency_token(fake: FakeNomad) -> None:
    """python-nomad 2.1.0 sends ``"idempotency_token"`` in the body: no field Nomad knows, so retries duplicate."""
    register(fake, parameterized_body())
    client = nomad.Nomad(host="127.0.0.1", port=fake.port, timeout=5)
    one = client.job.dispatch_job("burst", meta={"nomadwn_reason": "x"}, idempotency_token="same")
    two = client.job.dispatch_job("burst", meta={"nomadwn_reason": "x"}, idempotency_token="same")
    assert one["DispatchedJobID"] != two["DispatchedJobID"]
    assert fake.requests_to("POST", "/v1/job/burst/dispatch")[-1].body["idempotency_token"] == "same"
    assert [j["ID"] for j in client.jobs.get_jobs(prefix="burst/dispatch-")] == sorted(
        [one["DispatchedJobID"], two["DispatchedJobID"]]
    )


# ---------------------------------------------------------------------------
# Version switch: system rollouts (scheduler/scheduler_system.go at v1.10.5 and v2.0.5)


def _system(image: str, update: Json | None) -> Json:
    body = job_body("sys", type_="system", count=None, image=image)
    if update is not None:
        body["Job"]["Update"] = update
    return body


def _versions_on(fake: FakeNomad) -> dict[str, int]:
    return {a["NodeName"]: a["JobVersion"] for a in live_allocs(fake, "sys")}


def _four_nodes(version: str) -> FakeNomad:
    return FakeNomad(step_delay=STEP, version=version, nodes=[FakeNode(id=f"node-{i}", name=f"n{i}") for i in range(4)])


def test_1_10_system_update_goes_max_parallel_nodes_per_stagger_without_a_deployment() -> None:
    with _four_nodes("1.10.5") as fake:
        update = {"MaxParallel": 1, "Stagger": 400_000_000}
        deployed(fake, _system("example/w:1", update))
        assert register(fake, _system("example/w:2", update)).status_code == 200
        time.sleep(STEP * 8)  # the first evaluation is done, the stagger (0.4 s) not yet over
        assert sorted(_versions_on(fake).values()) == [0, 0, 0, 1]
        rolling = [e for e in fake.evaluations("sys") if e["TriggeredBy"] == "rolling-update"]
        assert rolling and rolling[0]["Wait"] == 400_000_000
        fake.settle(timeout=10)
        assert set(_versions_on(fake).values()) == {1}
        assert fake.deployments("sys") == []


def test_1_10_system_rollout_is_not_stopped_by_a_bad_image() -> None:
    """No health gate up to 1.10: every batch is replaced, broken or not."""
    with _four_nodes("1.10.5") as fake:
        update = {"MaxParallel": 2, "Stagger": 200_000_000}
        deployed(fake, _system("example/w:1", update))
        fake.script("sys", "bad_image", version=1)
        register(fake, _system("example/w:bad", update))
        fake.settle(timeout=10)
        current = [a for a in fake.allocations("sys") if a["Job"]["Version"] == 1]
        assert {a["NodeName"] for a in current} == {"n0", "n1", "n2", "n3"}
        assert {a["ClientStatus"] for a in current} == {"failed"}


def test_1_10_system_job_without_update_replaces_every_node_at_once() -> None:
    with _four_nodes("1.10.5") as fake:
        deployed(fake, _system("example/w:1", None))
        register(fake, _system("example/w:2", None))
        time.sleep(STEP * 8)
        assert set(_versions_on(fake).values()) == {1}
        job = fake.job("sys")
        assert job is not None
        assert job["TaskGroups"][0].get("Update") is None  # no default strategy on 1.10


def test_2_0_system_rollout_is_a_deployment_one_healthy_node_at_a_time() -> None:
    with _four_nodes("2.0.5") as fake:
        deployed(fake, _system("example/w:1", None))  # no update block: the default strategy (max_parallel 1)
        first = fake.deployments("sys")
        assert [d["Status"] for d in first] == ["successful"]
        register(fake, _system("example/w:2", None))
        dep = wait_deployment(fake, "sys", 1, "successful", timeout=10)
        assert dep["TaskGroups"]["worker"]["DesiredTotal"] == 4
        assert set(_versions_on(fake).values()) == {1}
        new = sorted((a for a in fake.allocations("sys") if a["Job"]["Version"] == 1), key=lambda a: a["CreateIndex"])
        for before, after in itertools.pairwise(new):  # each node placed only once the previous one was healthy
            assert after["CreateIndex"] > before["DeploymentStatus"]["ModifyIndex"]


def test_2_0_system_deployment_fails_at_the_first_bad_node_and_auto_reverts() -> None:
    with _four_nodes("2.0.5") as fake:
        update = {"MaxParallel": 1, "AutoRevert": True}
        deployed(fake, _system("example/w:1", update))
        fake.script("sys", "bad_image", version=1)
        register(fake, _system("example/w:bad", update))
        dep = wait_deployment(fake, "sys", 1, "failed", timeout=10)
        assert "rolling back to job version 0" in dep["StatusDescription"]
        fake.settle(timeout=10)
        bad = [a for a in fake.allocations("sys") if a["Job"]["Version"] == 1]
        assert len(bad) == 1  # the gate held: one node tried the bad image
        job = fake.job("sys")
        assert job is not None
        assert job["Version"] == 2  # the revert, a copy of version 0
        assert {a["JobVersion"] for a in live_allocs(fake, "sys")} <= {0, 2}


@pytest.mark.parametrize(
    ("version", "stopped"),
    [("2.0.5", ["web.worker[3]"]), ("2.0.3", ["web.worker[0]"]), ("1.10.5", ["web.worker[0]"])],
    ids=["2.0.4+-stops-the-failed-one", "2.0.3-stops-a-live-one", "1.10-stops-a-live-one"],
)
def test_scale_in_with_a_failed_allocation_by_version(version: str, stopped: list[str]) -> None:
    """A failed, not rescheduled allocation holds the highest index; what a scale-in stops depends on the version."""
    with FakeNomad(step_delay=STEP, version=version) as fake:
        body = job_body(count=4)
        body["Job"]["TaskGroups"][0]["ReschedulePolicy"] = {"Attempts": 0, "Unlimited": False, "Interval": 0}
        deployed(fake, body)
        top = next(a for a in fake.allocations("web") if a["Name"] == "web.worker[3]")
        fake.fail_alloc(top["ID"])
        fake.set_count("web", "worker", 3)
        fake.settle()
        allocs = get(fake, "/v1/job/web/allocations").json()
        assert sorted(a["Name"] for a in allocs if a["DesiredStatus"] == "stop") == stopped


@pytest.mark.parametrize("auto_promote", [False, True], ids=["manual", "auto"])
def test_2_0_system_canary_is_a_percentage_of_the_nodes_and_waits_for_promotion(auto_promote: bool) -> None:
    with _four_nodes("2.0.5") as fake:
        update = {"MaxParallel": 2, "Canary": 25, "AutoPromote": auto_promote, "MinHealthyTime": 0}
        deployed(fake, _system("example/w:1", update))
        register(fake, _system("example/w:2", update))
        fake.settle()
        dep = next(d for d in fake.deployments("sys") if d["JobVersion"] == 1)
        state = dep["TaskGroups"]["worker"]
        assert state["DesiredCanaries"] == 1  # ceil(25% of 4 nodes)
        if not auto_promote:
            assert dep["Status"] == "running"
            assert dep["StatusDescription"] == "Deployment is running but requires manual promotion"
            assert sorted(_versions_on(fake).values()) == [0, 0, 0, 1]
            promoted = requests.post(url(fake, f"/v1/deployment/promote/{dep['ID']}"), json={"All": True}, timeout=10)
            assert promoted.status_code == 200
            fake.settle()
        dep = wait_deployment(fake, "sys", 1, "successful", timeout=10)
        assert dep["TaskGroups"]["worker"]["Promoted"] is True
        assert set(_versions_on(fake).values()) == {1}


def test_alloc_stop_stops_one_allocation_and_places_a_replacement_keeping_the_count() -> None:
    """``POST /v1/allocation/<id>/stop`` (nomad/alloc_endpoint.go Alloc.Stop): an alloc-stop eval, a replacement."""
    stopped: list[str] = []
    with FakeNomad(step_delay=STEP, on_stop=lambda a: stopped.append(str(a["ID"]))) as fake:
        body = job_body(count=2)
        body["Job"]["TaskGroups"][0]["Tasks"][0].update(KillSignal="SIGTERM", KillTimeout=3_600_000_000_000)
        assert register(fake, body).status_code == 200
        fake.settle()
        first = sorted(a["ID"] for a in fake.allocations("web"))[0]
        reply = requests.post(url(fake, f"/v1/allocation/{first}/stop"), timeout=10)
        assert reply.status_code == 200 and reply.json()["EvalID"]
        fake.settle()
        allocs = fake.allocations("web")
        live = [a for a in allocs if a["DesiredStatus"] == "run"]
        assert len(live) == 2 and first not in {a["ID"] for a in live}
        assert stopped == [first]
        alloc = next(a for a in allocs if a["ID"] == first)
        # The client caps the job's 1h kill_timeout at its max_kill_timeout (30 s by default).
        assert (fake.kill_signal(alloc), fake.kill_timeout(alloc)) == ("SIGTERM", 30.0)
        killing = [e for e in alloc["TaskStates"]["condor"]["Events"] if e["Type"] == "Killing"]
        assert killing and killing[0]["KillTimeout"] == 30_000_000_000
        assert requests.post(url(fake, "/v1/allocation/nope/stop"), timeout=10).status_code == 404
