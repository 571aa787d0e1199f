"""Catalog commands: ``init``, ``import``, ``query``, ``stats``, ``show``."""

from __future__ import annotations

import csv
import json
import sys
from dataclasses import replace
from typing import Annotated, Any

import typer

from ..catalog import Catalog
from ..errors import ConfigError
from ..importer import Importer
from ..models import MATCH_TYPES, VERIFICATION_STATES, CatalogRecord, Selection
from ..progress import progress_bar
from ..timestamps import parse_user_date, to_iso, to_timestamp
from ..warcreader import read_payload
from ..workspace import Workspace
from . import State, app, emit_json, handle_errors, opened, print_error

# -- init ------------------------------------------------------------------------------------------

@app.command()
@handle_errors
def init(
    ctx: typer.Context,
    cutoff: Annotated[str | None, typer.Option(help="Cutoff date (ISO-8601 or YYYY[-MM[-DD]]); "
                                                     "captures strictly before it are pre-cutoff.")] = None,
    contact: Annotated[str | None, typer.Option(help="Contact (e-mail or URL) sent in the User-Agent.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print a JSON summary.")] = False,
) -> None:
    """Create a workspace (or change its cutoff/contact); recomputes pre_cutoff flags if the cutoff changes."""
    state: State = ctx.obj
    workspace = Workspace.open(state.workspace_dir)
    settings = workspace.file_settings()
    if cutoff is not None:
        settings = settings.with_cutoff(parse_user_date(cutoff))
    if contact is not None:
        settings = replace(settings, contact=contact)
    with workspace.lock(wait=state.wait):
        workspace.write_settings(settings)
        workspace = Workspace.open(workspace.root)
        catalog = Catalog.open(workspace.catalog_path, workspace.settings.cutoff)
        captures = catalog.total()
        catalog.close()
    info = {"workspace": str(workspace.root), "cutoff": workspace.settings.cutoff_iso, "captures": captures}
    if as_json:
        emit_json(info)
    else:
        typer.echo(f"workspace {workspace.root} (cutoff {workspace.settings.cutoff_iso}, {captures} captures)")


# -- import ----------------------------------------------------------------------------------------

@app.command("import")
@handle_errors
def import_command(
    ctx: typer.Context,
    paths: Annotated[list[str], typer.Argument(help="WARC/ARC files, directories or glob patterns.")],
    copy: Annotated[bool, typer.Option("--copy", help="Copy the files into the workspace store.")] = False,
    jobs: Annotated[int | None, typer.Option(help="Files read in parallel (default: one per core).")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print a JSON summary instead of text.")] = False,
) -> None:
    """Catalog every capture in existing WARC/ARC files (.warc, .warc.gz, .arc, .arc.gz)."""
    with opened(ctx, write=True) as (workspace, catalog):
        with progress_bar("import", enabled=None if not as_json else False) as report:
            summary = Importer(workspace, catalog, copy=copy, jobs=jobs, progress=report).run(paths)
    data = summary.as_json()
    if as_json:
        emit_json(data)
    else:
        typer.echo(
            f"{data['files']} files: {data['imported']} imported, {data['partial']} partial, "
            f"{data['skipped']} unchanged, {data['failed']} failed; {data['records_new']} new captures "
            f"({data['bytes'] / 1e6:.1f} MB in {data['seconds']:.1f} s)")
    for error in data["errors"]:
        print_error(error)
    if data["errors"]:
        raise typer.Exit(1)


# -- query -----------------------------------------------------------------------------------------

def build_selection(url: str | None, match: str, date_from: str | None, date_to: str | None,
                    pre_cutoff: bool | None, status: int | None, mime: str | None,
                    verification: str | None, source: str | None) -> Selection:
    if match not in MATCH_TYPES:
        raise ConfigError(f"--match must be one of {', '.join(MATCH_TYPES)}, not {match!r}")
    if verification is not None and verification not in VERIFICATION_STATES:
        raise ConfigError(f"--verification must be one of {', '.join(VERIFICATION_STATES)}")
    return Selection(
        url=url, match=match,
        date_from=to_iso(parse_user_date(date_from)) if date_from else None,
        date_to=to_iso(parse_user_date(date_to, end=True)) if date_to else None,
        pre_cutoff=pre_cutoff, status=status, mime=mime, verification=verification, source=source,
    )


UrlOpt = Annotated[str | None, typer.Option("--url", help="URL to match (with --match).")]
MatchOpt = Annotated[str, typer.Option("--match", help="exact, prefix, host or domain (SURT based).")]
FromOpt = Annotated[str | None, typer.Option(
    "--from", help="Earliest capture time (YYYY[-MM[-DD]], ISO or 14 digits).")]
ToOpt = Annotated[str | None, typer.Option("--to", help="Latest capture time, inclusive.")]
CutoffOpt = Annotated[bool | None, typer.Option(
    "--pre-cutoff/--post-cutoff", help="Only captures before / at-or-after the cutoff.", show_default=False)]
StatusOpt = Annotated[int | None, typer.Option("--status", help="HTTP status code.")]
MimeOpt = Annotated[str | None, typer.Option("--mime", help="MIME type, e.g. text/html.")]
VerifOpt = Annotated[str | None, typer.Option(
    "--verification", help="verified, mismatch, transformed or unverifiable.")]
SourceOpt = Annotated[str | None, typer.Option("--source", help="Source: import, wayback, commoncrawl or a CDX URL.")]

TABLE_COLUMNS = ("timestamp", "status", "mime", "verification", "pre_cutoff", "url")


@app.command()
@handle_errors
def query(
    ctx: typer.Context,
    url: UrlOpt = None, match: MatchOpt = "exact", date_from: FromOpt = None, date_to: ToOpt = None,
    pre_cutoff: CutoffOpt = None, status: StatusOpt = None, mime: MimeOpt = None,
    verification: VerifOpt = None, source: SourceOpt = None,
    output_format: Annotated[str, typer.Option("--format", help="table, jsonl or csv.")] = "table",
    count: Annotated[bool, typer.Option("--count", help="Print only the number of matching captures.")] = False,
    limit: Annotated[int | None, typer.Option(help="At most this many rows.")] = None,
) -> None:
    """Find captures in the catalog by URL, date, cutoff side, status, MIME type or verification."""
    if output_format not in ("table", "jsonl", "csv"):
        raise ConfigError("--format must be table, jsonl or csv")
    selection = build_selection(url, match, date_from, date_to, pre_cutoff, status, mime, verification, source)
    with opened(ctx) as (_, catalog):
        if count:
            typer.echo(str(catalog.count(selection)))
            return
        records = catalog.query(selection, limit=limit)
        out = sys.stdout
        if output_format == "jsonl":
            for record in records:
                out.write(json.dumps(record.as_json()) + "\n")
        elif output_format == "csv":
            writer: Any = None
            for record in records:
                row = record.as_json()
                if writer is None:
                    writer = csv.DictWriter(out, fieldnames=list(row))
                    writer.writeheader()
                writer.writerow(row)
        else:
            out.write(f"{'timestamp':14}  {'status':6}  {'mime':24}  {'verification':12}  {'pre':3}  url\n")
            for record in records:
                out.write(f"{record.timestamp:14}  {str(record.status or '-'):6}  {(record.mime or '-')[:24]:24}  "
                          f"{record.verification:12}  {'yes' if record.pre_cutoff else 'no':3}  {record.url}\n")


# -- stats -----------------------------------------------------------------------------------------

@app.command()
@handle_errors
def stats(
    ctx: typer.Context,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")] = False,
) -> None:
    """Captures per year, split by the cutoff, per source (from counts kept current: no scan)."""
    with opened(ctx) as (workspace, catalog):
        rows = catalog.stats()
    cutoff = workspace.settings.cutoff_iso
    totals = stats_totals(rows)
    if as_json:
        emit_json({"cutoff": cutoff, "years": rows, "totals": totals})
        return
    typer.echo(render_stats(rows, cutoff, totals))


def stats_totals(rows: list[dict[str, Any]]) -> dict[str, int]:
    keys = ("pre_cutoff", "post_cutoff", "pre_cutoff_verified", "total")
    return {key: sum(int(row[key]) for row in rows) for key in keys}


def render_stats(rows: list[dict[str, Any]], cutoff: str, totals: dict[str, int]) -> str:
    lines = [f"captures per year (cutoff {cutoff})",
             f"{'year':>4}  {'source':<12} {'pre-cutoff':>10} {'verified':>9} {'post-cutoff':>11} {'total':>7}"]
    cutoff_year = int(cutoff[:4])
    marked = False
    for row in rows:
        if not marked and row["year"] >= cutoff_year:
            lines.append(f"{'-' * 4}  cutoff {cutoff} {'-' * 32}")
            marked = True
        lines.append(f"{row['year']:>4}  {row['source'][:12]:<12} {row['pre_cutoff']:>10} "
                     f"{row['pre_cutoff_verified']:>9} {row['post_cutoff']:>11} {row['total']:>7}")
    lines.append(f"{'all':>4}  {'':<12} {totals['pre_cutoff']:>10} {totals['pre_cutoff_verified']:>9} "
                 f"{totals['post_cutoff']:>11} {totals['total']:>7}")
    return "\n".join(lines)


# -- show ------------------------------------------------------------------------------------------

@app.command()
@handle_errors
def show(
    ctx: typer.Context,
    url: Annotated[str, typer.Argument(help="The URL to look up (exact match on its SURT key).")],
    at: Annotated[str | None, typer.Option(
        "--at", help="Closest to this time (14 digits or a date); default: latest.")] = None,
    payload: Annotated[bool, typer.Option("--payload", help="Write the capture's body to stdout.")] = False,
    raw: Annotated[bool, typer.Option("--raw", help="With --payload: the bytes as stored (no decoding).")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print the metadata as JSON.")] = False,
) -> None:
    """Show the capture of a URL closest to a time; --payload writes its body (read at the catalogued offset)."""
    at_ts = to_timestamp(parse_user_date(at)) if at else None
    with opened(ctx) as (workspace, catalog):
        record = catalog.closest(url, at_ts)
        if record is None:
            raise ConfigError(f"no capture of {url} in the catalog")
        if payload:
            write_payload(workspace, record, decode=not raw)
            return
    if as_json:
        emit_json(record.as_json())
    else:
        for key, value in record.as_json().items():
            typer.echo(f"{key:20} {value if value is not None else '-'}")


def write_payload(workspace: Workspace, record: CatalogRecord, *, decode: bool) -> None:
    path = workspace.resolve(record.warc_file)
    out = sys.stdout.buffer
    for chunk in read_payload(path, record.offset, decode=decode):
        out.write(chunk)
    out.flush()
