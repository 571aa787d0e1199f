"""The capture catalog: one SQLite row per capture, keyed so no record is catalogued twice.

Tables:
- ``captures``: one row per response/resource/revisit record (``record_key`` unique);
- ``files``: every WARC/ARC file the catalog points into, with size, SHA-256 and state;
- ``year_counts``: per-year counts kept current on every write, so ``stats`` never scans;
- ``meta``: schema version and the cutoff the ``pre_cutoff`` flags were computed against.

Writes go through one transaction per chunk of records (``executemany``): sqlite-utils' own
``insert_all`` commits every ~100 rows, which is several times slower.
"""

from __future__ import annotations

import sqlite3
import sys
import time
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager, suppress
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .errors import CatalogError, ConfigError
from .models import MATCH_TYPES, CatalogRecord, Selection
from .surt import match_range, surt
from .timestamps import to_iso


def _import_sqlite_utils() -> Any:
    """``sqlite_utils``, imported without pandas and numpy.

    sqlite-utils imports both whenever they are installed (as they are beside any data pipeline), only to map
    their value types, which the catalog never passes. That import costs every command about 0.3 s and starts
    pyarrow's allocator threads, and a process with threads cannot fork its export workers safely."""
    if "sqlite_utils" in sys.modules:
        return sys.modules["sqlite_utils"]
    blocked = [name for name in ("pandas", "numpy") if name not in sys.modules]
    for name in blocked:
        sys.modules[name] = None  # type: ignore[assignment]  # import fails: sqlite-utils goes without it
    try:
        import sqlite_utils
    finally:
        for name in blocked:
            if sys.modules.get(name, False) is None:
                del sys.modules[name]
    return sqlite_utils


if TYPE_CHECKING:
    import sqlite_utils
else:
    sqlite_utils = _import_sqlite_utils()

SCHEMA_VERSION = 1
# connection settings while importing (see Catalog.bulk_writes): a 4 MiB page cache (SQLite's
# default is 2 MiB), and a WAL checkpoint every 10,000 pages rather than every 1,000
BULK_PRAGMAS = {"cache_size": -4096, "wal_autocheckpoint": 10_000}
BULK_COMMIT_ROWS = 50_000  # a bulk writer commits after this many rows
BULK_COMMIT_SECONDS = 2.0  # or once its transaction is this old

CAPTURE_COLUMNS: tuple[str, ...] = (
    "record_key", "url", "urlkey", "timestamp", "capture_time", "year", "pre_cutoff", "status", "mime",
    "digest", "payload_sha1", "record_type", "record_id", "file_id", "offset", "length", "source",
    "verification", "verification_reason", "refers_to_url", "refers_to_date",
)

_SCHEMA = """
CREATE TABLE IF NOT EXISTS files (
    id INTEGER PRIMARY KEY,
    path TEXT NOT NULL UNIQUE,
    size INTEGER,
    sha256 TEXT,
    mtime REAL,
    source TEXT NOT NULL,
    status TEXT NOT NULL,          -- importing | complete | partial | writing
    records INTEGER NOT NULL DEFAULT 0,
    error TEXT,
    added_at TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS files_sha256 ON files(sha256);
CREATE TABLE IF NOT EXISTS captures (
    id INTEGER PRIMARY KEY,
    record_key TEXT NOT NULL UNIQUE,
    url TEXT NOT NULL,
    urlkey TEXT NOT NULL,
    timestamp TEXT NOT NULL,
    capture_time TEXT NOT NULL,
    year INTEGER NOT NULL,
    pre_cutoff INTEGER NOT NULL,
    status INTEGER,
    mime TEXT,
    digest TEXT,
    payload_sha1 TEXT,
    record_type TEXT NOT NULL,
    record_id TEXT,
    file_id INTEGER NOT NULL REFERENCES files(id),
    offset INTEGER NOT NULL,
    length INTEGER NOT NULL,
    source TEXT NOT NULL,
    verification TEXT NOT NULL,
    verification_reason TEXT,
    refers_to_url TEXT,
    refers_to_date TEXT
);
CREATE INDEX IF NOT EXISTS captures_urlkey_ts ON captures(urlkey, timestamp);
CREATE INDEX IF NOT EXISTS captures_time ON captures(capture_time);
CREATE INDEX IF NOT EXISTS captures_digest ON captures(digest);
CREATE INDEX IF NOT EXISTS captures_file ON captures(file_id, offset);
CREATE TABLE IF NOT EXISTS year_counts (
    year INTEGER NOT NULL,
    source TEXT NOT NULL,
    pre_cutoff INTEGER NOT NULL,
    verification TEXT NOT NULL,
    n INTEGER NOT NULL,
    PRIMARY KEY (year, source, pre_cutoff, verification)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
"""

_INSERT = (
    f"INSERT OR IGNORE INTO captures ({', '.join(CAPTURE_COLUMNS)}) "
    f"VALUES ({', '.join('?' for _ in CAPTURE_COLUMNS)})"
)

_SELECT = (
    "SELECT c.record_key, c.url, c.urlkey, c.timestamp, c.capture_time, c.year, c.pre_cutoff, c.status, "
    "c.mime, c.digest, c.payload_sha1, c.record_type, c.record_id, f.path, c.offset, c.length, c.source, "
    "c.verification, c.verification_reason, c.refers_to_url, c.refers_to_date "
    "FROM captures c JOIN files f ON f.id = c.file_id"
)


def _record(row: Sequence[Any]) -> CatalogRecord:
    values = list(row)
    values[6] = bool(values[6])
    return CatalogRecord(*values)


class Catalog:
    """The catalog of one workspace. Open it with :meth:`open`; pass it to importers and jobs."""

    def __init__(self, db: sqlite_utils.Database, cutoff: datetime) -> None:
        self.db = db
        self.conn: sqlite3.Connection = db.conn
        self.cutoff = cutoff
        self.cutoff_iso = to_iso(cutoff)
        self.readonly = False
        self.cutoff_is_stale = False

    @classmethod
    def open(cls, path: Path, cutoff: datetime, *, readonly: bool = False) -> Catalog:
        """Open (creating if needed) the catalog at ``path`` in WAL mode, recomputing ``pre_cutoff``
        if the cutoff changed since the last run.

        ``readonly`` opens for reading only and writes nothing at all (no schema, no recompute), so
        queries work while a writer holds the workspace, and on read-only media. Callers that hold
        the workspace lock open writable; a read-only catalog whose cutoff differs from ``cutoff``
        reports it in :attr:`cutoff_is_stale`.
        """
        if readonly:
            return cls._open_readonly(path, cutoff)
        try:
            conn = sqlite3.connect(str(path), timeout=30.0, isolation_level=None)
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=NORMAL")
            conn.execute("PRAGMA foreign_keys=OFF")
            catalog = cls(sqlite_utils.Database(conn), cutoff)
            catalog._ensure_schema()
        except sqlite3.DatabaseError as exc:
            raise CatalogError(f"cannot open catalog {path}: {exc}") from None
        return catalog

    @classmethod
    def _open_readonly(cls, path: Path, cutoff: datetime) -> Catalog:
        if not path.exists():
            raise CatalogError(f"no catalog at {path} yet (import or sync something first)")
        uri = path.resolve().as_uri()
        last_error: Exception | None = None
        # mode=ro needs the -shm file (or a writable directory to make it); immutable=1 reads a
        # catalog on read-only media, where no writer can be running anyway.
        for query in ("mode=ro", "mode=ro&immutable=1"):
            try:
                conn = sqlite3.connect(f"{uri}?{query}", uri=True, timeout=30.0, isolation_level=None)
                has_meta = conn.execute("SELECT count(*) FROM sqlite_master WHERE type = 'table' "
                                        "AND name = 'meta'").fetchone()[0]
                break
            except sqlite3.DatabaseError as exc:
                last_error = exc
        else:
            raise CatalogError(f"cannot open catalog {path} for reading: {last_error}") from None
        if not has_meta:
            # The first writer has created the file but not its schema yet: read an empty catalog.
            conn.close()
            conn = sqlite3.connect(":memory:", isolation_level=None)
            conn.executescript(_SCHEMA)
        catalog = cls(sqlite_utils.Database(conn), cutoff)
        catalog.readonly = True
        version = catalog.get_meta("schema_version")
        if version is not None and int(version) > SCHEMA_VERSION:
            raise CatalogError(f"catalog schema {version} is newer than this archivekeeper ({SCHEMA_VERSION})")
        catalog.cutoff_is_stale = catalog.get_meta("cutoff") != catalog.cutoff_iso
        return catalog

    def has_table(self, name: str) -> bool:
        return self.conn.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?",
                                 (name,)).fetchone() is not None

    def close(self) -> None:
        self.conn.close()

    def _ensure_schema(self) -> None:
        self.conn.executescript(_SCHEMA)
        with self.transaction():
            version = self.get_meta("schema_version")
            if version is None:
                self.set_meta("schema_version", str(SCHEMA_VERSION))
            elif int(version) > SCHEMA_VERSION:
                raise CatalogError(f"catalog schema {version} is newer than this archivekeeper ({SCHEMA_VERSION})")
        stored_cutoff = self.get_meta("cutoff")
        if stored_cutoff != self.cutoff_iso:
            self.recompute_cutoff()

    # -- transactions and meta -------------------------------------------------------------
    def transaction(self) -> _Transaction:
        """``with catalog.transaction():`` — one atomic write (nested uses join the outer one)."""
        return _Transaction(self.conn)

    def get_meta(self, key: str) -> str | None:
        row = self.conn.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return None if row is None else str(row[0])

    def set_meta(self, key: str, value: str) -> None:
        self.conn.execute("INSERT OR REPLACE INTO meta(key, value) VALUES (?, ?)", (key, value))

    def recompute_cutoff(self) -> int:
        """Recompute every ``pre_cutoff`` flag against the current cutoff; returns rows changed."""
        with self.transaction():
            cur = self.conn.execute(
                "UPDATE captures SET pre_cutoff = (capture_time < ?) WHERE pre_cutoff != (capture_time < ?)",
                (self.cutoff_iso, self.cutoff_iso),
            )
            self.rebuild_counts()
            self.set_meta("cutoff", self.cutoff_iso)
        return cur.rowcount

    def rebuild_counts(self) -> None:
        """Recount ``year_counts`` from the captures (after bulk changes)."""
        with self.transaction():
            self.conn.execute("DELETE FROM year_counts")
            self.conn.execute(
                "INSERT INTO year_counts(year, source, pre_cutoff, verification, n) "
                "SELECT year, source, pre_cutoff, verification, count(*) FROM captures "
                "GROUP BY year, source, pre_cutoff, verification"
            )

    # -- files -----------------------------------------------------------------------------
    def file_by_path(self, path: str) -> dict[str, Any] | None:
        rows = list(self.db.query("SELECT * FROM files WHERE path = ?", [path]))
        return rows[0] if rows else None

    def files_by_sha256(self, sha256: str) -> list[dict[str, Any]]:
        return list(self.db.query("SELECT * FROM files WHERE sha256 = ?", [sha256]))

    def file_by_id(self, file_id: int) -> dict[str, Any] | None:
        rows = list(self.db.query("SELECT * FROM files WHERE id = ?", [file_id]))
        return rows[0] if rows else None

    def register_file(self, path: str, *, source: str, status: str, size: int | None = None,
                      sha256: str | None = None, mtime: float | None = None) -> int:
        """Add a file (or reset the state of a known one) and return its id."""
        with self.transaction():
            existing = self.file_by_path(path)
            if existing is not None:
                self.conn.execute(
                    "UPDATE files SET status = ?, size = coalesce(?, size), sha256 = coalesce(?, sha256), "
                    "mtime = coalesce(?, mtime), error = NULL WHERE id = ?",
                    (status, size, sha256, mtime, existing["id"]),
                )
                return int(existing["id"])
            cur = self.conn.execute(
                "INSERT INTO files(path, size, sha256, mtime, source, status, added_at) "
                "VALUES (?, ?, ?, ?, ?, ?, strftime('%Y-%m-%dT%H:%M:%SZ','now'))",
                (path, size, sha256, mtime, source, status),
            )
            return int(cur.lastrowid or 0)

    def update_file(self, file_id: int, **values: Any) -> None:
        allowed = {"path", "size", "sha256", "mtime", "status", "records", "error"}
        unknown = set(values) - allowed
        if unknown:
            raise CatalogError(f"unknown file columns: {sorted(unknown)}")
        assignments = ", ".join(f"{key} = ?" for key in values)
        self.conn.execute(f"UPDATE files SET {assignments} WHERE id = ?", (*values.values(), file_id))

    def file_records(self, file_id: int) -> int:
        return int(self.conn.execute("SELECT count(*) FROM captures WHERE file_id = ?", (file_id,)).fetchone()[0])

    # -- captures --------------------------------------------------------------------------
    def insert_rows(self, rows: Sequence[Sequence[Any]]) -> int:
        """Insert capture rows (tuples in ``CAPTURE_COLUMNS`` order) in one transaction.

        Rows whose ``record_key`` is already catalogued are skipped. Returns how many were new.
        ``year_counts`` is updated in the same transaction from the rows actually inserted. The
        ``pre_cutoff`` flags are checked against the cutoff the catalog holds at that moment, so a
        cutoff changed by another connection meanwhile can never leave a row flagged against the old one.
        """
        if not rows:
            return 0
        with self.transaction():
            stored_cutoff = self.get_meta("cutoff") or self.cutoff_iso
            if stored_cutoff != self.cutoff_iso:
                rows = [(*row[:6], int(row[4] < stored_cutoff), *row[7:]) for row in rows]
            last_id = self.conn.execute("SELECT coalesce(max(id), 0) FROM captures").fetchone()[0]
            before = self.conn.total_changes
            self.conn.executemany(_INSERT, rows)
            inserted = self.conn.total_changes - before
            if inserted:
                self.conn.execute(
                    "INSERT INTO year_counts(year, source, pre_cutoff, verification, n) "
                    "SELECT year, source, pre_cutoff, verification, count(*) FROM captures WHERE id > ? "
                    "GROUP BY year, source, pre_cutoff, verification "
                    "ON CONFLICT(year, source, pre_cutoff, verification) DO UPDATE SET n = n + excluded.n",
                    (last_id,),
                )
        return inserted

    @contextmanager
    def bulk_writes(self) -> Iterator[BulkWriter]:
        """``with catalog.bulk_writes() as writer:`` — a long run of inserts through ``writer.insert_rows``.

        The writer keeps one transaction open across many chunks and commits every
        ``BULK_COMMIT_ROWS`` rows or ``BULK_COMMIT_SECONDS`` (and on leaving the block; an error
        rolls back the open transaction only). Other writes meanwhile (``transaction()``) join it.
        The connection gets a larger page cache (fixed, so memory stays the same whatever the
        input size) and rarer WAL checkpoints; both are restored on leaving. Fewer, larger
        transactions cost the random-key indexes far fewer page writes per row.
        """
        saved = {name: self.conn.execute(f"PRAGMA {name}").fetchone()[0] for name in BULK_PRAGMAS}
        for name, value in BULK_PRAGMAS.items():
            self.conn.execute(f"PRAGMA {name}={value}")
        writer = BulkWriter(self)
        try:
            yield writer
            writer.commit()
        finally:
            writer.rollback()  # only after an error: a clean exit has committed
            for name, value in saved.items():
                self.conn.execute(f"PRAGMA {name}={int(value)}")

    def row_for(self, record: CatalogRecord, file_id: int) -> tuple[Any, ...]:
        """A record as an insert row (``CAPTURE_COLUMNS`` order)."""
        return (
            record.record_key, record.url, record.urlkey, record.timestamp, record.capture_time,
            record.year, int(record.capture_time < self.cutoff_iso), record.status, record.mime,
            record.digest, record.payload_sha1, record.record_type, record.record_id, file_id,
            record.offset, record.length, record.source, record.verification,
            record.verification_reason, record.refers_to_url, record.refers_to_date,
        )

    def has_record(self, record_key: str) -> bool:
        return self.conn.execute("SELECT 1 FROM captures WHERE record_key = ?", (record_key,)).fetchone() is not None

    def _where(self, selection: Selection) -> tuple[str, list[Any]]:
        clauses: list[str] = []
        params: list[Any] = []
        if selection.url is not None:
            if selection.match not in MATCH_TYPES:
                raise ConfigError(f"unknown match type {selection.match!r} (exact, prefix, host or domain)")
            if selection.match == "exact":
                clauses.append("c.urlkey = ?")
                params.append(surt(selection.url))
            else:
                low, high = match_range(selection.url, selection.match)
                clauses.append("c.urlkey >= ? AND c.urlkey < ?")
                params += [low, high]
        simple = (
            ("c.capture_time >= ?", selection.date_from),
            ("c.capture_time <= ?", selection.date_to),
            ("c.pre_cutoff = ?", None if selection.pre_cutoff is None else int(selection.pre_cutoff)),
            ("c.status = ?", selection.status),
            ("c.mime = ?", selection.mime.lower() if selection.mime is not None else None),
            ("c.verification = ?", selection.verification),
            ("c.source = ?", selection.source),
        )
        for clause, value in simple:
            if value is not None:
                clauses.append(clause)
                params.append(value)
        if selection.record_types is not None:
            clauses.append(f"c.record_type IN ({', '.join('?' for _ in selection.record_types)})")
            params += list(selection.record_types)
        return (" WHERE " + " AND ".join(clauses)) if clauses else "", params

    def query(self, selection: Selection, *, limit: int | None = None,
              order: str = "c.urlkey, c.timestamp, c.id") -> Iterator[CatalogRecord]:
        """Stream the captures a selection covers, ordered by URL key then time."""
        where, params = self._where(selection)
        sql = f"{_SELECT}{where} ORDER BY {order}"
        if limit is not None:
            sql += " LIMIT ?"
            params.append(limit)
        for row in self.conn.execute(sql, params):
            yield _record(row)

    def count(self, selection: Selection) -> int:
        where, params = self._where(selection)
        return int(self.conn.execute(f"SELECT count(*) FROM captures c{where}", params).fetchone()[0])

    def total(self) -> int:
        return int(self.conn.execute("SELECT coalesce(sum(n), 0) FROM year_counts").fetchone()[0])

    def closest(self, url: str, at: str | None = None) -> CatalogRecord | None:
        """The capture of ``url`` closest in time to ``at`` (14 digits), or the latest one."""
        key = surt(url)
        if at is None:
            rows = list(self.conn.execute(f"{_SELECT} WHERE c.urlkey = ? ORDER BY c.timestamp DESC LIMIT 1", (key,)))
            return _record(rows[0]) if rows else None
        after = list(self.conn.execute(
            f"{_SELECT} WHERE c.urlkey = ? AND c.timestamp >= ? ORDER BY c.timestamp LIMIT 1", (key, at)))
        before = list(self.conn.execute(
            f"{_SELECT} WHERE c.urlkey = ? AND c.timestamp < ? ORDER BY c.timestamp DESC LIMIT 1", (key, at)))
        candidates = [_record(r) for r in after + before]
        if not candidates:
            return None
        return min(candidates, key=lambda rec: abs(int(rec.timestamp) - int(at)) if len(at) == 14 else 0)

    def stats(self) -> list[dict[str, Any]]:
        """Captures per year and source, split by the cutoff (from the kept counts, no scan)."""
        rows = self.conn.execute(
            "SELECT year, source, "
            "sum(CASE WHEN pre_cutoff THEN n ELSE 0 END), sum(CASE WHEN pre_cutoff THEN 0 ELSE n END), "
            "sum(CASE WHEN pre_cutoff AND verification = 'verified' THEN n ELSE 0 END), sum(n) "
            "FROM year_counts GROUP BY year, source ORDER BY year, source"
        )
        return [
            {"year": year, "source": source, "pre_cutoff": pre, "post_cutoff": post,
             "pre_cutoff_verified": verified, "total": total}
            for year, source, pre, post, verified, total in rows
        ]

    # -- used by sync (added for the fetcher) ----------------------------------------------------
    def files_with_status(self, status: str) -> list[dict[str, Any]]:
        """Every file in a given state (e.g. ``writing``: left open by a killed writer)."""
        return list(self.db.query("SELECT * FROM files WHERE status = ? ORDER BY id", [status]))

    def forget_file(self, file_id: int) -> None:
        """Drop a file row that no capture points into (an empty file a killed writer left)."""
        with self.transaction():
            if self.file_records(file_id):
                raise CatalogError(f"file {file_id} still holds catalogued captures")
            self.conn.execute("DELETE FROM files WHERE id = ?", (file_id,))

    def payload_holder(self, digest: str) -> CatalogRecord | None:
        """A verified response/resource whose payload has this digest (to resolve a revisit)."""
        rows = list(self.conn.execute(
            f"{_SELECT} WHERE c.digest = ? AND c.record_type IN ('response', 'resource') "
            "AND c.verification = 'verified' AND f.status IN ('complete', 'writing') ORDER BY c.id LIMIT 1",
            (digest,)))
        return _record(rows[0]) if rows else None

    # -- used by export --------------------------------------------------------------------------
    def selection_sql(self, selection: Selection) -> tuple[str, list[Any]]:
        """The ``WHERE`` clause (on ``captures c``, empty when no filter) and parameters of a selection."""
        return self._where(selection)


class BulkWriter:
    """Inserts through long transactions (see :meth:`Catalog.bulk_writes`)."""

    def __init__(self, catalog: Catalog) -> None:
        self.catalog = catalog
        self.open = False  # a transaction this writer began is open
        self._rows = 0
        self._began = 0.0

    def insert_rows(self, rows: Sequence[Sequence[Any]]) -> int:
        """:meth:`Catalog.insert_rows` inside the writer's transaction (begun if need be); maybe commit.

        Inside a transaction someone else opened, it only joins it."""
        conn = self.catalog.conn
        if not conn.in_transaction:
            try:
                conn.execute("BEGIN IMMEDIATE")
            except sqlite3.DatabaseError as error:
                raise CatalogError(f"cannot write the catalog: {error}") from None
            self.open, self._rows, self._began = True, 0, time.monotonic()
        inserted = self.catalog.insert_rows(rows)
        self._rows += len(rows)
        if self._rows >= BULK_COMMIT_ROWS or time.monotonic() - self._began >= BULK_COMMIT_SECONDS:
            self.commit()
        return inserted

    def commit(self) -> None:
        if self.open and self.catalog.conn.in_transaction:
            try:
                self.catalog.conn.execute("COMMIT")
            except sqlite3.DatabaseError as error:  # a full disk shows up here: one clear line, no traceback
                self.rollback()
                raise CatalogError(f"cannot write the catalog: {error}") from None
        self.open = False

    def rollback(self) -> None:
        if self.open and self.catalog.conn.in_transaction:
            with suppress(sqlite3.DatabaseError):  # SQLite may have rolled back already (I/O error)
                self.catalog.conn.execute("ROLLBACK")
        self.open = False


class _Transaction:
    """BEGIN/COMMIT around a block, or a SAVEPOINT when already inside a transaction."""

    def __init__(self, conn: sqlite3.Connection) -> None:
        self.conn = conn
        self.nested = False

    def __enter__(self) -> None:
        self.nested = self.conn.in_transaction
        if not self.nested:
            try:
                self.conn.execute("BEGIN IMMEDIATE")
            except sqlite3.DatabaseError as error:
                raise CatalogError(f"cannot write the catalog: {error}") from None

    def __exit__(self, exc_type: object, exc: object, tb: object) -> None:
        if self.nested:
            return
        if exc_type is None:
            try:
                self.conn.execute("COMMIT")
                return
            except sqlite3.DatabaseError as error:  # a full disk shows up here
                exc = error
        if self.conn.in_transaction:  # SQLite may have rolled back already (I/O error, full disk)
            with suppress(sqlite3.DatabaseError):
                self.conn.execute("ROLLBACK")
        if isinstance(exc, sqlite3.DatabaseError):  # translated at this one seam: one clear line, no traceback
            raise CatalogError(f"cannot write the catalog: {exc}") from None


def iter_chunks(items: Iterable[Any], size: int) -> Iterator[list[Any]]:
    """Split an iterable into lists of ``size``."""
    chunk: list[Any] = []
    for item in items:
        chunk.append(item)
        if len(chunk) >= size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk
