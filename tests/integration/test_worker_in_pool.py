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

The environment also carries ``NOMAD_TASK_DIR`` and ``NOMAD_ALLOC_DIR`` (Nomad sets them
to ``/local`` and ``/alloc`` in a docker task), pointing at the worker's own ``task/`` and
``alloc/`` directories, where the rendered scripts (probe, health check, job wrapper,
start.sh) are written as Nomad's templates would write them.

Deliberate differences from a real container, all made in the *site data*, not by
overriding the rendered file:

* ``htcondor.grid_env`` points at a stand-in CVMFS repository, ``/cvmfs/<name>.test`` in
  the chroot (:class:`FakeCvmfs`), so the probe and the job wrapper check something real
  that a test can break;
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
import shutil
import signal
import socket
import subprocess
import textwrap
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import IO, Any, Final

import pytest
import yaml

from nomadwn.autopilot import (
    LOG_FORWARDER,
    WRAPPER_REFUSED,
    condor_config,
    health_script,
    job_wrapper,
    log_forwarder,
    probe_script,
    start_script,
)
from nomadwn.model import Site, shutdown_plan
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


@dataclass
class FakeCvmfs:
    """A stand-in CVMFS repository in the chroot, ``/cvmfs/<name>``, holding a grid environment script.

    :meth:`break_` makes it unreadable the way a lost mount does (the directory is gone);
    :meth:`repair` puts it back.
    """

    pool: CondorPool
    name: str = field(default_factory=lambda: f"grid-{uuid.uuid4().hex[:8]}.test")

    @property
    def grid_env(self) -> str:
        return f"/cvmfs/{self.name}/etc/profile.d/setup-cvmfs-ui.sh"

    @property
    def host_dir(self) -> Path:
        return self.pool.host_path(f"/cvmfs/{self.name}")

    def create(self) -> FakeCvmfs:
        script = self.pool.host_path(self.grid_env)
        script.parent.mkdir(parents=True, exist_ok=True)
        for d in (self.host_dir.parent, self.host_dir, *self.host_dir.rglob("*")):
            if d.is_dir():
                d.chmod(0o755)
        script.write_text("NOMADWN_GRID_ENV=loaded\nexport NOMADWN_GRID_ENV\n", encoding="utf-8")
        script.chmod(0o644)
        return self

    def break_(self) -> None:
        self.host_dir.rename(self.host_dir.with_name(self.name + ".broken"))

    def repair(self) -> None:
        broken = self.host_dir.with_name(self.name + ".broken")
        if broken.exists():
            broken.rename(self.host_dir)

    def remove(self) -> None:
        self.repair()
        shutil.rmtree(self.host_dir, ignore_errors=True)


def site_for(
    pool: CondorPool,
    *,
    lifespan: dict[str, str],
    extra_config: dict[str, str] | None = None,
    cvmfs: FakeCvmfs | None = None,
    flavour_name: str = FLAVOUR,
    max_kill_timeout: str | None = None,
    health_interval: str = "2s",
    overrides: dict[str, Any] | None = None,
) -> Site:
    """The example site, pointed at ``pool``, with a small flavour ``flavour_name``.

    ``cvmfs``: the grid environment comes from that stand-in repository (else none, and
    no job wrapper). Every other setting is the example's, so the shutdown knobs are
    derived by the same code from the (short, scaled) ``lifespan`` given here.
    """
    return parse_site(
        site_data(
            pool,
            lifespan=lifespan,
            extra_config=extra_config,
            cvmfs=cvmfs,
            flavour_name=flavour_name,
            max_kill_timeout=max_kill_timeout,
            health_interval=health_interval,
            overrides=overrides,
        ),
        source="test site",
    )


def site_data(
    pool: CondorPool,
    *,
    lifespan: dict[str, str],
    extra_config: dict[str, str] | None = None,
    cvmfs: FakeCvmfs | None = None,
    flavour_name: str = FLAVOUR,
    max_kill_timeout: str | None = None,
    health_interval: str = "2s",
    overrides: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """The site file data behind :func:`site_for` (to write it out for the CLI)."""
    data: dict[str, Any] = yaml.safe_load(EXAMPLE.read_text(encoding="utf-8"))
    htcondor = data["defaults"]["htcondor"]
    htcondor["collector"] = [pool.collector]
    htcondor["port"] = _free_port()
    htcondor["grid_env"] = cvmfs.grid_env if cvmfs is not None else None
    data["defaults"]["health"]["interval"] = health_interval
    if max_kill_timeout is not None:
        data["nomad"]["max_kill_timeout"] = max_kill_timeout
    if "retirement" in lifespan:  # every flavour of the site, as the example sets it in defaults
        data["defaults"]["lifespan"]["retirement"] = lifespan["retirement"]
    if extra_config:
        htcondor["extra_config"] = extra_config
    flavour = data["flavours"][flavour_name]
    flavour["resources"] = {"cores": 2, "memory": "1GiB"}
    # The rendered start.sh runs as the worker's main process; no FUSE mounts in the chroot.
    flavour["cvmfs"] = {"mode": "bind"}
    # As fast as the pool's own cycles (the base's UPDATE_INTERVAL is overridden by the render).
    flavour["lifespan"] = {"check_interval": "5s", **lifespan}
    flavour.update(overrides or {})
    return data


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
    flavour: str = FLAVOUR
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
    # Nomad's task and allocation directories (/local and /alloc in a docker task).
    f = site.flavours[flavour]
    scripts = host_dir / "task" / "nomadwn"
    scripts.mkdir(parents=True)
    (host_dir / "alloc").mkdir()
    for d in (host_dir / "task", scripts, host_dir / "alloc"):
        d.chmod(0o755)
    files = {"probe.sh": probe_script(f), "health.sh": health_script(f)}
    if f.htcondor.grid_env:
        files["job-wrapper.sh"] = job_wrapper(f)
    for file_name, text in files.items():
        (scripts / file_name).write_text(text, encoding="utf-8")
        (scripts / file_name).chmod(0o755)
    rendered = condor_config(site, flavour)
    base = (
        "# Test harness: the image's own configuration for one extra worker of a throw-away pool.\n"
        + base_config(
            inner_dir / "local", "", pool.user, idtokens_pool=pool.local_dir_in_chroot if pool.idtokens else None
        )
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
        "NOMAD_TASK_DIR": str(inner_dir / "task"),
        "NOMAD_ALLOC_DIR": str(inner_dir / "alloc"),
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
        flavour=flavour,
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


def health_argv(site: Site, flavour: str = FLAVOUR) -> list[str]:
    """The Nomad script check of the rendered job, as Nomad runs it inside the task."""
    check = build_job(site, flavour).TaskGroups[0].Tasks[0].Services[0].Checks[0]
    assert check.Command is not None and check.Args is not None
    return [check.Command, *check.Args]


def in_task(worker: Worker, argv: list[str]) -> list[str]:
    """``argv`` with the container's ``/local`` mapped to the worker's task directory."""
    task = str(worker.config_in_chroot.parent / "task")
    return [a.replace("/local/", task + "/", 1) if a.startswith("/local/") else a for a in argv]


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
    assert argv == ["/bin/sh", "/local/nomadwn/health.sh"]
    result = worker.run(in_task(worker, argv))
    assert result.returncode == 0, result
    # The render defines the Glasgow image's drain switch, so the check reports it.
    assert "passing: the startd answers (StartJobs = True)" in result.stdout, result


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
        result = w.run(in_task(w, health_argv(site)))
        start = pool.run(["condor_status", "-af", "Start", "-constraint", f'NomadAllocId == "{w.alloc_id}"'])
    assert result.returncode == 0, result
    assert "StartJobs = False" in result.stdout, result
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
    check = w.run(in_task(w, health_argv(w.site)))
    assert check.returncode == 2, check  # critical: check_restart acts on it


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
        kill_timeout = shutdown_plan(site, FLAVOUR).kill_timeout.total_seconds()
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
    assert attrs.split() == ["StartJobs", "NomadAllocId", "NomadJobId", "NomadwnSite", "NomadwnFlavour"]
    assert port == str(worker.site.flavours[FLAVOUR].htcondor.port)


# ---------------------------------------------------------------------------
# e. payload safety: a real payload runs while the worker is stopped, drained, made unfit
#
# Durations are scaled down (seconds, not hours), but every HTCondor and Nomad knob is
# derived from lifespan.retirement by the same code as in production (ShutdownPlan).
# A payload's fate is read from HTCondor itself: the schedd's job history and the
# job's event log.

RETIREMENT: Final = "40s"
PAYLOAD_SECONDS: Final = 15


@dataclass(frozen=True)
class Fate:
    """What happened to one payload, from condor_history and its event log."""

    status: int | None
    exit_code: int | None
    starts: int | None
    executions: int
    evictions: int
    holds: int
    hold_reason: str

    @property
    def completed_untouched(self) -> bool:
        return (self.status, self.exit_code, self.starts, self.executions, self.evictions, self.holds) == (
            4,
            0,
            1,
            1,
            0,
            0,
        )


class Payloads:
    """Submit payloads pinned to one worker and read their fate from HTCondor."""

    def __init__(self, pool: CondorPool) -> None:
        self.pool = pool
        assert pool.pool_dir is not None and pool.pool_dir_in_chroot is not None
        self.dir = pool.pool_dir / f"payloads-{uuid.uuid4().hex[:6]}"
        self.inner = pool.pool_dir_in_chroot / self.dir.name
        self.dir.mkdir()
        uid, gid = self._user_ids()
        os.chown(self.dir, uid, gid)
        script = self.dir / "payload.sh"
        # Fails (exit 3) if the job wrapper did not load the grid environment.
        script.write_text('#!/bin/sh\n[ "$NOMADWN_GRID_ENV" = loaded ] || exit 3\nsleep "$1"\n', encoding="utf-8")
        script.chmod(0o755)

    def _user_ids(self) -> tuple[int, int]:
        for line in self.pool.host_path("/etc/passwd").read_text().splitlines():
            f = line.split(":")
            if f[0] == self.pool.user:
                return int(f[2]), int(f[3])
        raise RuntimeError(f"no user {self.pool.user} in the chroot")

    def submit(self, worker: Worker, seconds: int = PAYLOAD_SECONDS, tag: str = "p") -> int:
        sub = self.dir / f"{tag}.sub"
        sub.write_text(
            textwrap.dedent(
                f"""\
                universe = vanilla
                executable = {self.inner}/payload.sh
                arguments = {seconds}
                request_cpus = 1
                request_memory = 64
                request_disk = 1024
                requirements = (TARGET.NomadAllocId == "{worker.alloc_id}")
                should_transfer_files = NO
                log = {self.inner}/{tag}.log
                output = {self.inner}/{tag}.out
                error = {self.inner}/{tag}.err
                initialdir = {self.inner}
                queue
                """
            ),
            encoding="utf-8",
        )
        # The test's submitter claims a normal user (the schedd refuses jobs owned by the
        # daemons' token identity on an IDTOKENS pool).
        result = self.pool.run(
            ["condor_submit", "-terse", str(self.inner / f"{tag}.sub")],
            extra_env={"_CONDOR_SEC_CLIENT_AUTHENTICATION_METHODS": "CLAIMTOBE"},
        )
        assert result.returncode == 0, result
        return int(result.stdout.split(".")[0])

    def status(self, cluster: int) -> int | None:
        result = self.pool.run(["condor_q", "-allusers", str(cluster), "-af", "JobStatus"], timeout=15)
        text = result.stdout.strip()
        return int(text) if text else None

    def wait_running(self, cluster: int, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while self.status(cluster) != 2:
            assert time.monotonic() < deadline, f"payload {cluster} did not start within {timeout:.0f}s"
            time.sleep(0.5)

    def wait_gone(self, cluster: int, timeout: float) -> None:
        """Wait until the job has left the queue (completed) or ``timeout`` passes."""
        deadline = time.monotonic() + timeout
        while self.status(cluster) is not None and time.monotonic() < deadline:
            time.sleep(0.5)

    def fate(self, cluster: int, tag: str = "p") -> Fate:
        attrs = ["JobStatus", "ExitCode", "NumJobStarts", "HoldReason"]
        result = self.pool.run(["condor_history", str(cluster), "-limit", "1", "-json", "-attributes", ",".join(attrs)])
        ads = json.loads(result.stdout) if result.stdout.strip() else []
        if not ads:  # still in the queue
            q = self.pool.run(["condor_q", "-allusers", str(cluster), "-json", "-attributes", ",".join(attrs)])
            ads = json.loads(q.stdout) if q.stdout.strip() else [{}]
        ad = ads[0]
        log = (self.dir / f"{tag}.log").read_text(errors="replace") if (self.dir / f"{tag}.log").exists() else ""
        events = [line.split(" ", 1)[0] for line in log.splitlines() if re.match(r"^\d{3} \(", line)]
        return Fate(
            status=ad.get("JobStatus"),
            exit_code=ad.get("ExitCode"),
            starts=ad.get("NumJobStarts"),
            executions=events.count("001"),
            evictions=events.count("004"),
            holds=events.count("012"),
            hold_reason=str(ad.get("HoldReason") or ""),
        )


def nomad_stop(worker: Worker, site: Site) -> tuple[int | None, bool]:
    """Stop the worker as Nomad's docker driver does: kill_signal to PID 1, then SIGKILL.

    Nomad (client/allocrunner/taskrunner/task_runner.go, ``killTask``) asks the driver to
    stop the task with the task's ``kill_signal`` and a timeout of ``kill_timeout``, which
    the client caps at its ``max_kill_timeout`` (client/config ``MaxKillTimeout``); the
    docker driver (drivers/docker/driver.go ``StopTask`` -> handle ``Kill``) signals the
    container's main process, waits, and then stops the container with SIGKILL. Returns
    the worker's exit code and whether SIGKILL was needed.
    """
    assert worker.proc is not None
    job = build_job(site, worker.flavour)
    task = job.TaskGroups[0].Tasks[0]
    timeout = min(task.KillTimeout / 1e9, site.nomad.max_kill_timeout.total_seconds())
    os.kill(worker.proc.pid, getattr(signal, task.KillSignal))
    code = worker.wait_exit(time.monotonic() + timeout)
    if code is not None:
        return code, False
    with contextlib.suppress(ProcessLookupError):
        os.killpg(worker.proc.pid, signal.SIGKILL)
    for pid in _pids_with_env(worker.marker):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    return worker.wait_exit(time.monotonic() + 10), True


@pytest.fixture
def cvmfs(pool: CondorPool) -> Iterator[FakeCvmfs]:
    repo = FakeCvmfs(pool).create()
    yield repo
    repo.remove()


def _safety_site(pool: CondorPool, cvmfs: FakeCvmfs, flavour: str = "elastic") -> Site:
    # The example's elastic flavour with a scaled retirement; max_kill_timeout as a site
    # must set it on its clients for that retirement (validate refuses less).
    return site_for(
        pool,
        lifespan={"retirement": RETIREMENT},
        cvmfs=cvmfs,
        flavour_name=flavour,
        max_kill_timeout="5m",
    )


@pytest.mark.integration
def test_nomad_stop_lets_the_running_payload_finish_and_takes_no_new_one(pool: CondorPool, cvmfs: FakeCvmfs) -> None:
    site = _safety_site(pool, cvmfs)
    plan = shutdown_plan(site, "elastic")
    assert plan.covered
    w = make_worker(pool, site, flavour="elastic", job_id="glasgow-elastic")
    payloads = Payloads(pool)
    with running(w):
        w.wait_joined()
        first = payloads.submit(w, tag="first")
        payloads.wait_running(first)
        time.sleep(2)
        stopped_at = time.monotonic()
        # A second payload queued just as Nomad stops the worker must not start on it.
        second = payloads.submit(w, seconds=1, tag="second")
        code, killed = nomad_stop(w, site)
        took = time.monotonic() - stopped_at
    fate = payloads.fate(first, "first")
    assert not killed, f"Nomad had to SIGKILL the worker after {took:.0f}s:\n{w.diagnostics()}"
    assert code == 0, w.diagnostics()
    assert fate.completed_untouched, (fate, w.diagnostics())
    assert payloads.fate(second, "second").executions == 0
    pool.run(["condor_rm", str(second)])


@pytest.mark.integration
def test_unfit_worker_takes_no_payload_and_leaves_the_running_one_alone(pool: CondorPool, cvmfs: FakeCvmfs) -> None:
    site = _safety_site(pool, cvmfs)
    w = make_worker(pool, site, flavour="elastic", job_id="glasgow-elastic")
    payloads = Payloads(pool)
    with running(w):
        w.wait_joined()
        first = payloads.submit(w, tag="first")
        payloads.wait_running(first)
        cvmfs.break_()
        # The probe (every health.interval, 2 s here) advertises the worker unfit...
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            ads = [a for a in w.slot_ads() if a.get("PartitionableSlot")]
            if ads and ads[0].get("NomadwnHealthy") is False:
                break
            time.sleep(1)
        assert ads and ads[0].get("NomadwnHealthy") is False, ads
        assert "not readable" in str(ads[0].get("NomadwnHealthReason")), ads
        # ...the health check says warning (1), not critical: check_restart leaves it alone...
        check = w.run(in_task(w, health_argv(site, "elastic")))
        assert check.returncode == 1, check
        # ...and no new payload starts on it, while the running one finishes untouched.
        second = payloads.submit(w, seconds=1, tag="second")
        payloads.wait_gone(first, timeout=60)
        time.sleep(5)  # a negotiation cycle or two for the second payload
        assert payloads.fate(second, "second").executions == 0
        cvmfs.repair()
        payloads.wait_gone(second, timeout=60)  # fit again: the second payload runs
    assert payloads.fate(first, "first").completed_untouched, (payloads.fate(first, "first"), w.diagnostics())
    assert payloads.fate(second, "second").completed_untouched


@pytest.mark.integration
def test_job_wrapper_refuses_a_payload_without_the_grid_environment(pool: CondorPool, cvmfs: FakeCvmfs) -> None:
    """The last line of defence: a payload that reaches an unfit worker is not run, and says why."""
    site = _safety_site(pool, cvmfs)
    # The probe is made to pass regardless, so that START lets the payload in.
    w = make_worker(pool, site, flavour="elastic", job_id="glasgow-elastic")
    (w.host_dir / "task" / "nomadwn" / "probe.sh").write_text('#!/bin/sh\necho "NomadwnHealthy = true"\n')
    payloads = Payloads(pool)
    with running(w):
        w.wait_joined()
        cvmfs.break_()
        cluster = payloads.submit(w, seconds=1)
        payloads.wait_gone(cluster, timeout=60)
    fate = payloads.fate(cluster)
    stderr = (payloads.dir / "p.err").read_text(errors="replace")
    assert (fate.status, fate.exit_code) == (4, WRAPPER_REFUSED), (fate, w.diagnostics())
    assert "the grid environment" in stderr and "the payload was not run on this worker" in stderr, stderr
