"""Nomad's HTTP API behind a small typed protocol, over python-nomad.

:class:`NomadAPI` is what the rest of nomadwn uses; :class:`NomadClient` is its one
real implementation and the only module that imports ``nomad`` (python-nomad).
It fills python-nomad 2.1.0's gaps:

* TLS verification is **on** by default (python-nomad's default is off);
* blocking queries (``?index=N&wait=...``) with the ``X-Nomad-Index`` header kept;
* ``EnforceIndex``/``PreserveCounts`` on register, and the job scale endpoint;
* dispatch with the idempotency token where Nomad reads it (python-nomad's
  ``dispatch_job`` puts it in the body as ``idempotency_token``, which Nomad ignores);
* namespace and region sent on every call (python-nomad skips evaluations);
* one timeout per call, longer than the blocking wait it carries;
* every python-nomad and requests exception becomes a :class:`NomadError` that says
  what failed and what to check, with the ACL token scrubbed from it.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any, Generic, Protocol, TypeVar
from urllib.parse import urlsplit

import nomad
import nomad.api.base
import nomad.api.exceptions as nomad_exc
import requests

from nomadwn import nomad_api as api
from nomadwn.errors import NomadError

T = TypeVar("T")

# ---------------------------------------------------------------------------
# Settings


def _truthy(value: str) -> bool:
    return value.strip().lower() in ("1", "true", "yes", "on")


@dataclass(frozen=True)
class NomadSettings:
    """How to reach Nomad. Precedence: defaults < environment (``NOMAD_*``) < explicit overrides."""

    address: str = "http://127.0.0.1:4646"
    token: str | None = field(default=None, repr=False)
    region: str | None = None
    namespace: str | None = None
    ca_cert: str | None = None
    client_cert: str | None = None
    client_key: str | None = None
    verify: bool = True
    timeout: float = 10.0

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, **overrides: Any) -> NomadSettings:
        """Settings from HashiCorp's environment variables, then ``overrides`` (flags; None is ignored)."""
        env = os.environ if environ is None else environ
        values: dict[str, Any] = {}
        for var, key in (
            ("NOMAD_ADDR", "address"),
            ("NOMAD_TOKEN", "token"),
            ("NOMAD_REGION", "region"),
            ("NOMAD_NAMESPACE", "namespace"),
            ("NOMAD_CACERT", "ca_cert"),
            ("NOMAD_CLIENT_CERT", "client_cert"),
            ("NOMAD_CLIENT_KEY", "client_key"),
        ):
            if env.get(var):
                values[key] = env[var]
        if env.get("NOMAD_SKIP_VERIFY"):
            values["verify"] = not _truthy(env["NOMAD_SKIP_VERIFY"])
        values.update({k: v for k, v in overrides.items() if v is not None})
        return replace(cls(), **values)

    def __str__(self) -> str:
        return f"Nomad at {self.address}" + (" (with a token)" if self.token else "")


# ---------------------------------------------------------------------------
# Value types (what callers get back; never raw dicts)


@dataclass(frozen=True)
class Indexed(Generic[T]):
    """A value read with a blocking query, and the ``X-Nomad-Index`` to wait on next."""

    value: T
    index: int


@dataclass(frozen=True)
class PlacementFailure:
    """Why Nomad could not place a group's allocations (an evaluation's ``AllocMetric``)."""

    nodes_evaluated: int
    nodes_filtered: int
    nodes_exhausted: int
    nodes_available: dict[str, int]
    class_filtered: dict[str, int]
    constraint_filtered: dict[str, int]
    class_exhausted: dict[str, int]
    dimension_exhausted: dict[str, int]
    quota_exhausted: list[str]
    coalesced_failures: int


@dataclass(frozen=True)
class PlanResult:
    """What ``nomad job plan`` would do."""

    job_modify_index: int
    diff_type: str
    changes: list[str]
    desired_updates: dict[str, dict[str, int]]
    failed_allocs: dict[str, PlacementFailure]
    warnings: str

    @property
    def changed(self) -> bool:
        """True when registering the job would change anything."""
        return self.diff_type != "None"


@dataclass(frozen=True)
class RegisterResult:
    """Nomad's answer to a job registration."""

    eval_id: str
    job_modify_index: int
    warnings: str


@dataclass(frozen=True)
class JobStatus:
    """A registered job's current version and state."""

    id: str
    type: str
    status: str
    version: int
    stable: bool
    job_modify_index: int
    counts: dict[str, int]


@dataclass(frozen=True)
class TaskEvent:
    """One event in a task's life (``TaskState.Events``)."""

    task: str
    type: str
    message: str
    time_ns: int
    exit_code: int
    failed_task: bool


_NAME_INDEX = re.compile(r"\[(\d+)\]$")


@dataclass(frozen=True)
class Allocation:
    """One allocation of a job, as the allocation list shows it.

    ``name`` is Nomad's ``<job>.<group>[<index>]``; the reconciler stops the highest
    indexes first when a group scales in.
    """

    id: str
    group: str
    node_id: str
    node_name: str
    client_status: str
    desired_status: str
    job_version: int
    healthy: bool | None
    canary: bool
    task_failed: bool
    events: list[TaskEvent]
    name: str = ""

    @property
    def index(self) -> int | None:
        """The ``[N]`` at the end of the name (None when there is none)."""
        found = _NAME_INDEX.search(self.name)
        return int(found.group(1)) if found else None


@dataclass(frozen=True)
class DispatchedJob:
    """A child job dispatched from a parameterized job, with its allocation counts over all groups.

    The counts are the job list's ``JobSummary``: ``queued`` waits for capacity,
    ``starting`` is placed but not yet running, the rest are what their names say.
    """

    id: str
    status: str
    queued: int
    starting: int
    running: int
    complete: int
    failed: int
    lost: int

    @property
    def live(self) -> int:
        """Allocations that run or will run: queued + starting + running."""
        return self.queued + self.starting + self.running


@dataclass(frozen=True)
class DispatchResult:
    """Nomad's answer to a dispatch: the child job, and its evaluation (empty when the token matched)."""

    dispatched_job_id: str
    eval_id: str


@dataclass(frozen=True)
class Evaluation:
    """An evaluation of a job; ``failed_allocs`` explains unplaced groups."""

    id: str
    status: str
    status_description: str
    triggered_by: str
    blocked_eval: str
    failed_allocs: dict[str, PlacementFailure]


@dataclass(frozen=True)
class DeploymentGroup:
    """Progress of one group in a deployment."""

    desired_total: int
    placed: int
    healthy: int
    unhealthy: int
    desired_canaries: int
    placed_canaries: int
    promoted: bool


@dataclass(frozen=True)
class Deployment:
    """A job version's rollout."""

    id: str
    status: str
    status_description: str
    job_version: int
    groups: dict[str, DeploymentGroup]


@dataclass(frozen=True)
class JobVersion:
    """One stored version of a job."""

    version: int
    stable: bool
    submit_time_ns: int


# ---------------------------------------------------------------------------
# The protocol


class NomadAPI(Protocol):
    """The Nomad operations nomadwn needs. ``wait`` is seconds for a blocking query (0: none)."""

    def plan(self, job: api.Job) -> PlanResult: ...

    def register(self, job: api.Job, *, enforce_index: int | None, preserve_counts: bool) -> RegisterResult: ...

    def job(self, job_id: str) -> JobStatus | None: ...

    def versions(self, job_id: str) -> list[JobVersion]: ...

    def allocations(self, job_id: str, *, index: int = 0, wait: float = 0) -> Indexed[list[Allocation]]: ...

    def evaluation(self, eval_id: str, *, index: int = 0, wait: float = 0) -> Indexed[Evaluation]: ...

    def latest_deployment(self, job_id: str, *, index: int = 0, wait: float = 0) -> Indexed[Deployment | None]: ...

    def promote(self, deployment_id: str) -> None: ...

    def revert(self, job_id: str, version: int, *, enforce_prior_version: int | None = None) -> RegisterResult: ...

    def stop(self, job_id: str, *, purge: bool = False) -> str: ...

    def scale(self, job_id: str, group: str, count: int, message: str) -> str: ...

    def dispatch(self, job_id: str, *, meta: Mapping[str, str], idempotency_token: str) -> DispatchResult: ...

    def dispatched(self, parent_id: str) -> list[DispatchedJob]: ...


# ---------------------------------------------------------------------------
# Decoding Nomad's JSON into the value types


def _failure(metric: Mapping[str, Any]) -> PlacementFailure:
    def counts(key: str) -> dict[str, int]:
        return {str(k): int(v) for k, v in (metric.get(key) or {}).items()}

    return PlacementFailure(
        nodes_evaluated=int(metric.get("NodesEvaluated") or 0),
        nodes_filtered=int(metric.get("NodesFiltered") or 0),
        nodes_exhausted=int(metric.get("NodesExhausted") or 0),
        nodes_available=counts("NodesAvailable"),
        class_filtered=counts("ClassFiltered"),
        constraint_filtered=counts("ConstraintFiltered"),
        class_exhausted=counts("ClassExhausted"),
        dimension_exhausted=counts("DimensionExhausted"),
        quota_exhausted=[str(q) for q in metric.get("QuotaExhausted") or []],
        coalesced_failures=int(metric.get("CoalescedFailures") or 0),
    )


def _failures(raw: Mapping[str, Any] | None) -> dict[str, PlacementFailure]:
    return {str(group): _failure(metric) for group, metric in (raw or {}).items()}


def _diff_lines(diff: Mapping[str, Any], prefix: str = "") -> list[str]:
    """Flatten Nomad's plan diff into ``+/-/~ path: old => new`` lines."""
    marks = {"Added": "+", "Deleted": "-", "Edited": "~", "None": " "}
    lines: list[str] = []
    for f in diff.get("Fields") or []:
        if f.get("Type", "None") == "None":
            continue
        mark = marks.get(f.get("Type", ""), "~")
        lines.append(f"{mark} {prefix}{f.get('Name')}: {f.get('Old', '')!r} => {f.get('New', '')!r}")
    for obj in diff.get("Objects") or []:
        if obj.get("Type", "None") != "None":
            lines += _diff_lines(obj, f"{prefix}{obj.get('Name')}.")
    for group in diff.get("TaskGroups") or []:
        if group.get("Type", "None") != "None":
            lines += _diff_lines(group, f"{prefix}group[{group.get('Name')}].")
    for task in diff.get("Tasks") or []:
        if task.get("Type", "None") != "None":
            lines += _diff_lines(task, f"{prefix}task[{task.get('Name')}].")
    return lines


def _allocation(raw: Mapping[str, Any]) -> Allocation:
    events: list[TaskEvent] = []
    failed = False
    for task, state in (raw.get("TaskStates") or {}).items():
        failed = failed or bool(state.get("Failed"))
        for e in state.get("Events") or []:
            events.append(
                TaskEvent(
                    task=str(task),
                    type=str(e.get("Type", "")),
                    message=str(e.get("DisplayMessage") or e.get("Message") or e.get("DriverError") or ""),
                    time_ns=int(e.get("Time") or 0),
                    exit_code=int(e.get("ExitCode") or 0),
                    failed_task=bool(e.get("FailsTask")),
                )
            )
    health = raw.get("DeploymentStatus") or {}
    healthy = health.get("Healthy")
    return Allocation(
        id=str(raw["ID"]),
        group=str(raw.get("TaskGroup", "")),
        node_id=str(raw.get("NodeID", "")),
        node_name=str(raw.get("NodeName", "")),
        client_status=str(raw.get("ClientStatus", "")),
        desired_status=str(raw.get("DesiredStatus", "")),
        job_version=int(raw.get("JobVersion") or 0),
        healthy=None if healthy is None else bool(healthy),
        canary=bool(health.get("Canary")),
        task_failed=failed,
        events=sorted(events, key=lambda ev: ev.time_ns),
        name=str(raw.get("Name") or ""),
    )


_SUMMARY_KEYS = ("Queued", "Starting", "Running", "Complete", "Failed", "Lost")


def _dispatched_job(stub: Mapping[str, Any]) -> DispatchedJob:
    totals = dict.fromkeys(_SUMMARY_KEYS, 0)
    for group in ((stub.get("JobSummary") or {}).get("Summary") or {}).values():
        for key in _SUMMARY_KEYS:
            totals[key] += int((group or {}).get(key) or 0)
    return DispatchedJob(
        id=str(stub["ID"]),
        status=str(stub.get("Status") or ""),
        queued=totals["Queued"],
        starting=totals["Starting"],
        running=totals["Running"],
        complete=totals["Complete"],
        failed=totals["Failed"],
        lost=totals["Lost"],
    )


def _evaluation(raw: Mapping[str, Any]) -> Evaluation:
    return Evaluation(
        id=str(raw["ID"]),
        status=str(raw.get("Status", "")),
        status_description=str(raw.get("StatusDescription") or ""),
        triggered_by=str(raw.get("TriggeredBy") or ""),
        blocked_eval=str(raw.get("BlockedEval") or ""),
        failed_allocs=_failures(raw.get("FailedTGAllocs")),
    )


def _deployment(raw: Mapping[str, Any]) -> Deployment:
    return Deployment(
        id=str(raw["ID"]),
        status=str(raw.get("Status", "")),
        status_description=str(raw.get("StatusDescription") or ""),
        job_version=int(raw.get("JobVersion") or 0),
        groups={
            str(name): DeploymentGroup(
                desired_total=int(g.get("DesiredTotal") or 0),
                placed=int(g.get("PlacedAllocs") or 0),
                healthy=int(g.get("HealthyAllocs") or 0),
                unhealthy=int(g.get("UnhealthyAllocs") or 0),
                desired_canaries=int(g.get("DesiredCanaries") or 0),
                placed_canaries=len(g.get("PlacedCanaries") or []),
                promoted=bool(g.get("Promoted")),
            )
            for name, g in (raw.get("TaskGroups") or {}).items()
        },
    )


# ---------------------------------------------------------------------------
# The real client


def _split_address(address: str) -> tuple[str, bool]:
    parts = urlsplit(address if "://" in address else f"http://{address}")
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise NomadError(f"NOMAD_ADDR {address!r} is not an http(s) address such as https://nomad.example:4646")
    return f"{parts.scheme}://{parts.netloc}", parts.scheme == "https"


class NomadClient:
    """:class:`NomadAPI` over python-nomad. ``session`` lets tests inject a requests session."""

    def __init__(self, settings: NomadSettings, *, session: requests.Session | None = None) -> None:
        self.settings = settings
        address, _ = _split_address(settings.address)
        self._address = address
        verify: bool | str = settings.ca_cert if (settings.verify and settings.ca_cert) else settings.verify
        cert = (settings.client_cert, settings.client_key) if settings.client_cert and settings.client_key else ()
        self._nomad = nomad.Nomad(
            address=address,
            token=settings.token,
            namespace=settings.namespace,
            region=settings.region,
            timeout=settings.timeout,  # type: ignore[arg-type,unused-ignore]  # annotated int; requests takes float
            verify=verify,  # type: ignore[arg-type,unused-ignore]  # requests takes a CA bundle path too
            cert=cert,
            session=session,
        )
        # python-nomad falls back to NOMAD_TOKEN/NOMAD_REGION/NOMAD_NAMESPACE/NOMAD_CLIENT_*
        # whenever a value is None; the settings (which already read the environment) win.
        for endpoint in vars(self._nomad).values():
            if isinstance(endpoint, nomad.api.base.Requester):
                endpoint.token = settings.token
                endpoint.region = settings.region
                endpoint.namespace = settings.namespace
                endpoint.cert = cert

    # -- the one place where python-nomad and requests errors are translated --------------

    def _scrub(self, text: str) -> str:
        token = self.settings.token
        return text.replace(token, "<token>") if token else text

    def _call(
        self,
        what: str,
        endpoint: Any,
        *path: str,
        method: str = "get",
        params: dict[str, Any] | None = None,
        body: Any = None,
        wait: float = 0,
        missing_ok: bool = False,
    ) -> requests.Response | None:
        query: dict[str, Any] = {"namespace": self.settings.namespace, "region": self.settings.region}
        query.update(params or {})
        timeout = self.settings.timeout + wait * 1.1  # Nomad adds up to wait/16 of jitter
        try:
            response: requests.Response = endpoint.request(
                *path,
                method=method,
                params={k: v for k, v in query.items() if v is not None},
                json=body,
                timeout=timeout,
            )
            return response
        except nomad_exc.URLNotFoundNomadException as exc:
            if missing_ok:
                return None
            raise NomadError(
                self._http_message(what, exc, "not found: check the job ID, namespace and region"), status=404
            ) from None
        except nomad_exc.URLNotAuthorizedNomadException as exc:
            raise NomadError(
                self._http_message(
                    what, exc, "permission denied: check that NOMAD_TOKEN is set and its policy allows this"
                ),
                status=403,
            ) from None
        except nomad_exc.BadRequestNomadException as exc:
            raise NomadError(self._http_message(what, exc, "Nomad refused the request"), status=400) from None
        except nomad_exc.VariableConflict as exc:
            raise NomadError(self._http_message(what, exc, "conflict"), status=409) from None
        except nomad_exc.BaseNomadException as exc:
            if isinstance(exc.nomad_resp, requests.Response):
                status = exc.nomad_resp.status_code
                raise NomadError(
                    self._http_message(what, exc, f"Nomad answered HTTP {status}"), status=status
                ) from None
            raise NomadError(self._network_message(what, exc.nomad_resp)) from None
        except requests.RequestException as exc:  # python-nomad's TimeoutNomadException is one of these
            raise NomadError(self._network_message(what, exc)) from None

    def _http_message(self, what: str, exc: nomad_exc.BaseNomadException, summary: str) -> str:
        body = ""
        if isinstance(exc.nomad_resp, requests.Response):
            body = " ".join(exc.nomad_resp.text.split())[:400]
        detail = f": {body}" if body else ""
        return self._scrub(f"{what} at {self._address}: {summary}{detail}")

    def _network_message(self, what: str, error: object) -> str:
        if isinstance(error, requests.exceptions.SSLError):
            hint = "TLS verification failed: set NOMAD_CACERT to your CA bundle (NOMAD_SKIP_VERIFY only for testing)"
        elif isinstance(error, requests.exceptions.Timeout):
            hint = (
                f"no answer within the timeout ({self.settings.timeout:g}s): is Nomad overloaded or the address wrong?"
            )
        elif isinstance(error, requests.exceptions.ConnectionError):
            hint = "cannot connect: is Nomad running there? check NOMAD_ADDR"
        else:
            hint = f"request failed ({type(error).__name__})"
        return self._scrub(f"{what} at {self._address}: {hint}")

    @staticmethod
    def _index(response: requests.Response) -> int:
        try:
            return int(response.headers.get("X-Nomad-Index", "0"))
        except ValueError:
            return 0

    @staticmethod
    def _blocking(index: int, wait: float) -> dict[str, Any]:
        return {"index": index, "wait": f"{max(int(wait * 1000), 1)}ms"} if wait > 0 else {}

    @staticmethod
    def _json(response: requests.Response | None) -> Any:
        assert response is not None
        return response.json()

    # -- NomadAPI --------------------------------------------------------------------------

    def plan(self, job: api.Job) -> PlanResult:
        """Dry-run the job (``POST /v1/job/<id>/plan`` with a diff)."""
        body = {**job.body(), "Diff": True, "PolicyOverride": False}
        raw = self._json(
            self._call(f"planning job {job.ID}", self._nomad.job, job.ID, "plan", method="post", body=body)
        )
        diff = raw.get("Diff") or {}
        return PlanResult(
            job_modify_index=int(raw.get("JobModifyIndex") or 0),
            diff_type=str(diff.get("Type") or "None"),
            changes=_diff_lines(diff),
            desired_updates={
                str(g): {str(k): int(v) for k, v in (u or {}).items() if isinstance(v, int)}
                for g, u in ((raw.get("Annotations") or {}).get("DesiredTGUpdates") or {}).items()
            },
            failed_allocs=_failures(raw.get("FailedTGAllocs")),
            warnings=str(raw.get("Warnings") or ""),
        )

    def register(self, job: api.Job, *, enforce_index: int | None, preserve_counts: bool) -> RegisterResult:
        """Register the job; with ``enforce_index`` only if its modify index is still that (check-and-set)."""
        body: dict[str, Any] = {**job.body(), "PreserveCounts": preserve_counts}
        if enforce_index is not None:
            body.update(EnforceIndex=True, JobModifyIndex=enforce_index)
        raw = self._json(self._call(f"registering job {job.ID}", self._nomad.jobs, method="post", body=body))
        return RegisterResult(
            eval_id=str(raw.get("EvalID") or ""),
            job_modify_index=int(raw.get("JobModifyIndex") or 0),
            warnings=str(raw.get("Warnings") or ""),
        )

    def job(self, job_id: str) -> JobStatus | None:
        """The job's current version, or None if Nomad has no such job."""
        response = self._call(f"reading job {job_id}", self._nomad.job, job_id, missing_ok=True)
        if response is None:
            return None
        raw = response.json()
        return JobStatus(
            id=str(raw["ID"]),
            type=str(raw.get("Type", "")),
            status=str(raw.get("Status", "")),
            version=int(raw.get("Version") or 0),
            stable=bool(raw.get("Stable")),
            job_modify_index=int(raw.get("JobModifyIndex") or 0),
            counts={str(g["Name"]): int(g.get("Count") or 0) for g in raw.get("TaskGroups") or []},
        )

    def versions(self, job_id: str) -> list[JobVersion]:
        """Stored versions of the job, newest first."""
        raw = self._json(self._call(f"reading versions of job {job_id}", self._nomad.job, job_id, "versions"))
        return [
            JobVersion(
                version=int(v.get("Version") or 0),
                stable=bool(v.get("Stable")),
                submit_time_ns=int(v.get("SubmitTime") or 0),
            )
            for v in raw.get("Versions") or []
        ]

    def allocations(self, job_id: str, *, index: int = 0, wait: float = 0) -> Indexed[list[Allocation]]:
        """The job's allocations; with ``wait``, blocks until they change past ``index``."""
        response = self._call(
            f"listing allocations of job {job_id}",
            self._nomad.job,
            job_id,
            "allocations",
            params=self._blocking(index, wait),
            wait=wait,
        )
        assert response is not None
        return Indexed([_allocation(a) for a in response.json() or []], self._index(response))

    def evaluation(self, eval_id: str, *, index: int = 0, wait: float = 0) -> Indexed[Evaluation]:
        """One evaluation; with ``wait``, blocks until it changes past ``index``."""
        response = self._call(
            f"reading evaluation {eval_id}",
            self._nomad.evaluation,
            eval_id,
            params=self._blocking(index, wait),
            wait=wait,
        )
        assert response is not None
        return Indexed(_evaluation(response.json()), self._index(response))

    def latest_deployment(self, job_id: str, *, index: int = 0, wait: float = 0) -> Indexed[Deployment | None]:
        """The job's most recent deployment (None: the job has none, e.g. batch and system jobs)."""
        response = self._call(
            f"reading the deployment of job {job_id}",
            self._nomad.job,
            job_id,
            "deployment",
            params=self._blocking(index, wait),
            wait=wait,
        )
        assert response is not None
        raw = response.json()
        return Indexed(_deployment(raw) if raw else None, self._index(response))

    def promote(self, deployment_id: str) -> None:
        """Promote every canary of a deployment."""
        self._call(
            f"promoting deployment {deployment_id}",
            self._nomad.deployment,
            "promote",
            deployment_id,
            method="post",
            body={"DeploymentID": deployment_id, "All": True},
        )

    def revert(self, job_id: str, version: int, *, enforce_prior_version: int | None = None) -> RegisterResult:
        """Revert the job to a stored ``version``."""
        body: dict[str, Any] = {"JobID": job_id, "JobVersion": version}
        if enforce_prior_version is not None:
            body["EnforcePriorVersion"] = enforce_prior_version
        raw = self._json(
            self._call(
                f"reverting job {job_id} to version {version}",
                self._nomad.job,
                job_id,
                "revert",
                method="post",
                body=body,
            )
        )
        return RegisterResult(
            eval_id=str(raw.get("EvalID") or ""),
            job_modify_index=int(raw.get("JobModifyIndex") or 0),
            warnings=str(raw.get("Warnings") or ""),
        )

    def stop(self, job_id: str, *, purge: bool = False) -> str:
        """Stop (and with ``purge``, forget) the job; returns the evaluation ID."""
        raw = self._json(
            self._call(
                f"stopping job {job_id}", self._nomad.job, job_id, method="delete", params={"purge": str(purge).lower()}
            )
        )
        return str(raw.get("EvalID") or "")

    def scale(self, job_id: str, group: str, count: int, message: str) -> str:
        """Set a group's count through the scale endpoint (kept by later registers with PreserveCounts)."""
        body = {"Count": count, "Target": {"Group": group}, "Message": message, "PolicyOverride": False}
        raw = self._json(
            self._call(
                f"scaling job {job_id} group {group} to {count}",
                self._nomad.job,
                job_id,
                "scale",
                method="post",
                body=body,
            )
        )
        return str(raw.get("EvalID") or "")

    def dispatch(self, job_id: str, *, meta: Mapping[str, str], idempotency_token: str) -> DispatchResult:
        """Dispatch one child of the parameterized job ``job_id`` (``POST /v1/job/<id>/dispatch``).

        The body is ``{"Meta": meta}`` with no ``Payload`` (nomadwn's parameterized jobs
        forbid one). The token travels as the ``idempotency_token`` query parameter, where
        Nomad's HTTP API reads it into the request's ``WriteRequest.IdempotencyToken``.

        Nomad's semantics (``Job.Dispatch`` in ``nomad/job_endpoint.go``, 1.9): when any
        child of this parent that has not been garbage-collected carries the same token,
        whatever its status (running or already dead), Nomad creates nothing and returns
        that child's ID with an empty ``EvalID``. So a retry after a lost reply or a
        timeout never starts a second child; but a token must be new for every worker
        wanted, since a reused one keeps returning the old child until job GC removes it.
        Meta and payload are validated before the token is looked at.
        """
        if not idempotency_token:
            raise ValueError("dispatch needs an idempotency token, so that a retried dispatch starts no second child")
        raw = self._json(
            self._call(
                f"dispatching job {job_id}",
                self._nomad.job,
                job_id,
                "dispatch",
                method="post",
                params={"idempotency_token": idempotency_token},
                body={"Meta": dict(meta)},
            )
        )
        return DispatchResult(
            dispatched_job_id=str(raw.get("DispatchedJobID") or ""), eval_id=str(raw.get("EvalID") or "")
        )

    def dispatched(self, parent_id: str) -> list[DispatchedJob]:
        """The children dispatched from the parameterized job ``parent_id`` that Nomad still knows.

        Lists ``GET /v1/jobs?prefix=<parent>/dispatch-`` (a child's ID is
        ``<parent>/dispatch-<unix seconds>-<8 hex>``) and keeps the stubs whose
        ``ParentID`` is the parent, since another job's ID may share the prefix.
        """
        raw = self._json(
            self._call(
                f"listing the dispatched jobs of {parent_id}",
                self._nomad.jobs,
                params={"prefix": f"{parent_id}/dispatch-"},
            )
        )
        return [_dispatched_job(stub) for stub in raw or [] if stub.get("ParentID") == parent_id]
