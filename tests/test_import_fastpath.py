"""The import's fast paths give what the plain ones would: dates used as written, digests checked in
FastWARC (with a re-read on mismatch), rows built in the main process from what workers parsed."""

from __future__ import annotations

import base64
import gzip
import hashlib
from pathlib import Path

import pytest
from warcio.archiveiterator import ArchiveIterator

from archivekeeper.catalog import Catalog
from archivekeeper.errors import ArchiveKeeperError, InputFileError
from archivekeeper.importer import Importer
from archivekeeper.models import MISMATCH, UNVERIFIABLE, VERIFIED, Selection
from archivekeeper.timestamps import parse_warc_date, to_iso, to_timestamp
from archivekeeper.warcreader import build_row, scan
from archivekeeper.workspace import Workspace


def _raw(warc_date: str) -> tuple[object, ...]:
    return (0, 100, "response", "http://example.com/", warc_date, "<urn:uuid:1>", 200, "text/html", None,
            "sha1:AAAA", None, None, None, None, None)


@pytest.mark.parametrize("warc_date", [
    "2019-03-04T05:06:07Z", "2019-03-04T05:06:07.123456Z", "2019-03-04T05:06:07+02:00", "2019-03-04T05:06:07z",
    "2019-03-04T05:06Z", "2019-03-04", "0999-01-01T00:00:00Z", "2020-02-29T23:59:59Z",
])
def test_warc_dates_give_the_full_parsers_values(warc_date: str) -> None:
    row = build_row(_raw(warc_date), source="import", path=Path("x.warc"))
    moment = parse_warc_date(warc_date)
    assert (row[3], row[4], row[5]) == (to_timestamp(moment), to_iso(moment), moment.year)


@pytest.mark.parametrize("warc_date", ["2019-02-30T00:00:00Z", "2019-13-01T00:00:00Z", "yesterday",
                                       "2019-03-04T25:00:00Z"])
def test_bad_warc_dates_fail_with_the_full_parsers_message(warc_date: str) -> None:
    with pytest.raises(ArchiveKeeperError) as expected:
        parse_warc_date(warc_date)
    with pytest.raises(InputFileError) as got:
        build_row(_raw(warc_date), source="import", path=Path("x.warc"))
    assert str(expected.value) in str(got.value)


def _b32(data: bytes) -> str:
    return "sha1:" + base64.b32encode(hashlib.sha1(data).digest()).decode()


def _member(record_type: str, url: str, date: str, block: bytes, extra: dict[str, str], http: bool = True) -> bytes:
    headers = {"WARC-Type": record_type, "WARC-Record-ID": f"<urn:uuid:{hashlib.md5(url.encode()).hexdigest()}>",
               "WARC-Date": date, "WARC-Target-URI": url,
               "Content-Type": "application/http; msgtype=response" if http else "text/plain", **extra,
               "Content-Length": str(len(block))}
    head = "WARC/1.1\r\n" + "".join(f"{k}: {v}\r\n" for k, v in headers.items()) + "\r\n"
    return gzip.compress(head.encode() + block + b"\r\n\r\n")


def _http(body: bytes) -> bytes:
    return b"HTTP/1.1 200 OK\r\nContent-Type: text/html\r\nContent-Length: %d\r\n\r\n" % len(body) + body


def _odd_warc(path: Path) -> dict[str, str]:
    """One record of each digest case; returns url → expected verification (or "problem")."""
    body = b"<html>" + b"x" * 70_000 + b"</html>"  # bigger than one read chunk
    cases = [
        ("http://a.example/ok", "response", {"WARC-Payload-Digest": _b32(body)}, True, VERIFIED),
        ("http://a.example/hex", "response", {"WARC-Payload-Digest": "sha1:" + hashlib.sha1(body).hexdigest()},
         True, VERIFIED),
        ("http://a.example/wrong", "response", {"WARC-Payload-Digest": _b32(b"other")}, True, MISMATCH),
        ("http://a.example/none", "response", {}, True, UNVERIFIABLE),
        ("http://a.example/sha256", "response", {"WARC-Payload-Digest": "sha256:abcd"}, True, UNVERIFIABLE),
        ("http://a.example/resource", "resource", {"WARC-Payload-Digest": _b32(body)}, False, VERIFIED),
        ("http://a.example/revisit", "revisit", {"WARC-Payload-Digest": _b32(body),
                                                 "WARC-Refers-To-Target-URI": "http://a.example/ok",
                                                 "WARC-Refers-To-Date": "2019-01-01T00:00:00Z"}, True, UNVERIFIABLE),
        ("http://a.example/baddate", "response", {"WARC-Payload-Digest": _b32(body)}, True, "problem"),
    ]
    data = b""
    for url, record_type, extra, http, _ in cases:
        date = "2019-13-45T00:00:00Z" if url.endswith("baddate") else "2019-01-01T00:00:00Z"
        block = (_http(body) if record_type != "revisit" else b"HTTP/1.1 200 OK\r\n\r\n") if http else body
        data += _member(record_type, url, date, block, extra, http)
    path.write_bytes(data)
    return {url: state for url, _, _, _, state in cases}


def _warcio_sha1(path: Path) -> dict[str, str]:
    out = {}
    with open(path, "rb") as handle:
        for record in ArchiveIterator(handle):
            out[record.rec_headers.get_header("WARC-Target-URI")] = _b32(record.raw_stream.read())
    return out


def test_import_and_scan_agree_on_every_digest_case(tmp_path: Path) -> None:
    path = tmp_path / "odd.warc.gz"
    expected = _odd_warc(path)
    truth = _warcio_sha1(path)
    workspace = Workspace.open(tmp_path / "ws")
    catalog = Catalog.open(workspace.catalog_path, workspace.settings.cutoff)
    summary = Importer(workspace, catalog).run([str(path)])
    [outcome] = summary.files
    assert outcome.status == "partial" and len(outcome.errors) == 1 and "date" in outcome.errors[0]
    imported = {r.url: r for r in catalog.query(Selection())}
    scanned = {r.url: r for r in scan(path)}
    assert set(imported) == set(scanned) == {url for url, state in expected.items() if state != "problem"}
    for url, record in imported.items():
        assert record.verification == expected[url], url
        if record.record_type != "revisit":
            assert record.payload_sha1 == truth[url], url
        twin = scanned[url]
        assert (twin.record_key, twin.offset, twin.length, twin.verification, twin.payload_sha1, twin.timestamp) == (
            record.record_key, record.offset, record.length, record.verification, record.payload_sha1,
            record.timestamp)
    assert sum(r["total"] for r in catalog.stats()) == len(imported)


def test_many_mismatches_still_give_every_payloads_sha1(tmp_path: Path) -> None:
    """Past a few digest mismatches a file's payloads are hashed in Python: same results either way."""
    path = tmp_path / "mismatches.warc.gz"
    data = b""
    for n in range(40):
        body = f"<p>page {n}</p>".encode() * (n + 1)
        claim = _b32(body) if n % 3 == 0 else _b32(b"something else")
        data += _member("response", f"http://m.example/{n}", "2020-05-06T07:08:09Z", _http(body),
                        {"WARC-Payload-Digest": claim})
    path.write_bytes(data)
    truth = _warcio_sha1(path)
    records = list(scan(path))
    assert len(records) == 40
    for record in records:
        assert record.payload_sha1 == truth[record.url]
        n = int(record.url.rsplit("/", 1)[1])
        assert record.verification == (VERIFIED if n % 3 == 0 else MISMATCH)
