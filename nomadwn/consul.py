"""Consul as nomadwn sees it: the :class:`ConsulHealth` and :class:`Leadership` protocols and value types.

Client-free: nothing here imports py-consul or requests. The real implementations
live apart: :class:`~nomadwn.consul_health.ConsulClient` (health reads, over py-consul),
:class:`~nomadwn.consul_lock.ConsulLock` (the leader lock, a Consul session) and
:class:`~nomadwn.consul_settings.ConsulSettings` (how to reach Consul).

An instance's health is Consul's own aggregate (``HealthChecks.AggregatedStatus`` in
Consul's Go API): the worst of its checks, node-level checks included, where a
maintenance check beats everything::

    passing  <  warning  <  critical  <  maintenance

An instance without checks is passing. A status Consul does not document counts as
critical.

With ACLs on and a token that lacks ``service:read``/``node:read``, Consul 1.8 does not
refuse the request: it silently leaves out what the token may not see, so a
missing permission looks like an empty list, not an error.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Final, Literal, Protocol

__all__ = [
    "OUTPUT_LIMIT",
    "CheckState",
    "ConsulHealth",
    "Leadership",
    "ServiceCheck",
    "ServiceHealth",
    "ServiceInstance",
    "parse_instance",
    "worst_state",
]

# ---------------------------------------------------------------------------
# Value types (what callers get back; never raw dicts)

CheckState = Literal["passing", "warning", "critical", "maintenance"]

_RANK: Final[dict[CheckState, int]] = {"passing": 0, "warning": 1, "critical": 2, "maintenance": 3}
_STATES: Final[dict[str, CheckState]] = {"passing": "passing", "warning": "warning", "critical": "critical"}
_NODE_MAINTENANCE: Final = "_node_maintenance"
_SERVICE_MAINTENANCE: Final = "_service_maintenance:"

OUTPUT_LIMIT: Final = 1000
"""Longest check output kept, in characters; longer output is cut and says by how much."""


def worst_state(states: Iterable[CheckState]) -> CheckState:
    """The worst of ``states`` (passing < warning < critical < maintenance); passing if none."""
    return max(states, key=_RANK.__getitem__, default="passing")


@dataclass(frozen=True)
class ServiceCheck:
    """One health check of an instance. ``service_id`` is empty for a node-level check."""

    name: str
    check_id: str
    status: CheckState
    output: str
    service_id: str

    @property
    def node_level(self) -> bool:
        """True for a check of the whole node (such as ``serfHealth``), not of the service."""
        return not self.service_id


@dataclass(frozen=True)
class ServiceInstance:
    """One registered instance of a service, as ``/v1/health/service/<name>`` returns it.

    ``address`` is the service's address, or the node's when the service has none (as
    Consul's DNS does). ``checks`` holds the node's checks and the service's own.
    """

    node: str
    service_id: str
    service_name: str
    address: str
    port: int
    tags: list[str]
    meta: dict[str, str]
    checks: list[ServiceCheck]

    @property
    def status(self) -> CheckState:
        """The worst of the instance's checks, node checks included (Consul's aggregate)."""
        return worst_state(check.status for check in self.checks)


@dataclass(frozen=True)
class ServiceHealth:
    """How many instances of a service are in each state."""

    passing: int = 0
    warning: int = 0
    critical: int = 0
    maintenance: int = 0

    @classmethod
    def of(cls, instances: Iterable[ServiceInstance]) -> ServiceHealth:
        """Count ``instances`` by their :attr:`ServiceInstance.status`."""
        counts: dict[CheckState, int] = dict.fromkeys(_RANK, 0)
        for instance in instances:
            counts[instance.status] += 1
        return cls(**counts)

    @property
    def total(self) -> int:
        return self.passing + self.warning + self.critical + self.maintenance

    def __str__(self) -> str:
        text = f"{self.total} instance(s): {self.passing} passing, {self.warning} warning, {self.critical} critical"
        return text + (f", {self.maintenance} in maintenance" if self.maintenance else "")


# ---------------------------------------------------------------------------
# The protocols


class ConsulHealth(Protocol):
    """The Consul reads nomadwn needs."""

    def service_health(self, name: str, tag: str | None = None) -> list[ServiceInstance]:
        """Every registered instance of service ``name`` (only those tagged ``tag`` if given)."""
        ...


class Leadership(Protocol):
    """Whether this replica may act now: of several replicas, at most one holds the lock."""

    def hold(self) -> bool:
        """Keep (or take) the lock; True only if this replica holds it now.

        Called before every action. Raises :class:`ConsulError` when Consul cannot be
        asked; the caller then treats itself as not the leader.
        """
        ...

    def release(self) -> None:
        """Give the lock up at once (graceful shutdown); never raises for a lock not held."""
        ...

    @property
    def holder(self) -> str | None:
        """Who holds the lock as last seen (None: nobody, or not looked yet); for logs and metrics."""
        ...


# ---------------------------------------------------------------------------
# Decoding Consul's JSON into the value types


def _truncate(text: str) -> str:
    text = text.strip()
    if len(text) <= OUTPUT_LIMIT:
        return text
    return f"{text[:OUTPUT_LIMIT]}… [{len(text) - OUTPUT_LIMIT} more characters]"


def _state(check_id: str, status: object) -> CheckState:
    if check_id == _NODE_MAINTENANCE or check_id.startswith(_SERVICE_MAINTENANCE):
        return "maintenance"
    return _STATES.get(str(status), "critical")


def _check(raw: Mapping[str, Any]) -> ServiceCheck:
    check_id = str(raw["CheckID"])
    return ServiceCheck(
        name=str(raw.get("Name") or check_id),
        check_id=check_id,
        status=_state(check_id, raw.get("Status")),
        output=_truncate(str(raw.get("Output") or "")),
        service_id=str(raw.get("ServiceID") or ""),
    )


def parse_instance(raw: Mapping[str, Any]) -> ServiceInstance:
    """One entry of ``/v1/health/service/<name>``."""
    node = raw["Node"]
    service = raw["Service"]
    return ServiceInstance(
        node=str(node["Node"]),
        service_id=str(service["ID"]),
        service_name=str(service["Service"]),
        address=str(service.get("Address") or node.get("Address") or ""),
        port=int(service.get("Port") or 0),
        tags=[str(tag) for tag in service.get("Tags") or []],
        meta={str(key): str(value) for key, value in (service.get("Meta") or {}).items()},
        checks=[_check(check) for check in raw.get("Checks") or []],
    )
