"""Resource bounds: a record bigger than 2 GiB is streamed, not buffered, by a child whose address space is
capped far below its size (``RLIMIT_AS``); a Content-Length past 2**31 survives the import and the read-back.
A CDX answer of a million lines (IA JSON array, pywb NDJSON), generated lazily by a server of the test's own,
is planned into the catalog batch by batch: the planner's peak RSS does not grow with the answer."""

from __future__ import annotations

import base64
import hashlib
import json
import sqlite3
import subprocess
import sys
import threading
import uuid
import zlib
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from crashkit import MEMORY_LIMIT, SCALE, Limits, ak_argv, child_env, record, run_ak

BIG = (2 << 30) + 1  # one byte past 2 GiB: any 32-bit length overflows
URL = "http://big.example/zeros.bin"
CHUNK = b"\0" * (1 << 24)


def zeros(total: int) -> list[bytes]:
    out, left = [], total
    while left:
        out.append(CHUNK[:min(len(CHUNK), left)])
        left -= len(out[-1])
    return out


def write_big_warc(path: Path) -> str:
    """A one-record .warc.gz whose resource payload is ``BIG`` zero bytes (about 9 MB compressed)."""
    digest = hashlib.sha1()
    for piece in zeros(BIG):
        digest.update(piece)
    claimed = "sha1:" + base64.b32encode(digest.digest()).decode()
    head = (f"WARC/1.0\r\nWARC-Type: resource\r\nWARC-Record-ID: <urn:uuid:{uuid.UUID(int=7)}>\r\n"
            f"WARC-Date: 2020-02-02T02:02:02Z\r\nWARC-Target-URI: {URL}\r\nContent-Type: application/octet-stream\r\n"
            f"WARC-Payload-Digest: {claimed}\r\nWARC-Block-Digest: {claimed}\r\nContent-Length: {BIG}\r\n\r\n")
    packer = zlib.compressobj(1, zlib.DEFLATED, 31)
    with open(path, "wb") as out:
        out.write(packer.compress(head.encode()))
        for piece in zeros(BIG):
            out.write(packer.compress(piece))
        out.write(packer.compress(b"\r\n\r\n"))
        out.write(packer.flush())
    return claimed


def test_a_record_over_2_gib_is_streamed_not_buffered(tmp_path: Path) -> None:
    claimed = write_big_warc(tmp_path / "big.warc.gz")
    limits = Limits(address_space=MEMORY_LIMIT)  # a quarter of the record
    outcome = run_ak(tmp_path / "ws", "import", str(tmp_path / "big.warc.gz"), "--json", limits=limits, timeout=600)
    handled = 0
    try:
        outcome.assert_clean_failure_or_success()
        assert outcome.returncode == 0, outcome.describe()
        with sqlite3.connect(tmp_path / "ws" / "catalog.db") as conn:
            rows = conn.execute("SELECT verification, payload_sha1, digest, length, offset FROM captures").fetchall()
        assert rows == [("verified", claimed, claimed, (tmp_path / "big.warc.gz").stat().st_size, 0)], rows
        if SCALE > 1:  # full mode: read it back through `show --payload`, streamed to us, under the same cap
            argv = ak_argv(tmp_path / "ws", "show", URL, "--payload")
            proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=child_env(),
                                    preexec_fn=limits.apply)
            assert proc.stdout is not None
            digest, size = hashlib.sha1(), 0
            while piece := proc.stdout.read(1 << 20):
                digest.update(piece)
                size += len(piece)
            assert proc.wait(timeout=600) == 0, proc.stderr.read() if proc.stderr else b""
            assert size == BIG and "sha1:" + base64.b32encode(digest.digest()).decode() == claimed
        handled = 1
    finally:
        record("import", "fault", "record over 2 GiB under a 512 MiB memory cap", injected=1, handled=handled)


# -- a CDX answer of a million lines ---------------------------------------------------------------------

MILLION = 1_000_000
SMALL_ANSWER = 10_000
# Peak RSS of planning a 1,000,000-row answer may exceed that of a 10,000-row one by at most this much: the
# catalog's SQLite page cache grows with the plan table (a few MB) and the spooled answer is on disk; the
# answer held whole (1M rows as Python lists or captures) would take well over 500 MB.
PLAN_RSS_SLACK = 64 << 20

_PLAN_CHILD = """
import json, resource, sys
from pathlib import Path
from archivekeeper.catalog import Catalog
from archivekeeper.sources import open_source
from archivekeeper.sources.base import SyncQuery
from archivekeeper.sync import SyncJob
from archivekeeper.workspace import Workspace

root, source, base_url, into_catalog = Path(sys.argv[1]), sys.argv[2], sys.argv[3], sys.argv[4] == "1"
workspace = Workspace.open(root)
catalog = Catalog.open(workspace.catalog_path, workspace.settings.cutoff)
opened = open_source(source, workspace.settings, cache_dir=root / "cache", base_url=base_url)
query = SyncQuery(url="big.example", match="domain", date_to="20221231235959")
if into_catalog:  # the whole planning step, rows stored page by page
    added = SyncJob(workspace, catalog, opened, query).plan()
else:  # the source's planning generator: request, spool, parse, page (no catalog writes: CI-sized)
    added = sum(len(page.captures) for page in opened.plan(query, None))
print(json.dumps({"added": added, "rss_kb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss}))
"""


class _CdxHandler(BaseHTTPRequestHandler):
    """Answers any CDX query with ``server.rows`` generated captures, chunked, never built whole: an IA JSON
    array on ``/cdx/search/cdx`` (no resume key: one page, whatever limit asked), pywb NDJSON on ``/coll/cdx``."""

    protocol_version = "HTTP/1.1"

    def do_GET(self) -> None:  # noqa: N802 (http.server's name)
        rows: int = self.server.rows  # type: ignore[attr-defined]
        ia = self.path.startswith("/cdx/search/cdx")
        self.send_response(200)
        self.send_header("Content-Type", "application/json" if ia else "text/x-ndjson")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        lines = _ia_lines(rows) if ia else _ndjson_lines(rows)
        for piece in _pieces(lines):
            self.wfile.write(b"%x\r\n%s\r\n" % (len(piece), piece))
        self.wfile.write(b"0\r\n\r\n")

    def log_message(self, *args: object) -> None:
        pass


def _row(n: int) -> tuple[str, str, str]:
    stamp = f"20{10 + n % 12:02d}{1 + n % 12:02d}{1 + n % 28:02d}{n % 24:02d}{n % 60:02d}{(n // 60) % 60:02d}"
    return f"com,example,big)/p{n}", stamp, f"http://big.example/p{n}"


def _ia_lines(rows: int) -> Iterator[bytes]:
    yield b'[["urlkey","timestamp","original","mimetype","statuscode","digest","length"]'
    for n in range(rows):
        key, stamp, url = _row(n)
        digest = f"AAAAAAAAAAAAAAAAAAAAAAAAAAAA{n % 10000:04d}"
        yield f',\n["{key}","{stamp}","{url}","text/html","200","{digest}","{n}"]'.encode()
    yield b"]\n"


def _ndjson_lines(rows: int) -> Iterator[bytes]:
    for n in range(rows):
        key, stamp, url = _row(n)
        yield (f'{{"urlkey": "{key}", "timestamp": "{stamp}", "url": "{url}", "mime": "text/html", '
               f'"status": "200", "digest": "AAAAAAAAAAAAAAAAAAAAAAAAAAAA{n % 10000:04d}", "length": "{n}", '
               f'"offset": "0", "filename": "big.warc.gz"}}\n').encode()


def _pieces(lines: Iterator[bytes], size: int = 1 << 16) -> Iterator[bytes]:
    buffer: list[bytes] = []
    held = 0
    for line in lines:
        buffer.append(line)
        held += len(line)
        if held >= size:
            yield b"".join(buffer)
            buffer, held = [], 0
    if buffer:
        yield b"".join(buffer)


def _plan_rss(tmp_path: Path, source: str, base_url: str) -> tuple[int, int]:
    """(captures planned, peak RSS in bytes) of planning a sync job in a fresh child."""
    root = tmp_path / f"ws-{uuid.uuid4().hex[:8]}"
    argv = [sys.executable, "-c", _PLAN_CHILD, str(root), source, base_url, str(int(SCALE > 1))]
    proc = subprocess.run(argv, capture_output=True,
                          text=True, env=child_env({"ARCHIVEKEEPER_CONTACT": "archivist@example.org"}), timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]
    data = json.loads(proc.stdout.strip().splitlines()[-1])
    return int(data["added"]), int(data["rss_kb"]) * 1024


@pytest.mark.parametrize("source", ["wayback", "pywb"])
def test_a_cdx_answer_of_a_million_lines_is_planned_in_bounded_memory(tmp_path: Path, source: str) -> None:
    """A CDX answer of 1,000,000 captures in one response (an IA JSON array whose server ignored ``limit``,
    or a pywb collection without a paged index) is parsed and planned batch by batch: peak RSS of the child
    stays within ``PLAN_RSS_SLACK`` of that of a 10,000-line answer. CI runs the source's planning generator;
    full mode (``SCALE`` > 1) the whole planning step, into the catalog."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), _CdxHandler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    handled = 0
    try:
        base = f"http://127.0.0.1:{server.server_address[1]}"
        target = ("wayback", base) if source == "wayback" else (f"{base}/coll", "")
        peaks = {}
        for rows in (SMALL_ANSWER, MILLION):
            server.rows = rows  # type: ignore[attr-defined]
            added, peaks[rows] = _plan_rss(tmp_path, *target)
            assert added == rows, (rows, added)
        grew = peaks[MILLION] - peaks[SMALL_ANSWER]
        assert grew <= PLAN_RSS_SLACK, f"peak RSS {peaks[SMALL_ANSWER] >> 20} MB -> {peaks[MILLION] >> 20} MB"
        handled = 1
    finally:
        server.shutdown()
        server.server_close()
        record("sync", "fault", f"CDX answer of {MILLION:,} lines ({source})", injected=1, handled=handled)
