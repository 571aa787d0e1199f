"""``sync``: plan every capture a query asks for into the catalog, then fetch, verify and store them.

A job is keyed by its source and query, so re-running the same command continues it. Its plan
lives in the catalog database (:mod:`archivekeeper.syncplan`): one row per capture, with a state —
``pending``, ``fetched``, ``failed`` (reason) or ``skipped`` (reason). Planning stores each CDX page
together with the cursor to resume from; fetching commits the catalog rows of a batch only after
its WARC records are on disk (``fsync``), in the same transaction as the plan states. After a
kill -9 at any moment a re-run therefore fetches only what is missing, and no record is catalogued
twice (record keys are deterministic; a record already catalogued is never rewritten).

Verification, per capture:

* the capture time is the one the archive's answer proves (``Memento-Datetime``, the redirect
  target's timestamp, WARC-Date); a capture served for another time ("drift") is stored only when
  it lies inside the query's dates and its payload matches the planned digest, otherwise the row
  fails with ``out-of-range`` or ``drift`` (or is skipped as ``served-other-capture`` when what was
  served is planned in its own right). The catalog sets ``pre_cutoff`` from that time alone;
* the payload SHA-1 is compared with the CDX digest; a mismatch is retried, then kept in the
  catalog as ``mismatch`` while the row fails with ``digest-mismatch``.
"""

from __future__ import annotations

import json
import time
from collections import Counter
from collections.abc import Callable, Iterator
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from .catalog import Catalog
from .errors import ArchiveKeeperError
from .http import failure_reason
from .models import MISMATCH, VERIFIED, Capture
from .sources import CaptureFilter, Fetched, LocalPayload, Source, SyncQuery, open_source
from .syncplan import (
    FAILED,
    FETCHED,
    PENDING,
    PLAN_INSERT,
    ROW_COLUMNS,
    SKIPPED,
    STATES,
    PlannedCapture,
    SyncSummary,
    ensure_tables,
    job_key,
    plan_values,
    planned_from_row,
    query_from_json,
    summarize,
    unfinished_jobs,
)
from .syncstore import Prepared, prepare, store_prepared
from .timestamps import parse_timestamp, to_timestamp
from .warcstore import WarcStore
from .workspace import Workspace

TODO_CHUNK = 200
COMMIT_EVERY = 64  # captures per group commit (one fsync + one transaction) ...
COMMIT_SECONDS = 1.0  # ... or fewer, once this long has passed since the batch began
MISMATCH_RETRIES = 2
Progress = Callable[[str, int], None]


@dataclass
class _Outcome:
    planned: PlannedCapture
    fetched: Fetched | None = None  # its body is consumed once prepared
    prepared: Prepared | None = None  # the records, serialized by the worker
    error: BaseException | None = None
    attempts: int = 0
    served: str | None = None
    drift: int = 0


@dataclass
class _Batch:
    """Fetched captures appended to the store but not yet committed."""

    rows: list[tuple[Any, ...]] = field(default_factory=list)
    updates: list[tuple[Any, ...]] = field(default_factory=list)
    seen: set[str] = field(default_factory=set)  # record keys appended in this batch
    started: float = field(default_factory=time.monotonic)


class SyncJob:
    """One job: a source and a query, planned into the catalog and fetched into the store."""

    def __init__(self, workspace: Workspace, catalog: Catalog, source: Source, query: SyncQuery, *,
                 progress: Progress | None = None, replan: bool = False, mismatch_retries: int = MISMATCH_RETRIES,
                 size_limit: int | None = None) -> None:
        self.workspace = workspace
        self.catalog = catalog
        self.source = source
        self.query = query
        self.progress = progress or (lambda event, amount: None)
        self.replan = replan
        self.mismatch_retries = mismatch_retries
        self.size_limit = size_limit
        self._warcinfo_id: Callable[[], str | None] = lambda: None  # the store's, once fetching starts
        ensure_tables(catalog)
        self.job_id = self._job_row()

    def _job_row(self) -> int:
        key = job_key(self.source.name, self.source.base_url, self.query)
        conn = self.catalog.conn
        conn.execute("INSERT OR IGNORE INTO sync_jobs(job_key, source, base_url, query) VALUES (?, ?, ?, ?)",
                     (key, self.source.name, self.source.base_url, json.dumps(self.query.describe(), sort_keys=True)))
        return int(conn.execute("SELECT id FROM sync_jobs WHERE job_key = ?", (key,)).fetchone()[0])

    def _job(self, column: str) -> Any:
        return self.catalog.conn.execute(f"SELECT {column} FROM sync_jobs WHERE id = ?", (self.job_id,)).fetchone()[0]

    # -- run -----------------------------------------------------------------------------------
    def run(self) -> SyncSummary:
        started = time.monotonic()
        info = {"source": self.source.name, "archive": self.source.base_url, "query": self.query.describe(),
                "job": self.job_id}
        store = WarcStore(self.workspace, self.catalog, source=self.source.name, info=info,
                          size_limit=self.size_limit)
        recovered = store.recover()
        if self.replan or not self._job("planned"):
            self.plan()
        self.source.prepare()
        fetched_now, bytes_now = self.fetch(store)
        store.close()
        summary = self.summary()
        summary.fetched_now, summary.bytes_now = fetched_now, bytes_now
        summary.seconds = time.monotonic() - started
        summary.files, summary.recovered = store.files_finished, recovered
        http = self.source.http
        summary.rate_signals, summary.pauses, summary.retries = http.pacer.rate_signals, http.pacer.pauses, http.retries
        return summary

    # -- plan ----------------------------------------------------------------------------------
    def plan(self) -> int:
        """Ask the archive's CDX API and store one plan row per new capture; resumable."""
        conn = self.catalog.conn
        cursor = None if self.replan else json.loads(self._job("plan_cursor") or "null")
        state = None if self.replan or cursor is None else json.loads(self._job("filter_state") or "null")
        local = CaptureFilter(self.query, state)
        remaining = None
        if self.query.limit is not None:
            have = conn.execute("SELECT count(*) FROM sync_captures WHERE job_id = ?", (self.job_id,)).fetchone()[0]
            remaining = self.query.limit - int(have)
        added = 0
        self.progress("planning", 0)
        for page in self.source.plan(self.query, cursor):
            with self.catalog.transaction():
                for capture, raw in zip(page.captures, page.raw_lines, strict=False):
                    if remaining is not None and remaining <= 0:
                        break
                    if not local.accepts(capture):
                        continue
                    before = conn.total_changes
                    conn.execute(PLAN_INSERT, plan_values(self.job_id, capture, raw))
                    if conn.total_changes > before:
                        added += 1
                        remaining = None if remaining is None else remaining - 1
                conn.execute("UPDATE sync_jobs SET plan_cursor = ?, filter_state = ?, "
                             "cdx_bad_lines = cdx_bad_lines + ?, updated_at = strftime('%Y-%m-%dT%H:%M:%SZ','now') "
                             "WHERE id = ?", (json.dumps(page.cursor), json.dumps(local.last), page.bad_lines,
                                              self.job_id))
            self.progress(f"planning: {added} captures", 0)
            if remaining is not None and remaining <= 0:
                break
        conn.execute("UPDATE sync_jobs SET planned = 1, plan_cursor = NULL WHERE id = ?", (self.job_id,))
        return added

    # -- fetch ---------------------------------------------------------------------------------
    def _todo(self, revisits: bool) -> Iterator[PlannedCapture]:
        last = 0
        while True:
            rows = self.catalog.conn.execute(
                f"SELECT {ROW_COLUMNS} FROM sync_captures WHERE job_id = ? AND is_revisit = ? "
                "AND state IN ('pending', 'failed') AND id > ? ORDER BY id LIMIT ?",
                (self.job_id, int(revisits), last, TODO_CHUNK)).fetchall()
            if not rows:
                return
            for row in rows:
                last = row[0]
                yield planned_from_row(row)

    def fetch(self, store: WarcStore) -> tuple[int, int]:
        """Fetch every pending or failed capture: those holding payloads first, then revisits."""
        todo = self.catalog.conn.execute("SELECT count(*) FROM sync_captures WHERE job_id = ? AND state IN "
                                         "('pending', 'failed')", (self.job_id,)).fetchone()[0]
        self.progress("total", int(todo))
        counts: Counter[str] = Counter()
        self._warcinfo_id = lambda: store.warcinfo_id
        batch = _Batch()
        window = max(2, 2 * self.source.settings.concurrency)
        pool = ThreadPoolExecutor(max_workers=self.source.settings.concurrency, thread_name_prefix="sync")
        try:
            for revisits in (False, True):
                inflight: dict[Future[_Outcome], PlannedCapture] = {}
                rows = self._todo(revisits)
                exhausted = False
                while True:
                    while not exhausted and len(inflight) < window:
                        planned = next(rows, None)
                        if planned is None:
                            exhausted = True
                            break
                        original = self._local_original(planned.capture) if revisits else None
                        inflight[pool.submit(self._fetch_one, planned, original)] = planned
                    if not inflight:
                        break
                    done, _ = wait(inflight, return_when=FIRST_COMPLETED)
                    for future in done:
                        del inflight[future]
                    self._write([future.result() for future in done], store, batch, counts)
                    if (len(batch.updates) >= COMMIT_EVERY or not inflight
                            or time.monotonic() - batch.started >= COMMIT_SECONDS):
                        self._commit(batch, store, counts)
                        batch = _Batch()
        finally:
            pool.shutdown(wait=True, cancel_futures=True)
        return counts[FETCHED], counts["bytes"]

    def _local_original(self, capture: Capture) -> LocalPayload | None:
        if not self.source.resolves_revisits_locally or capture.digest is None:
            return None
        holder = self.catalog.payload_holder(capture.digest)
        if holder is None:
            return None
        return LocalPayload(self.workspace.resolve(holder.warc_file), holder.offset, holder.record_id, holder.url,
                            holder.capture_time)

    def _fetch_one(self, planned: PlannedCapture, original: LocalPayload | None) -> _Outcome:
        """In a worker thread: fetch, retrying a digest mismatch a few times (not a capture served for
        another time: that is the archive's deliberate answer, judged in :meth:`_judge`)."""
        outcome = _Outcome(planned)
        try:
            while True:
                outcome.attempts += 1
                fetched = self.source.fetch(planned.capture, original=original)
                outcome.served = to_timestamp(fetched.capture_time)
                outcome.drift = _drift(planned.capture, fetched)
                if fetched.verification != MISMATCH or outcome.drift or outcome.attempts > self.mismatch_retries:
                    outcome.fetched = fetched
                    if self._storable(outcome.served, outcome.drift, fetched):
                        outcome.prepared = prepare(self.source.name, fetched, planned.cdx, outcome.drift,
                                                   self._warcinfo_id())
                    fetched.close()
                    return outcome
                fetched.close()
                self.source.http.sleep(self.source.http.backoff(outcome.attempts, None))
        except ArchiveKeeperError as exc:
            outcome.error = exc
        except Exception as exc:  # a parser fault on one capture must not end the job
            outcome.error = ArchiveKeeperError(f"{planned.capture.url}: unexpected {type(exc).__name__}: {exc}")
        return outcome

    def _storable(self, served: str, drift: int, fetched: Fetched) -> bool:
        """Whether a capture may be stored at all (see :meth:`_judge` for the whole rule)."""
        inside = (self.query.date_from or "0") <= served <= (self.query.date_to or "9")
        return drift == 0 or (inside and fetched.verification == VERIFIED)

    def _write(self, outcomes: list[_Outcome], store: WarcStore, batch: _Batch, counts: Counter[str]) -> None:
        """Append the records of finished fetches; their rows wait in ``batch`` for :meth:`_commit`."""
        catalog_rows, updates, seen = batch.rows, batch.updates, batch.seen
        for outcome in outcomes:
            result = self._judge(outcome)
            if isinstance(result, tuple):
                if outcome.prepared is not None:
                    outcome.prepared.close()
                state, reason, detail, served, drift = result
                updates.append((state, reason, detail, outcome.attempts, None, None, served, drift, None,
                                outcome.planned.row_id))
                counts[state] += 1
                continue
            assert outcome.prepared is not None
            stored = store_prepared(self.catalog, store, outcome.prepared, seen)
            outcome.prepared.close()
            if stored.row is not None:
                catalog_rows.append(stored.row)
            state = FAILED if result.verification == MISMATCH else FETCHED
            failure = "digest-mismatch" if state == FAILED else None
            updates.append((state, failure, result.verification_reason, outcome.attempts, stored.record_key,
                            result.verification, outcome.served, outcome.drift, stored.bytes, outcome.planned.row_id))
            counts[state] += 1
            counts["bytes"] += stored.bytes

    def _commit(self, batch: _Batch, store: WarcStore, counts: Counter[str]) -> None:
        """Group commit: fsync what was appended, then commit its catalog rows and plan states at once."""
        store.flush()
        with self.catalog.transaction():
            self.catalog.insert_rows(batch.rows)
            self.catalog.conn.executemany(
                "UPDATE sync_captures SET state = ?, reason = ?, detail = ?, attempts = attempts + ?, "
                "record_key = coalesce(?, record_key), verification = coalesce(?, verification), "
                "served_timestamp = ?, drift_seconds = ?, bytes = coalesce(?, bytes), "
                "updated_at = strftime('%Y-%m-%dT%H:%M:%SZ','now') WHERE id = ?", batch.updates)
            store.mark_committed()
        store.rotate_if_full()
        self.progress("advance", len(batch.updates))
        self.progress(f"{counts[FETCHED]} fetched, {counts[FAILED]} failed, {counts[SKIPPED]} skipped", 0)

    def _judge(self, outcome: _Outcome) -> Fetched | tuple[str, str, str, str | None, int | None]:
        """The fetched capture to store, or (state, reason, detail, served timestamp, drift) if not."""
        capture = outcome.planned.capture
        if outcome.error is not None or outcome.fetched is None:
            error = outcome.error or ArchiveKeeperError("no result")
            reason = failure_reason(error)
            state = SKIPPED if reason == "revisit-unresolved" and capture.digest is None else FAILED
            return state, reason, str(error), None, None
        fetched, served, drift = outcome.fetched, outcome.served or "", outcome.drift
        if drift == 0:
            if fetched.verification == MISMATCH and self._planned_elsewhere(capture, served, fetched.payload_sha1,
                                                                             outcome.planned.row_id):
                return (SKIPPED, "served-other-capture", f"the archive served another capture of the same URL key "
                        f"and second ({served}, payload {fetched.payload_sha1}), planned in its own right", served, 0)
            return fetched
        inside = (self.query.date_from or "0") <= served <= (self.query.date_to or "9")
        detail = (f"asked for the capture of {capture.timestamp}; the archive served one of {served} "
                  f"({drift:+d} s)")
        if not inside:
            return FAILED, "out-of-range", detail + ", outside the dates asked for", served, drift
        if fetched.verification != VERIFIED:
            if self._planned_elsewhere(capture, served):
                return (SKIPPED, "served-other-capture", detail + ", which is planned in its own right (archives "
                        "skip some captures, e.g. redirects to themselves)", served, drift)
            return FAILED, "drift", detail + " whose payload does not match the planned digest", served, drift
        return fetched

    def _planned_elsewhere(self, capture: Capture, served: str, digest: str | None = None, row_id: int = 0) -> bool:
        """Whether the capture the archive served instead is itself a row of this job."""
        sql = "SELECT 1 FROM sync_captures WHERE job_id = ? AND urlkey = ? AND timestamp = ? AND id != ?"
        params: list[Any] = [self.job_id, capture.urlkey, served, row_id]
        if digest is not None:
            sql += " AND digest = ?"
            params.append(digest)
        return self.catalog.conn.execute(sql + " LIMIT 1", params).fetchone() is not None

    def summary(self) -> SyncSummary:
        return summarize(self.catalog, self.job_id, self.source.name, self.query)


def _drift(capture: Capture, fetched: Fetched) -> int:
    """Seconds between the capture planned and the one the archive proved it served."""
    if len(capture.timestamp) < 14:
        return 0
    return int((fetched.capture_time - parse_timestamp(capture.timestamp[:14])) / timedelta(seconds=1))


def run_sync(workspace: Workspace, catalog: Catalog, source_name: str, query: SyncQuery, *,
             base_url: str | None = None, concurrency: int | None = None, progress: Progress | None = None,
             replan: bool = False, sleep: Callable[[float], None] = time.sleep) -> SyncSummary:
    """Open the source, run the job, close the source."""
    source = open_source(source_name, workspace.settings, cache_dir=workspace.root / "cache", base_url=base_url,
                         concurrency=concurrency, sleep=sleep)
    try:
        return SyncJob(workspace, catalog, source, query, progress=progress, replan=replan).run()
    finally:
        source.close()


__all__ = ["FAILED", "FETCHED", "PENDING", "SKIPPED", "STATES", "SyncJob", "SyncQuery", "SyncSummary", "ensure_tables",
           "query_from_json", "run_sync", "unfinished_jobs"]
