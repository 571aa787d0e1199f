"""Which captures an export holds: a selection turned into exported records, aliases and left-outs.

Only captures that are pre-cutoff AND verified are exported. Every selected capture ends in exactly
one role, recorded in the catalog (table ``export_captures``, created here):

* ``exported`` — a record copied into the export: the earliest capture (then lowest record key) of
  its payload digest;
* ``alias`` — a capture whose payload is exported under another record: a later capture with the
  same digest (reason ``duplicate``) or a revisit resolved to the record holding its payload
  (reason ``revisit``; never exported as an empty body);
* ``left_out`` — with one reason, checked in this order: ``post_cutoff`` (captured at or after the
  cutoff), the verification state (``mismatch``, ``transformed``, ``unverifiable``) for a capture
  that is not ``verified``, or ``revisit_unresolved`` (a revisit whose payload no verified
  pre-cutoff record in the catalog holds).

A revisit whose payload is held by a record outside the selection brings that record in
(``selected = 0``): the export then holds the payload the revisit stands for.

Table ``exports`` records each export (name, destination, selection, formats, the export's one
timestamp, status and counts), so "which corpora contain this URL?" is one query:
:func:`exports_containing`.

Planning runs in SQL over temporary tables keyed by capture row id (``temp.export_plan``; then
``temp.export_order``, the exported records numbered in export order, and ``temp.export_decided``, the
others), set-based and without window functions over the captures, so it stays fast and memory-flat
for millions of captures. The build pages through ``temp.export_order`` by sequence number and notes
where records went in runs (``temp.export_runs``: one row per stretch of records laid out in a shard as
in their store file); :func:`save_captures` writes ``export_captures`` once at the end.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from . import __version__
from .catalog import Catalog
from .errors import ConfigError, ExportError
from .models import CatalogRecord, Selection
from .surt import surt

EXPORTED = "exported"
ALIAS = "alias"
LEFT_OUT_REASONS = ("post_cutoff", "mismatch", "transformed", "unverifiable", "revisit_unresolved")
ALIAS_REASONS = ("duplicate", "revisit")
NAME_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")
PAGE_ROWS = 2000
PLACEMENT_ROWS = 20_000  # rows of four integers
CACHE_KIB = 8 << 10  # SQLite page cache during an export (bounded: memory stays flat)

_SCHEMA = """
CREATE TABLE IF NOT EXISTS exports (
    id INTEGER PRIMARY KEY,
    name TEXT NOT NULL,
    destination TEXT NOT NULL,
    selection TEXT NOT NULL,
    formats TEXT NOT NULL,
    cutoff TEXT NOT NULL,
    created TEXT NOT NULL,
    tool_version TEXT NOT NULL,
    status TEXT NOT NULL,            -- planned | publishing | complete | failed
    counts TEXT,
    manifest_sha256 TEXT,
    started_at TEXT NOT NULL,
    finished_at TEXT
);
CREATE INDEX IF NOT EXISTS exports_name ON exports(name);
CREATE TABLE IF NOT EXISTS export_captures (
    export_id INTEGER NOT NULL,
    capture_id INTEGER NOT NULL,     -- captures.id
    role TEXT NOT NULL,              -- exported | alias | left_out
    reason TEXT,
    canonical_id INTEGER,            -- captures.id of the exported record holding the payload
    selected INTEGER NOT NULL DEFAULT 1,
    seq INTEGER,
    shard TEXT,
    shard_offset INTEGER,
    PRIMARY KEY (export_id, capture_id)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS export_captures_capture ON export_captures(capture_id);
"""

_RECORD_COLUMNS = (
    "c.record_key, c.url, c.urlkey, c.timestamp, c.capture_time, c.year, c.pre_cutoff, c.status, c.mime, "
    "c.digest, c.payload_sha1, c.record_type, c.record_id, f.path, c.offset, c.length, c.source, "
    "c.verification, c.verification_reason, c.refers_to_url, c.refers_to_date"
)


@dataclass(frozen=True, slots=True)
class ExportSpec:
    """What was asked for: recorded in the catalog and the manifest."""

    name: str
    destination: str
    selection: Selection
    formats: tuple[str, ...]

    def selection_json(self) -> str:
        return json.dumps(self.selection.describe(), sort_keys=True, separators=(",", ":"))


@dataclass
class PlanCounts:
    """How the selected captures were split (``selected`` = exported − brought_in + aliases + left out)."""

    selected: int = 0
    exported: int = 0
    brought_in: int = 0
    aliases: dict[str, int] = field(default_factory=lambda: dict.fromkeys(ALIAS_REASONS, 0))
    left_out: dict[str, int] = field(default_factory=lambda: dict.fromkeys(LEFT_OUT_REASONS, 0))
    exported_bytes: int = 0
    sources: dict[str, int] = field(default_factory=dict)

    def as_json(self) -> dict[str, Any]:
        return {
            "selected": self.selected,
            "exported": self.exported,
            "brought_in_for_revisits": self.brought_in,
            "aliases": dict(self.aliases),
            "aliases_total": sum(self.aliases.values()),
            "left_out": dict(self.left_out),
            "left_out_total": sum(self.left_out.values()),
        }


@dataclass(frozen=True, slots=True)
class ExportedRecord:
    """One record to copy, in export order (``seq`` from 0)."""

    seq: int
    record: CatalogRecord
    selected: bool


def ensure_tables(catalog: Catalog) -> None:
    """Create the export tables if this catalog has none yet."""
    if catalog.readonly:  # readers create nothing; callers check has_table
        return
    catalog.conn.executescript(_SCHEMA)


def validate_name(name: str) -> str:
    if not NAME_PATTERN.match(name):
        raise ConfigError(f"export name {name!r} must be 1-128 letters, digits, '.', '_' or '-' "
                          "(starting with a letter or digit)")
    return name


def start_export(catalog: Catalog, spec: ExportSpec, created: str | None, now: str) -> tuple[int, str]:
    """Register an export and return ``(export_id, created)``.

    ``created`` (the export's one timestamp) is the one given (``SOURCE_DATE_EPOCH``), else kept
    from an earlier run of the same export (same name, destination, selection, formats and cutoff)
    so a re-run rebuilds the same bytes, else ``now``.
    """
    ensure_tables(catalog)
    formats = ",".join(spec.formats)
    with catalog.transaction():
        row = catalog.conn.execute(
            "SELECT id, created FROM exports WHERE name = ? AND destination = ? AND selection = ? AND formats = ? "
            "AND cutoff = ? ORDER BY id DESC LIMIT 1",
            (spec.name, spec.destination, spec.selection_json(), formats, catalog.cutoff_iso),
        ).fetchone()
        if row is not None:
            export_id, previous = int(row[0]), str(row[1])
            catalog.conn.execute("DELETE FROM export_captures WHERE export_id = ?", (export_id,))
            catalog.conn.execute(
                "UPDATE exports SET created = ?, tool_version = ?, status = 'planned', counts = NULL, "
                "manifest_sha256 = NULL, started_at = strftime('%Y-%m-%dT%H:%M:%SZ','now'), finished_at = NULL "
                "WHERE id = ?", (created or previous, __version__, export_id))
            return export_id, created or previous
        created = created or now
        cur = catalog.conn.execute(
            "INSERT INTO exports(name, destination, selection, formats, cutoff, created, tool_version, status, "
            "started_at) VALUES (?, ?, ?, ?, ?, ?, ?, 'planned', strftime('%Y-%m-%dT%H:%M:%SZ','now'))",
            (spec.name, spec.destination, spec.selection_json(), formats, catalog.cutoff_iso, created, __version__),
        )
        return int(cur.lastrowid or 0), created


_LEFT_OUT_CASE = """CASE
    WHEN NOT (c.pre_cutoff AND c.capture_time < ?) THEN 'post_cutoff'
    WHEN c.record_type = 'revisit' THEN NULL
    WHEN c.verification = 'verified' AND c.record_type IN ('response', 'resource') AND c.digest IS NOT NULL THEN NULL
    WHEN c.verification IN ('mismatch', 'transformed') THEN c.verification
    ELSE 'unverifiable' END"""

_TEMP_SCHEMA = """
CREATE TEMP TABLE IF NOT EXISTS export_plan (
    capture_id INTEGER PRIMARY KEY, role TEXT NOT NULL, reason TEXT, holder INTEGER, selected INTEGER NOT NULL);
CREATE TEMP TABLE IF NOT EXISTS export_order (
    seq INTEGER PRIMARY KEY, capture_id INTEGER NOT NULL, selected INTEGER NOT NULL, source TEXT NOT NULL,
    file_id INTEGER NOT NULL, offset INTEGER NOT NULL, length INTEGER NOT NULL);
CREATE TEMP TABLE IF NOT EXISTS export_decided (
    capture_id INTEGER PRIMARY KEY, role TEXT NOT NULL, reason TEXT, canonical INTEGER, selected INTEGER NOT NULL,
    seq INTEGER);
CREATE INDEX IF NOT EXISTS temp.export_decided_seq ON export_decided(role, seq);
CREATE TEMP TABLE IF NOT EXISTS export_files (id INTEGER PRIMARY KEY, rank INTEGER NOT NULL);
CREATE TEMP TABLE IF NOT EXISTS export_runs (
    first_seq INTEGER PRIMARY KEY, shard TEXT NOT NULL, shard_offset INTEGER NOT NULL, file_offset INTEGER NOT NULL);
DELETE FROM temp.export_plan;
DELETE FROM temp.export_order;
DELETE FROM temp.export_decided;
DELETE FROM temp.export_files;
DELETE FROM temp.export_runs;
"""

# Every selected capture gets a role; a candidate whose digest no other capture of the catalog has
# holds its own payload (``holder`` = itself) and is exported without further search.
_PLAN = f"""
INSERT INTO temp.export_plan(capture_id, role, reason, holder, selected)
SELECT id, role, reason,
       CASE WHEN role = 'candidate' AND NOT EXISTS (
           SELECT 1 FROM captures h WHERE h.digest = s.digest AND h.id != s.id) THEN id END, 1
FROM (SELECT id, digest, reason, CASE WHEN reason IS NOT NULL THEN 'left_out'
             WHEN record_type = 'revisit' THEN 'revisit' ELSE 'candidate' END AS role
      FROM (SELECT c.id, c.digest, c.record_type, {_LEFT_OUT_CASE} AS reason FROM captures c{{where}})) s
"""

# The other candidates: the earliest candidate (then lowest record key) of each digest holds the
# payload and is exported; the later ones are its aliases (revisits already point at that record).
_HOLDERS = """
UPDATE temp.export_plan AS p SET holder = (
    SELECT h.id FROM captures h JOIN temp.export_plan q ON q.capture_id = h.id
    WHERE h.digest = c.digest AND q.role = 'candidate' ORDER BY h.capture_time, h.record_key LIMIT 1)
FROM captures c WHERE c.id = p.capture_id AND p.role = 'candidate' AND p.holder IS NULL
"""

# Exported records are numbered in store order (file path, offset: the store is read sequentially,
# back-to-back records in one read) into ``temp.export_order``, with where each lies in the store: rows
# inserted in that order into an emptied table holding only a row -1 get sequence numbers 0, 1, 2, ...
# (SQLite gives a new row the largest rowid plus one). Aliases are numbered in URL key / capture time /
# key order into ``temp.export_decided``, which also holds the left-out captures.
_DECIDE = (
    "INSERT INTO temp.export_files(id, rank) SELECT id, ROW_NUMBER() OVER (ORDER BY path) FROM files "
    "WHERE id IN (SELECT DISTINCT c.file_id FROM temp.export_plan p JOIN captures c ON c.id = p.capture_id "
    "WHERE p.role = 'candidate' AND p.holder = p.capture_id)",
    "INSERT INTO temp.export_order VALUES (-1, 0, 0, '', 0, 0, 0)",
    "INSERT INTO temp.export_order(capture_id, selected, source, file_id, offset, length) "
    "SELECT p.capture_id, p.selected, c.source, c.file_id, c.offset, c.length "
    "FROM temp.export_plan p JOIN captures c ON c.id = p.capture_id JOIN temp.export_files f ON f.id = c.file_id "
    "WHERE p.role = 'candidate' AND p.holder = p.capture_id ORDER BY f.rank, c.offset, c.record_key",
    "DELETE FROM temp.export_order WHERE seq = -1",
    "INSERT INTO temp.export_decided(capture_id, role, reason, canonical, selected, seq) "
    "SELECT p.capture_id, 'alias', CASE WHEN p.role = 'revisit' THEN 'revisit' ELSE 'duplicate' END, p.holder, "
    "p.selected, ROW_NUMBER() OVER (ORDER BY c.urlkey, c.capture_time, c.record_key) - 1 "
    "FROM temp.export_plan p JOIN captures c ON c.id = p.capture_id "
    "WHERE p.role = 'revisit' OR (p.role = 'candidate' AND p.holder != p.capture_id)",
    "INSERT INTO temp.export_decided(capture_id, role, reason, canonical, selected, seq) "
    "SELECT capture_id, 'left_out', reason, NULL, selected, NULL FROM temp.export_plan WHERE role = 'left_out'",
)


@contextmanager
def roomy_cache(catalog: Catalog, kib: int = CACHE_KIB) -> Iterator[None]:
    """A larger SQLite page cache for the length of an export (bounded: memory stays flat)."""
    previous = catalog.conn.execute("PRAGMA cache_size").fetchone()[0]
    catalog.conn.execute(f"PRAGMA cache_size = -{int(kib)}")
    try:
        yield
    finally:
        catalog.conn.execute(f"PRAGMA cache_size = {int(previous)}")


def plan_export(catalog: Catalog, export_id: int, selection: Selection) -> PlanCounts:
    """Decide the role of every selected capture, number the exported records, return the counts."""
    conn = catalog.conn
    where, params = catalog.selection_sql(selection)
    cutoff = catalog.cutoff_iso
    with catalog.transaction():
        _run_script(conn, _TEMP_SCHEMA)
        conn.execute(_PLAN.format(where=where), [cutoff, *params])
        _resolve_revisits(conn, cutoff)
        conn.execute(_HOLDERS)
        for statement in _DECIDE:
            conn.execute(statement)
    return plan_counts(catalog)


def _run_script(conn: Any, script: str) -> None:
    for statement in script.split(";"):
        if statement.strip():
            conn.execute(statement)


def _resolve_revisits(conn: Any, cutoff_iso: str) -> None:
    digest_of = "(SELECT digest FROM captures WHERE id = r.capture_id)"
    # 1. a selected candidate already holds the payload
    conn.execute(
        "UPDATE temp.export_plan AS r SET holder = ("
        "  SELECT h.id FROM captures h JOIN temp.export_plan p ON p.capture_id = h.id "
        f"  WHERE h.digest = {digest_of} AND p.role = 'candidate' ORDER BY h.capture_time, h.record_key LIMIT 1) "
        "WHERE r.role = 'revisit'")
    # 2. else the earliest verified pre-cutoff record of the catalog holding it, brought in
    conn.execute(
        "UPDATE temp.export_plan AS r SET holder = ("
        f"  SELECT h.id FROM captures h WHERE h.digest = {digest_of} "
        "  AND h.payload_sha1 = h.digest AND h.record_type IN ('response', 'resource') "
        "  AND h.verification = 'verified' AND h.pre_cutoff = 1 AND h.capture_time < ? "
        "  ORDER BY h.capture_time, h.record_key LIMIT 1) "
        "WHERE r.role = 'revisit' AND r.holder IS NULL", (cutoff_iso,))
    conn.execute(
        "INSERT OR IGNORE INTO temp.export_plan(capture_id, role, selected) "
        "SELECT DISTINCT holder, 'candidate', 0 FROM temp.export_plan WHERE role = 'revisit' AND holder IS NOT NULL")
    conn.execute("UPDATE temp.export_plan SET role = 'left_out', reason = 'revisit_unresolved' "
                 "WHERE role = 'revisit' AND holder IS NULL")


def plan_counts(catalog: Catalog) -> PlanCounts:
    """Counts of the export just planned (one pass over ``temp.export_order`` and ``temp.export_decided``)."""
    counts = PlanCounts()
    conn = catalog.conn
    for selected, source, n, size in conn.execute(
            "SELECT selected, source, count(*), sum(length) FROM temp.export_order GROUP BY selected, source"):
        counts.selected += n if selected else 0
        counts.exported += n
        counts.brought_in += 0 if selected else n
        counts.exported_bytes += int(size)
        counts.sources[str(source)] = counts.sources.get(str(source), 0) + n
    for role, reason, selected, n in conn.execute(
            "SELECT role, reason, selected, count(*) FROM temp.export_decided GROUP BY role, reason, selected"):
        counts.selected += n if selected else 0
        if role == ALIAS:
            counts.aliases[reason] = counts.aliases.get(reason, 0) + n
        else:
            counts.left_out[reason] = counts.left_out.get(reason, 0) + n
    counts.sources = dict(sorted(counts.sources.items()))
    return counts


def iter_exported(catalog: Catalog) -> Iterator[ExportedRecord]:
    """The exported records in export order (store file path, offset), a page at a time."""
    start = 0
    while True:
        rows = catalog.conn.execute(
            f"SELECT o.seq, o.selected, {_RECORD_COLUMNS} FROM temp.export_order o "
            "JOIN captures c ON c.id = o.capture_id JOIN files f ON f.id = c.file_id "
            "WHERE o.seq >= ? AND o.seq < ? ORDER BY o.seq",
            (start, start + PAGE_ROWS)).fetchall()
        if not rows:
            return
        for row in rows:
            values = list(row[2:])
            values[6] = bool(values[6])
            yield ExportedRecord(seq=int(row[0]), record=CatalogRecord(*values), selected=bool(row[1]))
        start += PAGE_ROWS


def iter_placements(catalog: Catalog) -> Iterator[tuple[int, int, int, int]]:
    """``(seq, file id, offset, length)`` of the exported records in export order, a page at a time."""
    start = 0
    while True:
        rows = catalog.conn.execute(
            "SELECT seq, file_id, offset, length FROM temp.export_order WHERE seq >= ? AND seq < ? ORDER BY seq",
            (start, start + PLACEMENT_ROWS)).fetchall()
        if not rows:
            return
        yield from rows
        start += PLACEMENT_ROWS


def file_path(catalog: Catalog, file_id: int) -> str:
    """The catalogued path of a store file."""
    row = catalog.conn.execute("SELECT path FROM files WHERE id = ?", (file_id,)).fetchone()
    if row is None:
        raise ExportError(f"store file #{file_id} is not in the catalog")
    return str(row[0])


def iter_aliases(catalog: Catalog) -> Iterator[dict[str, Any]]:
    """Every alias with the record it points at, in URL key / capture time order, a page at a time."""
    start = 0
    while True:
        rows = catalog.conn.execute(
            "SELECT c.record_key, c.url, c.capture_time, c.record_type, c.record_id, c.digest, d.reason, "
            "k.record_key, k.url, k.capture_time FROM temp.export_decided d "
            "JOIN captures c ON c.id = d.capture_id JOIN captures k ON k.id = d.canonical "
            "WHERE d.role = 'alias' AND d.seq >= ? AND d.seq < ? ORDER BY d.seq",
            (start, start + PAGE_ROWS)).fetchall()
        if not rows:
            return
        for row in rows:
            yield {"id": row[0], "url": row[1], "capture_time": row[2], "record_type": row[3],
                   "warc_record_id": row[4], "digest": row[5], "reason": row[6], "alias_of": row[7],
                   "alias_of_url": row[8], "alias_of_capture_time": row[9]}
        start += PAGE_ROWS


def record_runs(catalog: Catalog, runs: list[tuple[int, str, int, int]]) -> None:
    """Note where runs of exported records lie: ``(first seq, shard, offset in the shard, offset in the store
    file)``. The records after ``first seq`` up to the next run lie as far after it in the shard as in the store."""
    if runs:
        catalog.conn.executemany("INSERT OR REPLACE INTO temp.export_runs VALUES (?, ?, ?, ?)", runs)


# Where each exported record lies: in the run starting at or before it (each run's records are one range
# of sequence numbers), as far after the run's start in the shard as in the store file.
_SAVE_EXPORTED = """
WITH runs AS (
    SELECT first_seq, shard, shard_offset - file_offset AS delta,
           coalesce(LEAD(first_seq) OVER (ORDER BY first_seq), 9223372036854775807) AS end_seq
    FROM temp.export_runs)
INSERT INTO export_captures(export_id, capture_id, role, reason, canonical_id, selected, seq, shard, shard_offset)
SELECT ?, o.capture_id, 'exported', NULL, o.capture_id, o.selected, o.seq, r.shard, r.delta + o.offset
FROM runs r JOIN temp.export_order o ON o.seq >= r.first_seq AND o.seq < r.end_seq
"""

# Exported records when no WARC shard was written: no placement.
_SAVE_UNPLACED = """
INSERT INTO export_captures(export_id, capture_id, role, reason, canonical_id, selected, seq, shard, shard_offset)
SELECT ?, capture_id, 'exported', NULL, capture_id, selected, seq, NULL, NULL FROM temp.export_order
"""

_SAVE_OTHERS = """
INSERT INTO export_captures(export_id, capture_id, role, reason, canonical_id, selected, seq, shard, shard_offset)
SELECT ?, capture_id, role, reason, canonical, selected, seq, NULL, NULL FROM temp.export_decided
"""


def save_captures(catalog: Catalog, export_id: int) -> None:
    """Write the export's captures (roles, reasons, aliases' records, placements) to ``export_captures``."""
    conn = catalog.conn
    with catalog.transaction():
        conn.execute("DELETE FROM export_captures WHERE export_id = ?", (export_id,))
        placed = conn.execute("SELECT EXISTS (SELECT 1 FROM temp.export_runs)").fetchone()[0]
        conn.execute(_SAVE_EXPORTED if placed else _SAVE_UNPLACED, (export_id,))
        conn.execute(_SAVE_OTHERS, (export_id,))


def finish_export(catalog: Catalog, export_id: int, status: str, counts: dict[str, Any] | None = None,
                  manifest_sha256: str | None = None) -> None:
    with catalog.transaction():
        catalog.conn.execute(
            "UPDATE exports SET status = ?, counts = coalesce(?, counts), "
            "manifest_sha256 = coalesce(?, manifest_sha256), "
            "finished_at = strftime('%Y-%m-%dT%H:%M:%SZ','now') WHERE id = ?",
            (status, json.dumps(counts, sort_keys=True) if counts is not None else None, manifest_sha256, export_id))


def pending_publication(catalog: Catalog, name: str, destination: str) -> tuple[int, str] | None:
    """``(export_id, manifest_sha256)`` of an export of ``name`` to ``destination`` that was catalogued and
    then interrupted while being renamed into place (status ``publishing``), else None."""
    ensure_tables(catalog)
    row = catalog.conn.execute(
        "SELECT id, manifest_sha256 FROM exports WHERE name = ? AND destination = ? AND status = 'publishing' "
        "AND manifest_sha256 IS NOT NULL ORDER BY id DESC LIMIT 1", (name, destination)).fetchone()
    return (int(row[0]), str(row[1])) if row is not None else None


def exports_containing(catalog: Catalog, url: str | None = None) -> list[dict[str, Any]]:
    """Complete exports (newest first); with ``url``, only those holding a capture of it (exported or alias)."""
    ensure_tables(catalog)
    if not catalog.has_table("exports"):
        return []
    columns = "e.id, e.name, e.destination, e.created, e.cutoff, e.selection, e.formats, e.status, e.counts"
    if url is None:
        rows = catalog.conn.execute(f"SELECT {columns}, NULL FROM exports e WHERE e.status = 'complete' "
                                    "ORDER BY e.id DESC").fetchall()
    else:
        rows = catalog.conn.execute(
            f"SELECT {columns}, count(*) FROM captures c JOIN export_captures x ON x.capture_id = c.id "
            "JOIN exports e ON e.id = x.export_id WHERE c.urlkey = ? AND e.status = 'complete' "
            "AND x.role IN ('exported', 'alias') GROUP BY e.id ORDER BY e.id DESC", (surt(url),)).fetchall()
    out = []
    for row in rows:
        item: dict[str, Any] = {
            "id": row[0], "name": row[1], "destination": row[2], "created": row[3], "cutoff": row[4],
            "selection": json.loads(row[5]), "formats": row[6].split(","), "status": row[7],
            "counts": json.loads(row[8]) if row[8] else None}
        if url is not None:
            item["captures_of_url"] = row[9]
        out.append(item)
    return out
