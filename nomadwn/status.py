"""Where each flavour stands: Nomad's view joined with Consul's health checks.

Nomad registers each worker's service in Consul with an ID that contains the
allocation ID (``_nomad-task-<alloc id>-...``), so Consul instances are matched to a
flavour by the allocation IDs of its job, not by name or tag (flavours may share both).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import asdict, dataclass
from typing import Any

from nomadwn.consul import ConsulHealth, ServiceHealth, ServiceInstance
from nomadwn.model import Site, count
from nomadwn.nomad import NomadAPI
from nomadwn.render import AUTOSCALER, GROUP


@dataclass(frozen=True)
class FlavourStatus:
    """One flavour's job in Nomad and its workers' checks in Consul."""

    flavour: str
    job_id: str
    kind: str
    registered: bool
    version: int | None
    job_status: str
    desired: int | None
    placed: int
    running: int
    healthy: int
    failed: int
    deployment: str
    checks: ServiceHealth | None

    def as_json(self) -> dict[str, Any]:
        """A plain dict for ``status --json``."""
        data = asdict(self)
        data["checks"] = asdict(self.checks) if self.checks is not None else None
        return data


@dataclass(frozen=True)
class _Target:
    job_id: str
    kind: str
    service: str
    group: str
    count: int | None


def _target(site: Site, name: str) -> _Target:
    if name not in site.flavours and site.autoscaler is not None:
        return _Target(site.autoscaler_job_id, "service", "nomadwn-autoscaler", AUTOSCALER, site.autoscaler.replicas)
    f = site.flavours[name]
    return _Target(site.job_id(name), f.kind, f.service.name, GROUP, count(f))


def flavour_status(site: Site, name: str, nomad: NomadAPI, consul: ConsulHealth | None) -> FlavourStatus:
    """Read one flavour's (or the autoscaler's) state; ``consul=None`` leaves the checks out."""
    t = _target(site, name)
    job_id, kind = t.job_id, t.kind
    job = nomad.job(job_id)
    if job is None:
        return FlavourStatus(name, job_id, kind, False, None, "not registered", t.count, 0, 0, 0, 0, "", None)
    allocs = [a for a in nomad.allocations(job_id).value if a.desired_status == "run"]
    current = [a for a in allocs if a.job_version == job.version]
    deployment = nomad.latest_deployment(job_id).value if kind == "service" else None
    checks = None
    if consul is not None:
        ids = [a.id for a in allocs]
        instances = consul.service_health(t.service)
        checks = ServiceHealth.of(i for i in instances if any(alloc_id in i.service_id for alloc_id in ids))
    healthy = sum(a.healthy is True for a in current) if kind == "service" else None
    running = sum(a.client_status == "running" for a in current)
    return FlavourStatus(
        flavour=name,
        job_id=job_id,
        kind=kind,
        registered=True,
        version=job.version,
        job_status=job.status,
        desired=job.counts.get(t.group) if kind != "system" else None,
        placed=len(current),
        running=running,
        healthy=running if healthy is None else healthy,
        failed=sum(a.client_status in ("failed", "lost") for a in current),
        deployment=f"{deployment.status} (v{deployment.job_version})" if deployment is not None else "",
        checks=checks,
    )


@dataclass
class _OncePerService:
    """Reads each Consul service once per status run: flavours often share a service name."""

    consul: ConsulHealth
    seen: dict[tuple[str, str | None], list[ServiceInstance]]

    def service_health(self, name: str, tag: str | None = None) -> list[ServiceInstance]:
        if (name, tag) not in self.seen:
            self.seen[(name, tag)] = self.consul.service_health(name, tag)
        return self.seen[(name, tag)]


def site_status(site: Site, names: Iterable[str], nomad: NomadAPI, consul: ConsulHealth | None) -> list[FlavourStatus]:
    """Every named flavour's status, asking Consul once per service name."""
    shared = _OncePerService(consul, {}) if consul is not None else None
    return [flavour_status(site, name, nomad, shared) for name in names]
