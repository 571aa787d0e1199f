"""A fetched capture → WARC records in the store + its catalog row (used by :mod:`archivekeeper.sync`).

Replays become a ``response`` record rebuilt from the archive's answer (WARC-Target-URI the
original URL, WARC-Date the proven capture time, the origin's status line and headers, the body as
received) followed by a ``metadata`` record (``WARC-Concurrent-To`` the response) holding the CDX
line and the fetch details. Ranged WARC records are written verbatim (byte for byte: their headers are
the archive's, so they name no warcinfo of ours), also followed by a metadata record. A ranged ARC
record becomes a ``response`` record of ours whose block is the ARC block as stored. Every record of
ours names its file's warcinfo record (``WARC-Warcinfo-ID``).

:func:`prepare` runs in the worker that fetched the capture and does the costly part (serializing
and compressing the records); :func:`store_prepared` runs in the one writer and only appends.
Record ids of rebuilt records are derived from the source, URL, capture time and payload digest,
so fetching the same capture again yields the same record key and is never catalogued twice.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any

from . import __version__
from .catalog import Catalog
from .errors import ArchiveKeeperError
from .models import CatalogRecord, make_record_key
from .sources import Fetched
from .sources.records import compress_member
from .surt import surt
from .timestamps import to_iso, to_timestamp
from .warcrecords import Serialized, record_id_for, serialize_block, serialize_response, serialize_verbatim
from .warcstore import WarcStore


@dataclass
class Prepared:
    """A capture's records, serialized, and its catalog row waiting for a file and an offset."""

    record: CatalogRecord
    records: Serialized
    received: int  # bytes received from the archive (payload, or the whole ranged record)

    def close(self) -> None:
        self.records.close()


@dataclass(frozen=True, slots=True)
class StoredOutcome:
    row: tuple[Any, ...] | None  # the catalog row to insert (None: already catalogued)
    record_key: str
    bytes: int


def _mime(fetched: Fetched) -> str | None:
    for name, value in fetched.http_headers:
        if name.lower() == "content-type":
            return value.split(";", 1)[0].strip().lower() or None
    mime = fetched.capture.mime
    return None if mime in (None, "warc/revisit") else mime


def prepare(source: str, fetched: Fetched, cdx: str, drift: int, warcinfo_id: str | None = None) -> Prepared:
    """In a worker: build the records of ``fetched`` (its body is consumed) and its catalog row;
    ``warcinfo_id`` names the warcinfo record of the file they are meant for."""
    capture = fetched.capture
    capture_time = to_iso(fetched.capture_time)
    verbatim = fetched.kind == "record"
    metadata = {
        "tool": f"archivekeeper/{__version__}", "source": source, "kind": fetched.kind, "cdx": cdx,
        "planned_timestamp": capture.timestamp, "capture_time": capture_time, "drift_seconds": drift,
        "payload_sha1": fetched.payload_sha1, "cdx_digest": capture.digest, "verification": fetched.verification,
        "verification_reason": fetched.verification_reason,
        "fetched_at": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        **{k: v for k, v in fetched.details.items() if not k.startswith("_")},
    }
    if verbatim:
        uri = fetched.target_uri
        record_id = fetched.record_id or record_id_for(source, uri, capture_time, fetched.payload_sha1)
        key = make_record_key(record_id, uri, capture_time, fetched.record_type,
                              fetched.claimed_digest or fetched.payload_sha1)
        head = fetched.body.read(2)
        fetched.body.seek(0)
        member = fetched.body if head == b"\x1f\x8b" else compress_member(fetched.body)
        records = serialize_verbatim(member=member, uri=uri, capture_time=capture_time, record_id=record_id,
                                     metadata=metadata, warcinfo_id=warcinfo_id)
        if member is not fetched.body:
            member.close()
    elif fetched.arc is not None:
        uri = fetched.target_uri
        record_id = record_id_for(source, uri, capture_time, fetched.payload_sha1)
        key = make_record_key(record_id, uri, capture_time, fetched.record_type, fetched.payload_sha1)
        content_type = ("application/http; msgtype=response" if fetched.arc.http
                        else fetched.arc.mime or "application/octet-stream")
        records = serialize_block(uri=uri, capture_time=capture_time, record_id=record_id,
                                  record_type=fetched.record_type, content_type=content_type, block=fetched.body,
                                  block_size=fetched.body_size, block_sha1=fetched.arc.block_sha1,
                                  payload_sha1=fetched.payload_sha1, ip_address=fetched.arc.ip_address,
                                  metadata=metadata, warcinfo_id=warcinfo_id)
    else:
        uri = capture.url
        record_id = record_id_for(source, uri, capture_time, fetched.payload_sha1)
        key = make_record_key(record_id, uri, capture_time, "response", fetched.payload_sha1)
        records = serialize_response(uri=uri, capture_time=capture_time, record_id=record_id, status=fetched.status,
                                     reason=fetched.reason, headers=fetched.http_headers, body=fetched.body,
                                     body_size=fetched.body_size, payload_sha1=fetched.payload_sha1,
                                     metadata=metadata, warcinfo_id=warcinfo_id)
    try:
        urlkey = surt(uri)
    except ArchiveKeeperError:
        urlkey = capture.urlkey
    resolved = fetched.kind == "resolved-revisit"
    record = CatalogRecord(
        record_key=key, url=uri, urlkey=urlkey, timestamp=to_timestamp(fetched.capture_time),
        capture_time=capture_time, year=fetched.capture_time.year, pre_cutoff=False, status=fetched.status,
        mime=_mime(fetched), digest=capture.digest or fetched.claimed_digest, payload_sha1=fetched.payload_sha1,
        record_type=fetched.record_type if verbatim or fetched.arc else "response", record_id=record_id,
        warc_file="", offset=0,
        length=0, source=source, verification=fetched.verification,
        verification_reason=fetched.verification_reason,
        refers_to_url=fetched.details.get("refers_to_url") if resolved else None,
        refers_to_date=fetched.details.get("refers_to_date") if resolved else None,
    )
    return Prepared(record, records, int(fetched.details.get("received_bytes", fetched.body_size)))


def store_prepared(catalog: Catalog, store: WarcStore, prepared: Prepared, seen: set[str]) -> StoredOutcome:
    """In the writer: append the records unless already catalogued; return the catalog row."""
    key = prepared.record.record_key
    if key in seen or catalog.has_record(key):
        return StoredOutcome(None, key, prepared.received)
    seen.add(key)
    written = store.append(prepared.records)
    record = replace(prepared.record, warc_file=written.path, offset=written.offset, length=written.length)
    return StoredOutcome(catalog.row_for(record, written.file_id), key, prepared.received)
