"""A rotated pool token restarts no worker: on a pool that really authenticates with IDTOKENS.

The pool (``CondorPool(idtokens=True)``) requires IDTOKENS signed by its own key at
every daemon-to-daemon level, so a worker's startd can only advertise itself with a
valid token. A worker rendered from the example site (``pool_auth: idtoken``: the
rendered ``SEC_TOKEN_DIRECTORY = /secrets/condor/tokens.d``, the file Nomad's
template writes with ``change_mode = "noop"``) runs a real payload; the token file is
replaced under it the way consul-template does (write, then rename), and the old
token is revoked (``SEC_TOKEN_REVOCATION_EXPR``). The collector is then restarted, so it
holds no session with the worker and no ad of it: the worker is back in the pool only
if its startd authenticates anew, which after the revocation only the new token allows
(a control worker holding the old token stays out). The payload must finish untouched
and the worker's daemons must be the same processes.
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import shutil
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from nomadwn.autopilot import TOKEN_DIR
from nomadwn.render import build_job
from tests.integration.test_worker_in_pool import (
    RETIREMENT,
    FakeCvmfs,
    Payloads,
    _pids_with_env,
    make_worker,
    running,
    site_for,
)
from tests.peers import DAEMON_IDENTITY, CondorPool

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def idpool() -> Iterator[CondorPool]:
    missing = CondorPool.available()
    if missing is not None:
        pytest.fail(missing)
    with CondorPool(idtokens=True) as started:
        yield started


def _jti(token: str) -> str:
    payload = token.split(".")[1]
    return str(json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))["jti"])


def _write_like_consul_template(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text + "\n", encoding="utf-8")
    tmp.chmod(0o600)
    tmp.rename(path)


def _daemons(marker: bytes) -> dict[int, str]:
    """PID -> process name of one worker's processes."""
    out = {}
    for pid in _pids_with_env(marker):
        try:
            out[pid] = Path(f"/proc/{pid}/comm").read_text().strip()
        except OSError:
            continue
    return out


def test_a_rotated_token_is_used_without_a_restart_and_the_payload_finishes(idpool: CondorPool) -> None:
    cvmfs = FakeCvmfs(idpool).create()
    tokens = idpool.host_path(TOKEN_DIR)
    try:
        site = site_for(
            idpool, lifespan={"retirement": RETIREMENT}, cvmfs=cvmfs, flavour_name="elastic", max_kill_timeout="5m"
        )
        secret = next(
            t for t in build_job(site, "elastic").TaskGroups[0].Tasks[0].Templates if "tokens.d" in t.DestPath
        )
        assert secret.ChangeMode == "noop"  # what Nomad does on a re-render: nothing
        tokens.mkdir(parents=True, exist_ok=True)
        tokens.chmod(0o700)
        old = idpool.create_token()
        _write_like_consul_template(tokens / "pool", old)
        w = make_worker(idpool, site, flavour="elastic", job_id="glasgow-elastic")
        payloads = Payloads(idpool)
        with running(w):
            (head,) = [a for a in w.wait_joined() if a.get("PartitionableSlot")]
            # The collector records how the startd authenticated: with the token, as the pool's daemons.
            assert (head["AuthenticationMethod"], head["AuthenticatedIdentity"]) == ("IDTOKENS", DAEMON_IDENTITY)
            cluster = payloads.submit(w, seconds=45)
            payloads.wait_running(cluster)
            masters = _daemons(w.marker)
            assert set(masters.values()) >= {"condor_master", "condor_startd"}, masters

            new = idpool.create_token()
            _write_like_consul_template(tokens / "pool", new)
            idpool.add_config("90-revoke.conf", f'SEC_TOKEN_REVOCATION_EXPR = jti =?= "{_jti(old)}"')
            # Control: a worker holding only the old token can no longer join, so the revocation is real.
            assert idpool.pool_dir is not None and idpool.pool_dir_in_chroot is not None
            stale = idpool.pool_dir / "stale-tokens"
            stale.mkdir(mode=0o700)
            (stale / "pool").write_text(old + "\n")
            control_site = site_for(
                idpool,
                lifespan={"retirement": RETIREMENT},
                flavour_name="elastic",
                max_kill_timeout="5m",
                extra_config={"SEC_TOKEN_DIRECTORY": str(idpool.pool_dir_in_chroot / "stale-tokens")},
            )
            control = make_worker(idpool, control_site, flavour="elastic", job_id="glasgow-elastic")

            # Make the worker authenticate again: the restarted collector has no session with it
            # and no ad of it, so the worker is back in the pool only if its startd advertises
            # itself anew, which now takes the new token.
            # (The pool's master starts a new collector after its back-off, a few seconds.)
            (collector,) = [
                p
                for p, n in _daemons(f"NOMADWN_POOL_ID={idpool.pool_id}".encode()).items()
                if n.startswith("condor_collect")
            ]
            os.kill(collector, signal.SIGKILL)
            killed_at = time.time()
            deadline = time.monotonic() + 120
            heard = 0.0
            control.start()
            while time.monotonic() < deadline:
                time.sleep(2)
                with contextlib.suppress(AssertionError):  # the collector is down for a few seconds
                    heads = [a for a in w.slot_ads() if a.get("PartitionableSlot")]
                    heard = max([float(a.get("LastHeardFrom", 0)) for a in heads] or [0.0])
                if heard > killed_at:
                    break
            assert heard > killed_at, f"the worker is not back in the pool after the rotation:\n{w.diagnostics()}"
            assert control.slot_ads() == [], "a worker with the revoked token joined: the revocation did not hold"
            control.stop()
            payloads.wait_gone(cluster, timeout=90)
            after = _daemons(w.marker)
            assert {p: n for p, n in after.items() if n in ("condor_master", "condor_startd")} == {
                p: n for p, n in masters.items() if n in ("condor_master", "condor_startd")
            }, "the worker's daemons were restarted"
            assert w.returncode() is None
        fate = payloads.fate(cluster)
        assert fate.completed_untouched, (fate, w.diagnostics())
    finally:
        cvmfs.remove()
        shutil.rmtree(idpool.host_path("/secrets"), ignore_errors=True)
        os.environ.pop("_CONDOR_SEC_TOKEN_DIRECTORY", None)
