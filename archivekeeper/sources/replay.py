"""Fetch a capture through an archive's raw replay (``/<timestamp>id_/<url>``) and judge the answer.

* The capture time comes from the answer: ``Memento-Datetime``, else the timestamp of the URL the
  archive redirected to (or its ``Content-Location``), never from the request.
* The origin's headers are rebuilt from what the archive returned: ``X-Archive-Orig-*`` are
  restored, the archive's own headers (its ``Date``, ``Server``, ``Link``, framing ...) dropped.
* The payload's SHA-1, from the bytes as received, is compared with the CDX digest. An archive
  that gzip-compressed the body on the fly is undone (the decoded bytes are stored when they
  match); one that decoded a stored gzip body is ``transformed``, not corrupt.
"""

from __future__ import annotations

import hashlib
import re
import tempfile
import zlib
from datetime import datetime
from typing import IO

from ..digests import format_sha1
from ..errors import ConfigError, FetchError
from ..http import READ_CHUNK, SPOOL_MAX, HttpClient, Reply
from ..models import MISMATCH, TRANSFORMED, UNVERIFIABLE, VERIFIED, Capture
from ..timestamps import parse_http_date, parse_timestamp, to_iso
from .base import Fetched

ORIG_PREFIX = "x-archive-orig-"
_ARCHIVE_TS = re.compile(r"/(\d{14})(?:[a-z]{2}_|id_)?/")
#: headers an archive adds to a replay (the origin's own come back as X-Archive-Orig-*)
ARCHIVE_HEADERS = frozenset({
    "memento-datetime", "date", "server", "content-length", "transfer-encoding", "connection", "keep-alive",
    "vary", "cache-control", "expires", "etag", "last-modified", "age", "pragma", "via", "set-cookie2",
    "strict-transport-security", "content-security-policy", "content-security-policy-report-only",
    "x-frame-options", "x-xss-protection", "x-content-type-options", "referrer-policy", "permissions-policy",
    "server-timing", "x-app-server", "x-ts", "x-tr", "x-location", "x-rl", "x-na", "x-page-cache", "x-nid",
    "x-cache-key", "retry-after", "alt-svc", "accept-ch",
})
_ENCODINGS = ("gzip", "x-gzip", "deflate")


def replay_url(prefix: str, timestamp: str, url: str) -> str:
    """``PREFIX/TIMESTAMPid_/URL``: the capture's bytes as archived, no rewriting."""
    return f"{prefix.rstrip('/')}/{timestamp}id_/{url}"


def capture_time_of(reply: Reply) -> tuple[datetime, str] | None:
    """The capture time the archive's answer proves, and what proved it."""
    memento = reply.header("Memento-Datetime")
    if memento:
        try:
            return parse_http_date(memento), "memento-datetime"
        except ConfigError:
            pass
    candidates = [(loc, "redirect") for _, loc in reversed(reply.redirects)]
    candidates.append((reply.header("Content-Location") or "", "content-location"))
    for url, how in candidates:
        found = _ARCHIVE_TS.search(url)
        if found:
            try:
                return parse_timestamp(found.group(1)), how
            except ConfigError:
                continue
    return None


def origin_headers(reply: Reply, http: HttpClient, *, body_size: int, body_gzipped: bool,
                   drop_encoding: bool) -> list[tuple[str, str]]:
    """The origin server's headers, rebuilt from an ``id_`` reply, consistent with the stored body."""
    restored: list[tuple[str, str]] = []
    kept: list[tuple[str, str]] = []
    for name, value in reply.headers:
        lower = name.lower()
        if lower.startswith(ORIG_PREFIX):
            original = name[len(ORIG_PREFIX):]
            inner = original.lower()
            if inner == "content-length" and value.strip() != str(body_size):
                restored.append((name, value))  # the body we hold is not the length the origin sent
            elif inner == "transfer-encoding":
                restored.append((name, value))  # the archive de-chunked the body
            elif inner == "content-encoding" and not (body_gzipped and "gzip" in value.lower()):
                restored.append((name, value))  # the archive decoded the body
            else:
                restored.append((original, value))
        elif lower.startswith("x-archive-") or lower in ARCHIVE_HEADERS:
            continue
        elif lower == "link" and ("rel=\"original\"" in value or "rel=\"memento\"" in value or "timegate" in value):
            continue
        elif lower == "content-location" and http.inside(value):
            continue
        elif lower == "content-encoding" and drop_encoding:
            continue
        else:
            kept.append((name, value))
    names = {n.lower() for n, _ in restored}
    return [(n, v) for n, v in kept if n.lower() not in names] + restored


def _decoded(body: IO[bytes], encoding: str) -> tuple[IO[bytes], int, str] | None:
    """The body with its Content-Encoding undone (spooled), or None if it does not decode."""
    wbits = 47 if "gzip" in encoding else 15
    inflater = zlib.decompressobj(wbits)
    out: IO[bytes] = tempfile.SpooledTemporaryFile(max_size=SPOOL_MAX)  # noqa: SIM115
    digest = hashlib.sha1()
    size = 0
    body.seek(0)
    try:
        while chunk := body.read(READ_CHUNK):
            data = inflater.decompress(chunk)
            digest.update(data)
            out.write(data)
            size += len(data)
        data = inflater.flush()
    except zlib.error:
        out.close()
        body.seek(0)
        return None
    digest.update(data)
    out.write(data)
    size += len(data)
    body.seek(0)
    out.seek(0)
    return out, size, format_sha1(digest.digest())


def fetch_replay(http: HttpClient, prefix: str, capture: Capture, *, timestamp: str | None = None) -> Fetched:
    """Fetch ``capture`` through ``PREFIX/TSid_/URL`` and verify it against its CDX digest."""
    request_url = replay_url(prefix, timestamp or capture.timestamp, capture.url)
    reply = http.get(request_url, kind="fetch", memento=True)
    if reply.header("Memento-Datetime") is None and reply.status >= 400:
        reply.close()
        code = "not-in-archive" if reply.status in (404, 410) else f"http-{reply.status}"
        raise FetchError(f"{request_url}: the archive answered {reply.status}", url=request_url, reason=code)
    proved = capture_time_of(reply)
    if proved is None:
        reply.close()
        raise FetchError(f"{request_url}: the answer does not say when the capture was made "
                         "(no Memento-Datetime, no archive redirect)", url=request_url, reason="no-capture-time")
    capture_time, proof = proved
    body, size, sha1 = reply.body, reply.size, reply.sha1
    verification: str
    reason: str | None
    verification, reason, drop_encoding = _verify(capture.digest, sha1, reply)
    if drop_encoding:
        decoded = _decoded(reply.body, reply.header("Content-Encoding") or "")
        assert decoded is not None
        body, size, sha1 = decoded
        reply.close()
    head = body.read(2)
    body.seek(0)
    headers = origin_headers(reply, http, body_size=size, body_gzipped=head == b"\x1f\x8b",
                             drop_encoding=drop_encoding)
    details = {
        "request_url": request_url, "final_url": reply.url, "redirects": [list(r) for r in reply.redirects],
        "archive_status": reply.status, "archive_headers": [list(h) for h in reply.headers],
        "capture_time_from": proof, "capture_time": to_iso(capture_time), "received_sha1": reply.sha1,
        "received_bytes": reply.size,
    }
    return Fetched(capture=capture, kind="replay", capture_time=capture_time, body=body, body_size=size,
                   payload_sha1=sha1, verification=verification, verification_reason=reason,
                   status=reply.status, reason=reply.reason, http_headers=headers, target_uri=capture.url,
                   details=details)


def _verify(expected: str | None, received: str, reply: Reply) -> tuple[str, str | None, bool]:
    """(verification, reason, store-decoded-body) for a replayed payload."""
    if expected is None:
        return UNVERIFIABLE, "the CDX row has no digest", False
    if not expected.startswith("sha1:"):
        return UNVERIFIABLE, f"unsupported digest algorithm {expected.split(':')[0]}", False
    if received == expected:
        return VERIFIED, None, False
    encoding = (reply.header("Content-Encoding") or "").strip().lower()
    orig_encoding = (reply.header(ORIG_PREFIX + "Content-Encoding") or "").strip().lower()
    if encoding in _ENCODINGS and not orig_encoding:
        decoded = _decoded(reply.body, encoding)
        if decoded is not None:
            decoded[0].close()
            if decoded[2] == expected:
                return (VERIFIED, f"the archive sent the body with Content-Encoding: {encoding}; "
                        "the decoded bytes, which are stored, match the CDX digest", True)
    declared = reply.header("Content-Length") or ""
    if 300 <= reply.status < 400 and reply.size == 0 and declared.isdigit() and int(declared) > 0:
        return (TRANSFORMED, f"the archive replayed this archived redirect without its body "
                f"(Content-Length {declared}); the CDX digest {expected} is of that body", False)
    if not encoding and orig_encoding and orig_encoding != "identity":
        return (TRANSFORMED, f"the archive decoded Content-Encoding: {orig_encoding} on replay; the CDX digest "
                f"{expected} is of the encoded bytes, received {received}", False)
    return MISMATCH, f"payload {received} does not match the CDX digest {expected}", False
