"""The rendered worker configuration, run as a real extra worker inside a real HTCondor pool.

One personal pool (``tests/peers.py``) is started for the module. Each *worker* is a
second ``condor_master -f`` in the same chroot, started the way ``CondorPool`` starts its
own master (``unshare`` + ``chroot`` + ``env -i``), with its own ``CONDOR_CONFIG``:

* a short base (``base_config`` from tests/peers.py) standing in for the image's own configuration:
  paths, loopback networking and test-only security copied from the pool's config,
  with the worker's own LOCAL_DIR/LOG/SPOOL/EXECUTE/LOCK/RUN and MASTER_NAME/STARTD_NAME;
* then the text of ``condor_config(site, flavour)`` verbatim, as Nomad writes it into the
  container (``config.d/99-nomadwn.conf`` is read last there, too). Nothing comes after it,
  so no test setting undoes what the rendered file asserts.

The environment carries ``NOMAD_ALLOC_ID`` and ``NOMAD_JOB_ID`` as Nomad sets them.

Deliberate differences from a real container, all made in the *site data*, not by
overriding the rendered file:

* ``htcondor.grid_env: null``: otherwise the render sets
  ``USER_JOB_WRAPPER = /local/nomadwn/job-wrapper.sh``, a file that exists only in the
  container's task directory. No job runs here, but a worker must not point at a missing
  wrapper.
* ``htcondor.collector`` is the test pool's collector and ``htcondor.port`` a free port
  (the rendered SHARED_PORT_PORT); resources are 2 cores and 1 GiB.
* ``pool_auth`` is left as in the example: the render then sets SEC_TOKEN_DIRECTORY to
  ``/secrets/condor/tokens.d``, which does not exist in the chroot. That is harmless here
  because the base allows CLAIMTOBE only, so no token is ever looked up.

The base copies the pool's fast cycles (UPDATE_INTERVAL = MASTER_UPDATE_INTERVAL = 5).
HTCondor's defaults are 300 s, and they set how often the startd checks
STARTD_NOCLAIM_SHUTDOWN and DAEMON_SHUTDOWN, and how often the master checks its
DAEMON_SHUTDOWN. With the defaults, a worker ends up to about 5 minutes after its lifespan
runs out.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import socket
import subprocess
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import IO, Any, Final

import pytest
import yaml

from nomadwn.autopilot import LOG_FORWARDER, condor_config, log_forwarder, start_script
from nomadwn.model import Site
from nomadwn.render import build_job
from nomadwn.sitefile import parse_site
from tests.peers import REPO_ROOT, CondorPool, base_config

EXAMPLE: Final = REPO_ROOT / "examples" / "glasgow.yaml"
FLAVOUR: Final = "ephemeral"
JOB_ID: Final = "glasgow-ephemeral"
JOIN_TIMEOUT: Final = 40.0
LIFESPAN_DEADLINE: Final = 60.0  # a lifespan of 15-20 s must end the worker within this

# Stands in for the image's own configuration: the pool's base settings (paths, loopback,
# test-only security, fast cycles) without the pool's daemons or its StartJobs/START policy,
# plus the worker's own names; a worker's job policy comes only from the rendered file.
_WORKER_NAMES: Final = """\
MASTER_NAME = {name}
STARTD_NAME = {name}

# ---------------------------------------------------------------------------
# Below: condor_config(site, "{flavour}") verbatim, as Nomad writes it into the container.
"""

_KNOB_RE: Final = re.compile(r"^([A-Za-z_][A-Za-z0-9_.]*)\s*=\s*(.*)$")


# ---------------------------------------------------------------------------
# helpers


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _pids_with_env(marker: bytes) -> list[int]:
    """PIDs whose environment holds ``marker`` (``NAME=value``): every daemon of one worker."""
    pids = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        with contextlib.suppress(OSError):
            if marker in (entry / "environ").read_bytes().split(b"\0"):
                pids.append(int(entry.name))
    return pids


def site_for(
    pool: CondorPool,
    *,
    lifespan: dict[str, str],
    extra_config: dict[str, str] | None = None,
) -> Site:
    """The example site, pointed at ``pool``, with a small ephemeral flavour."""
    data: dict[str, Any] = yaml.safe_load(EXAMPLE.read_text(encoding="utf-8"))
    htcondor = data["defaults"]["htcondor"]
    htcondor["collector"] = [pool.collector]
    htcondor["port"] = _free_port()
    # No USER_JOB_WRAPPER: /local/nomadwn/job-wrapper.sh exists only inside the container.
    htcondor["grid_env"] = None
    if extra_config:
        htcondor["extra_config"] = extra_config
    flavour = data["flavours"][FLAVOUR]
    flavour["resources"] = {"cores": 2, "memory": "1GiB"}
    # The rendered start.sh runs as the worker's main process; no FUSE mounts in the chroot.
    flavour["cvmfs"] = {"mode": "bind"}
    # As fast as the pool's own cycles (the base's UPDATE_INTERVAL is overridden by the render).
    flavour["lifespan"] = {"check_interval": "5s", **lifespan}
    return parse_site(data, source="test site")


@dataclass
class Worker:
    """One extra worker (its own condor_master) inside the pool's chroot."""

    pool: CondorPool
    site: Site
    rendered: str
    alloc_id: str
    env: dict[str, str]
    host_dir: Path
    config_in_chroot: PurePosixPath
    base_lines: int
    start_in_chroot: PurePosixPath
    proc: subprocess.Popen[bytes] | None = None
    started: float = 0.0
    ended: float | None = None
    _out: IO[bytes] | None = field(default=None, repr=False)
    _reaper: threading.Thread | None = field(default=None, repr=False)

    @property
    def marker(self) -> bytes:
        return f"NOMADWN_TEST_WORKER={self.alloc_id}".encode()

    def start(self) -> None:
        self._out = (self.host_dir / "master.out").open("ab")
        # The same mechanism as CondorPool.start: unshare --mount, chroot, env -i; the main
        # process is the rendered start.sh, as in the container.
        argv = [*self.pool.env_argv(self.env), "sh", str(self.start_in_chroot)]
        self.started = time.monotonic()
        self.proc = subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=self._out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        self._reaper = threading.Thread(target=self._reap, args=(self.proc,), daemon=True)
        self._reaper.start()

    def _reap(self, proc: subprocess.Popen[bytes]) -> None:
        proc.wait()
        self.ended = time.monotonic()

    def returncode(self) -> int | None:
        """The master's exit status, or None while it runs (the container's main process)."""
        assert self.proc is not None
        code = self.proc.poll()
        if code is not None and self._reaper is not None:
            self._reaper.join(timeout=5)
        return code

    def wait_exit(self, deadline: float) -> int | None:
        """Wait until the master exits or ``deadline`` (monotonic) passes."""
        while self.returncode() is None and time.monotonic() < deadline:
            time.sleep(0.25)
        return self.returncode()

    def run(self, argv: list[str], timeout: float = 30) -> subprocess.CompletedProcess[str]:
        """Run a command in the chroot with the *worker's* CONDOR_CONFIG, as inside the container."""
        return self.pool.run(argv, extra_env=self.env, timeout=timeout)

    def slot_ads(self) -> list[dict[str, Any]]:
        """The worker's slot ads as the pool's collector has them."""
        result = self.pool.run(
            ["condor_status", "-json", "-constraint", f'NomadAllocId == "{self.alloc_id}"'],
            timeout=15,
        )
        assert result.returncode == 0, result.stderr
        text = result.stdout.strip()
        return list(json.loads(text)) if text else []

    def wait_joined(self) -> list[dict[str, Any]]:
        deadline = time.monotonic() + JOIN_TIMEOUT
        while True:
            code = self.returncode()
            if code is not None:
                raise RuntimeError(f"worker master exited with {code} before joining:\n{self.diagnostics()}")
            ads = self.slot_ads()
            if ads:
                return ads
            if time.monotonic() > deadline:
                raise RuntimeError(f"worker not in the collector after {JOIN_TIMEOUT:.0f}s:\n{self.diagnostics()}")
            time.sleep(0.5)

    def log(self, name: str) -> str:
        try:
            return (self.host_dir / "local" / "log" / name).read_text(errors="replace")
        except OSError:
            return ""

    def diagnostics(self, lines: int = 25) -> str:
        parts = []
        for name in ("MasterLog", "StartLog"):
            tail = "\n".join(self.log(name).splitlines()[-lines:])
            parts.append(f"--- {name} (tail)\n{tail}")
        with contextlib.suppress(OSError):
            parts.append("--- master output\n" + (self.host_dir / "master.out").read_text(errors="replace")[-2000:])
        return "\n".join(parts)

    def stop(self) -> None:
        """Stop the master and every daemon it started (they run in their own process groups)."""
        if self.proc is not None and self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(timeout=10)
        for sig in (signal.SIGTERM, signal.SIGKILL):
            pids = _pids_with_env(self.marker)
            for pid in pids:
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.kill(pid, sig)
            deadline = time.monotonic() + 5
            while pids and _pids_with_env(self.marker) and time.monotonic() < deadline:
                time.sleep(0.1)
        if self._out is not None:
            self._out.close()
            self._out = None


def make_worker(
    pool: CondorPool,
    site: Site,
    extra_env: dict[str, str] | None = None,
    *,
    flavour: str = FLAVOUR,
    alloc_id: str | None = None,
    job_id: str = JOB_ID,
) -> Worker:
    """Lay out a worker directory inside the pool directory and write its CONDOR_CONFIG."""
    assert pool.pool_dir is not None and pool.pool_dir_in_chroot is not None
    alloc_id = alloc_id or str(uuid.uuid4())
    name = f"nomadwn-{alloc_id[:8]}"
    host_dir = pool.pool_dir / name
    inner_dir = pool.pool_dir_in_chroot / name
    uid, gid = pool.owner_ids()
    local = host_dir / "local"
    local.mkdir(parents=True)
    host_dir.chmod(0o755)
    os.chown(local, uid, gid)
    for sub in ("log", "spool", "execute", "lock", "run", "cred_dir"):
        (local / sub).mkdir(mode=0o755)
        os.chown(local / sub, uid, gid)
    (local / "cred_dir").chmod(0o700)
    rendered = condor_config(site, flavour)
    base = (
        "# Test harness: the image's own configuration for one extra worker of a throw-away pool.\n"
        + base_config(inner_dir / "local", "", pool.user)
        + _WORKER_NAMES.format(name=name, flavour=flavour)
    )
    config = host_dir / "condor_config"
    config.write_text(base + rendered, encoding="utf-8")
    config.chmod(0o644)
    (host_dir / "start.sh").write_text(start_script(site.flavours[flavour]), encoding="utf-8")
    # Next to start.sh, as in the task directory (start.sh runs it from its own directory).
    (host_dir / LOG_FORWARDER).write_text(log_forwarder(site.flavours[flavour]), encoding="utf-8")
    env = {
        "CONDOR_CONFIG": str(inner_dir / "condor_config"),
        "NOMAD_ALLOC_ID": alloc_id,
        "NOMAD_JOB_ID": job_id,
        "NOMADWN_TEST_WORKER": alloc_id,  # finds every daemon of this worker at teardown
        **(extra_env or {}),
    }
    return Worker(
        pool=pool,
        site=site,
        rendered=rendered,
        alloc_id=alloc_id,
        env=env,
        host_dir=host_dir,
        config_in_chroot=inner_dir / "condor_config",
        base_lines=len(base.splitlines()),
        start_in_chroot=inner_dir / "start.sh",
    )


@contextlib.contextmanager
def running(*workers: Worker) -> Iterator[None]:
    """Start all ``workers`` at once; stop every one of them afterwards."""
    try:
        for worker in workers:
            worker.start()
        yield
    finally:
        for worker in workers:
            worker.stop()


def rendered_knobs(text: str) -> dict[str, str]:
    knobs = {}
    for line in text.splitlines():
        m = _KNOB_RE.match(line)
        if m:
            knobs[m.group(1)] = m.group(2).rstrip()
    return knobs


def _fold_bool(value: str) -> str:
    return value.lower() if value.lower() in ("true", "false") else value


def health_argv(site: Site) -> list[str]:
    """The Nomad script check of the rendered job, as Nomad runs it inside the task."""
    check = build_job(site, FLAVOUR).TaskGroups[0].Tasks[0].Services[0].Checks[0]
    assert check.Command is not None and check.Args is not None
    return [check.Command, *check.Args]


# ---------------------------------------------------------------------------
# fixtures


@pytest.fixture(scope="module")
def worker(pool: CondorPool) -> Iterator[Worker]:
    """The rendered ephemeral worker, lifespan long enough to outlive the module."""
    site = site_for(pool, lifespan={"idle_shutdown": "20m", "max_age": "1h"})
    w = make_worker(pool, site)
    with running(w):
        w.wait_joined()
        yield w


@dataclass
class LifespanWorkers:
    idle: Worker
    max_age: Worker


@pytest.fixture(scope="module")
def lifespan_workers(pool: CondorPool) -> Iterator[LifespanWorkers]:
    """Two short-lived workers, started together so that their waits overlap."""
    idle = make_worker(pool, site_for(pool, lifespan={"idle_shutdown": "15s", "max_age": "1h"}))
    max_age = make_worker(pool, site_for(pool, lifespan={"max_age": "20s"}))
    with running(idle, max_age):
        for w in (idle, max_age):
            w.wait_joined()
        yield LifespanWorkers(idle=idle, max_age=max_age)


# ---------------------------------------------------------------------------
# a. the worker joins the pool with its Nomad identity


@pytest.mark.integration
def test_worker_joins_pool_advertising_nomad_identity_and_size(pool: CondorPool, worker: Worker) -> None:
    ads = worker.wait_joined()
    assert len(ads) == 1, ads
    ad = ads[0]
    assert ad["NomadAllocId"] == worker.alloc_id
    assert ad["NomadJobId"] == JOB_ID
    assert ad["NomadwnFlavour"] == FLAVOUR
    assert ad["NomadwnSite"] == "glasgow"
    # The partitionable slot is the rendered NUM_CPUS / MEMORY, not the host's size.
    assert ad["PartitionableSlot"] is True
    assert ad["Cpus"] == 2
    assert ad["Memory"] == 1024
    assert ad["Name"].startswith(f"slot1@nomadwn-{worker.alloc_id[:8]}@"), ad["Name"]
    # Joined through CCB at the pool's collector (the rendered CCB_ADDRESS = $(COLLECTOR_HOST)).
    assert f"CCBID={pool.collector}" in ad["MyAddress"], ad["MyAddress"]
    # The pool's own startd is still there: the worker did not replace it.
    names = pool.run(["condor_status", "-af", "Name"]).stdout.split()
    assert len(names) >= 2 and ad["Name"] in names, names
    assert worker.returncode() is None, worker.diagnostics()


# ---------------------------------------------------------------------------
# b. the Nomad health check, run against the worker


@pytest.mark.integration
def test_health_check_passes_against_live_worker(worker: Worker) -> None:
    argv = health_argv(worker.site)
    assert argv == ["condor_config_val", "-startd", "StartJobs"]
    result = worker.run(argv)
    assert result.returncode == 0, result
    # The render defines the Glasgow image's drain switch, so the check reports it.
    assert result.stdout.strip() == "True", result


@pytest.mark.integration
def test_drained_worker_stays_healthy_but_starts_no_jobs(pool: CondorPool) -> None:
    """StartJobs = False drains the worker: START is false, but the (liveness) check still passes.

    That is deliberate: a failing check would make Nomad's check_restart kill the
    payloads a drained worker is finishing. The check fails only when the startd is gone
    (see test_idle_shutdown_ends_worker).
    """
    site = site_for(pool, lifespan={"idle_shutdown": "20m", "max_age": "1h"}, extra_config={"StartJobs": "False"})
    w = make_worker(pool, site)
    with running(w):
        w.wait_joined()
        result = w.run(health_argv(site))
        start = pool.run(["condor_status", "-af", "Start", "-constraint", f'NomadAllocId == "{w.alloc_id}"'])
    assert result.returncode == 0, result
    assert result.stdout.strip() == "False", result
    assert start.stdout.split() == ["false"], start


# ---------------------------------------------------------------------------
# c. lifespan: the worker's condor_master ends by itself


@pytest.mark.integration
def test_idle_shutdown_ends_worker(lifespan_workers: LifespanWorkers) -> None:
    w = lifespan_workers.idle
    assert "STARTD_NOCLAIM_SHUTDOWN = 15" in w.rendered.splitlines()
    code = w.wait_exit(w.started + LIFESPAN_DEADLINE)
    assert code is not None, f"master still running {LIFESPAN_DEADLINE:.0f}s after start:\n{w.diagnostics()}"
    assert w.ended is not None
    lived = w.ended - w.started
    # The startd SIGTERMs the master (a graceful shutdown of the whole worker): exit 0.
    assert code == 0, w.diagnostics()
    assert 15 <= lived <= LIFESPAN_DEADLINE, f"ended after {lived:.1f}s"
    assert "No resources have been claimed for 15 seconds" in w.log("StartLog"), w.diagnostics()
    # The worker has left the pool (the startd invalidates its ads on the way out)...
    deadline = time.monotonic() + 15
    while w.slot_ads() and time.monotonic() < deadline:
        time.sleep(0.5)
    assert w.slot_ads() == []
    # ...and the health check now fails, as Nomad would see it if the task were still up.
    check = w.run(health_argv(w.site))
    assert check.returncode != 0, check


@pytest.mark.integration
def test_max_age_ends_worker_and_start_script_exits_0(lifespan_workers: LifespanWorkers) -> None:
    w = lifespan_workers.max_age
    assert "NOMADWN_MAX_AGE = 20" in w.rendered.splitlines()
    code = w.wait_exit(w.started + LIFESPAN_DEADLINE)
    assert code is not None, f"worker still running {LIFESPAN_DEADLINE:.0f}s after start:\n{w.diagnostics()}"
    assert w.ended is not None
    lived = w.ended - w.started
    assert 20 <= lived <= LIFESPAN_DEADLINE, f"ended after {lived:.1f}s"
    start_log, master_log = w.log("StartLog"), w.log("MasterLog")
    assert "DaemonShutdown expression" in start_log and "evaluated to TRUE" in start_log, w.diagnostics()
    # The rendered MASTER.DAEMON_SHUTDOWN then ends the master (the container's main process).
    assert 'The DaemonShutdown expression "STARTD_StartTime =?= 0" evaluated to TRUE' in master_log, w.diagnostics()
    # The master exits 99 after DAEMON_SHUTDOWN; start.sh turns that into 0, so Nomad sees a
    # batch worker that reached its lifespan as complete, not failed.
    out = (w.host_dir / "master.out").read_text(errors="replace")
    assert "nomadwn: the worker reached the end of its lifespan" in out, w.diagnostics()
    assert code == 0, w.diagnostics()


@pytest.mark.integration
def test_nomad_stop_signal_reaches_the_master_through_start_script(pool: CondorPool) -> None:
    """Docker sends kill_signal (SIGTERM) to the container's PID 1, start.sh: the master shuts down gracefully."""
    site = site_for(pool, lifespan={"idle_shutdown": "20m", "max_age": "1h"})
    w = make_worker(pool, site)
    with running(w):
        w.wait_joined()
        assert w.proc is not None
        os.kill(w.proc.pid, signal.SIGTERM)  # the script only, as Docker would; not the process group
        kill_timeout = site.flavours[FLAVOUR].lifespan.kill_timeout.total_seconds()
        code = w.wait_exit(time.monotonic() + kill_timeout)
        assert code == 0, f"exit {code} within kill_timeout ({kill_timeout:.0f}s):\n{w.diagnostics()}"
        assert "Got SIGTERM" in w.log("MasterLog") or "shutdown" in w.log("MasterLog").lower(), w.diagnostics()
        # The log forwarder follows start.sh within a second (in a container PID 1's exit ends it at once).
        deadline = time.monotonic() + 5
        while _pids_with_env(w.marker) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert _pids_with_env(w.marker) == [], "daemons outlived the worker's main process"


# ---------------------------------------------------------------------------
# e. logs where Nomad shows them


@pytest.mark.integration
def test_worker_stdout_carries_its_htcondor_daemon_logs(worker: Worker) -> None:
    """The task's stdout (what `nomad alloc logs` shows) carries the StartLog and MasterLog lines, prefixed."""
    width = 512  # the forwarder cuts lines to LOG_LINE_BYTES

    def forwarded(prefix: str) -> list[str]:
        out = (worker.host_dir / "master.out").read_text(errors="replace")
        return [line.removeprefix(prefix) for line in out.splitlines() if line.startswith(prefix)]

    start_log = [line[:width] for line in worker.log("StartLog").splitlines() if line.strip()]
    assert len(start_log) > 10, worker.diagnostics()
    deadline = time.monotonic() + 15
    while not set(start_log) <= set(forwarded("[startd] ")) and time.monotonic() < deadline:
        time.sleep(0.5)
    missing = [line for line in start_log if line not in set(forwarded("[startd] "))]
    assert missing == [], worker.diagnostics()
    # In order, and each line once.
    got = forwarded("[startd] ")
    assert got[: len(start_log)] == start_log
    master_log = [line[:width] for line in worker.log("MasterLog").splitlines() if line.strip()]
    assert master_log[:5] == forwarded("[master] ")[:5], worker.diagnostics()


# ---------------------------------------------------------------------------
# d. the rendered file parses, and the daemons run with it


@pytest.mark.integration
def test_rendered_config_parses_and_is_in_effect(pool: CondorPool, worker: Worker) -> None:
    sources = worker.run(["condor_config_val", "-config"])
    assert sources.returncode == 0, sources
    assert str(worker.config_in_chroot) in sources.stdout
    assert "error" not in (sources.stdout + sources.stderr).lower(), sources

    # Every knob of the rendered file has the rendered (raw) value: nothing was lost or
    # overridden. Knobs that extend themselves ($(STARTD_ATTRS) ...) are checked expanded below.
    knobs = {k: v for k, v in rendered_knobs(worker.rendered).items() if f"$({k})" not in v}
    assert {"START", "NUM_CPUS", "MEMORY", "DAEMON_LIST", "MASTER.DAEMON_SHUTDOWN"} <= knobs.keys()
    raw = worker.run(["condor_config_val", "-raw", *knobs])
    assert raw.returncode == 0 and not raw.stderr, raw
    got = dict(zip(knobs, raw.stdout.split("\n"), strict=False))
    # condor_config_val prints known boolean knobs in lower case (USE_SHARED_PORT = True -> true).
    assert {k: _fold_bool(v) for k, v in got.items()} == {k: _fold_bool(v) for k, v in knobs.items()}

    # START comes from the rendered part of the file, and the running startd uses it.
    verbose = worker.run(["condor_config_val", "-startd", "-verbose", "START"])
    assert verbose.returncode == 0, verbose
    # The startd reports it with the rendered $(StartJobs) macro expanded.
    assert verbose.stdout.splitlines()[0] == f"START = {knobs['START'].replace('$(StartJobs)', knobs['StartJobs'])}"
    m = re.search(r"# at: (\S+), line (\d+)", verbose.stdout)
    assert m is not None, verbose.stdout
    assert m.group(1) == str(worker.config_in_chroot)
    assert int(m.group(2)) > worker.base_lines

    expanded = worker.run(
        ["condor_config_val", "NomadAllocId", "NomadJobId", "CCB_ADDRESS", "STARTD_ATTRS", "SHARED_PORT_PORT"]
    )
    assert expanded.returncode == 0, expanded
    alloc, job, ccb, attrs, port = expanded.stdout.splitlines()
    assert alloc == f'"{worker.alloc_id}"'
    assert job == f'"{JOB_ID}"'
    assert ccb == pool.collector
    assert attrs.split() == ["NomadAllocId", "NomadJobId", "NomadwnSite", "NomadwnFlavour"]
    assert port == str(worker.site.flavours[FLAVOUR].htcondor.port)
