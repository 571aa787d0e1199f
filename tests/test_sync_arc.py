"""ARC records read by range: Common Crawl's oldest crawls, and a CDX server pointing at ARC files.

The crawl index is pywb over the real ARC files of ``../shared/realdata`` (``example.arc.gz``,
``example.arc``, warcio's ``example-space-in-url.arc``); the files themselves are served by the
tests' Range-capable file server, like data.commoncrawl.org. Each ARC record becomes a WARC
``response`` record of ours whose block is the ARC block as stored.
"""

from __future__ import annotations

import gzip
import json
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
from conftest import FaultServerFactory, PywbFactory
from servers import Fault, FaultServer, PywbServer, RangeFileServer
from sync_support import arc_collections, crawl_index, shared_site, sync_archive
from test_sync import FAST_ENV
from typer.testing import CliRunner
from warcio.archiveiterator import ArchiveIterator

from archivekeeper.catalog import Catalog
from archivekeeper.cli import app
from archivekeeper.digests import sha1_base32
from archivekeeper.models import MISMATCH, VERIFIED, Selection
from archivekeeper.workspace import Workspace

GZ_CRAWL, PLAIN_CRAWL, SHORT_CRAWL = "CC-MAIN-2009-2010", "CC-MAIN-2008-2009", "CC-MAIN-2012"
DIGEST = "sha1:B2LTWWPUOYAH7UIPQ7ZUPQ4VMBSVC36A"  # the payload of example.com in example.arc(.gz)
HEADER_LINE = "http://example.com/ 93.184.216.119 20140216050221 text/html 1591"


@pytest.fixture(scope="module")
def pywb(pywb_factory: PywbFactory, realdata: Path, tmp_path_factory: pytest.TempPathFactory) -> PywbServer:
    return sync_archive(pywb_factory, realdata, shared_site(tmp_path_factory.getbasetemp())[0])


@pytest.fixture
def arcs(realdata: Path, tmp_path: Path) -> Path:
    """The ARC files as the data host serves them (a copy each test may damage)."""
    folder = tmp_path / "data"
    folder.mkdir()
    for files in arc_collections(realdata).values():
        for path in files:
            shutil.copy(path, folder / path.name)
    return folder


@pytest.fixture
def data(arcs: Path) -> Iterator[RangeFileServer]:
    with RangeFileServer(arcs) as server:
        yield server


@pytest.fixture
def index(pywb: PywbServer, tmp_path: Path, fault_server_factory: FaultServerFactory) -> FaultServer:
    """collinfo.json with three ARC-era crawls, each crawl's CDX API a pywb collection of ARC files."""
    return crawl_index(fault_server_factory, pywb.base_url, tmp_path / "index-static", [
        {"id": SHORT_CRAWL, "name": "2012", "cdx-api": "/short/cdx"},
        {"id": GZ_CRAWL, "name": "2009-2010", "cdx-api": "/arc/cdx"},
        {"id": PLAIN_CRAWL, "name": "2008-2009", "cdx-api": "/arcplain/cdx"},
    ])


def env_for(index: FaultServer, data_url: str) -> dict[str, str]:
    return {**FAST_ENV, "ARCHIVEKEEPER_COMMONCRAWL_BASE_URL": index.base_url,
            "ARCHIVEKEEPER_COMMONCRAWL_DATA_URL": data_url}


def run(ws: Path, env: dict[str, str], *args: str, source: str = "commoncrawl") -> tuple[int, Any, str]:
    result = CliRunner().invoke(app, ["-w", str(ws), "sync", source, *args, "--json"], env=env)
    return result.exit_code, json.loads(result.stdout) if result.stdout.strip() else None, result.output


def records_of(ws: Path) -> list[tuple[str, Any, bytes]]:
    """(file name, record, its whole content) of every record sync wrote, in file order."""
    out = []
    for path in sorted((ws / "store").rglob("*.warc.gz")):
        with open(path, "rb") as handle:
            for record in ArchiveIterator(handle, check_digests=True):
                out.append((path.name, record, record.content_stream().read() if record.rec_type == "metadata"
                            else record.raw_stream.read()))
                assert not record.digest_checker.problems, record.digest_checker.problems
    return out


def arc_block(path: Path, offset: int, length: int) -> tuple[bytes, bytes]:
    """(header line, block) of the ARC record at ``offset`` of ``path``, as stored."""
    with open(path, "rb") as handle:
        handle.seek(offset)
        raw = handle.read(length)
    plain = gzip.decompress(raw) if raw[:2] == b"\x1f\x8b" else raw
    line, _, rest = plain.partition(b"\n")
    return line, rest[: int(line.rsplit(b" ", 1)[1])]


def open_catalog(ws: Path, env: dict[str, str]) -> Catalog:
    workspace = Workspace.open(ws, env=env)
    return Catalog.open(workspace.catalog_path, workspace.settings.cutoff)


@pytest.mark.parametrize(("crawl", "filename", "offset", "length"), [
    (GZ_CRAWL, "example.arc.gz", 171, 856), (PLAIN_CRAWL, "example.arc", 151, 1656)], ids=["arc.gz", "arc"])
def test_arc_record_becomes_a_verified_warc_response(tmp_path: Path, index: FaultServer, data: RangeFileServer,
                                                     arcs: Path, crawl: str, filename: str, offset: int,
                                                     length: int) -> None:
    env = env_for(index, data.base_url)
    code, summary, output = run(tmp_path / "ws", env, "http://example.com/", "--crawl", crawl)
    assert code == 0, output
    assert (summary["planned"], summary["fetched"], summary["verified"]) == (1, 1, 1)
    assert [r.headers["Range"] for r in data.requests] == [f"bytes={offset}-{offset + length - 1}"]

    records = records_of(tmp_path / "ws")
    assert [r.rec_type for _, r, _ in records] == ["warcinfo", "response", "metadata"]
    (_, info, _), (_, response, block), (_, metadata, meta) = records
    headers = response.rec_headers
    line, stored = arc_block(arcs / filename, offset, length)
    assert headers.get_header("WARC-Target-URI") == "http://example.com/"
    assert headers.get_header("WARC-Date") == "2014-02-16T05:02:21Z"  # the ARC date, 14 digits, UTC
    assert headers.get_header("WARC-IP-Address") == "93.184.216.119"
    assert headers.get_header("Content-Type") == "application/http; msgtype=response"
    assert headers.get_header("WARC-Payload-Digest") == DIGEST
    assert headers.get_header("WARC-Block-Digest") == sha1_base32(stored)
    assert response.http_headers.get_statuscode() == "200"
    http_head = stored[: stored.index(b"\r\n\r\n") + 4]
    assert http_head + block == stored  # the HTTP response block, as the ARC file stores it
    for record in (response, metadata):
        assert record.rec_headers.get_header("WARC-Warcinfo-ID") == info.rec_headers.get_header("WARC-Record-ID")
    details = json.loads(meta)
    assert metadata.rec_headers.get_header("WARC-Concurrent-To") == headers.get_header("WARC-Record-ID")
    assert details["arc"] == {"filename": filename, "offset": offset, "length": length,
                              "header_line": line.decode(), "header_line_encoding": "utf-8"}
    assert details["arc"]["header_line"] == HEADER_LINE
    assert json.loads(details["cdx"])["filename"] == filename and details["verification"] == VERIFIED

    catalog = open_catalog(tmp_path / "ws", env)
    (row,) = catalog.query(Selection())
    assert (row.verification, row.record_type, row.digest, row.payload_sha1) == (VERIFIED, "response", DIGEST, DIGEST)
    assert (row.timestamp, row.status, row.mime, row.pre_cutoff) == ("20140216050221", 200, "text/html", True)
    assert row.record_id == headers.get_header("WARC-Record-ID")


def test_real_record_shorter_than_its_header_says(tmp_path: Path, index: FaultServer, data: RangeFileServer) -> None:
    """warcio's example-space-in-url.arc: a URL with spaces, and a block 12 bytes shorter than the
    1591 its header line declares (the file ends first): read leniently, it would be stored cut."""
    env = env_for(index, data.base_url)
    code, summary, output = run(tmp_path / "ws", env, "example.com", "--match", "domain", "--crawl", PLAIN_CRAWL)
    assert code == 1, output
    assert (summary["planned"], summary["verified"], summary["failed_by_reason"]) == (2, 1, {"truncated-body": 1})
    catalog = open_catalog(tmp_path / "ws", env)
    (failed,) = catalog.db.query("SELECT url, detail FROM sync_captures WHERE state = 'failed'")
    assert failed["url"].endswith("EmailTitle=Examples From The Live Web&IsPopUp=False")
    assert "ends 12 bytes before the ARC record does" in failed["detail"]


def test_digest_mismatch_is_kept_flagged_and_failed(tmp_path: Path, index: FaultServer, data: RangeFileServer,
                                                    arcs: Path) -> None:
    damaged = (arcs / "example.arc").read_bytes()
    at = damaged.index(b"<title>Example Domain</title>")
    (arcs / "example.arc").write_bytes(damaged[:at] + b"<title>Example D0main</title>" + damaged[at + 29:])
    env = env_for(index, data.base_url)
    code, summary, output = run(tmp_path / "ws", env, "http://example.com/", "--crawl", PLAIN_CRAWL)
    assert code == 1, output
    assert summary["failed_by_reason"] == {"digest-mismatch": 1} and summary["mismatch"] == 1
    assert len(data.requests) == 3  # retried twice, then kept
    catalog = open_catalog(tmp_path / "ws", env)
    (row,) = catalog.query(Selection())
    assert row.verification == MISMATCH and row.digest == DIGEST and row.payload_sha1 != DIGEST
    assert f"does not match the CDX digest {DIGEST}" in (row.verification_reason or "")
    response = next(r for _, r, _ in records_of(tmp_path / "ws") if r.rec_type == "response")
    assert response.rec_headers.get_header("WARC-Payload-Digest") == row.payload_sha1  # what the bytes are


def test_truncated_ranges(tmp_path: Path, index: FaultServer, data: RangeFileServer, pywb: PywbServer) -> None:
    env = env_for(index, data.base_url)
    # a CDX line whose length stops inside the gzip member: nothing to retry, the row fails
    line = requests.get(pywb.cdx_url("arc"), params={"url": "http://example.com/", "output": "json"},
                        timeout=10).text.strip()
    short = json.loads(line)
    short["length"] = str(int(short["length"]) - 100)
    index.script("/short/cdx*", [Fault.respond(json.dumps(short).encode() + b"\n")] * 4)
    code, summary, output = run(tmp_path / "ws", env, "http://example.com/", "--crawl", SHORT_CRAWL)
    assert code == 1 and summary["failed_by_reason"] == {"truncated-body": 1}, output
    assert len(data.requests) == 1

    # a data host that cuts the range short: retried, then failed; the next run fetches it
    data.script("/example.arc.gz", [Fault.short_body(after=300)] * 4)  # MAX_RETRIES=3: 4 attempts
    code, summary, output = run(tmp_path / "ws2", env, "http://example.com/", "--crawl", GZ_CRAWL)
    assert code == 1 and summary["failed_by_reason"] == {"truncated-body": 1}, output
    code, summary, output = run(tmp_path / "ws2", env, "http://example.com/", "--crawl", GZ_CRAWL)
    assert code == 0 and (summary["fetched"], summary["verified"], summary["failed"]) == (1, 1, 0), output
    catalog = open_catalog(tmp_path / "ws2", env)
    assert [r.verification for r in catalog.query(Selection())] == [VERIFIED]


def test_cdx_server_with_arc_files(tmp_path: Path, pywb: PywbServer, data: RangeFileServer) -> None:
    """A pywb/OutbackCDX-style server whose CDX points at ARC files, read directly by range."""
    env = {**FAST_ENV, "ARCHIVEKEEPER_CDX_DATA_URL": data.base_url}
    code, summary, output = run(tmp_path / "ws", env, "http://example.com/", source=pywb.collection_url("arc"))
    assert code == 0, output
    assert (summary["planned"], summary["verified"]) == (1, 1)
    assert [r.headers["Range"] for r in data.requests] == ["bytes=171-1026"]  # no replay: the record itself
    catalog = open_catalog(tmp_path / "ws", env)
    (row,) = catalog.query(Selection())
    assert (row.verification, row.capture_time) == (VERIFIED, "2014-02-16T05:02:21Z")
