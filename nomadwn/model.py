"""The typed model of a site and its containerised HTCondor worker nodes.

A *site* is one YAML file: site-wide Nomad facts, optional ``defaults`` and one or
more worker *flavours*. Each flavour becomes one Nomad job. This module is pure:
no I/O and no client library (a test enforces it). Loading a file, merging the
defaults and turning pydantic errors into messages lives in :mod:`nomadwn.sitefile`.

Rules that span several fields (a batch job may not have an update block, the
``latest`` tag is refused, ...) are in :func:`flavour_problems`, so that each one
can name the exact dotted field it is about.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import timedelta
from typing import Annotated, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, PlainValidator

from nomadwn.errors import FieldProblem
from nomadwn.units import Duration, SizeMB, duration_text

# ---------------------------------------------------------------------------
# Reusable constrained strings

_NAME_RE = re.compile(r"[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?")
_KEY_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_-]{0,127}")
_ENV_KEY_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_CONDOR_KEY_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_.]*")
_VAR_KEY_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_SECRET_PATH_RE = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_./-]*")
_HOSTPORT_RE = re.compile(r"[A-Za-z0-9]([A-Za-z0-9.-]*[A-Za-z0-9])?(:\d{1,5})?")
_REGISTRY_RE = re.compile(r"[A-Za-z0-9]([A-Za-z0-9.-]*[A-Za-z0-9])?(:\d{1,5})?")
_REPOSITORY_RE = re.compile(r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*(?:/[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*)*")
_TAG_RE = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}")
_DIGEST_RE = re.compile(r"sha256:[a-f0-9]{64}")
_ABS_PATH_RE = re.compile(r"/[^\x00-\x1f\x7f]*")
_CONTROL_RE = re.compile(r"[\x00-\x1f\x7f]")


def _matching(pattern: re.Pattern[str], what: str) -> AfterValidator:
    def check(value: str) -> str:
        if not pattern.fullmatch(value):
            raise ValueError(what)  # the value is not echoed: it could be a pasted secret
        return value

    return AfterValidator(check)


def _single_line(value: str) -> str:
    if not value.strip():
        raise ValueError("must not be empty")
    if _CONTROL_RE.search(value):
        raise ValueError("must be one line without control characters (it is written into HTCondor's configuration)")
    return value


Name = Annotated[
    str,
    _matching(
        _NAME_RE, "use lower-case letters, digits and '-', start and end with a letter or digit, at most 63 characters"
    ),
]
"""A DNS-label-like name: site, flavour and Consul service names."""

MetaKey = Annotated[str, _matching(_KEY_RE, "a key is a letter or '_' then letters, digits, '_' or '-' (at most 128)")]
EnvKey = Annotated[
    str, _matching(_ENV_KEY_RE, "an environment variable name is a letter or '_' then letters, digits or '_'")
]
CondorKey = Annotated[
    str, _matching(_CONDOR_KEY_RE, "an HTCondor knob is a letter or '_' then letters, digits, '_' or '.'")
]
HostPort = Annotated[str, _matching(_HOSTPORT_RE, "write a host name or address, optionally with :port")]
AbsPath = Annotated[str, _matching(_ABS_PATH_RE, "write an absolute path without control characters")]
ConfigLine = Annotated[str, AfterValidator(_single_line)]
"""A string that ends up in HTCondor's configuration and so must stay on one line."""
Port = Annotated[int, Field(ge=1, le=65535)]


class Strict(BaseModel):
    """Base of every site-file model: unknown keys are an error, models are immutable."""

    model_config = ConfigDict(extra="forbid", frozen=True)


# ---------------------------------------------------------------------------
# Nomad placement


ConstraintOperator = Literal[
    "=",
    "!=",
    ">",
    ">=",
    "<",
    "<=",
    "distinct_hosts",
    "distinct_property",
    "regexp",
    "set_contains",
    "set_contains_all",
    "set_contains_any",
    "version",
    "semver",
    "is_set",
    "is_not_set",
]


class Constraint(Strict):
    """A Nomad placement constraint (``constraint`` block)."""

    attribute: str = ""
    operator: ConstraintOperator = "="
    value: str = ""


class SpreadTarget(Strict):
    """One target of a spread: a value of the attribute and the share of allocations it gets."""

    # The value becomes an HCL block label, where HCL reads no escapes: keep it plain.
    value: Annotated[str, _matching(re.compile(r"[A-Za-z0-9_.:/@+=-]+"), "letters, digits and _ . : / @ + = -")]
    percent: Annotated[int, Field(ge=0, le=100)]


class Spread(Strict):
    """A Nomad ``spread`` block: spread allocations over the values of an attribute."""

    attribute: str
    weight: Annotated[int, Field(ge=1, le=100)] = 50
    targets: list[SpreadTarget] = []


class Placement(Strict):
    """Where a flavour's job runs: Nomad region, namespace, datacenters, node pool, constraints."""

    region: str = "global"
    namespace: str = "default"
    datacenters: Annotated[list[str], Field(min_length=1)] = ["*"]
    node_pool: str = "default"
    priority: Annotated[int, Field(ge=1, le=100)] = 50
    constraints: list[Constraint] = []
    spreads: list[Spread] = []


# ---------------------------------------------------------------------------
# The container


class Image(Strict):
    """The worker container image: registry, repository, and a pinned tag or digest."""

    registry: Annotated[str, _matching(_REGISTRY_RE, "write a registry host, optionally with :port")] | None = None
    repository: Annotated[str, _matching(_REPOSITORY_RE, "write a repository path such as scotgrid/cntwn (lower case)")]
    tag: Annotated[str, _matching(_TAG_RE, "a tag is letters, digits, '_', '.' or '-' (at most 128)")] | None = None
    digest: Annotated[str, _matching(_DIGEST_RE, "a digest is sha256: followed by 64 hex digits")] | None = None
    allow_latest: bool = False
    pull: Literal["if-not-present", "always"] = "if-not-present"
    pull_timeout: Duration = timedelta(minutes=5)

    @property
    def reference(self) -> str:
        """The full image reference as Docker takes it."""
        ref = f"{self.registry}/{self.repository}" if self.registry else self.repository
        if self.tag:
            ref += f":{self.tag}"
        if self.digest:
            ref += f"@{self.digest}"
        return ref


class Cvmfs(Strict):
    """How the worker sees /cvmfs.

    ``bind``: the host's /cvmfs, read-only, from a Nomad host volume (``host_volume``)
    or a Docker bind mount of ``host_path`` (when ``host_volume`` is null). Shared
    cache; every repository must be mounted on the host.

    ``fuse``: mounted inside the container. No host install, but no shared cache,
    and the container needs SYS_ADMIN, MKNOD and /dev/fuse (elevated privilege).
    """

    mode: Literal["bind", "fuse"] = "bind"
    host_volume: str | None = "cvmfs"
    host_path: AbsPath = "/cvmfs"
    repositories: list[Annotated[str, _matching(_HOSTPORT_RE, "a repository name such as atlas.cern.ch")]] = []
    http_proxy: ConfigLine | None = None
    quota_limit: SizeMB | None = None


class Slots(Strict):
    """The startd's slot layout. Unset sizes follow the flavour's resources."""

    partitionable: bool = True
    cores: Annotated[int, Field(ge=1)] | None = None
    memory: SizeMB | None = None
    disk: SizeMB | None = None


class HTCondor(Strict):
    """How the worker joins the pool: collector, CCB, port, slots and job policy."""

    collector: Annotated[list[HostPort], Field(min_length=1)]
    ccb: bool = True
    ccb_address: list[HostPort] | None = None
    port: Port = 9621
    static_port: bool | None = None
    slots: Slots = Slots()
    start: ConfigLine = "True"
    accounting_group: (
        Annotated[str, _matching(re.compile(r"[A-Za-z0-9_.@-]+"), "letters, digits, '_', '.', '@' or '-'")] | None
    ) = None
    grid_env: AbsPath | None = "/cvmfs/grid.cern.ch/etc/profile.d/setup-cvmfs-ui.sh"
    config_dir: AbsPath = "/etc/condor/config.d"
    extra_config: dict[CondorKey, ConfigLine] = {}


class PoolAuth(Strict):
    """Where the pool's IDTOKEN or password lives: a *reference*, never the secret.

    ``source: nomad-variable`` reads a Nomad Variable at ``path`` (default
    ``nomad/jobs/<job id>``, which the job may read without extra ACL policy);
    ``source: vault`` reads a Vault KV v2 secret at ``path`` (``vault_role`` optional).
    The value is rendered into the container by a Nomad ``template`` block at start.
    """

    method: Literal["idtoken", "password"] = "idtoken"
    source: Literal["nomad-variable", "vault"] = "nomad-variable"
    path: Annotated[str, _matching(_SECRET_PATH_RE, "a path is letters, digits, '_', '.', '/' or '-'")] | None = None
    key: Annotated[str, _matching(_VAR_KEY_RE, "a key is a letter or '_' then letters, digits or '_'")] = "token"
    vault_role: str | None = None
    vault_audience: Annotated[str, Field(min_length=1)] = "vault.io"
    """The audience of the task's ``vault_default`` workload identity; it must be in the
    ``bound_audiences`` of the Vault JWT role (Nomad 1.10 has no legacy Vault tokens)."""


class CheckRestart(Strict):
    """Restart the worker when its health check keeps failing (Nomad ``check_restart``)."""

    limit: Annotated[int, Field(ge=1)] = 3
    grace: Duration = timedelta(seconds=120)
    ignore_warnings: bool = True
    """Restart only on *critical* (the startd does not answer), never on *warning* (alive but
    unfit, for instance CVMFS broken): a restart would kill the payloads still running."""


class Health(Strict):
    """The worker's own health check, run inside the container (a Nomad script check)."""

    command: Annotated[list[str], Field(min_length=1)] = ["/bin/sh", "/local/nomadwn/health.sh"]
    """The rendered health script: exit 2 (critical) when the startd does not answer, 1
    (warning) when it answers but the probe finds the worker unfit, 0 when fit."""
    interval: Duration = timedelta(seconds=60)
    timeout: Duration = timedelta(seconds=60)
    check_restart: CheckRestart | None = CheckRestart()


class Prometheus(Strict):
    """Prometheus scrape hints: a metrics port in the container and its path, as service meta."""

    port: Port
    path: Annotated[str, _matching(re.compile(r"/[A-Za-z0-9_./-]*"), "write a URL path such as /metrics")] = "/metrics"


class Service(Strict):
    """The Consul service each worker registers: name, tags, meta and scrape hints."""

    name: Name = "condor-master"
    port: Annotated[
        str, _matching(re.compile(r"[a-z][a-z0-9_]*"), "a port label is lower case letters, digits or '_'")
    ] = "condor"
    tags: list[str] = ["cntwn"]
    meta: dict[MetaKey, str] = {}
    prometheus: Prometheus | None = None
    shutdown_delay: Duration = timedelta(seconds=5)
    """How long Nomad waits between deregistering the service from Consul and sending
    ``kill_signal`` (the task's ``shutdown_delay``), so nothing is routed to a worker
    that is stopping. Nomad 2.0 warns about a job with services and no delay."""


class Lifespan(Strict):
    """How long a worker lives and how it stops (see :class:`ShutdownPlan` for the derived knobs).

    ``retirement``: how long a running payload may keep running, counted from its own
    start, once the worker stops taking payloads, whatever stopped it (Nomad's stop,
    ``max_age``, a drain). Set it to the longest run time your payloads need.
    ``max_age``: the startd shuts itself down gracefully after this long;
    ``idle_shutdown``: the startd shuts down after this long unclaimed. Either ends
    the container, so the worker expires by itself.
    ``check_interval``: how often the startd and master evaluate those rules
    (HTCondor's ``UPDATE_INTERVAL``/``MASTER_UPDATE_INTERVAL``, 300 s by default,
    which would make a worker outlive its lifespan by up to 5 minutes).
    ``kill_signal``/``kill_timeout`` are what Nomad sends when *it* stops the worker;
    ``kill_timeout`` defaults to what ``retirement`` needs, and Nomad caps it at the
    clients' ``max_kill_timeout``. ``accept_payload_loss`` is the one way to accept a
    ``max_kill_timeout`` that cannot cover ``retirement``; ``validate`` warns about it.
    """

    max_age: Duration | None = None
    idle_shutdown: Duration | None = None
    retirement: Duration | None = None
    check_interval: Duration = timedelta(seconds=60)
    kill_signal: Literal["SIGTERM", "SIGQUIT"] = "SIGTERM"
    kill_timeout: Duration | None = None
    accept_payload_loss: bool = False


class Update(Strict):
    """Nomad's rolling-update strategy (``update`` block). Not allowed on batch jobs.

    On a system job ``canary`` is a *percentage* of the nodes to update (Nomad 2.0;
    ``scheduler/scheduler_system.go`` rounds it up and caps it at ``max_parallel``).
    Up to Nomad 1.10 a system job's rollout obeys only ``max_parallel`` and
    ``stagger``; nomadwn then renders only those two and applies
    ``min_healthy_time``, ``healthy_deadline`` and ``auto_revert`` itself, in its
    watcher (see :func:`system_deployments`).
    """

    max_parallel: Annotated[int, Field(ge=0)] = 1
    canary: Annotated[int, Field(ge=0)] = 0
    auto_revert: bool = True
    auto_promote: bool = False
    health_check: Literal["checks", "task_states", "manual"] = "checks"
    min_healthy_time: Duration = timedelta(seconds=10)
    healthy_deadline: Duration = timedelta(minutes=5)
    progress_deadline: Duration | None = None
    """Unset: derived, at least 10m and long enough for an old worker to retire (:func:`progress_deadline`)."""
    stagger: Duration = timedelta(seconds=30)


class Scaling(Strict):
    """Bounds of a scalable group (Nomad ``scaling`` block). Not allowed on system jobs."""

    min: Annotated[int, Field(ge=0)] = 0
    max: Annotated[int, Field(ge=0)]
    enabled: bool = True


class Autoscale(Strict):
    """How the autoscaler sizes a flavour from HTCondor demand (bounds: the ``scaling`` block).

    Names follow nomad-autoscaler (``evaluation_interval``, ``cooldown``) and the
    glideinWMS frontend (``ramp``: the shortfall is divided by it, so a burst of idle
    jobs is met over several evaluations instead of at once).
    """

    evaluation_interval: Duration = timedelta(seconds=60)
    cooldown: Duration = timedelta(minutes=5)
    cooldown_on_scale_up: Duration = timedelta(minutes=2)
    max_scale_up: Annotated[int, Field(ge=1)] = 10
    max_scale_down: Annotated[int, Field(ge=0)] = 2
    ramp: Annotated[float, Field(ge=1.0)] = 3.0
    scale_from_zero: bool = True
    stale_after: Duration = timedelta(minutes=3)
    requirements: Annotated[str, Field(min_length=1, max_length=4096)] | None = None
    """A ClassAd expression over the idle job's ad: only jobs for which it is true count
    as demand for this flavour (for example ``WantGPU =!= true``). Checked by HTCondor's
    own parser when the autoscaler starts."""
    priority: Annotated[int, Field(ge=-100, le=100)] = 0
    """Which flavour takes an idle job that several could run: the highest priority,
    then the smallest worker (fewest cores, then least memory). Each job counts for one
    flavour only."""


class Resources(Strict):
    """What one worker container reserves: whole cores (or CPU MHz), memory and disk."""

    cores: Annotated[int, Field(ge=1)] | None = None
    cpu: Annotated[int, Field(ge=1)] | None = None
    memory: SizeMB
    memory_max: SizeMB | None = None
    disk: SizeMB = 1024


class Restart(Strict):
    """Nomad's restart policy for the worker task on the same node."""

    attempts: Annotated[int, Field(ge=0)] = 2
    interval: Duration = timedelta(minutes=30)
    delay: Duration = timedelta(seconds=15)
    mode: Literal["fail", "delay"] | None = None
    """Unset: ``delay`` for system and service workers (a node keeps trying to run its worker),
    ``fail`` for batch ones. See :func:`restart_mode`."""


class Reschedule(Strict):
    """Nomad's reschedule policy (moving a failed worker to another node). Not on system jobs."""

    attempts: Annotated[int, Field(ge=0)] = 0
    interval: Duration = timedelta(0)
    delay: Duration = timedelta(seconds=30)
    delay_function: Literal["constant", "exponential", "fibonacci"] = "exponential"
    max_delay: Duration = timedelta(hours=1)
    unlimited: bool = True


LogDaemon = Literal["master", "startd", "starter"]
"""The HTCondor daemons whose logs a worker can forward to the task's stdout."""

LOG_LINE_BYTES = 512
"""A forwarded log line is cut to this many bytes (the full line stays in the container)."""


class Logs(Strict):
    """Rotation of the task's stdout/stderr logs on the Nomad client, and what the worker forwards there.

    ``forward``: the HTCondor daemons whose logs the worker copies to its stdout, one
    line each, prefixed with the daemon's name (what ``nomad alloc logs`` and
    ``nomadwn logs`` show); ``[]`` keeps them inside the container only.
    ``forward_per_minute``: at most this many lines a minute are forwarded, so a chatty
    daemon cannot rotate the task's log away; the rest are counted and reported.
    """

    max_files: Annotated[int, Field(ge=1)] = 10
    max_file_size: SizeMB = 10
    forward: list[LogDaemon] = ["master", "startd", "starter"]
    forward_per_minute: Annotated[int, Field(ge=1, le=100_000)] = 600


JobKind = Literal["system", "service", "batch"]


class Flavour(Strict):
    """One kind of worker node, rendered into one Nomad job.

    ``system``: one worker per eligible node. ``service``: a scalable ``count``.
    ``batch``: ephemeral workers that end when their lifespan does.
    """

    kind: JobKind
    job_id: Annotated[str, _matching(_NAME_RE, "a job id is lower-case letters, digits and '-'")] | None = None
    count: Annotated[int, Field(ge=0)] | None = None
    placement: Placement = Placement()
    image: Image
    cvmfs: Cvmfs = Cvmfs()
    htcondor: HTCondor
    pool_auth: PoolAuth | None = None
    health: Health = Health()
    service: Service = Service()
    lifespan: Lifespan = Lifespan()
    update: Update | None = None
    scaling: Scaling | None = None
    autoscale: Autoscale | None = None
    resources: Resources
    restart: Restart = Restart()
    reschedule: Reschedule | None = None
    logs: Logs = Logs()
    env: dict[EnvKey, str] = {}
    meta: dict[MetaKey, str] = {}


def _schedds(value: object) -> int | list[str]:
    """``autoscaler.schedds``: a whole number of at least 1, or a non-empty list of schedd names (one message)."""
    what = "write how many schedds must answer (a whole number, at least 1) or a list of their names"
    if isinstance(value, int) and not isinstance(value, bool):
        if value < 1:
            raise ValueError(what)
        return value
    if isinstance(value, list) and value and all(isinstance(v, str) and v.strip() for v in value):
        if any(_CONTROL_RE.search(v) for v in value):
            raise ValueError(what)
        return list(value)
    raise ValueError(what)


class AutoscalerService(Strict):
    """The autoscaler service of the site (``autoscaler`` block): shared limits, its leader
    lock and its own Nomad job (``<site>-autoscaler``, rendered next to the flavours).

    ``core_quota`` caps the cores all autoscaled flavours may hold together (workers ×
    worker cores); scale-ups are granted in site-file order until it is used up, and
    it never forces a scale-in. The job reads only its site file from the Nomad
    Variable at ``variable_path`` (default ``nomad/jobs/<site>-autoscaler``, key
    ``site_yaml``). It holds no token: Nomad gives the task its workload identity as
    ``NOMAD_TOKEN`` (policy: ``jobspecs/<site>/acl/``), and its ``consul`` block makes
    Nomad log it in to Consul's JWT auth method (``CONSUL_HTTP_TOKEN``) with a
    ``consul_default`` identity for ``consul_audience``.
    """

    core_quota: Annotated[int, Field(ge=1)] | None = None
    negotiated_only: bool = False
    schedds: Annotated[int | list[str], PlainValidator(_schedds)] = 1
    """The schedds an observation must hear from: their names, or how many at least.
    An observation that finds fewer is blind (no scale-in): an empty queue and a
    schedd whose ad is gone from the collector look alike."""
    start_deadline: Duration | None = None
    """How long a worker may run in Nomad without reaching the collector before it
    stops counting as spare (and is reported *overdue*); default: the flavour's
    ``image.pull_timeout`` plus 5 minutes."""
    image: Image
    replicas: Annotated[int, Field(ge=1, le=5)] = 2
    lock_key: Annotated[str, _matching(_SECRET_PATH_RE, "a key is letters, digits, '_', '.', '/' or '-'")] | None = None
    lock_ttl: Duration = timedelta(seconds=20)
    lock_delay: Duration = timedelta(seconds=15)
    metrics_port: Port = 9120
    nomad_addr: Annotated[str, Field(min_length=1)] = "http://${attr.unique.network.ip-address}:4646"
    consul_addr: Annotated[str, Field(min_length=1)] = "http://${attr.unique.network.ip-address}:8500"
    consul_audience: Annotated[str, Field(min_length=1)] = "consul.io"
    variable_path: (
        Annotated[str, _matching(_SECRET_PATH_RE, "a path is letters, digits, '_', '.', '/' or '-'")] | None
    ) = None
    placement: Placement = Placement()
    resources: Resources = Resources(cpu=200, memory="256MiB", disk="300MiB")


class Monitoring(Strict):
    """What ``nomadwn render`` writes for Prometheus and Grafana (``monitoring`` block).

    ``consul_server`` is the Consul agent Prometheus asks for its targets (its
    ``consul_sd_configs`` server, usually the agent on the Prometheus host);
    ``nomad_scheme`` is how Prometheus reaches the Nomad clients' HTTP API for their
    allocation metrics.
    """

    consul_server: Annotated[
        str, _matching(re.compile(r"[A-Za-z0-9.-]+(:[0-9]{1,5})?|\[[0-9A-Fa-f:]+\](:[0-9]{1,5})?"), "write host:port")
    ] = "localhost:8500"
    consul_scheme: Literal["http", "https"] = "http"
    nomad_scheme: Literal["http", "https"] = "http"
    scrape_interval: Duration = timedelta(seconds=30)


NomadVersion = Literal["1.9", "1.10", "2.0"]
SUPPORTED_VERSIONS: tuple[NomadVersion, ...] = ("1.10", "2.0")
"""The Nomad versions nomadwn renders for and supports (1.10 LTS and 2.0); 1.9 is end of life."""


class NomadClients(Strict):
    """Facts about the site's Nomad cluster that the jobs must respect.

    ``version`` is the Nomad minor version the servers run (``1.10`` LTS, the default,
    or ``2.0``; ``1.9`` is end of life and accepted with a note). It decides what is
    rendered: up to 1.10 a system job's rollout is paced only by ``max_parallel`` and
    ``stagger`` (no deployment, no health gate, no auto-revert), from 1.11 on it is a
    deployment (``api/jobs.go`` ``Job.Canonicalize`` gives system jobs the default
    update strategy; ``scheduler/scheduler_system.go``).
    """

    version: NomadVersion = "1.10"
    max_kill_timeout: Duration = timedelta(seconds=30)


class Site(Strict):
    """A validated site: its name, Nomad client facts and its flavours (defaults merged in)."""

    name: Name
    nomad: NomadClients = NomadClients()
    autoscaler: AutoscalerService | None = None
    monitoring: Monitoring = Monitoring()
    flavours: Annotated[dict[Name, Flavour], Field(min_length=1)]

    def job_id(self, flavour: str) -> str:
        """The Nomad job ID of a flavour: ``job_id`` if set, else ``<site>-<flavour>``."""
        return self.flavours[flavour].job_id or f"{self.name}-{flavour}"

    @property
    def autoscaler_job_id(self) -> str:
        """The Nomad job ID of the site's autoscaler service."""
        return f"{self.name}-autoscaler"

    @property
    def lock_key(self) -> str:
        """The Consul KV key the autoscaler replicas contend for."""
        own = self.autoscaler.lock_key if self.autoscaler is not None else None
        return own or f"nomadwn/{self.name}/autoscaler/leader"

    def autoscaled(self) -> list[str]:
        """The flavours with an ``autoscale`` block, in site-file order."""
        return [name for name, f in self.flavours.items() if f.autoscale is not None]


# ---------------------------------------------------------------------------
# Derived values, shared by validation and rendering


def version_tuple(version: str) -> tuple[int, ...]:
    """``"1.10"`` -> ``(1, 10)``, for comparing Nomad versions."""
    return tuple(int(part) for part in version.split("."))


def system_deployments(site: Site) -> bool:
    """Whether Nomad gives system jobs deployments (health-gated rollouts, auto-revert): 1.11 and later."""
    return version_tuple(site.nomad.version) >= (1, 11)


def health_settle(flavour: Flavour) -> timedelta:
    """How long after a worker starts a passing check result may take to reach Consul.

    Nomad runs a script check as soon as the task starts, then every ``interval``
    (``client/allocrunner/taskrunner/tasklet.go``: a timer at 0, reset to the
    interval), each run taking up to ``timeout``; until a result arrives Consul shows
    the check critical. The startd is seldom up at the first run, so the first
    *passing* result comes one ``interval`` plus ``timeout`` later; ``check_restart.grace``
    is how long Nomad itself ignores failures. The longer of the two.
    """
    h = flavour.health
    first = h.interval + h.timeout
    grace = h.check_restart.grace if h.check_restart is not None else timedelta(0)
    return max(first, grace)


def site_notes(site: Site) -> list[FieldProblem]:
    """Things ``validate`` says about a valid site: what the target Nomad version does with it."""
    out: list[FieldProblem] = []
    if site.nomad.version not in SUPPORTED_VERSIONS:
        out.append(
            FieldProblem(
                "nomad.version",
                f"Nomad {site.nomad.version} is end of life; nomadwn supports "
                f"{' and '.join(SUPPORTED_VERSIONS)} (rendered as for 1.10)",
            )
        )
    for name, f in site.flavours.items():
        if f.resources.memory_max is not None:
            # nomad/job_endpoint_hooks.go memoryOversubscriptionValidate (1.10 and 2.0).
            out.append(
                FieldProblem(
                    f"flavours.{name}.resources.memory_max",
                    "Nomad ignores it and warns unless memory oversubscription is enabled in the scheduler "
                    "configuration (nomad operator scheduler set-config -memory-oversubscription=true)",
                )
            )
        u0 = f.update
        if (
            u0 is not None
            and u0.health_check == "checks"
            and u0.healthy_deadline <= u0.min_healthy_time + health_settle(f)
        ):
            out.append(
                FieldProblem(
                    f"flavours.{name}.update.healthy_deadline",
                    f"shorter than min_healthy_time plus the first passing check "
                    f"({duration_text(u0.min_healthy_time + health_settle(f))}): a worker whose startd needs a "
                    "second check run is never healthy in time",
                )
            )
        if f.kind != "system" or f.update is None or system_deployments(site):
            continue
        u = f.update
        at = f"flavours.{name}.update"
        out.append(
            FieldProblem(
                at,
                f"Nomad {site.nomad.version} paces a system job only by max_parallel and stagger (no deployment): "
                "nomadwn renders those two, and its watcher applies min_healthy_time, healthy_deadline"
                + (" and auto_revert (nomadwn reverts the job itself on failure)" if u.auto_revert else ""),
            )
        )
        judge = u.min_healthy_time + health_settle(f)
        if u.max_parallel and u.stagger < judge:
            out.append(
                FieldProblem(
                    f"{at}.stagger",
                    f"Nomad starts the next {u.max_parallel} node(s) after stagger ({duration_text(u.stagger)}), "
                    f"before nomadwn can judge a batch (min_healthy_time plus the first check, "
                    f"{duration_text(judge)}); a broken image reaches more nodes before it is reverted. "
                    f"Raise stagger to at least {duration_text(judge)}",
                )
            )
    return out


def static_port(flavour: Flavour) -> bool:
    """Whether the HTCondor port is a static host port (default: only for system jobs)."""
    if flavour.htcondor.static_port is not None:
        return flavour.htcondor.static_port
    return flavour.kind == "system"


def port_labels(flavour: Flavour) -> list[str]:
    """The port labels the group's network block defines."""
    labels = ["condor"]
    if flavour.service.prometheus is not None:
        labels.append("metrics")
    return labels


def service_meta(flavour: Flavour) -> dict[str, str]:
    """The Consul service meta: the site's own."""
    return dict(sorted(flavour.service.meta.items()))


METRICS_TAG = "metrics"
"""The tag of every Consul service Prometheus should scrape (with the site's name as a second tag)."""


def metrics_service_name(flavour: Flavour) -> str:
    """The Consul service of a worker's metrics port (``service.prometheus``).

    A service of its own, because Prometheus' Consul discovery gives each service's
    address and port directly: a dynamic port named in the condor service's meta
    could not be resolved.
    """
    return f"{flavour.service.name}-metrics"


def autoscaler_problems(site: Site) -> list[FieldProblem]:
    """Rules on the site's ``autoscaler`` block (Consul's limits for the leader lock)."""
    a = site.autoscaler
    if a is None:
        return []
    out = []
    if not timedelta(seconds=20) <= a.lock_ttl <= timedelta(hours=48):
        out.append(
            FieldProblem(
                "autoscaler.lock_ttl",
                "must be 20s to 48h: Consul's session TTL (half of it) must be at least 10s",
            )
        )
    if a.lock_delay > timedelta(seconds=60):
        out.append(FieldProblem("autoscaler.lock_delay", "must be at most 60s (Consul's limit)"))
    if not site.autoscaled():
        out.append(FieldProblem("autoscaler", "no flavour has an autoscale block; add one or remove this block"))
    return out


def privileges(flavour: Flavour) -> list[str]:
    """Plain-words statements of the elevated privileges a flavour's container gets."""
    if flavour.cvmfs.mode != "fuse":
        return []
    return [
        "CVMFS fuse mode: the container gets capabilities SYS_ADMIN and MKNOD and the device /dev/fuse; "
        "the docker plugin on the clients must allow them (allow_caps)."
    ]


def dispatched(flavour: Flavour) -> bool:
    """Whether the flavour's workers are dispatched one by one by the autoscaler.

    An autoscaled batch flavour is rendered as a *parameterized* job: registering it
    starts nothing, and each ``nomad job dispatch`` of it starts one ephemeral worker
    that ends by its lifespan. Its ``scaling`` bounds the live workers, in nomadwn only.
    """
    return flavour.kind == "batch" and flavour.autoscale is not None


def count(flavour: Flavour) -> int | None:
    """The group count Nomad gets: none for system jobs, else ``count`` (default 1)."""
    if flavour.kind == "system":
        return None
    return 1 if flavour.count is None else flavour.count


SHUTDOWN_SLACK = timedelta(seconds=15)
"""Time each layer of the worker gets, after the one inside it is done, to finish and exit."""
MAX_VACATE = timedelta(minutes=10)
"""The longest soft-kill window a payload gets (HTCondor's own default MachineMaxVacateTime)."""


def _whole_seconds(value: timedelta) -> timedelta:
    return timedelta(seconds=int(value.total_seconds()))


@dataclass(frozen=True)
class ShutdownPlan:
    """Every HTCondor and Nomad knob of a worker's shutdown, derived from ``lifespan.retirement``.

    One model for every way a worker stops (Nomad's ``kill_signal``, ``max_age``,
    ``idle_shutdown``, ``nomadwn drain``): the startd stops taking payloads at once and
    each running payload may run for ``R = retirement`` counted from its own start;
    only then is it asked to leave, and only then does the container exit. With
    ``V = vacate`` (R/10, 1 s to 10 min) and ``S`` = :data:`SHUTDOWN_SLACK` (15 s)::

        knob                              value        why
        MAXJOBRETIREMENTTIME              R + V        HTCondor evicts a retiring payload once its remaining
                                                       retirement is down to its vacate time ("Evicting job
                                                       with 120s of retirement time remaining in order to
                                                       accommodate this job's max vacate time of 600s"), so
                                                       R + V leaves the payload R of run time
        MachineMaxVacateTime              V            the soft-kill window after retirement; HTCondor's 600 s
                                                       default would swallow any retirement of 10 min or less
        STARTD.SHUTDOWN_GRACEFUL_TIMEOUT  R + V + S    the startd's own fallback to a fast shutdown
                                                       (self-expiry, drains): never before retirement is over
        MASTER.SHUTDOWN_GRACEFUL_TIMEOUT  R + V + 2S   the master waits for its startd (SIGTERM is graceful)
        kill_timeout (needed)             R + V + 3S   Nomad's SIGKILL only after HTCondor has exited
        update.progress_deadline          kill_timeout an old worker may take kill_timeout to stop
                                          + healthy_deadline  before its replacement can become healthy

    ``kill_timeout`` is ``lifespan.kill_timeout`` if set, else the needed value; Nomad
    caps it at the clients' ``max_kill_timeout``. ``covered`` is whether a Nomad stop
    lets every payload retire. Only with ``accept_payload_loss`` may it be false: the
    master's timeout then ends ``S`` before the SIGKILL (a clean HTCondor eviction, the
    payload goes back to the queue) while drains and self-expiry still honour ``R``.
    """

    retirement: timedelta
    vacate: timedelta
    max_job_retirement_time: timedelta
    startd_graceful_timeout: timedelta
    master_graceful_timeout: timedelta
    needed_kill_timeout: timedelta
    kill_timeout: timedelta
    covered: bool


def vacate_time(retirement: timedelta) -> timedelta:
    """The soft-kill window a payload gets when its retirement is over: R/10, 1 s to 10 min."""
    return max(timedelta(seconds=1), min(MAX_VACATE, _whole_seconds(retirement / 10)))


def shutdown_plan(site: Site, name: str) -> ShutdownPlan:
    """The shutdown knobs of flavour ``name`` (see :class:`ShutdownPlan` for the table)."""
    life = site.flavours[name].lifespan
    r = _whole_seconds(life.retirement or timedelta(0))
    v = vacate_time(r)
    s = SHUTDOWN_SLACK
    needed = r + v + 3 * s
    cap = site.nomad.max_kill_timeout
    if life.kill_timeout is not None:
        kill_timeout = life.kill_timeout
    elif life.accept_payload_loss:
        kill_timeout = min(needed, cap)
    else:
        kill_timeout = needed  # validate refuses it when it exceeds the cap
    effective = min(kill_timeout, cap)
    covered = effective >= needed and life.kill_signal == "SIGTERM" and bool(life.retirement)
    master = r + v + 2 * s
    if effective < needed:
        # HTCondor must give up (a clean eviction) before Nomad's SIGKILL lands.
        master = effective - s if effective > 2 * s else effective / 2
    return ShutdownPlan(
        retirement=r,
        vacate=v,
        max_job_retirement_time=r + v,
        startd_graceful_timeout=r + v + s,
        master_graceful_timeout=_whole_seconds(master),
        needed_kill_timeout=needed,
        kill_timeout=kill_timeout,
        covered=covered,
    )


def longest_retirement(max_kill_timeout: timedelta) -> timedelta:
    """The longest retirement a Nomad stop can honour within ``max_kill_timeout``."""
    low, high = 0, max(0, int(max_kill_timeout.total_seconds()))
    while low < high:  # the largest R with R + vacate(R) + 3S <= max_kill_timeout
        mid = (low + high + 1) // 2
        r = timedelta(seconds=mid)
        if r + vacate_time(r) + 3 * SHUTDOWN_SLACK <= max_kill_timeout:
            low = mid
        else:
            high = mid - 1
    return timedelta(seconds=low)


DEFAULT_PROGRESS_DEADLINE = timedelta(minutes=10)

NOMAD_DEFAULT_UPDATE = Update(
    max_parallel=1,
    canary=0,
    auto_revert=False,
    auto_promote=False,
    health_check="checks",
    min_healthy_time=timedelta(seconds=10),
    healthy_deadline=timedelta(minutes=5),
    stagger=timedelta(seconds=30),
)
"""Nomad's ``DefaultUpdateStrategy`` (api/jobs.go at v1.10.5 and v2.0.5), its progress deadline left to derive."""


def update_strategy(site: Site, name: str) -> Update | None:
    """The rolling-update strategy Nomad applies to flavour ``name``: the site's, or Nomad's default.

    ``Job.Canonicalize`` (api/jobs.go, v1.10.5 and v2.0.5) gives a service job with no
    ``update`` block ``DefaultUpdateStrategy``, and from 1.11 a system job too; its
    10-minute progress deadline would fail every rollout of a worker whose payloads
    retire for longer, because a replacement waits for its previous allocation to stop
    (client/allocwatcher ``NewAllocWatcher``: every allocation with a
    ``PreviousAllocation`` waits, local or remote). So nomadwn renders that default
    explicitly, with the deadline derived by :func:`progress_deadline`. ``None``: Nomad
    applies no strategy (batch jobs; system jobs up to 1.10).
    """
    f = site.flavours[name]
    if f.update is not None:
        return f.update
    if f.kind == "service" or (f.kind == "system" and system_deployments(site)):
        return NOMAD_DEFAULT_UPDATE
    return None


def progress_deadline(site: Site, name: str) -> timedelta:
    """The deployment's progress deadline: the site's, or long enough for old workers to retire.

    A destructive update stops an old worker (up to ``kill_timeout``) before its
    replacement can become healthy (up to ``healthy_deadline``): the replacement waits
    for its previous allocation to stop before its health deadline starts
    (client/allocrunner/alloc_runner_hooks.go runs the upstream-allocs hook before the
    health watcher), while Nomad's progress deadline runs from the placement.
    """
    u = update_strategy(site, name)
    assert u is not None
    if u.progress_deadline is not None:
        return u.progress_deadline
    plan = shutdown_plan(site, name)
    return max(DEFAULT_PROGRESS_DEADLINE, plan.kill_timeout + u.healthy_deadline)


def restart_mode(flavour: Flavour) -> Literal["fail", "delay"]:
    """Nomad's restart mode: ``delay`` for system/service workers, ``fail`` for batch (unless set).

    ``fail`` on a system job leaves the node without a worker for good after a few
    check restarts (Nomad does not reschedule system allocations).
    """
    rs = flavour.restart
    if rs.mode is not None:
        return rs.mode
    return "fail" if flavour.kind == "batch" or rs.attempts == 0 else "delay"


def _payload_loss(site: Site, name: str, plan: ShutdownPlan) -> str:
    life = site.flavours[name].lifespan
    cap = site.nomad.max_kill_timeout
    r = duration_text(plan.retirement)
    if life.kill_signal != "SIGTERM":
        return (
            f"kill_signal {life.kill_signal} is HTCondor's fast shutdown: a Nomad stop kills running payloads at once"
        )
    if not life.retirement:
        return "with no retirement, any stop (Nomad's, max_age, a drain) evicts running payloads at once"
    killed = duration_text(min(plan.kill_timeout, cap))
    return (
        f"a Nomad stop (redeploy, scale-in, node drain, job stop) kills running payloads after {killed}, "
        f"before their retirement ({r}) is over"
    )


def shutdown_problems(site: Site, name: str) -> list[FieldProblem]:
    """Where a Nomad-initiated stop would kill a running payload before its retirement, and the fix."""
    f = site.flavours[name]
    life = f.lifespan
    at = f"flavours.{name}.lifespan"
    cap = site.nomad.max_kill_timeout
    plan = shutdown_plan(site, name)
    out: list[FieldProblem] = []
    if life.kill_timeout is not None and life.kill_timeout > cap:
        out.append(
            FieldProblem(
                f"{at}.kill_timeout",
                f"Nomad silently caps it at the clients' max_kill_timeout ({duration_text(cap)}); "
                "lower it, or raise nomad.max_kill_timeout if your clients allow more",
            )
        )
    if plan.covered or life.accept_payload_loss:
        return out
    accept = f"or set {at}.accept_payload_loss: true to accept it (then drain first: nomadwn drain, deploy --drain)"
    needed = duration_text(plan.needed_kill_timeout)
    if life.kill_signal != "SIGTERM":
        out.append(
            FieldProblem(f"{at}.kill_signal", f"{_payload_loss(site, name, plan)}; use SIGTERM (graceful), {accept}")
        )
    elif not life.retirement:
        out.append(
            FieldProblem(
                f"{at}.retirement",
                f"not set (or 0s): {_payload_loss(site, name, plan)}; set it to the longest run time your payloads "
                f"need (such as 48h) and raise max_kill_timeout to match, {accept}",
            )
        )
    elif life.kill_timeout is not None and life.kill_timeout < plan.needed_kill_timeout:
        out.append(
            FieldProblem(
                f"{at}.kill_timeout",
                f"{_payload_loss(site, name, plan)}; retirement {duration_text(plan.retirement)} needs "
                f"kill_timeout of at least {needed} (retirement + vacate + 3 x 15s): raise it or remove it "
                f"(it is derived), or lower {at}.retirement, {accept}",
            )
        )
    elif plan.needed_kill_timeout > cap:
        fits = longest_retirement(cap)
        lower = f"or lower {at}.retirement to at most {duration_text(fits)}, " if fits else ""
        out.append(
            FieldProblem(
                f"{at}.retirement",
                f"{_payload_loss(site, name, plan)} (nomad.max_kill_timeout is {duration_text(cap)}; "
                f"retirement {duration_text(plan.retirement)} needs kill_timeout {needed}): set max_kill_timeout "
                f'= "{needed}" or more in the client block of every Nomad client that runs this flavour and '
                f"nomad.max_kill_timeout to match, {lower}{accept}",
            )
        )
    return out


def shutdown_warnings(site: Site, name: str) -> list[FieldProblem]:
    """The risk a flavour accepted with ``lifespan.accept_payload_loss`` (reported on every validate)."""
    f = site.flavours[name]
    plan = shutdown_plan(site, name)
    if plan.covered or not f.lifespan.accept_payload_loss:
        return []
    return [
        FieldProblem(
            f"flavours.{name}.lifespan.accept_payload_loss",
            f"{_payload_loss(site, name, plan)}; drain first (nomadwn drain, deploy --drain) to lose none",
        )
    ]


def site_warnings(site: Site) -> list[FieldProblem]:
    """Accepted risks ``validate`` reports on every run (the site is valid with them)."""
    return [w for name in site.flavours for w in shutdown_warnings(site, name)]


def forwarded_bytes_per_hour(flavour: Flavour) -> int:
    """The most the log forwarder can write to the task's stdout in an hour (lines cut to LOG_LINE_BYTES)."""
    return flavour.logs.forward_per_minute * 60 * (LOG_LINE_BYTES + 32)  # + the daemon prefix


def flavour_problems(site: Site, name: str) -> list[FieldProblem]:
    """Rules that span several fields of one flavour, each naming the field to fix."""
    f = site.flavours[name]
    at = f"flavours.{name}"
    out: list[FieldProblem] = []

    def bad(path: str, message: str) -> None:
        out.append(FieldProblem(f"{at}.{path}", message))

    if f.kind == "batch" and f.update is not None:
        bad("update", "a batch job may not have an update block (Nomad rejects it); remove it or set it to null")
    if f.kind == "system":
        if f.scaling is not None:
            bad("scaling", "a system job runs one worker per node and cannot be scaled; remove it or use kind: service")
        if f.count is not None:
            bad("count", "a system job runs one worker per eligible node and takes no count; remove it")
        if f.reschedule is not None:
            bad("reschedule", "system jobs are not rescheduled by Nomad; remove it")
        if f.placement.spreads:
            bad("placement.spreads", "Nomad does not allow spread on system jobs; remove it")
        if f.update is not None and (f.update.canary or f.update.auto_promote):
            if not system_deployments(site):
                bad(
                    "update.canary",
                    f"Nomad {site.nomad.version} gives system jobs no canaries (they need deployments, Nomad 2.0); "
                    "set canary: 0 and auto_promote: false, or nomad.version: '2.0'",
                )
            elif f.update.canary > 100:
                bad("update.canary", "on a system job canary is a percentage of the nodes: 0 to 100")
    if f.update is not None:
        u = f.update
        if u.auto_promote and u.canary == 0:
            bad("update.auto_promote", "auto_promote needs canary of at least 1")
        if u.min_healthy_time >= u.healthy_deadline:
            bad("update.min_healthy_time", "must be shorter than healthy_deadline")
        pd = progress_deadline(site, name)
        if pd != timedelta(0) and pd <= u.healthy_deadline:
            bad("update.progress_deadline", "must be longer than healthy_deadline (or 0 to disable)")
        elif u.progress_deadline is not None and pd:
            least = shutdown_plan(site, name).kill_timeout + u.healthy_deadline
            if pd < least:
                bad(
                    "update.progress_deadline",
                    f"an old worker may take kill_timeout to stop before its replacement becomes healthy: "
                    f"set it to at least {duration_text(least)} (kill_timeout + healthy_deadline), or remove it "
                    "(it is derived)",
                )
        if u.stagger <= timedelta(0):
            bad("update.stagger", "must be longer than 0s")
    if f.autoscale is not None and f.scaling is None:
        bad("autoscale", "needs a scaling block: its min and max bound what the autoscaler may set")
    if f.autoscale is not None and f.kind == "system":
        bad("autoscale", "a system job runs one worker per node and cannot be autoscaled; use kind: service or batch")
    if site.autoscaler is not None and name == "autoscaler":
        bad("kind", "the name 'autoscaler' is taken by the site's autoscaler job; rename this flavour")
    first = next(iter(site.autoscaled()), name)
    if f.autoscale is not None and f.htcondor.collector != site.flavours[first].htcondor.collector:
        bad("htcondor.collector", f"autoscaled flavours must share one pool: use flavour {first}'s collector")
    if dispatched(f) and (f.count or 1) != 1:
        bad("count", "an autoscaled batch flavour is dispatched one worker per job; set count to 1 or remove it")
    if f.autoscale is not None and f.autoscale.stale_after < f.autoscale.evaluation_interval:
        bad("autoscale.stale_after", "must be at least evaluation_interval, or every observation is stale")
    if f.scaling is not None:
        wanted = count(f) or 0
        if f.scaling.min > f.scaling.max:
            bad("scaling.min", "must not exceed scaling.max")
        elif not f.scaling.min <= wanted <= f.scaling.max:
            bad("count", f"must lie within scaling.min..scaling.max ({f.scaling.min}..{f.scaling.max})")

    if f.image.tag is None and f.image.digest is None:
        bad("image.tag", "pin the image: set a tag (not latest) or a digest")
    elif f.image.tag == "latest" and f.image.digest is None and not f.image.allow_latest:
        bad(
            "image.tag",
            "'latest' is not a pinned version; set a version tag or digest, or allow_latest: true to force it",
        )

    if f.service.port not in port_labels(f):
        bad(
            "service.port",
            f"no port labelled {f.service.port!r} in the group network; use one of: {', '.join(port_labels(f))}",
        )
    # Consul refuses these registrations with HTTP 400 (checked against a real agent).
    meta = service_meta(f)
    for key in f.service.meta:
        if key.lower().startswith("consul-"):
            bad(f"service.meta.{key}", "Consul reserves keys starting with 'consul-'; rename it")
        if len(f.service.meta[key]) > 512:
            bad(f"service.meta.{key}", "Consul allows at most 512 characters in a meta value")
    if len(meta) > 64:
        bad("service.meta", f"Consul allows at most 64 meta pairs; this service would have {len(meta)}")
    if f.service.shutdown_delay < timedelta(seconds=1):
        bad("service.shutdown_delay", "must be at least 1s (Nomad 2.0 warns about services without a shutdown_delay)")
    if f.lifespan.check_interval < timedelta(seconds=1):
        bad("lifespan.check_interval", "must be at least 1s")
    if f.service.prometheus is not None and f.service.prometheus.port == f.htcondor.port:
        bad("service.prometheus.port", "must differ from htcondor.port")
    if f.service.prometheus is not None and len(metrics_service_name(f)) > 63:
        bad("service.name", "with service.prometheus it gets a '-metrics' twin, which must fit 63 characters")

    cv = f.cvmfs
    if cv.mode == "fuse":
        if not cv.repositories:
            bad(
                "cvmfs.repositories",
                "fuse mode mounts only the repositories listed here; name at least one (such as grid.cern.ch)",
            )
        if cv.http_proxy is None:
            bad("cvmfs.http_proxy", "fuse mode needs an HTTP proxy for CVMFS (a squid URL, or DIRECT)")
    else:
        for fuse_only in ("repositories", "http_proxy", "quota_limit"):
            if fuse_only in cv.model_fields_set:
                bad(f"cvmfs.{fuse_only}", "applies only to mode: fuse; with mode: bind the host mounts CVMFS")

    if f.pool_auth is not None:
        if f.pool_auth.source == "vault" and f.pool_auth.path is None:
            bad("pool_auth.path", "source: vault needs the path of a KV v2 secret (such as kv/data/condor)")
        if f.pool_auth.source != "vault" and f.pool_auth.vault_role is not None:
            bad("pool_auth.vault_role", "applies only to source: vault")

    h = f.health
    if h.interval < timedelta(seconds=1):
        bad("health.interval", "Nomad rejects check intervals below 1s")
    if h.timeout < timedelta(seconds=1):
        bad("health.timeout", "Nomad rejects check timeouts below 1s")

    for i, c in enumerate(f.placement.constraints):
        where = f"placement.constraints[{i}]"
        if c.operator in ("is_set", "is_not_set"):
            if c.value:
                bad(f"{where}.value", f"operator {c.operator} takes no value; remove it")
        elif c.operator not in ("distinct_hosts", "distinct_property") and not c.value:
            bad(f"{where}.value", f"operator {c.operator!r} needs a value")
        if c.operator != "distinct_hosts" and not c.attribute:
            bad(f"{where}.attribute", "required for this operator")
    for i, s in enumerate(f.placement.spreads):
        values = [t.value for t in s.targets]
        if sum(t.percent for t in s.targets) > 100:
            bad(f"placement.spreads[{i}].targets", "the percents add up to more than 100")
        if len(set(values)) != len(values):
            bad(f"placement.spreads[{i}].targets", "each target value may appear only once")

    rs = f.restart
    if f.kind == "system" and restart_mode(f) == "fail":
        bad(
            "restart.mode",
            "fail leaves the node without a worker for good after the restart attempts (Nomad does not "
            "reschedule system jobs); use delay with attempts of at least 1",
        )
    if rs.attempts == 0 and restart_mode(f) != "fail":
        bad("restart.mode", "with attempts: 0 the mode must be fail (Nomad calls delay ambiguous)")
    if rs.interval < timedelta(seconds=5):
        bad("restart.interval", "Nomad requires at least 5s")
    elif rs.delay * rs.attempts > rs.interval:
        bad("restart.interval", "must fit attempts x delay")
    rp = f.reschedule
    if rp is not None and (rp.attempts > 0 or rp.unlimited):
        if rp.attempts > 0 and rp.unlimited:
            bad("reschedule.unlimited", "set either attempts (with an interval) or unlimited: true, not both")
        if rp.delay < timedelta(seconds=5):
            bad("reschedule.delay", "Nomad requires at least 5s")
        if rp.delay_function != "constant" and rp.max_delay < max(rp.delay, timedelta(seconds=5)):
            bad("reschedule.max_delay", "must be at least delay (and 5s)")
        if not rp.unlimited and rp.interval < timedelta(seconds=15):
            bad("reschedule.interval", "with a limited number of attempts Nomad needs an interval of at least 15s")

    r = f.resources
    if r.memory < 10:
        bad("resources.memory", "Nomad requires at least 10 MiB")
    if r.disk < 10:
        bad("resources.disk", "Nomad requires at least 10 MiB")
    if f.logs.max_files * f.logs.max_file_size >= r.disk:
        bad("logs", "max_files x max_file_size must be less than resources.disk (Nomad keeps logs on that disk)")
    if f.logs.forward and forwarded_bytes_per_hour(f) > f.logs.max_files * f.logs.max_file_size * 2**20:
        bad(
            "logs.forward_per_minute",
            "at this rate the forwarded HTCondor logs would rotate the task's whole log away within an hour; "
            "lower it or raise logs.max_files x logs.max_file_size",
        )
    if (r.cores is None) == (r.cpu is None):
        bad("resources.cores", "set exactly one of cores (whole cores) or cpu (MHz)")
    if r.cpu is not None and r.cores is None and f.htcondor.slots.cores is None:
        bad(
            "resources.cpu",
            "MHz is a CPU share, not cores: the startd would advertise every core of the host; "
            "set resources.cores, or htcondor.slots.cores to the whole cores this share is worth",
        )
    if not f.htcondor.ccb and not static_port(f):
        bad(
            "htcondor.ccb",
            "without CCB the startd must be reachable at the host's address, but its port is a dynamic "
            "port behind Nomad's network; set htcondor.static_port: true (the host port is htcondor.port) "
            "or ccb: true",
        )
    if r.memory_max is not None and r.memory_max < r.memory:
        bad("resources.memory_max", "must be at least resources.memory")
    slots = f.htcondor.slots
    if slots.cores is not None and r.cores is not None and slots.cores > r.cores:
        bad("htcondor.slots.cores", "the slots cannot have more cores than the container reserves (resources.cores)")
    if slots.memory is not None and slots.memory > r.memory:
        bad(
            "htcondor.slots.memory",
            "the slots cannot have more memory than Nomad reserves (resources.memory; memory_max is not reserved)",
        )
    if slots.disk is not None and slots.disk > r.disk:
        bad("htcondor.slots.disk", "the slots cannot have more disk than Nomad reserves (resources.disk)")

    lifespan = f.lifespan
    out.extend(shutdown_problems(site, name))
    if f.kind == "batch" and lifespan.max_age is None and lifespan.idle_shutdown is None:
        bad("lifespan", "an ephemeral (batch) worker must expire by itself: set max_age or idle_shutdown")
    return out
