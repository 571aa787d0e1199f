"""Helpers for the sync tests: a deterministic test archive, an IA-style CDX front for pywb, readers.

* :func:`write_site_warc` writes a small per-record-gzip WARC of ``http://site.test/`` with
  captures on both sides of the 2023-01-01 cutoff (responses, revisits, a gzip-encoded payload,
  an archived redirect and 404, a capture at exactly the cutoff) and returns what it wrote.
* :class:`IAFront` serves ``/cdx/search/cdx`` the way the Internet Archive does (``output=json``
  arrays of arrays with IA field names, ``showResumeKey``/``resumeKey`` paging, revisit status
  ``-``), built from a pywb collection's NDJSON, and proxies ``/web/...`` to that collection, so
  the ``wayback`` source can be tested against real replay.
"""

from __future__ import annotations

import gzip
import http.client
import http.server
import json
import threading
import urllib.parse
from dataclasses import dataclass, field
from datetime import UTC, datetime
from io import BytesIO
from pathlib import Path
from typing import Any

from warcio.statusandheaders import StatusAndHeaders
from warcio.warcwriter import WARCWriter

from archivekeeper.digests import sha1_base32

SITE = "http://site.test"


@dataclass
class Made:
    """One capture written into the test archive."""

    url: str
    when: datetime
    record_type: str  # response | revisit
    status: int
    payload: bytes  # as stored (gzip bytes for the gzip-encoded page)
    digest: str  # sha1:BASE32
    headers: list[tuple[str, str]] = field(default_factory=list)

    @property
    def timestamp(self) -> str:
        return self.when.strftime("%Y%m%d%H%M%S")

    @property
    def iso(self) -> str:
        return self.when.strftime("%Y-%m-%dT%H:%M:%SZ")


def _at(text: str) -> datetime:
    return datetime.strptime(text, "%Y%m%d%H%M%S").replace(tzinfo=UTC)


def _page(title: str, when: str) -> bytes:
    return f"<html><head><title>{title}</title></head><body><p>{title} as of {when}</p></body></html>\n".encode()


def site_captures() -> list[Made]:
    """The captures of the test archive, in file order."""
    made: list[Made] = []

    def response(path: str, ts: str, body: bytes, status: int = 200, ctype: str = "text/html",
                 extra: list[tuple[str, str]] | None = None) -> Made:
        headers = [("Content-Type", ctype), ("Content-Length", str(len(body))),
                   ("Date", _at(ts).strftime("%a, %d %b %Y %H:%M:%S GMT")), ("Server", "TestServer/1.0"),
                   *(extra or [])]
        item = Made(SITE + path, _at(ts), "response", status, body, sha1_base32(body), headers)
        made.append(item)
        return item

    def revisit(of: Made, ts: str) -> None:
        headers = [(n, v) for n, v in of.headers if n != "Date"]
        headers.append(("Date", _at(ts).strftime("%a, %d %b %Y %H:%M:%S GMT")))
        made.append(Made(of.url, _at(ts), "revisit", of.status, of.payload, of.digest, headers))

    response("/a", "20190501120000", _page("A", "2019"))
    response("/a", "20210615080000", _page("A", "2021"))
    response("/a", "20221231235959", _page("A", "the last second of 2022"))
    response("/a", "20230101000000", _page("A", "the cutoff"))  # exactly the cutoff: not pre-cutoff
    response("/a", "20240220100000", _page("A", "2024"))
    b = response("/b", "20200310000000", _page("B", "2020 and ever after"))
    revisit(b, "20210310000000")
    revisit(b, "20230310000000")
    body = gzip.compress(_page("Zipped", "2021") * 20, mtime=0)
    response("/gz", "20210701000000", body, extra=[("Content-Encoding", "gzip")])
    response("/moved", "20200101000000", b"<a href='/a'>moved</a>\n", status=301, extra=[("Location", SITE + "/a")])
    response("/missing", "20210101000000", b"not found\n", status=404)
    response("/logo.png", "20220202020202", bytes(range(256)) * 8, ctype="image/png")
    response("/new", "20240505050505", _page("New", "2024"))
    return made


def write_site_warc(path: Path) -> list[Made]:
    """Write the test archive to ``path`` (``.warc.gz``) and return its captures."""
    made = site_captures()
    originals: dict[str, Made] = {}
    with open(path, "wb") as handle:
        writer = WARCWriter(handle, gzip=True)
        for item in made:
            reason = {200: "OK", 301: "Moved Permanently", 404: "Not Found"}[item.status]
            http_headers = StatusAndHeaders(f"{item.status} {reason}", item.headers, protocol="HTTP/1.1")
            warc_headers = {"WARC-Date": item.iso}
            if item.record_type == "response":
                record = writer.create_warc_record(item.url, "response", payload=BytesIO(item.payload),
                                                   length=len(item.payload), http_headers=http_headers,
                                                   warc_headers_dict=warc_headers)
                originals[item.digest] = item
            else:
                first = originals[item.digest]
                record = writer.create_revisit_record(item.url, item.digest, first.url, first.iso,
                                                      http_headers=http_headers, warc_headers_dict=warc_headers)
            writer.write_record(record)
    return made


def pre_cutoff(made: list[Made], cutoff: str = "20230101000000") -> list[Made]:
    return [m for m in made if m.timestamp < cutoff]


def shared_site(basetemp: Path) -> tuple[Path, list[Made]]:
    """The test archive, written once per test session (so every module shares one pywb)."""
    path = basetemp / "sync-site" / "site.warc.gz"
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        write_site_warc(path)
    return path, site_captures()


def sync_archive(pywb_factory: Any, realdata: Path, site_path: Path) -> Any:
    """The one pywb all sync tests use: ``site`` (the test archive), ``real`` (pywb's sample WARCs
    dupes, example and iana), ``zn`` (the same three behind pywb's sample ZipNum index, paged),
    and the real ARC files: ``arc`` (the per-record-gzip ``example.arc.gz``) and ``arcplain`` (the
    uncompressed ``example.arc`` and warcio's ``example-space-in-url.arc``)."""
    from servers import ZipNumCollection

    warcs = realdata / "pywb" / "sample_archive" / "warcs"
    files = (warcs / "dupes.warc.gz", warcs / "example.warc.gz", warcs / "iana.warc.gz")
    return pywb_factory({"site": [site_path], "real": list(files), **arc_collections(realdata)},
                        zipnum={"zn": ZipNumCollection(
                            realdata / "pywb" / "sample_archive" / "zipcdx" / "zipnum-sample.idx", files)})


def arc_collections(realdata: Path) -> dict[str, list[Path]]:
    """The real ARC files, by pywb collection (see :func:`sync_archive`)."""
    warcs = realdata / "pywb" / "sample_archive" / "warcs"
    return {"arc": [warcs / "example.arc.gz"],
            "arcplain": [warcs / "example.arc", realdata / "warcio" / "test" / "data" / "example-space-in-url.arc"]}


# -- IA-style CDX front -------------------------------------------------------------------------

IA_HEADER = ["urlkey", "timestamp", "original", "mimetype", "statuscode", "digest", "length"]


class _IAHandler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _IAServer

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def do_GET(self) -> None:
        front = self.server.front
        parts = urllib.parse.urlsplit(self.path)
        front.seen.append(self.path)
        front.user_agents.append(self.headers.get("User-Agent", ""))
        if parts.path == "/cdx/search/cdx":
            self._cdx(urllib.parse.parse_qs(parts.query))
        elif parts.path.startswith("/web/"):
            query = f"?{parts.query}" if parts.query else ""
            self._proxy(front.upstream_collection + parts.path[len("/web"):] + query)
        else:
            self._send(404, b"not here\n", "text/plain")

    def _send(self, code: int, body: bytes, ctype: str, headers: list[tuple[str, str]] | None = None) -> None:
        self.send_response(code)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        for name, value in headers or []:
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(body)

    def _cdx(self, query: dict[str, list[str]]) -> None:
        front = self.server.front
        names = {"statuscode": "status", "mimetype": "mime", "original": "url"}
        params: list[tuple[str, str]] = [("output", "json")]
        for key in ("url", "matchType", "from", "to"):
            if key in query:
                params.append((key, query[key][0]))
        for expr in query.get("filter", []):  # IA: [!]field:regex, full match → pywb ~field:(?:regex)$
            neg = expr.startswith("!")
            name, _, regex = expr.lstrip("!").partition(":")
            params.append(("filter", f"{'!' if neg else ''}~{names.get(name, name)}:(?:{regex})$"))
        conn = http.client.HTTPConnection("127.0.0.1", front.pywb_port, timeout=30)
        conn.request("GET", f"{front.pywb_cdx_path}?{urllib.parse.urlencode(params)}")
        answer = conn.getresponse().read().decode()
        conn.close()
        rows = []
        for line in answer.splitlines():
            if not line.strip():
                continue
            obj = json.loads(line)
            rows.append([obj["urlkey"], obj["timestamp"], obj["url"], obj.get("mime", "-"),
                         obj.get("status", "-") if obj.get("mime") != "warc/revisit" else "-",
                         obj.get("digest", "-"), obj.get("length", "-")])
        start = int(query.get("resumeKey", ["0"])[0] or 0)
        limit = int(query.get("limit", ["0"])[0] or 0) or len(rows)
        page = rows[start:start + limit]
        out: list[Any] = [IA_HEADER, *page] if rows else []
        if query.get("showResumeKey", ["false"])[0] == "true" and start + limit < len(rows):
            out += [[], [str(start + limit)]]
        self._send(200, json.dumps(out).encode(), "text/plain")

    def _proxy(self, path: str) -> None:
        front = self.server.front
        conn = http.client.HTTPConnection("127.0.0.1", front.pywb_port, timeout=30)
        headers = {k: v for k, v in self.headers.items() if k.lower() not in ("host", "connection")}
        conn.request("GET", path, headers={**headers, "Host": f"127.0.0.1:{self.server.server_address[1]}"})
        resp = conn.getresponse()
        body = resp.read()
        conn.close()
        self.send_response(resp.status, resp.reason)
        for name, value in resp.getheaders():
            if name.lower() in ("content-length", "transfer-encoding", "connection", "content-location", "link"):
                continue
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


class _IAServer(http.server.ThreadingHTTPServer):
    daemon_threads = True
    front: IAFront


class IAFront:
    """``/cdx/search/cdx`` in IA's JSON dialect + ``/web/<ts>id_/<url>`` from a pywb collection."""

    def __init__(self, pywb_base: str, collection: str) -> None:
        parts = urllib.parse.urlsplit(pywb_base)
        self.pywb_port = int(parts.port or 80)
        self.pywb_cdx_path = f"/{collection}/cdx"
        self.upstream_collection = f"/{collection}"
        self.seen: list[str] = []
        self.user_agents: list[str] = []
        self._server = _IAServer(("127.0.0.1", 0), _IAHandler)
        self._server.front = self
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def __enter__(self) -> IAFront:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()


# -- reading back ----------------------------------------------------------------------------------

def record_at(path: Path, offset: int) -> tuple[dict[str, str], bytes, str | None]:
    """The WARC headers, raw payload and HTTP status line of the record at ``offset`` (warcio)."""
    from warcio.archiveiterator import ArchiveIterator

    with open(path, "rb") as handle:
        handle.seek(offset)
        record = next(iter(ArchiveIterator(handle)))
        payload = record.raw_stream.read()
        status = record.http_headers.statusline if record.http_headers else None
        return dict(record.rec_headers.headers), payload, status


def all_records(directory: Path) -> list[tuple[str, dict[str, str]]]:
    """(file name, WARC headers) of every record in every ``.warc.gz`` under ``directory``."""
    from warcio.archiveiterator import ArchiveIterator

    out = []
    for path in sorted(directory.rglob("*.warc.gz")):
        with open(path, "rb") as handle:
            for record in ArchiveIterator(handle):
                out.append((path.name, dict(record.rec_headers.headers)))
    return out


def warcinfo_problems(directory: Path, verbatim: frozenset[str] | set[str] = frozenset()) -> tuple[int, list[str]]:
    """Read every ``.warc.gz`` under ``directory`` with warcio: each must start with its warcinfo record,
    and every other record must name that record in ``WARC-Warcinfo-ID`` — except the records whose
    WARC-Record-ID is in ``verbatim`` (an archive's own, stored byte for byte). Returns (records checked,
    problems)."""
    from warcio.archiveiterator import ArchiveIterator

    checked, problems = 0, []
    for path in sorted(directory.rglob("*.warc.gz")):
        with open(path, "rb") as handle:
            info_id = None
            for index, record in enumerate(ArchiveIterator(handle)):
                record_id = record.rec_headers.get_header("WARC-Record-ID")
                if index == 0:
                    if record.rec_type != "warcinfo":
                        problems.append(f"{path.name}: starts with a {record.rec_type} record")
                    info_id = record_id
                    continue
                if record_id in verbatim:
                    continue
                checked += 1
                named = record.rec_headers.get_header("WARC-Warcinfo-ID")
                if named != info_id:
                    problems.append(f"{path.name}: {record.rec_type} {record_id} names warcinfo {named}, not {info_id}")
    return checked, problems


def crawl_index(fault_server_factory: Any, upstream: str, static_root: Path, crawls: list[dict[str, str]]) -> Any:
    """A Common Crawl index server: ``collinfo.json`` listing ``crawls`` (each ``cdx-api`` a path on this
    server, made a URL here) served from ``static_root``, everything else passed to ``upstream``."""
    static_root.mkdir()
    server = fault_server_factory(upstream, static_root=static_root)
    (static_root / "collinfo.json").write_text(json.dumps(
        [{**crawl, "cdx-api": server.url(crawl["cdx-api"])} for crawl in crawls]))
    return server
