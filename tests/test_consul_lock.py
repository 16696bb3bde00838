"""nomadwn.consul.ConsulLock without a Consul agent: the HTTP it sends, its states, its errors.

The real py-consul talks to ``responses``: each test scripts Consul's answers in order and
checks the exact requests (paths, query, body, token header) that reached requests.
"""

from __future__ import annotations

import base64
import json
import logging
from collections.abc import Iterator
from typing import Any, Final

import consul as py_consul
import pytest
import requests
import responses

from nomadwn.consul import Leadership
from nomadwn.consul_lock import ConsulLock
from nomadwn.consul_settings import ConsulSettings
from nomadwn.errors import ConsulError

TOKEN: Final = "s3cr3t-7a1c-4e2b-lock-token"
ADDRESS: Final = "https://consul.example:8501"
KEY: Final = "nomadwn/autoscaler"
KV: Final = f"{ADDRESS}/v1/kv/{KEY}"
CREATE: Final = f"{ADDRESS}/v1/session/create"
ME: Final = "replica-a"
OTHER: Final = "replica-b"
NEEDS: Final = "session:write and key:write on the lock key"


@pytest.fixture
def consul() -> Iterator[responses.RequestsMock]:
    with responses.RequestsMock(assert_all_requests_are_fired=True) as mocked:
        yield mocked


def lock(**overrides: Any) -> ConsulLock:
    values: dict[str, Any] = {"holder": ME, "lock_delay": 0, **overrides}
    return ConsulLock(ConsulSettings(address=ADDRESS, token=TOKEN, timeout=3), KEY, **values)


# -- scripted answers, in the order Consul gives them ------------------------------------------


def created(mocked: responses.RequestsMock, session_id: str) -> None:
    mocked.put(CREATE, json={"ID": session_id})


def renewed(mocked: responses.RequestsMock, session_id: str, ttl: str = "10s") -> None:
    entry = {"ID": session_id, "Name": "x", "LockDelay": 0, "Behavior": "release", "TTL": ttl, "NodeChecks": []}
    mocked.put(f"{ADDRESS}/v1/session/renew/{session_id}", json=[entry])


def gone(mocked: responses.RequestsMock, session_id: str) -> None:
    mocked.put(f"{ADDRESS}/v1/session/renew/{session_id}", status=404, body=f"Session id '{session_id}' not found")


def acquired(mocked: responses.RequestsMock, result: bool) -> None:
    mocked.put(KV, json=result)


def held_by(mocked: responses.RequestsMock, session_id: str | None, holder: str = OTHER) -> None:
    entry: dict[str, Any] = {"Key": KEY, "Flags": 0, "LockIndex": 1, "CreateIndex": 5, "ModifyIndex": 9}
    entry["Value"] = base64.b64encode(holder.encode()).decode()
    if session_id is not None:
        entry["Session"] = session_id
    mocked.get(KV, json=[entry], headers={"X-Consul-Index": "9"})


def sent(mocked: responses.RequestsMock) -> list[str]:
    """``METHOD url`` of every request, in order."""
    return [f"{call.request.method} {call.request.url}" for call in mocked.calls]


def body(call: Any) -> str:
    raw = call.request.body
    return raw.decode() if isinstance(raw, bytes) else str(raw)


# -- the protocol --------------------------------------------------------------------------------


def test_consul_lock_is_a_leadership() -> None:
    leadership: Leadership = lock()
    assert leadership.holder is None


# -- the session -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("ttl", "lock_delay", "expected_ttl", "expected_delay"),
    [
        (20.0, 15.0, "10s", "15s"),
        (20, 0, "10s", "0s"),
        (25, 0, "12500ms", "0s"),
        (60, 0.5, "30s", "500ms"),
        (172800, 60, "86400s", "60s"),
    ],
    ids=["defaults", "tests", "half-second-ttl", "sub-second-delay", "largest"],
)
def test_the_session_is_created_with_consuls_own_fields(
    consul: responses.RequestsMock, ttl: float, lock_delay: float, expected_ttl: str, expected_delay: str
) -> None:
    created(consul, "s1")
    acquired(consul, True)

    assert lock(ttl=ttl, lock_delay=lock_delay).hold() is True

    create, acquire = consul.calls
    assert json.loads(body(create)) == {
        "Name": f"nomadwn lock {KEY} ({ME})",
        "TTL": expected_ttl,
        "LockDelay": expected_delay,
        "Behavior": "release",
        "Checks": [],
    }
    assert create.request.url == CREATE
    assert acquire.request.url == f"{KV}?acquire=s1"
    assert body(acquire) == ME
    for call in consul.calls:
        assert call.request.headers["X-Consul-Token"] == TOKEN
        assert TOKEN not in (call.request.url or "")


def test_a_leader_renews_its_session_and_acquires_again(consul: responses.RequestsMock) -> None:
    created(consul, "s1")
    acquired(consul, True)
    renewed(consul, "s1")
    acquired(consul, True)
    leader = lock()

    assert leader.hold() is True
    assert leader.hold() is True

    assert sent(consul) == [
        f"PUT {CREATE}",
        f"PUT {KV}?acquire=s1",
        f"PUT {ADDRESS}/v1/session/renew/s1",
        f"PUT {KV}?acquire=s1",
    ]
    assert (leader.state, leader.holder) == ("leader", ME)


def test_acquire_false_is_not_leader_and_names_the_holder(consul: responses.RequestsMock) -> None:
    created(consul, "s1")
    acquired(consul, False)
    held_by(consul, "s9", OTHER)
    renewed(consul, "s1")
    acquired(consul, False)
    held_by(consul, "s9", OTHER)
    follower = lock()

    assert [follower.hold(), follower.hold()] == [False, False]

    assert sent(consul) == [
        f"PUT {CREATE}",
        f"PUT {KV}?acquire=s1",
        f"GET {KV}",
        f"PUT {ADDRESS}/v1/session/renew/s1",
        f"PUT {KV}?acquire=s1",
        f"GET {KV}",
    ]
    assert (follower.state, follower.holder) == ("follower", OTHER)


def test_a_free_key_or_no_key_has_no_holder(consul: responses.RequestsMock) -> None:
    # acquire false with nobody holding the key: the lock-delay of an invalidated session runs
    created(consul, "s1")
    acquired(consul, False)
    held_by(consul, None, "old-leader")
    renewed(consul, "s1")
    acquired(consul, False)
    consul.get(KV, status=404, headers={"X-Consul-Index": "9"})
    follower = lock()

    assert follower.hold() is False
    assert follower.holder is None
    assert follower.hold() is False
    assert follower.holder is None


@pytest.mark.parametrize("answer", ["404", "empty"])
def test_a_session_gone_on_renew_means_the_lock_is_lost_and_a_new_session_is_made(
    consul: responses.RequestsMock, caplog: pytest.LogCaptureFixture, answer: str
) -> None:
    created(consul, "s1")
    acquired(consul, True)
    if answer == "404":
        gone(consul, "s1")
    else:
        consul.put(f"{ADDRESS}/v1/session/renew/s1", json=[])
    created(consul, "s2")
    acquired(consul, False)  # lock_delay, or another replica was quicker
    held_by(consul, "s9", OTHER)
    renewed(consul, "s2")
    acquired(consul, False)
    held_by(consul, "s9", OTHER)
    replica = lock()

    assert replica.hold() is True
    with caplog.at_level(logging.WARNING, logger="nomadwn.consul"):
        assert replica.hold() is False
    assert (replica.state, replica.holder) == ("lost", OTHER)
    assert replica.hold() is False
    assert replica.state == "follower"

    assert sent(consul) == [
        f"PUT {CREATE}",
        f"PUT {KV}?acquire=s1",
        f"PUT {ADDRESS}/v1/session/renew/s1",
        f"PUT {CREATE}",
        f"PUT {KV}?acquire=s2",
        f"GET {KV}",
        f"PUT {ADDRESS}/v1/session/renew/s2",
        f"PUT {KV}?acquire=s2",
        f"GET {KV}",
    ]
    assert caplog.messages == [
        f"lock '{KEY}': {ME} lost the lock (its session was gone: renewals missed for 20s, or it was destroyed;"
        f" now held by '{OTHER}'): it must stop acting"
    ]


def test_a_lost_session_can_take_the_lock_back_when_it_is_free(consul: responses.RequestsMock) -> None:
    created(consul, "s1")
    acquired(consul, True)
    gone(consul, "s1")
    created(consul, "s2")
    acquired(consul, True)
    replica = lock()

    assert [replica.hold(), replica.hold()] == [True, True]
    assert replica.state == "leader"


def test_a_true_that_took_a_whole_session_ttl_is_not_acted_on(
    consul: responses.RequestsMock, caplog: pytest.LogCaptureFixture
) -> None:
    created(consul, "s1")
    acquired(consul, True)
    ticks = iter([100.0, 110.0])  # the session TTL is 10s: Consul promises nothing after that

    with caplog.at_level(logging.WARNING, logger="nomadwn.consul"):
        assert lock(clock=lambda: next(ticks)).hold() is False
    assert caplog.messages == [
        f"lock '{KEY}': holding it took 10.0s, not less than the session TTL of 10s: not acting on it"
    ]


def test_a_raised_session_ttl_is_logged_once(consul: responses.RequestsMock, caplog: pytest.LogCaptureFixture) -> None:
    created(consul, "s1")
    acquired(consul, True)
    for _ in range(2):
        renewed(consul, "s1", ttl="1m30s")
        acquired(consul, True)
    leader = lock(lock_delay=5)

    with caplog.at_level(logging.WARNING, logger="nomadwn.consul"):
        assert [leader.hold(), leader.hold(), leader.hold()] == [True, True, True]
    assert caplog.messages == [
        f"lock '{KEY}': Consul raised the session TTL from 10s to 1m30s (it is under load): a dead leader's lock"
        " may now stay taken for up to 185s"
    ]


# -- release ---------------------------------------------------------------------------------------


def test_release_frees_the_key_before_destroying_the_session(consul: responses.RequestsMock) -> None:
    created(consul, "s1")
    acquired(consul, True)
    consul.put(KV, json=True)
    consul.put(f"{ADDRESS}/v1/session/destroy/s1", json=True)
    leader = lock()
    assert leader.hold() is True

    leader.release()

    assert sent(consul)[2:] == [f"PUT {KV}?release=s1", f"PUT {ADDRESS}/v1/session/destroy/s1"]
    assert body(consul.calls[2]) == ME
    assert (leader.state, leader.holder) == ("follower", None)


def test_release_without_a_session_sends_nothing(consul: responses.RequestsMock) -> None:
    replica = lock()
    replica.release()
    replica.release()
    assert len(consul.calls) == 0


def test_after_release_hold_starts_a_new_session(consul: responses.RequestsMock) -> None:
    created(consul, "s1")
    acquired(consul, True)
    consul.put(KV, json=True)
    consul.put(f"{ADDRESS}/v1/session/destroy/s1", json=True)
    created(consul, "s2")
    acquired(consul, True)
    replica = lock()

    assert replica.hold() is True
    replica.release()
    assert replica.hold() is True
    assert sent(consul)[-2:] == [f"PUT {CREATE}", f"PUT {KV}?acquire=s2"]


def test_a_follower_release_never_raises(consul: responses.RequestsMock, caplog: pytest.LogCaptureFixture) -> None:
    created(consul, "s1")
    acquired(consul, False)
    held_by(consul, "s9")
    refused = requests.exceptions.ConnectionError(f"refused, token {TOKEN}")
    consul.put(KV, body=refused)
    consul.put(f"{ADDRESS}/v1/session/destroy/s1", body=refused)
    follower = lock()
    assert follower.hold() is False

    with caplog.at_level(logging.WARNING, logger="nomadwn.consul"):
        follower.release()

    assert len(caplog.messages) == 2
    assert caplog.messages[0] == (
        f"lock '{KEY}': releasing the lock '{KEY}' held by '{ME}': cannot reach Consul at {ADDRESS}: is the agent"
        " running? check CONSUL_HTTP_ADDR (the session lapses within 20s)"
    )
    assert TOKEN not in caplog.text


def test_a_leader_release_that_cannot_reach_consul_raises(consul: responses.RequestsMock) -> None:
    created(consul, "s1")
    acquired(consul, True)
    consul.put(KV, body=requests.exceptions.ConnectTimeout("timed out"))
    consul.put(f"{ADDRESS}/v1/session/destroy/s1", body=requests.exceptions.ConnectTimeout("timed out"))
    leader = lock()
    assert leader.hold() is True

    with pytest.raises(ConsulError) as caught:
        leader.release()

    assert str(caught.value) == (
        f"releasing the lock '{KEY}' held by '{ME}': Consul at {ADDRESS} did not answer within 3s: is the agent"
        " overloaded or stuck? check CONSUL_HTTP_ADDR, or raise the timeout"
    )
    assert leader.state == "follower"
    leader.release()  # the session is forgotten: nothing more to do, nothing raised


# -- errors ----------------------------------------------------------------------------------------

CREATE_WHAT: Final = f"creating a Consul session for '{ME}' to take the lock '{KEY}'"
RENEW_WHAT: Final = f"renewing the Consul session of '{ME}' for the lock '{KEY}'"
ACQUIRE_WHAT: Final = f"taking the lock '{KEY}' for '{ME}'"
READ_WHAT: Final = f"reading who holds the lock '{KEY}'"


def fail_at(mocked: responses.RequestsMock, step: str, **failure: Any) -> None:
    """Script a first hold() (session s1, acquire false, read) and a second one failing at ``step``."""
    created(mocked, "s1")
    acquired(mocked, False)
    held_by(mocked, "s9")
    if step == "renew":
        mocked.put(f"{ADDRESS}/v1/session/renew/s1", **failure)
        return
    renewed(mocked, "s1")
    if step == "acquire":
        mocked.put(KV, **failure)
        return
    acquired(mocked, False)
    mocked.get(KV, **failure)


@pytest.mark.parametrize(
    ("step", "failure", "message", "status"),
    [
        (
            "renew",
            {"body": requests.exceptions.ConnectionError(f"Max retries exceeded ({TOKEN})")},
            f"{RENEW_WHAT}: cannot reach Consul at {ADDRESS}: is the agent running? check CONSUL_HTTP_ADDR",
            None,
        ),
        (
            "renew",
            {"status": 500, "body": f"rpc error: No cluster leader (token {TOKEN})"},
            f"{RENEW_WHAT}: Consul at {ADDRESS} failed (HTTP 500: rpc error: No cluster leader (token <token>)):"
            " check the agent's log; does the cluster have a leader?",
            500,
        ),
        (
            "acquire",
            {"status": 403, "body": "Permission denied"},
            f"{ACQUIRE_WHAT}: Consul at {ADDRESS} denied permission (HTTP 403: Permission denied): check"
            f" CONSUL_HTTP_TOKEN is a valid token with {NEEDS}",
            403,
        ),
        (
            "acquire",
            {"status": 500, "body": 'invalid session "s1"'},
            f'{ACQUIRE_WHAT}: Consul at {ADDRESS} failed (HTTP 500: invalid session "s1"): check the agent\'s log;'
            " does the cluster have a leader?",
            500,
        ),
        (
            "read",
            {"status": 400, "body": "Bad request: odd key"},
            f"{READ_WHAT}: Consul at {ADDRESS} rejected the request (HTTP 400: Bad request: odd key): check the lock"
            " key",
            400,
        ),
        (
            "read",
            {"body": requests.exceptions.ReadTimeout("read timed out")},
            f"{READ_WHAT}: Consul at {ADDRESS} did not answer within 3s: is the agent overloaded or stuck? check"
            " CONSUL_HTTP_ADDR, or raise the timeout",
            None,
        ),
    ],
    ids=[
        "renew-refused",
        "renew-500-echoing-token",
        "acquire-403",
        "acquire-invalid-session",
        "read-400",
        "read-timeout",
    ],
)
def test_each_failure_is_a_consul_error_without_the_token(
    consul: responses.RequestsMock, step: str, failure: dict[str, Any], message: str, status: int | None
) -> None:
    fail_at(consul, step, **failure)
    replica = lock()
    assert replica.hold() is False

    with pytest.raises(ConsulError) as caught:
        replica.hold()

    assert str(caught.value) == message
    assert caught.value.status == status
    assert TOKEN not in str(caught.value)
    assert replica.state == "follower"  # an error changes no state


def test_the_first_create_failing_is_a_consul_error(consul: responses.RequestsMock) -> None:
    consul.put(CREATE, body=requests.exceptions.ConnectionError(f"refused {TOKEN}"))
    with pytest.raises(ConsulError) as caught:
        lock().hold()
    assert str(caught.value) == (
        f"{CREATE_WHAT}: cannot reach Consul at {ADDRESS}: is the agent running? check CONSUL_HTTP_ADDR"
    )
    assert isinstance(caught.value.__cause__, requests.exceptions.ConnectionError)


def test_no_token_gets_the_lock_permissions_in_the_hint(consul: responses.RequestsMock) -> None:
    consul.put(CREATE, status=403, body="Permission denied")
    no_token = ConsulLock(ConsulSettings(address=ADDRESS), KEY, holder=ME)
    with pytest.raises(ConsulError) as caught:
        no_token.hold()
    assert str(caught.value).endswith(f"no token was sent: set CONSUL_HTTP_TOKEN to a token with {NEEDS}")


def test_an_unreadable_create_answer_is_a_consul_error(consul: responses.RequestsMock) -> None:
    consul.put(CREATE, json={"Session": "s1"})
    with pytest.raises(ConsulError) as caught:
        lock().hold()
    assert str(caught.value).startswith(f"{CREATE_WHAT}: Consul at {ADDRESS} sent an answer nomadwn cannot read (")


def test_after_an_error_the_session_is_renewed_not_replaced(consul: responses.RequestsMock) -> None:
    fail_at(consul, "renew", body=requests.exceptions.ConnectionError("refused"))
    renewed(consul, "s1")
    acquired(consul, True)
    replica = lock()
    assert replica.hold() is False
    with pytest.raises(ConsulError):
        replica.hold()

    assert replica.hold() is True
    assert sent(consul)[-2:] == [f"PUT {ADDRESS}/v1/session/renew/s1", f"PUT {KV}?acquire=s1"]


RAISED: Final = sorted(
    {
        *(c for c in vars(py_consul.exceptions).values() if isinstance(c, type) and issubclass(c, Exception)),
        *(c for c in vars(requests.exceptions).values() if isinstance(c, type) and issubclass(c, OSError)),
    }
    - {requests.exceptions.RequestsWarning},
    key=lambda cls: f"{cls.__module__}.{cls.__name__}",
)


@pytest.mark.parametrize("cls", RAISED, ids=[f"{c.__module__.split('.')[0]}.{c.__name__}" for c in RAISED])
def test_every_exception_class_is_mapped(consul: responses.RequestsMock, cls: type[Exception]) -> None:
    exc = cls(f"Expecting value {TOKEN}", "doc", 0) if issubclass(cls, json.JSONDecodeError) else cls(f"bad {TOKEN}")
    consul.put(CREATE, body=exc)
    with pytest.raises(ConsulError) as caught:
        lock().hold()
    assert str(caught.value).startswith(f"{CREATE_WHAT}: ")
    assert TOKEN not in str(caught.value)
    assert caught.value.__cause__ is exc


# -- arguments ---------------------------------------------------------------------------------------

TTL_RANGE: Final = (
    "ConsulLock: ttl must be between 20 and 172800 seconds, not {!r}: the session TTL is ttl/2 (Consul may"
    " expire a session up to 2×TTL after its last renewal), and Consul's session TTL is 10s to 86400s"
)
DELAY_RANGE: Final = "ConsulLock: lock_delay must be between 0 and 60 seconds (Consul caps it), not {!r}"


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        ({"ttl": 19.9}, TTL_RANGE.format(19.9)),
        ({"ttl": 10}, TTL_RANGE.format(10)),
        ({"ttl": 172800.5}, TTL_RANGE.format(172800.5)),
        ({"ttl": float("nan")}, "ConsulLock: ttl must be a finite number of seconds, not nan"),
        ({"ttl": True}, "ConsulLock: ttl must be a finite number of seconds, not True"),
        ({"ttl": "20s"}, "ConsulLock: ttl must be a finite number of seconds, not '20s'"),
        ({"lock_delay": -1}, DELAY_RANGE.format(-1)),
        ({"lock_delay": 61}, DELAY_RANGE.format(61)),
        ({"lock_delay": float("inf")}, "ConsulLock: lock_delay must be a finite number of seconds, not inf"),
        ({"holder": ""}, "ConsulLock: holder must be a non-empty string naming this replica, not ''"),
        ({"key": ""}, "ConsulLock: key must name a KV key such as 'nomadwn/autoscaler', not ''"),
        ({"key": "/"}, "ConsulLock: key must name a KV key such as 'nomadwn/autoscaler', not '/'"),
        ({"key": "/nomadwn/lock"}, "ConsulLock: key '/nomadwn/lock' must not start with '/'"),
    ],
    ids=[
        "ttl-below-20",
        "ttl-10",
        "ttl-above-2-days",
        "ttl-nan",
        "ttl-bool",
        "ttl-text",
        "delay-negative",
        "delay-above-60",
        "delay-inf",
        "no-holder",
        "no-key",
        "slash-key",
        "leading-slash",
    ],
)
def test_the_constructor_checks_its_arguments(arguments: dict[str, Any], message: str) -> None:
    values: dict[str, Any] = {"key": KEY, "holder": ME, **arguments}
    key = values.pop("key")
    with pytest.raises(ValueError) as caught:
        ConsulLock(ConsulSettings(), key, **values)
    assert str(caught.value) == message


def test_the_smallest_ttl_is_twice_consuls_minimum() -> None:
    assert lock(ttl=20).session_ttl == 10.0


def test_repr_hides_the_token() -> None:
    text = repr(lock())
    assert TOKEN not in text
    assert text.startswith(f"ConsulLock('{KEY}', holder='{ME}', ttl=20, lock_delay=0, ConsulSettings(")
