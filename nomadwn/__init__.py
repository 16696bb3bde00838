"""nomadwn: containerised HTCondor worker nodes on Nomad and Consul.

The public entry points: :func:`load_site` reads a site file into a typed
:class:`Site`; :func:`render_site` turns it into Nomad jobs (HCL and API JSON).
"""

from nomadwn.errors import ConfigError, FieldProblem, NomadwnError, RenderError
from nomadwn.model import Flavour, Site
from nomadwn.render import RenderedJob, build_job, render_site
from nomadwn.sitefile import load_site, parse_site

__version__ = "0.1.0"

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
