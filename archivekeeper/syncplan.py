"""The plan of a sync job, kept in the catalog database: tables, rows, states and the summary.

This module creates and owns two tables next to the catalog's own::

    sync_jobs(id, job_key UNIQUE, source, base_url, query JSON, planned, plan_cursor JSON,
              filter_state JSON, cdx_bad_lines, created_at, updated_at)
    sync_captures(id, job_id, capture_key, urlkey, timestamp, url, mime, status, digest, length,
                  offset, filename, extra JSON, cdx, is_revisit, state, reason, detail, attempts,
                  record_key, verification, served_timestamp, drift_seconds, bytes, updated_at)

A job is keyed by its source, archive URL and query, so the same command finds the same job. A
capture row is ``pending``, ``fetched``, ``failed`` (with a reason) or ``skipped`` (with a reason);
``capture_key`` makes the same CDX row planned twice (an overlap between pages, a duplicate line)
one row.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from typing import Any

from .catalog import Catalog
from .errors import ConfigError
from .models import MISMATCH, TRANSFORMED, UNVERIFIABLE, VERIFIED, Capture
from .sources import SyncQuery
from .sources.base import cdx_line

PENDING, FETCHED, FAILED, SKIPPED = "pending", "fetched", "failed", "skipped"
STATES = (PENDING, FETCHED, FAILED, SKIPPED)

_SCHEMA = """
CREATE TABLE IF NOT EXISTS sync_jobs (
    id INTEGER PRIMARY KEY,
    job_key TEXT NOT NULL UNIQUE,
    source TEXT NOT NULL,
    base_url TEXT NOT NULL,
    query TEXT NOT NULL,
    planned INTEGER NOT NULL DEFAULT 0,
    plan_cursor TEXT,
    filter_state TEXT,
    cdx_bad_lines INTEGER NOT NULL DEFAULT 0,
    created_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%SZ','now')),
    updated_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%SZ','now'))
);
CREATE TABLE IF NOT EXISTS sync_captures (
    id INTEGER PRIMARY KEY,
    job_id INTEGER NOT NULL REFERENCES sync_jobs(id),
    capture_key TEXT NOT NULL,
    urlkey TEXT NOT NULL,
    timestamp TEXT NOT NULL,
    url TEXT NOT NULL,
    mime TEXT,
    status INTEGER,
    digest TEXT,
    length INTEGER,
    offset INTEGER,
    filename TEXT,
    extra TEXT,
    cdx TEXT NOT NULL,
    is_revisit INTEGER NOT NULL,
    state TEXT NOT NULL DEFAULT 'pending',
    reason TEXT,
    detail TEXT,
    attempts INTEGER NOT NULL DEFAULT 0,
    record_key TEXT,
    verification TEXT,
    served_timestamp TEXT,
    drift_seconds INTEGER,
    bytes INTEGER,
    updated_at TEXT,
    UNIQUE (job_id, capture_key)
);
CREATE INDEX IF NOT EXISTS sync_captures_todo ON sync_captures(job_id, is_revisit, state, id);
"""

PLAN_INSERT = (
    "INSERT OR IGNORE INTO sync_captures (job_id, capture_key, urlkey, timestamp, url, mime, status, digest, "
    "length, offset, filename, extra, cdx, is_revisit) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
)
ROW_COLUMNS = "id, urlkey, timestamp, url, mime, status, digest, length, offset, filename, extra, cdx"


def ensure_tables(catalog: Catalog) -> None:
    if catalog.readonly:  # readers create nothing; callers check has_table
        return
    catalog.conn.executescript(_SCHEMA)


def job_key(source: str, base_url: str, query: SyncQuery) -> str:
    text = json.dumps({"source": source, "base_url": base_url, "query": query.describe()}, sort_keys=True)
    return hashlib.sha1(text.encode("utf-8")).hexdigest()


@dataclass
class PlannedCapture:
    """A plan row, as the fetch phase sees it."""

    row_id: int
    capture: Capture
    cdx: str


@dataclass
class SyncSummary:
    """The state of a job after a run (counts cover the whole job, ``this_run`` the run)."""

    job_id: int
    source: str
    query: dict[str, Any]
    planned: int = 0
    states: dict[str, int] = field(default_factory=dict)
    verification: dict[str, int] = field(default_factory=dict)
    failed_by_reason: dict[str, int] = field(default_factory=dict)
    skipped_by_reason: dict[str, int] = field(default_factory=dict)
    bytes: int = 0
    cdx_bad_lines: int = 0
    fetched_now: int = 0
    bytes_now: int = 0
    seconds: float = 0.0
    files: list[str] = field(default_factory=list)
    recovered: list[str] = field(default_factory=list)
    rate_signals: int = 0
    pauses: int = 0
    retries: int = 0
    complete: bool = False

    @property
    def failed(self) -> int:
        return self.states.get(FAILED, 0)

    def as_json(self) -> dict[str, Any]:
        return {
            "job": self.job_id, "source": self.source, "query": self.query, "planned": self.planned,
            "fetched": self.states.get(FETCHED, 0), "verified": self.verification.get(VERIFIED, 0),
            "transformed": self.verification.get(TRANSFORMED, 0), "mismatch": self.verification.get(MISMATCH, 0),
            "unverifiable": self.verification.get(UNVERIFIABLE, 0),
            "skipped": self.states.get(SKIPPED, 0), "skipped_by_reason": self.skipped_by_reason,
            "failed": self.failed, "failed_by_reason": self.failed_by_reason, "pending": self.states.get(PENDING, 0),
            "bytes": self.bytes, "complete": self.complete, "cdx_bad_lines": self.cdx_bad_lines,
            "this_run": {"fetched": self.fetched_now, "bytes": self.bytes_now, "seconds": round(self.seconds, 3),
                         "captures_per_s": round(self.fetched_now / self.seconds, 1) if self.seconds > 0 else None,
                         "mb_per_s": round(self.bytes_now / 1e6 / self.seconds, 2) if self.seconds > 0 else None,
                         "rate_signals": self.rate_signals, "source_pauses": self.pauses, "retries": self.retries},
            "files": self.files, "recovered": self.recovered,
        }


def plan_values(job_id: int, capture: Capture, raw: str | None) -> tuple[Any, ...]:
    key = "|".join([capture.urlkey, capture.timestamp, capture.url, capture.digest or "-", capture.filename or "-",
                    str(capture.offset if capture.offset is not None else "-")])
    return (job_id, hashlib.sha1(key.encode("utf-8", "surrogatepass")).hexdigest(), capture.urlkey, capture.timestamp,
            capture.url, capture.mime, capture.status, capture.digest, capture.length, capture.offset,
            capture.filename, json.dumps(capture.extra, sort_keys=True), cdx_line(capture, raw),
            int(capture.is_revisit))


def planned_from_row(row: tuple[Any, ...]) -> PlannedCapture:
    row_id, urlkey, timestamp, url, mime, status, digest, length, offset, filename, extra, cdx = row
    capture = Capture(urlkey=urlkey, timestamp=timestamp, url=url, mime=mime, status=status, digest=digest,
                      length=length, offset=offset, filename=filename, extra=json.loads(extra or "{}"))
    return PlannedCapture(row_id, capture, cdx)


def unfinished_jobs(catalog: Catalog) -> list[dict[str, Any]]:
    """Jobs not planned to the end, or with captures still pending or failed (for ``--resume``)."""
    ensure_tables(catalog)
    return list(catalog.db.query(
        "SELECT j.id, j.source, j.base_url, j.query FROM sync_jobs j WHERE j.planned = 0 OR EXISTS "
        "(SELECT 1 FROM sync_captures c WHERE c.job_id = j.id AND c.state IN ('pending', 'failed')) ORDER BY j.id"))


def query_from_json(text: str) -> SyncQuery:
    data = json.loads(text)
    tuples = {"statuses", "mimes", "collapse", "filters", "crawls"}
    values: dict[str, Any] = {k: tuple(v) if k in tuples else v for k, v in data.items()}
    try:
        return SyncQuery(**values)
    except TypeError as exc:
        raise ConfigError(f"stored job query not understood: {exc}") from None


def summarize(catalog: Catalog, job_id: int, source: str, query: SyncQuery) -> SyncSummary:
    """The job's counts from its plan rows (the ``this_run`` part is filled in by the runner)."""
    conn = catalog.conn
    summary = SyncSummary(job_id=job_id, source=source, query=query.describe())
    for state, reason, verification, count, size in conn.execute(
            "SELECT state, reason, verification, count(*), coalesce(sum(bytes), 0) FROM sync_captures "
            "WHERE job_id = ? GROUP BY state, reason, verification", (job_id,)):
        summary.planned += count
        summary.states[state] = summary.states.get(state, 0) + count
        if state == FETCHED or verification == MISMATCH:
            summary.verification[verification] = summary.verification.get(verification, 0) + count
            summary.bytes += size
        if state == FAILED:
            summary.failed_by_reason[reason] = summary.failed_by_reason.get(reason, 0) + count
        if state == SKIPPED:
            summary.skipped_by_reason[reason] = summary.skipped_by_reason.get(reason, 0) + count
    planned, bad_lines = conn.execute("SELECT planned, cdx_bad_lines FROM sync_jobs WHERE id = ?",
                                      (job_id,)).fetchone()
    summary.cdx_bad_lines = int(bad_lines)
    summary.complete = bool(planned) and not summary.states.get(PENDING) and not summary.failed
    return summary
