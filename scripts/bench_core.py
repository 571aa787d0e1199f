"""``scripts/bench``: import, catalog and query figures, each beside a baseline measured in the same run.

Sections:
- ``import``: plain warcio iteration, a FastWARC loop, a FastWARC + SHA-1 + SHA-256 loop and one that also
  hashes every block (what checking ``WARC-Block-Digest`` costs; one core)
  against ``Importer`` on one file and on four (with the CPU it kept busy), and the peak RSS of an
  import of ~100 MB against ~2 GB of input;
- ``catalog``: raw ``sqlite3`` ``executemany`` in one transaction into the catalog's own table and
  indexes, and sqlite-utils ``insert_all``, against ``Catalog.insert_rows`` in the importer's chunks;
- ``query``: a catalog of 10 million generated captures (1 million with ``--quick``): URL prefix +
  date range through ``Catalog.query`` against the same SQL run raw, and ``stats`` against a scan;
- ``sync`` / ``export``: ``scripts/bench_sync.py`` / ``scripts/bench_export.py``, when present.

Every timed run happens in a fresh subprocess (``--child``), so CPU time and peak RSS are its own.
Inputs are generated once and cached in ``$ARCHIVEKEEPER_BENCH_DIR`` (default
``/tmp/archivekeeper-bench``).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import random
import resource
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

SCRIPTS = Path(__file__).resolve().parent
sys.path.insert(0, str(SCRIPTS))

import benchgen  # noqa: E402

BENCH_DIR = Path(os.environ.get("ARCHIVEKEEPER_BENCH_DIR", Path(tempfile.gettempdir()) / "archivekeeper-bench"))
EXTERNAL_SECTIONS = {"sync": SCRIPTS / "bench_sync.py", "export": SCRIPTS / "bench_export.py"}
SECTIONS = ("import", "catalog", "query", "sync", "export")


@dataclass(frozen=True)
class Sizes:
    single_records: int  # one file for the single-file figures
    multi_files: int
    multi_records: int  # per file
    rss_small: int  # records in the small and the large RSS inputs
    rss_large: int
    repeats: int  # best of this many runs for every throughput
    catalog_rows: int
    query_rows: int
    queries: int


FULL = Sizes(single_records=20_000, multi_files=4, multi_records=10_000, rss_small=11_400, rss_large=227_000,
             repeats=5, catalog_rows=200_000, query_rows=10_000_000, queries=200)
QUICK = Sizes(single_records=8_000, multi_files=4, multi_records=3_000, rss_small=11_400, rss_large=45_500,
              repeats=3, catalog_rows=50_000, query_rows=1_000_000, queries=100)


# -- output --------------------------------------------------------------------------------------

def heading(text: str) -> None:
    print(f"\n== {text} ==", flush=True)


def figure(kind: str, label: str, value: str, *notes: str) -> None:
    print(f"  {kind:<9}{label:<52}{value:>14}   {'   '.join(notes)}".rstrip(), flush=True)


def versus(ours: float, base: float, name: str, target: float | None = None, lower_is_better: bool = False) -> str:
    ratio = ours / base if base else float("inf")
    text = f"{ratio:.2f}x {name}"
    if target is not None:
        ok = ratio <= target if lower_is_better else ratio >= target
        text += f" (target {'<=' if lower_is_better else '>='} {target:.2f}: {'met' if ok else 'NOT MET'})"
    return text


def mb(size: int) -> str:
    return f"{size / 1e6:,.1f} MB"


# -- children: one timed piece of work in a fresh interpreter ---------------------------------------

def child_main(kind: str, args: list[str]) -> None:
    import fastwarc.warc  # noqa: F401  (imports are not part of any figure)
    import warcio.archiveiterator  # noqa: F401

    import archivekeeper.importer  # noqa: F401

    started_cpu = _cpu()
    if kind == "import":
        out = _child_import(Path(args[0]), args[1:])
    elif kind in _LOOPS:
        started = time.perf_counter()
        records = _LOOPS[kind](args[0])
        out = {"seconds": time.perf_counter() - started, "records": records}
    else:
        raise SystemExit(f"unknown child {kind}")
    out["cpu"] = _cpu() - started_cpu
    out["rss_main_kb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    out["rss_workers_kb"] = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    print(json.dumps(out))


def _cpu() -> float:
    own = resource.getrusage(resource.RUSAGE_SELF)
    kids = resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + kids.ru_utime + kids.ru_stime


def _child_import(workspace_dir: Path, files: list[str]) -> dict[str, Any]:
    from archivekeeper.catalog import Catalog
    from archivekeeper.importer import Importer
    from archivekeeper.workspace import Workspace

    workspace = Workspace.open(workspace_dir, env={})
    catalog = Catalog.open(workspace.catalog_path, workspace.settings.cutoff)
    cpu_before = _cpu()
    started = time.perf_counter()
    summary = Importer(workspace, catalog).run(files)
    seconds = time.perf_counter() - started
    data = summary.as_json()
    if data["errors"] or data["records_new"] == 0:
        raise SystemExit(f"import failed: {data['errors'][:3]}")
    return {"seconds": seconds, "records": data["records_new"], "import_cpu": _cpu() - cpu_before}


def _loop_warcio(path: str) -> int:
    from warcio.archiveiterator import ArchiveIterator

    records = 0
    with open(path, "rb") as handle:
        for record in ArchiveIterator(handle):
            stream = record.raw_stream
            while stream.read(1 << 16):
                pass
            records += 1
    return records


def _loop_fastwarc(path: str) -> int:
    from fastwarc.warc import ArchiveIterator

    records = 0
    with open(path, "rb") as handle:
        for record in ArchiveIterator(handle, parse_http=True):
            read = record.reader.read
            while read(1 << 16):
                pass
            records += 1
    return records


class _Sha256Reader:
    """The file as FastWARC reads it, every byte fed into SHA-256 on the way."""

    def __init__(self, raw: Any) -> None:
        self.raw = raw
        self.sha256 = hashlib.sha256()

    def read(self, size: int = -1) -> bytes:
        data = self.raw.read(size)
        self.sha256.update(data)
        return data

    def tell(self) -> int:
        return int(self.raw.tell())

    def seek(self, offset: int, whence: int = 0) -> int:
        return int(self.raw.seek(offset, whence))

    def close(self) -> None:
        self.raw.close()


def _loop_fastwarc_digests(path: str) -> int:
    from fastwarc.warc import ArchiveIterator

    records = 0
    with open(path, "rb") as handle:
        reader = _Sha256Reader(handle)
        for record in ArchiveIterator(reader, parse_http=True):
            sha1 = hashlib.sha1()
            read = record.reader.read
            while chunk := read(1 << 16):
                sha1.update(chunk)
            sha1.digest()
            records += 1
        while reader.read(1 << 20):
            pass
        reader.sha256.hexdigest()
    return records


def _loop_fastwarc_blocks(path: str) -> int:
    """As ``fastwarc-digests``, and every block's SHA-1 too (what checking WARC-Block-Digest costs at least)."""
    from fastwarc.warc import ArchiveIterator

    records = 0
    with open(path, "rb") as handle:
        reader = _Sha256Reader(handle)
        for record in ArchiveIterator(reader, parse_http=False):
            block, sha1 = hashlib.sha1(), hashlib.sha1()
            read = record.reader.read
            first = read(1 << 16)
            block.update(first)
            sha1.update(first[first.find(b"\r\n\r\n") + 4:] if record.is_http else first)
            while chunk := read(1 << 16):
                block.update(chunk)
                sha1.update(chunk)
            block.digest(), sha1.digest()
            records += 1
        while reader.read(1 << 20):
            pass
        reader.sha256.hexdigest()
    return records


_LOOPS: dict[str, Callable[[str], int]] = {
    "warcio": _loop_warcio, "fastwarc": _loop_fastwarc, "fastwarc-digests": _loop_fastwarc_digests,
    "fastwarc-blocks": _loop_fastwarc_blocks,
}


def run_child(kind: str, *args: str) -> dict[str, Any]:
    proc = subprocess.run([sys.executable, str(Path(__file__)), "--child", kind, *args],
                          capture_output=True, text=True)
    if proc.returncode != 0:
        raise SystemExit(f"bench child {kind} failed:\n{proc.stderr[-3000:]}")
    return dict(json.loads(proc.stdout.strip().splitlines()[-1]))


# -- import ------------------------------------------------------------------------------------------

def section_import(sizes: Sizes, quick: bool) -> None:
    cores = os.cpu_count() or 1
    tag = "quick" if quick else "full"
    [single] = benchgen.ensure_warcs(BENCH_DIR, f"single-{tag}", sizes.single_records)
    multi = benchgen.ensure_warcs(BENCH_DIR, f"multi-{tag}", sizes.multi_records, sizes.multi_files)
    size = single.stat().st_size
    heading(f"import: 1 file, {mb(size)}, {sizes.single_records:,} HTML records, per-record gzip "
            f"(best of {sizes.repeats}; {cores} cores)")
    best: dict[str, float] = {}
    cpu: dict[str, float] = {}
    for _ in range(sizes.repeats):  # interleaved, so a busy moment hurts every figure alike
        for kind in ("warcio", "fastwarc", "fastwarc-digests", "fastwarc-blocks", "import", "import-multi"):
            with tempfile.TemporaryDirectory(dir=BENCH_DIR) as work:
                if kind == "import-multi":
                    out = run_child("import", str(Path(work) / "ws"), *map(str, multi))
                elif kind == "import":
                    out = run_child(kind, str(Path(work) / "ws"), str(single))
                else:
                    out = run_child(kind, str(single))
            if out["seconds"] < best.get(kind, float("inf")):
                best[kind] = out["seconds"]
                cpu[kind] = out.get("import_cpu", out["cpu"])
    rate = {kind: size / 1e6 / seconds for kind, seconds in best.items() if kind != "import-multi"}
    cpu_note = {kind: f"CPU {cpu[kind]:.2f} s" for kind in cpu}
    figure("baseline", "warcio ArchiveIterator, reading every payload", f"{rate['warcio']:.1f} MB/s",
           cpu_note["warcio"])
    figure("baseline", "fastwarc ArchiveIterator, reading every payload", f"{rate['fastwarc']:.1f} MB/s",
           versus(rate["fastwarc"], rate["warcio"], "warcio"), cpu_note["fastwarc"])
    figure("baseline", "fastwarc + SHA-1 of payloads + SHA-256 of file", f"{rate['fastwarc-digests']:.1f} MB/s",
           versus(rate["fastwarc-digests"], rate["warcio"], "warcio"), "one core, one pass",
           cpu_note["fastwarc-digests"])
    figure("baseline", "fastwarc + SHA-1 of payloads and of blocks + SHA-256 of file",
           f"{rate['fastwarc-blocks']:.1f} MB/s", versus(rate["fastwarc-blocks"], rate["warcio"], "warcio"),
           "one core, one pass: what WARC-Block-Digest checks cost at least", cpu_note["fastwarc-blocks"])
    figure("ours", "Importer, 1 file (scan, both digests, catalog writes)", f"{rate['import']:.1f} MB/s",
           versus(rate["import"], rate["warcio"], "warcio", 1.5),
           versus(rate["import"], rate["fastwarc-digests"], "fastwarc+digests", 0.8),
           versus(rate["import"], rate["fastwarc-blocks"], "fastwarc+block digests"),
           f"{cpu['import'] / best['import']:.2f} cores busy, {cpu_note['import']} "
           f"({cpu['import'] / cpu['fastwarc-digests']:.2f}x the fastwarc+digests loop's)")

    total = sum(p.stat().st_size for p in multi)
    heading(f"import: {len(multi)} files, {mb(total)} in all (best of {sizes.repeats}, run between the above)")
    multi_rate = total / 1e6 / best["import-multi"]
    busy = cpu["import-multi"] / best["import-multi"]
    figure("ours", f"Importer, {len(multi)} files", f"{multi_rate:.1f} MB/s",
           versus(multi_rate, rate["import"], "ours on 1 file"),
           versus(multi_rate, rate["fastwarc-digests"], "fastwarc+digests on 1 core"))
    figure("ours", "CPU busy during that import (process CPU / wall)", f"{busy:.2f} cores",
           versus(busy, float(cores), f"the {cores} cores", 0.85 if cores > 1 else None))

    small = benchgen.ensure_warcs(BENCH_DIR, "rss-small", sizes.rss_small)[0]
    large = benchgen.ensure_warcs(BENCH_DIR, "rss-large", sizes.rss_large)[0]
    heading("import: peak RSS (one import in a fresh subprocess per input)")
    peaks = {}
    for path in (small, large):
        with tempfile.TemporaryDirectory(dir=BENCH_DIR) as work:
            out = run_child("import", str(Path(work) / "ws"), str(path))
        peaks[path] = out
        rate_here = path.stat().st_size / 1e6 / out["seconds"]
        peak = max(out["rss_main_kb"], out["rss_workers_kb"]) / 1024
        notes = [f"main {out['rss_main_kb'] / 1024:.0f} MB, worker {out['rss_workers_kb'] / 1024:.0f} MB",
                 f"{out['records']:,} records at {rate_here:.0f} MB/s"]
        if path == large:
            base = max(peaks[small]["rss_main_kb"], peaks[small]["rss_workers_kb"]) / 1024
            notes.insert(0, versus(peak, base, f"the {mb(small.stat().st_size)} peak", 1.10, lower_is_better=True))
        label = "baseline" if path == small else "ours"
        figure(label, f"peak RSS importing {mb(path.stat().st_size)}", f"{peak:.0f} MB", *notes)


# -- catalog writes ------------------------------------------------------------------------------------

def synthetic_rows(count: int, seed: int = 5) -> list[tuple[Any, ...]]:
    """Capture rows (``CAPTURE_COLUMNS`` order) that look like an import's."""
    rng = random.Random(seed)
    hosts = [f"www.site{n}.example.{rng.choice(['com', 'org', 'net', 'de'])}" for n in range(2000)]
    rows = []
    for n in range(count):
        host = rng.choice(hosts)
        section = rng.randrange(10)
        path = f"/section{section}/{rng.getrandbits(32):08x}/{n}.html"
        url = f"https://{host}{path}"
        urlkey = ",".join(reversed(host[4:].split("."))) + ")" + path
        year = 2015 + rng.randrange(10)
        day = f"{year}{rng.randint(1, 12):02d}{rng.randint(1, 28):02d}"
        stamp = f"{day}{rng.randrange(24):02d}{rng.randrange(60):02d}00"
        iso = f"{stamp[:4]}-{stamp[4:6]}-{stamp[6:8]}T{stamp[8:10]}:{stamp[10:12]}:{stamp[12:14]}Z"
        digest = "sha1:" + hashlib.sha1(n.to_bytes(8, "big")).hexdigest().upper()[:32]
        rows.append((
            hashlib.sha1(f"{seed}-{n}".encode()).hexdigest(), url, urlkey, stamp, iso, year,
            int(iso < "2023-01-01T00:00:00Z"), 200, "text/html", digest, digest, "response",
            f"<urn:uuid:{rng.getrandbits(128):032x}>", 1, n * 8800, 8800, "import", "verified", None, None, None,
        ))
    return rows


def _fresh_db(path: Path) -> sqlite3.Connection:
    from archivekeeper import catalog

    conn = sqlite3.connect(str(path), isolation_level=None)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=NORMAL")
    conn.executescript(catalog._SCHEMA)
    return conn


def _write_raw(path: Path, rows: Sequence[tuple[Any, ...]]) -> float:
    from archivekeeper.catalog import CAPTURE_COLUMNS

    conn = _fresh_db(path)
    sql = f"INSERT INTO captures ({', '.join(CAPTURE_COLUMNS)}) VALUES ({', '.join('?' * len(CAPTURE_COLUMNS))})"
    started = time.perf_counter()
    conn.execute("BEGIN")
    conn.executemany(sql, rows)
    conn.execute("COMMIT")
    seconds = time.perf_counter() - started
    conn.close()
    return seconds


def _write_sqlite_utils(path: Path, rows: Sequence[tuple[Any, ...]]) -> float:
    import sqlite_utils

    from archivekeeper.catalog import CAPTURE_COLUMNS

    conn = _fresh_db(path)
    db = sqlite_utils.Database(conn)
    records = [dict(zip(CAPTURE_COLUMNS, row, strict=True)) for row in rows]
    started = time.perf_counter()
    db.table("captures").insert_all(records)
    seconds = time.perf_counter() - started
    conn.close()
    return seconds


def _write_catalog(path: Path, rows: Sequence[tuple[Any, ...]], chunk: int, bulk: bool) -> float:
    """Rows through ``Catalog.insert_rows`` in ``chunk``-row calls: each its own transaction, or (``bulk``)
    through ``Catalog.bulk_writes``, as ``Importer`` writes them."""
    from archivekeeper.catalog import Catalog
    from archivekeeper.config import DEFAULT_CUTOFF

    catalog = Catalog.open(path, DEFAULT_CUTOFF)
    started = time.perf_counter()
    if bulk:
        with catalog.bulk_writes() as writer:
            for start in range(0, len(rows), chunk):
                writer.insert_rows(rows[start:start + chunk])
    else:
        for start in range(0, len(rows), chunk):
            catalog.insert_rows(rows[start:start + chunk])
    seconds = time.perf_counter() - started
    catalog.close()
    return seconds


def section_catalog(sizes: Sizes) -> None:
    from archivekeeper.catalog import BULK_COMMIT_ROWS
    from archivekeeper.importer import CHUNK_ROWS

    rows = synthetic_rows(sizes.catalog_rows)
    heading(f"catalog writes: {len(rows):,} capture rows into the catalog's table + its 5 indexes, WAL "
            f"(best of {sizes.repeats})")
    best: dict[str, float] = {}
    writers: dict[str, Callable[[Path, Sequence[tuple[Any, ...]]], float]] = {
        "raw": _write_raw, "sqlite-utils": _write_sqlite_utils,
        "bulk": lambda path, rows: _write_catalog(path, rows, CHUNK_ROWS, bulk=True),
        "chunks": lambda path, rows: _write_catalog(path, rows, 5_000, bulk=False),
    }
    for repeat in range(sizes.repeats):
        for name, write in writers.items():
            if name == "sqlite-utils" and repeat:
                continue  # a reference only, and slow: once is enough
            with tempfile.TemporaryDirectory(dir=BENCH_DIR) as work:
                seconds = write(Path(work) / "catalog.db", rows)
            best[name] = min(best.get(name, float("inf")), seconds)
    rate = {name: len(rows) / seconds for name, seconds in best.items()}
    figure("baseline", "raw sqlite3 executemany, one transaction", f"{rate['raw']:,.0f} rows/s")
    figure("baseline", "sqlite-utils insert_all", f"{rate['sqlite-utils']:,.0f} rows/s",
           versus(rate["sqlite-utils"], rate["raw"], "raw executemany"))
    figure("ours", f"import's writes: {CHUNK_ROWS:,}-row insert_rows, bulk_writes", f"{rate['bulk']:,.0f} rows/s",
           versus(rate["bulk"], rate["raw"], "raw executemany", 0.7),
           f"(a commit per {BULK_COMMIT_ROWS:,} rows or 2 s; + year_counts)")
    figure("ours", "Catalog.insert_rows, 5,000-row transactions", f"{rate['chunks']:,.0f} rows/s",
           versus(rate["chunks"], rate["raw"], "raw executemany"), "(a transaction per call, default pragmas)")


# -- queries -------------------------------------------------------------------------------------------

QUERY_HOSTS = 5000
QUERY_SECTIONS = 10
QUERY_FILES = 100
_FILL_VERSION = 2


def query_catalog(rows: int) -> Path:
    """A cached catalog of ``rows`` generated captures (rebuilt when the catalog schema changes)."""
    from archivekeeper import catalog

    fingerprint = hashlib.sha1(f"{_FILL_VERSION}{catalog._SCHEMA}".encode()).hexdigest()[:10]
    path = BENCH_DIR / f"catalog-{rows}-{fingerprint}.db"
    if path.exists():
        return path
    BENCH_DIR.mkdir(parents=True, exist_ok=True)
    for stale in BENCH_DIR.glob(f"catalog-{rows}-*.db*"):
        stale.unlink()
    print(f"  (generating a {rows:,}-capture catalog in {path}, once)", flush=True)
    started = time.perf_counter()
    tmp = path.with_name(path.name + ".part")
    tmp.unlink(missing_ok=True)
    conn = sqlite3.connect(str(tmp), isolation_level=None)
    conn.execute("PRAGMA journal_mode=OFF")
    conn.execute("PRAGMA synchronous=OFF")
    conn.execute("PRAGMA cache_size=-1000000")
    conn.executescript(catalog._SCHEMA)
    indexes = [r[0] for r in conn.execute("SELECT sql FROM sqlite_master WHERE type='index' AND "
                                          "tbl_name='captures' AND sql IS NOT NULL")]
    for (name,) in list(conn.execute("SELECT name FROM sqlite_master WHERE type='index' AND tbl_name='captures' "
                                     "AND sql IS NOT NULL")):
        conn.execute(f"DROP INDEX {name}")
    conn.execute("BEGIN")
    conn.executemany("INSERT INTO files(id, path, size, source, status, records, added_at) "
                     "VALUES (?, ?, 1000000000, 'import', 'complete', 0, '2024-01-01T00:00:00Z')",
                     [(n, f"store/bench-{n:03d}.warc.gz") for n in range(1, QUERY_FILES + 1)])
    columns = ", ".join(catalog.CAPTURE_COLUMNS)
    # rows made in SQL from their number: host, section, time and keys all derive from n
    conn.execute(f"""
        WITH RECURSIVE seq(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM seq WHERE n < {rows}),
        base AS (
            -- skewed like real archives: host h holds a share ~ 1/sqrt(h) (the biggest ~1.4%)
            SELECT n, CAST({QUERY_HOSTS} * ((n * 2654435761) % 1000003) / 1000003.0
                               * ((n * 2654435761) % 1000003) / 1000003.0 AS INTEGER) AS host,
                   (n * 31) % {QUERY_SECTIONS} AS section,
                   1420070400 + (n * 40503 * 7919) % 315532800 AS t FROM seq
        ),
        named AS (
            SELECT n, host, t, '/section' || section || '/' || printf('%08x', (n * 40503) % 4294967296)
                   || '/' || n || '.html' AS path FROM base
        )
        INSERT INTO captures ({columns})
        SELECT printf('%016x%016x%08x', n * 2654435761, n * 40503 + 977, n),
               'https://www.site' || host || '.example.com' || path,
               'com,example,site' || host || ')' || path,
               strftime('%Y%m%d%H%M%S', t, 'unixepoch'),
               strftime('%Y-%m-%dT%H:%M:%SZ', t, 'unixepoch'),
               CAST(strftime('%Y', t, 'unixepoch') AS INTEGER),
               strftime('%Y-%m-%dT%H:%M:%SZ', t, 'unixepoch') < '2023-01-01T00:00:00Z',
               CASE WHEN n % 20 = 0 THEN 404 ELSE 200 END, 'text/html',
               'sha1:' || printf('%016X%016X', n * 2654435761, n * 1103515245 + 12345),
               'sha1:' || printf('%016X%016X', n * 2654435761, n * 1103515245 + 12345),
               'response', '<urn:uuid:' || printf('%016x%016x', n * 1103515245 + 12345, n) || '>',
               1 + n % {QUERY_FILES}, (n / {QUERY_FILES}) * 8800, 8800,
               CASE WHEN n % 3 = 0 THEN 'wayback' ELSE 'import' END, 'verified', NULL, NULL, NULL
        FROM named
    """)
    conn.execute("COMMIT")
    for sql in indexes:
        conn.execute(sql)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("ANALYZE")
    conn.close()
    from archivekeeper.catalog import Catalog
    from archivekeeper.config import DEFAULT_CUTOFF

    filled = Catalog.open(tmp, DEFAULT_CUTOFF)
    filled.set_meta("cutoff", filled.cutoff_iso)
    filled.rebuild_counts()
    filled.conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    filled.close()
    os.replace(tmp, path)
    for suffix in ("-wal", "-shm"):
        Path(str(tmp) + suffix).unlink(missing_ok=True)
    print(f"  (generated in {time.perf_counter() - started:.0f} s, {mb(path.stat().st_size)})", flush=True)
    return path


def _query_plan(rng: random.Random) -> tuple[str, str, str]:
    host = rng.randrange(QUERY_HOSTS)
    url = f"https://www.site{host}.example.com/"
    if rng.random() < 0.5:
        url += f"section{rng.randrange(QUERY_SECTIONS)}/"
    year = rng.randint(2015, 2024)
    if rng.random() < 0.5:
        return url, f"{year}-01-01T00:00:00Z", f"{year}-12-31T23:59:59Z"
    month = rng.randint(1, 10)
    return url, f"{year}-{month:02d}-01T00:00:00Z", f"{year}-{month + 2:02d}-28T23:59:59Z"


def _p(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def section_query(sizes: Sizes) -> None:
    from archivekeeper.catalog import Catalog
    from archivekeeper.config import DEFAULT_CUTOFF
    from archivekeeper.models import Selection
    from archivekeeper.surt import match_range

    path = query_catalog(sizes.query_rows)
    heading(f"queries: catalog of {sizes.query_rows:,} captures ({mb(path.stat().st_size)}), "
            f"{sizes.queries} URL prefix + date range queries (each run once untimed first)")
    catalog = Catalog.open(path, DEFAULT_CUTOFF)
    raw = sqlite3.connect(str(path))
    rng = random.Random(11)
    plans = [_query_plan(rng) for _ in range(sizes.queries)]
    ours: list[float] = []
    base: list[float] = []
    found: list[int] = []
    for url, low, high in plans:
        key_low, key_high = match_range(url, "prefix")
        list(catalog.query(Selection(url=url, match="prefix", date_from=low, date_to=high)))  # warm both alike
        started = time.perf_counter()
        rows = raw.execute("SELECT * FROM captures WHERE urlkey >= ? AND urlkey < ? AND capture_time >= ? "
                           "AND capture_time <= ? ORDER BY urlkey, timestamp",
                           (key_low, key_high, low, high)).fetchall()
        base.append(time.perf_counter() - started)
        started = time.perf_counter()
        records = list(catalog.query(Selection(url=url, match="prefix", date_from=low, date_to=high)))
        ours.append(time.perf_counter() - started)
        if len(records) != len(rows):
            raise SystemExit(f"query mismatch for {url} {low}..{high}: {len(records)} != {len(rows)}")
        found.append(len(records))
    figure("baseline", "raw sqlite3: urlkey range + capture_time range, p95", f"{_p(base, 0.95) * 1000:.1f} ms",
           f"p50 {_p(base, 0.5) * 1000:.1f} ms")
    figure("ours", "Catalog.query(prefix + date range), all rows, p95", f"{_p(ours, 0.95) * 1000:.1f} ms",
           versus(_p(ours, 0.95), _p(base, 0.95), "raw sqlite3"),
           f"{_p(ours, 0.95) * 1000 / 50:.2f}x the 50 ms target ({'met' if _p(ours, 0.95) < 0.05 else 'NOT MET'})",
           f"p50 {_p(ours, 0.5) * 1000:.1f} ms, {statistics.mean(found):.0f} rows on average")

    stats_runs = []
    for _ in range(5):
        started = time.perf_counter()
        catalog.stats()
        stats_runs.append(time.perf_counter() - started)
    started = time.perf_counter()
    raw.execute("SELECT year, source, sum(pre_cutoff), sum(1 - pre_cutoff), "
                "sum(pre_cutoff AND verification = 'verified'), count(*) FROM captures "
                "GROUP BY year, source ORDER BY year, source").fetchall()
    scan = time.perf_counter() - started
    figure("baseline", "stats by a scan of captures (GROUP BY year, source)", f"{scan * 1000:.0f} ms")
    ours_stats = statistics.median(stats_runs)
    figure("ours", "Catalog.stats() (kept per-year counts), median of 5", f"{ours_stats * 1000:.2f} ms",
           versus(ours_stats, scan, "the scan"),
           f"{ours_stats * 1000 / 300:.4f}x the 300 ms target ({'met' if ours_stats < 0.3 else 'NOT MET'})")
    catalog.close()
    raw.close()


# -- driver ------------------------------------------------------------------------------------------

def _load() -> str:
    try:
        return " ".join(f"{value:.2f}" for value in os.getloadavg())
    except OSError:
        return "unknown"


def run_external(name: str, quick: bool) -> None:
    script = EXTERNAL_SECTIONS[name]
    if not script.exists():
        heading(f"{name}: skipped ({script.relative_to(SCRIPTS.parent)} not present)")
        return
    subprocess.run([sys.executable, str(script), *(["--quick"] if quick else [])], check=True)


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="scripts/bench", description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="smaller inputs (under ~2 minutes)")
    parser.add_argument("--section", choices=[*SECTIONS, "all"], default="all")
    parser.add_argument("--child", nargs="+", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        child_main(args.child[0], args.child[1:])
        return
    sizes = QUICK if args.quick else FULL
    BENCH_DIR.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    from importlib.metadata import version

    print(f"archivekeeper bench ({'quick' if args.quick else 'full'}): {os.cpu_count()} cores, "
          f"Python {platform.python_version()}, SQLite {sqlite3.sqlite_version}, fastwarc {version('fastwarc')}, "
          f"warcio {version('warcio')}, sqlite-utils {version('sqlite-utils')}; data in {BENCH_DIR}")
    print(f"load average at start: {_load()} (other work on the machine lowers every figure; the ratios "
          "compare runs interleaved in this one)")
    chosen = SECTIONS if args.section == "all" else (args.section,)
    for name in chosen:
        if name == "import":
            section_import(sizes, args.quick)
        elif name == "catalog":
            section_catalog(sizes)
        elif name == "query":
            section_query(sizes)
        else:
            run_external(name, args.quick)
    print(f"\nbench finished in {time.perf_counter() - started:.0f} s; load average at the end: {_load()}", flush=True)


if __name__ == "__main__":
    main()
