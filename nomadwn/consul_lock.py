"""The autoscaler's leader lock: :class:`ConsulLock`, a :class:`~nomadwn.consul.Leadership` over a Consul session.

It goes through a :class:`~nomadwn.consul_health.ConsulClient` for the settings, TLS,
token handling and the one translation of py-consul and requests errors.
"""

from __future__ import annotations

import json
import logging
import math
import re
import time
from collections.abc import Callable, Mapping
from typing import Final, Literal, TypeVar

import requests
from consul.callback import CB

from nomadwn.consul_health import ConsulClient
from nomadwn.consul_settings import ConsulSettings
from nomadwn.errors import ConsulError

T = TypeVar("T")

SESSION_TTL_MIN: Final = 10.0
"""Consul's smallest session TTL in seconds (``session_ttl_min``, 10s by default)."""
SESSION_TTL_MAX: Final = 86400.0
"""Consul's largest session TTL in seconds (``structs.SessionTTLMax``, 24h)."""
LOCK_DELAY_MAX: Final = 60.0
"""Consul silently caps a session's lock-delay at this many seconds (``structs.MaxLockDelay``)."""

_LOCK_NEEDS: Final = "session:write and key:write on the lock key"
_GO_DURATION: Final = re.compile(r"(\d+(?:\.\d*)?|\.\d+)(ns|us|µs|ms|s|m|h)")
_GO_UNITS: Final = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}

log = logging.getLogger("nomadwn.consul")


def _go_duration(seconds: float) -> str:
    """A Go duration string Consul parses: ``10s``, or whole milliseconds rounded down (``12500ms``)."""
    if seconds == int(seconds):
        return f"{int(seconds)}s"
    return f"{math.floor(seconds * 1000)}ms"


def _parse_go_duration(text: str) -> float | None:
    """Seconds in a Go duration such as ``10s`` or ``1m30s``; None if it is not one."""
    parts = _GO_DURATION.findall(text)
    if not parts or "".join(number + unit for number, unit in parts) != text:
        return None
    return sum(float(number) * _GO_UNITS[unit] for number, unit in parts)


def _seconds(name: str, value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise ValueError(f"ConsulLock: {name} must be a finite number of seconds, not {value!r}")
    return float(value)


LockState = Literal["follower", "leader", "lost"]


class ConsulLock:
    """:class:`Leadership` over a Consul session and a KV lock: of the replicas sharing ``key``, one acts.

    Each replica owns a Consul session (``PUT /v1/session/create`` with ``TTL`` = ttl/2,
    ``LockDelay``, ``Behavior: release`` and ``Checks: []``, so only the TTL decides
    whether the replica lives) and calls :meth:`hold` before every action. ``hold``
    renews the session (``PUT /v1/session/renew/<id>``), then tries to take the lock
    (``PUT /v1/kv/<key>?acquire=<id>``, the value being ``holder``), and returns True only
    if that acquire just succeeded. A follower then reads who holds the lock
    (``GET /v1/kv/<key>``: ``Session`` and the holder string in ``Value``). The state
    after each ``hold``::

                       True                           True (renewed, acquired)
        ┌──────────┐ ──────────▶ ┌────────┐ ◀──────────────────┐
        │ follower │             │ leader │ ───────────────────┘
        └──────────┘ ◀────────── └────────┘
          ▲    │ ▲   release()        │ False: renew answered 404 or nothing, so the session
          │    │ │                    │ was invalidated (renewals missed for ttl, or it was
          └────┘ │ False              │ destroyed) and the lock released, and a new session could
          False  │                    ▼ not take it back (lock_delay, another replica won); or
          (held  │               ┌────────┐
          by     └────────────── │  lost  │ ── True (new session, acquired) ──▶ leader
          another)               └────────┘    another session holds the key

    ``hold`` raising :class:`ConsulError` changes nothing here (the session is kept and
    renewed next time, or found gone); the caller acts only after a True.

    Time bounds (Consul invalidates a session between TTL and 2×TTL after its last
    renewal, and keeps a released lock from being re-taken for the lock-delay):

    * Safety: a True from ``hold`` is valid for ttl/2 seconds from the moment ``hold`` was
      called. ``hold`` returns False instead of a True that took that long to get.
    * Keeping the lock: the leader must call ``hold`` at least every ttl seconds (in
      practice every ttl/4 or more often).
    * Takeover after a crash: the lock is free again at most ttl + lock_delay seconds after
      the dead leader's last ``hold``; a follower takes it on its next ``hold`` after that.
    * Takeover after :meth:`release`: at once. ``release`` frees the key
      (``?release=<id>``, which sets no lock-delay) before it destroys the session
      (which would).

    ``ttl`` must be at least 20 seconds (Consul's smallest session TTL is 10s);
    ``lock_delay`` is 0 to 60 seconds (Consul caps it at 60s; 15s is Consul's default).
    ``clock`` (monotonic seconds) is injectable for tests. ``session`` replaces the
    requests session py-consul makes, as for :class:`ConsulClient`, whose settings, TLS,
    token handling and error translation this uses.
    """

    def __init__(
        self,
        settings: ConsulSettings,
        key: str,
        *,
        holder: str,
        ttl: float = 20.0,
        lock_delay: float = 15.0,
        session: requests.Session | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if not isinstance(key, str) or not key.strip("/"):
            raise ValueError(f"ConsulLock: key must name a KV key such as 'nomadwn/autoscaler', not {key!r}")
        if key.startswith("/"):
            raise ValueError(f"ConsulLock: key {key!r} must not start with '/'")
        if not isinstance(holder, str) or not holder:
            raise ValueError(f"ConsulLock: holder must be a non-empty string naming this replica, not {holder!r}")
        self.ttl = _seconds("ttl", ttl)
        if not 2 * SESSION_TTL_MIN <= self.ttl <= 2 * SESSION_TTL_MAX:
            raise ValueError(
                f"ConsulLock: ttl must be between {2 * SESSION_TTL_MIN:g} and {2 * SESSION_TTL_MAX:g} seconds,"
                f" not {ttl!r}: the session TTL is ttl/2 (Consul may expire a session up to 2×TTL after"
                f" its last renewal), and Consul's session TTL is {SESSION_TTL_MIN:g}s to {SESSION_TTL_MAX:g}s"
            )
        self.lock_delay = _seconds("lock_delay", lock_delay)
        if not 0 <= self.lock_delay <= LOCK_DELAY_MAX:
            raise ValueError(
                f"ConsulLock: lock_delay must be between 0 and {LOCK_DELAY_MAX:g} seconds (Consul caps it),"
                f" not {lock_delay!r}"
            )
        self.key = key
        self.holder_name = holder
        self.session_ttl = _parse_go_duration(_go_duration(self.ttl / 2)) or self.ttl / 2
        self._clock = clock
        self._client = ConsulClient(settings, session=session)
        self._session_id: str | None = None
        self._state: LockState = "follower"
        self._holder: str | None = None
        self._warned_ttl: str | None = None

    def __repr__(self) -> str:
        return (
            f"ConsulLock({self.key!r}, holder={self.holder_name!r}, ttl={self.ttl:g}, lock_delay={self.lock_delay:g},"
            f" {self._client.settings!r})"
        )

    # -- Leadership ------------------------------------------------------------------------

    @property
    def holder(self) -> str | None:
        """The holder string of whoever held the lock at the last :meth:`hold` (None: free)."""
        return self._holder

    @property
    def state(self) -> LockState:
        """``follower``, ``leader`` or ``lost`` (see the class docstring), as of the last :meth:`hold`."""
        return self._state

    def hold(self) -> bool:
        """Renew this replica's session (or make one), then try to take the lock: True iff it is ours now."""
        was = self._state
        started = self._clock()
        session_id, renewed = self._live_session()
        acquired = self._call(
            f"taking the lock {self.key!r} for {self.holder_name!r}",
            lambda: self._client._py.kv.put(self.key, self.holder_name, acquire=session_id),
        )
        if acquired is True:
            self._holder = self.holder_name
            took = self._clock() - started
            if took >= self.session_ttl:
                # Consul only promises the session for its TTL after our renewal: too late to act on.
                log.warning(
                    "lock %r: holding it took %.1fs, not less than the session TTL of %gs: not acting on it",
                    self.key,
                    took,
                    self.session_ttl,
                )
                return False
            if self._state != "leader":
                log.info("lock %r: %s is the leader now", self.key, self.holder_name)
            self._state = "leader"
            return True
        self._holder = self._read_holder()
        self._state = "lost" if was == "leader" else "follower"
        if was == "leader":
            log.warning(
                "lock %r: %s lost the lock (%s; now held by %r): it must stop acting",
                self.key,
                self.holder_name,
                "another session took the key"
                if renewed
                else f"its session was gone: renewals missed for {self.ttl:g}s, or it was destroyed",
                self._holder,
            )
        return False

    def release(self) -> None:
        """Free the lock (no lock-delay) and destroy the session; hold() may take the lock again later.

        Raises :class:`ConsulError` only if this replica held the lock (as of the last
        ``hold``) and Consul could not be told; the session then lapses within ttl.
        """
        session_id, self._session_id = self._session_id, None
        was_leader = self._state == "leader"
        self._state = "follower"
        if session_id is None:
            return
        if self._holder == self.holder_name:
            self._holder = None
        errors: list[ConsulError] = []
        steps: list[tuple[str, Callable[[], object]]] = [
            (
                f"releasing the lock {self.key!r} held by {self.holder_name!r}",
                lambda: self._client._py.kv.put(self.key, self.holder_name, release=session_id),
            ),
            (
                f"destroying the Consul session of {self.holder_name!r} for the lock {self.key!r}",
                lambda: self._client._py.session.destroy(session_id),
            ),
        ]
        for what, request in steps:
            try:
                self._call(what, request)
            except ConsulError as exc:
                errors.append(exc)
        if errors and was_leader:
            raise errors[0]
        for error in errors:
            log.warning("lock %r: %s (the session lapses within %gs)", self.key, error, self.ttl)

    # -- resources -------------------------------------------------------------------------

    def close(self) -> None:
        """Close the HTTP connections (does not release the lock)."""
        self._client.close()

    def __enter__(self) -> ConsulLock:
        return self

    def __exit__(self, *exc_info: object) -> None:
        try:
            self.release()
        finally:
            self.close()

    # -- the steps -------------------------------------------------------------------------

    def _call(self, what: str, request: Callable[[], T]) -> T:
        return self._client._call(what, request, needs=_LOCK_NEEDS, rejected_hint="check the lock key")

    def _live_session(self) -> tuple[str, bool]:
        """This replica's session, and whether it was renewed (False: it is new, the old one was gone)."""
        if self._session_id is not None:
            session_id = self._session_id
            try:
                answer = self._call(
                    f"renewing the Consul session of {self.holder_name!r} for the lock {self.key!r}",
                    lambda: self._client._py.session.renew(session_id),
                )
            except ConsulError as exc:
                if exc.status != 404:
                    raise
                answer = None  # Consul: "Session id '...' not found"
            if answer:
                self._check_ttl(answer)
                return session_id, True
            self._session_id = None  # invalidated, and with it any lock it held released
        self._session_id = self._create_session()
        return self._session_id, False

    def _create_session(self) -> str:
        # py-consul's session.create sends lower-case fields, whole seconds only and no
        # Behavior for "release"; its HTTP layer and callback are used to send Consul's own.
        body = {
            "Name": f"nomadwn lock {self.key} ({self.holder_name})",
            "TTL": _go_duration(self.ttl / 2),
            "LockDelay": _go_duration(self.lock_delay),
            "Behavior": "release",
            "Checks": [],
        }
        py = self._client._py
        session_id = self._call(
            f"creating a Consul session for {self.holder_name!r} to take the lock {self.key!r}",
            lambda: py.http.put(
                CB.json(is_id=True), "/v1/session/create", data=json.dumps(body), headers=py.prepare_headers()
            ),
        )
        if not isinstance(session_id, str) or not session_id:
            raise self._unreadable(f"creating a Consul session for {self.holder_name!r}", f"session ID {session_id!r}")
        return session_id

    def _check_ttl(self, answer: object) -> None:
        ttl = answer.get("TTL") if isinstance(answer, Mapping) else None
        seconds = _parse_go_duration(ttl) if isinstance(ttl, str) else None
        if seconds is not None and seconds > self.session_ttl and ttl != self._warned_ttl:
            self._warned_ttl = ttl
            log.warning(
                "lock %r: Consul raised the session TTL from %gs to %s (it is under load): a dead leader's lock"
                " may now stay taken for up to %gs",
                self.key,
                self.session_ttl,
                ttl,
                2 * seconds + self.lock_delay,
            )

    def _read_holder(self) -> str | None:
        what = f"reading who holds the lock {self.key!r}"
        answer = self._call(what, lambda: self._client._py.kv.get(self.key))
        try:
            _index, entry = answer
            if not entry or not entry.get("Session"):
                return None
            value = entry.get("Value")
        except (TypeError, ValueError, AttributeError) as exc:
            raise self._unreadable(what, f"{type(exc).__name__}: {exc}") from exc
        if isinstance(value, bytes):
            return value.decode("utf-8", errors="replace")
        return str(value) if value else ""

    def _unreadable(self, what: str, detail: str) -> ConsulError:
        return self._client._error(
            what,
            f"Consul at {self._client.settings.address} sent an answer nomadwn cannot read ({detail})",
            "check that CONSUL_HTTP_ADDR points at a Consul agent",
        )
