"""Benchmark: cold start of the ``nomadwn`` command (a new process each run).

Run: ``python -m bench.cli_startup [--runs N]`` (prints a table; nothing is asserted).

Each row runs a command N times as a fresh subprocess (the installed console script,
as a user runs it) and reports the median and the fastest wall time. Two rows bound
what the CLI can reach: the bare interpreter, and an interpreter that only imports
typer (which every command needs to parse its arguments).
"""

from __future__ import annotations

import statistics
import subprocess
import sys
import time
from pathlib import Path

from bench._args import parser

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE = ROOT / "examples" / "glasgow.yaml"
RUNS = 21
SMOKE_RUNS = 3


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


def _wall(argv: list[str]) -> float:
    start = time.perf_counter()
    subprocess.run(argv, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=ROOT)
    return time.perf_counter() - start


def main(argv: list[str] | None = None) -> None:
    """Print one row per command."""
    p = parser(__doc__)
    p.add_argument("--runs", type=int, default=RUNS, help=f"cold runs per command (default {RUNS})")
    args = p.parse_args(argv)
    runs = SMOKE_RUNS if args.smoke else max(1, args.runs)
    print(f"cold start, {runs} runs each ({sys.executable})")
    print(f"{'command':<36} | {'median s':>8} | {'fastest s':>9}")
    print(f"{'-' * 36}-+-{'-' * 8}-+-{'-' * 9}")
    for label, command in commands():
        _wall(command)  # warm the page cache and the bytecode caches once
        samples = [_wall(command) for _ in range(runs)]
        print(f"{label:<36} | {statistics.median(samples):>8.3f} | {min(samples):>9.3f}")


if __name__ == "__main__":
    main()
