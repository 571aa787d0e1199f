"""``demo``: the offline demo on the embedded defaults."""

from __future__ import annotations

from typing import Annotated

import typer

from ..importer import Importer
from ..progress import progress_bar
from . import app, emit_json, handle_errors, opened
from .catalog_commands import render_stats

# -- demo ------------------------------------------------------------------------------------------

@app.command()
@handle_errors
def demo(
    ctx: typer.Context,
    scale: Annotated[int, typer.Option(help="Multiply the size of the generated sample archive.")] = 1,
    as_json: Annotated[bool, typer.Option("--json", help="Print the stats as JSON.")] = False,
) -> None:
    """Offline demo: generate a sample archive (2019–2024), import it and print captures per year."""
    from ..demo import generate_sample_archive

    with opened(ctx, write=True) as (workspace, catalog):
        sample_dir = workspace.root / "demo-input"
        paths = generate_sample_archive(sample_dir, scale=scale)
        with progress_bar("import", enabled=None if not as_json else False) as report:
            summary = Importer(workspace, catalog, progress=report).run([str(p) for p in paths])
        rows = catalog.stats()
    cutoff = workspace.settings.cutoff_iso
    totals = {key: sum(int(r[key]) for r in rows) for key in ("pre_cutoff", "post_cutoff", "pre_cutoff_verified", "total")}
    if as_json:
        emit_json({"import": summary.as_json(), "cutoff": cutoff, "years": rows, "totals": totals})
    else:
        data = summary.as_json()
        typer.echo(f"generated {len(paths)} sample WARC files in {sample_dir}; "
                   f"imported {data['records_new']} new captures into {workspace.root}")
        typer.echo(render_stats(rows, cutoff, totals))
    if summary.failed:
        raise typer.Exit(1)
