"""The files a worker container renders for itself at start (the Autopilot pattern).

Each file becomes one Nomad ``template`` block: Nomad writes it into the task
directory before the container starts, so the container configures itself with no
site-specific image. This module only builds the text; :mod:`nomadwn.render` turns
it into job blocks. Pure: no I/O.

Inside the container Nomad's task directory is mounted at ``/local`` (and
``/secrets`` for the pool secret); the HTCondor file is bind-mounted into
``htcondor.config_dir`` so the image's own configuration still applies first.
"""

from __future__ import annotations

import shlex
from dataclasses import dataclass

from nomadwn.model import LOG_LINE_BYTES, Flavour, Site, shutdown_plan
from nomadwn.quoting import string_literal, template_text
from nomadwn.units import duration_seconds

CONDOR_CONFIG_NAME = "99-nomadwn.conf"
LOG_FORWARDER = "forward-logs.sh"
"""The log forwarder's file name, next to start.sh in the task directory."""
TOKEN_DIR = "/secrets/condor/tokens.d"  # noqa: S105 - a path, not a secret
PASSWORD_FILE = "/secrets/condor/pool_password"  # noqa: S105 - a path, not a secret


@dataclass(frozen=True)
class TemplateFile:
    """One file Nomad renders into the task directory.

    ``destination`` is relative to the task directory; ``text`` is consul-template
    source (already escaped where it holds literal text); ``mount_at`` is where the
    container sees it when it must appear outside ``/local``.
    """

    destination: str
    text: str
    perms: str = "0644"
    change_mode: str = "restart"
    change_signal: str | None = None
    mount_at: str | None = None


def execute_dir() -> str:
    """Job scratch (HTCondor's EXECUTE): inside the allocation directory, on the ephemeral disk Nomad reserved."""
    return "$ENV(NOMAD_ALLOC_DIR)/condor/execute"


def worker_disk_mb(flavour: Flavour) -> int:
    """The disk the startd may hand out: ``ephemeral_disk`` less the task logs Nomad keeps on it."""
    if flavour.htcondor.slots.disk is not None:
        return flavour.htcondor.slots.disk
    return flavour.resources.disk - flavour.logs.max_files * flavour.logs.max_file_size


def worker_cores(flavour: Flavour) -> int:
    """NUM_CPUS: the slots' cores, else the cores Nomad reserved (validate requires one of them)."""
    cores = flavour.htcondor.slots.cores or flavour.resources.cores
    assert cores is not None, "validate requires resources.cores or htcondor.slots.cores"
    return cores


HEALTH_CRON = "NOMADWNHEALTH"
"""The startd cron job that runs the fitness probe and advertises ``NomadwnHealthy``."""


def condor_config(site: Site, name: str) -> str:
    """The worker's HTCondor configuration for flavour ``name``."""
    f = site.flavours[name]
    c = f.htcondor
    lines: list[str] = []

    def section(title: str) -> None:
        lines.extend(["", f"# --- {title}"])

    def knob(key: str, value: object) -> None:
        lines.append(f"{key} = {value}".rstrip())

    lines.append(f"# Rendered by nomadwn for flavour {name} of site {site.name}; Nomad writes it at container start.")
    section("pool")
    knob("CONDOR_HOST", c.collector[0].split(":")[0])
    knob("COLLECTOR_HOST", ", ".join(c.collector))
    knob("DAEMON_LIST", "MASTER, STARTD")
    knob("USE_SHARED_PORT", "True")
    knob("SHARED_PORT_PORT", c.port)
    if c.ccb:
        # Containers sit on a private network: the startd is reached through CCB.
        knob("CCB_ADDRESS", ", ".join(c.ccb_address) if c.ccb_address else "$(COLLECTOR_HOST)")
    else:
        # No CCB: the startd is reached at the host's address on the static host port
        # (validate requires one), so it must advertise the host's address, not the container's.
        knob("TCP_FORWARDING_HOST", "$ENV(NOMAD_HOST_IP_condor)")
    section("resources: what Nomad reserved for this allocation, not the host's")
    knob("NUM_CPUS", worker_cores(f))
    knob("MEMORY", c.slots.memory or f.resources.memory)  # the reservation, not memory_max
    knob("DISK", worker_disk_mb(f) * 1024)  # HTCondor counts disk in KiB
    knob("EXECUTE", execute_dir())
    if c.slots.partitionable:
        knob("NUM_SLOTS", 1)
        knob("NUM_SLOTS_TYPE_1", 1)
        knob("SLOT_TYPE_1", "100%")
        knob("SLOT_TYPE_1_PARTITIONABLE", "True")
    section("unprivileged container: the container, not HTCondor, enforces limits")
    knob("BASE_CGROUP", "")
    knob("DISCARD_SESSION_KEYRING_ON_STARTUP", "FALSE")
    # One job above its memory request is held (HTCondor's own policy), before it can make
    # the kernel OOM-kill the container and every payload in it.
    lines.append("use POLICY : HOLD_IF_MEMORY_EXCEEDED")
    section("health: a startd cron probe of CVMFS and the grid environment")
    knob("STARTD_CRON_JOBLIST", f"$(STARTD_CRON_JOBLIST) {HEALTH_CRON}")
    knob(f"STARTD_CRON_{HEALTH_CRON}_EXECUTABLE", "$ENV(NOMAD_TASK_DIR)/nomadwn/probe.sh")
    knob(f"STARTD_CRON_{HEALTH_CRON}_MODE", "Periodic")
    knob(f"STARTD_CRON_{HEALTH_CRON}_PERIOD", f"{duration_seconds(f.health.interval)}s")
    knob(f"STARTD_CRON_{HEALTH_CRON}_RECONFIG_RERUN", "True")
    section("job policy")
    # The Glasgow image's drain switch, advertised (STARTD_ATTRS below) so that the
    # autoscaler reads it from the slot ad instead of evaluating START there.
    knob("StartJobs", "True")
    # No payload on a worker that failed its probe (or has not run it yet).
    start = f"($(StartJobs)) && (MY.NomadwnHealthy =?= True) && ({c.start})"
    if c.accounting_group:
        start += f" && (TARGET.AcctGroup =?= {string_literal(c.accounting_group)})"
    knob("START", start)
    if c.grid_env:
        knob("USER_JOB_WRAPPER", "$ENV(NOMAD_TASK_DIR)/nomadwn/job-wrapper.sh")
    section("identity: match HTCondor slots to Nomad allocations")
    knob("NomadAllocId", '"$ENV(NOMAD_ALLOC_ID)"')
    knob("NomadJobId", '"$ENV(NOMAD_JOB_ID)"')
    knob("NomadwnSite", string_literal(site.name))
    knob("NomadwnFlavour", string_literal(name))
    knob("STARTD_ATTRS", "$(STARTD_ATTRS) StartJobs NomadAllocId NomadJobId NomadwnSite NomadwnFlavour")
    section("lifespan and shutdown (nomadwn.model.ShutdownPlan explains every value)")
    life = f.lifespan
    plan = shutdown_plan(site, name)
    expires = life.max_age is not None or life.idle_shutdown is not None
    if expires:
        # HTCondor evaluates the rules below once per update interval (default 300 s).
        knob("UPDATE_INTERVAL", duration_seconds(life.check_interval))
        knob("MASTER_UPDATE_INTERVAL", duration_seconds(life.check_interval))
    knob("MAXJOBRETIREMENTTIME", duration_seconds(plan.max_job_retirement_time))
    knob("MachineMaxVacateTime", duration_seconds(plan.vacate))
    knob("STARTD.SHUTDOWN_GRACEFUL_TIMEOUT", duration_seconds(plan.startd_graceful_timeout))
    knob("MASTER.SHUTDOWN_GRACEFUL_TIMEOUT", duration_seconds(plan.master_graceful_timeout))
    if life.idle_shutdown is not None:
        knob("STARTD_NOCLAIM_SHUTDOWN", duration_seconds(life.idle_shutdown))
    if life.max_age is not None:
        # The age counts from start.sh's NOMADWN_START_TIME: DaemonStartTime is not in the
        # ad the startd evaluates DAEMON_SHUTDOWN against, so it cannot be used here.
        knob("NOMADWN_START_TIME", "$ENV(NOMADWN_START_TIME)")
        knob("NOMADWN_MAX_AGE", duration_seconds(life.max_age))
        knob("STARTD.DAEMON_SHUTDOWN", "(time() - $(NOMADWN_START_TIME)) > $(NOMADWN_MAX_AGE)")
    if expires:
        # When the startd has gone, the master (the container's main process) follows.
        knob("MASTER.DAEMON_SHUTDOWN", "STARTD_StartTime =?= 0")
    if f.pool_auth is not None:
        section("pool authentication (the secret itself is rendered by Nomad into /secrets)")
        if f.pool_auth.method == "idtoken":
            # Re-read at every new authentication: a rotated token needs no restart.
            knob("SEC_TOKEN_DIRECTORY", TOKEN_DIR)
        else:
            knob("SEC_PASSWORD_FILE", PASSWORD_FILE)
    if c.extra_config:
        section("site settings (htcondor.extra_config)")
        for key in sorted(c.extra_config):
            knob(key, c.extra_config[key])
    return "\n".join(lines) + "\n"


EXPIRED_EXIT_CODE = 99
"""How condor_master exits after a DAEMON_SHUTDOWN rule ended it: the worker's lifespan is over."""


def start_script(flavour: Flavour) -> str:
    """The container's entrypoint: mount CVMFS (fuse mode) and run condor_master.

    The master runs as a child so that the script can (a) stamp the start time the
    max_age rule counts from, (b) pass Nomad's stop signal on (SIGTERM graceful,
    SIGQUIT fast; SIGHUP reconfigures), and (c) exit 0 when the worker expired by
    itself, which the master reports as 99: a batch worker that reached its lifespan
    has completed, not failed.
    """
    lines = ["#!/bin/sh", "# Rendered by nomadwn: the worker container's start-up.", "set -eu"]
    if flavour.cvmfs.mode == "fuse":
        repos = " ".join(shlex.quote(repo) for repo in flavour.cvmfs.repositories)
        lines += [
            f"for repo in {repos}; do",
            '  mkdir -p "/cvmfs/$repo"',
            '  mount -t cvmfs "$repo" "/cvmfs/$repo"',
            "done",
        ]
    if flavour.logs.forward:
        lines.append(f'sh "${{0%/*}}/{LOG_FORWARDER}" "$$" &  # HTCondor daemon logs to stdout, until this script ends')
    lines += [
        "# Job scratch in the allocation directory (the ephemeral disk Nomad reserved).",
        'execute="${NOMAD_ALLOC_DIR:-/alloc}/condor/execute"',
        'mkdir -p "$execute"',
        'chown condor:condor "$execute" 2>/dev/null || true',
        'chmod 0755 "$execute"',
        "NOMADWN_START_TIME=$(date +%s)",
        "export NOMADWN_START_TIME",
        "condor_master -f &",
        "master=$!",
        "for sig in TERM QUIT INT HUP; do",
        '  trap "kill -$sig $master 2>/dev/null || true" "$sig"',
        "done",
        "status=0",
        'wait "$master" || status=$?',
        "# A trapped signal ends wait early; wait again until the master is really gone.",
        'while kill -0 "$master" 2>/dev/null; do',
        "  status=0",
        '  wait "$master" || status=$?',
        "done",
        f'if [ "$status" -eq {EXPIRED_EXIT_CODE} ]; then',
        '  echo "nomadwn: the worker reached the end of its lifespan" >&2',
        "  exit 0",
        "fi",
        'exit "$status"',
    ]
    return "\n".join(lines) + "\n"


WRAPPER_REFUSED = 97
"""The job wrapper's exit code when it refuses to run a payload without the grid environment."""


_LOG_KNOBS = {"master": "MASTER_LOG", "startd": "STARTD_LOG", "starter": "STARTER_LOG"}


def log_forwarder(flavour: Flavour) -> str:
    """A POSIX sh loop that copies HTCondor's daemon logs to the task's stdout, bounded.

    HTCondor's daemons write files (``<SUBSYS>_LOG``), which Nomad never sees; this
    follows them the way ``tail -F`` would, once a second, and prints each new line
    prefixed with its daemon (``[startd]``, ``[starter.slot1_1]`` for a slot's
    starter). A file that is renamed away (HTCondor's ``.old`` rotation) or truncated
    is followed from its start again. Bounds, so a chatty daemon cannot rotate the
    task's own log away: at most ``logs.forward_per_minute`` lines a minute, master
    first, then startd, then the starters, which may take three quarters; each cut to LOG_LINE_BYTES; the lines left
    over are counted and reported once a minute. The full logs stay in the container.

    Only sh and coreutils (wc, tail, head, cut, ls, date, mktemp): worker images are
    any EL9/Debian with HTCondor. It ends within a second of its parent (start.sh,
    whose PID is ``$1``), after a last pass.
    """
    daemons = " ".join(d for d in ("master", "startd", "starter") if d in flavour.logs.forward)
    knobs = " ".join(_LOG_KNOBS[d] for d in daemons.split())
    text = f"""#!/bin/sh
# Rendered by nomadwn: forward HTCondor's daemon logs ({daemons}) to the task's stdout.
# At most {flavour.logs.forward_per_minute} lines a minute (logs.forward_per_minute), cut at {LOG_LINE_BYTES} bytes.
parent=${{1:-}}
limit={flavour.logs.forward_per_minute}
width={LOG_LINE_BYTES}
say() {{ printf '[nomadwn] %s\n' "$*"; }}
paths=$(condor_config_val {knobs} 2>/dev/null) || {{
  say "log forwarding off: condor_config_val cannot read the HTCondor configuration"
  exit 0
}}
state=$(mktemp -d "${{TMPDIR:-/tmp}}/nomadwn-logs.XXXXXX") || exit 0
trap 'rm -rf "$state"' EXIT
trap 'exit 0' TERM INT HUP
window=$(date +%s)
used=0
dropped=0

# forward PREFIX FILE CAP: print FILE's complete new lines since the last call, while fewer than
# CAP lines went out this minute (the starters' CAP leaves a quarter for the master and startd).
forward() {{
  [ -f "$2" ] || return 0
  key=$(printf '%s' "$2" | tr -c 'A-Za-z0-9' '_')
  # The file may go between the test and the reads (HTCondor's rotation): skip it this time.
  inode=$(ls -di "$2" 2>/dev/null | cut -d ' ' -f 1)
  size=$(wc -c 2>/dev/null <"$2") || return 0
  [ -n "$inode" ] || return 0
  old_inode=
  off=0
  if [ -f "$state/$key" ]; then read -r old_inode off <"$state/$key"; fi
  # Renamed away (a new file) or truncated: follow the new one from its start.
  if [ "$inode" != "$old_inode" ] || [ "$size" -lt "$off" ]; then off=0; fi
  [ "$size" -gt "$off" ] || {{ echo "$inode $off" >"$state/$key"; return 0; }}
  tail -c "+$((off + 1))" "$2" 2>/dev/null | head -c "$((size - off))" >"$state/chunk"
  lines=$(wc -l <"$state/chunk")
  # Wait for a line's end, unless the unfinished line is already far too long.
  if [ "$lines" -eq 0 ]; then
    [ "$((size - off))" -gt 65536 ] || return 0
    echo >>"$state/chunk"
    lines=1
  fi
  echo "$inode $((off + $(head -n "$lines" "$state/chunk" | wc -c)))" >"$state/$key"
  room=$(($3 - used))
  [ "$room" -gt 0 ] || {{ dropped=$((dropped + lines)); return 0; }}
  if [ "$lines" -gt "$room" ]; then dropped=$((dropped + lines - room)); lines=$room; fi
  used=$((used + lines))
  head -n "$lines" "$state/chunk" | cut -b "1-$width" | while IFS= read -r line; do
    printf '%s %s\n' "$1" "$line"
  done
}}

report() {{
  [ "$dropped" -eq 0 ] ||
    say "$dropped HTCondor log lines not forwarded (limit $limit a minute); all are in $(dirname "$1") in the container"
}}

pass() {{
  set -- $paths
"""
    for d in daemons.split():
        if d == "starter":
            text += """  for f in "$1" "$1".*; do
    case $f in *.old | *'*') continue ;; esac
    suffix=${f#"$1"}
    forward "[starter${suffix}]" "$f" "$((limit - limit / 4))"
  done
  shift
"""
        else:
            text += f"""  forward "[{d}]" "$1" "$limit"
  shift
"""
    text += """}

while :; do
  pass
  now=$(date +%s)
  if [ "$((now - window))" -ge 60 ]; then
    report $paths
    window=$now
    used=0
    dropped=0
  fi
  if [ -n "$parent" ] && ! kill -0 "$parent" 2>/dev/null; then
    pass
    report $paths
    exit 0
  fi
  sleep 1
done
"""
    return text


def job_wrapper(flavour: Flavour) -> str:
    """HTCondor's USER_JOB_WRAPPER: load the grid environment from CVMFS, then run the payload.

    Without the grid environment the payload does not run: the wrapper says why on the
    job's stderr and in ``$_CONDOR_WRAPPER_ERROR_FILE`` (HTCondor's wrapper-failure
    file) and exits :data:`WRAPPER_REFUSED`. Measured on HTCondor 23.9: the starter does
    not act on that file, so the job ends with that exit code rather than being held;
    the startd's probe (START requires ``NomadwnHealthy``) is what keeps payloads away.
    """
    grid_env = flavour.htcondor.grid_env or ""
    return (
        "\n".join(
            [
                "#!/bin/sh",
                "# Rendered by nomadwn: the grid environment comes from CVMFS, not the image.",
                f"grid_env={shlex.quote(grid_env)}",
                "refuse() {",
                '  why="nomadwn job wrapper: $1; the payload was not run on this worker"',
                '  echo "$why" >&2',
                '  if [ -n "${_CONDOR_WRAPPER_ERROR_FILE:-}" ]; then echo "$why" >"$_CONDOR_WRAPPER_ERROR_FILE"; fi',
                f"  exit {WRAPPER_REFUSED}",
                "}",
                '[ -r "$grid_env" ] || refuse "the grid environment $grid_env is not readable (is CVMFS working?)"',
                '. "$grid_env" || refuse "loading the grid environment $grid_env failed"',
                'exec "$@"',
            ]
        )
        + "\n"
    )


def probed_repositories(flavour: Flavour) -> list[str]:
    """The CVMFS repositories the probe checks: fuse mode's list, plus the grid environment's."""
    repos = list(flavour.cvmfs.repositories)
    grid_env = flavour.htcondor.grid_env or ""
    parts = grid_env.split("/")
    if len(parts) > 3 and parts[1] == "cvmfs" and parts[2] and parts[2] not in repos:
        repos.append(parts[2])
    return repos


def probe_script(flavour: Flavour) -> str:
    """The startd cron probe: is this worker fit to run a payload?

    It prints a ClassAd fragment (``NomadwnHealthy``, ``NomadwnHealthReason``) that the
    startd merges into its ad; START requires ``NomadwnHealthy``. The health check runs
    it too. A hung CVMFS mount must not hang the probe, hence ``timeout``.
    """
    grid_env = flavour.htcondor.grid_env
    lines = [
        "#!/bin/sh",
        "# Rendered by nomadwn: can this worker run a payload? (startd cron, ClassAd on stdout)",
        'limit() { if command -v timeout >/dev/null 2>&1; then timeout 30 "$@"; else "$@"; fi; }',
        "unfit() {",
        '  echo "NomadwnHealthy = false"',
        '  echo "NomadwnHealthReason = \\"$1\\""',
        "  exit 0",
        "}",
    ]
    for repo in probed_repositories(flavour):
        q = shlex.quote(f"/cvmfs/{repo}")
        lines.append(f'limit ls {q}/ >/dev/null 2>&1 || unfit "CVMFS repository {repo} is not readable"')
    if grid_env:
        # The path is shell-quoted; in the reason it is named only by its repository-free basename.
        q = shlex.quote(grid_env)
        lines.append(f'[ -r {q} ] || unfit "the grid environment file is not readable"')
        lines.append(f'limit sh -c \'. "$1"\' sh {q} >/dev/null 2>&1 || unfit "loading the grid environment failed"')
    lines += ['echo "NomadwnHealthy = true"', 'echo "NomadwnHealthReason = \\"ok\\""']
    return "\n".join(lines) + "\n"


HEALTH_WARNING = 1
"""Exit code of the health check for "alive but not fit": Consul and Nomad call it *warning*."""
HEALTH_CRITICAL = 2
"""Exit code of the health check for "the startd does not answer": *critical*, check_restart acts."""


def health_script(flavour: Flavour) -> str:
    """The Nomad script check: critical (2) when the startd does not answer, warning (1) when unfit.

    Nomad and Consul map a script check's exit code 0 to passing, 1 to warning and any
    other to critical; ``check_restart`` with ``ignore_warnings`` restarts only on
    critical, so a worker finishing payloads on a broken CVMFS is never restarted.
    """
    return (
        "\n".join(
            [
                "#!/bin/sh",
                "# Rendered by nomadwn: the worker's Consul/Nomad health check.",
                "if ! answer=$(condor_config_val -startd StartJobs 2>&1); then",
                '  echo "critical: the startd does not answer: $answer"',
                f"  exit {HEALTH_CRITICAL}",
                "fi",
                'probe=$(sh "${NOMAD_TASK_DIR:-/local}/nomadwn/probe.sh" 2>&1)',
                'case "$probe" in',
                '  *"NomadwnHealthy = true"*) ;;',
                f'  *) echo "warning: the startd answers but the worker is unfit: $probe"; exit {HEALTH_WARNING} ;;',
                "esac",
                'echo "passing: the startd answers (StartJobs = $answer) and the probe passes"',
            ]
        )
        + "\n"
    )


def cvmfs_config(flavour: Flavour) -> str:
    """``/etc/cvmfs/default.local`` for fuse mode."""
    cv = flavour.cvmfs
    lines = [
        "# Rendered by nomadwn: CVMFS client settings for the in-container (fuse) mount.",
        f"CVMFS_REPOSITORIES={shlex.quote(','.join(cv.repositories))}",
        f"CVMFS_HTTP_PROXY={shlex.quote(cv.http_proxy or 'DIRECT')}",
    ]
    if cv.quota_limit is not None:
        lines.append(f"CVMFS_QUOTA_LIMIT={cv.quota_limit}")
    return "\n".join(lines) + "\n"


def pool_secret(site: Site, name: str) -> str:
    """consul-template source that reads the pool secret at start; the secret never passes through nomadwn."""
    auth = site.flavours[name].pool_auth
    assert auth is not None
    # A pool password file is binary, so the variable holds it base64-encoded.
    decode = " | base64Decode" if auth.method == "password" else ""
    if auth.source == "vault":
        opener, field = f"secret {string_literal(auth.path or '')}", f".Data.data.{auth.key}"
    else:
        path = auth.path or f"nomad/jobs/{site.job_id(name)}"
        opener, field = f"nomadVar {string_literal(path)}", f".{auth.key}"
    return f"{{{{ with {opener} }}}}{{{{ {field}{decode} }}}}{{{{ end }}}}\n"


def template_files(site: Site, name: str) -> list[TemplateFile]:
    """Every file the container needs, in a stable order."""
    f = site.flavours[name]
    files = [
        TemplateFile(
            destination=f"local/nomadwn/{CONDOR_CONFIG_NAME}",
            text=template_text(condor_config(site, name)),
            mount_at=f"{f.htcondor.config_dir.rstrip('/')}/{CONDOR_CONFIG_NAME}",
        ),
        TemplateFile(destination="local/nomadwn/start.sh", text=template_text(start_script(f)), perms="0755"),
        TemplateFile(destination="local/nomadwn/probe.sh", text=template_text(probe_script(f)), perms="0755"),
        TemplateFile(destination="local/nomadwn/health.sh", text=template_text(health_script(f)), perms="0755"),
    ]
    if f.logs.forward:
        files.append(
            TemplateFile(
                destination=f"local/nomadwn/{LOG_FORWARDER}", text=template_text(log_forwarder(f)), perms="0755"
            )
        )
    if f.htcondor.grid_env:
        files.append(
            TemplateFile(destination="local/nomadwn/job-wrapper.sh", text=template_text(job_wrapper(f)), perms="0755")
        )
    if f.cvmfs.mode == "fuse":
        files.append(
            TemplateFile(
                destination="local/nomadwn/cvmfs-default.local",
                text=template_text(cvmfs_config(f)),
                mount_at="/etc/cvmfs/default.local",
            )
        )
    if f.pool_auth is not None:
        idtoken = f.pool_auth.method == "idtoken"
        # A rotated secret is re-rendered within seconds in every allocation: restarting
        # would kill every payload of the site at once. HTCondor re-reads the token
        # directory at each new authentication (noop); a changed pool password is
        # picked up by a reconfig (SIGHUP, which start.sh passes on to the master).
        files.append(
            TemplateFile(
                destination=("secrets/condor/tokens.d/pool" if idtoken else "secrets/condor/pool_password"),
                text=pool_secret(site, name),
                perms="0600",
                change_mode="noop" if idtoken else "signal",
                change_signal=None if idtoken else "SIGHUP",
            )
        )
    return files
