"""Read one WARC or ARC record by range (HTTP ``Range`` or S3) and check it against its CDX line.

The bytes of a Common Crawl WARC record are a complete gzip member holding one WARC record: they
are stored as they are, so the original WARC-Record-ID and digests survive. Before that we check it
is the record the CDX line promised (target URI, one complete member) and hash its payload. An ARC
record (the oldest crawls) cannot be stored as it is in a WARC file: :mod:`.arc` parses it and the
store writes its block, as stored, into a WARC record of ours.

A ``revisit`` holds no payload: :func:`resolve_revisit` pairs its headers with the payload of the
capture it refers to (found by digest), so no capture is stored as an empty body.
"""

from __future__ import annotations

import gzip
import hashlib
import tempfile
import zlib
from collections.abc import Callable
from typing import IO, Any

from ..digests import format_sha1, normalize_digest
from ..errors import ArchiveKeeperError, ConfigError, FetchError
from ..http import READ_CHUNK, SPOOL_MAX, HttpClient, retryable
from ..models import MISMATCH, UNVERIFIABLE, VERIFIED, Capture
from ..surt import surt
from ..timestamps import parse_warc_date, to_iso
from ..warcreader import read_payload
from .arc import parse_arc
from .base import Fetched, LocalPayload

RangeReader = Callable[[Capture], tuple[IO[bytes], dict[str, Any]]]


def http_range_reader(http: HttpClient, data_url: str) -> RangeReader:
    """Read ``[offset, offset+length)`` of ``DATA_URL/filename`` with an HTTP Range request."""

    def read(capture: Capture) -> tuple[IO[bytes], dict[str, Any]]:
        assert capture.filename is not None and capture.offset is not None and capture.length
        url = f"{data_url.rstrip('/')}/{capture.filename.lstrip('/')}"
        end = capture.offset + capture.length - 1
        try:
            reply = http.get(url, headers={"Range": f"bytes={capture.offset}-{end}"}, kind="fetch",
                             max_bytes=capture.length)
        except FetchError as exc:
            if exc.reason != "too-large":
                raise
            raise FetchError(f"{url}: the data server ignored the Range request (not downloading the whole file)",
                             url=url, reason="range-not-supported") from None
        if reply.status != 206 or reply.size != capture.length:
            reply.close()
            reason = "not-in-archive" if reply.status in (404, 410, 416) else f"http-{reply.status}"
            raise FetchError(f"{url}: expected {capture.length} bytes (206), got {reply.status} with "
                             f"{reply.size} bytes", url=url, reason=reason)
        return reply.body, {"range_url": url, "range": f"bytes={capture.offset}-{end}", "archive_status": 206,
                            "archive_headers": [list(h) for h in reply.headers]}

    return read


def s3_range_reader(http: HttpClient, data_url: str, client: Any) -> RangeReader:
    """Read a record from ``s3://bucket/prefix/`` + filename with a ranged GetObject (boto3)."""
    bucket, _, prefix = data_url.removeprefix("s3://").partition("/")
    if not bucket:
        raise ConfigError(f"bad S3 data URL {data_url!r} (give s3://BUCKET/ or s3://BUCKET/PREFIX/)")

    def read(capture: Capture) -> tuple[IO[bytes], dict[str, Any]]:
        assert capture.filename is not None and capture.offset is not None and capture.length
        key = f"{prefix.rstrip('/')}/{capture.filename.lstrip('/')}".lstrip("/")
        span = f"bytes={capture.offset}-{capture.offset + capture.length - 1}"
        where = f"s3://{bucket}/{key}"

        def attempt() -> IO[bytes]:
            from botocore.exceptions import BotoCoreError, ClientError

            try:
                answer = client.get_object(Bucket=bucket, Key=key, Range=span)
                data = answer["Body"].read()
            except ClientError as exc:
                code = str(exc.response.get("Error", {}).get("Code", ""))
                status = int(exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode") or 0)
                if code in ("SlowDown", "Throttling", "ThrottlingException", "RequestLimitExceeded") or status == 429:
                    raise retryable("rate-limited", f"{where}: {code}", status=429, rate_signal=True) from None
                if status >= 500:
                    raise retryable(f"http-{status}", f"{where}: {code}", status=status) from None
                reason = "not-in-archive" if code in ("NoSuchKey", "InvalidRange", "NoSuchBucket") else f"s3-{code}"
                raise FetchError(f"{where}: {code}", url=where, reason=reason) from None
            except BotoCoreError as exc:
                raise retryable("connection-reset", f"{where}: {exc}", rate_signal=True) from None
            if len(data) != capture.length:
                raise retryable("truncated-body", f"{where}: got {len(data)} of {capture.length} bytes")
            spool: IO[bytes] = tempfile.SpooledTemporaryFile(max_size=SPOOL_MAX)  # noqa: SIM115
            spool.write(data)
            spool.seek(0)
            return spool

        return http.retrying("fetch", where, attempt), {"range_url": where, "range": span}

    return read


def _inflate_member(raw: IO[bytes]) -> IO[bytes]:
    """The record inside one complete gzip member (or the bytes themselves if not gzipped)."""
    head = raw.read(2)
    raw.seek(0)
    if head != b"\x1f\x8b":
        return raw
    inflater = zlib.decompressobj(31)
    out: IO[bytes] = tempfile.SpooledTemporaryFile(max_size=SPOOL_MAX)  # noqa: SIM115
    try:
        while chunk := raw.read(READ_CHUNK):
            out.write(inflater.decompress(chunk))
            if inflater.eof:
                break
    except zlib.error as exc:
        raise FetchError(f"corrupt gzip member: {exc}", reason="bad-record") from None
    if not inflater.eof:
        raise FetchError("the range ends inside the gzip member", reason="truncated-body")
    if inflater.unused_data.strip(b"\r\n") or raw.read(1):
        raise FetchError("the range holds more than one gzip member", reason="bad-record")
    raw.seek(0)
    out.seek(0)
    return out


def parse_record(capture: Capture, raw: IO[bytes], details: dict[str, Any]) -> Fetched:
    """Check a ranged record against its CDX line and hash its payload."""
    from warcio.archiveiterator import ArchiveIterator

    plain = _inflate_member(raw)
    first = plain.read(5)
    plain.seek(0)
    if first != b"WARC/":
        return _parse_arc_record(capture, raw, plain, details)
    try:
        record = next(iter(ArchiveIterator(plain, check_digests=False)))
        headers = record.rec_headers
        digest = hashlib.sha1()
        size = 0
        payload: IO[bytes] = tempfile.SpooledTemporaryFile(max_size=SPOOL_MAX)  # noqa: SIM115
        while chunk := record.raw_stream.read(READ_CHUNK):
            digest.update(chunk)
            payload.write(chunk)
            size += len(chunk)
        status_line = record.http_headers.get_statuscode() if record.http_headers else None
        http_headers = list(record.http_headers.headers) if record.http_headers else []
        reason = record.http_headers.statusline.partition(" ")[2] if record.http_headers else ""
    except (StopIteration, ArchiveKeeperError, ValueError, OSError, EOFError) as exc:
        raise FetchError(f"unreadable WARC record: {exc}", reason="bad-record") from None
    target = (headers.get_header("WARC-Target-URI") or "").strip().strip("<>")
    if target != capture.url and not _same_key(target, capture.urlkey):
        raise FetchError(f"the range holds a record of {target!r}, not {capture.url!r}", reason="wrong-record")
    try:
        capture_time = parse_warc_date(headers.get_header("WARC-Date") or "")
    except ConfigError:
        raise FetchError("the record has no valid WARC-Date", reason="bad-record") from None
    record_type = record.rec_type
    claimed = normalize_digest(headers.get_header("WARC-Payload-Digest"))
    computed = format_sha1(digest.digest())
    payload.seek(0)
    verification: str
    why: str | None
    if record_type == "revisit":
        verification, why = UNVERIFIABLE, "revisit: the payload is held by the capture it refers to"
    else:
        verification, why = _judge(capture.digest or claimed, computed)
        if verification == VERIFIED and claimed and claimed.startswith("sha1:") and claimed != computed:
            verification, why = MISMATCH, f"payload {computed} does not match WARC-Payload-Digest {claimed}"
    raw.seek(0)
    details = {**details, "warc_record_id": headers.get_header("WARC-Record-ID"),
               "refers_to_url": headers.get_header("WARC-Refers-To-Target-URI"),
               "refers_to_date": headers.get_header("WARC-Refers-To-Date"),
               "capture_time_from": "warc-date", "capture_time": to_iso(capture_time)}
    fetched = Fetched(capture=capture, kind="record", capture_time=capture_time, body=raw,
                      body_size=capture.length or 0, payload_sha1=computed, verification=verification,
                      verification_reason=why, status=int(status_line) if status_line and status_line.isdigit()
                      else None, reason=reason, http_headers=http_headers, target_uri=target,
                      record_type=record_type, record_id=headers.get_header("WARC-Record-ID"),
                      claimed_digest=claimed, details=details)
    fetched.details["_payload"] = payload  # kept for revisit resolution; never serialised
    if plain is not raw:
        plain.close()
    return fetched


def _parse_arc_record(capture: Capture, raw: IO[bytes], plain: IO[bytes], details: dict[str, Any]) -> Fetched:
    """An ARC record: its block becomes a WARC record of ours (:mod:`.arc`), checked against the CDX line."""
    try:
        fetched = parse_arc(capture, plain, details)
    finally:
        if plain is not raw:
            plain.close()
        raw.close()
    if fetched.target_uri != capture.url and not _same_key(fetched.target_uri, capture.urlkey):
        fetched.close()
        payload_of(fetched).close()
        raise FetchError(f"the range holds an ARC record of {fetched.target_uri!r}, not {capture.url!r}",
                         reason="wrong-record")
    fetched.verification, fetched.verification_reason = _judge(capture.digest, fetched.payload_sha1)
    fetched.details["received_bytes"] = capture.length or 0
    return fetched


def _same_key(url: str, urlkey: str) -> bool:
    try:
        return surt(url) == urlkey
    except ArchiveKeeperError:
        return False


def _judge(expected: str | None, computed: str) -> tuple[str, str | None]:
    if expected is None:
        return UNVERIFIABLE, "no digest in the CDX row or the record"
    if not expected.startswith("sha1:"):
        return UNVERIFIABLE, f"unsupported digest algorithm {expected.split(':')[0]}"
    if expected == computed:
        return VERIFIED, None
    return MISMATCH, f"payload {computed} does not match the CDX digest {expected}"


def payload_of(fetched: Fetched) -> IO[bytes]:
    """The payload a parsed record carried (spooled, at 0)."""
    payload: IO[bytes] = fetched.details.pop("_payload")
    payload.seek(0)
    return payload


def local_payload(original: LocalPayload) -> tuple[IO[bytes], int, str]:
    """The payload of a record already in the workspace, as stored (no decoding)."""
    out: IO[bytes] = tempfile.SpooledTemporaryFile(max_size=SPOOL_MAX)  # noqa: SIM115
    digest = hashlib.sha1()
    size = 0
    path = original.path
    if not path.exists() and path.name.endswith(".open"):
        path = path.with_name(path.name.removesuffix(".open"))  # finished since it was looked up
    for chunk in read_payload(path, original.offset, decode=False):
        digest.update(chunk)
        out.write(chunk)
        size += len(chunk)
    out.seek(0)
    return out, size, format_sha1(digest.digest())


def resolve_revisit(revisit: Fetched, payload: IO[bytes], size: int, sha1: str, origin: dict[str, Any]) -> Fetched:
    """A revisit's own headers and capture time with the payload of the capture it refers to."""
    expected = revisit.capture.digest or revisit.claimed_digest
    verification, why = _judge(expected, sha1)
    revisit.body.close()
    details = {**revisit.details, "revisit_record_id": revisit.record_id, "payload_from": origin}
    details.pop("_payload", None)
    return Fetched(capture=revisit.capture, kind="resolved-revisit", capture_time=revisit.capture_time, body=payload,
                   body_size=size, payload_sha1=sha1, verification=verification, verification_reason=why,
                   status=revisit.status, reason=revisit.reason, http_headers=revisit.http_headers,
                   target_uri=revisit.target_uri, details=details)


def compress_member(raw: IO[bytes]) -> IO[bytes]:
    """Gzip an uncompressed record into one member (content unchanged)."""
    out: IO[bytes] = tempfile.SpooledTemporaryFile(max_size=SPOOL_MAX)  # noqa: SIM115
    with gzip.GzipFile(fileobj=out, mode="wb", mtime=0) as gz:
        while chunk := raw.read(READ_CHUNK):
            gz.write(chunk)
    out.seek(0)
    return out
