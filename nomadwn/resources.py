"""Where the files that ship with nomadwn live: Jinja2 templates and the example site.

A source checkout keeps them at the top level (``templates/``, ``examples/``), where
reviewers expect them; a wheel carries the same files inside the package (see
``[tool.hatch.build.targets.wheel.force-include]`` in pyproject.toml).
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path

EXAMPLE_SITE = "glasgow.yaml"


def shipped_dir(name: str) -> Path:
    """The directory ``name`` (``templates`` or ``examples``), installed or in a checkout."""
    packaged = Path(str(resources.files("nomadwn"))) / name
    if packaged.is_dir():
        return packaged
    return Path(__file__).resolve().parent.parent / name


def example_site_text() -> str:
    """The commented example site file that ``nomadwn init`` writes."""
    return (shipped_dir("examples") / EXAMPLE_SITE).read_text(encoding="utf-8")
