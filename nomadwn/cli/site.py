"""Site-file commands: ``init``, ``validate`` and ``render`` (no Nomad, Consul or HTCondor involved).

They import the site model and (``render``) the templates inside their bodies, so that
``nomadwn --help`` pays for neither.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from nomadwn.cli._common import JsonOpt, SiteArg, emit_json, handled, say
from nomadwn.errors import ConfigError
from nomadwn.formats import Format


@handled
def init(
    path: Annotated[Path, typer.Argument(help="Where to write the example site file.")] = Path("site.yaml"),
    force: Annotated[bool, typer.Option("--force", help="Overwrite the file if it exists.")] = False,
) -> None:
    """Write a commented example site file to start from."""
    from nomadwn.resources import example_site_text

    if path.exists() and not force:
        say(f"error: {path} exists; choose another path or pass --force to overwrite it", style="red", stderr=True)
        raise typer.Exit(1)
    try:
        path.write_text(example_site_text(), encoding="utf-8")
    except OSError as exc:
        say(f"error: cannot write {path}: {exc.strerror}", style="red", stderr=True)
        raise typer.Exit(1) from None
    say(f"wrote {path}: edit it, then run `nomadwn validate {path}`")


@handled
def validate(site_file: SiteArg, as_json: JsonOpt = False) -> None:
    """Check a site file; name every bad field and how to fix it (exit 1 if any)."""
    from nomadwn.model import dispatched, privileges, shutdown_plan, site_notes, site_warnings
    from nomadwn.sitefile import load_site
    from nomadwn.units import duration_text

    try:
        site = load_site(site_file)
    except ConfigError as exc:
        if not as_json:
            raise
        emit_json(
            {
                "ok": False,
                "file": str(site_file),
                "problems": [{"path": p.path, "message": p.message} for p in exc.problems],
            }
        )
        raise typer.Exit(1) from None
    warnings = site_warnings(site)
    summary = [
        {
            "flavour": name,
            "job_id": site.job_id(name),
            "kind": f.kind,
            "image": f.image.reference,
            "cvmfs": f.cvmfs.mode,
            "count": f.count if f.kind != "system" else None,
            "privileges": privileges(f),
            "retirement": duration_text(shutdown_plan(site, name).retirement),
            "kill_timeout": duration_text(shutdown_plan(site, name).kill_timeout),
        }
        for name, f in site.flavours.items()
    ]
    notes = site_notes(site)
    if as_json:
        emit_json(
            {
                "ok": True,
                "file": str(site_file),
                "site": site.name,
                "nomad_version": site.nomad.version,
                "flavours": summary,
                "notes": [{"path": n.path, "message": n.message} for n in notes],
                "warnings": [{"path": w.path, "message": w.message} for w in warnings],
            }
        )
        return
    say(
        f"{site_file}: valid site {site.name!r} with {len(summary)} flavour(s), for Nomad {site.nomad.version}",
        style="green",
    )
    for name, f in site.flavours.items():
        count = "one per node" if f.kind == "system" else f"count {1 if f.count is None else f.count}"
        if dispatched(f):
            count = "parameterized, dispatched by the autoscaler"
        say(f"  {name}: {f.kind} job {site.job_id(name)} ({count}), image {f.image.reference}, CVMFS {f.cvmfs.mode}")
        plan = shutdown_plan(site, name)
        say(
            f"    stop: no new payloads, running ones retire up to {duration_text(plan.retirement)}; "
            f"Nomad kill_timeout {duration_text(plan.kill_timeout)}"
        )
        for line in privileges(f):
            say(f"    PRIVILEGE: {line}", style="yellow")
    for note in notes:
        say(f"  note: {note.path}: {note.message}", style="yellow")
    for warning in warnings:
        say(f"warning: {warning.path}: {warning.message}", style="yellow", stderr=True)


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
    from nomadwn.render import jobspec_files, stale_jobspecs, write_jobspecs
    from nomadwn.sitefile import load_site

    site = load_site(site_file)
    files = jobspec_files(site, out_dir, fmt)
    if check:
        stale = stale_jobspecs(files)
        if as_json:
            emit_json({"fresh": not stale, "stale": sorted(str(p) for p in stale)})
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
        emit_json({"written": [str(p) for p in changed], "unchanged": [str(p) for p in files if p not in changed]})
        return
    for path in files:
        say(f"{'wrote    ' if path in changed else 'unchanged'} {path}")
