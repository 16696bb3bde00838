"""The rendered log forwarder (``forward-logs.sh``), run with the host's POSIX sh and coreutils.

``condor_config_val`` is a stub that names three log files in a temporary directory, so
the script's own logic is what runs: prefixes, partial lines, rotation, the per-minute
bound and its report, and ending with its parent. The real daemons' logs reach a real
worker's stdout in tests/integration/test_worker_in_pool.py.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from nomadwn.autopilot import LOG_FORWARDER, log_forwarder, start_script
from nomadwn.model import LOG_LINE_BYTES, Flavour
from nomadwn.sitefile import load_site
from tests.conftest import EXAMPLE

SH = shutil.which("dash") or shutil.which("sh") or "/bin/sh"


def _flavour(**logs: object) -> Flavour:
    site = load_site(EXAMPLE)
    f = site.flavours["elastic"]
    return f.model_copy(update={"logs": f.logs.model_copy(update=logs)})


@dataclass
class Forwarder:
    """The forwarder running against a log directory, with a parent process it follows."""

    logs: Path
    out: Path
    parent: subprocess.Popen[bytes]
    proc: subprocess.Popen[bytes]

    def lines(self) -> list[str]:
        return self.out.read_text(errors="replace").splitlines()

    def wait_for(self, predicate: object, timeout: float = 15) -> list[str]:
        assert callable(predicate)
        deadline = time.monotonic() + timeout
        while not predicate(self.lines()) and time.monotonic() < deadline:
            time.sleep(0.1)
        return self.lines()

    def end_parent(self) -> int:
        """End start.sh's stand-in; the forwarder makes a last pass and exits by itself."""
        self.parent.kill()
        self.parent.wait()
        return self.proc.wait(timeout=10)


@pytest.fixture
def run_forwarder(tmp_path: Path) -> Iterator[object]:
    procs: list[subprocess.Popen[bytes]] = []

    def start(flavour: Flavour) -> Forwarder:
        logs = tmp_path / "log"
        logs.mkdir()
        bin_dir = tmp_path / "bin"
        bin_dir.mkdir()
        stub = bin_dir / "condor_config_val"
        stub.write_text(
            "#!/bin/sh\n"
            'for k in "$@"; do case $k in\n'
            f"  MASTER_LOG) echo {logs}/MasterLog ;; STARTD_LOG) echo {logs}/StartLog ;;\n"
            f"  STARTER_LOG) echo {logs}/StarterLog ;; *) exit 1 ;;\n"
            "esac; done\n",
            encoding="utf-8",
        )
        stub.chmod(0o755)
        script = tmp_path / LOG_FORWARDER
        script.write_text(log_forwarder(flavour), encoding="utf-8")
        out = tmp_path / "stdout"
        parent = subprocess.Popen(["sleep", "120"])
        env = {**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}", "TMPDIR": str(tmp_path)}
        with out.open("wb") as sink:
            proc = subprocess.Popen([SH, str(script), str(parent.pid)], stdout=sink, stderr=subprocess.STDOUT, env=env)
        procs.extend([parent, proc])
        return Forwarder(logs=logs, out=out, parent=parent, proc=proc)

    yield start
    for p in procs:
        if p.poll() is None:
            p.kill()
            p.wait()


def _write(path: Path, text: str) -> None:
    """Write a whole file at once (a new inode), so the forwarder never sees it half written.

    The file is staged outside the log directory: a temporary name next to it would be
    a log file too (``StarterLog.*``).
    """
    staging = path.parent.parent / "staging"
    staging.mkdir(exist_ok=True)
    tmp = staging / path.name
    tmp.write_text(text, encoding="utf-8")
    tmp.rename(path)


def test_start_script_runs_the_forwarder_from_its_own_directory() -> None:
    assert f'sh "${{0%/*}}/{LOG_FORWARDER}" "$$" &' in start_script(_flavour())
    assert LOG_FORWARDER not in start_script(_flavour(forward=[]))


def test_lines_carry_their_daemon_partial_lines_wait_rotation_restarts(run_forwarder: object, tmp_path: Path) -> None:
    assert callable(run_forwarder)
    fw: Forwarder = run_forwarder(_flavour())
    _write(fw.logs / "MasterLog", "m1\n")
    _write(fw.logs / "StartLog", "s1\ns2 no end yet")
    _write(fw.logs / "StarterLog.slot1_1", "t1\n")
    lines = fw.wait_for(lambda ls: "[starter.slot1_1] t1" in ls)
    assert "[startd] s2 no end yet" not in lines  # an unfinished line waits for its end
    with (fw.logs / "StartLog").open("a") as f:
        f.write(" - now ended\n")
    fw.wait_for(lambda ls: "[startd] s2 no end yet - now ended" in ls)
    # HTCondor's rotation: StartLog -> StartLog.old, a new StartLog from its first line.
    (fw.logs / "StartLog").rename(fw.logs / "StartLog.old")
    _write(fw.logs / "StartLog", "after rotation\n")
    _write(fw.logs / "StarterLog.slot1_1.old", "never forwarded\n")
    fw.wait_for(lambda ls: "[startd] after rotation" in ls)
    assert fw.end_parent() == 0
    assert fw.lines() == [
        "[master] m1",
        "[startd] s1",
        "[starter.slot1_1] t1",
        "[startd] s2 no end yet - now ended",
        "[startd] after rotation",
    ]
    assert not list(tmp_path.glob("nomadwn-logs.*")), "the forwarder leaves its state behind"


def test_a_chatty_starter_is_bounded_and_counted(run_forwarder: object) -> None:
    assert callable(run_forwarder)
    fw: Forwarder = run_forwarder(_flavour(forward_per_minute=40))
    long_line = "x" * (LOG_LINE_BYTES * 3)
    _write(fw.logs / "StarterLog.slot1_1", "".join(f"starter {i} {long_line}\n" for i in range(5000)))
    fw.wait_for(lambda ls: len(ls) >= 30)
    _write(fw.logs / "StartLog", "startd still heard\n")
    fw.wait_for(lambda ls: "[startd] startd still heard" in ls)
    assert fw.end_parent() == 0
    lines = fw.lines()
    starter = [line for line in lines if line.startswith("[starter.slot1_1] ")]
    # Three quarters of the minute's budget for the starters; the rest stays for master and startd.
    assert len(starter) == 30
    assert all(len(line.encode()) == len("[starter.slot1_1] ") + LOG_LINE_BYTES for line in starter)
    assert "[startd] startd still heard" in lines
    assert lines[-1].startswith("[nomadwn] 4970 HTCondor log lines not forwarded (limit 40 a minute)"), lines[-1]
    assert len(lines) == 32


def test_no_htcondor_config_turns_forwarding_off_without_failing(tmp_path: Path) -> None:
    script = tmp_path / LOG_FORWARDER
    script.write_text(log_forwarder(_flavour()), encoding="utf-8")
    result = subprocess.run(
        [SH, str(script), "1"], capture_output=True, text=True, env={"PATH": "/usr/bin:/bin"}, timeout=10, check=False
    )
    assert result.returncode == 0
    assert "log forwarding off" in result.stdout


def test_a_log_file_that_vanishes_mid_pass_is_skipped_quietly(run_forwarder: object) -> None:
    """HTCondor renames logs away at any moment: no shell error may reach the task's output."""
    assert callable(run_forwarder)
    fw: Forwarder = run_forwarder(_flavour())
    for i in range(30):
        _write(fw.logs / f"StarterLog.slot1_{i}", f"t{i}\n")
        (fw.logs / f"StarterLog.slot1_{i}").unlink()
        time.sleep(0.05)
    _write(fw.logs / "StartLog", "still here\n")
    fw.wait_for(lambda ls: "[startd] still here" in ls)
    assert fw.end_parent() == 0
    assert [line for line in fw.lines() if not line.startswith("[")] == []
