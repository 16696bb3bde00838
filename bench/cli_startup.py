"""Benchmark: cold start of the ``nomadwn`` command (a new process each run).

Run: ``python -m bench.cli_startup [--runs N]`` (prints a table; nothing is asserted).

Each row runs a command N times as a fresh subprocess (the installed console script,
as a user runs it) and reports the median and the fastest wall time, and the median
CPU time (user + system) of the process, which other load on the machine disturbs
less than the wall time. Two rows bound what the CLI can reach: the bare interpreter,
and an interpreter that only imports typer (which every command needs to parse its
arguments).
"""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

from bench._args import parser

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE = ROOT / "examples" / "glasgow.yaml"
RUNS = 21
SMOKE_RUNS = 1


def _nomadwn() -> list[str]:
    script = Path(sys.executable).with_name("nomadwn")
    return [str(script)] if script.exists() else [sys.executable, "-m", "nomadwn"]


def commands() -> list[tuple[str, list[str]]]:
    """What is timed: label and argv."""
    cli = _nomadwn()
    return [
        ("python -c pass", [sys.executable, "-c", "pass"]),
        ("python -c 'import typer'", [sys.executable, "-c", "import typer"]),
        ("nomadwn --help", [*cli, "--help"]),
        ("nomadwn validate glasgow.yaml", [*cli, "validate", str(EXAMPLE)]),
        ("nomadwn render glasgow.yaml --check", [*cli, "render", str(EXAMPLE), "--check"]),
    ]


def _run(argv: list[str]) -> tuple[float, float]:
    """Wall and CPU seconds of one run of ``argv``."""
    start = time.perf_counter()
    child = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=ROOT)
    _, status, usage = os.wait4(child.pid, 0)
    wall = time.perf_counter() - start
    child.returncode = os.waitstatus_to_exitcode(status)
    if child.returncode != 0:
        raise SystemExit(f"{' '.join(argv)} exited {child.returncode}")
    return wall, usage.ru_utime + usage.ru_stime


def main(argv: list[str] | None = None) -> None:
    """Print one row per command."""
    p = parser(__doc__)
    p.add_argument("--runs", type=int, default=RUNS, help=f"cold runs per command (default {RUNS})")
    args = p.parse_args(argv)
    runs = SMOKE_RUNS if args.smoke else max(1, args.runs)
    print(f"cold start, {runs} runs each ({sys.executable})")
    print(f"{'command':<36} | {'median s':>8} | {'fastest s':>9} | {'CPU s':>6}")
    print(f"{'-' * 36}-+-{'-' * 8}-+-{'-' * 9}-+-{'-' * 6}")
    for label, command in commands():
        _run(command)  # warm the page cache and the bytecode caches once
        samples = [_run(command) for _ in range(runs)]
        walls = [wall for wall, _ in samples]
        cpu = statistics.median(cpu for _, cpu in samples)
        print(f"{label:<36} | {statistics.median(walls):>8.3f} | {min(walls):>9.3f} | {cpu:>6.3f}")


if __name__ == "__main__":
    main()
