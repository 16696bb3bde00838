"""Real peers for integration tests: a Consul dev agent, an HTCondor pool and Prometheus.

Both peers are installed by ``.ci/install-peers.sh`` into ``.peers/`` (or
``$NOMADWN_PEERS_DIR``).  This module only starts and stops them; it imports
nothing outside the standard library and nothing from pytest.

* :class:`ConsulAgent` runs ``consul agent -dev`` on free loopback ports.
* :class:`CondorPool` runs a personal HTCondor pool (master, collector,
  negotiator, schedd, startd) inside the Debian trixie chroot.  It needs root.
* :func:`prometheus_tool` finds Debian's ``promtool`` and ``prometheus``;
  :class:`PrometheusServer` runs a throw-away Prometheus on a free port.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
import uuid
from pathlib import Path, PurePosixPath
from types import TracebackType
from typing import IO, Final, Self

__all__ = ["CondorPool", "ConsulAgent", "PrometheusServer", "peers_dir", "prometheus_tool"]

REPO_ROOT: Final = Path(__file__).resolve().parent.parent
INSTALL_HINT: Final = "run `sudo .ci/install-peers.sh` (installs into .peers/)"


def peers_dir() -> Path:
    """Directory holding the installed peers.

    ``$NOMADWN_PEERS_DIR`` if set (relative paths are taken from the repository
    root, as the install script does), otherwise ``<repo>/.peers``.
    """
    env = os.environ.get("NOMADWN_PEERS_DIR")
    if not env:
        return REPO_ROOT / ".peers"
    path = Path(env)
    return path if path.is_absolute() else REPO_ROOT / path


# --------------------------------------------------------------------------
# small helpers


def _free_ports(count: int, *, udp: bool = False) -> list[int]:
    """Return ``count`` distinct free loopback TCP ports (also free for UDP if asked).

    All sockets stay open until every port is chosen, so the ports are distinct.
    Another process may still grab one before the peer binds it; callers retry.
    """
    held: list[socket.socket] = []
    ports: list[int] = []
    try:
        while len(ports) < count:
            tcp = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            held.append(tcp)
            tcp.bind(("127.0.0.1", 0))
            port = int(tcp.getsockname()[1])
            if udp:
                probe = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
                held.append(probe)
                try:
                    probe.bind(("127.0.0.1", port))
                except OSError:
                    continue
            ports.append(port)
    finally:
        for sock in held:
            sock.close()
    return ports


def _tail(path: Path, lines: int = 40) -> str:
    try:
        text = path.read_text(errors="replace")
    except OSError as exc:
        return f"<cannot read {path}: {exc}>"
    return "\n".join(text.splitlines()[-lines:])


def _stop_process(proc: subprocess.Popen[bytes], grace: float) -> None:
    """SIGTERM ``proc``, then SIGKILL it if it is still alive after ``grace`` s."""
    if proc.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=grace)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                proc.kill()
            proc.wait(timeout=10)


# --------------------------------------------------------------------------
# Consul


class ConsulAgent:
    """A throw-away ``consul agent -dev`` (Consul 1.8.7) on free loopback ports.

    Use as a context manager::

        with ConsulAgent() as agent:
            urllib.request.urlopen(agent.http_addr + "/v1/agent/services")

    Entering starts the agent and waits until it has elected itself leader;
    leaving stops it (SIGTERM, then SIGKILL) and removes its temp directory.
    Script checks are enabled.  Nothing is written into the repository.
    """

    START_TIMEOUT: Final = 30.0

    def __init__(self, extra_args: list[str] | None = None) -> None:
        self.extra_args: list[str] = list(extra_args or [])
        self.http_port = 0
        self.dns_port = 0
        self.serf_lan_port = 0
        self.serf_wan_port = 0
        self.server_port = 0
        self.grpc_port = 0
        self.workdir: Path | None = None
        self.log_path: Path | None = None
        self._proc: subprocess.Popen[bytes] | None = None
        self._log: IO[bytes] | None = None

    @staticmethod
    def binary() -> Path:
        """Path of the installed consul binary (it may not exist)."""
        link = peers_dir() / "bin" / "consul"
        return link if link.exists() else peers_dir() / "consul" / "usr" / "bin" / "consul"

    @staticmethod
    def available() -> str | None:
        """None when Consul is installed, else a message saying how to install it."""
        binary = ConsulAgent.binary()
        if binary.is_file() and os.access(binary, os.X_OK):
            return None
        return f"Consul is not installed ({binary} missing): {INSTALL_HINT}"

    @property
    def http_addr(self) -> str:
        """Base URL of the HTTP API, e.g. ``http://127.0.0.1:8500``."""
        if not self.http_port:
            raise RuntimeError("ConsulAgent is not running")
        return f"http://127.0.0.1:{self.http_port}"

    @property
    def running(self) -> bool:
        """Whether the agent process is alive."""
        return self._proc is not None and self._proc.poll() is None

    def log_tail(self, lines: int = 40) -> str:
        """Last ``lines`` lines of the agent's output."""
        if self.log_path is None:
            return "<no log>"
        if self._log is not None:
            self._log.flush()
        return _tail(self.log_path, lines)

    def start(self) -> None:
        """Start the agent and wait until it has a leader (retrying port clashes)."""
        message = self.available()
        if message is not None:
            raise RuntimeError(message)
        self.workdir = Path(tempfile.mkdtemp(prefix="nomadwn-consul-"))
        self.log_path = self.workdir / "consul.log"
        last_error: RuntimeError | None = None
        for _attempt in range(3):
            try:
                self._start_once()
                return
            except RuntimeError as exc:
                last_error = exc
                self._kill()
                if "address already in use" not in str(exc):
                    break
        self.stop()
        assert last_error is not None
        raise last_error

    def _start_once(self) -> None:
        assert self.workdir is not None and self.log_path is not None
        (
            self.http_port,
            self.dns_port,
            self.serf_lan_port,
            self.serf_wan_port,
            self.server_port,
            self.grpc_port,
        ) = _free_ports(6, udp=True)
        argv = [
            str(self.binary()),
            "agent",
            "-dev",
            "-client", "127.0.0.1",
            "-bind", "127.0.0.1",
            "-enable-script-checks",
            "-node", f"nomadwn-test-{self.http_port}",
            "-http-port", str(self.http_port),
            "-dns-port", str(self.dns_port),
            "-serf-lan-port", str(self.serf_lan_port),
            "-serf-wan-port", str(self.serf_wan_port),
            "-server-port", str(self.server_port),
            "-grpc-port", str(self.grpc_port),
            *self.extra_args,
        ]  # fmt: skip
        self._log = self.log_path.open("ab")
        self._proc = subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            cwd=self.workdir,
            start_new_session=True,
        )
        deadline = time.monotonic() + self.START_TIMEOUT
        url = f"{self.http_addr}/v1/status/leader"
        led_at: float | None = None
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                raise RuntimeError(
                    f"consul agent exited with code {self._proc.returncode} before it was"
                    f" ready; log tail:\n{self.log_tail()}"
                )
            try:
                with urllib.request.urlopen(url, timeout=2) as resp:
                    leader = resp.read().decode().strip().strip('"')
                # Sessions need the agent's own node in the catalog ("Missing node registration"
                # otherwise), which happens a moment after the leader is elected. An agent with
                # default-deny ACLs hides the node from this anonymous read: give it 5 s, no more.
                node_url = f"{self.http_addr}/v1/catalog/node/nomadwn-test-{self.http_port}"
                if leader:
                    led_at = led_at or time.monotonic()
                    with urllib.request.urlopen(node_url, timeout=2) as resp:
                        if resp.read().decode().strip() not in ("", "null") or time.monotonic() - led_at > 5:
                            return
            except (urllib.error.URLError, OSError):
                pass
            time.sleep(0.1)
        raise RuntimeError(
            f"consul agent at {self.http_addr} has no leader after {self.START_TIMEOUT:.0f}s;"
            f" log tail:\n{self.log_tail()}"
        )

    def _kill(self) -> None:
        if self._proc is not None:
            _stop_process(self._proc, grace=10)
            self._proc = None
        if self._log is not None:
            self._log.close()
            self._log = None

    def stop(self) -> None:
        """Stop the agent and remove its temp directory.  Safe to call twice."""
        self._kill()
        if self.workdir is not None:
            shutil.rmtree(self.workdir, ignore_errors=True)
            self.workdir = None

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


# --------------------------------------------------------------------------
# Prometheus (Debian bookworm's package, unpacked: promtool and the server)


def prometheus_tool(name: str = "promtool") -> Path:
    """Path of the installed ``promtool`` or ``prometheus`` binary (it may not exist)."""
    link = peers_dir() / "bin" / name
    return link if link.exists() else peers_dir() / "prometheus" / "usr" / "bin" / name


def prometheus_available() -> str | None:
    """None when promtool and prometheus are installed, else a message saying how to install them."""
    for name in ("promtool", "prometheus"):
        binary = prometheus_tool(name)
        if not (binary.is_file() and os.access(binary, os.X_OK)):
            return f"{name} is not installed ({binary} missing): {INSTALL_HINT}"
    return None


class PrometheusServer:
    """A throw-away Prometheus server on a free loopback port, with a given configuration file.

    Entering starts it and waits until ``/-/ready`` answers; leaving stops it and removes
    its temp directory (its TSDB).
    """

    START_TIMEOUT: Final = 30.0

    def __init__(self, config: Path) -> None:
        self.config = config
        self.port = 0
        self.workdir: Path | None = None
        self._proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def log_tail(self, lines: int = 40) -> str:
        return _tail(self.workdir / "prometheus.log", lines) if self.workdir else "<no log>"

    def start(self) -> None:
        message = prometheus_available()
        if message is not None:
            raise RuntimeError(message)
        self.workdir = Path(tempfile.mkdtemp(prefix="nomadwn-prometheus-"))
        (self.port,) = _free_ports(1)
        with (self.workdir / "prometheus.log").open("wb") as log:
            self._proc = subprocess.Popen(
                [
                    str(prometheus_tool("prometheus")),
                    f"--config.file={self.config}",
                    f"--storage.tsdb.path={self.workdir / 'data'}",
                    f"--web.listen-address=127.0.0.1:{self.port}",
                ],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        deadline = time.monotonic() + self.START_TIMEOUT
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                break
            with (
                contextlib.suppress(OSError, urllib.error.URLError),
                urllib.request.urlopen(self.url + "/-/ready", timeout=2) as resp,
            ):
                if resp.status == 200:
                    return
            time.sleep(0.2)
        tail = self.log_tail()
        self.stop()
        raise RuntimeError(f"prometheus did not become ready:\n{tail}")

    def stop(self) -> None:
        if self._proc is not None:
            _stop_process(self._proc, grace=10)
            self._proc = None
        if self.workdir is not None:
            shutil.rmtree(self.workdir, ignore_errors=True)
            self.workdir = None

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


# --------------------------------------------------------------------------
# HTCondor


_CHROOT_PATH: Final = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

_CHROOT_SH: Final = 'mount -t proc -o nosuid,nodev,noexec proc "$1/proc" && exec chroot "$@"'

_BASE_CONFIG: Final = """\
RELEASE_DIR = /usr
BIN = $(RELEASE_DIR)/bin
SBIN = $(RELEASE_DIR)/sbin
LIB = $(RELEASE_DIR)/lib/condor
LIBEXEC = $(RELEASE_DIR)/libexec/condor
SHARE = $(RELEASE_DIR)/share/condor
INCLUDE = $(RELEASE_DIR)/include/condor
ETC = /etc/condor

LOCAL_DIR = {local_dir}
LOCAL_CONFIG_FILE =
REQUIRE_LOCAL_CONFIG_FILE = False
LOCAL_CONFIG_DIR = {config_dir}
LOG = $(LOCAL_DIR)/log
SPOOL = $(LOCAL_DIR)/spool
EXECUTE = $(LOCAL_DIR)/execute
LOCK = $(LOCAL_DIR)/lock
RUN = $(LOCAL_DIR)/run
CRED_STORE_DIR = $(LOCAL_DIR)/cred_dir

# Loopback only, no DNS.
NETWORK_INTERFACE = 127.0.0.1
BIND_ALL_INTERFACES = False
ENABLE_IPV6 = False
NO_DNS = True
DEFAULT_DOMAIN_NAME = localdomain
UID_DOMAIN = localdomain
FILESYSTEM_DOMAIN = localdomain

# Leave the host alone; we run inside a chroot.
ENABLE_KERNEL_TUNING = False
MOUNT_UNDER_SCRATCH =

# Test-only security: everyone may do everything, clients claim a normal user.
SEC_DEFAULT_AUTHENTICATION_METHODS = CLAIMTOBE
SEC_CLIENT_AUTHENTICATION_METHODS = CLAIMTOBE
SEC_DEFAULT_ENCRYPTION = OPTIONAL
SEC_DEFAULT_INTEGRITY = OPTIONAL
SEC_CLAIMTOBE_USER = {user}
ALLOW_READ = *
ALLOW_WRITE = *
ALLOW_NEGOTIATOR = *
ALLOW_ADMINISTRATOR = *
ALLOW_OWNER = *
ALLOW_CLIENT = *
ALLOW_DAEMON = *
ALLOW_CONFIG = *
ALLOW_ADVERTISE_MASTER = *
ALLOW_ADVERTISE_SCHEDD = *
ALLOW_ADVERTISE_STARTD = *

# Fast test cycles (HTCondor's defaults are 300 s).
UPDATE_INTERVAL = 5
MASTER_UPDATE_INTERVAL = 5
STARTD_CRON_JOBLIST =
# The mips/kflops benchmarks burn CPU and delay a graceful shutdown by ~10 s.
RunBenchmarks = False
BENCHMARKS_JOBLIST =
"""

_POOL_CONFIG: Final = """\
DAEMON_LIST = MASTER, COLLECTOR, NEGOTIATOR, SCHEDD, STARTD
CONDOR_HOST = 127.0.0.1
COLLECTOR_HOST = 127.0.0.1:{collector_port}
COLLECTOR_NAME = nomadwn-test-{pool_id}
USE_SHARED_PORT = False
BASE_CGROUP =
DISCARD_SESSION_KEYRING_ON_STARTUP = False
NEGOTIATOR_INTERVAL = 5
NEGOTIATOR_CYCLE_DELAY = 5
SCHEDD_INTERVAL = 5

# Run anything, never preempt.  StartJobs is the knob the worker's health
# check reads (condor_config_val -startd StartJobs); START follows it.
StartJobs = True
START = $(StartJobs)
SUSPEND = False
PREEMPT = False
KILL = False
WANT_SUSPEND = False
WANT_VACATE = False
"""


TRUST_DOMAIN: Final = "nomadwn.test"
DAEMON_IDENTITY: Final = f"condor@{TRUST_DOMAIN}"

_IDTOKENS_CONFIG: Final = """\

# IDTOKENS: the daemons really authenticate to each other with signed tokens. Every
# daemon-to-daemon level (a startd advertising itself, the negotiator, the schedd and
# the collector, the shadow and the starter) requires IDTOKENS from the identity the
# pool's tokens carry; only tools and the test's submitter (READ/WRITE/ADMINISTRATOR)
# keep CLAIMTOBE. Sessions are short, so a daemon authenticates again often (a rotated
# token is used within SEC_DEFAULT_SESSION_DURATION).
TRUST_DOMAIN = {trust_domain}
SEC_TOKEN_POOL_SIGNING_KEY_FILE = {pool_local}/passwords.d/POOL
SEC_PASSWORD_DIRECTORY = {pool_local}/passwords.d
SEC_TOKEN_DIRECTORY = {local_dir}/tokens.d
SEC_DEFAULT_AUTHENTICATION_METHODS = IDTOKENS, CLAIMTOBE
SEC_CLIENT_AUTHENTICATION_METHODS = IDTOKENS, CLAIMTOBE
SEC_DAEMON_AUTHENTICATION = REQUIRED
SEC_DAEMON_AUTHENTICATION_METHODS = IDTOKENS
SEC_NEGOTIATOR_AUTHENTICATION = REQUIRED
SEC_NEGOTIATOR_AUTHENTICATION_METHODS = IDTOKENS
SEC_ADVERTISE_STARTD_AUTHENTICATION = REQUIRED
SEC_ADVERTISE_STARTD_AUTHENTICATION_METHODS = IDTOKENS
SEC_ADVERTISE_MASTER_AUTHENTICATION = REQUIRED
SEC_ADVERTISE_MASTER_AUTHENTICATION_METHODS = IDTOKENS
SEC_ADVERTISE_SCHEDD_AUTHENTICATION = REQUIRED
SEC_ADVERTISE_SCHEDD_AUTHENTICATION_METHODS = IDTOKENS
ALLOW_DAEMON = {identity}
ALLOW_NEGOTIATOR = {identity}
ALLOW_ADVERTISE_MASTER = {identity}
ALLOW_ADVERTISE_SCHEDD = {identity}
ALLOW_ADVERTISE_STARTD = {identity}
SEC_DEFAULT_SESSION_DURATION = 15
"""


def base_config(
    local_dir: PurePosixPath,
    config_dir: PurePosixPath | str,
    user: str,
    *,
    idtokens_pool: PurePosixPath | None = None,
) -> str:
    """Paths, loopback networking, test-only security and fast cycles, shared by every daemon set.

    The pool adds its daemons and job policy to it; an extra worker adds its own names
    and the rendered worker configuration. ``idtokens_pool``: the LOCAL_DIR of a pool
    whose daemons authenticate with IDTOKENS (:class:`CondorPool` ``idtokens=True``).
    """
    text = _BASE_CONFIG.format(local_dir=local_dir, config_dir=config_dir, user=user)
    if idtokens_pool is not None:
        text += _IDTOKENS_CONFIG.format(
            trust_domain=TRUST_DOMAIN, identity=DAEMON_IDENTITY, pool_local=idtokens_pool, local_dir=local_dir
        )
    return text


class CondorPool:
    """A personal HTCondor 23.9 pool running inside the ``.peers/condor-root`` chroot.

    Use as a context manager (needs root, for ``chroot``)::

        with CondorPool() as pool:
            pool.run(["condor_status"]).stdout

    Each instance gets its own directory ``/tmp/pool-XXXX`` inside the chroot
    holding its config file, ``config.d/`` and ``LOCAL_DIR`` (log, spool,
    execute, ...), and its own collector port, so concurrent pools do not
    collide.  Daemons listen on 127.0.0.1 only.  Entering waits until the
    schedd and a startd are in the collector; leaving shuts the pool down
    (``condor_off -master``, then SIGTERM/SIGKILL of leftovers) and removes
    the directory.

    Clients authenticate with CLAIMTOBE as :attr:`user` (a normal user created
    by the install script), because the schedd refuses jobs owned by root.

    ``idtokens=True``: the daemons authenticate to each other with IDTOKENS signed by
    the pool's own key (``local/passwords.d/POOL``); :meth:`create_token` issues more.
    """

    START_TIMEOUT: Final = 60.0
    DEFAULT_USER: Final = "nomadwn"

    def __init__(self, user: str = DEFAULT_USER, *, idtokens: bool = False) -> None:
        self.user = user
        self.idtokens = idtokens
        self.root: Path = peers_dir() / "condor-root"
        self.pool_id = uuid.uuid4().hex[:8]
        self.collector_port = 0
        self.pool_dir: Path | None = None
        self.pool_dir_in_chroot: PurePosixPath | None = None
        self._proc: subprocess.Popen[bytes] | None = None
        self._out: IO[bytes] | None = None

    # ---- discovery ---------------------------------------------------------

    @staticmethod
    def chroot_dir() -> Path:
        """Path of the HTCondor chroot on the host (it may not exist)."""
        return peers_dir() / "condor-root"

    @staticmethod
    def available() -> str | None:
        """None when the HTCondor chroot is installed and usable, else why not."""
        root = CondorPool.chroot_dir()
        if not (root / "usr" / "sbin" / "condor_master").is_file():
            return f"HTCondor is not installed ({root}/usr/sbin/condor_master missing): {INSTALL_HINT}"
        if os.geteuid() != 0:
            return "CondorPool needs root (it runs the pool with chroot)"
        return None

    # ---- paths -------------------------------------------------------------

    def _require_started(self) -> tuple[Path, PurePosixPath]:
        if self.pool_dir is None or self.pool_dir_in_chroot is None:
            raise RuntimeError("CondorPool is not started")
        return self.pool_dir, self.pool_dir_in_chroot

    @property
    def collector(self) -> str:
        """Collector address, ``127.0.0.1:PORT`` (usable from the host, too)."""
        if not self.collector_port:
            raise RuntimeError("CondorPool is not started")
        return f"127.0.0.1:{self.collector_port}"

    @property
    def local_dir(self) -> Path:
        """The pool's LOCAL_DIR as seen from the host."""
        return self._require_started()[0] / "local"

    @property
    def local_dir_in_chroot(self) -> PurePosixPath:
        """The pool's LOCAL_DIR as seen from inside the chroot."""
        return self._require_started()[1] / "local"

    @property
    def config_file(self) -> Path:
        """The pool's CONDOR_CONFIG file as seen from the host."""
        return self._require_started()[0] / "condor_config"

    @property
    def config_file_in_chroot(self) -> PurePosixPath:
        """The pool's CONDOR_CONFIG as seen from inside the chroot."""
        return self._require_started()[1] / "condor_config"

    @property
    def config_dir(self) -> Path:
        """The pool's LOCAL_CONFIG_DIR (``config.d``) as seen from the host."""
        return self._require_started()[0] / "config.d"

    @property
    def log_dir(self) -> Path:
        """The pool's LOG directory as seen from the host."""
        return self.local_dir / "log"

    def host_path(self, path_in_chroot: str | PurePosixPath) -> Path:
        """Translate an absolute path inside the chroot to the host's view."""
        inner = PurePosixPath(path_in_chroot)
        if not inner.is_absolute():
            raise ValueError(f"not an absolute path: {inner}")
        return self.root.joinpath(*inner.parts[1:])

    # ---- commands ----------------------------------------------------------

    def env_argv(self, extra_env: dict[str, str] | None) -> list[str]:
        _, inner = self._require_started()
        env = {
            "PATH": _CHROOT_PATH,
            "HOME": "/root",
            "LANG": "C.UTF-8",
            "CONDOR_CONFIG": str(inner / "condor_config"),
            "NOMADWN_POOL_ID": self.pool_id,
        }
        env.update(extra_env or {})
        # HTCondor needs /proc (the procd reads its own process info).  Mount it
        # in a private mount namespace, so it vanishes with the last process
        # that uses it and the host never sees a mount below the chroot.
        return [
            "unshare", "--mount", "--propagation", "private", "--",
            "/bin/sh", "-c", _CHROOT_SH, "sh", str(self.root),
            "/usr/bin/env", "-i", *(f"{k}={v}" for k, v in env.items()),
        ]  # fmt: skip

    def run(
        self,
        argv: list[str],
        extra_env: dict[str, str] | None = None,
        timeout: float = 30,
    ) -> subprocess.CompletedProcess[str]:
        """Run ``argv`` inside the chroot with this pool's CONDOR_CONFIG.

        ``/proc`` is mounted for the command in a private mount namespace.
        The environment is empty apart from PATH, HOME, LANG, CONDOR_CONFIG and
        ``extra_env``; the working directory is the chroot's ``/``.  Output is
        captured as text; a non-zero exit status does not raise.
        """
        return subprocess.run(
            [*self.env_argv(extra_env), *argv],
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
            stdin=subprocess.DEVNULL,
        )

    def add_config(self, name: str, text: str) -> None:
        """Write ``config.d/<name>`` and run ``condor_reconfig`` on the master.

        Files in ``config.d`` are read in lexical order after the base config.
        """
        if not name or "/" in name or name.startswith(".") or name.endswith("~"):
            raise ValueError(f"bad config file name: {name!r}")
        path = self.config_dir / name
        path.write_text(text if text.endswith("\n") else text + "\n")
        path.chmod(0o644)
        result = self.run(["condor_reconfig"])
        if result.returncode != 0:
            raise RuntimeError(f"condor_reconfig failed ({result.returncode}):\n{result.stdout}{result.stderr}")

    def log_tail(self, name: str = "MasterLog", lines: int = 40) -> str:
        """Last ``lines`` lines of a daemon log (``MasterLog``, ``SchedLog``, ...)."""
        if self.pool_dir is None:
            return "<pool not started>"
        return _tail(self.log_dir / name, lines)

    # ---- lifecycle ---------------------------------------------------------

    def owner_ids(self) -> tuple[int, int]:
        """uid/gid of the ``condor`` account inside the chroot."""
        for line in (self.root / "etc" / "passwd").read_text().splitlines():
            fields = line.split(":")
            if len(fields) >= 4 and fields[0] == "condor":
                return int(fields[2]), int(fields[3])
        raise RuntimeError(f"no 'condor' user in {self.root}/etc/passwd: {INSTALL_HINT}")

    def _ensure_user(self) -> None:
        passwd = (self.root / "etc" / "passwd").read_text()
        if any(line.split(":", 1)[0] == self.user for line in passwd.splitlines()):
            return
        subprocess.run(
            [
                "chroot",
                str(self.root),
                "/usr/sbin/useradd",
                "--create-home",
                "--shell",
                "/bin/sh",
                self.user,
            ],
            capture_output=True,
            check=False,
        )
        passwd = (self.root / "etc" / "passwd").read_text()
        if not any(line.split(":", 1)[0] == self.user for line in passwd.splitlines()):
            raise RuntimeError(f"cannot create user {self.user!r} in {self.root}")

    def _write_layout(self) -> None:
        pool_dir, inner = self._require_started()
        uid, gid = self.owner_ids()
        pool_dir.chmod(0o755)
        (pool_dir / "config.d").mkdir(mode=0o755)
        local = pool_dir / "local"
        local.mkdir(mode=0o755)
        os.chown(local, uid, gid)
        for sub in ("log", "spool", "execute", "lock", "run", "cred_dir"):
            path = local / sub
            path.mkdir(mode=0o755)
            os.chown(path, uid, gid)
        (local / "cred_dir").chmod(0o700)
        (self.root / "run" / "condor").mkdir(parents=True, exist_ok=True)
        config = (
            "# Written by tests/peers.py for one throw-away personal pool.\n"
            + base_config(
                inner / "local", inner / "config.d", self.user, idtokens_pool=inner / "local" if self.idtokens else None
            )
            + _POOL_CONFIG.format(collector_port=self.collector_port, pool_id=self.pool_id)
        )
        (pool_dir / "condor_config").write_text(config)
        (pool_dir / "condor_config").chmod(0o644)
        if self.idtokens:
            for sub in ("passwords.d", "tokens.d"):
                (local / sub).mkdir(mode=0o700)
            key = local / "passwords.d" / "POOL"
            key.write_bytes(os.urandom(32))
            key.chmod(0o600)
            token = self.create_token()
            (local / "tokens.d" / "pool").write_text(token + "\n")
            (local / "tokens.d" / "pool").chmod(0o600)

    def create_token(self, identity: str = DAEMON_IDENTITY, lifetime: int = 3600) -> str:
        """A new IDTOKEN for ``identity``, signed with the pool's key (``idtokens=True`` only)."""
        result = self.run(
            ["condor_token_create", "-identity", identity, "-key", "POOL", "-lifetime", str(lifetime)], timeout=30
        )
        if result.returncode != 0 or not result.stdout.strip():
            raise RuntimeError(f"condor_token_create failed ({result.returncode}): {result.stderr}")
        return result.stdout.strip()

    def start(self) -> None:
        """Create the pool directory, start ``condor_master`` and wait for the pool."""
        message = self.available()
        if message is not None:
            raise RuntimeError(message)
        self._ensure_user()
        tmp = self.root / "tmp"
        tmp.mkdir(exist_ok=True)
        self.pool_dir = Path(tempfile.mkdtemp(prefix=f"pool-{self.pool_id}-", dir=tmp))
        self.pool_dir_in_chroot = PurePosixPath("/tmp") / self.pool_dir.name
        self.collector_port = _free_ports(1, udp=True)[0]
        try:
            self._write_layout()
            self._out = (self.pool_dir / "master.out").open("ab")
            self._proc = subprocess.Popen(
                [*self.env_argv(None), "condor_master", "-f"],
                stdin=subprocess.DEVNULL,
                stdout=self._out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
            self._wait_ready()
        except BaseException:
            self.stop()
            raise

    def _answers(self, *args: str) -> bool:
        result = self.run(["condor_status", *args, "-af", "Name"], timeout=10)
        return result.returncode == 0 and bool(result.stdout.strip())

    def _wait_ready(self) -> None:
        assert self._proc is not None
        deadline = time.monotonic() + self.START_TIMEOUT
        while True:
            if self._proc.poll() is not None:
                raise RuntimeError(
                    f"condor_master exited with code {self._proc.returncode};"
                    f" MasterLog tail:\n{self.log_tail()}\nmaster output:\n"
                    f"{_tail(self._require_started()[0] / 'master.out')}"
                )
            with contextlib.suppress(subprocess.TimeoutExpired):
                # Plain condor_status lists the startd's slot (Machine) ads.
                if self._answers("-schedd") and self._answers():
                    return
            if time.monotonic() > deadline:
                raise RuntimeError(
                    f"HTCondor pool (collector {self.collector}) not ready after"
                    f" {self.START_TIMEOUT:.0f}s (the schedd and a startd slot must be in the"
                    " collector);"
                    f" MasterLog tail:\n{self.log_tail()}"
                )
            time.sleep(0.5)

    def _pool_pids(self) -> list[int]:
        """PIDs of processes that belong to this pool.

        A process belongs to the pool if its environment carries this pool's id
        (every daemon inherits it from the master) or its working directory is
        inside the pool directory (jobs, whose environment the starter rebuilds).
        """
        pool_dir = self.pool_dir
        marker = f"NOMADWN_POOL_ID={self.pool_id}".encode()
        pids: list[int] = []
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit() or int(entry.name) == os.getpid():
                continue
            try:
                if marker in (entry / "environ").read_bytes().split(b"\0"):
                    pids.append(int(entry.name))
                    continue
                if pool_dir is not None:
                    cwd = Path(os.readlink(entry / "cwd"))
                    if cwd == pool_dir or pool_dir in cwd.parents:
                        pids.append(int(entry.name))
            except OSError:
                continue
        return pids

    def _kill_leftovers(self) -> None:
        for sig, wait in ((signal.SIGTERM, 5.0), (signal.SIGKILL, 5.0)):
            pids = self._pool_pids()
            if not pids:
                return
            for pid in pids:
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.kill(pid, sig)
            deadline = time.monotonic() + wait
            while time.monotonic() < deadline and self._pool_pids():
                time.sleep(0.1)

    def stop(self) -> None:
        """Shut the pool down and remove its directory.  Safe to call twice."""
        if self._proc is not None:
            if self._proc.poll() is None:
                with contextlib.suppress(subprocess.TimeoutExpired, RuntimeError):
                    self.run(["condor_off", "-master"], timeout=15)
                try:
                    self._proc.wait(timeout=20)
                except subprocess.TimeoutExpired:
                    _stop_process(self._proc, grace=10)
            self._proc = None
        if self.pool_dir is not None:
            self._kill_leftovers()
        if self._out is not None:
            self._out.close()
            self._out = None
        if self.pool_dir is not None:
            shutil.rmtree(self.pool_dir, ignore_errors=True)
            self.pool_dir = None
            self.pool_dir_in_chroot = None
        self.collector_port = 0

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
