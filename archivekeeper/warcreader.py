"""Stream the records of one WARC or ARC file into catalog records, hashing as it reads.

WARC files are parsed with FastWARC (several times faster than warcio), ARC files with warcio
(FastWARC does not read ARC). In the same single pass we compute the SHA-1 of every payload and
the SHA-256 of the whole file, and we check the file's framing: per-record gzip, no truncated
tail, no trailing garbage. Payloads are read in chunks and never held whole in memory.
"""

from __future__ import annotations

import hashlib
import re
import zlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO

from .digests import HashingReader, format_sha1, normalize_digest
from .errors import ArchiveKeeperError, InputFileError, NotAWarcError
from .models import CATALOGUED_TYPES, MISMATCH, UNVERIFIABLE, VERIFIED, CatalogRecord, make_record_key
from .surt import surt
from .timestamps import parse_warc_date, to_iso, to_timestamp

READ_CHUNK = 1 << 16
# FastWARC record type bits (WarcRecordType)
_TYPE_NAMES = {2: "warcinfo", 4: "response", 8: "resource", 16: "request", 32: "metadata", 64: "revisit",
               128: "conversion", 256: "continuation"}
GZIP_MAGIC = b"\x1f\x8b"
_BLANK_LINE = re.compile(rb"\n\r*\n")
# a record should end in CRLF CRLF; tolerate writers that left some of it out
_TERMINATOR = 4


@dataclass(frozen=True, slots=True)
class FileFormat:
    kind: str  # "warc" or "arc"
    gzipped: bool


def sniff(path: Path) -> FileFormat:
    """Tell a WARC from an ARC (plain or gzipped); anything else is :class:`NotAWarcError`."""
    try:
        with open(path, "rb") as handle:
            head = handle.read(4096)
    except FileNotFoundError:
        raise InputFileError("no such file", path=path) from None
    except IsADirectoryError:
        raise InputFileError("is a directory", path=path) from None
    except OSError as exc:
        raise InputFileError(f"cannot read: {exc.strerror or exc}", path=path) from None
    if not head:
        raise NotAWarcError("empty file, not a WARC or ARC", path=path)
    gzipped = head.startswith(GZIP_MAGIC)
    text = head
    if gzipped:
        try:
            text = zlib.decompressobj(31).decompress(head, 64)
        except zlib.error:
            raise InputFileError("corrupt gzip data at the start of the file", path=path, offset=0) from None
    if text.startswith(b"WARC/"):
        return FileFormat("warc", gzipped)
    if text.startswith(b"filedesc:"):
        return FileFormat("arc", gzipped)
    raise NotAWarcError("not a WARC or ARC file (no WARC/ or filedesc: header)", path=path)


@dataclass
class ScanResult:
    """What a finished scan learned about the file besides its records."""

    size: int = 0
    sha256: str | None = None
    records_seen: int = 0
    problems: list[InputFileError] = field(default_factory=list)


class _PayloadHasher:
    def __init__(self) -> None:
        self.sha1 = hashlib.sha1()
        self.length = 0

    def feed_from(self, read: Any) -> None:
        while chunk := read(READ_CHUNK):
            self.sha1.update(chunk)
            self.length += len(chunk)


def _verification(record_type: str, claimed: str | None, computed: str | None,
                  block_claim: str | None = None, block_computed: str | None = None) -> tuple[str, str | None]:
    if record_type == "revisit":
        return UNVERIFIABLE, "revisit: the payload is held by the original capture"
    if claimed is not None:
        if not claimed.startswith("sha1:"):
            return UNVERIFIABLE, f"unsupported digest algorithm {claimed.split(':')[0]}"
        if claimed == computed:
            return VERIFIED, None
        return MISMATCH, f"payload {computed} does not match WARC-Payload-Digest {claimed}"
    return UNVERIFIABLE, "no WARC-Payload-Digest in the record"


def _mime(content_type: str | None) -> str | None:
    if not content_type:
        return None
    return content_type.split(";", 1)[0].strip().lower() or None


def _build(*, url: str | None, warc_date: str | None, record_type: str, record_id: str | None,
           status: int | None, content_type: str | None, claimed: str | None, computed: str | None,
           offset: int, source: str, path: Path, refers_to_url: str | None = None,
           refers_to_date: str | None = None, file_key: str | None = None) -> CatalogRecord:
    if not url:
        raise InputFileError("record has no WARC-Target-URI", path=path, offset=offset)
    url = url.strip().strip("<>")
    if not warc_date:
        raise InputFileError("record has no WARC-Date", path=path, offset=offset)
    try:
        moment = parse_warc_date(warc_date)
        urlkey = surt(url)
    except ArchiveKeeperError as exc:
        raise InputFileError(str(exc), path=path, offset=offset) from None
    claimed = normalize_digest(claimed)
    verification, reason = _verification(record_type, claimed, computed)
    capture_time = to_iso(moment)
    key = make_record_key(record_id, url, capture_time, record_type, claimed or computed, file_key)
    return CatalogRecord(
        record_key=key, url=url, urlkey=urlkey, timestamp=to_timestamp(moment), capture_time=capture_time,
        year=moment.year, pre_cutoff=False, status=status, mime=_mime(content_type),
        digest=claimed or computed, payload_sha1=computed, record_type=record_type, record_id=record_id,
        warc_file=str(path), offset=offset, length=0, source=source, verification=verification,
        verification_reason=reason, refers_to_url=refers_to_url, refers_to_date=refers_to_date,
    )


def record_end(handle: BinaryIO, offset: int, gzipped: bool, path: Path) -> int:
    """Where the record starting at ``offset`` ends, checking that it is complete.

    gzip: the end of its gzip member (which must end cleanly); plain: WARC headers + Content-Length
    + the CRLF CRLF that closes a record.
    """
    handle.seek(offset)
    if gzipped:
        inflater = zlib.decompressobj(31)
        consumed = 0
        while not inflater.eof:
            chunk = handle.read(READ_CHUNK)
            if not chunk:
                raise InputFileError("truncated gzip member (file ends inside a record)", path=path, offset=offset)
            try:
                inflater.decompress(chunk, 0)
            except zlib.error as exc:
                raise InputFileError(f"corrupt gzip member: {exc}", path=path, offset=offset) from None
            consumed += len(chunk)
            while inflater.unconsumed_tail:
                inflater.decompress(inflater.unconsumed_tail, 0)
        return offset + consumed - len(inflater.unused_data)
    header = b""
    blank = None
    while blank is None:
        chunk = handle.read(4096)
        if not chunk:
            raise InputFileError("truncated record headers", path=path, offset=offset)
        header += chunk
        blank = _BLANK_LINE.search(header)
        if blank is None and len(header) > 1 << 20:
            raise InputFileError("record header longer than 1 MiB", path=path, offset=offset)
    head_len = blank.end()
    length = None
    for line in header[:head_len].split(b"\n"):
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            try:
                length = int(value.strip())
            except ValueError:
                raise InputFileError("bad Content-Length in record headers", path=path, offset=offset) from None
    if length is None or length < 0:
        raise InputFileError("record has no valid Content-Length", path=path, offset=offset)
    return offset + head_len + length + 4


def scan(path: Path, *, source: str = "import", result: ScanResult | None = None) -> Iterator[CatalogRecord]:
    """Yield a :class:`CatalogRecord` for every response/resource/revisit record of ``path``.

    ``warc_file`` of each record is ``str(path)``; the caller maps it to the catalog's file id.
    Record-level faults (an unparsable WARC-Date, no URI) are collected in ``result.problems`` and
    the scan goes on; a structural fault (corrupt or truncated gzip, bad framing) raises
    :class:`InputFileError` after every good record before it has been yielded.
    """
    result = result if result is not None else ScanResult()
    fmt = sniff(path)
    if fmt.kind == "arc":
        yield from _scan_arc(path, fmt, source, result)
    else:
        yield from _scan_warc(path, fmt, source, result)


def _scan_warc(path: Path, fmt: FileFormat, source: str, result: ScanResult) -> Iterator[CatalogRecord]:
    from fastwarc.warc import ArchiveIterator

    size = path.stat().st_size
    pending: CatalogRecord | None = None
    pending_pos = -1
    with open(path, "rb") as raw, open(path, "rb") as probe:
        reader = HashingReader(raw)
        iterator = ArchiveIterator(reader, parse_http=True, auto_decode="none", quirks_mode=True)
        try:
            for record in iterator:
                pos = int(record.stream_pos)
                if pos <= pending_pos or (pending_pos >= 0 and fmt.gzipped and pos == pending_pos):
                    raise InputFileError(
                        "not a per-record gzip WARC (one gzip stream holds several records); "
                        "recompress it with `warcio recompress`", path=path, offset=pending_pos)
                if pending is not None:
                    pending.length = pos - pending.offset
                    yield pending
                pending = None
                pending_pos = pos
                result.records_seen += 1
                record_type = _TYPE_NAMES.get(int(record.record_type), "other")
                if record_type not in CATALOGUED_TYPES:
                    continue
                pending = _from_fastwarc(record, record_type, pos, source, path, result)
        except OSError as exc:
            where = pending_pos if pending_pos >= 0 else 0
            if pending is not None:
                pending.length = _safe_end(probe, pending.offset, fmt.gzipped, path) - pending.offset
                yield pending
            raise InputFileError(f"cannot parse WARC in or after this record: {exc}",
                                 path=path, offset=where) from None
        if pending_pos < 0:
            raise NotAWarcError("no WARC records found", path=path)
        end = min(record_end(probe, pending_pos, fmt.gzipped, path), size)
        if pending is not None:
            pending.length = end - pending.offset
            yield pending
        _check_trailer(probe, end, size, path)
        while reader.read(READ_CHUNK):  # the hash must cover the whole file
            pass
    result.size = reader.bytes_read
    result.sha256 = reader.sha256.hexdigest()


def _safe_end(probe: BinaryIO, offset: int, gzipped: bool, path: Path) -> int:
    try:
        return record_end(probe, offset, gzipped, path)
    except InputFileError:
        probe.seek(0, 2)
        return probe.tell()


def _check_trailer(probe: BinaryIO, end: int, size: int, path: Path) -> None:
    if end - _TERMINATOR > size:
        raise InputFileError("file ends inside the last record (truncated)", path=path, offset=end)
    probe.seek(min(end, size))
    rest = probe.read(4096)
    if rest.strip(b"\r\n\x00 \t"):
        raise InputFileError("unreadable data after the last record", path=path, offset=end)


def _from_fastwarc(record: Any, record_type: str, pos: int, source: str, path: Path,
                   result: ScanResult) -> CatalogRecord | None:
    headers = record.headers
    status: int | None = None
    content_type = headers.get("Content-Type")
    if record.is_http:
        http = record.http_headers
        status = int(http.status_code) if http.status_code else None
        content_type = http.get("Content-Type")
    computed = None
    if record_type != "revisit":
        hasher = _PayloadHasher()
        hasher.feed_from(record.reader.read)
        computed = format_sha1(hasher.sha1.digest())
    try:
        return _build(
            url=headers.get("WARC-Target-URI"), warc_date=headers.get("WARC-Date"), record_type=record_type,
            record_id=headers.get("WARC-Record-ID"), status=status, content_type=content_type,
            claimed=headers.get("WARC-Payload-Digest"), computed=computed, offset=pos, source=source, path=path,
            refers_to_url=headers.get("WARC-Refers-To-Target-URI"), refers_to_date=headers.get("WARC-Refers-To-Date"),
        )
    except InputFileError as exc:
        result.problems.append(exc)
        return None


def _scan_arc(path: Path, fmt: FileFormat, source: str, result: ScanResult) -> Iterator[CatalogRecord]:
    from warcio.archiveiterator import ArchiveIterator
    from warcio.exceptions import ArchiveLoadFailed

    with open(path, "rb") as raw:
        reader = HashingReader(raw)
        iterator = ArchiveIterator(reader, arc2warc=True, check_digests=False)
        offset = 0
        try:
            for record in iterator:
                result.records_seen += 1
                record_type = record.rec_type
                built: CatalogRecord | None = None
                if record_type in CATALOGUED_TYPES:
                    hasher = _PayloadHasher()
                    hasher.feed_from(record.raw_stream.read)
                    iterator.read_to_end()  # warcio knows the offset only once the record is read
                    offset = iterator.get_record_offset()
                    status_line = record.http_headers.get_statuscode() if record.http_headers else None
                    status = int(status_line) if status_line and status_line.isdigit() else None
                    ctype = record.http_headers.get_header("Content-Type") if record.http_headers else None
                    try:
                        built = _build(
                            url=record.rec_headers.get_header("WARC-Target-URI"),
                            warc_date=record.rec_headers.get_header("WARC-Date"), record_type=record_type,
                            record_id=None, status=status,
                            content_type=ctype or record.rec_headers.get_header("Content-Type"), claimed=None,
                            computed=format_sha1(hasher.sha1.digest()), offset=offset, source=source, path=path,
                            file_key=str(offset),
                        )
                    except InputFileError as exc:
                        result.problems.append(exc)
                iterator.read_to_end()
                offset = iterator.get_record_offset()
                if built is not None:
                    built.length = iterator.get_record_length()
                    yield built
        except (ArchiveLoadFailed, ValueError, EOFError, OSError, zlib.error) as exc:
            raise InputFileError(f"cannot parse ARC: {exc}", path=path, offset=offset) from None
        while reader.read(READ_CHUNK):
            pass
    result.size = reader.bytes_read
    result.sha256 = reader.sha256.hexdigest()


def read_payload(path: Path, offset: int, *, decode: bool = True) -> Iterator[bytes]:
    """Stream the payload of the record at ``offset`` (no scanning): the HTTP body of a response,
    the block of a resource. ``decode`` undoes chunked transfer and gzip/deflate/br content encoding."""
    fmt = sniff(path)
    with open(path, "rb") as handle:
        handle.seek(offset)
        if fmt.kind == "arc":
            from warcio.archiveiterator import ArchiveIterator as WarcioIterator

            for record in WarcioIterator(handle, arc2warc=True):
                stream = record.content_stream() if decode else record.raw_stream
                while chunk := stream.read(READ_CHUNK):
                    yield chunk
                return
            raise InputFileError("no record at this offset", path=path, offset=offset)
        from fastwarc.warc import ArchiveIterator

        try:
            for record in ArchiveIterator(handle, parse_http=True, auto_decode="all" if decode else "none",
                                          quirks_mode=True):
                while chunk := record.reader.read(READ_CHUNK):
                    yield chunk
                return
        except OSError as exc:
            raise InputFileError(f"cannot read the record: {exc}", path=path, offset=offset) from None
        raise InputFileError("no record at this offset", path=path, offset=offset)


def read_record_bytes(path: Path, offset: int, length: int) -> Iterator[bytes]:
    """Stream the raw bytes of a record exactly as stored (a gzip member, or plain WARC bytes)."""
    with open(path, "rb") as handle:
        handle.seek(offset)
        remaining = length
        while remaining > 0:
            chunk = handle.read(min(READ_CHUNK * 16, remaining))
            if not chunk:
                raise InputFileError("file ends before the record does", path=path, offset=offset)
            remaining -= len(chunk)
            yield chunk
