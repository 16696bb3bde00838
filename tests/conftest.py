"""Shared fixtures: the example site, raw and validated."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE = ROOT / "examples" / "glasgow.yaml"
_EXAMPLE_DATA = yaml.safe_load(EXAMPLE.read_text(encoding="utf-8"))


@pytest.fixture
def example_data() -> dict[str, Any]:
    """A fresh deep copy of the example site's raw YAML data, to modify in a test."""
    data: dict[str, Any] = copy.deepcopy(_EXAMPLE_DATA)
    return data
