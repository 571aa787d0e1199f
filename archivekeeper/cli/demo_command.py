"""``demo``: the offline demo on the embedded defaults — generate, import, export, verify."""

from __future__ import annotations

from typing import Annotated

import typer

from ..importer import Importer
from ..models import Selection
from ..package import ExportOptions, run_export
from ..progress import progress_bar
from ..verify import verify_export
from . import app, emit_json, handle_errors, opened
from .catalog_commands import render_stats, stats_totals

DEMO_EXPORT = "demo-corpus"


@app.command()
@handle_errors
def demo(
    ctx: typer.Context,
    scale: Annotated[int, typer.Option(help="Multiply the size of the generated sample archive.")] = 1,
    as_json: Annotated[bool, typer.Option("--json", help="Print the results as JSON.")] = False,
) -> None:
    """Offline demo: generate a sample archive (2019–2024), import it, print captures per year, then export
    the verified pre-cutoff captures (WARC + JSONL, BagIt) and verify the export."""
    from ..demo import generate_sample_archive

    with opened(ctx, write=True) as (workspace, catalog):
        sample_dir = workspace.root / "demo-input"
        paths = generate_sample_archive(sample_dir, scale=scale)
        with progress_bar("import", enabled=None if not as_json else False) as report:
            summary = Importer(workspace, catalog, progress=report).run([str(p) for p in paths])
        rows = catalog.stats()
        destination = workspace.root / "exports" / DEMO_EXPORT
        exported = None
        if not (destination / "manifest.json").exists():
            with progress_bar("export", enabled=None if not as_json else False) as report:
                exported = run_export(workspace, catalog, DEMO_EXPORT, str(destination), Selection(),
                                      ExportOptions(), progress=report)
    verified = verify_export(destination)
    cutoff = workspace.settings.cutoff_iso
    totals = stats_totals(rows)
    if as_json:
        emit_json({"import": summary.as_json(), "cutoff": cutoff, "years": rows, "totals": totals,
                   "export": exported.as_json() if exported else None, "verify": verified.as_json()})
    else:
        data = summary.as_json()
        typer.echo(f"generated {len(paths)} sample WARC files in {sample_dir}; "
                   f"imported {data['records_new']} new captures into {workspace.root}")
        typer.echo(render_stats(rows, cutoff, totals))
        if exported is not None:
            counts = exported.manifest["counts"]
            left = ", ".join(f"{k} {v}" for k, v in counts["left_out"].items() if v) or "none"
            typer.echo(f"exported {counts['exported']} verified pre-cutoff records ({counts['documents']} text "
                       f"documents) to {destination}; left out: {left}")
        typer.echo(f"verify {destination}: {'ok' if verified.ok else 'FAILED'} "
                   f"({verified.files_checked} files checked)")
    verified.raise_for_problems()
    if summary.failed:
        raise typer.Exit(1)
