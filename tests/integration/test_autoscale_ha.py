"""High availability: two ``nomadwn autoscale`` processes, one real Consul agent, one leader.

Both replicas run the real CLI (``python typer_cli.py autoscale``) against a real
Consul 1.8 agent (the lock), a real HTCondor pool (the demand) and the fake Nomad.
Exactly one reports ``nomadwn_leader 1`` on its ``/metrics``; after the leader is
SIGKILLed (no chance to release its lock), the other takes over within ``lock_ttl``
(``lock_delay`` is 0 here; Consul's default 15 s would add to it). A replica stopped
with SIGTERM releases the lock at once.
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any, Final

import pytest
import yaml

from nomadwn.nomad import NomadSettings
from nomadwn.nomad_client import NomadClient
from nomadwn.render import build_job
from nomadwn.sitefile import parse_site
from tests.fake_nomad import FakeNomad
from tests.peers import REPO_ROOT, CondorPool, ConsulAgent

pytestmark = pytest.mark.integration

EXAMPLE: Final = REPO_ROOT / "examples" / "glasgow.yaml"
LOCK_TTL: Final = 20.0
TICK: Final = 1.0  # the loop's tick with evaluation_interval 1s


class Replica:
    """One ``nomadwn autoscale`` process with its metrics endpoint."""

    def __init__(self, name: str, site_file: Path, env: dict[str, str], log: Path) -> None:
        self.name = name
        self.log = log
        self._out = log.open("wb")
        argv = [sys.executable, str(REPO_ROOT / "typer_cli.py"), "autoscale", str(site_file)]
        argv += ["--metrics-address", "127.0.0.1:0", "--holder", name]
        self.proc = subprocess.Popen(argv, env=env, stdout=self._out, stderr=subprocess.STDOUT)
        self.port = self._wait_port()

    def _wait_port(self) -> int:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            found = re.search(r"serving /metrics and /healthz on 127\.0\.0\.1:(\d+)", self.output())
            if found:
                return int(found.group(1))
            if self.proc.poll() is not None:
                break
            time.sleep(0.2)
        raise RuntimeError(f"replica {self.name} did not start:\n{self.output()}")

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def leader(self) -> bool | None:
        """What its /metrics says (None if it does not answer)."""
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/metrics", timeout=2) as reply:
                text = reply.read().decode()
        except OSError:
            return None
        found = re.search(r"^nomadwn_leader (\S+)$", text, re.MULTILINE)
        return found is not None and float(found.group(1)) == 1.0

    def stop(self, sig: int = signal.SIGTERM) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        code = self.proc.wait(timeout=30)
        self._out.close()
        return code


def _site_file(tmp_path: Path, pool: CondorPool) -> Path:
    data: dict[str, Any] = yaml.safe_load(EXAMPLE.read_text(encoding="utf-8"))
    data["defaults"]["htcondor"]["collector"] = [pool.collector]
    data["autoscaler"].update(lock_ttl="20s", lock_delay="0s", lock_key="nomadwn/test/ha")
    for name in ("elastic", "burst"):
        data["flavours"][name]["autoscale"]["evaluation_interval"] = "1s"
        data["flavours"][name]["autoscale"]["stale_after"] = "60s"
    path = tmp_path / "site.yaml"
    path.write_text(yaml.safe_dump(data), encoding="utf-8")
    return path


def _wait(condition: Any, timeout: float) -> float:
    """Seconds until ``condition()`` is true; raises after ``timeout``."""
    start = time.monotonic()
    while time.monotonic() - start < timeout:
        if condition():
            return time.monotonic() - start
        time.sleep(0.25)
    raise AssertionError(f"not within {timeout:.0f}s")


def test_one_leader_and_the_follower_takes_over_when_it_dies(
    tmp_path: Path, pool: CondorPool, consul: ConsulAgent
) -> None:
    site_file = _site_file(tmp_path, pool)
    site = parse_site(yaml.safe_load(site_file.read_text(encoding="utf-8")))
    with contextlib.ExitStack() as stack:
        fake = stack.enter_context(FakeNomad())
        nomad = NomadClient(NomadSettings(address=fake.address))
        for name in ("elastic", "burst"):
            nomad.register(build_job(site, name), enforce_index=None, preserve_counts=False)
        env = {
            **{k: v for k, v in os.environ.items() if not k.startswith(("NOMAD_", "CONSUL_", "_CONDOR_"))},
            "NOMAD_ADDR": fake.address,
            "CONSUL_HTTP_ADDR": consul.http_addr,
            "PYTHONPATH": str(REPO_ROOT),
        }
        a = Replica("replica-a", site_file, env, tmp_path / "a.log")
        stack.callback(a.stop, signal.SIGKILL)
        b = Replica("replica-b", site_file, env, tmp_path / "b.log")
        stack.callback(b.stop, signal.SIGKILL)

        # Exactly one leader, and it stays so.
        _wait(lambda: [a.leader(), b.leader()].count(True) == 1, 30)
        for _ in range(8):
            assert [a.leader(), b.leader()].count(True) == 1, (a.output(), b.output())
            time.sleep(0.5)
        leader, follower = (a, b) if a.leader() else (b, a)
        assert '"event": "decision"' in leader.output()
        assert '"event": "decision"' not in follower.output()  # a follower observes and decides nothing

        # The leader dies without releasing its lock: the follower takes over within lock_ttl + a tick.
        leader.stop(signal.SIGKILL)
        took = _wait(lambda: follower.leader() is True, LOCK_TTL + 10)
        print(f"takeover after SIGKILL: {took:.1f}s (lock_ttl {LOCK_TTL:.0f}s, tick {TICK:.0f}s)")
        assert took <= LOCK_TTL + TICK + 0.5, took  # 0.5 s: this test's own polling of /metrics
        _wait(lambda: '"event": "decision"' in follower.output(), 15)

        # A graceful stop releases the lock at once, so a new replica leads at once.
        assert follower.stop(signal.SIGTERM) == 0, follower.output()
        c = Replica("replica-c", site_file, env, tmp_path / "c.log")
        stack.callback(c.stop, signal.SIGKILL)
        took = _wait(lambda: c.leader() is True, 10)
        print(f"takeover after SIGTERM: {took:.1f}s")
