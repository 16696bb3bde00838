"""nomadwn: containerised HTCondor worker nodes on Nomad and Consul.

The public entry points: :func:`load_site` reads a site file into a typed
:class:`Site`; :func:`render_site` turns it into Nomad jobs (HCL and API JSON).

They are imported on first use (PEP 562), so that importing a light submodule
(``nomadwn.errors``, the CLI's ``--help``) does not import pydantic and Jinja2.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from nomadwn.errors import ConfigError, FieldProblem, NomadwnError, RenderError
    from nomadwn.model import Flavour, Site
    from nomadwn.render import RenderedJob, build_job, render_site
    from nomadwn.sitefile import load_site, parse_site

__version__ = "0.1.0"

_HOMES = {
    "ConfigError": "nomadwn.errors",
    "FieldProblem": "nomadwn.errors",
    "NomadwnError": "nomadwn.errors",
    "RenderError": "nomadwn.errors",
    "Flavour": "nomadwn.model",
    "Site": "nomadwn.model",
    "RenderedJob": "nomadwn.render",
    "build_job": "nomadwn.render",
    "render_site": "nomadwn.render",
    "load_site": "nomadwn.sitefile",
    "parse_site": "nomadwn.sitefile",
}

__all__ = [
    "ConfigError",
    "FieldProblem",
    "Flavour",
    "NomadwnError",
    "RenderError",
    "RenderedJob",
    "Site",
    "build_job",
    "load_site",
    "parse_site",
    "render_site",
]


def __getattr__(name: str) -> Any:
    home = _HOMES.get(name)
    if home is None:
        raise AttributeError(f"module 'nomadwn' has no attribute {name!r}")
    return getattr(importlib.import_module(home), name)
