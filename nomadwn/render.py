"""Turn a site model into Nomad jobs: HCL for review, JSON for the HTTP API.

Pure apart from :func:`write_jobspecs` and :func:`check_jobspecs`, which read and
write ``jobspecs/``. The flow is one way::

    Site --build_job--> nomad_api.Job --model_dump--> JSON body {"Job": {...}}
                             |
                             +--templates/job.nomad.hcl.j2--> HCL jobspec

Everything derived (ports, mounts, the container's own files) is computed once, in
:func:`build_job`; the template only spells the typed job in HCL. A test parses
the HCL back and checks that it maps to the same JSON, field by field.
"""

from __future__ import annotations

import difflib
import functools
import json
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from nomadwn import hcl
from nomadwn import nomad_api as api
from nomadwn.autopilot import template_files
from nomadwn.errors import RenderError
from nomadwn.formats import Format
from nomadwn.model import (
    METRICS_TAG,
    Constraint,
    Flavour,
    Site,
    Spread,
    count,
    dispatched,
    metrics_service_name,
    port_labels,
    privileges,
    progress_deadline,
    restart_mode,
    service_meta,
    shutdown_plan,
    static_port,
    system_deployments,
    update_strategy,
)
from nomadwn.quoting import string_literal
from nomadwn.resources import shipped_dir
from nomadwn.units import duration_ns, duration_text, format_duration

if TYPE_CHECKING:
    import jinja2


GROUP = "worker"
TASK = "condor"
AUTOSCALER = "autoscaler"
"""The jobspec file name (and group name) of the site's autoscaler service."""
IDENTITY_TTL = timedelta(hours=1)
"""Lifetime of the named workload identities (Nomad renews them; it warns about identities without one)."""
REASON_META = "nomadwn_reason"
"""Dispatch meta key carrying the autoscaler's reason for starting a worker."""


def _ns(value: Any) -> int:
    return duration_ns(value)


def _constraints(f: Flavour) -> list[api.Constraint] | None:
    return _constraints_of(f.placement.constraints) or None


def _constraints_of(constraints: list[Constraint]) -> list[api.Constraint]:
    return [api.Constraint(LTarget=c.attribute, RTarget=c.value, Operand=c.operator) for c in constraints]


def _distinct_hosts(replicas: int, constraints: list[Constraint]) -> list[api.Constraint]:
    """Replicas on distinct hosts, so one lost node cannot take every replica (unless the site says so)."""
    if replicas < 2 or any(c.operator == "distinct_hosts" for c in constraints):
        return []
    return [api.Constraint(LTarget="", RTarget="true", Operand="distinct_hosts")]


def _spreads(f: Flavour) -> list[api.Spread] | None:
    return _spreads_of(f.placement.spreads)


def _spreads_of(spreads: list[Spread]) -> list[api.Spread] | None:
    out = [
        api.Spread(
            Attribute=s.attribute,
            Weight=s.weight,
            SpreadTarget=[api.SpreadTarget(Value=t.value, Percent=t.percent) for t in s.targets] or None,
        )
        for s in spreads
    ]
    return out or None


def _update(site: Site, name: str) -> api.UpdateStrategy | None:
    f = site.flavours[name]
    u = update_strategy(site, name)
    if u is None:
        return None
    if f.kind == "system" and not system_deployments(site):
        # Up to 1.10 the system scheduler reads only these two (scheduler/scheduler_system.go:
        # `s.job.Update.Rolling()`, then NextRollingEval(Stagger)); the rest would be inert.
        return api.UpdateStrategy(MaxParallel=u.max_parallel, Stagger=_ns(u.stagger))
    return api.UpdateStrategy(
        Stagger=_ns(u.stagger),
        MaxParallel=u.max_parallel,
        HealthCheck=u.health_check,
        MinHealthyTime=_ns(u.min_healthy_time),
        HealthyDeadline=_ns(u.healthy_deadline),
        ProgressDeadline=_ns(progress_deadline(site, name)),
        AutoRevert=u.auto_revert,
        AutoPromote=u.auto_promote,
        Canary=u.canary,
    )


def _network(f: Flavour) -> api.NetworkResource:
    condor = f.htcondor.port
    ports: dict[str, int] = {"condor": condor}
    if f.service.prometheus is not None:
        ports["metrics"] = f.service.prometheus.port
    assert list(ports) == port_labels(f)
    if static_port(f):
        return api.NetworkResource(
            ReservedPorts=[api.Port(Label="condor", Value=condor, To=condor)],
            DynamicPorts=[api.Port(Label=k, To=v) for k, v in ports.items() if k != "condor"] or None,
        )
    return api.NetworkResource(DynamicPorts=[api.Port(Label=k, To=v) for k, v in ports.items()])


def _service(f: Flavour) -> api.Service:
    s = f.service
    h = f.health
    meta = service_meta(f)
    restart = h.check_restart
    check = api.ServiceCheck(
        Name="startd",
        Type="script",
        Command=h.command[0],
        Args=h.command[1:],
        Interval=_ns(h.interval),
        Timeout=_ns(h.timeout),
        CheckRestart=(
            api.CheckRestart(Limit=restart.limit, Grace=_ns(restart.grace), IgnoreWarnings=restart.ignore_warnings)
            if restart is not None
            else None
        ),
    )
    return api.Service(
        Name=s.name,
        PortLabel=s.port,
        Provider="consul",
        Tags=list(s.tags),
        Meta=meta or None,
        Checks=[check],
    )


def _metrics_service(site: Site, name: str) -> api.Service | None:
    """The worker's metrics port as a Consul service of its own, found by Prometheus by tag."""
    f = site.flavours[name]
    if f.service.prometheus is None:
        return None
    return api.Service(
        Name=metrics_service_name(f),
        PortLabel="metrics",
        Provider="consul",
        Tags=[METRICS_TAG, site.name, name],
        Meta={"metrics_path": f.service.prometheus.path, "nomadwn_flavour": name, "nomadwn_site": site.name},
        Checks=[],
    )


def _docker_config(f: Flavour, mounts: list[dict[str, Any]]) -> dict[str, Any]:
    config: dict[str, Any] = {
        "image": f.image.reference,
        "force_pull": f.image.pull == "always",
        "image_pull_timeout": duration_text(f.image.pull_timeout),
        "ports": port_labels(f),
        "entrypoint": ["/bin/sh", "/local/nomadwn/start.sh"],
    }
    if f.cvmfs.mode == "fuse":
        # The privilege an in-container CVMFS mount needs; `nomadwn validate` states it.
        config["cap_add"] = ["SYS_ADMIN", "MKNOD"]
        config["devices"] = [{"host_path": "/dev/fuse", "container_path": "/dev/fuse"}]
    if mounts:
        config["mount"] = mounts
    return config


def build_job(site: Site, name: str) -> api.Job:
    """The typed Nomad API job for flavour ``name`` of ``site``."""
    f = site.flavours[name]
    files = template_files(site, name)
    mounts: list[dict[str, Any]] = [
        {"type": "bind", "source": t.destination, "target": t.mount_at, "readonly": True} for t in files if t.mount_at
    ]
    volumes: dict[str, api.VolumeRequest] | None = None
    volume_mounts: list[api.VolumeMount] | None = None
    if f.cvmfs.mode == "bind":
        if f.cvmfs.host_volume is not None:
            volumes = {"cvmfs": api.VolumeRequest(Name="cvmfs", Type="host", Source=f.cvmfs.host_volume, ReadOnly=True)}
            volume_mounts = [
                api.VolumeMount(Volume="cvmfs", Destination="/cvmfs", ReadOnly=True, PropagationMode="host-to-task")
            ]
        else:
            mounts.append({"type": "bind", "source": f.cvmfs.host_path, "target": "/cvmfs", "readonly": True})
    r = f.resources
    auth = f.pool_auth
    vault = api.Vault(Role=auth.vault_role, ChangeMode="noop") if auth and auth.source == "vault" else None
    # Nomad 1.10 has no legacy Vault tokens: the task logs in to Vault's JWT auth method
    # with its vault_default workload identity (explicit here, so the job does not depend
    # on the servers' vault.default_identity).
    identities = (
        [api.WorkloadIdentity(Name="vault_default", Audience=[auth.vault_audience], TTL=_ns(IDENTITY_TTL))]
        if vault is not None and auth is not None
        else None
    )
    task = api.Task(
        Name=TASK,
        Driver="docker",
        Config=_docker_config(f, mounts),
        Env=dict(sorted(f.env.items())) or None,
        Services=[s for s in (_service(f), _metrics_service(site, name)) if s is not None],
        Templates=[
            api.Template(
                EmbeddedTmpl=t.text,
                DestPath=t.destination,
                ChangeMode=t.change_mode,
                ChangeSignal=t.change_signal,
                Perms=t.perms,
            )
            for t in files
        ],
        Resources=api.Resources(CPU=r.cpu, Cores=r.cores, MemoryMB=r.memory, MemoryMaxMB=r.memory_max),
        LogConfig=api.LogConfig(MaxFiles=f.logs.max_files, MaxFileSizeMB=f.logs.max_file_size),
        KillSignal=f.lifespan.kill_signal,
        KillTimeout=_ns(shutdown_plan(site, name).kill_timeout),
        ShutdownDelay=_ns(f.service.shutdown_delay),
        VolumeMounts=volume_mounts,
        Vault=vault,
        Identities=identities,
    )
    rs = f.restart
    rp = f.reschedule
    group = api.TaskGroup(
        Name=GROUP,
        Count=count(f),
        Networks=[_network(f)],
        Volumes=volumes,
        RestartPolicy=api.RestartPolicy(
            Attempts=rs.attempts, Interval=_ns(rs.interval), Delay=_ns(rs.delay), Mode=restart_mode(f)
        ),
        ReschedulePolicy=(
            api.ReschedulePolicy(
                Attempts=rp.attempts,
                Interval=_ns(rp.interval),
                Delay=_ns(rp.delay),
                DelayFunction=rp.delay_function,
                MaxDelay=_ns(rp.max_delay),
                Unlimited=rp.unlimited,
            )
            if rp is not None
            else None
        ),
        EphemeralDisk=api.EphemeralDisk(SizeMB=r.disk),
        Scaling=(
            api.ScalingPolicy(Min=f.scaling.min, Max=f.scaling.max, Enabled=f.scaling.enabled)
            if f.scaling and not dispatched(f)
            else None
        ),
        Tasks=[task],
    )
    p = f.placement
    meta = {"nomadwn_site": site.name, "nomadwn_flavour": name, **f.meta}
    return api.Job(
        ID=site.job_id(name),
        Name=site.job_id(name),
        Type=f.kind,
        Region=p.region,
        Namespace=p.namespace,
        Datacenters=list(p.datacenters),
        NodePool=p.node_pool,
        Priority=p.priority,
        Constraints=_constraints(f),
        Spreads=_spreads(f),
        Update=_update(site, name),
        ParameterizedJob=(
            api.ParameterizedJobConfig(Payload="forbidden", MetaOptional=[REASON_META]) if dispatched(f) else None
        ),
        Meta=dict(sorted(meta.items())),
        TaskGroups=[group],
    )


def build_autoscaler_job(site: Site) -> api.Job:
    """The Nomad service job of the site's autoscaler (``nomadwn autoscale``), HA with a Consul lock.

    The site file comes from the Nomad Variable at ``autoscaler.variable_path``,
    rendered into ``/secrets`` by Nomad; the Nomad and Consul tokens come from
    workload identity (see :func:`acl_policies`): nothing secret is in the job or the
    Variable. Each replica's metrics port serves ``/metrics`` and ``/healthz``;
    Consul checks the latter over HTTP.
    """
    a = site.autoscaler
    if a is None:
        raise RenderError(f"site {site.name} has no autoscaler block")
    job_id = site.autoscaler_job_id
    var = string_literal(a.variable_path or f"nomad/jobs/{job_id}")
    collectors = sorted({c for name in site.autoscaled() for c in site.flavours[name].htcondor.collector})
    env = {
        "NOMAD_ADDR": a.nomad_addr,
        "CONSUL_HTTP_ADDR": a.consul_addr,
        "NOMADWN_HOLDER": "${NOMAD_ALLOC_ID}",
    }
    if collectors:
        env["_CONDOR_COLLECTOR_HOST"] = ", ".join(collectors)
    p, r = a.placement, a.resources
    task = api.Task(
        Name="autoscale",
        Driver="docker",
        Config={
            "image": a.image.reference,
            "force_pull": a.image.pull == "always",
            "image_pull_timeout": duration_text(a.image.pull_timeout),
            "ports": ["metrics"],
            "args": ["autoscale", "/secrets/site.yaml", "--metrics-address", f"0.0.0.0:{a.metrics_port}"],
        },
        Env=dict(sorted(env.items())),
        Services=[
            api.Service(
                Name="nomadwn-autoscaler",
                PortLabel="metrics",
                Provider="consul",
                Tags=[METRICS_TAG, site.name, AUTOSCALER],
                Meta={"metrics_path": "/metrics", "nomadwn_site": site.name},
                Checks=[
                    api.ServiceCheck(
                        Name="autoscaler alive",
                        Type="http",
                        Path="/healthz",
                        Interval=_ns(timedelta(seconds=10)),
                        Timeout=_ns(timedelta(seconds=2)),
                    )
                ],
            )
        ],
        Templates=[
            api.Template(
                EmbeddedTmpl=f"{{{{ with nomadVar {var} }}}}{{{{ .site_yaml }}}}{{{{ end }}}}\n",
                DestPath="secrets/site.yaml",
                ChangeMode="restart",
                Perms="0600",
            ),
        ],
        # No token anywhere: Nomad hands the task its workload identity as NOMAD_TOKEN
        # (the policy in acl/ is attached to this job), and the consul block logs it in
        # to Consul's JWT auth method, setting CONSUL_HTTP_TOKEN
        # (client/allocrunner/taskrunner/consul_hook.go).
        Identity=api.WorkloadIdentity(Env=True, ChangeMode="restart"),
        Identities=[api.WorkloadIdentity(Name="consul_default", Audience=[a.consul_audience], TTL=_ns(IDENTITY_TTL))],
        Consul=api.Consul(),
        Resources=api.Resources(CPU=r.cpu, Cores=r.cores, MemoryMB=r.memory, MemoryMaxMB=r.memory_max),
        LogConfig=api.LogConfig(MaxFiles=5, MaxFileSizeMB=10),
        KillSignal="SIGTERM",
        KillTimeout=_ns(timedelta(seconds=30)),
        ShutdownDelay=_ns(timedelta(seconds=5)),
    )
    group = api.TaskGroup(
        Name=AUTOSCALER,
        Count=a.replicas,
        Networks=[api.NetworkResource(DynamicPorts=[api.Port(Label="metrics", To=a.metrics_port)])],
        RestartPolicy=api.RestartPolicy(
            Attempts=3, Interval=_ns(timedelta(minutes=5)), Delay=_ns(timedelta(seconds=15)), Mode="delay"
        ),
        ReschedulePolicy=api.ReschedulePolicy(
            Attempts=0,
            Interval=0,
            Delay=_ns(timedelta(seconds=30)),
            DelayFunction="exponential",
            MaxDelay=_ns(timedelta(minutes=10)),
            Unlimited=True,
        ),
        EphemeralDisk=api.EphemeralDisk(SizeMB=r.disk),
        Tasks=[task],
    )
    return api.Job(
        ID=job_id,
        Name=job_id,
        Type="service",
        Region=p.region,
        Namespace=p.namespace,
        Datacenters=list(p.datacenters),
        NodePool=p.node_pool,
        Priority=p.priority,
        Constraints=(_constraints_of(p.constraints) + _distinct_hosts(a.replicas, p.constraints)) or None,
        Spreads=_spreads_of(p.spreads),
        Update=api.UpdateStrategy(
            Stagger=_ns(timedelta(seconds=30)),
            MaxParallel=1,
            HealthCheck="checks",
            MinHealthyTime=_ns(timedelta(seconds=10)),
            HealthyDeadline=_ns(timedelta(minutes=3)),
            ProgressDeadline=_ns(timedelta(minutes=10)),
            AutoRevert=True,
            AutoPromote=False,
            Canary=0,
        ),
        Meta={"nomadwn_role": AUTOSCALER, "nomadwn_site": site.name},
        TaskGroups=[group],
    )


# ---------------------------------------------------------------------------
# ACL policies of the autoscaler (attached to its job: workload identity, no token)

AUTOSCALER_NOMAD_CAPABILITIES = ("list-jobs", "read-job", "scale-job", "dispatch-job")
"""What the autoscaler does in the flavours' namespaces: list dispatched children
(``GET /v1/jobs``), read jobs and allocations, scale service flavours, dispatch batch
flavours. Names from Nomad's ``acl/policy.go``."""


@dataclass(frozen=True)
class AclPolicy:
    """One ACL policy nomadwn ships for the autoscaler, and how to install it."""

    system: Literal["nomad", "consul"]
    name: str
    file_name: str
    rules: str

    def install_command(self, site: Site, path: Path) -> str:
        """The shell command that installs this policy (the Nomad one attached to the autoscaler job)."""
        if self.system == "nomad":
            ns = site.autoscaler.placement.namespace if site.autoscaler is not None else "default"
            return (
                f"nomad acl policy apply -namespace {ns} -job {site.autoscaler_job_id} "
                f'-description "nomadwn autoscaler of site {site.name}" {self.name} {path}'
            )
        return (
            f'consul acl policy create -name {self.name} -description "nomadwn autoscaler lock of site {site.name}" '
            f"-rules @{path}   # then add it to the Consul role your nomad-workloads binding rule gives this job"
        )


def _hcl_block(kind: str, label: str, lines: list[str]) -> str:
    body = "".join(f"  {line}\n" for line in lines)
    return f"{kind} {hcl.string(label)} {{\n{body}}}\n"


def acl_policies(site: Site) -> list[AclPolicy]:
    """The Nomad and Consul ACL policies the site's autoscaler job needs (none without an autoscaler).

    Nomad: ``list-jobs``, ``read-job``, ``scale-job`` and ``dispatch-job`` on every
    autoscaled flavour's namespace, plus ``read`` on its Variable when that is not
    ``nomad/jobs/<job id>`` (which the implicit workload policy already reads).
    Consul: ``session`` write (the lock's session, on whichever node the replica runs)
    and ``key_prefix`` write on the lock key.
    """
    a = site.autoscaler
    if a is None:
        return []
    caps = ", ".join(hcl.string(c) for c in AUTOSCALER_NOMAD_CAPABILITIES)
    namespaces = sorted({site.flavours[n].placement.namespace for n in site.autoscaled()})
    job_id = site.autoscaler_job_id
    variable = a.variable_path or f"nomad/jobs/{job_id}"
    own_ns = a.placement.namespace
    # The implicit workload policy reads nomad/jobs/<job>[/<group>[/<task>]] of the job's namespace.
    implicit = variable == f"nomad/jobs/{job_id}" or variable.startswith(f"nomad/jobs/{job_id}/")
    blocks: list[str] = []
    for ns in sorted(set(namespaces) | (set() if implicit else {own_ns})):
        lines = [f"capabilities = [{caps}]"] if ns in namespaces else []
        if ns == own_ns and not implicit:
            lines += ["variables {", f"  path {hcl.string(variable)} {{", '    capabilities = ["read"]', "  }", "}"]
        blocks.append(_hcl_block("namespace", ns, lines))
    header = (
        f"# Nomad ACL policy of the nomadwn autoscaler of site {site.name} (job {job_id}).\n"
        "# Rendered by nomadwn: attach it to the job, whose tasks then get it through their workload identity.\n"
    )
    nomad_rules = header + "\n".join(blocks)
    nomad_policy = AclPolicy("nomad", f"{site.name}-autoscaler", "autoscaler.nomad-policy.hcl", nomad_rules)
    consul_rules = (
        f"# Consul ACL policy of the nomadwn autoscaler of site {site.name}: its leader lock.\n"
        "# Rendered by nomadwn: bind it to the Consul role that Nomad's workload logins for this job get.\n"
        + _hcl_block("session_prefix", "", ['policy = "write"'])
        + "\n"
        + _hcl_block("key_prefix", site.lock_key, ['policy = "write"'])
    )
    consul_policy = AclPolicy("consul", f"{site.name}-autoscaler-lock", "autoscaler.consul-policy.hcl", consul_rules)
    return [nomad_policy, consul_policy]


# ---------------------------------------------------------------------------
# HCL


@functools.cache
def _environment() -> jinja2.Environment:
    # Built once per process: compiling the template dominates the cost of a render.
    # Imported here, not at the top: importing render (deploy, status) should not pay for Jinja2.
    import jinja2

    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(shipped_dir("templates")),
        undefined=jinja2.StrictUndefined,
        autoescape=False,  # noqa: S701 - HCL, not HTML: every value goes through an hcl.* filter
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
    )
    env.filters.update(
        q=hcl.string,
        key=hcl.key,
        heredoc=hcl.heredoc,
        bool=hcl.boolean,
        num=hcl.number,
        dur=lambda ns: hcl.string(format_duration(ns)),
        value=hcl.value,
    )
    return env


def render_hcl(site: Site, name: str, job: api.Job | None = None) -> str:
    """The HCL jobspec of flavour ``name`` (or, for :data:`AUTOSCALER`, of the site's autoscaler)."""
    if name == AUTOSCALER and name not in site.flavours:
        job = job or build_autoscaler_job(site)
        title, privs = f"The autoscaler service of site {site.name}", []
    else:
        job = job or build_job(site, name)
        title, privs = f"Worker flavour {name} of site {site.name}", privileges(site.flavours[name])
    import jinja2

    try:
        template = _environment().get_template("job.nomad.hcl.j2")
        return template.render(job=job, title=title, privileges=privs)
    except jinja2.TemplateError as exc:
        raise RenderError(f"rendering {name}: template error: {exc}") from exc


def render_json(job: api.Job) -> str:
    """The JSON body for Nomad's ``POST /v1/jobs``, byte-stable."""
    return json.dumps(job.body(), indent=2, sort_keys=True, ensure_ascii=False) + "\n"


@dataclass(frozen=True)
class RenderedJob:
    """One flavour rendered both ways."""

    flavour: str
    job: api.Job
    hcl: str
    json: str


def render_site(site: Site) -> list[RenderedJob]:
    """Every flavour of a site, in the order the site file lists them, then its autoscaler (if any)."""
    out = []
    for name in site.flavours:
        job = build_job(site, name)
        out.append(RenderedJob(flavour=name, job=job, hcl=render_hcl(site, name, job), json=render_json(job)))
    if site.autoscaler is not None:
        job = build_autoscaler_job(site)
        hcl_text = render_hcl(site, AUTOSCALER, job)
        out.append(RenderedJob(flavour=AUTOSCALER, job=job, hcl=hcl_text, json=render_json(job)))
    return out


def jobspec_files(site: Site, out_dir: Path, fmt: Format = "both") -> dict[Path, str]:
    """The files ``render`` writes: ``<out_dir>/<site>/<flavour>.nomad.hcl`` and ``.json``, and
    ``<out_dir>/<site>/monitoring/`` (:mod:`nomadwn.monitoring`)."""
    from nomadwn.monitoring import monitoring_files

    files: dict[Path, str] = {}
    for rendered in render_site(site):
        base = out_dir / site.name / rendered.flavour
        if fmt in ("hcl", "both"):
            files[base.with_name(f"{rendered.flavour}.nomad.hcl")] = rendered.hcl
        if fmt in ("json", "both"):
            files[base.with_name(f"{rendered.flavour}.json")] = rendered.json
    for policy in acl_policies(site):
        files[out_dir / site.name / "acl" / policy.file_name] = policy.rules
    files.update(monitoring_files(site, out_dir))
    return files


def write_jobspecs(files: dict[Path, str]) -> list[Path]:
    """Write rendered files, returning those whose content changed."""
    changed = []
    for path, text in files.items():
        try:
            if path.exists() and path.read_text(encoding="utf-8") == text:
                continue
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text, encoding="utf-8")
        except OSError as exc:
            raise RenderError(f"cannot write {path}: {exc.strerror}; check the --out directory") from exc
        changed.append(path)
    return changed


def stale_jobspecs(files: dict[Path, str]) -> dict[Path, str]:
    """For each committed file that differs from a fresh render, a unified diff (empty dict: all fresh)."""
    diffs: dict[Path, str] = {}
    for path, text in files.items():
        try:
            current = path.read_text(encoding="utf-8")
        except FileNotFoundError:
            current = ""
        except OSError as exc:
            raise RenderError(f"cannot read {path}: {exc.strerror}") from exc
        if current != text:
            diffs[path] = "".join(
                difflib.unified_diff(
                    current.splitlines(keepends=True),
                    text.splitlines(keepends=True),
                    fromfile=f"{path} (committed)",
                    tofile=f"{path} (rendered)",
                )
            )
    return diffs
