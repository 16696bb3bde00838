"""Shared fixtures: the example site, raw and validated; the hypothesis profiles.

Hypothesis runs the ``ci`` profile when ``CI`` is set (as ``.ci/run`` has it):
derandomised, so a CI run tries the same examples every time and a failure is
reproducible; locally the ``dev`` profile draws new examples each run. Either can be
chosen with ``HYPOTHESIS_PROFILE``. Each test's ``max_examples`` is its fixed budget.
"""

from __future__ import annotations

import copy
import os
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import settings

settings.register_profile("ci", derandomize=True, deadline=None, print_blob=True)
settings.register_profile("dev", deadline=None)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE") or ("ci" if os.environ.get("CI") else "dev"))

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE = ROOT / "examples" / "glasgow.yaml"
_EXAMPLE_DATA = yaml.safe_load(EXAMPLE.read_text(encoding="utf-8"))


@pytest.fixture
def example_data() -> dict[str, Any]:
    """A fresh deep copy of the example site's raw YAML data, to modify in a test."""
    data: dict[str, Any] = copy.deepcopy(_EXAMPLE_DATA)
    return data
