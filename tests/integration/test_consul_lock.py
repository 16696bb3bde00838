"""ConsulLock against a real Consul 1.8.7 dev agent: one leader of two, hand-over, crash takeover.

The crash test runs the leader in a child Python process that calls ``hold()`` every
second, SIGKILLs it, and polls ``hold()`` in the survivor every 0.5 s. With
``lock_delay=0`` the dead leader's lock must be free within ``ttl`` of the kill (Consul
invalidates a session at most 2×TTL = ttl after its last renewal), and must not be free
before ttl/2 after the dead leader's last ``hold()`` began (a session lives at least its TTL).
"""

from __future__ import annotations

import json
import queue
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, Final

import pytest
import requests

from nomadwn.consul_lock import ConsulLock
from nomadwn.consul_settings import ConsulSettings
from tests.peers import REPO_ROOT, ConsulAgent

pytestmark = pytest.mark.integration

TTL: Final = 20.0
POLL: Final = 0.5
# Consul's session timer fires at 2×TTL, then the invalidation goes through raft: milliseconds.
PROCESSING: Final = 0.25

# The leader as its own process: one JSON line per hold(), with when that hold() began.
CHILD: Final = """
import json, sys, time
from nomadwn.consul_lock import ConsulLock
from nomadwn.consul_settings import ConsulSettings
from nomadwn.errors import ConsulError

address, key, holder, ttl = sys.argv[1], sys.argv[2], sys.argv[3], float(sys.argv[4])
lock = ConsulLock(ConsulSettings(address=address, timeout=5), key, holder=holder, ttl=ttl, lock_delay=0)
while True:
    started = time.monotonic()
    try:
        held = lock.hold()
    except ConsulError as exc:
        held = None
        print(json.dumps({"error": str(exc)}), file=sys.stderr, flush=True)
    print(json.dumps({"started": started, "held": held}), flush=True)
    time.sleep(1)
"""


def new_key() -> str:
    return f"nomadwn/test-lock-{uuid.uuid4().hex[:8]}"


def make(agent: ConsulAgent, key: str, holder: str, *, lock_delay: float = 0) -> ConsulLock:
    return ConsulLock(
        ConsulSettings(address=agent.http_addr, timeout=5), key, holder=holder, ttl=TTL, lock_delay=lock_delay
    )


@pytest.fixture
def key() -> str:
    return new_key()


@pytest.fixture
def pair(consul: ConsulAgent, key: str) -> Iterator[tuple[ConsulLock, ConsulLock]]:
    a, b = make(consul, key, "replica-a"), make(consul, key, "replica-b")
    try:
        yield a, b
    finally:
        for lock in (a, b):
            with lock:
                pass  # release, close


def kv_session(agent: ConsulAgent, key: str) -> str | None:
    response = requests.get(f"{agent.http_addr}/v1/kv/{key}", timeout=5)
    response.raise_for_status()
    session: str | None = response.json()[0].get("Session")
    return session


def test_exactly_one_of_two_holds(pair: tuple[ConsulLock, ConsulLock]) -> None:
    a, b = pair
    assert a.hold() is True
    for _ in range(5):
        assert b.hold() is False
        assert a.hold() is True
        time.sleep(0.2)
    assert (a.state, a.holder) == ("leader", "replica-a")
    assert (b.state, b.holder) == ("follower", "replica-a")


def test_the_session_is_what_consul_made(consul: ConsulAgent, key: str, pair: tuple[ConsulLock, ConsulLock]) -> None:
    a, _ = pair
    assert a.hold() is True
    session_id = kv_session(consul, key)
    assert session_id is not None

    (session,) = requests.get(f"{consul.http_addr}/v1/session/info/{session_id}", timeout=5).json()

    assert {k: session[k] for k in ("Name", "TTL", "LockDelay", "Behavior", "NodeChecks")} == {
        "Name": f"nomadwn lock {key} (replica-a)",
        "TTL": "10s",  # ttl/2: Consul invalidates it at most 2×10s after the last renewal
        "LockDelay": 0,
        "Behavior": "release",
        "NodeChecks": [],  # only the TTL decides: no serfHealth
    }


def test_release_hands_over_at_once_even_with_a_lock_delay(consul: ConsulAgent, key: str) -> None:
    with make(consul, key, "replica-a", lock_delay=15) as a, make(consul, key, "replica-b", lock_delay=15) as b:
        assert a.hold() is True
        assert b.hold() is False

        a.release()

        assert b.hold() is True  # the very next hold(): ?release= sets no lock-delay
        assert a.hold() is False
        assert (a.holder, b.holder) == ("replica-b", "replica-b")
        assert b.hold() is True


def test_a_destroyed_session_loses_the_lock_and_the_lock_delay_holds_it(consul: ConsulAgent, key: str) -> None:
    delay = 3.0
    with make(consul, key, "replica-a", lock_delay=delay) as a, make(consul, key, "replica-b", lock_delay=delay) as b:
        assert a.hold() is True
        assert b.hold() is False
        session_id = kv_session(consul, key)
        destroyed = time.monotonic()
        requests.put(f"{consul.http_addr}/v1/session/destroy/{session_id}", timeout=5).raise_for_status()

        assert a.hold() is False  # renew answers 404: a new session, but the lock-delay runs
        assert (a.state, a.holder) == ("lost", None)
        assert b.hold() is False

        while not b.hold():
            assert time.monotonic() - destroyed < delay + 5, "the lock-delay did not end"
            time.sleep(0.1)
        took = time.monotonic() - destroyed
        assert took >= delay - 0.5  # Consul's clock and ours differ by the request time only
        assert a.hold() is False
        assert (a.state, a.holder) == ("follower", "replica-b")


@dataclass
class Attempt:
    started: float
    ended: float
    held: bool


def _lines(stream: IO[str], into: queue.Queue[dict[str, Any]]) -> None:
    for line in stream:
        into.put(json.loads(line))


def test_a_killed_leader_is_replaced_within_ttl(consul: ConsulAgent, key: str, tmp_path: Path) -> None:
    errors = (tmp_path / "child.err").open("w")
    child = subprocess.Popen(
        [sys.executable, "-c", CHILD, consul.http_addr, key, "crashing-leader", str(TTL)],
        cwd=REPO_ROOT,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=errors,
        text=True,
    )
    assert child.stdout is not None
    reports: queue.Queue[dict[str, Any]] = queue.Queue()
    reader = threading.Thread(target=_lines, args=(child.stdout, reports), daemon=True)
    reader.start()
    survivor = make(consul, key, "survivor")
    try:
        # the child leads ...
        try:
            report = reports.get(timeout=30)
        except queue.Empty:
            pytest.fail(f"the child never reported: {(tmp_path / 'child.err').read_text()}")
        assert report["held"] is True, (report, (tmp_path / "child.err").read_text())
        # ... and while it lives, the survivor never does
        for _ in range(4):
            assert survivor.hold() is False
            assert survivor.holder == "crashing-leader"
            time.sleep(POLL)

        killed = time.monotonic()
        child.send_signal(signal.SIGKILL)
        child.wait(timeout=10)
        last_hold = report["started"]
        while not reports.empty():
            report = reports.get()
            if report["held"]:
                last_hold = report["started"]

        attempts: list[Attempt] = []
        while not attempts or not attempts[-1].held:
            started = time.monotonic()
            assert started - killed < TTL + 10, f"no takeover {started - killed:.1f}s after the kill"
            held = survivor.hold()
            attempts.append(Attempt(started, time.monotonic(), held))
            time.sleep(max(0.0, started + POLL - time.monotonic()))
    finally:
        if child.poll() is None:
            child.kill()
            child.wait(timeout=10)
        reader.join(timeout=10)
        child.stdout.close()
        errors.close()
        with survivor:
            pass

    takeover = attempts[-1].ended - killed
    refused_until = attempts[-2].started  # the last hold() that found the lock still taken began here
    print(
        f"takeover {takeover:.2f}s after SIGKILL (ttl {TTL:g}s, lock_delay 0, poll {POLL}s);"
        f" last refusal {refused_until - killed:.2f}s after the kill,"
        f" {refused_until - last_hold:.2f}s after the dead leader's last hold() began"
    )
    # Liveness: every hold() begun ttl (plus Consul's processing) after the kill found the lock free.
    assert refused_until - killed < TTL + PROCESSING
    # Safety: the dead leader's lock stayed taken for at least the session TTL (ttl/2).
    assert refused_until - last_hold >= TTL / 2
    assert survivor.state == "follower"  # released by the context manager above
    assert len(attempts) >= 2
