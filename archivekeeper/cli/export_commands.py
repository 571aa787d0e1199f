"""Export commands: ``export``, ``verify``, ``pull`` and ``exports``."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated

import typer

from ..config import DEFAULT_SHARD_SIZE
from ..export import exports_containing
from ..package import DEFAULT_FORMATS, ExportOptions, parse_formats, run_export
from ..progress import progress_bar
from ..s3 import DEFAULT_CONCURRENCY, DEFAULT_PART_SIZE
from ..verify import VerifyReport, pull_export, verify_export
from . import app, emit_json, handle_errors, one_line, opened
from .catalog_commands import (
    FromOpt,
    MatchOpt,
    MimeOpt,
    SourceOpt,
    StatusOpt,
    UrlOpt,
    build_selection,
)

EndpointOpt = Annotated[str | None, typer.Option(
    "--endpoint-url", envvar=["AWS_ENDPOINT_URL_S3", "AWS_ENDPOINT_URL"],
    help="S3-compatible endpoint (default: AWS; env AWS_ENDPOINT_URL_S3 / AWS_ENDPOINT_URL).")]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print a JSON summary instead of text.")]


@app.command()
@handle_errors
def export(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(help="Export name (letters, digits, '.', '_', '-'); names the shard files.")],
    to: Annotated[str, typer.Option("--to", help="Destination: a new folder, or s3://BUCKET/PREFIX.")],
    url: UrlOpt = None, match: MatchOpt = "exact", date_from: FromOpt = None,
    date_until: Annotated[str | None, typer.Option(
        "--until", help="Latest capture time, inclusive (query's --to; --to is the destination here).")] = None,
    status: StatusOpt = None, mime: MimeOpt = None, source: SourceOpt = None,
    formats: Annotated[str, typer.Option(
        "--format", help="Comma-separated: warc, jsonl, parquet.")] = ",".join(DEFAULT_FORMATS),
    shard_size: Annotated[int | None, typer.Option(
        help=f"Largest WARC shard in bytes (default: workspace shard_size, {DEFAULT_SHARD_SIZE}).")] = None,
    jobs: Annotated[int | None, typer.Option(help="Text extraction processes (default: one per core).")] = None,
    part_size: Annotated[int, typer.Option(
        envvar="ARCHIVEKEEPER_PART_SIZE", help="S3: multipart above this size, in parts of this size.")]
        = DEFAULT_PART_SIZE,
    concurrency: Annotated[int, typer.Option(help="S3: parallel uploads.")] = DEFAULT_CONCURRENCY,
    endpoint_url: EndpointOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Export verified pre-cutoff captures as a checksummed BagIt package (WARC shards, JSONL, Parquet).

    Only captures that are both before the cutoff and verified are ever exported; there is deliberately
    no option to include others. The rest of the selection is counted by reason in the manifest.
    """
    selection = build_selection(url, match, date_from, date_until, None, status, mime, None, source)
    with opened(ctx, write=True) as (workspace, catalog):
        options = ExportOptions(
            formats=parse_formats(formats), shard_size=shard_size or workspace.settings.shard_size,
            jobs=jobs or os.cpu_count() or 1, part_size=part_size, concurrency=concurrency,
            endpoint_url=endpoint_url)
        with progress_bar(f"export {name}", enabled=None if not as_json else False) as report:
            result = run_export(workspace, catalog, name, to, selection, options, progress=report)
    data = result.as_json()
    if as_json:
        emit_json(data)
        return
    counts = data["counts"]
    left = ", ".join(f"{k} {v}" for k, v in counts["left_out"].items() if v) or "none"
    typer.echo(f"exported {counts['exported']} records ({counts['documents']} documents, "
               f"{counts['aliases_total']} aliases) of {counts['selected']} selected to {result.destination}; "
               f"left out: {left}")
    if result.upload is not None:
        up = result.upload
        typer.echo(f"uploaded {len(up.uploaded)} objects, skipped {len(up.skipped)} already present")


def _report_problems(report: VerifyReport, as_json: bool) -> None:
    if as_json:
        emit_json(report.as_json())
    else:
        for problem in report.problems:
            typer.echo(one_line(problem), err=True)
    report.raise_for_problems()


@app.command()
@handle_errors
def verify(
    location: Annotated[str, typer.Argument(help="An export folder or s3://BUCKET/PREFIX.")],
    endpoint_url: EndpointOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Recompute every checksum of an export against manifest.json and its BagIt manifests."""
    with progress_bar("verify", enabled=None if not as_json else False) as report_progress:
        report = verify_export(location, endpoint_url=endpoint_url, progress=report_progress)
    _report_problems(report, as_json)
    if not as_json:
        typer.echo(f"{report.location}: ok ({report.files_checked} files, {report.bytes_checked} bytes)")


@app.command()
@handle_errors
def pull(
    location: Annotated[str, typer.Argument(help="s3://BUCKET/PREFIX of an export.")],
    dest: Annotated[Path, typer.Argument(help="Local folder to download into (re-run to resume).")],
    endpoint_url: EndpointOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Download an export from S3 (resumable) and verify it."""
    with progress_bar("pull", enabled=None if not as_json else False) as report_progress:
        summary = pull_export(location, dest, endpoint_url=endpoint_url, progress=report_progress)
    assert summary.report is not None
    if as_json:
        emit_json(summary.as_json())
        summary.report.raise_for_problems()
        return
    _report_problems(summary.report, False)
    typer.echo(f"pulled {location} into {dest}: {len(summary.downloaded)} downloaded, "
               f"{len(summary.skipped)} already there; verified ok")


@app.command("exports")
@handle_errors
def exports_command(
    ctx: typer.Context,
    url: Annotated[str | None, typer.Option("--url", help="Only exports holding a capture of this URL.")] = None,
    as_json: JsonOpt = False,
) -> None:
    """List finished exports, or those containing a URL ("which corpora contain this URL?")."""
    with opened(ctx) as (_, catalog):
        rows = exports_containing(catalog, url)
    if as_json:
        emit_json(rows)
        return
    for row in rows:
        counts = row["counts"] or {}
        extra = f"  ({row['captures_of_url']} captures of the URL)" if url else ""
        typer.echo(f"{row['name']}  {row['created']}  {counts.get('exported', 0)} records  "
                   f"{row['destination']}{extra}")

