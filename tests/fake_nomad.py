"""A stateful fake of Nomad's HTTP API that honours blocking queries.

No Nomad binary is needed: :class:`FakeNomad` serves the endpoints nomadwn uses from an
in-memory state store on ``127.0.0.1`` (stdlib ``ThreadingHTTPServer``), and a background
"scheduler and clients" thread walks evaluations, allocations and deployments through
their states with short, real-time delays (``step_delay``, 50 ms by default).

Shapes, status texts and error texts follow Nomad's HTTP API; see
``tests/fixtures/nomad/README.md`` for the documentation and source files each was
taken from.  In short:

* every change bumps one global Raft-like index; a GET answers with ``X-Nomad-Index``
  set as Nomad sets it (an object's ``ModifyIndex`` for single objects, the table
  index for lists) and ``?index=N&wait=D`` blocks until a change relevant to the query
  pushes that index past ``N`` or ``D`` (a Go duration, plus Nomad's wait/16 jitter)
  elapses - an unrelated change does not wake a query, but a list's table index may
  still have moved when it times out, exactly as in Nomad;
* a register creates a pending evaluation, the "scheduler" completes it one step later
  (placing allocations, or failing placement with ``FailedTGAllocs`` and a blocked
  evaluation) and the "clients" move allocations through pending -> running (->
  complete/failed) with task events, deployment health and deployment status;
* what happens to a job's allocations is chosen per job with :meth:`FakeNomad.script`
  (scenarios: ``healthy`` (default), ``bad_image``, ``unplaceable``, ``failing_check``,
  ``oom``, ``batch_complete``); a parameterized job's script also rules its children;
* ``POST /v1/job/<id>/dispatch`` creates a child job as Nomad's ``Job.Dispatch`` does
  (``<parent>/dispatch-<unix>-<8 hex>``, ``ParentID``, ``Dispatched``, merged meta,
  ``IdempotencyToken``), with its own evaluation and allocations; the parameterized
  parent itself never gets an evaluation or an allocation;
* hooks for tests that drive real workers: ``on_running`` and ``on_stop`` are called
  with the allocation stub when an allocation starts running or Nomad stops it (in
  their own thread, without the fake's lock), and :meth:`FakeNomad.complete_alloc`
  ends an allocation as if its process had exited by itself.

Use it as a context manager::

    with FakeNomad() as fake:
        fake.script("glasgow-elastic", "bad_image")
        requests.post(f"{fake.address}/v1/jobs", json={"Job": job})
        fake.settle()
"""

from __future__ import annotations

import base64
import contextlib
import copy
import functools
import heapq
import itertools
import json
import math
import queue
import random
import re
import socket
import threading
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any, ClassVar, NamedTuple, cast
from urllib.parse import parse_qsl, unquote, urlsplit

Json = dict[str, Any]
JobKey = tuple[str, str]  # (namespace, job ID)

SCENARIOS: tuple[str, ...] = ("healthy", "bad_image", "unplaceable", "failing_check", "oom", "batch_complete")
ZERO_TIME = "0001-01-01T00:00:00Z"  # Go's zero time.Time, as Nomad's JSON shows it
ENFORCE_INDEX_PREFIX = "Enforcing job modify index"  # nomad/job_endpoint.go RegisterEnforceIndexErrPrefix
MAX_QUERY_TIME = 300.0  # nomad/rpc.go: blocking queries are capped (and default) to 5 minutes
JITTER_FRACTION = 16  # structs.JitterFraction: up to wait/16 is added to a blocking wait
TRACKED_VERSIONS = 6  # structs.JobTrackedVersions
LEADER = "127.0.0.1:4647"

# api/evaluations.go EvaluationStub, as ?related=true lists them.
_EVAL_STUB_FIELDS = (
    "ID",
    "Priority",
    "Type",
    "TriggeredBy",
    "Namespace",
    "JobID",
    "NodeID",
    "DeploymentID",
    "Status",
    "StatusDescription",
    "WaitUntil",
    "NextEval",
    "PreviousEval",
    "BlockedEval",
    "CreateIndex",
    "ModifyIndex",
    "CreateTime",
    "ModifyTime",
)

# Fields the server sets; a re-submitted job that differs only in these is not a new version
# (structs.Job.SpecChanged).
SERVER_SET_FIELDS = frozenset(
    {
        "Status",
        "StatusDescription",
        "Stable",
        "Version",
        "CreateIndex",
        "ModifyIndex",
        "JobModifyIndex",
        "SubmitTime",
        "NomadTokenID",
        "ConsulToken",
        "VaultToken",
    }
)

# Group fields whose change Nomad applies in place (everything else in a group forces a
# destructive create/destroy update of its allocations).
_IN_PLACE_GROUP_FIELDS = frozenset(
    {"Count", "Update", "Scaling", "Migrate", "ReschedulePolicy", "RestartPolicy", "Affinities", "Spreads"}
)

_DEFAULT_UPDATE: Json = {
    "Stagger": 30_000_000_000,
    "MaxParallel": 1,
    "HealthCheck": "checks",
    "MinHealthyTime": 10_000_000_000,
    "HealthyDeadline": 300_000_000_000,
    "ProgressDeadline": 600_000_000_000,
    "AutoRevert": False,
    "AutoPromote": False,
    "Canary": 0,
}

_JOB_DEFAULTS: Json = {
    "Region": "global",
    "ParentID": "",
    "Type": "service",
    "Priority": 50,
    "AllAtOnce": False,
    "Datacenters": ["*"],
    "NodePool": "default",
    "Constraints": None,
    "Affinities": None,
    "Spreads": None,
    "TaskGroups": [],
    "Update": None,
    "Multiregion": None,
    "Periodic": None,
    "ParameterizedJob": None,
    "Dispatched": False,
    "DispatchIdempotencyToken": "",
    "Payload": None,
    "Meta": None,
    "ConsulToken": "",
    "ConsulNamespace": "",
    "VaultToken": "",
    "VaultNamespace": "",
    "NomadTokenID": "",
    "Stop": False,
}


# ---------------------------------------------------------------------------
# Small helpers


def parse_go_duration(text: str) -> float:
    """Seconds in a Go ``time.ParseDuration`` string ("5s", "300ms", "1m30s", "0")."""
    s = text.strip()
    sign = 1.0
    if s[:1] in ("+", "-"):
        sign = -1.0 if s[0] == "-" else 1.0
        s = s[1:]
    if s == "0":
        return 0.0
    if not s:
        raise ValueError(f"time: invalid duration {text!r}")
    total, pos = 0.0, 0
    while pos < len(s):
        match = _DURATION_PART.match(s, pos)
        if match is None:
            raise ValueError(f"time: invalid duration {text!r}")
        total += float(match.group(1)) * _DURATION_UNITS[match.group(2)]
        pos = match.end()
    return sign * total


_DURATION_PART = re.compile(r"(\d+(?:\.\d*)?|\.\d+)(ns|us|µs|μs|ms|s|m|h)")
_DURATION_UNITS = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "μs": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}


def go_duration(nanoseconds: int) -> str:
    """Format nanoseconds as Go's ``time.Duration.String`` does ("15s", "30m0s", "1h0m0s")."""
    if nanoseconds == 0:
        return "0s"
    if nanoseconds < 1_000_000_000:
        return f"{nanoseconds / 1_000_000:g}ms"
    hours, rest = divmod(nanoseconds, 3_600_000_000_000)
    minutes, rest = divmod(rest, 60_000_000_000)
    seconds = f"{rest / 1e9:.9f}".rstrip("0").rstrip(".")
    if hours:
        return f"{hours}h{minutes}m{seconds}s"
    if minutes:
        return f"{minutes}m{seconds}s"
    return f"{seconds}s"


def _now_rfc3339() -> str:
    return datetime.now(UTC).isoformat().replace("+00:00", "Z")


def _rfc3339_in(seconds: float) -> str:
    return datetime.fromtimestamp(time.time() + seconds, UTC).isoformat().replace("+00:00", "Z")


def _new_id() -> str:
    return str(uuid.uuid4())


def _name_index(alloc: Mapping[str, Any]) -> int:
    match = re.search(r"\[(\d+)\]$", str(alloc.get("Name", "")))
    return int(match.group(1)) if match else 0


def _multierror(*errors: str) -> str:
    """Format errors as hashicorp/go-multierror does."""
    points = "\n".join(f"\t* {e}" for e in errors)
    noun = "error" if len(errors) == 1 else "errors"
    return f"{len(errors)} {noun} occurred:\n{points}\n\n"


def _spec(job: Mapping[str, Any]) -> Json:
    return {k: v for k, v in job.items() if k not in SERVER_SET_FIELDS}


def _group(job: Mapping[str, Any], name: str) -> Json | None:
    for tg in job.get("TaskGroups") or []:
        if tg.get("Name") == name:
            return cast(Json, tg)
    return None


def _update_strategy(job: Mapping[str, Any], group: str) -> Json:
    tg = _group(job, group) or {}
    merged = dict(_DEFAULT_UPDATE)
    merged.update({k: v for k, v in (tg.get("Update") or {}).items() if v is not None})
    return merged


def _destructive(old_job: Mapping[str, Any], new_job: Mapping[str, Any], group: str) -> bool:
    old, new = _group(old_job, group), _group(new_job, group)
    if old is None or new is None:
        return True
    strip = _IN_PLACE_GROUP_FIELDS
    if {k: v for k, v in old.items() if k not in strip} != {k: v for k, v in new.items() if k not in strip}:
        return True
    return old_job.get("Meta") != new_job.get("Meta")


def _is_parameterized(job: Mapping[str, Any]) -> bool:
    """structs.Job.IsParameterized: a dispatched child keeps the block but is not parameterized."""
    return job.get("ParameterizedJob") is not None and not job.get("Dispatched")


def _body_field(body: Mapping[str, Any], name: str) -> Any:
    """A body field as Go's encoding/json finds it: the exact name, else a case-insensitive match."""
    if name in body:
        return body[name]
    return next((v for k, v in body.items() if k.lower() == name.lower()), None)


def _go_json_kind(value: Any) -> str:
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, int | float):
        return "number"
    if isinstance(value, dict):
        return "object"
    if isinstance(value, list):
        return "array"
    return "string"


def snappy_literal(data: bytes) -> bytes:
    """Snappy block encoding with literals only: valid for any snappy decoder.

    Nomad stores a dispatched job's payload ``snappy.Encode``-d; an empty payload is the
    single byte 0 (``"AA=="`` in JSON) either way, longer ones may differ in bytes from
    Go's encoder, which also emits copies.
    """
    out = bytearray()
    n = len(data)
    while True:
        byte, n = n & 0x7F, n >> 7
        out.append(byte | (0x80 if n else 0))
        if not n:
            break
    for start in range(0, len(data), 65536):
        chunk = data[start : start + 65536]
        m = len(chunk) - 1
        if m < 60:
            out.append(m << 2)
        elif m < 256:
            out += bytes([60 << 2, m])
        else:
            out += bytes([61 << 2]) + m.to_bytes(2, "little")
        out += chunk
    return bytes(out)


DISPATCH_PAYLOAD_LIMIT = 16 * 1024  # nomad/job_endpoint.go DispatchPayloadSizeLimit


def _alloc_terminal(alloc: Mapping[str, Any]) -> bool:
    """structs.Allocation.TerminalStatus."""
    return alloc.get("DesiredStatus") in ("stop", "evict") or alloc.get("ClientStatus") in (
        "complete",
        "failed",
        "lost",
    )


def _held_failed(alloc: Mapping[str, Any], tg: Mapping[str, Any]) -> bool:
    """A failed allocation that its group's reschedule policy will not replace (attempts 0, not unlimited)."""
    if alloc.get("ClientStatus") != "failed" or alloc.get("DesiredStatus") != "run" or alloc.get("NextAllocation"):
        return False
    policy = tg.get("ReschedulePolicy") or {}
    return not policy.get("Unlimited", True) and int(policy.get("Attempts") or 0) == 0


def canonicalize_job(raw: Mapping[str, Any], namespace: str, version: tuple[int, ...] = (1, 10, 5)) -> Json:
    """Fill in the defaults Nomad's API canonicalisation fills in (a modest subset).

    ``api/jobs.go`` ``Job.Canonicalize``: a job with no update block gets
    ``DefaultUpdateStrategy`` when it is a service job, and from 1.11 on also when it
    is a system job; ``api/tasks.go`` ``TaskGroup.Canonicalize`` merges it into each
    group. Up to 1.10 a system job without an update block has none.
    """
    job: Json = copy.deepcopy(dict(raw))
    for key, value in _JOB_DEFAULTS.items():
        if job.get(key) is None:
            job[key] = copy.deepcopy(value)
    job["Namespace"] = namespace
    if not job.get("Name"):
        job["Name"] = job["ID"]
    job["ConsulToken"] = ""
    job["VaultToken"] = ""
    job_update = job.get("Update") or {}
    for tg in job["TaskGroups"]:
        if tg.get("Count") is None:
            scaling_min = (tg.get("Scaling") or {}).get("Min")
            tg["Count"] = scaling_min if scaling_min is not None else 1
        defaulted = job["Type"] == "service" or (job["Type"] == "system" and version >= (1, 11))
        if job["Type"] in ("service", "system") and (defaulted or job_update or tg.get("Update")):
            merged = dict(_DEFAULT_UPDATE)
            merged.update({k: v for k, v in job_update.items() if v is not None})
            merged.update({k: v for k, v in (tg.get("Update") or {}).items() if v is not None})
            tg["Update"] = merged
    # ApiJobToStructJob keeps only Stagger and MaxParallel of a job-level update block
    # (structs.Job.Update is a value, so it is always there, zeroed).
    zeroed: Json = {k: type(v)() for k, v in _DEFAULT_UPDATE.items()}
    if not job.get("Update") and job["Type"] == "system" and version >= (1, 11):
        job_update = dict(_DEFAULT_UPDATE)
    if job_update.get("MaxParallel"):
        zeroed.update(
            Stagger=job_update.get("Stagger") or _DEFAULT_UPDATE["Stagger"], MaxParallel=job_update["MaxParallel"]
        )
    job["Update"] = zeroed
    return job


# ---------------------------------------------------------------------------
# Task events (api/tasks.go TaskEvent; display messages as structs.TaskEvent.PopulateEventDisplayMessage)


def task_event(
    type_: str,
    *,
    at_ns: int | None = None,
    message: str = "",
    driver_error: str = "",
    driver_message: str = "",
    restart_reason: str = "",
    exit_code: int = 0,
    signal: int = 0,
    fails_task: bool = False,
    kill_timeout: int = 0,
    kill_error: str = "",
    start_delay: int = 0,
    details: Mapping[str, str] | None = None,
) -> Json:
    """One TaskEvent with every field Nomad serialises, and its ``DisplayMessage``."""
    event: Json = {
        "Type": type_,
        "Time": at_ns if at_ns is not None else time.time_ns(),
        "DisplayMessage": "",
        "Details": dict(details or {}),
        "Message": message,
        "FailsTask": fails_task,
        "RestartReason": restart_reason,
        "SetupError": "",
        "DriverError": driver_error,
        "DriverMessage": driver_message,
        "ExitCode": exit_code,
        "Signal": signal,
        "KillReason": "",
        "KillTimeout": kill_timeout,
        "KillError": kill_error,
        "StartDelay": start_delay,
        "DownloadError": "",
        "ValidationError": "",
        "DiskLimit": 0,
        "DiskSize": 0,
        "FailedSibling": "",
        "VaultError": "",
        "TaskSignalReason": "",
        "TaskSignal": "",
        "GenericSource": "",
    }
    event["DisplayMessage"] = _display_message(event)
    return event


def _display_message(e: Mapping[str, Any]) -> str:
    kind = e["Type"]
    if kind == "Received":
        return "Task received by client"
    if kind == "Started":
        return "Task started by client"
    if kind == "Driver":
        return str(e["DriverMessage"])
    if kind == "Driver Failure":
        return str(e["DriverError"] or "Failed to start task")
    if kind == "Terminated":
        parts = [f"Exit Code: {e['ExitCode']}"]
        if e["Signal"]:
            parts.append(f"Signal: {e['Signal']}")
        if e["Message"]:
            parts.append(f"Exit Message: {json.dumps(e['Message'])}")
        return ", ".join(parts)
    if kind == "Restarting":
        delay = f"Task restarting in {go_duration(int(e['StartDelay']))}"
        return f"{e['RestartReason']} - {delay}" if e["RestartReason"] else delay
    if kind == "Not Restarting":
        return str(e["RestartReason"] or "Task exceeded restart policy")
    if kind == "Restart Signaled":
        return str(e["RestartReason"] or "Task signaled to restart")
    if kind == "Killing":
        timeout = int(e["KillTimeout"])
        return f"Sent interrupt. Waiting {go_duration(timeout)} before force killing" if timeout else "Sent interrupt"
    if kind == "Killed":
        return str(e["KillError"] or "Task successfully killed")
    return str(e["Message"])


# ---------------------------------------------------------------------------
# Public value types


@dataclass(frozen=True)
class FakeNode:
    """A client node of the fake cluster. ``datacenter=None`` matches any job datacenter."""

    id: str
    name: str
    datacenter: str | None = None
    node_class: str = ""
    node_pool: str = "default"
    address: str = "127.0.0.1"


def default_nodes() -> list[FakeNode]:
    """Two client nodes, as the fake starts with unless told otherwise."""
    return [FakeNode(id=_new_id(), name=f"nomad-client-{i}", address=f"10.0.0.{i}") for i in (1, 2)]


class RecordedRequest(NamedTuple):
    """A request the fake received: for assertions on what a client sent."""

    method: str
    path: str
    query: dict[str, str]
    body: Any


@dataclass(frozen=True)
class Scenario:
    """What the fake's clients do with a job's allocations (see :meth:`FakeNomad.script`)."""

    name: str = "healthy"
    params: Mapping[str, Any] = field(default_factory=dict)
    version: int | None = None
    affected: int | None = None
    delay: float | None = None
    serial: int = 0


HEALTHY = Scenario()


class NomadAPIError(Exception):
    """An HTTP error the fake answers with (plain-text body, as Nomad writes errors)."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


@dataclass
class _Reply:
    status: int = 200
    body: Any = None
    text: str | None = None
    index: int | None = None
    query_meta: bool = False
    scopes: tuple[str, ...] = ()
    stream: Callable[[], Any] | None = None  # a streamed body: yields byte chunks (chunked encoding)


@dataclass
class _Fault:
    kind: str  # "fail" or "hang"
    remaining: int
    status: int = 500
    message: str = ""
    seconds: float | None = None
    method: str | None = None
    path: str | None = None

    def matches(self, method: str, path: str) -> bool:
        if self.method is not None and self.method.upper() != method:
            return False
        return self.path is None or path.startswith(self.path)


@dataclass
class _GroupPlan:
    """What the fake scheduler does with one task group (its reconciler's result)."""

    desired: int = 0
    place: list[tuple[int, FakeNode, bool]] = field(default_factory=list)  # (name index, node, canary)
    stop: list[Json] = field(default_factory=list)
    destructive: list[Json] = field(default_factory=list)
    inplace: list[Json] = field(default_factory=list)
    ignore: list[Json] = field(default_factory=list)
    new_place: int = 0
    canaries: int = 0
    limited: bool = False  # a system job's max_parallel held some updates back

    def annotations(self) -> dict[str, int]:
        """plan.Annotations.DesiredTGUpdates[group] (structs.DesiredUpdates)."""
        return {
            "Ignore": len(self.ignore),
            "Place": self.new_place,
            "Migrate": 0,
            "Stop": len(self.stop),
            "InPlaceUpdate": len(self.inplace),
            "DestructiveUpdate": len(self.destructive),
            "Canary": self.canaries,
            "Preemptions": 0,
            "Reconnect": 0,
            "Disconnect": 0,
            "RescheduleNow": 0,
            "RescheduleLater": 0,
        }

    @property
    def changes(self) -> bool:
        return bool(self.place or self.inplace)


# ---------------------------------------------------------------------------
# HTTP plumbing


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False

    def __init__(self, fake: FakeNomad) -> None:
        self.fake = fake
        self.connections: set[socket.socket] = set()
        self.connections_lock = threading.Lock()
        super().__init__(("127.0.0.1", 0), _Handler)

    def process_request(self, request: Any, client_address: Any) -> None:
        with self.connections_lock:
            self.connections.add(request)
        super().process_request(request, client_address)

    def shutdown_request(self, request: Any) -> None:
        with self.connections_lock:
            self.connections.discard(request)
        super().shutdown_request(request)

    def drop_connections(self) -> None:
        """Close kept-alive client connections, so no request is served after close()."""
        with self.connections_lock:
            connections = list(self.connections)
        for conn in connections:
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "FakeNomad/1.0"

    def log_message(self, format: str, *args: Any) -> None:
        return

    def do_GET(self) -> None:
        self._handle("GET")

    def do_PUT(self) -> None:
        self._handle("PUT")

    def do_POST(self) -> None:
        self._handle("POST")

    def do_DELETE(self) -> None:
        self._handle("DELETE")

    def _handle(self, method: str) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        fake = cast(_Server, self.server).fake
        answer = fake._serve(method, self.path, {k.lower(): v for k, v in self.headers.items()}, raw)
        if answer is None:  # the fake is closing, or a hang ended it: drop the connection
            self.close_connection = True
            return
        status, headers, payload = answer
        self.send_response(status)
        for name, value in headers.items():
            self.send_header(name, value)
        if isinstance(payload, bytes):
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)
            return
        # A streamed body (the log stream): chunked, until the stream ends or the client goes.
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        try:
            for chunk in payload:
                if chunk:
                    self.wfile.write(b"%x\r\n%s\r\n" % (len(chunk), chunk))
                    self.wfile.flush()
            self.wfile.write(b"0\r\n\r\n")
        except (BrokenPipeError, ConnectionResetError):
            pass
        self.close_connection = True


# ---------------------------------------------------------------------------
# The fake


class FakeNomad:
    """A stateful fake Nomad agent on 127.0.0.1 (see the module docstring).

    ``token``: if set, requests need ``X-Nomad-Token`` (or ``Authorization: Bearer``) with
    it; without a token Nomad answers 403 "Permission denied", with another 403 "ACL token
    not found". ``step_delay``: seconds between scripted state transitions.

    ``on_running`` is called with an allocation's stub (``ID``, ``JobID``, ``TaskGroup``,
    ``Name``, ...) when it starts running; ``on_stop`` when Nomad stops it (desired status
    ``stop``: scale-in, job stop, replacement). Both run in one "fake-nomad-hooks" thread,
    in order and without the fake's lock, so they may call the fake's HTTP API or
    :meth:`complete_alloc`, but not :meth:`settle` (which waits for them). An exception
    in a hook is reported like a scheduler error.

    ``version`` (default ``"1.10.5"``) is the Nomad version the fake behaves as, where
    versions differ (each citing the source it follows):

    * system rollouts: up to 1.10 paced only by the job's ``max_parallel`` and
      ``stagger`` (a ``rolling-update`` evaluation ``stagger`` later, whatever the health
      of the batch; no deployment; ``scheduler/scheduler_system.go`` at v1.10.5); from
      1.11 a deployment, the default update strategy even without an update block
      (``api/jobs.go`` ``Canonicalize``), the next node only once one is healthy
      (``evictAndPlace`` at v2.0.5), failing and auto-reverting like a service's; canaries
      as a percentage of the nodes to update, waiting for promotion (:meth:`_system_canaries`);
    * scale-in with failed allocations that are not rescheduled: see
      :meth:`_reconcile_slots` (2.0.4 changed it).

    Simpler than Nomad: services roll out all at once (no ``max_parallel`` pacing),
    failed service allocations are replaced at once (no reschedule delay).
    """

    def __init__(
        self,
        *,
        nodes: Sequence[FakeNode] | None = None,
        token: str | None = None,
        step_delay: float = 0.05,
        region: str = "global",
        jitter: bool = True,
        on_running: Callable[[Json], None] | None = None,
        on_stop: Callable[[Json], None] | None = None,
        max_kill_timeout: float = 30.0,
        version: str = "1.10.5",
    ) -> None:
        self.version = tuple(int(part) for part in version.split("."))
        self.step_delay = step_delay
        self.max_kill_timeout = max_kill_timeout  # the clients' max_kill_timeout, seconds (Nomad's default 30 s)
        self.region = region
        self.token = token
        self.jitter = jitter
        self._nodes: list[FakeNode] = list(nodes) if nodes is not None else default_nodes()
        self._lock = threading.RLock()
        self._cond = threading.Condition(self._lock)
        self._timer_cv = threading.Condition(self._lock)
        self._index = 10
        self._tables: dict[str, int] = dict.fromkeys(
            ("jobs", "job_version", "job_summary", "evals", "allocs", "deployment", "scaling_event"), 1
        )
        self._tables["nodes"] = 5
        self._scopes: dict[str, int] = {}
        self._jobs: dict[JobKey, Json] = {}
        self._versions: dict[JobKey, list[Json]] = {}
        self._summary_index: dict[JobKey, tuple[int, int]] = {}  # (CreateIndex, ModifyIndex)
        self._allocs: dict[str, Json] = {}
        self._evals: dict[str, Json] = {}
        self._deploys: dict[str, Json] = {}
        self._scaling: dict[JobKey, dict[str, list[Json]]] = {}
        self._scripts: dict[JobKey, Scenario] = {}
        self._affected: dict[int, int] = {}
        self._alloc_outcome: dict[str, Scenario] = {}
        self._serials = itertools.count(1)
        self._timers: list[tuple[float, int, Callable[[], None]]] = []
        self._timer_seq = itertools.count()
        self._requests: list[RecordedRequest] = []
        self._faults: list[_Fault] = []
        self._errors: list[BaseException] = []
        self._closing = False
        self._closed = threading.Event()
        self._server: _Server | None = None
        self._threads: list[threading.Thread] = []
        self._on_running = on_running
        self._on_stop = on_stop
        self._hooks: queue.SimpleQueue[tuple[Callable[[Json], None], Json] | None] = queue.SimpleQueue()
        self._hooks_pending = 0
        self.acl_policies: dict[str, Json] = {}  # name -> the policy as applied (ACLs are not enforced)
        self._task_logs: dict[tuple[str, str, str], bytearray] = {}  # (alloc, task, stdout|stderr) -> bytes

    # -- lifecycle -----------------------------------------------------------------------

    def start(self) -> FakeNomad:
        """Bind a free port on 127.0.0.1 and start serving."""
        if self._server is not None:
            return self
        self._server = _Server(self)
        serve = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.01}, daemon=True)
        timers = threading.Thread(target=self._timer_loop, name="fake-nomad-scheduler", daemon=True)
        hooks = threading.Thread(target=self._hook_loop, name="fake-nomad-hooks", daemon=True)
        self._threads = [serve, timers, hooks]
        for thread in self._threads:
            thread.start()
        return self

    def close(self) -> None:
        """Stop serving; blocked queries and hung requests end at once."""
        with self._lock:
            if self._closing:
                return
            self._closing = True
            self._cond.notify_all()
            self._timer_cv.notify_all()
        self._hooks.put(None)
        self._closed.set()
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server.drop_connections()
        for thread in self._threads:
            thread.join(timeout=5)

    def __enter__(self) -> FakeNomad:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()
        if exc_type is None and self._errors:
            raise RuntimeError(f"FakeNomad's scheduler failed: {self._errors[0]!r}") from self._errors[0]

    @property
    def port(self) -> int:
        """The port the fake listens on."""
        if self._server is None:
            raise RuntimeError("FakeNomad is not started")
        return int(self._server.server_address[1])

    @property
    def address(self) -> str:
        """``http://127.0.0.1:PORT``, for NOMAD_ADDR."""
        return f"http://127.0.0.1:{self.port}"

    # -- test controls -------------------------------------------------------------------

    def script(
        self,
        job_id: str,
        scenario: str = "healthy",
        *,
        namespace: str = "default",
        version: int | None = None,
        affected: int | None = None,
        delay: float | None = None,
        **params: Any,
    ) -> None:
        """Choose what happens to ``job_id``'s next placements (until scripted again).

        ``version``: only allocations of that job version follow the scenario (others are
        healthy). ``affected``: only the first N allocations do. ``delay``: seconds per
        client step for this job's allocations (the scheduler keeps ``step_delay``).
        ``params`` by scenario - bad_image: ``image``, ``message``; failing_check:
        ``check``; oom: ``exit_code``; batch_complete: ``exit_code``; unplaceable:
        ``constraint``, ``dimension``, ``filtered``, ``exhausted``, ``class_filtered``,
        ``progress_deadline`` (seconds until the deployment fails).

        A parameterized job's script applies to the children dispatched from it (unless
        a child is scripted by its own ID); ``affected`` counts across them.
        """
        if scenario not in SCENARIOS:
            raise ValueError(f"unknown scenario {scenario!r}; choose one of {', '.join(SCENARIOS)}")
        with self._lock:
            self._scripts[(namespace, job_id)] = Scenario(
                scenario, dict(params), version, affected, delay, next(self._serials)
            )

    def fail_alloc(self, alloc_id: str, event_type: str = "Driver Failure", message: str = "") -> None:
        """Fail an allocation now, as its client would: one task event, ClientStatus failed."""
        with self._lock:
            alloc = self._allocs[alloc_id]
            idx = self._next()
            message = message or "failed by the test"
            for state in (alloc.get("TaskStates") or {}).values():
                state["Events"].append(
                    task_event(
                        event_type,
                        message=message,
                        driver_error=message if event_type == "Driver Failure" else "",
                        restart_reason=message if event_type in ("Not Restarting", "Restart Signaled") else "",
                        fails_task=True,
                    )
                )
                state.update(State="dead", Failed=True, FinishedAt=_now_rfc3339())
            alloc["ClientStatus"] = "failed"
            alloc["ClientDescription"] = "Failed tasks"
            self._save_alloc(alloc, idx)
            if alloc.get("DeploymentID"):
                self._set_health(alloc_id, healthy=False, idx=idx)
            self._refresh_status(self._alloc_key(alloc), idx)

    def complete_alloc(self, alloc_id: str, exit_code: int = 0) -> None:
        """End a running allocation's tasks as if their process exited by itself (e.g. idle shutdown).

        Exit code 0 leaves it ``complete``, anything else ``failed``. The fake neither
        restarts nor reschedules it (Nomad would restart a service job's task under its
        restart policy). Raises ValueError for an unknown allocation or one that is not
        running.
        """
        with self._lock:
            alloc = self._allocs.get(alloc_id)
            if alloc is None:
                raise ValueError(f"no allocation {alloc_id!r}")
            if alloc["ClientStatus"] != "running":
                raise ValueError(f"allocation {alloc_id} is {alloc['ClientStatus']}, not running")
            self._tasks_exited(alloc, exit_code)

    def set_count(self, job_id: str, group: str, count: int, *, namespace: str = "default") -> int:
        """Change a group's count out of band (as an autoscaler or operator would); returns the JobModifyIndex."""
        with self._lock:
            reply = self._scale((namespace, job_id), {"Count": count, "Target": {"Group": group}}, check_deploy=False)
            return int(reply["JobModifyIndex"])

    def add_node(self, node: FakeNode) -> None:
        """Add a client node; blocked evaluations are re-run (with the job's current script)."""
        with self._lock:
            self._nodes.append(node)
            idx = self._next()
            self._touch(idx, tables=("nodes",), scopes=("nodes",))
            for ev in list(self._evals.values()):
                if ev["Status"] == "blocked":
                    ev["Status"] = "pending"
                    self._save_eval(ev, idx)
                    self._schedule(self.step_delay, functools.partial(self._process_eval, ev["ID"]))

    def fail_next(
        self,
        count: int = 1,
        *,
        status: int = 500,
        message: str = "rpc error: No cluster leader",
        method: str | None = None,
        path: str | None = None,
    ) -> None:
        """Answer the next ``count`` matching requests with ``status`` and ``message`` (unprocessed)."""
        with self._lock:
            self._faults.append(_Fault("fail", count, status=status, message=message, method=method, path=path))

    def hang_next(
        self, count: int = 1, *, seconds: float | None = None, method: str | None = None, path: str | None = None
    ) -> None:
        """Hold the next ``count`` matching requests for ``seconds`` (None: until close), then drop them."""
        with self._lock:
            self._faults.append(_Fault("hang", count, seconds=seconds, method=method, path=path))

    @property
    def requests(self) -> list[RecordedRequest]:
        """Every request received so far, oldest first."""
        with self._lock:
            return list(self._requests)

    def requests_to(self, method: str, path: str) -> list[RecordedRequest]:
        """The recorded requests with this method and exact path."""
        return [r for r in self.requests if r.method == method.upper() and r.path == path]

    def clear_requests(self) -> None:
        with self._lock:
            self._requests.clear()

    @property
    def index(self) -> int:
        """The current Raft index."""
        with self._lock:
            return self._index

    @property
    def nodes(self) -> list[FakeNode]:
        with self._lock:
            return list(self._nodes)

    @property
    def errors(self) -> list[BaseException]:
        """Exceptions raised by scripted transitions (a bug in the fake); ``__exit__`` re-raises the first."""
        with self._lock:
            return list(self._errors)

    def job(self, job_id: str, *, namespace: str = "default") -> Json | None:
        """A copy of the job as stored, or None."""
        with self._lock:
            job = self._jobs.get((namespace, job_id))
            return copy.deepcopy(job) if job is not None else None

    def allocations(self, job_id: str, *, namespace: str = "default") -> list[Json]:
        """Copies of the job's (current incarnation's) allocations, full form, oldest first."""
        with self._lock:
            return [copy.deepcopy(a) for a in self._job_allocs((namespace, job_id))]

    def evaluations(self, job_id: str, *, namespace: str = "default") -> list[Json]:
        with self._lock:
            return [copy.deepcopy(e) for e in self._evals.values() if self._eval_key(e) == (namespace, job_id)]

    def deployments(self, job_id: str, *, namespace: str = "default") -> list[Json]:
        """Copies of the job's deployments, newest first."""
        with self._lock:
            return [copy.deepcopy(d) for d in self._job_deploys((namespace, job_id))]

    def service_registrations(self, name: str) -> list[Json]:
        """What this cluster's clients have registered in Consul for service ``name``: one entry per
        running allocation whose task defines it, as ``/v1/health/service/<name>`` lists them.

        The service ID is Nomad's (``client/serviceregistration/id.go`` ``MakeAllocServiceID``:
        ``_nomad-task-<alloc>-<task>-<service>-<port label>``); each check is passing, or
        critical when the allocation follows the ``failing_check`` scenario.
        """
        out: list[Json] = []
        with self._lock:
            for alloc in self._allocs.values():
                if alloc["DesiredStatus"] != "run" or alloc["ClientStatus"] != "running":
                    continue
                node = next((n for n in self._nodes if n.id == alloc["NodeID"]), None)
                failing = self._alloc_outcome.get(alloc["ID"], HEALTHY).name == "failing_check"
                for task in self._tasks(alloc):
                    for service in task.get("Services") or []:
                        if service.get("Name") != name:
                            continue
                        service_id = f"_nomad-task-{alloc['ID']}-{task['Name']}-{name}-{service.get('PortLabel', '')}"
                        checks = [
                            {
                                "Node": alloc["NodeName"],
                                "CheckID": f"_nomad-check-{_new_id()[:8]}",
                                "Name": check.get("Name") or "service check",
                                "Status": "critical" if failing else "passing",
                                "Output": "StartJobs = True" if not failing else "startd did not answer",
                                "ServiceID": service_id,
                                "ServiceName": name,
                            }
                            for check in service.get("Checks") or []
                        ]
                        out.append(
                            {
                                "Node": {"Node": alloc["NodeName"], "Address": node.address if node else "127.0.0.1"},
                                "Service": {
                                    "ID": service_id,
                                    "Service": name,
                                    "Tags": service.get("Tags") or [],
                                    "Meta": service.get("Meta") or {},
                                    "Address": "",
                                    "Port": 9621,
                                },
                                "Checks": checks,
                            }
                        )
        return out

    def settle(self, timeout: float = 5.0) -> None:
        """Wait until no scripted transition or hook call is pending (raise TimeoutError after ``timeout``)."""
        deadline = time.monotonic() + timeout
        with self._lock:
            while (self._timers or self._hooks_pending) and not self._closing:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise TimeoutError(
                        f"FakeNomad still has {len(self._timers)} scripted transitions and "
                        f"{self._hooks_pending} hook calls pending"
                    )
                self._timer_cv.wait(min(remaining, 0.05))

    # -- the state store -----------------------------------------------------------------

    def _next(self) -> int:
        self._index += 1
        return self._index

    def _touch(self, idx: int, *, tables: Sequence[str] = (), scopes: Sequence[str] = ()) -> None:
        for table in tables:
            self._tables[table] = max(self._tables.get(table, 0), idx)
        for scope in scopes:
            self._scopes[scope] = max(self._scopes.get(scope, 0), idx)
        self._cond.notify_all()

    def _stamp(self, scopes: Sequence[str]) -> int:
        return max((self._scopes.get(s, 0) for s in scopes), default=0)

    def _changed_since(self, scopes: Sequence[str], stamp: int) -> bool:
        return self._closing or self._stamp(scopes) != stamp

    @staticmethod
    def _jscope(key: JobKey) -> str:
        return f"{key[0]}/{key[1]}"

    @staticmethod
    def _alloc_key(alloc: Mapping[str, Any]) -> JobKey:
        return (str(alloc["Namespace"]), str(alloc["JobID"]))

    @staticmethod
    def _eval_key(ev: Mapping[str, Any]) -> JobKey:
        return (str(ev["Namespace"]), str(ev["JobID"]))

    def _save_job(self, key: JobKey, idx: int) -> None:
        self._touch(
            idx,
            tables=("jobs", "job_version"),
            scopes=(f"job:{self._jscope(key)}", f"versions:{self._jscope(key)}", f"joblist:{key[0]}", "joblist:*"),
        )

    def _save_alloc(self, alloc: Json, idx: int) -> None:
        alloc["ModifyIndex"] = idx
        alloc["ModifyTime"] = time.time_ns()
        key = self._alloc_key(alloc)
        scopes = [f"alloc:{alloc['ID']}", f"allocs:{self._jscope(key)}", f"evalallocs:{alloc['EvalID']}", "allocs:*"]
        if alloc.get("DeploymentID"):
            scopes.append(f"deployallocs:{alloc['DeploymentID']}")
        self._touch(idx, tables=("allocs",), scopes=scopes)
        self._touch_summary(key, idx)

    def _touch_summary(self, key: JobKey, idx: int) -> None:
        created, _ = self._summary_index.get(key, (idx, idx))
        self._summary_index[key] = (created, idx)
        self._touch(
            idx,
            tables=("job_summary",),
            scopes=(f"summary:{self._jscope(key)}", f"joblist:{key[0]}", "joblist:*", f"scale:{self._jscope(key)}"),
        )

    def _save_eval(self, ev: Json, idx: int) -> None:
        ev["ModifyIndex"] = idx
        ev["ModifyTime"] = time.time_ns()
        key = self._eval_key(ev)
        self._touch(idx, tables=("evals",), scopes=(f"eval:{ev['ID']}", f"evals:{self._jscope(key)}", "evals:*"))
        self._touch_summary(key, idx)

    def _save_deploy(self, dep: Json, idx: int) -> None:
        dep["ModifyIndex"] = idx
        dep["ModifyTime"] = time.time_ns()
        key = (str(dep["Namespace"]), str(dep["JobID"]))
        self._touch(
            idx,
            tables=("deployment",),
            scopes=(
                f"deploy:{dep['ID']}",
                f"deploys:{self._jscope(key)}",
                "deploys:*",
                f"scale:{self._jscope(key)}",
            ),
        )

    def _job_allocs(self, key: JobKey, *, any_create_index: bool = False) -> list[Json]:
        """state.AllocsByJob: allocations of the job ID, of its current incarnation unless ``any_create_index``."""
        job = self._jobs.get(key)
        out = []
        for alloc in self._allocs.values():
            if self._alloc_key(alloc) != key:
                continue
            if not any_create_index and job is not None and alloc["Job"]["CreateIndex"] != job["CreateIndex"]:
                continue
            out.append(alloc)
        return out

    def _job_deploys(self, key: JobKey, *, any_create_index: bool = False) -> list[Json]:
        job = self._jobs.get(key)
        out = [
            d
            for d in self._deploys.values()
            if (d["Namespace"], d["JobID"]) == key
            and (any_create_index or job is None or d["JobCreateIndex"] == job["CreateIndex"])
        ]
        return sorted(out, key=lambda d: int(d["CreateIndex"]), reverse=True)

    def _job_status(self, key: JobKey) -> str:
        """state.StateStore.getJobStatus."""
        job = self._jobs[key]
        if job["Type"] == "system" or job.get("Periodic") or _is_parameterized(job):
            return "dead" if job["Stop"] else "running"
        allocs = self._job_allocs(key)
        if any(not _alloc_terminal(a) for a in allocs):
            return "running"
        evals = [e for e in self._evals.values() if self._eval_key(e) == key]
        if any(e["Status"] in ("pending", "blocked") for e in evals):
            return "pending"
        return "dead" if (evals or allocs) else "pending"

    def _refresh_status(self, key: JobKey, idx: int) -> None:
        job = self._jobs.get(key)
        if job is None:
            return
        status = self._job_status(key)
        if status != job["Status"]:
            job["Status"] = status
            job["ModifyIndex"] = idx
            self._save_job(key, idx)
            parent = (key[0], str(job.get("ParentID") or ""))
            if parent[1] and parent in self._jobs:  # the parent's JobSummary.Children counts it
                self._touch_summary(parent, idx)

    def _schedule(self, delay: float, action: Callable[[], None]) -> None:
        heapq.heappush(self._timers, (time.monotonic() + delay, next(self._timer_seq), action))
        self._timer_cv.notify_all()

    def _timer_loop(self) -> None:
        with self._lock:
            while not self._closing:
                if not self._timers:
                    self._timer_cv.wait()
                    continue
                due = self._timers[0][0]
                wait = due - time.monotonic()
                if wait > 0:
                    self._timer_cv.wait(wait)
                    continue
                _, _, action = heapq.heappop(self._timers)
                try:
                    action()
                except Exception as exc:  # a bug in the fake: keep serving, report on exit
                    self._errors.append(exc)
                self._timer_cv.notify_all()

    def _emit(self, hook: Callable[[Json], None] | None, alloc: Json) -> None:
        """Queue a hook call with a copy of the allocation's stub (lock held)."""
        if hook is None:
            return
        self._hooks_pending += 1
        self._hooks.put((hook, self._alloc_stub(alloc)))

    def _hook_loop(self) -> None:
        while True:
            item = self._hooks.get()
            if item is None:
                return
            hook, payload = item
            try:
                if not self._closing:
                    hook(payload)
            except Exception as exc:  # a bug in the test's hook: keep serving, report on exit
                with self._lock:
                    self._errors.append(exc)
            finally:
                with self._lock:
                    self._hooks_pending -= 1
                    self._timer_cv.notify_all()

    def _script_for(self, key: JobKey) -> Scenario | None:
        """The job's script or, for a dispatched child, its parent's."""
        script = self._scripts.get(key)
        if script is None:
            job = self._jobs.get(key)
            if job is not None and job.get("ParentID"):
                script = self._scripts.get((key[0], str(job["ParentID"])))
        return script

    def _delay_for(self, key: JobKey) -> float:
        script = self._script_for(key)
        return script.delay if script is not None and script.delay is not None else self.step_delay

    # -- task logs -----------------------------------------------------------------------

    def append_log(self, alloc_id: str, data: str | bytes, *, task: str = "condor", stream: str = "stdout") -> None:
        """Append to a task's stdout/stderr, as the task writing to it; wakes followers."""
        chunk = data.encode() if isinstance(data, str) else data
        with self._lock:
            self._task_logs.setdefault((alloc_id, task, stream), bytearray()).extend(chunk)
            self._cond.notify_all()

    LOG_FRAME_BYTES: ClassVar[int] = 64 * 1024
    """At most this much data per frame (Nomad's ``streamFrameSize``, client/fs_endpoint.go)."""
    LOG_HEARTBEAT: ClassVar[float] = 1.0
    """A heartbeat frame (``{}``) this often while following with nothing new."""

    def _logs_stream(self, alloc_id: str, query: Mapping[str, str]) -> _Reply:
        """``GET /v1/client/fs/logs/<alloc>``, as Nomad's API documents it (api-docs/client.mdx, Stream Logs).

        Parameters ``task`` (required), ``type`` (stdout|stderr), ``follow``, ``offset``,
        ``origin`` (start|end); the body is a stream of JSON frames ``{"File", "Offset",
        "Data" (base64)}``, with empty heartbeat frames while following
        (client/fs_endpoint.go ``logs``; ``File`` is ``alloc/logs/<task>.<type>.0``).
        Simpler than Nomad: one log file per stream (no rotation, so no ``FileEvent``),
        and following ends when the allocation is terminal (or the fake closes).
        Errors as Nomad words them: a missing task is 400 ``must provide task name``, an
        unknown allocation 404 ``Unknown allocation "<id>"``, a task the allocation does
        not have 404 ``unknown task name "<task>"``.
        """
        task = query.get("task", "")
        kind = query.get("type", "stdout")
        if not task:
            raise NomadAPIError(400, "must provide task name")
        if kind not in ("stdout", "stderr"):
            raise NomadAPIError(400, f"invalid log type: {kind!r}")
        with self._lock:
            alloc = self._allocs.get(alloc_id)
            if alloc is None:
                raise NomadAPIError(404, f'Unknown allocation "{alloc_id}"')
            states = alloc.get("TaskStates") or {}
            if states and task not in states:
                raise NomadAPIError(404, f'unknown task name "{task}"')
        follow = query.get("follow") in ("true", "True", "1")
        origin = query.get("origin") or "start"
        try:
            offset = int(query.get("offset") or 0)
        except ValueError:
            raise NomadAPIError(400, "Failed to parse offset") from None
        key = (alloc_id, task, kind)
        file_name = f"alloc/logs/{task}.{kind}.0"

        def frames() -> Any:
            with self._lock:
                size = len(self._task_logs.get(key, b""))
            at = max(0, size - offset) if origin == "end" else min(offset, size)
            while True:
                with self._lock:
                    data = bytes(self._task_logs.get(key, b"")[at : at + self.LOG_FRAME_BYTES])
                    done = self._closing or _alloc_terminal(self._allocs.get(alloc_id) or {})
                    if not data and follow and not done:
                        self._cond.wait(self.LOG_HEARTBEAT)
                        data = bytes(self._task_logs.get(key, b"")[at : at + self.LOG_FRAME_BYTES])
                if data:
                    at += len(data)
                    frame = {"File": file_name, "Offset": at, "Data": base64.b64encode(data).decode()}
                    yield json.dumps(frame).encode()
                    continue
                if not follow or done:
                    return
                yield b"{}"  # heartbeat

        return _Reply(stream=frames)

    # -- HTTP entry point ----------------------------------------------------------------

    def _serve(
        self, method: str, raw_path: str, headers: Mapping[str, str], raw: bytes
    ) -> tuple[int, dict[str, str], Any] | None:
        if self._closing:
            return None
        parts = urlsplit(raw_path)
        path = unquote(parts.path)
        query = dict(parse_qsl(parts.query, keep_blank_values=True))
        body: Any = None
        body_error: str | None = None
        if raw:
            try:
                body = json.loads(raw)
            except ValueError as exc:
                body_error = str(exc)
        with self._lock:
            self._requests.append(RecordedRequest(method, path, query, body))
            fault = next((f for f in self._faults if f.remaining > 0 and f.matches(method, path)), None)
            if fault is not None:
                fault.remaining -= 1
                self._faults = [f for f in self._faults if f.remaining > 0]
        if fault is not None:
            if fault.kind == "fail":
                return fault.status, {"Content-Type": "text/plain; charset=utf-8"}, fault.message.encode()
            self._closed.wait(fault.seconds)
            return None
        try:
            self._authorize(headers)
            if query.get("region") and query["region"] != self.region:
                raise NomadAPIError(500, "No path to region")
            reply = self._dispatch(method, path, query, body, body_error)
        except NomadAPIError as exc:
            reply = _Reply(status=exc.status, text=exc.message)
        except Exception as exc:  # a bug in the fake: answer 500 and report it on exit
            with self._lock:
                self._errors.append(exc)
            reply = _Reply(status=500, text=f"FakeNomad error: {exc!r}")
        out_headers: dict[str, str] = {}
        if reply.index is not None:
            out_headers["X-Nomad-Index"] = str(max(reply.index, 1))
        if reply.query_meta:
            out_headers["X-Nomad-KnownLeader"] = "true"
            out_headers["X-Nomad-LastContact"] = "0"
        if reply.stream is not None:
            out_headers["Content-Type"] = "application/json"
            return reply.status, out_headers, reply.stream()
        if reply.text is not None:
            out_headers["Content-Type"] = "text/plain; charset=utf-8"
            return reply.status, out_headers, reply.text.encode()
        out_headers["Content-Type"] = "application/json"
        return reply.status, out_headers, json.dumps(reply.body).encode()

    def _authorize(self, headers: Mapping[str, str]) -> None:
        if self.token is None:
            return
        supplied = headers.get("x-nomad-token")
        auth = headers.get("authorization", "")
        if not supplied and auth.lower().startswith("bearer "):
            supplied = auth[7:].strip()
        if not supplied:
            raise NomadAPIError(403, "Permission denied")
        if supplied != self.token:
            raise NomadAPIError(403, "ACL token not found")

    def _dispatch(self, method: str, path: str, query: dict[str, str], body: Any, body_error: str | None) -> _Reply:
        def need_body() -> Json:
            if body_error is not None:
                raise NomadAPIError(400, body_error)
            if not isinstance(body, dict):
                raise NomadAPIError(400, "Request body is empty" if body is None else "Request decode failed")
            return body

        write = method in ("PUT", "POST")
        ns = query.get("namespace") or "default"
        if path == "/v1/jobs":
            if method == "GET":
                return self._query(query, functools.partial(self._q_jobs, ns, query))
            if write:
                return self._job_register("", query, need_body())
            raise NomadAPIError(405, "Invalid method")
        if path.startswith("/v1/job/"):
            rest = path[len("/v1/job/") :]
            return self._job_specific(method, rest, ns, query, body, need_body)
        if path == "/v1/allocations" and method == "GET":
            return self._query(query, functools.partial(self._q_allocs, ns, query))
        if path.startswith("/v1/allocation/") and path.endswith("/stop") and method in ("POST", "PUT"):
            return self._alloc_stop(path[len("/v1/allocation/") : -len("/stop")])
        if path.startswith("/v1/allocation/") and method == "GET":
            alloc_id = path[len("/v1/allocation/") :]
            return self._query(query, functools.partial(self._q_alloc, alloc_id))
        if path == "/v1/evaluations" and method == "GET":
            return self._query(query, functools.partial(self._q_evals, ns, query))
        if path.startswith("/v1/evaluation/") and method == "GET":
            rest = path[len("/v1/evaluation/") :]
            if rest.endswith("/allocations"):
                return self._query(query, functools.partial(self._q_eval_allocs, rest[: -len("/allocations")]))
            return self._query(query, functools.partial(self._q_eval, rest, query.get("related") == "true"))
        if path == "/v1/deployments" and method == "GET":
            return self._query(query, functools.partial(self._q_deploys, ns, query))
        if path.startswith("/v1/deployment/"):
            rest = path[len("/v1/deployment/") :]
            action, _, dep_id = rest.partition("/")
            if action == "allocations" and dep_id and method == "GET":
                return self._query(query, functools.partial(self._q_deploy_allocs, dep_id))
            if action in ("promote", "fail") and dep_id:
                if not write:
                    raise NomadAPIError(405, "Invalid method")
                payload = body if isinstance(body, dict) else {}
                with self._lock:
                    if action == "promote":
                        return self._deployment_promote(dep_id, payload)
                    return self._deployment_fail(dep_id)
            if not dep_id and method == "GET":
                return self._query(query, functools.partial(self._q_deploy, rest))
        if path.startswith("/v1/acl/policy/"):
            return self._acl_policy(method, unquote(path[len("/v1/acl/policy/") :]), body)
        if path.startswith("/v1/client/fs/logs/") and method == "GET":
            return self._logs_stream(path[len("/v1/client/fs/logs/") :], query)
        if path == "/v1/nodes" and method == "GET":
            return self._query(query, self._q_nodes)
        if path == "/v1/status/leader" and method == "GET":
            return _Reply(body=LEADER)
        return _Reply(status=404, text="")

    def _acl_policy(self, method: str, name: str, body: Any) -> _Reply:
        """``/v1/acl/policy/<name>`` (nomad/acl_endpoint.go UpsertPolicies, GetPolicy): stored, not enforced."""
        with self._lock:
            if method in ("PUT", "POST"):
                if not isinstance(body, dict) or body.get("Name") != name:
                    raise NomadAPIError(400, "ACL policy name does not match request path")
                if not body.get("Rules"):
                    raise NomadAPIError(400, "policy rules are empty")
                idx = self._next()
                self.acl_policies[name] = {**body, "CreateIndex": idx, "ModifyIndex": idx}
                return _Reply(body=None, index=idx)
            if method == "GET" and name in self.acl_policies:
                return _Reply(body=copy.deepcopy(self.acl_policies[name]))
        raise NomadAPIError(404, "ACL policy not found")

    def _job_specific(
        self, method: str, rest: str, ns: str, query: dict[str, str], body: Any, need_body: Callable[[], Json]
    ) -> _Reply:
        write = method in ("PUT", "POST")
        get = method == "GET"
        for suffix in (
            "/evaluate",
            "/allocations",
            "/evaluations",
            "/periodic/force",
            "/plan",
            "/summary",
            "/dispatch",
            "/versions",
            "/revert",
            "/deployments",
            "/deployment",
            "/stable",
            "/scale",
            "/services",
            "/submission",
            "/actions",
            "/action",
        ):
            if not rest.endswith(suffix):
                continue
            job_id = rest[: -len(suffix)]
            key = (ns, job_id)
            if suffix == "/allocations" and get:
                return self._query(query, functools.partial(self._q_job_allocs, key, query.get("all") == "true"))
            if suffix == "/evaluations" and get:
                return self._query(query, functools.partial(self._q_job_evals, key))
            if suffix == "/deployments" and get:
                return self._query(query, functools.partial(self._q_job_deploys, key, query.get("all") == "true"))
            if suffix == "/deployment" and get:
                return self._query(query, functools.partial(self._q_job_latest_deploy, key))
            if suffix == "/versions" and get:
                return self._query(query, functools.partial(self._q_versions, key, query))
            if suffix == "/summary" and get:
                return self._query(query, functools.partial(self._q_summary, key))
            if suffix == "/scale" and get:
                return self._query(query, functools.partial(self._q_scale, key))
            if suffix == "/plan" and write:
                return self._job_plan(job_id, ns, query, need_body())
            if suffix == "/revert" and write:
                return self._job_revert(job_id, ns, need_body())
            if suffix == "/scale" and write:
                return self._job_scale(job_id, ns, need_body())
            if suffix == "/evaluate" and write:
                with self._lock:
                    return self._job_evaluate(key)
            if suffix == "/stable" and write:
                return self._job_stable(job_id, ns, need_body())
            if suffix == "/dispatch" and write:
                return self._job_dispatch(job_id, ns, query, need_body())
            if suffix in ("/allocations", "/evaluations", "/deployments", "/deployment", "/versions", "/summary"):
                raise NomadAPIError(405, "Invalid method")
            if suffix in ("/plan", "/revert", "/evaluate", "/stable", "/scale", "/dispatch"):
                raise NomadAPIError(405, "Invalid method")
            raise NomadAPIError(501, f"FakeNomad does not implement /v1/job/:job_id{suffix}")
        if get:
            return self._query(query, functools.partial(self._q_job, (ns, rest)))
        if write:
            return self._job_register(rest, query, need_body())
        if method == "DELETE":
            return self._job_delete((ns, rest), query)
        raise NomadAPIError(405, "Invalid method")

    # -- blocking queries ----------------------------------------------------------------

    def _query(self, query: Mapping[str, str], compute: Callable[[], _Reply]) -> _Reply:
        min_index = 0
        if query.get("index"):
            try:
                min_index = int(query["index"])
                if min_index < 0:
                    raise ValueError(min_index)
            except ValueError:
                raise NomadAPIError(400, "Invalid index") from None
        wait = MAX_QUERY_TIME
        if query.get("wait"):
            try:
                wait = parse_go_duration(query["wait"])
            except ValueError:
                raise NomadAPIError(400, "Invalid wait time") from None
        if wait <= 0 or wait > MAX_QUERY_TIME:
            wait = MAX_QUERY_TIME
        with self._cond:
            result = compute()
            if min_index == 0:
                return result
            if self.jitter:
                wait += random.uniform(0, wait / JITTER_FRACTION)  # noqa: S311 - jitter, not crypto
            deadline = time.monotonic() + wait
            while not self._closing and (result.index or 0) <= min_index:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    break
                stamp = self._stamp(result.scopes)
                self._cond.wait_for(functools.partial(self._changed_since, result.scopes, stamp), timeout=remaining)
                result = compute()
            return result

    def _listing(self, body: Any, index: int, *scopes: str) -> _Reply:
        return _Reply(body=body, index=index, query_meta=True, scopes=scopes)

    # -- read endpoints (called with the lock held) --------------------------------------

    def _q_job(self, key: JobKey) -> _Reply:
        job = self._jobs.get(key)
        scope = f"job:{self._jscope(key)}"
        if job is None:
            return _Reply(
                status=404, text="job not found", index=self._tables["jobs"], query_meta=True, scopes=(scope,)
            )
        return self._listing(copy.deepcopy(job), int(job["ModifyIndex"]), scope)

    def _q_jobs(self, ns: str, query: Mapping[str, str]) -> _Reply:
        prefix = query.get("prefix", "")
        with_meta = query.get("meta") == "true"
        stubs = [
            self._job_stub(key, job, with_meta)
            for key, job in sorted(self._jobs.items())
            if (ns == "*" or key[0] == ns) and key[1].startswith(prefix)
        ]
        index = max(self._tables["jobs"], self._tables["job_summary"])
        return self._listing(stubs, index, f"joblist:{ns}")

    def _job_stub(self, key: JobKey, job: Json, with_meta: bool) -> Json:
        stub = {
            "ID": job["ID"],
            "ParentID": job["ParentID"],
            "Name": job["Name"],
            "Namespace": job["Namespace"],
            "Datacenters": job["Datacenters"],
            "NodePool": job["NodePool"],
            "Multiregion": job["Multiregion"],
            "Type": job["Type"],
            "Priority": job["Priority"],
            "Periodic": job["Periodic"] is not None,
            "ParameterizedJob": _is_parameterized(job),
            "Stop": job["Stop"],
            "Status": job["Status"],
            "StatusDescription": job["StatusDescription"],
            "JobSummary": self._summary(key),
            "CreateIndex": job["CreateIndex"],
            "ModifyIndex": job["ModifyIndex"],
            "JobModifyIndex": job["JobModifyIndex"],
            "SubmitTime": job["SubmitTime"],
        }
        if with_meta:
            stub["Meta"] = job["Meta"]
        return copy.deepcopy(stub)

    def _summary(self, key: JobKey) -> Json:
        job = self._jobs[key]
        groups: dict[str, Json] = {
            tg["Name"]: {"Queued": 0, "Complete": 0, "Failed": 0, "Running": 0, "Starting": 0, "Lost": 0, "Unknown": 0}
            for tg in job["TaskGroups"]
        }
        for alloc in self._job_allocs(key):
            counts = groups.setdefault(
                alloc["TaskGroup"],
                {"Queued": 0, "Complete": 0, "Failed": 0, "Running": 0, "Starting": 0, "Lost": 0, "Unknown": 0},
            )
            status = alloc["ClientStatus"]
            bucket = {"pending": "Starting", "running": "Running", "complete": "Complete", "failed": "Failed"}.get(
                status, "Lost"
            )
            counts[bucket] += 1
        for ev in self._evals.values():
            if self._eval_key(ev) == key and ev["Status"] == "blocked":
                for group, queued in (ev.get("QueuedAllocations") or {}).items():
                    if group in groups:
                        groups[group]["Queued"] = queued
        children = {"Pending": 0, "Running": 0, "Dead": 0}
        for (ns, _), other in self._jobs.items():
            if (
                ns == key[0]
                and other.get("ParentID") == job["ID"]
                and other["Status"] in ("pending", "running", "dead")
            ):
                children[str(other["Status"]).capitalize()] += 1
        created, modified = self._summary_index.get(key, (job["CreateIndex"], job["ModifyIndex"]))
        return {
            "JobID": job["ID"],
            "Namespace": job["Namespace"],
            "Summary": groups,
            "Children": children,
            "CreateIndex": created,
            "ModifyIndex": modified,
        }

    def _q_summary(self, key: JobKey) -> _Reply:
        scope = f"summary:{self._jscope(key)}"
        if key not in self._jobs:
            return _Reply(
                status=404, text="job not found", index=self._tables["job_summary"], query_meta=True, scopes=(scope,)
            )
        summary = self._summary(key)
        return self._listing(summary, int(summary["ModifyIndex"]), scope)

    def _q_versions(self, key: JobKey, query: Mapping[str, str]) -> _Reply:
        scope = f"versions:{self._jscope(key)}"
        versions = self._versions.get(key) or []
        if not versions:
            return _Reply(
                status=404,
                text="job versions not found",
                index=self._tables["job_version"],
                query_meta=True,
                scopes=(scope,),
            )
        index = int(versions[0]["ModifyIndex"])
        diffs = None
        if query.get("diffs") == "true":
            diffs = [job_diff(versions[i + 1], versions[i]) for i in range(len(versions) - 1)]
        body = {
            "Versions": copy.deepcopy(versions),
            "Diffs": diffs,
            "Index": index,
            "KnownLeader": True,
            "LastContact": 0,
            "NextToken": "",
        }
        return self._listing(body, index, scope)

    def _alloc_stub(self, alloc: Json) -> Json:
        job = alloc["Job"]
        stub = {
            "ID": alloc["ID"],
            "EvalID": alloc["EvalID"],
            "Name": alloc["Name"],
            "Namespace": alloc["Namespace"],
            "NodeID": alloc["NodeID"],
            "NodeName": alloc["NodeName"],
            "JobID": alloc["JobID"],
            "JobType": job["Type"],
            "JobVersion": job["Version"],
            "TaskGroup": alloc["TaskGroup"],
            "AllocatedResources": alloc["AllocatedResources"],
            "DesiredStatus": alloc["DesiredStatus"],
            "DesiredDescription": alloc["DesiredDescription"],
            "ClientStatus": alloc["ClientStatus"],
            "ClientDescription": alloc["ClientDescription"],
            "DesiredTransition": alloc["DesiredTransition"],
            "TaskStates": alloc["TaskStates"],
            "DeploymentStatus": alloc["DeploymentStatus"],
            "FollowupEvalID": alloc["FollowupEvalID"],
            "PreviousAllocation": alloc["PreviousAllocation"],
            "NextAllocation": alloc["NextAllocation"],
            "RescheduleTracker": alloc["RescheduleTracker"],
            "PreemptedAllocations": alloc["PreemptedAllocations"],
            "PreemptedByAllocation": alloc["PreemptedByAllocation"],
            "CreateIndex": alloc["CreateIndex"],
            "ModifyIndex": alloc["ModifyIndex"],
            "CreateTime": alloc["CreateTime"],
            "ModifyTime": alloc["ModifyTime"],
        }
        return copy.deepcopy(stub)

    def _q_job_allocs(self, key: JobKey, every: bool) -> _Reply:
        allocs = self._job_allocs(key, any_create_index=every)
        return self._listing(
            [self._alloc_stub(a) for a in allocs], self._tables["allocs"], f"allocs:{self._jscope(key)}"
        )

    def _q_allocs(self, ns: str, query: Mapping[str, str]) -> _Reply:
        prefix = query.get("prefix", "")
        stubs = [
            self._alloc_stub(a)
            for a in self._allocs.values()
            if (ns == "*" or a["Namespace"] == ns) and a["ID"].startswith(prefix)
        ]
        return self._listing(stubs, self._tables["allocs"], "allocs:*")

    def _q_alloc(self, alloc_id: str) -> _Reply:
        alloc = self._allocs.get(alloc_id)
        scope = f"alloc:{alloc_id}"
        if alloc is None:
            return _Reply(
                status=404, text="alloc not found", index=self._tables["allocs"], query_meta=True, scopes=(scope,)
            )
        return self._listing(copy.deepcopy(alloc), int(alloc["ModifyIndex"]), scope)

    def _q_job_evals(self, key: JobKey) -> _Reply:
        evals = [copy.deepcopy(e) for e in self._evals.values() if self._eval_key(e) == key]
        return self._listing(evals, self._tables["evals"], f"evals:{self._jscope(key)}")

    def _q_evals(self, ns: str, query: Mapping[str, str]) -> _Reply:
        out = [
            copy.deepcopy(e)
            for e in self._evals.values()
            if (ns == "*" or e["Namespace"] == ns)
            and e["ID"].startswith(query.get("prefix", ""))
            and (not query.get("job") or e["JobID"] == query["job"])
            and (not query.get("status") or e["Status"] == query["status"])
        ]
        return self._listing(out, self._tables["evals"], "evals:*")

    def _q_eval(self, eval_id: str, related: bool) -> _Reply:
        ev = self._evals.get(eval_id)
        scope = f"eval:{eval_id}"
        if ev is None:
            return _Reply(
                status=404, text="eval not found", index=self._tables["evals"], query_meta=True, scopes=(scope,)
            )
        body = copy.deepcopy(ev)
        if related:
            body["RelatedEvals"] = [self._eval_stub(e) for e in self._related_evals(ev)]
        return self._listing(body, int(ev["ModifyIndex"]), scope)

    def _related_evals(self, ev: Json) -> list[Json]:
        seen = {ev["ID"]}
        todo = [ev]
        out: list[Json] = []
        while todo:
            cur = todo.pop()
            links = [cur.get("NextEval"), cur.get("PreviousEval"), cur.get("BlockedEval")]
            links += [e["ID"] for e in self._evals.values() if cur["ID"] in (e.get("PreviousEval"), e.get("NextEval"))]
            for link in links:
                if link and link not in seen and link in self._evals:
                    seen.add(link)
                    out.append(self._evals[link])
                    todo.append(self._evals[link])
        return out

    @staticmethod
    def _eval_stub(ev: Json) -> Json:
        return {k: copy.deepcopy(ev.get(k)) for k in _EVAL_STUB_FIELDS}

    def _q_eval_allocs(self, eval_id: str) -> _Reply:
        allocs = [self._alloc_stub(a) for a in self._allocs.values() if a["EvalID"] == eval_id]
        return self._listing(allocs, self._tables["allocs"], f"evalallocs:{eval_id}")

    def _q_job_deploys(self, key: JobKey, every: bool) -> _Reply:
        deploys = [copy.deepcopy(d) for d in self._job_deploys(key, any_create_index=every)]
        return self._listing(deploys, self._tables["deployment"], f"deploys:{self._jscope(key)}")

    def _q_job_latest_deploy(self, key: JobKey) -> _Reply:
        deploys = self._job_deploys(key)
        latest = copy.deepcopy(deploys[0]) if deploys else None
        return self._listing(latest, self._tables["deployment"], f"deploys:{self._jscope(key)}")

    def _q_deploys(self, ns: str, query: Mapping[str, str]) -> _Reply:
        out = [
            copy.deepcopy(d)
            for d in sorted(self._deploys.values(), key=lambda d: int(d["CreateIndex"]))
            if (ns == "*" or d["Namespace"] == ns) and d["ID"].startswith(query.get("prefix", ""))
        ]
        return self._listing(out, self._tables["deployment"], "deploys:*")

    def _q_deploy(self, dep_id: str) -> _Reply:
        dep = self._deploys.get(dep_id)
        scope = f"deploy:{dep_id}"
        if dep is None:
            return _Reply(
                status=404,
                text="deployment not found",
                index=self._tables["deployment"],
                query_meta=True,
                scopes=(scope,),
            )
        return self._listing(copy.deepcopy(dep), int(dep["ModifyIndex"]), scope)

    def _q_deploy_allocs(self, dep_id: str) -> _Reply:
        allocs = [self._alloc_stub(a) for a in self._allocs.values() if a.get("DeploymentID") == dep_id]
        return self._listing(allocs, self._tables["allocs"], f"deployallocs:{dep_id}")

    def _q_scale(self, key: JobKey) -> _Reply:
        job = self._jobs.get(key)
        scope = f"scale:{self._jscope(key)}"
        if job is None:
            return _Reply(
                status=404, text="job not found", index=self._tables["jobs"], query_meta=True, scopes=(scope,)
            )
        deploys = self._job_deploys(key)
        latest = deploys[0] if deploys else None
        events = self._scaling.get(key, {})
        groups: dict[str, Json] = {}
        for tg in job["TaskGroups"]:
            name = tg["Name"]
            live = [a for a in self._job_allocs(key) if a["TaskGroup"] == name and not _alloc_terminal(a)]
            dstate = (latest or {}).get("TaskGroups", {}).get(name) if latest else None
            healthy = [a for a in live if (a.get("DeploymentStatus") or {}).get("Healthy") is True]
            unhealthy = [a for a in live if (a.get("DeploymentStatus") or {}).get("Healthy") is False]
            groups[name] = {
                "Desired": tg["Count"],
                "Placed": dstate["PlacedAllocs"] if dstate else len(live),
                "Running": sum(1 for a in live if a["ClientStatus"] == "running"),
                "Healthy": dstate["HealthyAllocs"] if dstate else len(healthy),
                "Unhealthy": dstate["UnhealthyAllocs"] if dstate else len(unhealthy),
                "Events": copy.deepcopy(events.get(name)) or None,
            }
        body = {
            "JobID": job["ID"],
            "Namespace": job["Namespace"],
            "JobCreateIndex": job["CreateIndex"],
            "JobModifyIndex": job["JobModifyIndex"],
            "JobStopped": job["Stop"],
            "TaskGroups": groups,
        }
        index = max(
            [int(job["ModifyIndex"]), self._scopes.get(scope, 0)] + ([int(latest["ModifyIndex"])] if latest else [])
        )
        return self._listing(body, index, scope, f"job:{self._jscope(key)}")

    def _q_nodes(self) -> _Reply:
        stubs = [
            {
                "ID": n.id,
                "Name": n.name,
                "Address": n.address,
                "Datacenter": n.datacenter or "dc1",
                "NodeClass": n.node_class,
                "NodePool": n.node_pool,
                "Version": "1.8.0",
                "Drain": False,
                "SchedulingEligibility": "eligible",
                "Status": "ready",
                "StatusDescription": "",
                "CreateIndex": 5,
                "ModifyIndex": 5,
            }
            for n in self._nodes
        ]
        return self._listing(stubs, self._tables["nodes"], "nodes")

    # -- register, plan, revert, stop, scale --------------------------------------------

    @staticmethod
    def _job_namespace(query: Mapping[str, str], job: Mapping[str, Any]) -> str:
        """command/agent/job_endpoint.go namespaceForJob: query string, then the job."""
        return query.get("namespace") or str(job.get("Namespace") or "") or "default"

    def _check_job_body(self, body: Json, path_job_id: str) -> Json:
        job = body.get("Job")
        if not isinstance(job, dict):
            raise NomadAPIError(400, "Job must be specified")
        if not job.get("ID"):
            raise NomadAPIError(400, "Job ID hasn't been provided")
        if path_job_id and job["ID"] != path_job_id:
            raise NomadAPIError(400, "Job ID does not match name")
        return job

    def _job_register(self, path_job_id: str, query: Mapping[str, str], body: Json) -> _Reply:
        job = self._check_job_body(body, path_job_id)
        if job.get("Type") == "system" and any(tg.get("Scaling") for tg in job.get("TaskGroups") or []):
            raise NomadAPIError(400, "Task groups with job type system do not support scaling blocks")
        with self._lock:
            out = self._register(
                self._job_namespace(query, job),
                job,
                enforce=bool(body.get("EnforceIndex")),
                job_modify_index=int(body.get("JobModifyIndex") or 0),
                preserve_counts=bool(body.get("PreserveCounts")),
            )
        return _Reply(body=out, index=int(out["Index"]))

    @staticmethod
    def _validate(job: Json) -> None:
        errors = []
        if job["Type"] not in ("service", "batch", "system", "sysbatch"):
            errors.append(f'Invalid job type: "{job["Type"]}"')
        if not job["TaskGroups"]:
            errors.append("Missing job task groups")
        for i, tg in enumerate(job["TaskGroups"], start=1):
            if not tg.get("Name"):
                errors.append(f"Job task group {i} missing name")
            if not tg.get("Tasks"):
                errors.append(f"Task group {tg.get('Name') or i} validation failed: Missing tasks for task group")
        if errors:
            raise NomadAPIError(500, _multierror(*errors))

    def _register(
        self,
        ns: str,
        raw_job: Mapping[str, Any],
        *,
        enforce: bool = False,
        job_modify_index: int = 0,
        preserve_counts: bool = False,
        triggered_by: str = "job-register",
    ) -> Json:
        """Job.Register (nomad/job_endpoint.go), with the lock held."""
        job = canonicalize_job(raw_job, ns, self.version)
        self._validate(job)
        key = (ns, str(job["ID"]))
        existing = self._jobs.get(key)
        if enforce:
            if existing is not None:
                if job_modify_index == 0:
                    raise NomadAPIError(500, f"{ENFORCE_INDEX_PREFIX} 0: job already exists")
                if job_modify_index != existing["JobModifyIndex"]:
                    raise NomadAPIError(
                        500,
                        f"{ENFORCE_INDEX_PREFIX} {job_modify_index}: job exists with conflicting job modify index: "
                        f"{existing['JobModifyIndex']}",
                    )
            elif job_modify_index != 0:
                raise NomadAPIError(500, f"{ENFORCE_INDEX_PREFIX} {job_modify_index}: job does not exist")
        if existing is not None and existing["Type"] != job["Type"]:
            raise NomadAPIError(500, f'cannot update job from type "{existing["Type"]}" to "{job["Type"]}"')
        if existing is not None and _is_parameterized(existing) != _is_parameterized(job):
            raise NomadAPIError(
                500,
                "cannot update parameterized job to being non-parameterized"
                if _is_parameterized(existing)
                else "cannot update non-parameterized job to being parameterized",
            )
        if existing is not None and preserve_counts:
            previous = {tg["Name"]: tg["Count"] for tg in existing["TaskGroups"]}
            for tg in job["TaskGroups"]:
                if tg["Name"] in previous:
                    tg["Count"] = previous[tg["Name"]]
        spec_changed = existing is None or _spec(existing) != _spec(job)
        index = 0
        if spec_changed:
            index = self._next()
            self._store_new_version(key, job, existing, index)
            jmi = index
        else:
            assert existing is not None
            jmi = int(existing["JobModifyIndex"])
        eval_id, eval_index = "", 0
        if not (job.get("Periodic") or _is_parameterized(job)):
            eval_index = index or self._next()
            ev = self._new_eval(key, self._jobs[key], triggered_by, eval_index, job_modify_index=jmi)
            eval_id = ev["ID"]
            index = eval_index
            self._refresh_status(key, eval_index)
        elif spec_changed:  # no eval: the state store still sets the status (running until stopped)
            self._refresh_status(key, index)
        return {
            "EvalID": eval_id,
            "EvalCreateIndex": eval_index,
            "JobModifyIndex": jmi,
            "Warnings": "",
            "Index": index or jmi,
            "LastContact": 0,
            "KnownLeader": False,
        }

    def _store_new_version(self, key: JobKey, job: Json, existing: Json | None, idx: int) -> None:
        job["Version"] = int(existing["Version"]) + 1 if existing is not None else 0
        job["CreateIndex"] = existing["CreateIndex"] if existing is not None else idx
        job["ModifyIndex"] = idx
        job["JobModifyIndex"] = idx
        job["SubmitTime"] = time.time_ns()
        job["Stable"] = False
        job["Status"] = existing["Status"] if existing is not None else "pending"
        job["StatusDescription"] = ""
        self._jobs[key] = job
        versions = self._versions.setdefault(key, [])
        versions.insert(0, job)
        del versions[TRACKED_VERSIONS:]
        if existing is None:
            self._summary_index[key] = (idx, idx)
        # Blocked evaluations of an earlier version are superseded by the new one.
        for ev in self._evals.values():
            if self._eval_key(ev) == key and ev["Status"] == "blocked":
                ev["Status"] = "canceled"
                ev["StatusDescription"] = "evaluation canceled because a newer job version was registered"
                self._save_eval(ev, idx)
        self._save_job(key, idx)

    def _new_eval(
        self,
        key: JobKey,
        job: Json,
        triggered_by: str,
        idx: int,
        *,
        job_modify_index: int,
        status: str = "pending",
        eval_type: str | None = None,
        deployment_id: str = "",
        wait: float = 0.0,
    ) -> Json:
        now = time.time_ns()
        ev: Json = {
            "ID": _new_id(),
            "Namespace": key[0],
            "Priority": job.get("Priority", 50),
            "Type": eval_type or job.get("Type", "service"),
            "TriggeredBy": triggered_by,
            "JobID": key[1],
            "JobModifyIndex": job_modify_index,
            "NodeID": "",
            "NodeModifyIndex": 0,
            "DeploymentID": deployment_id,
            "Status": status,
            "StatusDescription": "",
            "Wait": round(wait * 1e9),
            "WaitUntil": ZERO_TIME,
            "NextEval": "",
            "PreviousEval": "",
            "BlockedEval": "",
            "RelatedEvals": None,
            "FailedTGAllocs": None,
            "PlanAnnotations": None,
            "ClassEligibility": None,
            "EscapedComputedClass": False,
            "QuotaLimitReached": "",
            "AnnotatePlan": False,
            "QueuedAllocations": None,
            "SnapshotIndex": 0,
            "CreateIndex": idx,
            "ModifyIndex": idx,
            "CreateTime": now,
            "ModifyTime": now,
        }
        self._evals[ev["ID"]] = ev
        self._save_eval(ev, idx)
        if status == "pending":
            self._schedule(max(self.step_delay, wait), functools.partial(self._process_eval, ev["ID"]))
        return ev

    def _job_plan(self, job_id: str, ns_query: str, query: Mapping[str, str], body: Json) -> _Reply:
        raw = body.get("Job")
        if not isinstance(raw, dict):
            raise NomadAPIError(400, "Job must be specified")
        if not raw.get("ID"):
            raise NomadAPIError(400, "Job must have a valid ID")
        if job_id and raw["ID"] != job_id:
            raise NomadAPIError(400, "Job ID does not match")
        with self._lock:
            ns = self._job_namespace(query, raw)
            job = canonicalize_job(raw, ns, self.version)
            self._validate(job)
            key = (ns, str(job["ID"]))
            old = self._jobs.get(key)
            index = int(old["JobModifyIndex"]) if old is not None else 0
            planned = copy.deepcopy(job)
            planned["Version"] = int(old["Version"]) + (1 if _spec(old) != _spec(job) else 0) if old else 0
            planned["CreateIndex"] = old["CreateIndex"] if old else 0
            scenario = self._scripts.get(key)
            failed: Json | None = None
            created: list[Json] | None = None
            plans: dict[str, _GroupPlan] = {}
            if (
                scenario is not None
                and scenario.name == "unplaceable"
                and scenario.version in (None, planned["Version"])
            ):
                failed = {tg["Name"]: self._alloc_metric(job, scenario, tg) for tg in job["TaskGroups"]}
                created = [
                    self._eval_stub(
                        {
                            "ID": _new_id(),
                            "Status": "blocked",
                            "JobID": key[1],
                            "Namespace": ns,
                            "Type": job["Type"],
                            "Priority": job["Priority"],
                            "TriggeredBy": "job-register",
                            "StatusDescription": "created to place remaining allocations",
                        }
                    )
                ]
                for tg in job["TaskGroups"]:
                    plans[tg["Name"]] = _GroupPlan(desired=self._desired(job, tg), new_place=self._desired(job, tg))
            else:
                plans = self._reconcile(key, planned)
            updates = {name: p.annotations() for name, p in plans.items()}
            diff = job_diff(old, job, plans) if body.get("Diff") else None
        return _Reply(
            body={
                "Index": index,
                "JobModifyIndex": index,
                "Diff": diff,
                "Annotations": {"DesiredTGUpdates": updates, "PreemptedAllocs": None},
                "FailedTGAllocs": failed,
                "CreatedEvals": created,
                "NextPeriodicLaunch": ZERO_TIME,
                "Warnings": "",
            },
            index=index,
        )

    def _job_revert(self, job_id: str, ns: str, body: Json) -> _Reply:
        if not body.get("JobID"):
            raise NomadAPIError(400, "JobID must be specified")
        if body["JobID"] != job_id:
            raise NomadAPIError(400, "Job ID does not match")
        version = int(body.get("JobVersion") or 0)
        with self._lock:
            key = (ns, job_id)
            cur = self._jobs.get(key)
            if cur is None:
                raise NomadAPIError(500, f'job "{job_id}" not found')
            if version == cur["Version"]:
                raise NomadAPIError(500, "can't revert to current version")
            target = next((v for v in self._versions.get(key, []) if v["Version"] == version), None)
            if target is None:
                raise NomadAPIError(500, f'job "{job_id}" in namespace "{ns}" at version {version} not found')
            prior = body.get("EnforcePriorVersion")
            if prior is not None and int(prior) != cur["Version"]:
                raise NomadAPIError(500, f"Current job has version {cur['Version']}; enforcing version {int(prior)}")
            out = self._register(
                ns,
                _spec(target),
                enforce=prior is not None,
                job_modify_index=int(cur["JobModifyIndex"]),
            )
        return _Reply(body=out, index=int(out["Index"]), query_meta=True)

    def _job_delete(self, key: JobKey, query: Mapping[str, str]) -> _Reply:
        purge_text = query.get("purge", "")
        if purge_text.lower() not in ("", "true", "false", "1", "0", "t", "f"):
            raise NomadAPIError(
                500,
                f'Failed to parse value of "purge" ({purge_text}) as a bool: strconv.ParseBool: parsing '
                f'"{purge_text}": invalid syntax',
            )
        purge = purge_text.lower() in ("true", "1", "t")
        with self._lock:
            job = self._jobs.get(key)
            empty = {
                "EvalID": "",
                "EvalCreateIndex": 0,
                "JobModifyIndex": 0,
                "VolumeEvalID": "",
                "VolumeEvalIndex": 0,
                "Index": 0,
                "LastContact": 0,
                "KnownLeader": False,
            }
            if job is None:
                return _Reply(body=empty, index=0)
            idx = self._next()
            if purge:
                del self._jobs[key]
                self._versions.pop(key, None)
                self._summary_index.pop(key, None)
                self._save_job(key, idx)
                self._touch_summary(key, idx)
            else:
                stopped = copy.deepcopy(_spec(job))
                stopped["Stop"] = True
                self._store_new_version(key, stopped, job, idx)
            eval_id = ""
            if not (job.get("Periodic") or _is_parameterized(job)):  # Job.Deregister creates no eval for these
                ev = self._new_eval(key, job, "job-deregister", idx, job_modify_index=idx, eval_type="service")
                eval_id = ev["ID"]
            self._refresh_status(key, idx)
        return _Reply(
            body={**empty, "EvalID": eval_id, "EvalCreateIndex": idx, "JobModifyIndex": idx, "Index": idx}, index=idx
        )

    def _alloc_stop(self, alloc_id: str) -> _Reply:
        """``POST /v1/allocation/<id>/stop`` (nomad/alloc_endpoint.go ``Alloc.Stop``).

        Nomad marks the allocation for migration and creates an ``alloc-stop``
        evaluation; the scheduler stops it and, the group's count being unchanged,
        places a replacement. Answers ``{"EvalID", "Index"}``.
        """
        with self._lock:
            alloc = self._allocs.get(alloc_id)
            if alloc is None:
                raise NomadAPIError(404, "alloc not found")
            key = self._alloc_key(alloc)
            job = self._jobs.get(key)
            idx = self._next()
            if not _alloc_terminal(alloc):
                self._stop_alloc(alloc, idx, "alloc is being migrated")
            ev_id = ""
            if job is not None:
                ev = self._new_eval(key, job, "alloc-stop", self._next(), job_modify_index=int(job["JobModifyIndex"]))
                ev_id = str(ev["ID"])
        return _Reply(body={"EvalID": ev_id, "Index": idx}, index=idx)

    def kill_timeout(self, alloc: Mapping[str, Any], task: str | None = None) -> float:
        """Seconds between the task's kill_signal and Nomad's SIGKILL, as a client applies it.

        ``min(task.KillTimeout, client max_kill_timeout)``: the client caps the job's
        value at its own ``max_kill_timeout`` (client/allocrunner/taskrunner/task_runner.go,
        ``getKillTimeout``; default 30 s). A test that drives a real worker from
        ``on_stop`` sends the task's ``KillSignal`` and SIGKILLs after this long, as the
        docker driver does (drivers/docker/handle.go ``Kill``: signal, wait, then stop
        the container with SIGKILL).
        """
        chosen = self._task_of(alloc, task)
        return min(int(chosen.get("KillTimeout") or 5_000_000_000) / 1e9, self.max_kill_timeout)

    def kill_signal(self, alloc: Mapping[str, Any], task: str | None = None) -> str:
        """The task's ``kill_signal`` (Nomad's default SIGINT when unset; nomadwn always sets it)."""
        return str(self._task_of(alloc, task).get("KillSignal") or "SIGINT")

    def _task_of(self, alloc: Mapping[str, Any], task: str | None) -> Json:
        with self._lock:
            job = self._jobs.get(self._alloc_key(alloc))
            tasks: list[Json] = list((_group(job, str(alloc["TaskGroup"])) or {}).get("Tasks") or []) if job else []
        empty: Json = {}
        return next((t for t in tasks if task is None or t.get("Name") == task), empty)

    def _job_scale(self, job_id: str, ns: str, body: Json) -> _Reply:
        target = body.get("Target") or {}
        if target.get("Job") and target["Job"] != job_id:
            raise NomadAPIError(400, "job ID in payload did not match URL")
        with self._lock:
            out = self._scale((ns, job_id), body, check_deploy=True)
        return _Reply(body=out, index=int(out["Index"]))

    def _scale(self, key: JobKey, body: Mapping[str, Any], *, check_deploy: bool) -> Json:
        """Job.Scale (nomad/job_endpoint.go), with the lock held."""
        target = body.get("Target") or {}
        group_name = target.get("Group")
        count = body.get("Count")
        if not group_name:
            raise NomadAPIError(400, "scaling action must specify a task group")
        if count is not None and int(count) < 0:
            raise NomadAPIError(400, "scaling action count can't be negative")
        job = self._jobs.get(key)
        if job is None:
            raise NomadAPIError(404, f'job "{key[1]}" not found')
        if job["Type"] == "system":
            raise NomadAPIError(400, 'cannot scale jobs of type "system"')
        group = _group(job, str(group_name))
        if group is None:
            raise NomadAPIError(400, f'task group "{group_name}" specified for scaling does not exist in job')
        prev = int(group["Count"])
        now = time.time_ns()
        eval_id, eval_index, jmi = "", 0, int(job["JobModifyIndex"])
        if count is not None:
            count = int(count)
            scaling = group.get("Scaling") or {}
            if scaling.get("Min") is not None and count < int(scaling["Min"]):
                raise NomadAPIError(
                    400, f"group count was less than scaling policy minimum: {count} < {scaling['Min']}"
                )
            if scaling.get("Max") is not None and count > int(scaling["Max"]):
                raise NomadAPIError(
                    400, f"group count was greater than scaling policy maximum: {count} > {scaling['Max']}"
                )
            deploys = self._job_deploys(key)
            if check_deploy and deploys and deploys[0]["Status"] in ("running", "paused", "pending", "initializing"):
                raise NomadAPIError(400, "job scaling blocked due to active deployment")
            scaled = copy.deepcopy(_spec(job))
            scaled_group = _group(scaled, str(group_name))
            assert scaled_group is not None
            scaled_group["Count"] = count
            jmi = self._next()
            self._store_new_version(key, scaled, job, jmi)
            if not (job.get("Periodic") or _is_parameterized(job)):  # Job.Scale: "an eval for non-dispatch jobs"
                eval_index = self._next()
                ev = self._new_eval(key, scaled, "job-scaling", eval_index, job_modify_index=jmi)
                eval_id = ev["ID"]
        event_index = self._next()
        event = {
            "Time": now,
            "Count": count,
            "PreviousCount": prev,
            "Message": body.get("Message", ""),
            "Error": bool(body.get("Error")),
            "Meta": body.get("Meta"),
            "EvalID": eval_id or None,
            "CreateIndex": event_index,
        }
        self._scaling.setdefault(key, {}).setdefault(str(group_name), []).insert(0, event)
        self._touch(event_index, tables=("scaling_event",), scopes=(f"scale:{self._jscope(key)}",))
        return {
            "EvalID": eval_id,
            "EvalCreateIndex": eval_index,
            "JobModifyIndex": jmi,
            "Warnings": "",
            "Index": event_index,
            "LastContact": 0,
            "KnownLeader": False,
        }

    def _job_evaluate(self, key: JobKey) -> _Reply:
        job = self._jobs.get(key)
        if job is None:
            raise NomadAPIError(500, "job not found")
        if job.get("Periodic"):
            raise NomadAPIError(500, "can't evaluate periodic job")
        if _is_parameterized(job):
            raise NomadAPIError(500, "can't evaluate parameterized job")
        idx = self._next()
        ev = self._new_eval(key, job, "job-register", idx, job_modify_index=int(job["ModifyIndex"]))
        body = {
            "EvalID": ev["ID"],
            "EvalCreateIndex": idx,
            "JobModifyIndex": job["ModifyIndex"],
            "Warnings": "",
            "Index": idx,
            "LastContact": 0,
            "KnownLeader": False,
        }
        return _Reply(body=body, index=idx)

    def _job_stable(self, job_id: str, ns: str, body: Json) -> _Reply:
        if not body.get("JobID"):
            raise NomadAPIError(400, "JobID must be specified")
        if body["JobID"] != job_id:
            raise NomadAPIError(400, "Job ID does not match")
        with self._lock:
            key = (ns, job_id)
            version = int(body.get("JobVersion") or 0)
            target = next((v for v in self._versions.get(key, []) if v["Version"] == version), None)
            if target is None:
                raise NomadAPIError(500, f'job "{job_id}" in namespace "{ns}" at version {version} not found')
            idx = self._next()
            target["Stable"] = bool(body.get("Stable"))
            target["ModifyIndex"] = idx
            self._save_job(key, idx)
        return _Reply(body={"Index": idx, "JobModifyIndex": idx}, index=idx)

    # -- dispatch (nomad/job_endpoint.go Job.Dispatch, validateDispatchRequest) ---------

    def _job_dispatch(self, job_id: str, ns: str, query: Mapping[str, str], body: Json) -> _Reply:
        body_job_id = _body_field(body, "JobID")
        if body_job_id and body_job_id != job_id:
            raise NomadAPIError(400, "Job ID does not match")
        meta = _body_field(body, "Meta")
        if meta is not None and not isinstance(meta, dict):
            raise NomadAPIError(
                400,
                f"json: cannot unmarshal {_go_json_kind(meta)} into Go struct field JobDispatchRequest.Meta "
                "of type map[string]string",
            )
        for value in (meta or {}).values():
            if not isinstance(value, str):
                raise NomadAPIError(
                    400,
                    f"json: cannot unmarshal {_go_json_kind(value)} into Go struct field JobDispatchRequest.Meta "
                    "of type string",
                )
        payload = self._dispatch_payload(_body_field(body, "Payload"))
        # The token is WriteRequest.IdempotencyToken: decoded from the body, and
        # parseWriteRequest sets it from ?idempotency_token= when that is not empty.
        token = query.get("idempotency_token") or str(_body_field(body, "IdempotencyToken") or "")
        with self._lock:
            parent = self._jobs.get((ns, job_id))
            if parent is None:
                raise NomadAPIError(500, "parameterized job not found")
            if not _is_parameterized(parent):
                raise NomadAPIError(500, f'Specified job "{job_id}" is not a parameterized job')
            if parent["Stop"]:
                raise NomadAPIError(500, f'Specified job "{job_id}" is stopped')
            self._validate_dispatch(parent, meta or {}, payload)
            if token:
                for (child_ns, child_id), child in sorted(self._jobs.items()):
                    if (
                        child_ns == ns
                        and child_id.startswith(job_id)
                        and child["ParentID"] == job_id
                        and child["DispatchIdempotencyToken"] == token
                    ):
                        # Not garbage-collected yet, whatever its status: return it, create nothing.
                        existing = {
                            "DispatchedJobID": child_id,
                            "EvalID": "",
                            "EvalCreateIndex": 0,
                            "JobCreateIndex": child["CreateIndex"],
                            "Index": child["ModifyIndex"],
                        }
                        return _Reply(body=existing, index=int(child["ModifyIndex"]))
            return self._dispatch_child(parent, meta or {}, payload, token)

    @staticmethod
    def _dispatch_payload(raw: Any) -> bytes:
        """JobDispatchRequest.Payload ([]byte): base64 in JSON, as Go decodes it."""
        if raw is None:
            return b""
        if not isinstance(raw, str):
            raise NomadAPIError(
                400,
                f"json: cannot unmarshal {_go_json_kind(raw)} into Go struct field JobDispatchRequest.Payload "
                "of type []uint8",
            )
        alphabet = set("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/=")
        try:
            return base64.b64decode(raw, validate=True)
        except ValueError:
            bad = next((i for i, c in enumerate(raw) if c not in alphabet), len(raw))
            raise NomadAPIError(400, f"illegal base64 data at input byte {bad}") from None

    @staticmethod
    def _validate_dispatch(parent: Json, meta: Mapping[str, str], payload: bytes) -> None:
        """validateDispatchRequest: the payload rule and size, then the meta keys."""
        config = parent["ParameterizedJob"]
        rule = config.get("Payload") or "optional"
        if rule == "required" and not payload:
            raise NomadAPIError(500, "Payload is not provided but required by parameterized job")
        if rule == "forbidden" and payload:
            raise NomadAPIError(500, "Payload provided but forbidden by parameterized job")
        if len(payload) > DISPATCH_PAYLOAD_LIMIT:
            raise NomadAPIError(500, f"Payload exceeds maximum size; {len(payload)} > {DISPATCH_PAYLOAD_LIMIT}")
        required = list(config.get("MetaRequired") or [])
        optional = list(config.get("MetaOptional") or [])
        # Go formats these sets with %v in map order; sorted here so tests can match them.
        unpermitted = sorted(k for k in meta if k not in required and k not in optional)
        if unpermitted:
            raise NomadAPIError(500, f"Dispatch request included unpermitted metadata keys: [{' '.join(unpermitted)}]")
        missing = sorted({k for k in required if k not in meta})
        if missing:
            raise NomadAPIError(500, f"Dispatch did not provide required meta keys: [{' '.join(missing)}]")

    def _dispatch_child(self, parent: Json, meta: Mapping[str, str], payload: bytes, token: str) -> _Reply:
        """Derive the child job, register it and its evaluation (lock held)."""
        ns, parent_id = str(parent["Namespace"]), str(parent["ID"])
        child_id = f"{parent_id}/dispatch-{int(time.time())}-{uuid.uuid4().hex[:8]}"  # structs.DispatchedID
        child = copy.deepcopy(_spec(parent))
        merged = dict(child.get("Meta") or {})
        merged.update(meta)
        child.update(
            ID=child_id,
            ParentID=parent_id,
            Name=child_id,
            Dispatched=True,
            DispatchIdempotencyToken=token,
            Meta=merged if (child.get("Meta") is not None or meta) else None,
            Payload=base64.b64encode(snappy_literal(payload)).decode(),
        )
        key = (ns, child_id)
        job_index = self._next()
        self._store_new_version(key, child, None, job_index)
        eval_id, eval_index = "", 0
        if not child.get("Periodic"):
            eval_index = self._next()
            ev = self._new_eval(key, child, "job-register", eval_index, job_modify_index=job_index)
            eval_id = ev["ID"]
        self._touch_summary((ns, parent_id), eval_index or job_index)  # the parent's Children.Pending
        body = {
            "DispatchedJobID": child_id,
            "EvalID": eval_id,
            "EvalCreateIndex": eval_index,
            "JobCreateIndex": job_index,
            "Index": eval_index or job_index,
        }
        return _Reply(body=body, index=eval_index or job_index)

    # -- deployments (the deployment watcher) -------------------------------------------

    def _deployment_promote(self, dep_id: str, body: Mapping[str, Any]) -> _Reply:
        dep = self._deploys.get(dep_id)
        if dep is None:
            raise NomadAPIError(500, "deployment not found")
        if dep["Status"] not in ("running", "paused", "pending", "initializing"):
            raise NomadAPIError(500, "can't promote terminal deployment")
        wanted = set(body.get("Groups") or [])
        promote_all = bool(body.get("All"))
        canaries = {c for state in dep["TaskGroups"].values() for c in (state.get("PlacedCanaries") or [])}
        unhealthy: list[str] = []
        have = False
        for alloc_id in sorted(canaries):
            alloc = self._allocs.get(alloc_id)
            if alloc is None or (not promote_all and alloc["TaskGroup"] not in wanted):
                continue
            if (alloc.get("DeploymentStatus") or {}).get("Healthy") is not True:
                unhealthy.append(f'Canary allocation "{alloc_id}" for group "{alloc["TaskGroup"]}" is not healthy')
                continue
            have = True
        if unhealthy:
            raise NomadAPIError(500, _multierror(*unhealthy))
        if not have:
            raise NomadAPIError(500, "no canaries to promote")
        idx, ev_id = self._promote(dep, None if promote_all else wanted)
        return _Reply(
            body={
                "EvalID": ev_id,
                "EvalCreateIndex": idx,
                "DeploymentModifyIndex": idx,
                "RevertedJobVersion": None,
                "Index": idx,
            },
            index=idx,
        )

    def _promote(self, dep: Json, groups: set[str] | None) -> tuple[int, str]:
        idx = self._next()
        for name, state in dep["TaskGroups"].items():
            if groups is None or name in groups:
                state["Promoted"] = True
        if not self._requires_promotion(dep):
            dep["StatusDescription"] = "Deployment is running"
        self._save_deploy(dep, idx)
        key = (str(dep["Namespace"]), str(dep["JobID"]))
        job = self._jobs.get(key)
        if job is not None:
            ev = self._new_eval(
                key,
                job,
                "deployment-watcher",
                idx,
                job_modify_index=int(job["JobModifyIndex"]),
                deployment_id=dep["ID"],
            )
            return idx, str(ev["ID"])
        return idx, ""

    @staticmethod
    def _requires_promotion(dep: Mapping[str, Any]) -> bool:
        return any(s["DesiredCanaries"] > 0 and not s["Promoted"] for s in dep["TaskGroups"].values())

    def _deployment_fail(self, dep_id: str) -> _Reply:
        dep = self._deploys.get(dep_id)
        if dep is None:
            raise NomadAPIError(500, "deployment not found")
        if dep["Status"] not in ("running", "paused", "pending", "initializing"):
            raise NomadAPIError(500, "can't fail terminal deployment")
        idx = self._next()
        reverted = self._fail_deployment(dep, "Deployment marked as failed", idx)
        key = (str(dep["Namespace"]), str(dep["JobID"]))
        job = self._jobs.get(key)
        eval_id = ""
        if job is not None and reverted is None:
            ev = self._new_eval(
                key, job, "deployment-watcher", idx, job_modify_index=int(job["JobModifyIndex"]), deployment_id=dep_id
            )
            eval_id = ev["ID"]
        body = {
            "EvalID": eval_id or (reverted or {}).get("EvalID", ""),
            "EvalCreateIndex": idx,
            "DeploymentModifyIndex": idx,
            "RevertedJobVersion": (reverted or {}).get("Version"),
            "Index": idx,
        }
        return _Reply(body=body, index=idx)

    def _fail_deployment(self, dep: Json, reason: str, idx: int) -> Json | None:
        """Mark ``dep`` failed; roll back to the latest stable version if a group has auto_revert."""
        description = reason
        reverted: Json | None = None
        key = (str(dep["Namespace"]), str(dep["JobID"]))
        job = self._jobs.get(key)
        if any(s.get("AutoRevert") for s in dep["TaskGroups"].values()) and job is not None:
            stable = next(
                (v for v in self._versions.get(key, []) if v["Stable"] and v["Version"] < dep["JobVersion"]), None
            )
            if stable is None:
                description = f"{reason} - no stable job version to auto revert to"
            elif _spec(stable) == _spec(job):
                description = (
                    f"{reason} - not rolling back to stable job version {stable['Version']} as current job has same "
                    "specification"
                )
            else:
                description = f"{reason} - rolling back to job version {stable['Version']}"
                reverted = {"Version": stable["Version"], "Spec": copy.deepcopy(_spec(stable))}
        dep["Status"] = "failed"
        dep["StatusDescription"] = description
        self._save_deploy(dep, idx)
        if reverted is not None:
            out = self._register(key[0], reverted["Spec"], triggered_by="deployment-watcher")
            reverted["EvalID"] = out["EvalID"]
        return reverted

    def _watch_deployment(self, dep_id: str, idx: int) -> None:
        dep = self._deploys.get(dep_id)
        if dep is None:
            return
        allocs = [a for a in self._allocs.values() if a.get("DeploymentID") == dep_id]
        for name, state in dep["TaskGroups"].items():
            mine = [a for a in allocs if a["TaskGroup"] == name]
            state["PlacedAllocs"] = len(mine)
            state["HealthyAllocs"] = sum(1 for a in mine if (a.get("DeploymentStatus") or {}).get("Healthy") is True)
            state["UnhealthyAllocs"] = sum(1 for a in mine if (a.get("DeploymentStatus") or {}).get("Healthy") is False)
        if dep["Status"] != "running":
            self._save_deploy(dep, idx)
            return
        if any(s["UnhealthyAllocs"] > 0 for s in dep["TaskGroups"].values()):
            self._fail_deployment(dep, "Failed due to unhealthy allocations", idx)
            return
        if self._requires_promotion(dep):
            groups = dep["TaskGroups"]
            ready = all(s["HealthyAllocs"] >= s["DesiredCanaries"] for s in groups.values() if s["DesiredCanaries"] > 0)
            auto = all(s.get("AutoPromote") for s in groups.values() if s["DesiredCanaries"] > 0)
            self._save_deploy(dep, idx)
            if ready and auto:
                self._promote(dep, None)
            return
        if all(s["HealthyAllocs"] >= s["DesiredTotal"] for s in dep["TaskGroups"].values()):
            dep["Status"] = "successful"
            dep["StatusDescription"] = "Deployment completed successfully"
            self._save_deploy(dep, idx)
            key = (str(dep["Namespace"]), str(dep["JobID"]))
            version = next((v for v in self._versions.get(key, []) if v["Version"] == dep["JobVersion"]), None)
            if version is not None and not version["Stable"]:
                version["Stable"] = True
                version["ModifyIndex"] = idx
                self._save_job(key, idx)
            return
        self._save_deploy(dep, idx)

    def _new_deployment(self, job: Json, plans: Mapping[str, _GroupPlan], idx: int) -> Json:
        key = (str(job["Namespace"]), str(job["ID"]))
        for old in self._job_deploys(key):
            if old["Status"] in ("running", "paused", "pending"):
                old["Status"] = "cancelled"
                old["StatusDescription"] = "Cancelled due to newer version of job"
                self._save_deploy(old, idx)
        groups: dict[str, Json] = {}
        for name, plan in plans.items():
            update = _update_strategy(job, name)
            groups[name] = {
                "AutoRevert": bool(update["AutoRevert"]),
                "AutoPromote": bool(update["AutoPromote"]),
                "ProgressDeadline": update["ProgressDeadline"],
                "RequireProgressBy": _rfc3339_in(update["ProgressDeadline"] / 1e9),
                "Promoted": False,
                "PlacedCanaries": [] if plan.canaries else None,
                "DesiredCanaries": plan.canaries,
                "DesiredTotal": plan.desired,
                "PlacedAllocs": 0,
                "HealthyAllocs": 0,
                "UnhealthyAllocs": 0,
            }
        now = time.time_ns()
        dep: Json = {
            "ID": _new_id(),
            "Namespace": job["Namespace"],
            "JobID": job["ID"],
            "JobVersion": job["Version"],
            "JobModifyIndex": job["JobModifyIndex"],
            "JobSpecModifyIndex": job["JobModifyIndex"],
            "JobCreateIndex": job["CreateIndex"],
            "IsMultiregion": False,
            "TaskGroups": groups,
            "Status": "running",
            "StatusDescription": "Deployment is running",
            "EvalPriority": job["Priority"],
            "CreateIndex": idx,
            "ModifyIndex": idx,
            "CreateTime": now,
            "ModifyTime": now,
        }
        if self._requires_promotion(dep):
            auto = all(s["AutoPromote"] for s in groups.values() if s["DesiredCanaries"] > 0)
            dep["StatusDescription"] = (
                "Deployment is running pending automatic promotion"
                if auto
                else "Deployment is running but requires manual promotion"
            )
        self._deploys[dep["ID"]] = dep
        self._save_deploy(dep, idx)
        return dep

    # -- the scheduler -------------------------------------------------------------------

    def _desired(self, job: Mapping[str, Any], tg: Mapping[str, Any]) -> int:
        if job["Type"] in ("system", "sysbatch"):
            return len(self._eligible_nodes(job))
        return int(tg.get("Count") or 0)

    def _eligible_nodes(self, job: Mapping[str, Any]) -> list[FakeNode]:
        dcs = list(job.get("Datacenters") or ["*"])
        return [n for n in self._nodes if n.datacenter is None or "*" in dcs or n.datacenter in dcs]

    def _scenario_for(self, key: JobKey, version: int, *, count: bool) -> Scenario:
        script = self._script_for(key)
        if script is None or script.name in ("healthy", "unplaceable"):
            return HEALTHY if script is None or script.name == "unplaceable" else script
        if script.version is not None and script.version != version:
            return HEALTHY
        if script.affected is not None:
            used = self._affected.get(script.serial, 0)
            if used >= script.affected:
                return HEALTHY
            if count:
                self._affected[script.serial] = used + 1
        return script

    def _reconcile(self, key: JobKey, job: Json, active: Json | None = None) -> dict[str, _GroupPlan]:
        """What the scheduler would do for ``job`` given the current allocations (a dry run)."""
        current = self._jobs.get(key)
        same_job = current is not None and current["CreateIndex"] == job.get("CreateIndex")
        allocs = self._job_allocs(key) if same_job else []
        plans: dict[str, _GroupPlan] = {}
        service = job["Type"] == "service"
        batch = job["Type"] in ("batch", "sysbatch")
        for tg in job["TaskGroups"]:
            name = tg["Name"]
            group_allocs = [a for a in allocs if a["TaskGroup"] == name]
            done = [
                a for a in group_allocs if batch and a["ClientStatus"] == "complete" and a["DesiredStatus"] == "run"
            ]
            live = [a for a in group_allocs if not _alloc_terminal(a)]
            plan = _GroupPlan(desired=self._desired(job, tg), ignore=list(done))
            promoted = bool(active and active["TaskGroups"].get(name, {}).get("Promoted"))
            canary = int(_update_strategy(job, name).get("Canary") or 0) if service and not promoted else 0
            if job["Type"] in ("system", "sysbatch"):
                limit = self._system_update_limit(job, tg, active, group_allocs)
                per_node = []
                for node in sorted(self._eligible_nodes(job), key=lambda n: n.name):
                    on_node = [a for a in live if a["NodeID"] == node.id]
                    mine = _GroupPlan(desired=1)
                    self._reconcile_slots(
                        mine, job, on_node, 1 - sum(1 for a in done if a["NodeID"] == node.id), [node], 0
                    )
                    per_node.append(mine)
                canaries = self._system_canaries(job, tg, promoted, per_node, group_allocs)
                if canaries is not None:
                    plan.canaries, already = canaries
                    limit = max(plan.canaries - already, 0)
                for mine in per_node:
                    if canaries is not None and mine.destructive:
                        mine.place = [(slot, node, True) for slot, node, _ in mine.place]
                    if mine.destructive and limit is not None:
                        if limit <= 0:
                            # evictAndPlace: past the limit an update waits (the old version keeps running).
                            plan.ignore += mine.destructive
                            plan.limited = True
                            continue
                        limit -= len(mine.destructive)
                    plan.place += mine.place
                    plan.stop += mine.stop
                    plan.destructive += mine.destructive
                    plan.inplace += mine.inplace
                    plan.ignore += mine.ignore
                    plan.new_place += mine.new_place
            else:
                held = [a for a in group_allocs if _held_failed(a, tg)]
                self._reconcile_slots(
                    plan, job, live, plan.desired - len(done), self._eligible_nodes(job), canary, held=held
                )
            plans[name] = plan
        old_groups = {a["TaskGroup"] for a in allocs if not _alloc_terminal(a)} - set(plans)
        for name in old_groups:
            plans[name] = _GroupPlan(stop=[a for a in allocs if a["TaskGroup"] == name and not _alloc_terminal(a)])
        return plans

    def _system_update_limit(
        self, job: Mapping[str, Any], tg: Mapping[str, Any], active: Mapping[str, Any] | None, allocs: list[Json]
    ) -> int | None:
        """How many nodes a system job's evaluation may update destructively (None: all).

        Up to 1.10 (``scheduler/scheduler_system.go``): ``job.Update.MaxParallel`` when
        the job-level update is rolling (``Stagger > 0 && MaxParallel > 0``), with no
        health gate: the next batch follows ``stagger`` later whatever happened to this
        one. From 1.11 (``evictAndPlace`` there): the group's ``max_parallel`` (else the
        job's), less this deployment's allocations whose health is not known yet;
        unhealthy ones do not count.
        """
        if job.get("Stop"):
            return None
        if self.version < (1, 11):
            u = job.get("Update") or {}
            rolling = int(u.get("Stagger") or 0) > 0 and int(u.get("MaxParallel") or 0) > 0
            return int(u["MaxParallel"]) if rolling else None
        tg_parallel = int((tg.get("Update") or {}).get("MaxParallel") or 0)
        limit = tg_parallel or int((job.get("Update") or {}).get("MaxParallel") or 0)
        if limit <= 0:
            return None
        if active is not None:
            for alloc in allocs:
                if alloc.get("DeploymentID") != active["ID"] or _alloc_terminal(alloc):
                    continue
                if (alloc.get("DeploymentStatus") or {}).get("Healthy") is None:
                    limit -= 1
        return limit

    def _system_canaries(
        self,
        job: Mapping[str, Any],
        tg: Mapping[str, Any],
        promoted: bool,
        per_node: list[_GroupPlan],
        allocs: list[Json],
    ) -> tuple[int, int] | None:
        """(canaries wanted, canaries already placed) for a system group that is canarying, else None.

        ``scheduler/scheduler_system.go`` at v2.0.5: a system job canaries when its update
        has ``canary > 0``, the deployment is not promoted, the job is not at version 0
        and some node needs a destructive update; it wants ``ceil(canary% x (destructive
        updates + existing canaries) / 100)``, at most ``max_parallel``, and places them
        as updates of those nodes; the other nodes wait for the promotion.
        """
        update = tg.get("Update") or {}
        percent = int(update.get("Canary") or 0)
        destructive = sum(1 for p in per_node if p.destructive)
        if not self._system_deployments(job) or percent <= 0 or promoted or int(job["Version"]) == 0:
            return None
        existing = [
            a
            for a in allocs
            if not _alloc_terminal(a)
            and a["Job"]["Version"] == job["Version"]
            and (a.get("DeploymentStatus") or {}).get("Canary")
        ]
        if destructive == 0 and not existing:
            return None
        wanted = math.ceil(percent * (destructive + len(existing)) / 100)
        parallel = int(update.get("MaxParallel") or 0)
        return (min(wanted, parallel) if parallel > 0 else wanted), len(existing)

    def _system_deployments(self, job: Mapping[str, Any]) -> bool:
        """Whether this Nomad gives the system job a deployment (1.11+, unless max_parallel = 0)."""
        if job["Type"] != "system" or self.version < (1, 11):
            return False
        return any(int((tg.get("Update") or {}).get("MaxParallel") or 0) > 0 for tg in job["TaskGroups"])

    def _reconcile_slots(
        self,
        plan: _GroupPlan,
        job: Json,
        live: list[Json],
        desired: int,
        nodes: list[FakeNode],
        canary: int,
        *,
        held: Sequence[Json] = (),
    ) -> None:
        """One group's (or, for system jobs, one node's) placements, stops and updates.

        ``held``: failed allocations Nomad will not reschedule; they still hold their
        name and count toward the group's count (``scheduler/reconciler``: they stay
        untainted), so they are not replaced. A scale-in (``computeStop`` in
        ``reconcile_cluster.go``) stops the highest name indexes. From 2.0.4 (GH-27971,
        "stop failed allocations first when downscaling", ``filterByServerTerminal``) a
        held failed allocation with such an index is the one stopped; before, it was
        filtered out of the candidates and an arbitrary live allocation (Go map order)
        was stopped in its place; the fake stops the lowest live index then.
        """
        desired = max(desired, 0)
        same = [a for a in live if a["Job"]["Version"] == job["Version"]]
        older = [a for a in live if a["Job"]["Version"] != job["Version"]]
        destructive = [a for a in older if _destructive(a["Job"], job, a["TaskGroup"])]
        inplace = [a for a in older if a not in destructive]
        if not nodes:
            plan.stop += live
            return
        if canary and destructive:
            have = [a for a in same if (a.get("DeploymentStatus") or {}).get("Canary")]
            plan.ignore += live
            plan.canaries = canary
            free = sorted(_name_index(a) for a in destructive)
            for i in range(max(canary - len(have), 0)):
                slot = free[i] if i < len(free) else self._free_index(live, plan)
                plan.place.append((slot, self._pick_node(nodes, live, plan), True))
            return
        keep = same + inplace
        holding = list(held)
        if len(keep) + len(holding) > desired:
            remove = len(keep) + len(holding) - desired
            highest = sorted(keep + holding, key=_name_index, reverse=True)[:remove]
            if self.version >= (2, 0, 4):
                surplus = highest
            else:
                surplus = [a for a in highest if a in keep]
                spare = sorted((a for a in keep if a not in surplus), key=_name_index)
                surplus += spare[: remove - len(surplus)]
            plan.stop += surplus
            keep = [a for a in keep if a not in surplus]
            holding = [a for a in holding if a not in surplus]
        desired -= len(holding)
        plan.ignore += [a for a in keep if a in same]
        plan.inplace += [a for a in keep if a in inplace]
        room = max(desired - len(keep), 0)
        # Replace first the allocations whose name index no kept allocation (e.g. a
        # promoted canary) already holds; the others are just stopped.
        held_names = {_name_index(a) for a in keep + holding}
        destructive.sort(key=lambda a: (_name_index(a) in held_names, _name_index(a)))
        replaced, extra = destructive[:room], destructive[room:]
        plan.destructive += replaced
        plan.stop += extra
        plan.new_place += room - len(replaced)
        taken = set(held_names)
        wanted = [_name_index(a) for a in replaced] + [-1] * (room - len(replaced))
        for want, alloc in itertools.zip_longest(wanted, replaced):
            slot = want
            if slot < 0 or slot in taken:
                slot = 0
                while slot in taken:
                    slot += 1
            taken.add(slot)
            prefer = alloc["NodeID"] if alloc is not None else None
            plan.place.append((slot, self._pick_node(nodes, keep, plan, prefer=prefer), False))

    @staticmethod
    def _free_index(existing: list[Json], plan: _GroupPlan) -> int:
        taken = {_name_index(a) for a in existing} | {slot for slot, _, _ in plan.place}
        slot = 0
        while slot in taken:
            slot += 1
        return slot

    @staticmethod
    def _pick_node(nodes: list[FakeNode], live: list[Json], plan: _GroupPlan, prefer: str | None = None) -> FakeNode:
        if prefer is not None:
            for node in nodes:
                if node.id == prefer:
                    return node
        load = {n.id: 0 for n in nodes}
        for alloc in live:
            if alloc["NodeID"] in load:
                load[alloc["NodeID"]] += 1
        for _, node, _ in plan.place:
            if node.id in load:
                load[node.id] += 1
        return min(nodes, key=lambda n: load[n.id])

    def _process_eval(self, eval_id: str) -> None:
        ev = self._evals.get(eval_id)
        if ev is None or ev["Status"] != "pending":
            return
        key = self._eval_key(ev)
        job = self._jobs.get(key)
        idx = self._next()
        ev["SnapshotIndex"] = idx - 1
        if job is None or job["Stop"]:
            for alloc in self._job_allocs(key, any_create_index=True):
                if not _alloc_terminal(alloc):
                    self._stop_alloc(alloc, idx, "alloc not needed due to job update")
            for dep in self._job_deploys(key, any_create_index=True):
                if dep["Status"] in ("running", "paused", "pending"):
                    dep["Status"] = "cancelled"
                    dep["StatusDescription"] = "Cancelled because job is stopped"
                    self._save_deploy(dep, idx)
            ev["Status"] = "complete"
            self._save_eval(ev, idx)
            self._refresh_status(key, idx)
            return
        script = self._script_for(key)
        if script is not None and script.name == "unplaceable" and script.version in (None, job["Version"]):
            self._fail_placement(ev, job, script, idx)
        else:
            self._apply_plan(ev, job, idx)
        self._refresh_status(key, idx)

    def _alloc_metric(self, job: Json, script: Scenario, tg: Mapping[str, Any]) -> Json:
        """An AllocationMetric (api/allocations.go) explaining why no node fits."""
        nodes = self._eligible_nodes(job)
        n = len(nodes)
        params = script.params
        constraint = params.get("constraint", "${attr.kernel.name} = linux")
        dimension = params.get("dimension", "memory")
        default_filtered = n if dimension is None else (0 if constraint is None else n // 2)
        filtered = int(params.get("filtered", default_filtered))
        exhausted = int(params.get("exhausted", n - filtered))
        dcs = [d for d in job.get("Datacenters") or [] if d != "*"] or ["dc1"]
        available: dict[str, int] = {}
        for node in nodes:
            dc = node.datacenter or dcs[0]
            available[dc] = available.get(dc, 0) + 1
        return {
            "NodesEvaluated": n,
            "NodesFiltered": filtered,
            "NodesInPool": n,
            "NodesAvailable": available,
            "ClassFiltered": params.get("class_filtered"),
            "ConstraintFiltered": {constraint: filtered} if constraint and filtered else None,
            "NodesExhausted": exhausted,
            "ClassExhausted": None,
            "DimensionExhausted": {dimension: exhausted} if dimension and exhausted else None,
            "QuotaExhausted": None,
            "ResourcesExhausted": None,
            "Scores": None,
            "ScoreMetaData": None,
            "AllocationTime": 52_345,
            "CoalescedFailures": max(self._desired(job, tg) - 1, 0),
        }

    def _fail_placement(self, ev: Json, job: Json, script: Scenario, idx: int) -> None:
        key = self._eval_key(ev)
        groups = [tg for tg in job["TaskGroups"] if self._desired(job, tg) > 0 or job["Type"] == "system"]
        failed = {tg["Name"]: self._alloc_metric(job, script, tg) for tg in groups}
        queued = {tg["Name"]: max(self._desired(job, tg), 1) for tg in groups}
        dep_id = ""
        if job["Type"] == "service":
            plans = {tg["Name"]: _GroupPlan(desired=self._desired(job, tg)) for tg in job["TaskGroups"]}
            dep = self._new_deployment(job, plans, idx)
            dep_id = dep["ID"]
            deadline = script.params.get("progress_deadline")
            if deadline is not None:
                self._schedule(float(deadline), functools.partial(self._deadline_passed, dep_id))
        blocked = self._new_eval(
            key, job, "queued-allocs", idx, job_modify_index=int(job["JobModifyIndex"]), status="blocked"
        )
        blocked.update(
            StatusDescription="created to place remaining allocations",
            PreviousEval=ev["ID"],
            ClassEligibility={"v1:7968290453076422024": False},
            QueuedAllocations=queued,
        )
        self._save_eval(blocked, idx)
        ev.update(
            Status="complete",
            FailedTGAllocs=failed,
            BlockedEval=blocked["ID"],
            QueuedAllocations=queued,
            DeploymentID=dep_id,
            ClassEligibility={"v1:7968290453076422024": False},
        )
        self._save_eval(ev, idx)

    def _deadline_passed(self, dep_id: str) -> None:
        dep = self._deploys.get(dep_id)
        if dep is not None and dep["Status"] == "running":
            self._fail_deployment(dep, "Failed due to progress deadline", self._next())

    def _apply_plan(self, ev: Json, job: Json, idx: int) -> None:
        key = self._eval_key(ev)
        active = next(
            (
                d
                for d in self._job_deploys(key)
                if d["JobVersion"] == job["Version"] and d["Status"] in ("running", "paused", "pending")
            ),
            None,
        )
        plans = self._reconcile(key, job, active)
        dep = active
        tracked = job["Type"] == "service" or self._system_deployments(job)
        if dep is None and tracked and any(p.changes for p in plans.values()):
            dep = self._new_deployment(job, plans, idx)
        if any(p.limited for p in plans.values()) and self.version < (1, 11):
            # NextRollingEval(job.Update.Stagger): the next batch, whatever this one's health.
            stagger = int((job.get("Update") or {}).get("Stagger") or 0) / 1e9
            follow = self._new_eval(
                key, job, "rolling-update", idx, job_modify_index=int(job["JobModifyIndex"]), wait=stagger
            )
            follow["PreviousEval"] = ev["ID"]
            ev["NextEval"] = follow["ID"]
        for plan in plans.values():
            for alloc in plan.stop:
                self._stop_alloc(alloc, idx, "alloc not needed due to job update")
            for alloc in plan.destructive:
                self._stop_alloc(alloc, idx, "alloc is being updated due to job update")
            for alloc in plan.inplace:
                self._update_in_place(alloc, job, dep, idx)
        for name, plan in plans.items():
            for slot, node, canary in plan.place:
                alloc = self._place(ev, job, name, slot, node, dep, canary, idx)
                if canary and dep is not None:
                    placed = dep["TaskGroups"][name].setdefault("PlacedCanaries", []) or []
                    placed.append(alloc["ID"])
                    dep["TaskGroups"][name]["PlacedCanaries"] = placed
        ev.update(
            Status="complete",
            DeploymentID=dep["ID"] if dep is not None else "",
            QueuedAllocations={name: 0 for name in plans},
            PlanAnnotations=None,
        )
        self._save_eval(ev, idx)
        if dep is not None:
            self._watch_deployment(dep["ID"], idx)

    def _place(
        self, ev: Json, job: Json, group: str, slot: int, node: FakeNode, dep: Json | None, canary: bool, idx: int
    ) -> Json:
        key = self._eval_key(ev)
        tg = _group(job, group) or {}
        now = time.time_ns()
        tasks = tg.get("Tasks") or []
        dcs = [d for d in job.get("Datacenters") or [] if d != "*"] or ["dc1"]
        alloc: Json = {
            "ID": _new_id(),
            "Namespace": key[0],
            "EvalID": ev["ID"],
            "Name": f"{job['ID']}.{group}[{slot}]",
            "NodeID": node.id,
            "NodeName": node.name,
            "JobID": job["ID"],
            "Job": copy.deepcopy(job),
            "TaskGroup": group,
            "Resources": None,
            "TaskResources": None,
            "AllocatedResources": {
                "Tasks": {
                    t["Name"]: {
                        "Cpu": {
                            "CpuShares": (t.get("Resources") or {}).get("CPU", 100),
                            "ReservedCores": None,
                        },
                        "Memory": {
                            "MemoryMB": (t.get("Resources") or {}).get("MemoryMB", 300),
                            "MemoryMaxMB": (t.get("Resources") or {}).get("MemoryMaxMB", 0),
                        },
                        "Networks": None,
                        "Devices": None,
                    }
                    for t in tasks
                },
                "TaskLifecycles": {t["Name"]: t.get("Lifecycle") for t in tasks},
                "Shared": {
                    "DiskMB": (tg.get("EphemeralDisk") or {}).get("SizeMB", 300),
                    "Networks": None,
                    "Ports": None,
                },
            },
            "Services": None,
            "Metrics": {
                "NodesEvaluated": len(self._nodes),
                "NodesFiltered": 0,
                "NodesInPool": len(self._nodes),
                "NodesAvailable": {node.datacenter or dcs[0]: len(self._nodes)},
                "ClassFiltered": None,
                "ConstraintFiltered": None,
                "NodesExhausted": 0,
                "ClassExhausted": None,
                "DimensionExhausted": None,
                "QuotaExhausted": None,
                "ResourcesExhausted": None,
                "Scores": None,
                "ScoreMetaData": [{"NodeID": node.id, "Scores": {"binpack": 0.5}, "NormScore": 0.5}],
                "AllocationTime": 41_234,
                "CoalescedFailures": 0,
            },
            "DesiredStatus": "run",
            "DesiredDescription": "",
            "DesiredTransition": {"Migrate": None, "Reschedule": None, "ForceReschedule": None},
            "ClientStatus": "pending",
            "ClientDescription": "No tasks have started",
            "TaskStates": None,
            "DeploymentID": dep["ID"] if dep is not None else "",
            "DeploymentStatus": (
                {"Healthy": None, "Timestamp": ZERO_TIME, "Canary": True, "ModifyIndex": idx} if canary else None
            ),
            "FollowupEvalID": "",
            "PreviousAllocation": "",
            "NextAllocation": "",
            "RescheduleTracker": None,
            "PreemptedAllocations": None,
            "PreemptedByAllocation": "",
            "CreateIndex": idx,
            "ModifyIndex": idx,
            "AllocModifyIndex": idx,
            "CreateTime": now,
            "ModifyTime": now,
        }
        self._allocs[alloc["ID"]] = alloc
        self._save_alloc(alloc, idx)
        outcome = self._scenario_for(key, int(job["Version"]), count=True)
        self._alloc_outcome[alloc["ID"]] = outcome
        delay = outcome.delay if outcome.delay is not None else self._delay_for(key)
        if outcome.name == "bad_image":
            self._schedule(delay, functools.partial(self._client_bad_image, alloc["ID"], outcome))
        else:
            self._schedule(delay, functools.partial(self._client_started, alloc["ID"], outcome))
        return alloc

    def _update_in_place(self, alloc: Json, job: Json, dep: Json | None, idx: int) -> None:
        alloc["Job"] = copy.deepcopy(job)
        alloc["AllocModifyIndex"] = idx
        if dep is not None:
            alloc["DeploymentID"] = dep["ID"]
            alloc["DeploymentStatus"] = None
            outcome = self._alloc_outcome.get(alloc["ID"], HEALTHY)
            if alloc["ClientStatus"] == "running" and outcome.name != "oom":
                healthy = outcome.name != "failing_check"
                self._schedule(
                    self._delay_for(self._alloc_key(alloc)),
                    functools.partial(self._set_health, alloc["ID"], healthy),
                )
        self._save_alloc(alloc, idx)

    def _stop_alloc(self, alloc: Json, idx: int, description: str) -> None:
        alloc["DesiredStatus"] = "stop"
        alloc["DesiredDescription"] = description
        alloc["AllocModifyIndex"] = idx
        self._save_alloc(alloc, idx)
        self._emit(self._on_stop, alloc)
        self._schedule(self.step_delay, functools.partial(self._client_killed, alloc["ID"]))

    # -- the clients -----------------------------------------------------------------------

    def _tasks(self, alloc: Mapping[str, Any]) -> list[Json]:
        tg = _group(alloc["Job"], str(alloc["TaskGroup"])) or {}
        return list(tg.get("Tasks") or [{"Name": "task", "Config": {}}])

    @staticmethod
    def _image(task: Mapping[str, Any]) -> str:
        return str((task.get("Config") or {}).get("image") or "example/image:latest")

    def _runnable(self, alloc_id: str) -> Json | None:
        alloc = self._allocs.get(alloc_id)
        if alloc is None or alloc["DesiredStatus"] != "run" or alloc["ClientStatus"] in ("complete", "failed", "lost"):
            return None
        return alloc

    def _delay_of(self, alloc: Mapping[str, Any], outcome: Scenario) -> float:
        return outcome.delay if outcome.delay is not None else self._delay_for(self._alloc_key(alloc))

    def _client_started(self, alloc_id: str, outcome: Scenario) -> None:
        alloc = self._runnable(alloc_id)
        if alloc is None:
            return
        idx = self._next()
        base = time.time_ns()
        states: dict[str, Json] = {}
        for task in self._tasks(alloc):
            events = [
                task_event("Received", at_ns=base),
                task_event("Task Setup", at_ns=base + 1_000, message="Building Task Directory"),
                task_event("Driver", at_ns=base + 2_000, driver_message=f"Downloading image {self._image(task)}"),
                task_event("Started", at_ns=base + 3_000),
            ]
            states[task["Name"]] = {
                "State": "running",
                "Failed": False,
                "Restarts": 0,
                "LastRestart": ZERO_TIME,
                "StartedAt": _now_rfc3339(),
                "FinishedAt": ZERO_TIME,
                "Events": events,
                "TaskHandle": None,
            }
        alloc["TaskStates"] = states
        alloc["ClientStatus"] = "running"
        alloc["ClientDescription"] = "Tasks are running"
        self._save_alloc(alloc, idx)
        self._refresh_status(self._alloc_key(alloc), idx)
        self._emit(self._on_running, alloc)
        delay = self._delay_of(alloc, outcome)
        if outcome.name == "failing_check":
            self._schedule(delay, functools.partial(self._client_check_failed, alloc_id, outcome))
        elif outcome.name == "oom":
            self._schedule(delay, functools.partial(self._client_oom, alloc_id, outcome, 0))
        elif outcome.name == "batch_complete":
            self._schedule(delay, functools.partial(self._client_completed, alloc_id, outcome))
        elif alloc.get("DeploymentID"):
            self._schedule(delay, functools.partial(self._set_health, alloc_id, True))

    def _client_bad_image(self, alloc_id: str, outcome: Scenario) -> None:
        alloc = self._runnable(alloc_id)
        if alloc is None:
            return
        idx = self._next()
        base = time.time_ns()
        states: dict[str, Json] = {}
        for task in self._tasks(alloc):
            image = str(outcome.params.get("image") or self._image(task))
            error = str(
                outcome.params.get("message")
                or f"Failed to pull `{image}`: Error response from daemon: manifest for {image} not found: "
                "manifest unknown: manifest unknown"
            )
            events = [
                task_event("Received", at_ns=base),
                task_event("Task Setup", at_ns=base + 1_000, message="Building Task Directory"),
                task_event("Driver", at_ns=base + 2_000, driver_message=f"Downloading image {image}"),
                task_event("Driver Failure", at_ns=base + 3_000, driver_error=error, details={"driver_error": error}),
                task_event(
                    "Not Restarting",
                    at_ns=base + 4_000,
                    restart_reason="Error was unrecoverable",
                    fails_task=True,
                    details={"restart_reason": "Error was unrecoverable", "fails_task": "true"},
                ),
            ]
            states[task["Name"]] = {
                "State": "dead",
                "Failed": True,
                "Restarts": 0,
                "LastRestart": ZERO_TIME,
                "StartedAt": ZERO_TIME,
                "FinishedAt": _now_rfc3339(),
                "Events": events,
                "TaskHandle": None,
            }
        alloc["TaskStates"] = states
        alloc["ClientStatus"] = "failed"
        alloc["ClientDescription"] = "Failed tasks"
        self._save_alloc(alloc, idx)
        if alloc.get("DeploymentID"):
            self._set_health(alloc_id, False, idx)
        self._refresh_status(self._alloc_key(alloc), idx)

    def _client_check_failed(self, alloc_id: str, outcome: Scenario) -> None:
        alloc = self._runnable(alloc_id)
        if alloc is None:
            return
        idx = self._next()
        base = time.time_ns()
        check = str(outcome.params.get("check") or self._first_check(alloc) or "startd")
        reason = f'healthcheck: check "{check}" unhealthy'
        for task in self._tasks(alloc):
            state = alloc["TaskStates"][task["Name"]]
            state["Events"] += [
                task_event("Restart Signaled", at_ns=base, restart_reason=reason, details={"restart_reason": reason}),
                task_event(
                    "Terminated",
                    at_ns=base + 1_000,
                    exit_code=143,
                    signal=15,
                    details={"exit_code": "143", "signal": "15", "oom_killed": "false"},
                ),
                task_event("Restarting", at_ns=base + 2_000, start_delay=15_000_000_000),
                task_event("Started", at_ns=base + 3_000),
            ]
            state["Restarts"] = int(state["Restarts"]) + 1
            state["LastRestart"] = _now_rfc3339()
        self._save_alloc(alloc, idx)
        if alloc.get("DeploymentID"):
            self._set_health(alloc_id, False, idx)

    def _first_check(self, alloc: Mapping[str, Any]) -> str | None:
        tg = _group(alloc["Job"], str(alloc["TaskGroup"])) or {}
        services = list(tg.get("Services") or [])
        for task in tg.get("Tasks") or []:
            services += task.get("Services") or []
        for service in services:
            for check in service.get("Checks") or []:
                if check.get("Name"):
                    return str(check["Name"])
        return None

    def _client_oom(self, alloc_id: str, outcome: Scenario, round_: int) -> None:
        alloc = self._runnable(alloc_id)
        if alloc is None:
            return
        idx = self._next()
        base = time.time_ns()
        exit_code = int(outcome.params.get("exit_code", 137))
        final = round_ >= 1
        for task in self._tasks(alloc):
            state = alloc["TaskStates"][task["Name"]]
            terminated = task_event(
                "Terminated",
                at_ns=base,
                exit_code=exit_code,
                message="OOM Killed",
                details={
                    "exit_code": str(exit_code),
                    "signal": "0",
                    "exit_message": "OOM Killed",
                    "oom_killed": "true",
                },
            )
            if final:
                policy = (_group(alloc["Job"], str(alloc["TaskGroup"])) or {}).get("RestartPolicy") or {}
                attempts = int(policy.get("Attempts", 2))
                interval = int(policy.get("Interval", 1_800_000_000_000))
                mode = str(policy.get("Mode", "fail"))
                why = f'Exceeded allowed attempts {attempts} in interval {go_duration(interval)} and mode is "{mode}"'
                state["Events"] += [
                    terminated,
                    task_event("Not Restarting", at_ns=base + 1_000, restart_reason=why, fails_task=True),
                ]
                state.update(State="dead", Failed=True, FinishedAt=_now_rfc3339())
            else:
                state["Events"] += [
                    terminated,
                    task_event(
                        "Restarting",
                        at_ns=base + 1_000,
                        restart_reason="Restart within policy",
                        start_delay=15_000_000_000,
                    ),
                    task_event("Started", at_ns=base + 2_000),
                ]
                state["Restarts"] = int(state["Restarts"]) + 1
                state["LastRestart"] = _now_rfc3339()
        if final:
            alloc["ClientStatus"] = "failed"
            alloc["ClientDescription"] = "Failed tasks"
        self._save_alloc(alloc, idx)
        if final:
            if alloc.get("DeploymentID"):
                self._set_health(alloc_id, False, idx)
            self._refresh_status(self._alloc_key(alloc), idx)
        else:
            self._schedule(self._delay_of(alloc, outcome), functools.partial(self._client_oom, alloc_id, outcome, 1))

    def _client_completed(self, alloc_id: str, outcome: Scenario) -> None:
        alloc = self._runnable(alloc_id)
        if alloc is None:
            return
        self._tasks_exited(alloc, int(outcome.params.get("exit_code", 0)))

    def _tasks_exited(self, alloc: Json, exit_code: int) -> None:
        """Every task of the allocation ended by itself with ``exit_code``; the client reports it."""
        alloc_id = str(alloc["ID"])
        idx = self._next()
        failed = exit_code != 0
        for task in self._tasks(alloc):
            state = alloc["TaskStates"][task["Name"]]
            state["Events"].append(
                task_event(
                    "Terminated",
                    exit_code=exit_code,
                    message="" if not failed else f"Docker container exited with non-zero exit code: {exit_code}",
                    details={"exit_code": str(exit_code), "signal": "0", "oom_killed": "false"},
                )
            )
            if failed:
                state["Events"].append(
                    task_event("Not Restarting", restart_reason="Policy allows no restarts", fails_task=True)
                )
            state.update(State="dead", Failed=failed, FinishedAt=_now_rfc3339())
        alloc["ClientStatus"] = "failed" if failed else "complete"
        alloc["ClientDescription"] = "Failed tasks" if failed else "All tasks have completed"
        self._save_alloc(alloc, idx)
        if alloc.get("DeploymentID"):
            self._set_health(alloc_id, not failed, idx)
        self._refresh_status(self._alloc_key(alloc), idx)

    def _client_killed(self, alloc_id: str) -> None:
        alloc = self._allocs.get(alloc_id)
        if alloc is None or alloc["ClientStatus"] not in ("pending", "running"):
            return
        idx = self._next()
        base = time.time_ns()
        for task in self._tasks(alloc):
            state = (alloc.get("TaskStates") or {}).get(task["Name"])
            if state is None:
                continue
            # The client caps the job's kill_timeout at its max_kill_timeout (see kill_timeout()).
            kill_timeout = min(int(task.get("KillTimeout") or 5_000_000_000), int(self.max_kill_timeout * 1e9))
            state["Events"] += [
                task_event("Killing", at_ns=base, kill_timeout=kill_timeout),
                task_event("Terminated", at_ns=base + 1_000, details={"exit_code": "0", "signal": "0"}),
                task_event("Killed", at_ns=base + 2_000),
            ]
            state.update(State="dead", FinishedAt=_now_rfc3339())
        alloc["ClientStatus"] = "complete"
        alloc["ClientDescription"] = "All tasks have completed"
        self._save_alloc(alloc, idx)
        self._refresh_status(self._alloc_key(alloc), idx)

    def _set_health(self, alloc_id: str, healthy: bool, idx: int | None = None) -> None:
        alloc = self._allocs.get(alloc_id)
        if alloc is None or not alloc.get("DeploymentID"):
            return
        if healthy and alloc["DesiredStatus"] != "run":
            return
        idx = idx if idx is not None else self._next()
        previous = alloc.get("DeploymentStatus") or {}
        alloc["DeploymentStatus"] = {
            "Healthy": healthy,
            "Timestamp": _now_rfc3339(),
            "Canary": bool(previous.get("Canary")),
            "ModifyIndex": idx,
        }
        self._save_alloc(alloc, idx)
        self._watch_deployment(str(alloc["DeploymentID"]), idx)
        dep = self._deploys.get(str(alloc["DeploymentID"]))
        if healthy and dep is not None and dep["Status"] == "running" and alloc["Job"]["Type"] == "system":
            # nomad/deploymentwatcher: a healthy allocation lets the next batch go (a new evaluation).
            key = self._alloc_key(alloc)
            job = self._jobs.get(key)
            if job is not None and job["Version"] == dep["JobVersion"]:
                self._new_eval(key, job, "deployment-watcher", idx, job_modify_index=int(job["JobModifyIndex"]))


# ---------------------------------------------------------------------------
# Plan diffs (structs.JobDiff: a simple but honest field-level diff)


def _fmt(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return ""
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def _flatten(value: Any, prefix: str = "") -> dict[str, str]:
    """Nomad's flatmap: nested maps as ``a.b``, lists as ``a[0]``."""
    out: dict[str, str] = {}
    if isinstance(value, dict):
        for k in sorted(value):
            out.update(_flatten(value[k], f"{prefix}.{k}" if prefix else str(k)))
    elif isinstance(value, list):
        for i, item in enumerate(value):
            out.update(_flatten(item, f"{prefix}[{i}]"))
    elif value is not None:
        out[prefix] = _fmt(value)
    return out


def _diff_type(old: object, new: object, changed: bool) -> str:
    if old is None and new is not None:
        return "Added"
    if new is None and old is not None:
        return "Deleted"
    return "Edited" if changed else "None"


def _field_diffs(old: Mapping[str, str], new: Mapping[str, str], *, contextual: bool = True) -> list[Json]:
    """structs.fieldDiff over two flattened structs: a missing value is "", as in Nomad."""
    out = []
    for name in sorted(set(old) | set(new)):
        o, n = old.get(name, ""), new.get(name, "")
        kind = "None" if o == n else "Added" if o == "" else "Deleted" if n == "" else "Edited"
        if kind != "None" or contextual:
            out.append({"Type": kind, "Name": name, "Old": o, "New": n, "Annotations": None})
    return out


def _primitives(obj: Mapping[str, Any] | None, skip: frozenset[str] | set[str]) -> dict[str, str]:
    """The primitive fields of a struct, and its string maps as ``Meta[key]``."""
    out: dict[str, str] = {}
    for key, value in (obj or {}).items():
        if key in skip:
            continue
        if (
            isinstance(value, dict)
            and key in ("Meta", "Env")
            and all(not isinstance(v, dict | list) for v in value.values())
        ):
            for mk, mv in value.items():
                out[f"{key}[{mk}]"] = _fmt(mv)
        elif not isinstance(value, dict | list) and value is not None:
            out[key] = _fmt(value)
    return out


def _object_diffs(old: Mapping[str, Any] | None, new: Mapping[str, Any] | None, skip: set[str]) -> list[Json]:
    out = []
    keys = {k for k, v in (old or {}).items() if isinstance(v, dict | list)} | {
        k for k, v in (new or {}).items() if isinstance(v, dict | list)
    }
    for key in sorted(keys - skip - {"Meta", "Env"}):
        o, n = (old or {}).get(key), (new or {}).get(key)
        if o == n or (not o and not n):
            continue
        if key == "Templates":
            out += _template_diffs(o or [], n or [])
            continue
        if all(isinstance(v, list) and all(not isinstance(x, dict | list) for x in v) for v in (o or [], n or [])):
            # a set of strings (Datacenters, ...): one field per added or removed value (stringSetDiff)
            before, after = {_fmt(x) for x in o or []}, {_fmt(x) for x in n or []}
            fields = [
                {"Type": "Added", "Name": key, "Old": "", "New": v, "Annotations": None} for v in sorted(after - before)
            ] + [
                {"Type": "Deleted", "Name": key, "Old": v, "New": "", "Annotations": None}
                for v in sorted(before - after)
            ]
            if not fields:
                continue
        else:
            fields = _field_diffs(_flatten(o, ""), _flatten(n, ""), contextual=False)
        out.append({"Type": _diff_type(o or None, n or None, True), "Name": key, "Fields": fields, "Objects": None})
    return out


def _template_diffs(old: list[Json], new: list[Json]) -> list[Json]:
    """``structs.templateDiffs``: one "Template" object per changed template, matched by
    ``DiffID`` (the destination), Edited with contextual fields (``DestPath`` unchanged)."""
    out = []
    olds = {t.get("DestPath"): t for t in old}
    news = {t.get("DestPath"): t for t in new}
    for dest in sorted(set(olds) | set(news), key=str):
        o, n = olds.get(dest), news.get(dest)
        if o == n:
            continue
        fields = _field_diffs(_primitives(o, set()), _primitives(n, set()), contextual=o is not None and n is not None)
        out.append({"Type": _diff_type(o, n, True), "Name": "Template", "Fields": fields, "Objects": None})
    return out


def _task_diff(old: Mapping[str, Any] | None, new: Mapping[str, Any] | None, annotation: str | None) -> Json:
    fields = _field_diffs(_primitives(old, {"Name"}), _primitives(new, {"Name"}))
    objects = _object_diffs(old, new, set())
    changed = any(f["Type"] != "None" for f in fields) or bool(objects)
    kind = _diff_type(old, new, changed)
    return {
        "Type": kind,
        "Name": (new or old or {}).get("Name", ""),
        "Fields": fields,
        "Objects": objects or None,
        "Annotations": [annotation] if annotation and kind != "None" else None,
    }


def _tg_diff(old: Mapping[str, Any] | None, new: Mapping[str, Any] | None, plan: _GroupPlan | None) -> Json:
    fields = _field_diffs(_primitives(old, {"Name"}), _primitives(new, {"Name"}))
    for f in fields:
        if f["Name"] == "Count" and f["Type"] == "Edited":
            f["Annotations"] = ["forces create"] if int(f["New"] or 0) > int(f["Old"] or 0) else ["forces destroy"]
    objects = _object_diffs(old, new, {"Tasks"})
    if old is None:
        annotation = "forces create"
    elif new is None:
        annotation = "forces destroy"
    elif plan is not None and (plan.destructive or plan.canaries):
        annotation = "forces create/destroy update"
    else:
        annotation = "forces in-place update"
    old_tasks = {t["Name"]: t for t in (old or {}).get("Tasks") or []}
    new_tasks = {t["Name"]: t for t in (new or {}).get("Tasks") or []}
    names = list(new_tasks) + [n for n in old_tasks if n not in new_tasks]
    tasks = [_task_diff(old_tasks.get(n), new_tasks.get(n), annotation) for n in names]
    changed = any(f["Type"] != "None" for f in fields) or bool(objects) or any(t["Type"] != "None" for t in tasks)
    updates = None
    if plan is not None:
        words = {
            "create": plan.new_place,
            "destroy": len(plan.stop),
            "create/destroy update": len(plan.destructive),
            "in-place update": len(plan.inplace),
            "ignore": len(plan.ignore),
            "canary": plan.canaries,
        }
        updates = {k: v for k, v in words.items() if v}
    return {
        "Type": _diff_type(old, new, changed),
        "Name": (new or old or {}).get("Name", ""),
        "Fields": fields,
        "Objects": objects or None,
        "Tasks": tasks,
        "Updates": updates or None,
    }


def job_diff(
    old: Mapping[str, Any] | None, new: Mapping[str, Any] | None, plans: Mapping[str, _GroupPlan] | None = None
) -> Json:
    """A structs.JobDiff between two jobs (contextual: unchanged primitive fields have Type "None")."""
    skip = set(SERVER_SET_FIELDS) | {"TaskGroups", "ID"}
    fields = _field_diffs(_primitives(old, skip), _primitives(new, skip))
    objects = _object_diffs(old, new, skip)
    old_groups = {g["Name"]: g for g in (old or {}).get("TaskGroups") or []}
    new_groups = {g["Name"]: g for g in (new or {}).get("TaskGroups") or []}
    names = list(new_groups) + [n for n in old_groups if n not in new_groups]
    groups = [_tg_diff(old_groups.get(n), new_groups.get(n), (plans or {}).get(n)) for n in names]
    changed = any(f["Type"] != "None" for f in fields) or bool(objects) or any(g["Type"] != "None" for g in groups)
    return {
        "Type": _diff_type(old, new, changed),
        "ID": (new or old or {}).get("ID", ""),
        "Fields": fields,
        "Objects": objects or None,
        "TaskGroups": groups,
    }
