"""The ``nomadwn`` command line (Typer).

Exit codes, the same for every command:

====  =====================================================================
0     success (for ``render --check``: the committed jobspecs are fresh)
1     the site file is invalid, a job could not be rendered or written,
      or ``render --check`` found stale jobspecs
2     wrong usage (unknown option, missing argument)
130   interrupted (Ctrl-C)
====  =====================================================================
"""

from __future__ import annotations

import functools
import json
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any, ParamSpec, TypeVar

import typer
from rich.console import Console

from nomadwn import __version__
from nomadwn.errors import ConfigError, NomadwnError
from nomadwn.render import Format, jobspec_files, privileges, stale_jobspecs, write_jobspecs
from nomadwn.resources import example_site_text
from nomadwn.sitefile import load_site

app = typer.Typer(
    name="nomadwn",
    help="Containerised HTCondor worker nodes on Nomad and Consul: validate a site file and render its Nomad jobs.",
    no_args_is_help=True,
    add_completion=False,
    rich_markup_mode=None,
)
out = Console(highlight=False, soft_wrap=True)
err = Console(stderr=True, highlight=False, soft_wrap=True)

P = ParamSpec("P")
R = TypeVar("R")

SiteArg = Annotated[Path, typer.Argument(help="The site file (YAML).", show_default=False)]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print one JSON document on stdout instead of text.")]


def say(text: str, *, style: str | None = None, stderr: bool = False) -> None:
    """Print plain text: never read as rich markup, so site-file values cannot inject any."""
    (err if stderr else out).print(text, markup=False, style=style)


def handled(command: Callable[P, R]) -> Callable[P, R]:
    """The CLI's one error handler: a nomadwn error prints its message and exits 1; Ctrl-C exits 130."""

    @functools.wraps(command)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return command(*args, **kwargs)
        except NomadwnError as exc:
            say(f"error: {exc}", style="red", stderr=True)
            raise typer.Exit(1) from None
        except KeyboardInterrupt:
            say("interrupted", stderr=True)
            raise typer.Exit(130) from None

    return wrapper


def _emit_json(document: Any) -> None:
    typer.echo(json.dumps(document, indent=2, sort_keys=True))


def _version(value: bool) -> None:
    if value:
        typer.echo(f"nomadwn {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: Annotated[
        bool, typer.Option("--version", callback=_version, is_eager=True, help="Print the version and exit.")
    ] = False,
) -> None:
    """Containerised HTCondor worker nodes on Nomad and Consul."""


@app.command()
@handled
def init(
    path: Annotated[Path, typer.Argument(help="Where to write the example site file.")] = Path("site.yaml"),
    force: Annotated[bool, typer.Option("--force", help="Overwrite the file if it exists.")] = False,
) -> None:
    """Write a commented example site file to start from."""
    if path.exists() and not force:
        say(f"error: {path} exists; choose another path or pass --force to overwrite it", style="red", stderr=True)
        raise typer.Exit(1)
    try:
        path.write_text(example_site_text(), encoding="utf-8")
    except OSError as exc:
        say(f"error: cannot write {path}: {exc.strerror}", style="red", stderr=True)
        raise typer.Exit(1) from None
    say(f"wrote {path}: edit it, then run `nomadwn validate {path}`")


@app.command()
@handled
def validate(site_file: SiteArg, as_json: JsonOpt = False) -> None:
    """Check a site file; name every bad field and how to fix it (exit 1 if any)."""
    try:
        site = load_site(site_file)
    except ConfigError as exc:
        if not as_json:
            raise
        _emit_json(
            {
                "ok": False,
                "file": str(site_file),
                "problems": [{"path": p.path, "message": p.message} for p in exc.problems],
            }
        )
        raise typer.Exit(1) from None
    summary = [
        {
            "flavour": name,
            "job_id": site.job_id(name),
            "kind": f.kind,
            "image": f.image.reference,
            "cvmfs": f.cvmfs.mode,
            "count": f.count if f.kind != "system" else None,
            "privileges": privileges(f),
        }
        for name, f in site.flavours.items()
    ]
    if as_json:
        _emit_json({"ok": True, "file": str(site_file), "site": site.name, "flavours": summary})
        return
    say(f"{site_file}: valid site {site.name!r} with {len(summary)} flavour(s)", style="green")
    for name, f in site.flavours.items():
        count = "one per node" if f.kind == "system" else f"count {1 if f.count is None else f.count}"
        say(f"  {name}: {f.kind} job {site.job_id(name)} ({count}), image {f.image.reference}, CVMFS {f.cvmfs.mode}")
        for line in privileges(f):
            say(f"    PRIVILEGE: {line}", style="yellow")


@app.command()
@handled
def render(
    site_file: SiteArg,
    out_dir: Annotated[Path, typer.Option("--out", help="Directory for <site>/<flavour>.nomad.hcl and .json.")] = Path(
        "jobspecs"
    ),
    check: Annotated[
        bool, typer.Option("--check", help="Write nothing; show a diff and exit 1 if the files on disk are stale.")
    ] = False,
    fmt: Annotated[Format, typer.Option("--format", help="Which files to render.")] = "both",
    as_json: JsonOpt = False,
) -> None:
    """Render a site's Nomad jobs (HCL for review, JSON for the HTTP API)."""
    site = load_site(site_file)
    files = jobspec_files(site, out_dir, fmt)
    if check:
        stale = stale_jobspecs(files)
        if as_json:
            _emit_json({"fresh": not stale, "stale": sorted(str(p) for p in stale)})
        else:
            for path, diff in stale.items():
                typer.echo(diff, nl=False)
                say(f"stale: {path}", style="red", stderr=True)
            if stale:
                say(
                    f"{len(stale)} jobspec file(s) are stale: run `nomadwn render {site_file}` and commit them",
                    stderr=True,
                )
            else:
                say(f"{len(files)} jobspec file(s) are fresh", style="green")
        if stale:
            raise typer.Exit(1)
        return
    changed = write_jobspecs(files)
    if as_json:
        _emit_json({"written": [str(p) for p in changed], "unchanged": [str(p) for p in files if p not in changed]})
        return
    for path in files:
        say(f"{'wrote    ' if path in changed else 'unchanged'} {path}")


def main() -> None:
    """Entry point of the ``nomadwn`` console script."""
    app()


if __name__ == "__main__":
    main()
