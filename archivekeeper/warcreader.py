"""Stream the records of one WARC or ARC file into catalog records, hashing as it reads.

WARC files are parsed with FastWARC (several times faster than warcio), ARC files with warcio
(FastWARC does not read ARC; :mod:`.arcreader`). While parsing we check every payload's SHA-1 (FastWARC
hashes it in Rust; a payload that does not match its WARC-Payload-Digest is read again to learn its
SHA-1), every block against its WARC-Block-Digest (which alone covers a response's HTTP headers: a block
up to :data:`FREEZE_MAX` is held once so both digests come from one read, a bigger one is read again)
and the file's framing: per-record gzip, no truncated tail, no trailing garbage. A block that does not
match makes the record a ``mismatch``. The SHA-256 of the whole file is computed in the same pass, or
left to the caller (the importer hashes each file in another process, beside the parser). Payloads are
read in chunks and never held whole in memory beyond that.

Scanning is two halves: :func:`scan_raw` parses (what the importer's workers run) and
:func:`build_row` turns what was read into a catalog row (what its main process runs).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import re
import zlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, BinaryIO, cast

from fastwarc.warc import ArchiveIterator as FastArchiveIterator
from fastwarc.warc import WarcHeader as _H

from .digests import HashingReader, format_sha1, normalize_digest
from .errors import ArchiveKeeperError, InputFileError, NotAWarcError
from .models import CATALOGUED_TYPES, MISMATCH, UNVERIFIABLE, VERIFIED, CatalogRecord, make_record_key
from .surt import surt
from .timestamps import parse_warc_date, to_iso, to_timestamp

READ_CHUNK = 1 << 16
FILE_HASH_CHUNK = 1 << 20
# payloads of one file that may fail FastWARC's digest check (each then read again) before the
# rest of the file is hashed in Python instead
RUST_DIGEST_MISSES = 16
# a block up to this size is held in memory once (FastWARC freezes it), so that its WARC-Block-Digest and
# its payload digest are both checked from one read; a larger block's digest is checked by reading it again
FREEZE_MAX = 8 << 20
# WARC-Block-Digest algorithms checked (any other is left unchecked), with their digest sizes
BLOCK_DIGEST_SIZES = {"sha1": 20, "sha256": 32, "sha512": 64, "md5": 16}
# FastWARC record type bits (WarcRecordType)
_TYPE_NAMES = {2: "warcinfo", 4: "response", 8: "resource", 16: "request", 32: "metadata", 64: "revisit",
               128: "conversion", 256: "continuation"}
GZIP_MAGIC = b"\x1f\x8b"
_BLANK_LINE = re.compile(rb"\n\r*\n")
# a record should end in CRLF CRLF; tolerate writers that left some of it out
_TERMINATOR = 4
# What the parser read of one catalogued record, nothing derived yet (see build_row):
# (offset, length, record_type, url, warc_date, record_id, status, content_type, claimed digest
#  (normalized), computed payload SHA-1, refers_to_url, refers_to_date, file_key (ARC: its offset),
#  damage (why the record's bytes are known incomplete, or None), block_fault (why the block does not match
#  its WARC-Block-Digest, or None))
RawRecord = tuple[Any, ...]
# CatalogRecord fields in row order (None: pre_cutoff and file_id, which a row holds instead)
_RECORD_FIELDS = ("record_key", "url", "urlkey", "timestamp", "capture_time", "year", None, "status", "mime",
                  "digest", "payload_sha1", "record_type", "record_id", None, "offset", "length", "source",
                  "verification", "verification_reason", "refers_to_url", "refers_to_date")
# a WARC-Date already in the catalog's form (to the second, UTC): used as is
_PLAIN_WARC_DATE = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ\Z")


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


def _verification(record_type: str, claimed: str | None, computed: str | None,
                  block_fault: str | None = None) -> tuple[str, str | None]:
    if record_type == "revisit":
        return UNVERIFIABLE, "revisit: the payload is held by the original capture"
    if claimed is None:
        state, reason = UNVERIFIABLE, "no WARC-Payload-Digest in the record"
    elif not claimed.startswith("sha1:"):
        state, reason = UNVERIFIABLE, f"unsupported digest algorithm {claimed.split(':')[0]}"
    elif claimed == computed:
        state, reason = VERIFIED, None
    else:
        state, reason = MISMATCH, f"payload {computed} does not match WARC-Payload-Digest {claimed}"
    if block_fault is None:
        return state, reason
    return MISMATCH, block_fault if reason is None else f"{reason}; {block_fault}"


def _mime(content_type: str | None) -> str | None:
    if not content_type:
        return None
    return content_type.split(";", 1)[0].strip().lower() or None


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
    warc_file = str(path)
    for row in scan_rows(path, source=source, result=result):
        values = {name: value for name, value in zip(_RECORD_FIELDS, row, strict=True) if name is not None}
        yield CatalogRecord(**values, pre_cutoff=False, warc_file=warc_file)


def scan_rows(path: Path, *, source: str = "import", result: ScanResult | None = None, file_id: int = 0,
              cutoff_iso: str | None = None, hash_file: bool = True) -> Iterator[tuple[Any, ...]]:
    """:func:`scan` as catalog insert rows (``catalog.CAPTURE_COLUMNS`` order).

    ``file_id`` fills the ``file_id`` column; ``pre_cutoff`` is ``capture_time < cutoff_iso``
    (0 without a cutoff). Same records, same faults, same order as :func:`scan`.
    """
    result = result if result is not None else ScanResult()
    for raw in scan_raw(path, result=result, hash_file=hash_file):
        try:
            yield build_row(raw, source=source, path=path, file_id=file_id, cutoff_iso=cutoff_iso)
        except InputFileError as exc:
            result.problems.append(exc)


def scan_raw(path: Path, *, result: ScanResult | None = None, hash_file: bool = True) -> Iterator[RawRecord]:
    """The parsing half of :func:`scan_rows`: one :data:`RawRecord` per catalogued record, as read.

    :func:`build_row` is the other half (where record-level faults show). The importer runs this
    half in its workers and :func:`build_row` in its main process, so one file keeps two cores
    busy. With ``hash_file=False`` the file's SHA-256 is left to the caller (``result.sha256``
    stays ``None``, ``result.size`` is the file's size); structural faults raise as in :func:`scan`.
    """
    result = result if result is not None else ScanResult()
    fmt = sniff(path)
    if fmt.kind == "arc":
        from .arcreader import scan_arc  # arcreader builds on this module

        yield from scan_arc(path, fmt.gzipped, result)
    else:
        yield from _scan_warc(path, fmt, result, hash_file)


def build_row(raw: RawRecord, *, source: str, path: Path, file_id: int = 0,
              cutoff_iso: str | None = None) -> tuple[Any, ...]:
    """The catalog row of one :data:`RawRecord`; :class:`InputFileError` for a record-level fault."""
    (offset, length, record_type, url, warc_date, record_id, status, content_type, claimed, computed,
     refers_to_url, refers_to_date, file_key, damage, block_fault) = raw
    if not url:
        raise InputFileError("record has no WARC-Target-URI", path=path, offset=offset)
    url = url.strip().strip("<>")
    if not warc_date:
        raise InputFileError("record has no WARC-Date", path=path, offset=offset)
    try:
        if _PLAIN_WARC_DATE.match(warc_date) and warc_date >= "1000":
            datetime.fromisoformat(warc_date)  # validates; the text already is the catalog's form
            capture_time = warc_date
            timestamp = (warc_date[0:4] + warc_date[5:7] + warc_date[8:10] + warc_date[11:13] + warc_date[14:16]
                         + warc_date[17:19])
            year = int(warc_date[0:4])
        else:
            moment = parse_warc_date(warc_date)
            capture_time, timestamp, year = to_iso(moment), to_timestamp(moment), moment.year
        urlkey = surt(url)
    except ArchiveKeeperError as exc:
        raise InputFileError(str(exc), path=path, offset=offset) from None
    except ValueError:  # the fast path's check failed: let the full parser word the error
        try:
            parse_warc_date(warc_date)
        except ArchiveKeeperError as exc:
            raise InputFileError(str(exc), path=path, offset=offset) from None
        raise
    verification, reason = _verification(record_type, claimed, computed, block_fault)
    if damage:  # incomplete or mis-framed bytes are never verified; a mismatch stays a mismatch
        verification, reason = (MISMATCH, f"{reason}; {damage}") if verification == MISMATCH else (UNVERIFIABLE, damage)
    digest = claimed or computed
    return (
        make_record_key(record_id, url, capture_time, record_type, computed or claimed, file_key), url, urlkey,
        timestamp, capture_time, year, int(cutoff_iso is not None and capture_time < cutoff_iso), status,
        _mime(content_type), digest, computed, record_type, record_id, file_id, offset, length, source, verification,
        reason, refers_to_url, refers_to_date,
    )


def _scan_warc(path: Path, fmt: FileFormat, result: ScanResult, hash_file: bool) -> Iterator[RawRecord]:
    size = path.stat().st_size
    pending: list[Any] | None = None
    pending_pos = -1
    misses = [0]
    with open(path, "rb") as raw, open(path, "rb") as probe:
        reader: BinaryIO | HashingReader = HashingReader(raw) if hash_file else raw
        # HTTP headers are parsed per record (_raw_from_fastwarc), after the block digest is checked
        iterator = FastArchiveIterator(cast(BinaryIO, reader), parse_http=False, auto_decode="none",
                                       quirks_mode=True)
        try:
            for record in iterator:
                pos = record.stream_pos
                if pos <= pending_pos or (pending_pos >= 0 and fmt.gzipped and pos == pending_pos):
                    raise InputFileError(
                        "not a per-record gzip WARC (one gzip stream holds several records); "
                        "recompress it with `warcio recompress`", path=path, offset=pending_pos)
                if pending_pos >= 0 and (not fmt.gzipped or not _payload_proven(pending)):
                    _check_framing(probe, pending_pos, pos, fmt.gzipped, path, pending, result)
                if pending is not None:
                    pending[1] = pos - pending_pos
                    yield tuple(pending)
                pending = None
                pending_pos = pos
                result.records_seen += 1
                record_type = _TYPE_NAMES.get(int(record.record_type))
                if record_type is not None and record_type in CATALOGUED_TYPES:
                    pending = _raw_from_fastwarc(record, record_type, pos, path, misses)
        except OSError as exc:
            where = pending_pos if pending_pos >= 0 else 0
            if pending is not None:
                pending[1] = _safe_end(probe, pending_pos, fmt.gzipped, path) - pending_pos
                yield tuple(pending)
            raise InputFileError(f"cannot parse WARC in or after this record: {exc}",
                                 path=path, offset=where) from None
        if pending_pos < 0:
            raise NotAWarcError("no WARC records found", path=path)
        try:
            last_end = record_end(probe, pending_pos, fmt.gzipped, path)
            if last_end - _TERMINATOR > size:
                raise InputFileError("file ends inside the last record (truncated)", path=path, offset=last_end)
        except InputFileError as exc:
            if pending is not None:  # kept, but never verified: its bytes are incomplete
                pending[1] = size - pending_pos
                pending[13] = f"truncated: {exc.reason}"
                yield tuple(pending)
            raise
        if pending is not None:
            pending[1] = min(last_end, size) - pending_pos
            yield tuple(pending)
        _check_trailer(probe, last_end, size, path)  # nothing but padding after the last record
        if isinstance(reader, HashingReader):
            while reader.read(FILE_HASH_CHUNK):  # the hash must cover the whole file
                pass
            result.size = reader.bytes_read
            result.sha256 = reader.sha256.hexdigest()
        else:
            result.size = size


def _payload_proven(pending: list[Any] | None) -> bool:
    """A record whose payload SHA-1 matched its header was read to exactly its end: its framing is
    proven without re-reading it (the cheap case, and the common one for big response records)."""
    return pending is not None and pending[8] is not None and pending[8] == pending[9] and not pending[13]


def _check_framing(probe: BinaryIO, offset: int, next_offset: int, gzipped: bool, path: Path,
                   pending: list[Any] | None, result: ScanResult) -> None:
    """The record at ``offset`` must end where the next one starts: in a plain WARC by its
    Content-Length (else the reader resynchronised on a later ``WARC/`` line), in a per-record gzip
    WARC at the end of its gzip member (else a too-long Content-Length swallowed the next member).
    Otherwise records were skipped or shared: the record is kept unverified and the file reported."""
    try:
        expected = record_end(probe, offset, gzipped, path)
    except InputFileError as exc:
        problem = exc
    else:
        if expected == next_offset or (not gzipped and expected - _TERMINATOR <= next_offset <= expected):
            return
        gap = next_offset - expected
        if not gzipped and 0 < gap <= 1 << 16:
            probe.seek(expected)
            if not probe.read(gap).strip(b"\r\n \t"):
                return  # only blank padding between the records
        what = f"{gap} bytes skipped" if gap > 0 else f"{-gap} bytes read twice"
        if gzipped:
            what = f"its gzip member ends at {expected}, the next record was read at {next_offset}"
        problem = InputFileError(f"record's Content-Length does not match where the next record starts ({what})",
                                 path=path, offset=offset)
    result.problems.append(problem)
    if pending is not None:
        pending[13] = f"bad framing: {problem.reason}"


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


def _raw_from_fastwarc(record: Any, record_type: str, pos: int, path: Path, misses: list[int]) -> list[Any]:
    """A :data:`RawRecord` as a list (its length is set once the next record's offset is known).

    ``misses[0]`` counts this file's payloads that did not match their digest so far."""
    headers = record.headers
    block_claim = None if record_type == "revisit" else headers.get(_H.WARC_BLOCK_DIGEST)  # as warcio: not revisits
    block_ok = _check_block_first(record, block_claim)
    status: int | None = None
    if record.is_http:
        record.parse_http(auto_decode="none", quirks_mode=True)
        http = record.http_headers
        status = http.status_code or None
        content_type = http.get("Content-Type")
    else:
        content_type = headers.get(_H.CONTENT_TYPE)
    claimed = normalize_digest(headers.get(_H.WARC_PAYLOAD_DIGEST))
    computed = None
    if record_type != "revisit":
        if claimed is not None and claimed.startswith("sha1:") and misses[0] < RUST_DIGEST_MISSES:
            # FastWARC hashes the payload in Rust: when it matches, the claim is the SHA-1; when it
            # does not, the payload is read again (after a few of those, the file's digests are
            # not worth checking that way: hash in Python from then on)
            if record.verify_payload_digest(consume=True):
                computed = claimed
            else:
                misses[0] += 1
                computed = _payload_sha1_at(path, pos)
        else:
            computed = payload_sha1(record.reader.read)
    block_fault = None
    if block_claim is not None and not block_ok:
        block_fault = _block_fault(block_claim, block_ok, None if record.is_http else computed, path, pos)
    return [pos, 0, record_type, headers.get(_H.WARC_TARGET_URI), headers.get(_H.WARC_DATE),
            headers.get(_H.WARC_RECORD_ID), status, content_type, claimed, computed,
            headers.get(_H.WARC_REFERS_TO_TARGET_URI), headers.get(_H.WARC_REFERS_TO_DATE), None, None, block_fault]


BlockClaim = tuple[str, bytes | None, str]  # (algorithm, raw digest or None if it does not decode, as written)


def parse_block_digest(value: str | None) -> BlockClaim | None:
    """A ``WARC-Block-Digest`` (``algo:value``, base32 or base16 in any case, padded or not) as a
    :data:`BlockClaim`; None when absent or of an algorithm not in :data:`BLOCK_DIGEST_SIZES`."""
    if value is None or not value.strip():
        return None
    written = value.strip()
    algo, _, text = written.partition(":")
    algo = algo.strip().lower().replace("-", "")
    size = BLOCK_DIGEST_SIZES.get(algo)
    if size is None:
        return None
    text = text.strip()
    raw: bytes | None = None
    try:
        if len(text) == 2 * size:
            raw = binascii.unhexlify(text)
        else:
            raw = base64.b32decode(text.upper() + "=" * (-len(text) % 8))
    except (binascii.Error, ValueError):
        raw = None
    return algo, raw if raw is not None and len(raw) == size else None, written[:120]


def _check_block_first(record: Any, block_claim: str | None) -> bool | None:
    """Check the block digest of an HTTP record small enough to hold, before its HTTP headers are parsed:
    FastWARC freezes the block, so the payload is then read from memory (one read, both hashed in Rust).
    None when left for :func:`_block_fault` (no claim, not HTTP, too big to hold, or not a digest)."""
    if block_claim is None or not record.is_http or record.content_length > FREEZE_MAX:
        return None
    if record.verify_block_digest(consume=False):
        return True
    claim = parse_block_digest(block_claim)  # a form FastWARC does not read (lower-case base32, "sha-1")?
    if claim is None or claim[1] is None:
        return None
    record.headers.set(_H.WARC_BLOCK_DIGEST, f"{claim[0]}:{claim[1].hex()}")
    return bool(record.verify_block_digest(consume=False))


def _block_fault(block_claim: str, checked: bool | None, payload_sha1: str | None, path: Path,
                 offset: int) -> str | None:
    """Why the block does not match its WARC-Block-Digest, or None (it matches, or its algorithm is not
    one we check). ``payload_sha1``: the block's SHA-1 when block and payload are the same bytes (not
    HTTP); with neither that nor ``checked``, the block is read again (a big HTTP record). A mismatch is
    read again to name the block's real digest."""
    claim = parse_block_digest(block_claim)
    if claim is None:
        return None
    algo, raw, written = claim
    if raw is None:
        return f"WARC-Block-Digest {written} is not a {algo} digest"
    if checked is None and algo == "sha1" and payload_sha1 is not None:
        checked = payload_sha1 == format_sha1(raw)
    actual = None
    if checked is None:
        actual = _block_digest_at(path, offset, algo)
        checked = actual == raw
    if checked:
        return None
    actual = actual if actual is not None else _block_digest_at(path, offset, algo)
    return f"block {algo}:{base64.b32encode(actual).decode('ascii')} does not match WARC-Block-Digest {written}"


def _block_digest_at(path: Path, offset: int, algo: str) -> bytes:
    """The ``algo`` digest of the block of the record at ``offset``, read again (b"" if unreadable)."""
    digest = hashlib.new(algo)
    try:
        with open(path, "rb") as handle:
            handle.seek(offset)
            for record in FastArchiveIterator(handle, parse_http=False, auto_decode="none", quirks_mode=True):
                while chunk := record.reader.read(READ_CHUNK):
                    digest.update(chunk)
                return digest.digest()
    except OSError:
        pass
    return b""


def payload_sha1(read: Any) -> str:
    """``sha1:BASE32`` of everything ``read(size)`` returns until it returns nothing."""
    sha1 = hashlib.sha1()
    while chunk := read(READ_CHUNK):
        sha1.update(chunk)
    return format_sha1(sha1.digest())


def _payload_sha1_at(path: Path, offset: int) -> str:
    """SHA-1 of the raw payload of the record at ``offset``, read again (its digest did not match)."""
    sha1 = hashlib.sha1()
    for chunk in read_payload(path, offset, decode=False):
        sha1.update(chunk)
    return format_sha1(sha1.digest())


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
