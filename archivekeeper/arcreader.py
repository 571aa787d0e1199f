"""Stream the records of one ARC file (plain or per-record gzip) into raw records, with warcio.

ARC records carry no digest, so none is ever ``verified``; what can be checked is the record's header line
(``URL IP DATE TYPE LENGTH``) and its framing. warcio reads a malformed one as best it can (a date of the
wrong length or an impossible one made into some time, a length that is not a number read as 0, a block the
file cuts short taken as it is, a record that does not end where its length says only warned about on
stderr): such a record is kept with its damage recorded, and the file is reported.
"""

from __future__ import annotations

import re
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any, BinaryIO

from warcio.archiveiterator import ArchiveIterator
from warcio.exceptions import ArchiveLoadFailed

from .digests import HashingReader
from .errors import ConfigError, InputFileError
from .models import CATALOGUED_TYPES
from .timestamps import parse_timestamp
from .warcreader import READ_CHUNK, RawRecord, ScanResult, payload_sha1


def scan_arc(path: Path, gzipped: bool, result: ScanResult) -> Iterator[RawRecord]:
    """The :data:`RawRecord` of every catalogued record of an ARC file (see ``warcreader.scan_raw``); a
    malformed record is kept, never verified (ARC records carry no digest), with why in its damage field
    and in ``result.problems``; one whose capture time is unknown is only reported."""
    with open(path, "rb") as raw, open(path, "rb") as probe:
        reader = HashingReader(raw)
        iterator = ArchiveIterator(reader, arc2warc=True, check_digests=False)
        iterator.INC_RECORD = ""  # warcio writes its framing warning to stderr: counted in err_count instead
        offset = 0
        try:
            for record in iterator:
                result.records_seen += 1
                item = _arc_item(record, iterator, probe, gzipped, path, result)
                iterator.read_to_end()
                offset = iterator.get_record_offset()
                if item is not None:
                    item[1] = iterator.get_record_length()
                    yield tuple(item)
        except (ArchiveLoadFailed, ValueError, EOFError, OSError, zlib.error) as exc:
            raise InputFileError(f"cannot parse ARC: {exc}", path=path, offset=offset) from None
        while reader.read(READ_CHUNK):
            pass
    result.size = reader.bytes_read
    result.sha256 = reader.sha256.hexdigest()


def _arc_item(record: Any, iterator: Any, probe: BinaryIO, gzipped: bool, path: Path,
              result: ScanResult) -> list[Any] | None:
    """The raw record (as a list, length still 0) of a catalogued ARC record, or None: not a capture, or
    one whose capture time is unknown (reported, not catalogued)."""
    if record.rec_type not in CATALOGUED_TYPES:
        return None
    computed = payload_sha1(record.raw_stream.read)
    short = int(getattr(record.raw_stream, "limit", 0) or 0)  # block bytes the file did not hold
    framing_errors = iterator.err_count
    iterator.read_to_end()  # warcio knows the offset only once the record is read
    offset = iterator.get_record_offset()
    damage, time_known = _arc_damage(probe, offset, gzipped, short, iterator.err_count > framing_errors)
    if damage:
        what = "malformed ARC record" if time_known else "malformed ARC record not catalogued (no capture time)"
        result.problems.append(InputFileError(f"{what}: {damage}", path=path, offset=offset))
    if not time_known:
        return None
    http = record.http_headers
    status_line = http.get_statuscode() if http else None
    status = int(status_line) if status_line and status_line.isdigit() else None
    ctype = (http.get_header("Content-Type") if http else None) or record.rec_headers.get_header("Content-Type")
    return [offset, 0, record.rec_type, record.rec_headers.get_header("WARC-Target-URI"),
            record.rec_headers.get_header("WARC-Date"), None, status, ctype, None, computed, None, None,
            str(offset), damage, None]


_ARC_DATE = re.compile(r"\d{14}")


def _arc_damage(probe: BinaryIO, offset: int, gzipped: bool, short: int, misframed: bool) -> tuple[str | None, bool]:
    """Why the ARC record at ``offset`` cannot be trusted (or None), and whether its capture time is known.

    Its header line (``URL IP DATE TYPE LENGTH``) may have a date that is not a 14-digit time (warcio pads
    a short one and mends an impossible one: the time is unknown; of a longer one the first 14 digits are
    kept, as warcio does) or a length that is not a byte count (warcio reads an empty block); the file may
    end inside its block, or the next record not start where its length says."""
    fields = _arc_header_line(probe, offset, gzipped).rsplit(" ", 4)
    header = []
    time_known = True
    if len(fields) == 5:
        date = fields[2]
        if len(date) != 14 or not date.isdigit():
            header.append(f"archive date {date[:40]!r} is not a 14-digit time")
        time_known = bool(_ARC_DATE.match(date)) and _valid_arc_date(date[:14])
        if not time_known and len(date) == 14:
            header.append(f"archive date {date!r} is not a valid time")
        if not fields[4].isdigit():
            header.append(f"length {fields[4][:40]!r} is not a byte count")
    faults = ["bad ARC header: " + ", ".join(header)] if header else []
    if short:
        faults.append(f"truncated: the file ends {short} bytes before the record does")
    if misframed:
        faults.append("bad framing: the next record does not start where this one's length says")
    return "; ".join(faults) or None, time_known


def _valid_arc_date(digits: str) -> bool:
    try:
        parse_timestamp(digits)
    except ConfigError:
        return False
    return True


def _arc_header_line(probe: BinaryIO, offset: int, gzipped: bool) -> str:
    """The first line of the ARC record at ``offset`` (as text; empty if unreadable)."""
    probe.seek(offset)
    head = probe.read(4096)
    if gzipped:
        try:
            head = zlib.decompressobj(31).decompress(head, 4096)
        except zlib.error:
            return ""
    return head.lstrip(b"\r\n").split(b"\n", 1)[0].rstrip(b"\r").decode("utf-8", "replace")


__all__ = ["scan_arc"]
