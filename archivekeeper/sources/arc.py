"""One ARC record read by range (Common Crawl 2008–2012, or a CDX server pointing at ARC files).

An ARC record is a header line — ``URL IP-address Archive-date Content-type Archive-length``
(ARC v1; v2 adds ``Result-code Checksum Location Offset Filename`` before the length) — and a
block of ``Archive-length`` bytes: for a web capture, the HTTP response as it was received. The
block becomes a WARC ``response`` record (a ``resource`` record when it is not an HTTP response),
written with the block exactly as stored (see :func:`archivekeeper.warcrecords.serialize_block`):
WARC-Target-URI the ARC URL, WARC-Date the ARC date (14 digits, UTC), WARC-Payload-Digest the
SHA-1 of the payload computed here and compared with the CDX digest. The metadata record keeps the
CDX line, the ARC file name, offset and length, and the ARC header line verbatim.
"""

from __future__ import annotations

import hashlib
import re
import tempfile
from dataclasses import dataclass
from typing import IO, Any

from ..digests import format_sha1
from ..errors import ConfigError, FetchError
from ..http import READ_CHUNK, SPOOL_MAX
from ..models import Capture
from ..timestamps import parse_timestamp, to_iso
from .base import Fetched

MAX_HEADER_LINE = 64 * 1024
MAX_HTTP_HEAD = 256 * 1024
_DATE = re.compile(rb"^\d{12,14}$")
_NUMBER = re.compile(rb"^-?\d+$")


@dataclass(frozen=True, slots=True)
class ArcRecord:
    """What the ARC header line says, and the SHA-1 of the block (for WARC-Block-Digest)."""

    url: str
    ip_address: str | None
    date: str  # 14 digits, UTC
    mime: str | None
    length: int
    header_line: bytes  # verbatim, without its line ending
    block_sha1: str
    http: bool  # the block is an HTTP response (→ a ``response`` record; else ``resource``)


def parse_header_line(line: bytes) -> tuple[str, str | None, str, str | None, int]:
    """``(url, ip, 14-digit date, mime, length)`` of an ARC v1 or v2 header line (URLs may hold spaces)."""
    line = line.rstrip(b"\r\n")
    v2 = line.rsplit(b" ", 9)
    if (len(v2) == 10 and _DATE.match(v2[2]) and _NUMBER.match(v2[7]) and _NUMBER.match(v2[9])
            and (v2[4] == b"-" or v2[4].isdigit())):
        url, ip, date, mime, length = v2[0], v2[1], v2[2], v2[3], v2[9]
    else:
        v1 = line.rsplit(b" ", 4)
        if len(v1) != 5 or not _DATE.match(v1[2]) or not _NUMBER.match(v1[4]):
            raise FetchError(f"not an ARC header line: {line[:200]!r}", reason="bad-record")
        url, ip, date, mime, length = v1
    if int(length) < 0:
        raise FetchError(f"ARC record with a negative length: {line[:200]!r}", reason="bad-record")
    text = date.decode("ascii").ljust(14, "0")
    try:
        parse_timestamp(text)
    except ConfigError:
        raise FetchError(f"ARC record with an invalid date {text!r}", reason="bad-record") from None
    return (url.decode("utf-8", "replace"), None if ip in (b"-", b"") else ip.decode("ascii", "replace"), text,
            None if mime in (b"-", b"", b"no-type") else mime.decode("ascii", "replace").lower(), int(length))


def _http_head_length(block: IO[bytes]) -> tuple[int, int | None, str, list[tuple[str, str]]]:
    """``(payload offset, status, reason, headers)`` of an HTTP response block; offset 0 if it is none."""
    from warcio.statusandheaders import StatusAndHeadersParser, StatusAndHeadersParserException

    block.seek(0)
    if block.read(5) != b"HTTP/":
        block.seek(0)
        return 0, None, "", []
    block.seek(0)
    try:
        parsed = StatusAndHeadersParser(["HTTP/1.0", "HTTP/1.1"], verify=False).parse(block)
    except (StatusAndHeadersParserException, ValueError, EOFError) as exc:
        raise FetchError(f"unreadable HTTP headers in the ARC record: {exc}", reason="bad-record") from None
    offset = block.tell()
    if offset > MAX_HTTP_HEAD:
        raise FetchError("the ARC record's HTTP headers never end", reason="bad-record")
    code = parsed.get_statuscode()
    return offset, int(code) if code and code.isdigit() else None, parsed.statusline.partition(" ")[2], \
        list(parsed.headers)


def parse_arc(capture: Capture, plain: IO[bytes], details: dict[str, Any]) -> Fetched:
    """An ARC record (``plain``: inflated, at 0) → a :class:`Fetched` of kind ``arc``.

    ``body`` holds the block as stored; ``details['_payload']`` the payload (after the HTTP
    headers). The verification against the CDX digest is left to the caller."""
    line = plain.readline(MAX_HEADER_LINE)
    if not line.endswith(b"\n"):
        raise FetchError("the ARC header line never ends", reason="bad-record")
    if line.startswith(b"filedesc://"):
        raise FetchError("the range holds the ARC file's own header, not a capture", reason="wrong-record")
    url, ip, date, mime, length = parse_header_line(line)
    block: IO[bytes] = tempfile.SpooledTemporaryFile(max_size=SPOOL_MAX)  # noqa: SIM115 - Fetched closes it
    block_digest = hashlib.sha1()
    left = length
    while left and (chunk := plain.read(min(READ_CHUNK, left))):
        block.write(chunk)
        block_digest.update(chunk)
        left -= len(chunk)
    if left:
        block.close()
        raise FetchError(f"the range ends {left} bytes before the ARC record does", reason="truncated-body")
    if plain.read(READ_CHUNK).strip(b"\r\n"):
        block.close()
        raise FetchError("the range holds more than one ARC record", reason="bad-record")
    head, status, reason, http_headers = _http_head_length(block)
    payload: IO[bytes] = tempfile.SpooledTemporaryFile(max_size=SPOOL_MAX)  # noqa: SIM115 - payload_of's caller
    digest = hashlib.sha1()
    block.seek(head)
    while chunk := block.read(READ_CHUNK):
        digest.update(chunk)
        payload.write(chunk)
    block.seek(0)
    payload.seek(0)
    header_line = line.rstrip(b"\r\n")
    try:
        header_text, encoding = header_line.decode("utf-8"), "utf-8"
    except UnicodeDecodeError:
        header_text, encoding = header_line.decode("latin-1"), "latin-1"
    capture_time = parse_timestamp(date)
    arc = ArcRecord(url=url, ip_address=ip, date=date, mime=mime, length=length, header_line=header_line,
                    block_sha1=format_sha1(block_digest.digest()), http=head > 0)
    details = {**details, "capture_time_from": "arc-header", "capture_time": to_iso(capture_time),
               "arc": {"filename": capture.filename, "offset": capture.offset, "length": capture.length,
                       "header_line": header_text, "header_line_encoding": encoding},
               "_payload": payload}
    return Fetched(capture=capture, kind="arc", capture_time=capture_time, body=block, body_size=length,
                   payload_sha1=format_sha1(digest.digest()), verification="", status=status, reason=reason,
                   http_headers=http_headers, target_uri=url, record_type="response" if arc.http else "resource",
                   details=details, arc=arc)
