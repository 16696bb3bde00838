"""The HTCondor history reader on what a real schedd's ``condor_history -af`` prints."""

from __future__ import annotations

import textwrap
import time
from pathlib import Path

import pytest

from nomadwn.simulate.trace import read_trace
from tests.peers import CondorPool

ATTRS = ["QDate", "JobStartDate", "RemoteWallClockTime", "RequestCpus", "RequestMemory"]
JOBS = 3


def _history(pool: CondorPool, *fmt: str) -> str:
    result = pool.run(["condor_history", *fmt, *ATTRS], timeout=30)
    assert result.returncode == 0, result
    return str(result.stdout)


@pytest.mark.integration
def test_condor_history_af_output_reads_as_a_trace(pool: CondorPool, tmp_path: Path) -> None:
    assert pool.pool_dir is not None and pool.pool_dir_in_chroot is not None
    (pool.pool_dir / "short.sub").write_text(
        textwrap.dedent(
            f"""\
            universe = vanilla
            executable = /bin/sleep
            arguments = 2
            request_cpus = 1
            request_memory = 64
            should_transfer_files = NO
            initialdir = {pool.pool_dir_in_chroot}
            queue {JOBS}
            """
        ),
        encoding="utf-8",
    )
    (pool.pool_dir / "short.sub").chmod(0o644)
    assert pool.run(["condor_submit", str(pool.pool_dir_in_chroot / "short.sub")]).returncode == 0
    deadline = time.monotonic() + 120
    while len(_history(pool, "-af").splitlines()) < JOBS:
        assert time.monotonic() < deadline, pool.log_tail("SchedLog")
        time.sleep(2)

    for name, fmt in (("history.txt", "-af"), ("history.csv", "-af:,")):
        path = tmp_path / name
        path.write_text(_history(pool, fmt), encoding="utf-8")
        trace = read_trace(path)
        assert (len(trace), trace.skipped) == (JOBS, 0), path.read_text()
        assert list(trace.cpus) == [1] * JOBS
        assert list(trace.memory_mb) == [64] * JOBS
        assert all(2 <= run < 60 for run in trace.run), list(trace.run)
        assert trace.start > 1.7e9  # QDate is an epoch
