"""``sync``: fetch dated captures from the Wayback Machine, Common Crawl or a CDX server into WARCs."""

from __future__ import annotations

from datetime import timedelta
from typing import Annotated, Any

import typer

from ..errors import ConfigError
from ..progress import progress_bar
from ..sources import NAMED_SOURCES, SyncQuery
from ..sync import SyncSummary, query_from_json, run_sync, unfinished_jobs
from ..timestamps import parse_user_date, to_timestamp
from . import app, emit_json, handle_errors, opened


def build_query(url: str, match: str, date_from: str | None, date_to: str | None, default_to: str,
                status: list[int] | None, mime: list[str] | None, collapse: list[str] | None,
                filters: list[str] | None, limit: int | None, crawl: list[str] | None) -> SyncQuery:
    return SyncQuery(
        url=url, match=match,
        date_from=to_timestamp(parse_user_date(date_from)) if date_from else None,
        date_to=to_timestamp(parse_user_date(date_to, end=True)) if date_to else default_to,
        statuses=tuple(status or ()), mimes=tuple(m.lower() for m in mime or ()), collapse=tuple(collapse or ()),
        filters=tuple(filters or ()), limit=limit, crawls=tuple(crawl or ()))


def render(summary: SyncSummary) -> str:
    data = summary.as_json()
    run = data["this_run"]
    lines = [
        f"job {data['job']} ({data['source']} {data['query'].get('url')}): {data['planned']} planned, "
        f"{data['fetched']} fetched ({data['verified']} verified, {data['transformed']} transformed, "
        f"{data['unverifiable']} unverifiable), {data['mismatch']} mismatched, {data['skipped']} skipped, "
        f"{data['failed']} failed, {data['pending']} pending; {data['bytes'] / 1e6:.1f} MB",
        f"this run: {run['fetched']} fetched, {run['bytes'] / 1e6:.1f} MB in {run['seconds']:.1f} s"
        + (f"; {run['rate_signals']} rate signals, {run['source_pauses']} source pauses" if run["rate_signals"]
           else ""),
    ]
    lines += [f"  failed ({reason}): {n}" for reason, n in sorted(data["failed_by_reason"].items())]
    lines += [f"  skipped ({reason}): {n}" for reason, n in sorted(data["skipped_by_reason"].items())]
    lines += [f"  recovered: {line}" for line in data["recovered"]]
    if data["failed"]:
        lines.append("re-run the same command (or `archivekeeper sync --resume`) to retry what failed")
    return "\n".join(lines)


@app.command()
@handle_errors
def sync(
    ctx: typer.Context,
    source: Annotated[str | None, typer.Argument(
        help="wayback, commoncrawl, or the base URL of a pywb-style collection (CDX at BASE/cdx).",
        show_default=False)] = None,
    url: Annotated[str | None, typer.Argument(help="The URL (or URL prefix, host, domain) to sync.",
                                              show_default=False)] = None,
    match: Annotated[str, typer.Option("--match", help="exact, prefix, host or domain.")] = "exact",
    date_from: Annotated[str | None, typer.Option("--from", help="Earliest capture time (YYYY[-MM[-DD]], ISO, "
                                                                 "or 4-14 digits).")] = None,
    date_to: Annotated[str | None, typer.Option("--to", help="Latest capture time, inclusive. Default: just "
                                                             "before the workspace cutoff.")] = None,
    status: Annotated[list[int] | None, typer.Option("--status", help="Only these HTTP statuses (repeatable).")] = None,
    mime: Annotated[list[str] | None, typer.Option("--mime", help="Only these MIME types (repeatable).")] = None,
    collapse: Annotated[list[str] | None, typer.Option(
        "--collapse", help="Fold adjacent captures with the same FIELD[:N], e.g. digest or timestamp:8.")] = None,
    filters: Annotated[list[str] | None, typer.Option(
        "--filter", help="CDX filter [!]FIELD:REGEX, e.g. '!mimetype:warc/revisit' (repeatable).")] = None,
    limit: Annotated[int | None, typer.Option("--limit", help="Plan at most N captures.")] = None,
    crawl: Annotated[list[str] | None, typer.Option(
        "--crawl", help="commoncrawl: only these crawls (e.g. CC-MAIN-2021-04); default: all before --to.")] = None,
    concurrency: Annotated[int | None, typer.Option(
        "--concurrency", help="Parallel fetches (default from the source's settings).")] = None,
    resume: Annotated[bool, typer.Option("--resume", help="Continue every unfinished sync job.")] = False,
    replan: Annotated[bool, typer.Option("--replan", help="Ask the CDX API again for new captures.")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print the summary as JSON.")] = False,
) -> None:
    """Fetch every capture of a URL made before the cutoff, verified, into WARC files (resumable)."""
    summaries: list[SyncSummary] = []
    with opened(ctx, write=True) as (workspace, catalog):
        settings = workspace.settings
        jobs: list[tuple[str, str | None, SyncQuery]] = []
        if resume:
            if source or url:
                raise ConfigError("--resume continues the unfinished jobs; give no SOURCE or URL with it")
            jobs = [(row["source"], row["base_url"] if row["source"] in NAMED_SOURCES else None,
                     query_from_json(row["query"])) for row in unfinished_jobs(catalog)]
        else:
            if not source or not url:
                raise ConfigError("give a SOURCE and a URL (e.g. `archivekeeper sync wayback example.com`), "
                                  "or --resume")
            default_to = to_timestamp(settings.cutoff - timedelta(seconds=1))
            jobs = [(source, None, build_query(url, match, date_from, date_to, default_to, status, mime, collapse,
                                               filters, limit, crawl))]
        if source in NAMED_SOURCES and not settings.contact and not as_json:
            typer.echo("archivekeeper: warning: no contact configured; archives ask callers to identify "
                       "themselves (archivekeeper init --contact EMAIL)", err=True)
        for name, base_url, query in jobs:
            with progress_bar(f"sync {query.url}", enabled=None if not as_json else False, unit="captures") as report:
                summaries.append(run_sync(workspace, catalog, name, query, base_url=base_url,
                                          concurrency=concurrency, progress=report, replan=replan))
    results: list[dict[str, Any]] = [s.as_json() for s in summaries]
    if as_json:
        emit_json(results[0] if len(results) == 1 and not resume else results)
    elif not summaries:
        typer.echo("no unfinished sync jobs")
    else:
        for summary in summaries:
            typer.echo(render(summary))
    if any(s.failed or not s.complete for s in summaries):
        raise typer.Exit(1)
