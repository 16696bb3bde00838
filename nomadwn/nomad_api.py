"""Typed structs of Nomad's HTTP job API, named exactly as Nomad names them.

Nomad's JSON decoder silently drops fields it does not know, so a misspelled key
is a silent bug. These models use Nomad's own Go field names (from its ``api``
package: ``api/jobs.go``, ``api/tasks.go``, ``api/services.go``,
``api/resources.go``), forbid anything else, and hold durations as integer
nanoseconds, as the API requires. ``None`` means "leave it to Nomad's default" and
is left out of the JSON.

The field names are Go's, not Python's, on purpose: this module *is* the API.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict


class ApiStruct(BaseModel):
    """Base of every API struct: Nomad's field names only, no extras."""

    model_config = ConfigDict(extra="forbid", frozen=True)


class Constraint(ApiStruct):
    """``api.Constraint``."""

    LTarget: str
    RTarget: str
    Operand: str


class SpreadTarget(ApiStruct):
    """``api.SpreadTarget``."""

    Value: str
    Percent: int


_SpreadTarget = SpreadTarget  # fields below are named like this struct


class Spread(ApiStruct):
    """``api.Spread``."""

    Attribute: str
    Weight: int
    SpreadTarget: list[_SpreadTarget] | None = None


class UpdateStrategy(ApiStruct):
    """``api.UpdateStrategy`` (durations in ns).

    Every field may be left out: ``api.UpdateStrategy.Canonicalize`` fills Nomad's
    defaults. A system job on Nomad 1.10 gets only ``MaxParallel`` and ``Stagger``,
    the two fields its scheduler reads (``scheduler/scheduler_system.go``).
    """

    Stagger: int | None = None
    MaxParallel: int | None = None
    HealthCheck: str | None = None
    MinHealthyTime: int | None = None
    HealthyDeadline: int | None = None
    ProgressDeadline: int | None = None
    AutoRevert: bool | None = None
    AutoPromote: bool | None = None
    Canary: int | None = None


class CheckRestart(ApiStruct):
    """``api.CheckRestart`` (Grace in ns)."""

    Limit: int
    Grace: int
    IgnoreWarnings: bool


_CheckRestart = CheckRestart  # fields below are named like this struct


class ServiceCheck(ApiStruct):
    """``api.ServiceCheck``: a script check run inside the task, or an HTTP check on ``Path``."""

    Name: str
    Type: Literal["script", "http"]
    Command: str | None = None
    Args: list[str] | None = None
    Path: str | None = None
    Interval: int
    Timeout: int
    CheckRestart: _CheckRestart | None = None


class Service(ApiStruct):
    """``api.Service``; ``PortLabel`` is what HCL calls ``port``."""

    Name: str
    PortLabel: str
    Provider: Literal["consul"]
    Tags: list[str]
    Meta: dict[str, str] | None = None
    Checks: list[ServiceCheck]


class Template(ApiStruct):
    """``api.Template``; HCL's ``data`` and ``destination`` are ``EmbeddedTmpl`` and ``DestPath``."""

    EmbeddedTmpl: str
    DestPath: str
    ChangeMode: str
    ChangeSignal: str | None = None
    Perms: str
    Envvars: bool | None = None


class Resources(ApiStruct):
    """``api.Resources``; HCL's ``memory`` is ``MemoryMB``."""

    CPU: int | None = None
    Cores: int | None = None
    MemoryMB: int
    MemoryMaxMB: int | None = None


_Resources = Resources  # fields below are named like this struct


class LogConfig(ApiStruct):
    """``api.LogConfig``; HCL's ``logs { max_file_size }`` is ``MaxFileSizeMB``."""

    MaxFiles: int
    MaxFileSizeMB: int


_LogConfig = LogConfig  # fields below are named like this struct


class VolumeMount(ApiStruct):
    """``api.VolumeMount``."""

    Volume: str
    Destination: str
    ReadOnly: bool
    PropagationMode: str


class WorkloadIdentity(ApiStruct):
    """``api.WorkloadIdentity``: a workload-identity JWT for the task (``identity`` block).

    The unnamed (default) identity is ``api.Task.Identity``, audience ``nomadproject.io``
    (set by Nomad; no TTL allowed); named ones (``vault_default``) are in ``Identities``.
    """

    Name: str | None = None
    Audience: list[str] | None = None
    ChangeMode: Literal["noop", "restart"] | None = None
    Env: bool | None = None
    File: bool | None = None
    TTL: int | None = None


class Consul(ApiStruct):
    """``api.Consul`` (a task's ``consul`` block): Nomad logs the task in to Consul by workload identity."""

    Namespace: str | None = None


class Vault(ApiStruct):
    """``api.Vault`` (workload identity: a role, no policies)."""

    Role: str | None = None
    ChangeMode: str


_Vault = Vault  # fields below are named like this struct
_Consul = Consul  # fields below are named like this struct


class Task(ApiStruct):
    """``api.Task`` (KillTimeout in ns)."""

    Name: str
    Driver: Literal["docker"]
    Config: dict[str, Any]
    Env: dict[str, str] | None = None
    Services: list[Service]
    Templates: list[Template]
    Resources: _Resources
    LogConfig: _LogConfig
    KillSignal: str
    KillTimeout: int
    ShutdownDelay: int | None = None
    VolumeMounts: list[VolumeMount] | None = None
    Vault: _Vault | None = None
    Consul: _Consul | None = None
    Identity: WorkloadIdentity | None = None
    Identities: list[WorkloadIdentity] | None = None


class Port(ApiStruct):
    """``api.Port``: ``Value`` is a static host port, ``To`` the port inside the task."""

    Label: str
    Value: int | None = None
    To: int | None = None


class NetworkResource(ApiStruct):
    """``api.NetworkResource`` with the group's port labels."""

    ReservedPorts: list[Port] | None = None
    DynamicPorts: list[Port] | None = None


class VolumeRequest(ApiStruct):
    """``api.VolumeRequest`` (a group's ``volume`` block; the map key is its name)."""

    Name: str
    Type: Literal["host"]
    Source: str
    ReadOnly: bool


class RestartPolicy(ApiStruct):
    """``api.RestartPolicy`` (durations in ns)."""

    Attempts: int
    Interval: int
    Delay: int
    Mode: str


_RestartPolicy = RestartPolicy  # fields below are named like this struct


class ReschedulePolicy(ApiStruct):
    """``api.ReschedulePolicy`` (durations in ns)."""

    Attempts: int
    Interval: int
    Delay: int
    DelayFunction: str
    MaxDelay: int
    Unlimited: bool


_ReschedulePolicy = ReschedulePolicy  # fields below are named like this struct


class EphemeralDisk(ApiStruct):
    """``api.EphemeralDisk``; HCL's ``size`` is ``SizeMB``."""

    SizeMB: int


_EphemeralDisk = EphemeralDisk  # fields below are named like this struct


class ScalingPolicy(ApiStruct):
    """``api.ScalingPolicy`` for a group's horizontal count."""

    Min: int
    Max: int
    Enabled: bool


class TaskGroup(ApiStruct):
    """``api.TaskGroup``."""

    Name: str
    Count: int | None = None
    Networks: list[NetworkResource]
    Volumes: dict[str, VolumeRequest] | None = None
    RestartPolicy: _RestartPolicy
    ReschedulePolicy: _ReschedulePolicy | None = None
    EphemeralDisk: _EphemeralDisk
    Scaling: ScalingPolicy | None = None
    Tasks: list[Task]


class ParameterizedJobConfig(ApiStruct):
    """``api.ParameterizedJobConfig`` (HCL's ``parameterized`` block): the job only runs when dispatched."""

    Payload: Literal["optional", "required", "forbidden"]
    MetaRequired: list[str] | None = None
    MetaOptional: list[str] | None = None


class Job(ApiStruct):
    """``api.Job``: one worker flavour, or the site's autoscaler service."""

    ID: str
    Name: str
    Type: Literal["system", "service", "batch"]
    Region: str
    Namespace: str
    Datacenters: list[str]
    NodePool: str
    Priority: int
    Constraints: list[Constraint] | None = None
    Spreads: list[Spread] | None = None
    Update: UpdateStrategy | None = None
    ParameterizedJob: ParameterizedJobConfig | None = None
    Meta: dict[str, str] | None = None
    TaskGroups: list[TaskGroup]

    def body(self) -> dict[str, Any]:
        """The request body for ``POST /v1/jobs``: ``{"Job": {...}}`` without unset fields."""
        return {"Job": self.model_dump(exclude_none=True)}
