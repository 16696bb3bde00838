"""Benchmarks that cannot rot: every ``bench/<name>.py`` runs once at its smallest size.

The convention (``bench/_args.py``, the README's Development table): a bench module has
``main(argv)``, takes ``--smoke`` and prints a table. This test finds every module in
``bench/`` (not those starting with ``_``), so a new bench is smoke-run without being
listed anywhere. It checks that the run finishes and prints something; no timing is
asserted. A bench that needs the real peers says ``NEEDS_PEERS = True`` at module level
and is then an integration test (never skipped in CI).
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import ROOT

BENCH = ROOT / "bench"


def _needs_peers(path: Path) -> bool:
    """``NEEDS_PEERS = True`` at the module's top level (read without importing it)."""
    for node in ast.parse(path.read_text(encoding="utf-8")).body:
        targets: list[ast.expr] = []
        if isinstance(node, ast.AnnAssign):
            targets = [node.target]
        elif isinstance(node, ast.Assign):
            targets = node.targets
        value = getattr(node, "value", None)
        named = any(isinstance(t, ast.Name) and t.id == "NEEDS_PEERS" for t in targets)
        if named and isinstance(value, ast.Constant):
            return value.value is True
    return False


BENCHES = sorted(p for p in BENCH.glob("*.py") if not p.name.startswith("_"))


def test_there_are_benches() -> None:
    assert {"cli_startup", "render_bench", "watch_latency", "autoscale_bench", "observe_bench"} <= {
        p.stem for p in BENCHES
    }


@pytest.mark.parametrize(
    "path",
    [pytest.param(p, marks=[pytest.mark.integration] if _needs_peers(p) else [], id=p.stem) for p in BENCHES],
)
def test_bench_smoke_run_prints_its_table(path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", f"bench.{path.stem}", "--smoke"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    lines = [line for line in done.stdout.splitlines() if line.strip()]
    assert len(lines) >= 2, done.stdout
