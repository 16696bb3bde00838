"""A plain (non-editable) `pip install .` into a fresh venv works and finds its templates."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import ROOT


@pytest.mark.integration
def test_pip_install_then_render_matches_committed_jobspecs(tmp_path: Path) -> None:
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    pip = subprocess.run(
        [str(venv / "bin" / "python"), "-m", "pip", "install", "-q", str(ROOT)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert pip.returncode == 0, pip.stderr[-2000:]
    work = tmp_path / "elsewhere"  # not the checkout: templates must come from the installed package
    work.mkdir()
    site = work / "site.yaml"
    nomadwn = str(venv / "bin" / "nomadwn")
    assert subprocess.run([nomadwn, "init", str(site)], cwd=work, check=False).returncode == 0
    done = subprocess.run(
        [nomadwn, "render", str(site), "--out", "jobspecs"], cwd=work, capture_output=True, text=True, check=False
    )
    assert done.returncode == 0, done.stderr
    committed_files = sorted(p for p in (ROOT / "jobspecs" / "glasgow").rglob("*") if p.is_file())
    for committed in committed_files:  # acl/ holds the autoscaler's ACL policies
        rendered = work / committed.relative_to(ROOT)
        assert rendered.read_text() == committed.read_text(), committed.relative_to(ROOT)
    check = subprocess.run([nomadwn, "render", str(site), "--check"], cwd=work, capture_output=True, check=False)
    assert check.returncode == 0
