"""``nomadwn logs``: Nomad's framed log stream, decoded whatever the chunking, and the command on the fake Nomad."""

from __future__ import annotations

import base64
import json
import threading
import time
from collections.abc import Iterator

import pytest
from typer.testing import CliRunner

from nomadwn.nomad import LogFrame, LogFrameDecoder, NomadSettings
from nomadwn.nomad_client import NomadClient
from nomadwn.render import build_job
from nomadwn.sitefile import load_site
from tests.conftest import EXAMPLE
from tests.fake_nomad import FakeNomad
from typer_cli import app

runner = CliRunner()


def _frame(data: bytes, offset: int) -> str:
    return json.dumps({"File": "alloc/logs/condor.stdout.0", "Offset": offset, "Data": base64.b64encode(data).decode()})


STREAM = b"".join(
    [
        _frame(b"[startd] line one\n", 18).encode(),
        b"{}",  # a heartbeat
        b"\n",
        _frame("[startd] caf\u00e9 \u2713\n".encode(), 40).encode(),
        json.dumps({"File": "alloc/logs/condor.stdout.0", "FileEvent": "file truncated"}).encode(),
        b"{}{}",
    ]
)


def test_frames_decode_the_same_however_the_stream_is_cut() -> None:
    whole = LogFrameDecoder().feed(STREAM)
    assert [f.data for f in whole] == [b"[startd] line one\n", "[startd] caf\u00e9 \u2713\n".encode(), b""]
    assert whole[2] == LogFrame(data=b"", file="alloc/logs/condor.stdout.0", file_event="file truncated")
    for cut in range(1, len(STREAM)):
        decoder = LogFrameDecoder()
        assert decoder.feed(STREAM[:cut]) + decoder.feed(STREAM[cut:]) == whole, cut
    one_by_one = LogFrameDecoder()
    assert [f for i in range(len(STREAM)) for f in one_by_one.feed(STREAM[i : i + 1])] == whole


def test_a_stream_that_is_not_frames_is_an_error() -> None:
    with pytest.raises(ValueError, match="not a stream of JSON frames"):
        LogFrameDecoder(limit=100).feed(b"<html>" + b"x" * 200)
    with pytest.raises(ValueError, match="not a stream of JSON frames"):
        LogFrameDecoder().feed(b"[1, 2]")


@pytest.fixture
def deployed() -> Iterator[tuple[FakeNomad, list[str]]]:
    with FakeNomad(step_delay=0.01) as fake:
        site = load_site(EXAMPLE)
        NomadClient(NomadSettings(address=fake.address)).register(
            build_job(site, "elastic"), enforce_index=None, preserve_counts=False
        )
        fake.settle()
        ids = [a["ID"] for a in fake.allocations("glasgow-elastic")]
        assert len(ids) == 4
        yield fake, ids


def _env(fake: FakeNomad) -> dict[str, str]:
    return {"NOMAD_ADDR": fake.address, "NOMAD_TOKEN": "", "NOMAD_NAMESPACE": "", "NOMAD_REGION": ""}


def test_logs_prints_the_chosen_allocations_stdout(deployed: tuple[FakeNomad, list[str]]) -> None:
    fake, ids = deployed
    for alloc_id in ids:
        fake.append_log(alloc_id, f"[startd] worker {alloc_id[:8]}\n")
    fake.append_log(ids[2], "[nomadwn] start.sh says\n", stream="stderr")
    chosen = runner.invoke(app, ["logs", str(EXAMPLE), "elastic", "--alloc", ids[2][:6]], env=_env(fake))
    assert chosen.exit_code == 0, chosen.output
    assert chosen.stdout == f"[startd] worker {ids[2][:8]}\n"
    assert f"stdout of allocation {ids[2][:8]}" in chosen.stderr
    stderr = runner.invoke(app, ["logs", str(EXAMPLE), "elastic", "--alloc", ids[2], "--stderr"], env=_env(fake))
    assert stderr.stdout == "[nomadwn] start.sh says\n"
    # Without --alloc: one running allocation, and a note that there are others.
    some = runner.invoke(app, ["logs", str(EXAMPLE), "elastic"], env=_env(fake))
    assert some.exit_code == 0, some.output
    assert some.stdout.startswith("[startd] worker ")
    assert "3 other allocation(s) of glasgow-elastic; choose one with --alloc" in some.stderr
    requests = [r for r in fake.requests if r.path.startswith("/v1/client/fs/logs/")]
    assert requests[0].query["task"] == "condor" and requests[0].query["type"] == "stdout"


def test_logs_follow_streams_until_the_allocation_ends(deployed: tuple[FakeNomad, list[str]]) -> None:
    fake, ids = deployed
    fake.append_log(ids[0], "[master] first\n")

    def later() -> None:
        time.sleep(0.5)
        fake.append_log(ids[0], "[startd] then this\n")
        time.sleep(1.5)  # past a heartbeat
        fake.append_log(ids[0], "[startd] and the last\n")
        time.sleep(0.3)
        fake.complete_alloc(ids[0])

    writer = threading.Thread(target=later)
    writer.start()
    result = runner.invoke(app, ["logs", str(EXAMPLE), "elastic", "--alloc", ids[0], "-f"], env=_env(fake))
    writer.join()
    assert result.exit_code == 0, result.output
    assert result.stdout == "[master] first\n[startd] then this\n[startd] and the last\n"
    (request,) = [r for r in fake.requests if r.path == f"/v1/client/fs/logs/{ids[0]}"]
    assert request.query["follow"] == "true"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--alloc", "zzzz"], "--alloc: no allocation of glasgow-elastic start with 'zzzz'"),
        (["--alloc", ""], None),
    ],
    ids=["unknown-prefix", "empty-prefix-is-default"],
)
def test_logs_alloc_choice(deployed: tuple[FakeNomad, list[str]], args: list[str], message: str | None) -> None:
    fake, _ = deployed
    result = runner.invoke(app, ["logs", str(EXAMPLE), "elastic", *args], env=_env(fake))
    if message is None:
        assert result.exit_code == 0, result.output
    else:
        assert result.exit_code == 1
        assert message in result.stderr


def test_logs_of_an_unregistered_flavour_and_unreachable_nomad() -> None:
    with FakeNomad(step_delay=0.01) as fake:
        result = runner.invoke(app, ["logs", str(EXAMPLE), "cntwn"], env=_env(fake))
    assert result.exit_code == 1
    assert "glasgow-cntwn has no allocation to read logs from" in result.stderr
    down = runner.invoke(app, ["logs", str(EXAMPLE), "cntwn"], env={**_env(fake), "NOMAD_ADDR": "http://127.0.0.1:1"})
    assert down.exit_code == 1 and "cannot connect" in down.stderr and down.exception is not None
    assert isinstance(down.exception, SystemExit)


def test_a_dispatched_flavours_workers_are_its_childrens_allocations() -> None:
    """burst is parameterized: logs and status find its workers in the dispatched children."""
    with FakeNomad(step_delay=0.01) as fake:
        site = load_site(EXAMPLE)
        nomad = NomadClient(NomadSettings(address=fake.address))
        nomad.register(build_job(site, "burst"), enforce_index=None, preserve_counts=False)
        child = nomad.dispatch("glasgow-burst", meta={"nomadwn_reason": "test"}, idempotency_token="t1")
        fake.settle()
        (alloc,) = fake.allocations(child.dispatched_job_id)
        fake.append_log(alloc["ID"], "[startd] an ephemeral worker\n")
        result = runner.invoke(app, ["logs", str(EXAMPLE), "burst"], env=_env(fake))
        assert result.exit_code == 0, result.output
        assert result.stdout == "[startd] an ephemeral worker\n"
        status = runner.invoke(
            app, ["status", str(EXAMPLE), "burst", "--no-consul", "--no-condor", "--json"], env=_env(fake)
        )
        assert status.exit_code == 0, status.output
        (row,) = json.loads(status.stdout)["flavours"]
        assert (row["placed"], row["running"]) == (1, 1)
        assert [w["alloc_id"] for w in row["workers"]] == [alloc["ID"]]
