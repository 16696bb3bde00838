"""The Nomad client layer against recorded and faked HTTP (``responses``).

Payload shapes follow Nomad's HTTP API documentation (api-docs/jobs.mdx "Create Job
Plan" and "List Job Allocations", api-docs/evaluations.mdx, api-docs/deployments.mdx).
"""

from __future__ import annotations

import json
from typing import Any

import pytest
import requests
import responses
from responses import matchers

from nomadwn.errors import NomadError
from nomadwn.nomad import Allocation, DispatchedJob, NomadSettings
from nomadwn.nomad_client import NomadClient
from nomadwn.render import build_job
from nomadwn.sitefile import load_site
from tests.conftest import EXAMPLE

ADDR = "https://nomad.example:4646"
TOKEN = "s3cr3t-acl-token-0000"

PLAN_RESPONSE: dict[str, Any] = {
    "Index": 0,
    "NextPeriodicLaunch": "0001-01-01T00:00:00Z",
    "Warnings": "",
    "Diff": {
        "Type": "Edited",
        "ID": "glasgow-elastic",
        "Fields": [{"Annotations": None, "Name": "Priority", "New": "60", "Old": "50", "Type": "Edited"}],
        "Objects": None,
        "TaskGroups": [
            {
                "Name": "worker",
                "Type": "Edited",
                "Updates": {"create/destroy update": 4},
                "Fields": [{"Annotations": None, "Name": "Count", "New": "5", "Old": "4", "Type": "Edited"}],
                "Objects": None,
                "Tasks": [
                    {
                        "Name": "condor",
                        "Type": "Edited",
                        "Annotations": ["forces create/destroy update"],
                        "Fields": None,
                        "Objects": [
                            {
                                "Name": "Config",
                                "Type": "Edited",
                                "Fields": [
                                    {
                                        "Name": "image",
                                        "Old": "registry/cntwn:1",
                                        "New": "registry/cntwn:2",
                                        "Type": "Edited",
                                        "Annotations": None,
                                    }
                                ],
                                "Objects": None,
                            }
                        ],
                    }
                ],
            }
        ],
    },
    "CreatedEvals": None,
    "JobModifyIndex": 117,
    "FailedTGAllocs": {
        "worker": {
            "NodesEvaluated": 3,
            "NodesFiltered": 1,
            "NodesAvailable": {"scotgrid": 3},
            "ClassFiltered": None,
            "ConstraintFiltered": {"${attr.kernel.name} = linux": 1},
            "NodesExhausted": 2,
            "ClassExhausted": None,
            "DimensionExhausted": {"memory": 2},
            "QuotaExhausted": None,
            "Scores": None,
            "AllocationTime": 46415,
            "CoalescedFailures": 3,
        }
    },
    "Annotations": {
        "DesiredTGUpdates": {
            "worker": {
                "DestructiveUpdate": 4,
                "InPlaceUpdate": 0,
                "Stop": 0,
                "Migrate": 0,
                "Place": 1,
                "Ignore": 0,
                "Canary": 0,
                "Preemptions": 0,
            }
        }
    },
}

ALLOCATIONS: list[dict[str, Any]] = [
    {
        "ID": "ed344e0a-7290-d117-41d3-a64f853ca3c2",
        "EvalID": "a9c5effc-2242-51b2-f1fe-054ee11ab189",
        "Name": "glasgow-elastic.worker[0]",
        "NodeID": "cb1f6030-a220-4f92-57dc-7baaabdc3823",
        "NodeName": "wn-01",
        "JobID": "glasgow-elastic",
        "JobVersion": 3,
        "TaskGroup": "worker",
        "DesiredStatus": "run",
        "DesiredDescription": "",
        "ClientStatus": "failed",
        "ClientDescription": "Failed tasks",
        "DeploymentStatus": {"Healthy": False, "Canary": False, "Timestamp": "2026-11-22T04:00:00Z"},
        "TaskStates": {
            "condor": {
                "State": "dead",
                "Failed": True,
                "Restarts": 0,
                "Events": [
                    {"Type": "Received", "Time": 1, "DisplayMessage": "Task received by client", "ExitCode": 0},
                    {
                        "Type": "Driver Failure",
                        "Time": 2,
                        "DisplayMessage": "Failed to pull `registry/cntwn:2`: manifest unknown",
                        "DriverError": "Failed to pull `registry/cntwn:2`: manifest unknown",
                        "FailsTask": True,
                        "ExitCode": 0,
                    },
                ],
            }
        },
        "CreateIndex": 120,
        "ModifyIndex": 125,
    }
]


def client(token: str | None = TOKEN, **settings: Any) -> NomadClient:
    return NomadClient(NomadSettings(address=ADDR, token=token, namespace="grid", region="europe", **settings))


def job_of(flavour: str = "elastic") -> Any:
    return build_job(load_site(EXAMPLE), flavour)


# ---------------------------------------------------------------------------
# settings


def test_settings_precedence_defaults_env_flags() -> None:
    env = {
        "NOMAD_ADDR": "https://env:4646",
        "NOMAD_NAMESPACE": "env-ns",
        "NOMAD_TOKEN": TOKEN,
        "NOMAD_CACERT": "/ca.pem",
    }
    s = NomadSettings.from_env(env, namespace="flag-ns", region=None)
    assert (s.address, s.namespace, s.region, s.ca_cert, s.verify) == (
        "https://env:4646",
        "flag-ns",
        None,
        "/ca.pem",
        True,
    )
    assert NomadSettings.from_env({}).address == "http://127.0.0.1:4646"
    assert NomadSettings.from_env({"NOMAD_SKIP_VERIFY": "true"}).verify is False
    assert TOKEN not in repr(s) and TOKEN not in str(s)


def test_tls_verification_is_on_by_default_and_uses_the_ca_bundle() -> None:
    assert NomadSettings().verify is True
    assert client()._nomad.job.verify is True
    assert client(ca_cert="/etc/ssl/site-ca.pem")._nomad.job.verify == "/etc/ssl/site-ca.pem"
    assert client(verify=False)._nomad.job.verify is False


@responses.activate
def test_settings_win_over_python_nomads_environment_fallback(monkeypatch: pytest.MonkeyPatch) -> None:
    """python-nomad reads NOMAD_TOKEN etc. when given None; explicit settings must win."""
    monkeypatch.setenv("NOMAD_TOKEN", "stray-token-from-env")
    monkeypatch.setenv("NOMAD_NAMESPACE", "stray-ns")
    monkeypatch.setenv("NOMAD_REGION", "stray-region")
    responses.get(f"{ADDR}/v1/job/x", json={"ID": "x", "TaskGroups": []})
    NomadClient(NomadSettings(address=ADDR)).job("x")
    sent = responses.calls[0].request
    assert "X-Nomad-Token" not in sent.headers
    assert "stray" not in (sent.url or "")


def test_bad_address_is_refused() -> None:
    with pytest.raises(NomadError, match="is not an http"):
        NomadClient(NomadSettings(address="ftp://x"))


# ---------------------------------------------------------------------------
# requests on the wire


@responses.activate
def test_plan_sends_the_job_with_a_diff_and_reads_the_result() -> None:
    job = job_of()
    responses.post(
        f"{ADDR}/v1/job/glasgow-elastic/plan",
        json=PLAN_RESPONSE,
        match=[
            matchers.query_param_matcher({"namespace": "grid", "region": "europe"}),
            matchers.header_matcher({"X-Nomad-Token": TOKEN}),
        ],
    )
    plan = client().plan(job)
    sent = json.loads(responses.calls[0].request.body or b"{}")
    assert sent["Diff"] is True and sent["Job"]["ID"] == "glasgow-elastic"
    assert TOKEN not in (responses.calls[0].request.url or "")
    assert plan.changed and plan.job_modify_index == 117
    assert plan.desired_updates == {
        "worker": {
            "DestructiveUpdate": 4,
            "InPlaceUpdate": 0,
            "Stop": 0,
            "Migrate": 0,
            "Place": 1,
            "Ignore": 0,
            "Canary": 0,
            "Preemptions": 0,
        }
    }
    assert plan.changes == [
        "~ Priority: '50' => '60'",
        "~ group[worker].Count: '4' => '5'",
        "~ group[worker].task[condor].Config.image: 'registry/cntwn:1' => 'registry/cntwn:2'",
    ]
    failure = plan.failed_allocs["worker"]
    assert failure.constraint_filtered == {"${attr.kernel.name} = linux": 1}
    assert failure.dimension_exhausted == {"memory": 2}


@responses.activate
def test_register_is_check_and_set_and_preserves_counts() -> None:
    responses.post(
        f"{ADDR}/v1/jobs",
        json={"EvalID": "e-1", "EvalCreateIndex": 130, "JobModifyIndex": 130, "Warnings": "", "Index": 130},
    )
    result = client().register(job_of(), enforce_index=117, preserve_counts=True)
    sent = json.loads(responses.calls[0].request.body or b"{}")
    assert (sent["EnforceIndex"], sent["JobModifyIndex"], sent["PreserveCounts"]) == (True, 117, True)
    assert (result.eval_id, result.job_modify_index) == ("e-1", 130)


@responses.activate
def test_allocations_blocking_query_keeps_the_index() -> None:
    responses.get(
        f"{ADDR}/v1/job/glasgow-elastic/allocations",
        json=ALLOCATIONS,
        headers={"X-Nomad-Index": "125"},
        match=[
            matchers.query_param_matcher({"namespace": "grid", "region": "europe", "index": "120", "wait": "5000ms"})
        ],
    )
    got = client().allocations("glasgow-elastic", index=120, wait=5)
    assert got.index == 125
    (a,) = got.value
    assert (a.client_status, a.healthy, a.node_name, a.job_version) == ("failed", False, "wn-01", 3)
    assert (a.name, a.index) == ("glasgow-elastic.worker[0]", 0)
    assert [e.type for e in a.events] == ["Received", "Driver Failure"]
    assert a.events[-1].message == "Failed to pull `registry/cntwn:2`: manifest unknown"


@responses.activate
def test_evaluation_reads_send_the_namespace() -> None:
    """python-nomad leaves the namespace off evaluation requests; the client adds it."""
    responses.get(
        f"{ADDR}/v1/evaluation/e-1",
        json={"ID": "e-1", "Status": "blocked", "StatusDescription": "created to place remaining allocations"},
        headers={"X-Nomad-Index": "9"},
        match=[matchers.query_param_matcher({"namespace": "grid", "region": "europe"})],
    )
    ev = client().evaluation("e-1").value
    assert (ev.status, ev.status_description) == ("blocked", "created to place remaining allocations")


@responses.activate
def test_scale_endpoint_and_missing_job() -> None:
    responses.post(f"{ADDR}/v1/job/glasgow-elastic/scale", json={"EvalID": "e-9", "Index": 3})
    responses.get(f"{ADDR}/v1/job/nope", status=404, body="job not found")
    assert client().scale("glasgow-elastic", "worker", 7, "autoscaler: 12 idle jobs") == "e-9"
    sent = json.loads(responses.calls[0].request.body or b"{}")
    assert sent == {
        "Count": 7,
        "Target": {"Group": "worker"},
        "Message": "autoscaler: 12 idle jobs",
        "PolicyOverride": False,
    }
    assert client().job("nope") is None


@responses.activate
def test_deployment_and_versions_are_decoded() -> None:
    responses.get(
        f"{ADDR}/v1/job/glasgow-elastic/deployment",
        json={
            "ID": "70638f62-5c19-193e-30d6-f9d6e689ab8e",
            "JobID": "glasgow-elastic",
            "JobVersion": 3,
            "Status": "failed",
            "StatusDescription": "Failed due to unhealthy allocations - rolling back to job version 2",
            "TaskGroups": {
                "worker": {
                    "AutoRevert": True,
                    "Promoted": False,
                    "PlacedCanaries": None,
                    "DesiredCanaries": 0,
                    "DesiredTotal": 4,
                    "PlacedAllocs": 4,
                    "HealthyAllocs": 1,
                    "UnhealthyAllocs": 3,
                }
            },
        },
        headers={"X-Nomad-Index": "140"},
    )
    responses.get(
        f"{ADDR}/v1/job/glasgow-elastic/versions",
        json={
            "Versions": [
                {"Version": 3, "Stable": False, "SubmitTime": 3},
                {"Version": 2, "Stable": True, "SubmitTime": 2},
            ]
        },
    )
    d = client().latest_deployment("glasgow-elastic").value
    assert d is not None and d.groups["worker"].unhealthy == 3 and d.job_version == 3
    assert [v.version for v in client().versions("glasgow-elastic")] == [3, 2]


def _child_stub(job_id: str, parent: str, status: str, **groups: dict[str, int]) -> dict[str, Any]:
    """A job list stub as GET /v1/jobs shows it (jobs.mdx "List Jobs"), for a dispatched child."""
    zero = {"Queued": 0, "Complete": 0, "Failed": 0, "Running": 0, "Starting": 0, "Lost": 0, "Unknown": 0}
    return {
        "ID": job_id,
        "ParentID": parent,
        "Name": job_id,
        "Namespace": "grid",
        "Type": "batch",
        "Priority": 50,
        "Periodic": False,
        "ParameterizedJob": False,
        "Stop": False,
        "Status": status,
        "StatusDescription": "",
        "JobSummary": {
            "JobID": job_id,
            "Namespace": "grid",
            "Summary": {name: {**zero, **counts} for name, counts in groups.items()},
            "Children": {"Pending": 0, "Running": 0, "Dead": 0},
            "CreateIndex": 52,
            "ModifyIndex": 96,
        },
        "CreateIndex": 52,
        "ModifyIndex": 93,
        "JobModifyIndex": 52,
        "SubmitTime": 1485408778000000000,
    }


@responses.activate
def test_dispatch_sends_meta_and_the_idempotency_token_where_nomad_reads_them() -> None:
    responses.post(
        f"{ADDR}/v1/job/glasgow-burst/dispatch",
        json={
            "Index": 13,
            "JobCreateIndex": 12,
            "EvalCreateIndex": 13,
            "EvalID": "e5f55fac-bc69-119d-528a-1fc7ade5e02c",
            "DispatchedJobID": "glasgow-burst/dispatch-1485408778-81644024",
        },
        match=[
            matchers.query_param_matcher(
                {"namespace": "grid", "region": "europe", "idempotency_token": "nomadwn-burst-1700000000-0"}
            ),
            matchers.json_params_matcher({"Meta": {"nomadwn_reason": "12 idle jobs"}}, strict_match=True),
            matchers.header_matcher({"X-Nomad-Token": TOKEN}),
        ],
    )
    result = client().dispatch(
        "glasgow-burst", meta={"nomadwn_reason": "12 idle jobs"}, idempotency_token="nomadwn-burst-1700000000-0"
    )
    assert (result.dispatched_job_id, result.eval_id) == (
        "glasgow-burst/dispatch-1485408778-81644024",
        "e5f55fac-bc69-119d-528a-1fc7ade5e02c",
    )


@responses.activate
def test_dispatch_retried_with_the_same_token_returns_the_existing_child() -> None:
    """Nomad answers a matching token with the existing child and no evaluation."""
    responses.post(
        f"{ADDR}/v1/job/glasgow-burst/dispatch",
        json={
            "DispatchedJobID": "glasgow-burst/dispatch-1485408778-81644024",
            "EvalID": "",
            "EvalCreateIndex": 0,
            "JobCreateIndex": 12,
            "Index": 15,
        },
    )
    result = client().dispatch("glasgow-burst", meta={}, idempotency_token="t")
    assert (result.dispatched_job_id, result.eval_id) == ("glasgow-burst/dispatch-1485408778-81644024", "")


def test_dispatch_refuses_an_empty_token() -> None:
    with pytest.raises(ValueError, match="needs an idempotency token"):
        client().dispatch("glasgow-burst", meta={}, idempotency_token="")


@responses.activate
def test_dispatch_of_a_job_that_is_not_parameterized_is_a_nomad_error() -> None:
    responses.post(
        f"{ADDR}/v1/job/glasgow-elastic/dispatch",
        status=500,
        body='Specified job "glasgow-elastic" is not a parameterized job',
    )
    with pytest.raises(NomadError) as caught:
        client().dispatch("glasgow-elastic", meta={}, idempotency_token="t")
    assert caught.value.status == 500
    assert str(caught.value) == (
        f"dispatching job glasgow-elastic at {ADDR}: Nomad answered HTTP 500: "
        'Specified job "glasgow-elastic" is not a parameterized job'
    )


@responses.activate
def test_dispatched_lists_the_children_and_sums_their_groups() -> None:
    responses.get(
        f"{ADDR}/v1/jobs",
        json=[
            _child_stub(
                "glasgow-burst/dispatch-1700000000-0a1b2c3d", "glasgow-burst", "running", worker={"Running": 1}
            ),
            _child_stub(
                "glasgow-burst/dispatch-1700000060-4e5f6a7b",
                "glasgow-burst",
                "pending",
                worker={"Queued": 1},
                sidecar={"Starting": 2},
            ),
            _child_stub("glasgow-burst/dispatch-1700000120-8c9d0e1f", "glasgow-burst", "dead", worker={"Complete": 1}),
            _child_stub("glasgow-burst/dispatch-manual", "", "running", worker={"Running": 1}),  # not a child
        ],
        headers={"X-Nomad-Index": "96"},
        match=[
            matchers.query_param_matcher({"prefix": "glasgow-burst/dispatch-", "namespace": "grid", "region": "europe"})
        ],
    )
    got = client().dispatched("glasgow-burst")
    assert got == [
        DispatchedJob("glasgow-burst/dispatch-1700000000-0a1b2c3d", "running", 0, 0, 1, 0, 0, 0),
        DispatchedJob("glasgow-burst/dispatch-1700000060-4e5f6a7b", "pending", 1, 2, 0, 0, 0, 0),
        DispatchedJob("glasgow-burst/dispatch-1700000120-8c9d0e1f", "dead", 0, 0, 0, 1, 0, 0),
    ]
    assert [c.live for c in got] == [1, 3, 0]


@responses.activate
def test_dispatched_without_children_and_without_summaries() -> None:
    stub = _child_stub("glasgow-burst/dispatch-1700000000-0a1b2c3d", "glasgow-burst", "pending")
    stub["JobSummary"] = None
    responses.get(f"{ADDR}/v1/jobs", json=[stub])
    assert client().dispatched("glasgow-burst") == [
        DispatchedJob("glasgow-burst/dispatch-1700000000-0a1b2c3d", "pending", 0, 0, 0, 0, 0, 0)
    ]


NAME_CASES = [
    ("glasgow-elastic.worker[3]", 3),
    ("glasgow-burst/dispatch-1700000000-0a1b2c3d.worker[0]", 0),
    ("", None),
    ("web.worker[x]", None),
    ("web.worker[12] ", None),
]


@pytest.mark.parametrize(("name", "index"), NAME_CASES, ids=[repr(c[0]) for c in NAME_CASES])
def test_allocation_name_index(name: str, index: int | None) -> None:
    alloc = Allocation("a", "worker", "n", "wn-01", "running", "run", 0, True, False, False, [], name=name)
    assert alloc.index == index


def test_allocation_name_defaults_for_existing_constructors() -> None:
    alloc = Allocation("a", "worker", "n", "wn-01", "running", "run", 0, True, False, False, [])
    assert (alloc.name, alloc.index) == ("", None)


# ---------------------------------------------------------------------------
# every failure becomes one NomadError, with no token in it

HTTP_CASES = [
    (400, "1 error occurred: * Task group worker validation failed", "Nomad refused the request"),
    (403, "Permission denied", "permission denied: check that NOMAD_TOKEN is set"),
    (404, "job not found", "not found: check the job ID, namespace and region"),
    (409, "conflict", "conflict"),
    (
        500,
        f"rpc error: Enforcing job modify index 117: job exists with conflicting job modify index: 130 {TOKEN}",
        "HTTP 500",
    ),
    (503, "No cluster leader", "HTTP 503"),
]


@pytest.mark.parametrize(("status", "body", "hint"), HTTP_CASES, ids=[str(c[0]) for c in HTTP_CASES])
@responses.activate
def test_http_errors_are_translated(status: int, body: str, hint: str) -> None:
    responses.post(f"{ADDR}/v1/jobs", status=status, body=body)
    with pytest.raises(NomadError) as caught:
        client().register(job_of(), enforce_index=117, preserve_counts=True)
    message = str(caught.value)
    assert caught.value.status == status
    assert message.startswith(f"registering job glasgow-elastic at {ADDR}: ")
    assert hint in message
    assert TOKEN not in message


NETWORK_CASES: list[tuple[Exception, str]] = [
    (requests.exceptions.ConnectionError("refused"), "cannot connect: is Nomad running there? check NOMAD_ADDR"),
    (
        requests.exceptions.ConnectTimeout("slow"),
        "no answer within the timeout (10s): is Nomad overloaded or the address wrong?",
    ),
    (
        requests.exceptions.ReadTimeout("slow"),
        "no answer within the timeout (10s): is Nomad overloaded or the address wrong?",
    ),
    (
        requests.exceptions.SSLError("bad cert"),
        "TLS verification failed: set NOMAD_CACERT to your CA bundle (NOMAD_SKIP_VERIFY only for testing)",
    ),
    (requests.exceptions.ChunkedEncodingError("cut"), "request failed (ChunkedEncodingError)"),
    (requests.exceptions.TooManyRedirects("loop"), "request failed (TooManyRedirects)"),
]


@pytest.mark.parametrize(("error", "hint"), NETWORK_CASES, ids=[type(c[0]).__name__ for c in NETWORK_CASES])
@responses.activate
def test_network_errors_are_translated(error: Exception, hint: str) -> None:
    responses.get(f"{ADDR}/v1/job/glasgow-elastic/allocations", body=error)
    with pytest.raises(NomadError) as caught:
        client().allocations("glasgow-elastic", index=5, wait=1)
    assert caught.value.status is None
    assert str(caught.value) == f"listing allocations of job glasgow-elastic at {ADDR}: {hint}"


def test_every_python_nomad_exception_class_is_mapped() -> None:
    """If python-nomad grows an exception class, this fails until _call handles it."""
    import nomad.api.exceptions as exc

    handled = {
        exc.BaseNomadException,
        exc.URLNotFoundNomadException,
        exc.URLNotAuthorizedNomadException,
        exc.BadRequestNomadException,
        exc.VariableConflict,
        exc.TimeoutNomadException,  # a requests.RequestException
    }
    defined = {
        v
        for v in vars(exc).values()
        if isinstance(v, type) and issubclass(v, Exception) and v.__module__ == exc.__name__
    }
    defined.discard(exc.InvalidParameters)  # raised for bad arguments before any request; nomadwn never triggers it
    assert defined == handled
