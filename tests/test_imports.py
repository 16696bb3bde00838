"""What each module and each CLI command imports (STYLE.md: data flows one way; the CLI starts fast).

Protocols, value types, the watcher, deploy, status, the fakes and the autoscaler's
loop import no client library: only ``nomad_client``, ``consul_health``,
``consul_lock`` and ``condor`` (inside a function) do. ``nomadwn --help`` imports
neither the site model nor the templates; ``validate`` and ``render`` only what they
use (see the docstring of ``typer_cli``).
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from tests.conftest import EXAMPLE, ROOT

CLIENTS = ("nomad", "consul", "htcondor", "htcondor2", "classad", "classad2", "requests", "urllib3", "httpx")
CLIENT_FREE = (
    "nomadwn.model",
    "nomadwn.render",
    "nomadwn.sitefile",
    "nomadwn.autopilot",
    "nomadwn.autoscale.strategy",
    "nomadwn.nomad",
    "nomadwn.consul",
    "nomadwn.consul_settings",
    "nomadwn.condor",
    "nomadwn.watch",
    "nomadwn.deploy",
    "nomadwn.status",
    "nomadwn.fakes",
    "nomadwn.autoscale.loop",
    "nomadwn.pool",
    "nomadwn.metrics",
)


def _loaded(code: str, *argv: str) -> set[str]:
    """Top-level names of the modules that ``code`` leaves imported (printed on stderr at exit)."""
    report = "import sys, json; print(json.dumps(sorted({m.split('.')[0] for m in sys.modules})), file=sys.stderr)"
    done = subprocess.run(
        [sys.executable, "-c", f"{code}\n{report}", *argv], capture_output=True, text=True, check=True, cwd=ROOT
    )
    loaded: set[str] = set(json.loads(done.stderr.strip().splitlines()[-1]))
    return loaded


def test_client_free_modules_import_no_client_library() -> None:
    loaded = _loaded("import " + ", ".join(CLIENT_FREE))
    assert loaded.isdisjoint(CLIENTS), loaded & set(CLIENTS)


CLI = (
    "import sys\nsys.argv = ['nomadwn', *sys.argv[1:]]\nimport typer_cli\n"
    "try:\n    typer_cli.main()\nexcept SystemExit:\n    pass"
)
HEAVY = ("rich", "prometheus_client", *CLIENTS)


@pytest.mark.parametrize(
    ("argv", "forbidden"),
    [
        (["--help"], ("pydantic", "jinja2", "yaml", *HEAVY)),
        (["validate", str(EXAMPLE)], ("jinja2", *HEAVY)),
        (["render", str(EXAMPLE), "--check"], HEAVY),
    ],
    ids=["help", "validate", "render"],
)
def test_cli_commands_import_only_what_they_use(argv: list[str], forbidden: tuple[str, ...]) -> None:
    loaded = _loaded(CLI, *argv)
    assert "typer_cli" in loaded
    assert loaded.isdisjoint(forbidden), sorted(loaded & set(forbidden))
