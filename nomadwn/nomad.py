"""Nomad's HTTP API as nomadwn sees it: the :class:`NomadAPI` protocol, its value types and settings.

Client-free: nothing here imports python-nomad or requests, so the watcher, deploy,
status, the fakes and the autoscaler's loop depend on this module only. The one real
implementation, :class:`~nomadwn.nomad_client.NomadClient`, lives in
:mod:`nomadwn.nomad_client`; the ``parse_*`` functions here decode Nomad's JSON into the
value types, for it and for tests.
"""

from __future__ import annotations

import difflib
import json
import os
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any, Generic, Literal, Protocol, TypeVar
from urllib.parse import urlsplit

from nomadwn.env import env_bool, raise_problems
from nomadwn.errors import FieldProblem

if TYPE_CHECKING:
    from nomadwn import nomad_api as api

T = TypeVar("T")

# ---------------------------------------------------------------------------
# Settings


def address_problem(address: str) -> str | None:
    """Why ``address`` is not a Nomad HTTP address (``http(s)://host[:port]`` or ``host:port``), or None."""
    try:
        parts = urlsplit(address if "://" in address else f"http://{address}")
        port = parts.port
    except ValueError:
        parts, port = None, None
    if parts is None or parts.scheme not in ("http", "https") or not parts.hostname or port == 0:
        return f"{address!r} is not an http(s) address such as https://nomad.example:4646"
    if parts.path not in ("", "/") or parts.query or parts.fragment:
        return f"{address!r} has a path or query: give only scheme, host and port, such as https://nomad.example:4646"
    return None


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
        problems: list[FieldProblem] = []
        if "address" in values and (problem := address_problem(values["address"])):
            problems.append(FieldProblem("NOMAD_ADDR", problem))
        if env_bool(env, "NOMAD_SKIP_VERIFY", problems):
            values["verify"] = False
        raise_problems(problems)
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
class TemplateChange:
    """A ``template`` whose text the plan changes: the rendered HTCondor config, start script..."""

    task: str
    destination: str
    old: str
    new: str

    def diff(self, context: int = 1) -> list[str]:
        """A unified line diff of the template's text (no file headers)."""
        lines = difflib.unified_diff(self.old.splitlines(), self.new.splitlines(), n=context, lineterm="")
        return [line for line in lines if not line.startswith(("---", "+++"))]


@dataclass(frozen=True)
class PlanResult:
    """What ``nomad job plan`` would do.

    ``summary`` is Nomad's own plan headline (``command/job_plan.go``): the job, each
    task group with its update counts, each task with its annotation. ``changes`` is
    the field diff (``--verbose``), templates left out: ``templates`` has their texts.
    """

    job_modify_index: int
    diff_type: str
    changes: list[str]
    desired_updates: dict[str, dict[str, int]]
    failed_allocs: dict[str, PlacementFailure]
    warnings: str
    summary: list[str] = field(default_factory=list)
    templates: list[TemplateChange] = field(default_factory=list)

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


LogStream = Literal["stdout", "stderr"]


@dataclass(frozen=True)
class LogFrame:
    """One frame of a task's log stream (``GET /v1/client/fs/logs/<alloc>``).

    Nomad's API documentation (api-docs/client.mdx, "Stream Logs"): the body is a
    stream of frames with ``Data`` (base64 bytes), ``Offset`` (into the stream),
    ``File`` (``alloc/logs/<task>.<type>.<n>``) and ``FileEvent`` (``file deleted`` or
    ``file truncated``); an empty frame ``{}`` is a heartbeat. ``data`` holds the
    decoded bytes.
    """

    data: bytes
    file: str = ""
    offset: int = 0
    file_event: str = ""


class LogFrameDecoder:
    """Turns the bytes of Nomad's log stream, however they are chunked, into :class:`LogFrame` s.

    The frames are JSON objects one after another (Go's ``json.Encoder``), so each
    chunk is appended to a buffer and every complete object is taken off its front;
    heartbeats are dropped. A buffer that grows past ``limit`` without a complete
    object is not Nomad's stream: :class:`ValueError`.
    """

    def __init__(self, limit: int = 4 * 2**20) -> None:
        self._buffer = ""
        self._json = json.JSONDecoder()
        self._limit = limit

    def feed(self, chunk: bytes) -> list[LogFrame]:
        """The frames ``chunk`` completes."""
        import base64

        self._buffer += chunk.decode("ascii", errors="replace")  # base64 in JSON: ASCII only
        frames: list[LogFrame] = []
        while True:
            text = self._buffer.lstrip()
            if not text:
                self._buffer = ""
                return frames
            try:
                raw, end = self._json.raw_decode(text)
            except json.JSONDecodeError:
                if len(text) > self._limit:
                    raise ValueError("the log stream is not a stream of JSON frames") from None
                self._buffer = text
                return frames
            self._buffer = text[end:]
            if not isinstance(raw, dict):
                raise ValueError("the log stream is not a stream of JSON frames")
            data = base64.b64decode(raw.get("Data") or "")
            event = str(raw.get("FileEvent") or "")
            if data or event:
                frames.append(
                    LogFrame(
                        data=data, file=str(raw.get("File") or ""), offset=int(raw.get("Offset") or 0), file_event=event
                    )
                )


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

    def stop_allocation(self, alloc_id: str) -> str:
        """Stop one allocation (``POST /v1/allocation/<id>/stop``); returns the evaluation ID.

        Nomad then places a replacement, so the group keeps its count: a service or
        system worker comes back fresh, wherever the scheduler puts it.
        """
        ...

    def scale(self, job_id: str, group: str, count: int, message: str) -> str: ...

    def dispatch(self, job_id: str, *, meta: Mapping[str, str], idempotency_token: str) -> DispatchResult: ...

    def dispatched(self, parent_id: str) -> list[DispatchedJob]: ...

    def logs(
        self, alloc_id: str, task: str, *, stream: LogStream = "stdout", follow: bool = False, origin: str = "start"
    ) -> Iterator[LogFrame]:
        """A task's stdout or stderr from the start (``origin="end"``: from now), following it if asked."""
        ...


class NomadAcl(Protocol):
    """Nomad's ACL policy writes: only ``deploy --apply-policies`` needs them (a management token)."""

    def apply_acl_policy(self, name: str, rules: str, *, description: str, namespace: str, job_id: str) -> None: ...


# ---------------------------------------------------------------------------
# Decoding Nomad's JSON into the value types


def parse_failure(metric: Mapping[str, Any]) -> PlacementFailure:
    """An evaluation's ``AllocMetric`` for one group."""

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


def parse_failures(raw: Mapping[str, Any] | None) -> dict[str, PlacementFailure]:
    """``FailedTGAllocs``: the placement failure of each group."""
    return {str(group): parse_failure(metric) for group, metric in (raw or {}).items()}


_SUMMARY_MARKS = {"Added": "+", "Deleted": "-", "Edited": "+/-", "None": ""}
# The order Nomad prints a group's update counts in (command/job_plan.go formatTaskGroupDiff).
_UPDATE_ORDER = ("create", "destroy", "migrate", "canary", "in-place update", "create/destroy update", "ignore")


def plan_summary(diff: Mapping[str, Any]) -> list[str]:
    """Nomad's plan headline for a job diff: job, groups with update counts, tasks with annotations."""
    kind = str(diff.get("Type") or "None")
    if kind == "None":
        return []
    out = [f"{_SUMMARY_MARKS.get(kind, '+/-')} Job: {json.dumps(str(diff.get('ID', '')))}".lstrip()]
    for group in diff.get("TaskGroups") or []:
        updates = group.get("Updates") or {}
        counts = [f"{updates[k]} {k}" for k in _UPDATE_ORDER if updates.get(k)]
        counts += [f"{v} {k}" for k, v in sorted(updates.items()) if k not in _UPDATE_ORDER and v]
        mark = _SUMMARY_MARKS.get(str(group.get("Type") or "None"), "+/-") or " "
        line = f"{mark} Task Group: {json.dumps(str(group.get('Name', '')))}"
        out.append(line + (f" ({', '.join(counts)})" if counts else ""))
        for task in group.get("Tasks") or []:
            task_kind = str(task.get("Type") or "None")
            if task_kind == "None":
                continue
            notes = ", ".join(str(a) for a in task.get("Annotations") or [])
            tline = f"  {_SUMMARY_MARKS.get(task_kind, '+/-')} Task: {json.dumps(str(task.get('Name', '')))}"
            out.append(tline + (f" ({notes})" if notes else ""))
    return out


def template_changes(diff: Mapping[str, Any]) -> list[TemplateChange]:
    """The templates whose text a plan diff changes (``structs.templateDiffs``: "Template" objects)."""
    out: list[TemplateChange] = []
    for group in diff.get("TaskGroups") or []:
        for task in group.get("Tasks") or []:
            for obj in task.get("Objects") or []:
                if obj.get("Name") != "Template" or obj.get("Type", "None") == "None":
                    continue
                fields = {str(f.get("Name")): f for f in obj.get("Fields") or []}
                text = fields.get("EmbeddedTmpl")
                dest = fields.get("DestPath") or {}
                if text is None or text.get("Type", "None") == "None":
                    continue
                out.append(
                    TemplateChange(
                        task=str(task.get("Name", "")),
                        destination=str(dest.get("New") or dest.get("Old") or ""),
                        old=str(text.get("Old") or ""),
                        new=str(text.get("New") or ""),
                    )
                )
    return out


def diff_lines(diff: Mapping[str, Any], prefix: str = "") -> list[str]:
    """Flatten Nomad's plan diff into ``+/-/~ path: old => new`` lines (a template's text left out)."""
    marks = {"Added": "+", "Deleted": "-", "Edited": "~", "None": " "}
    lines: list[str] = []
    for f in diff.get("Fields") or []:
        if diff.get("Name") == "Template" and f.get("Name") == "EmbeddedTmpl":
            continue  # shown as a line diff (template_changes)
        if f.get("Type", "None") == "None":
            continue
        mark = marks.get(f.get("Type", ""), "~")
        lines.append(f"{mark} {prefix}{f.get('Name')}: {f.get('Old', '')!r} => {f.get('New', '')!r}")
    for obj in diff.get("Objects") or []:
        if obj.get("Type", "None") != "None":
            lines += diff_lines(obj, f"{prefix}{obj.get('Name')}.")
    for group in diff.get("TaskGroups") or []:
        if group.get("Type", "None") != "None":
            lines += diff_lines(group, f"{prefix}group[{group.get('Name')}].")
    for task in diff.get("Tasks") or []:
        if task.get("Type", "None") != "None":
            lines += diff_lines(task, f"{prefix}task[{task.get('Name')}].")
    return lines


def parse_allocation(raw: Mapping[str, Any]) -> Allocation:
    """One entry of ``GET /v1/job/<id>/allocations``."""
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


def parse_dispatched_job(stub: Mapping[str, Any]) -> DispatchedJob:
    """A job list stub of a dispatched child, its ``JobSummary`` summed over groups."""
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


def parse_evaluation(raw: Mapping[str, Any]) -> Evaluation:
    """``GET /v1/evaluation/<id>``."""
    return Evaluation(
        id=str(raw["ID"]),
        status=str(raw.get("Status", "")),
        status_description=str(raw.get("StatusDescription") or ""),
        triggered_by=str(raw.get("TriggeredBy") or ""),
        blocked_eval=str(raw.get("BlockedEval") or ""),
        failed_allocs=parse_failures(raw.get("FailedTGAllocs")),
    )


def parse_deployment(raw: Mapping[str, Any]) -> Deployment:
    """``GET /v1/job/<id>/deployment`` (not empty)."""
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
