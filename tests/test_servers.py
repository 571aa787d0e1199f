"""Smoke tests proving the real local test servers in ``servers.py`` behave as documented."""

from __future__ import annotations

import base64
import hashlib
import json
import time
from pathlib import Path
from typing import Any

import pytest
import requests
from conftest import FaultServerFactory, PywbFactory
from servers import Fault, FaultServer, MotoS3Server, PywbServer, RangeFileServer, ZipNumCollection


def sha1_b32(data: bytes) -> str:
    return base64.b32encode(hashlib.sha1(data).digest()).decode()


def ndjson(text: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in text.splitlines() if line.strip()]


@pytest.fixture(scope="module")
def pywb(pywb_factory: PywbFactory, realdata: Path) -> PywbServer:
    warcs = realdata / "pywb" / "sample_archive" / "warcs"
    return pywb_factory(
        {
            "example": [warcs / "example.warc.gz"],
            "wio": [realdata / "warcio" / "test" / "data" / "example.warc.gz"],
            "mixed": [warcs / "example-bad.warc.gz.bad",
                      realdata / "warcio" / "test" / "data" / "example-bad-non-chunked.warc.gz",
                      warcs / "example2.warc.gz"],
        },
        zipnum={"zn": ZipNumCollection(
            realdata / "pywb" / "sample_archive" / "zipcdx" / "zipnum-sample.idx",
            (warcs / "dupes.warc.gz", warcs / "example.warc.gz", warcs / "iana.warc.gz"))},
    )


# ---------------------------------------------------------------------------- pywb


def test_pywb_cdx_json(pywb: PywbServer, http_session: requests.Session) -> None:
    r = http_session.get(pywb.cdx_url("example"),
                         params={"url": "example.com", "matchType": "prefix", "output": "json"})
    assert r.status_code == 200
    assert r.headers["Content-Type"] == "text/x-ndjson"
    rows = ndjson(r.text)
    assert [(c["timestamp"], c["mime"], c.get("status")) for c in rows] == [
        ("20140103030321", "text/html", "200"),
        ("20140103030341", "warc/revisit", None),  # revisits carry no status
    ]
    assert rows[0]["digest"] == "B2LTWWPUOYAH7UIPQ7ZUPQ4VMBSVC36A"
    assert set(rows[0]) >= {"urlkey", "timestamp", "url", "mime", "status", "digest",
                            "length", "offset", "filename"}

    dom = ndjson(http_session.get(pywb.cdx_url("example"), params={
        "url": "iana.org", "matchType": "domain", "output": "json"}).text)
    assert [(c["url"], c["status"]) for c in dom] == [("http://www.iana.org/domains/example", "302")]

    ranged = ndjson(http_session.get(pywb.cdx_url("example"), params={
        "url": "example.com/*", "output": "json", "from": "20140103030330", "to": "2014"}).text)
    assert [c["timestamp"] for c in ranged] == ["20140103030341"]

    empty = http_session.get(pywb.cdx_url("example"), params={"url": "nothing.org", "output": "json"})
    assert (empty.status_code, empty.text) == (200, "")

    bad = http_session.get(pywb.cdx_url("example"), params={"url": "x", "matchType": "bogus"})
    assert bad.status_code == 400
    assert "match_type" in bad.json()["message"]


def test_pywb_zipnum_pages(pywb: PywbServer, http_session: requests.Session) -> None:
    r = http_session.get(pywb.cdx_url("zn"), params={
        "url": "iana.org", "matchType": "domain", "showNumPages": "true"})
    assert r.json() == {"pages": 4, "pageSize": 10, "blocks": 38}
    page = ndjson(http_session.get(pywb.cdx_url("zn"), params={
        "url": "iana.org", "matchType": "domain", "output": "json", "page": "0",
        "pageSize": "1"}).text)
    assert page and all(c["urlkey"].startswith("org,iana)") for c in page)
    # plain collections ignore showNumPages and just return lines
    plain = ndjson(http_session.get(pywb.cdx_url("example"), params={
        "url": "example.com/*", "showNumPages": "true", "output": "json"}).text)
    assert len(plain) == 2 and "pages" not in plain[0]


@pytest.mark.parametrize("coll", ["example", "wio"])
def test_pywb_id_replay_matches_cdx_digest(pywb: PywbServer, http_session: requests.Session,
                                           coll: str) -> None:
    rows = ndjson(http_session.get(pywb.cdx_url(coll), params={
        "url": "example.com", "matchType": "prefix", "output": "json"}).text)
    assert rows
    for row in rows:
        url = row["url"] if coll == "wio" else "http://example.com/?example=1"
        r = http_session.get(pywb.replay_url(coll, row["timestamp"], url), stream=True,
                             allow_redirects=False, headers={"Accept-Encoding": "gzip"})
        raw = r.raw.read(decode_content=False)
        assert r.status_code == 200
        assert sha1_b32(raw) == row["digest"]  # also for the revisit row
        assert r.headers["Content-Location"].startswith(
            f"{pywb.collection_url(coll)}/{row['timestamp']}id_/")
        assert "Memento-Datetime" in r.headers
        assert 'rel="original"' in r.headers["Link"]


def test_pywb_gzip_payload_decoded_without_accept_encoding(
        pywb: PywbServer, http_session: requests.Session) -> None:
    url = pywb.replay_url("wio", "20170306040206", "http://example.com/")
    gz = http_session.get(url, headers={"Accept-Encoding": "gzip"}, stream=True)
    assert gz.headers["Content-Encoding"] == "gzip"
    assert sha1_b32(gz.raw.read(decode_content=False)) == "G7HRM7BGOKSKMSXZAHMUQTTV53QOFSMK"
    plain = http_session.get(url, headers={"Accept-Encoding": "identity"}, stream=True)
    assert "Content-Encoding" not in plain.headers and "Content-Length" not in plain.headers
    assert plain.raw.read(decode_content=False).startswith(b"<!doctype html>")


def test_pywb_inexact_timestamp_and_redirects(pywb: PywbServer,
                                              http_session: requests.Session) -> None:
    inexact = http_session.get(pywb.replay_url("example", "2014", "http://example.com/?example=1"),
                               allow_redirects=False)
    assert inexact.status_code == 200  # no redirect to the exact capture
    assert inexact.headers["Memento-Datetime"] == "Fri, 03 Jan 2014 03:03:41 GMT"
    assert "/20140103030341id_/" in inexact.headers["Content-Location"]

    noslash = http_session.get(pywb.replay_url("example", "20140103030321",
                                               "http://example.com?example=1"),
                               allow_redirects=False)
    assert noslash.status_code == 307
    assert noslash.headers["Location"] == pywb.replay_url(
        "example", "20140103030321", "http://example.com/?example=1")

    archived = http_session.get(pywb.replay_url("example", "20140128051539",
                                                "http://www.iana.org/domains/example"),
                                allow_redirects=False)
    assert archived.status_code == 302
    assert archived.headers["Location"] == "/domains/reserved"  # not rewritten

    missing = http_session.get(pywb.replay_url("example", "2014", "http://nothing.org/"))
    assert missing.status_code == 404


def test_pywb_failed_files_recorded(pywb: PywbServer, realdata: Path,
                                    http_session: requests.Session) -> None:
    names = {p.name for p in pywb.failed_files}
    assert names == {"example-bad.warc.gz.bad", "example-bad-non-chunked.warc.gz"}
    assert [p.name for p in pywb.added["mixed"]] == ["example2.warc.gz"]
    rows = ndjson(http_session.get(pywb.cdx_url("mixed"), params={
        "url": "example.com/", "output": "json"}).text)
    assert [r["timestamp"] for r in rows] == ["20160225042329"]


# ---------------------------------------------------------------------------- moto


def test_moto_put_get(s3_client: Any, moto_s3: MotoS3Server) -> None:
    s3_client.create_bucket(Bucket="corpus")
    s3_client.put_object(Bucket="corpus", Key="a/b.txt", Body=b"hello")
    assert s3_client.get_object(Bucket="corpus", Key="a/b.txt")["Body"].read() == b"hello"
    moto_s3.reset()
    assert s3_client.list_buckets()["Buckets"] == []
    assert moto_s3.env["AWS_ENDPOINT_URL_S3"] == moto_s3.endpoint_url


def test_subprocess_killed_on_exception(tmp_path: Path) -> None:
    server = MotoS3Server(workdir=tmp_path)
    with pytest.raises(RuntimeError, match="boom"), server:
        proc = server.proc
        assert proc is not None
        assert proc.poll() is None
        raise RuntimeError("boom")
    assert proc is not None
    assert proc.poll() is not None
    assert server.proc is None


# ---------------------------------------------------------------------------- faults


def test_fault_status_retry_after_and_fallthrough(fault_server: FaultServer,
                                                  http_session: requests.Session) -> None:
    fault_server.script("/x", [Fault.status(503, retry_after=2), Fault.status(429, b"slow")])
    a = http_session.get(fault_server.url("/x?q=1"))
    b = http_session.get(fault_server.url("/x"))
    c = http_session.get(fault_server.url("/x"))
    assert (a.status_code, a.headers["Retry-After"]) == (503, "2")
    assert (b.status_code, b.content) == (429, b"slow")
    assert c.status_code == 404  # queue exhausted, no upstream
    assert [r.path for r in fault_server.requests] == ["/x?q=1", "/x", "/x"]
    assert fault_server.requests[0].query == {"q": ["1"]}
    assert fault_server.requests[0].headers["user-agent"].startswith("python-requests")


def test_fault_connection_reset(fault_server: FaultServer,
                                http_session: requests.Session) -> None:
    fault_server.script("/r", Fault.reset())
    with pytest.raises(requests.ConnectionError) as exc:
        http_session.get(fault_server.url("/r"))
    assert "reset" in str(exc.value).lower()


def test_fault_reset_mid_body(fault_server: FaultServer, http_session: requests.Session) -> None:
    fault_server.script("/m", Fault.reset_mid_body(b"x" * 1000, after=100))
    r = http_session.get(fault_server.url("/m"), stream=True)
    assert r.headers["Content-Length"] == "1000"
    with pytest.raises(requests.exceptions.ChunkedEncodingError, match="reset"):
        _ = r.content


def test_fault_short_body(fault_server: FaultServer, http_session: requests.Session) -> None:
    fault_server.script("/s", Fault.short_body(b"y" * 1000, after=10))
    with pytest.raises(requests.exceptions.ChunkedEncodingError, match="IncompleteRead"):
        http_session.get(fault_server.url("/s"))


def test_fault_stall(fault_server: FaultServer, http_session: requests.Session) -> None:
    fault_server.script("/t", [Fault.stall(2.0), Fault.stall(2.0, after=5, body=b"z" * 50)])
    with pytest.raises(requests.exceptions.ReadTimeout):
        http_session.get(fault_server.url("/t"), timeout=0.3)
    r = http_session.get(fault_server.url("/t"), timeout=0.3, stream=True)
    assert r.status_code == 200
    # requests reports a read timeout inside the body as ConnectionError
    with pytest.raises(requests.ConnectionError):
        _ = r.content


def test_fault_redirects(fault_server_factory: FaultServerFactory,
                         http_session: requests.Session) -> None:
    home, foreign = fault_server_factory(), fault_server_factory()
    home.script("/a", Fault.redirect("/b"))
    home.script("/b", Fault.respond(b"landed", headers={"Content-Type": "text/plain"}))
    home.script("/f", [Fault.redirect("http://foreign.invalid/x"),
                       Fault.redirect(foreign.url("/stolen"))])
    assert http_session.get(home.url("/a")).text == "landed"
    r = http_session.get(home.url("/f"), allow_redirects=False)
    assert (r.status_code, r.headers["Location"]) == (302, "http://foreign.invalid/x")
    r = http_session.get(home.url("/f"), allow_redirects=False)
    assert r.headers["Location"] == foreign.url("/stolen")
    assert foreign.requests == []
    assert [q.path for q in home.requests] == ["/a", "/b", "/f", "/f"]


def test_fault_custom_body_prefix_match(fault_server: FaultServer,
                                        http_session: requests.Session) -> None:
    line = b'{"urlkey": "com,example)/", "timestamp": "2014010'  # page ending mid-line
    fault_server.script("/coll/cdx*", Fault.respond(line, headers={"Content-Type": "text/x-ndjson"}))
    r = http_session.get(fault_server.url("/coll/cdx"), params={"url": "example.com"})
    assert r.content == line and r.headers["Content-Type"] == "text/x-ndjson"


def test_fault_proxy_to_pywb(pywb: PywbServer, fault_server: FaultServer,
                             http_session: requests.Session) -> None:
    fault_server.upstream = pywb.base_url
    path = "/example/20140103030321id_/http://example.com/?example=1"
    fault_server.script(path, [Fault.status(502), Fault.reset_mid_body(after=20)])
    assert http_session.get(fault_server.url(path)).status_code == 502
    with pytest.raises(requests.exceptions.ChunkedEncodingError):
        http_session.get(fault_server.url(path))
    r = http_session.get(fault_server.url(path), headers={"Accept-Encoding": "gzip"})
    assert r.status_code == 200 and sha1_b32(r.content) == "B2LTWWPUOYAH7UIPQ7ZUPQ4VMBSVC36A"
    # pywb builds its URLs from the forwarded Host header -> they point at the proxy
    assert r.headers["Content-Location"].startswith(fault_server.base_url)
    assert len(fault_server.requests) == 3


def test_range_file_server(realdata: Path, http_session: requests.Session) -> None:
    warc = realdata / "pywb" / "sample_archive" / "warcs" / "example.warc.gz"
    data = warc.read_bytes()
    with RangeFileServer(realdata / "pywb") as rs:
        url = rs.url_for(warc)
        r = http_session.get(url, headers={"Range": "bytes=333-1375"})
        assert r.status_code == 206
        assert r.headers["Content-Range"] == f"bytes 333-1375/{len(data)}"
        assert r.content == data[333:1376]
        assert http_session.get(url, headers={"Range": "bytes=-10"}).content == data[-10:]
        past = http_session.get(url, headers={"Range": f"bytes={len(data)}-"})
        assert (past.status_code, past.headers["Content-Range"]) == (416, f"bytes */{len(data)}")
        full = http_session.get(url)
        assert (full.status_code, full.content) == (200, data)
        assert (realdata / "SOURCES.md").is_file()  # exists, but outside the root
        assert http_session.get(rs.url("/%2e%2e/SOURCES.md")).status_code == 404
        rs.script(url[len(rs.base_url):], Fault.reset_mid_body(after=5))
        with pytest.raises(requests.exceptions.ChunkedEncodingError):
            http_session.get(url, headers={"Range": "bytes=0-99"})


def test_fault_server_stops_promptly_with_stalled_client(http_session: requests.Session) -> None:
    with FaultServer() as fs:
        fs.script("/slow", Fault.stall(30))
        with pytest.raises(requests.exceptions.ReadTimeout):
            http_session.get(fs.url("/slow"), timeout=0.2)
        t0 = time.monotonic()
    assert time.monotonic() - t0 < 2
