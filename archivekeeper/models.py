"""The records that flow between the steps: a CDX capture, a catalogued capture."""

from __future__ import annotations

import hashlib
from dataclasses import asdict, dataclass, field
from typing import Any

# Verification states of a catalogued capture.
VERIFIED = "verified"  # payload SHA-1 equals the archive's digest
MISMATCH = "mismatch"  # payload SHA-1 differs: kept, flagged, never exported
TRANSFORMED = "transformed"  # the archive changed the bytes on replay (e.g. decoded gzip)
UNVERIFIABLE = "unverifiable"  # nothing to compare with (no digest, revisit, truncated)
VERIFICATION_STATES = (VERIFIED, MISMATCH, TRANSFORMED, UNVERIFIABLE)

# Record types catalogued.
CATALOGUED_TYPES = ("response", "resource", "revisit")

MATCH_TYPES = ("exact", "prefix", "host", "domain")


def make_record_key(record_id: str | None, url: str, capture_time: str, record_type: str, digest: str | None,
                    extra: str | None = None) -> str:
    """The catalog key of a record: the same record imported or fetched twice gets the same key.

    WARC-Record-IDs should be unique, but real files reuse them (copied test data, broken writers),
    so the key also covers the URI, the capture time, the type and the digest of the bytes as read
    (the computed payload SHA-1; for a revisit, which has no payload, its header's digest). So a
    damaged copy of a record never hides an intact one. ARC records have no ID; ``extra`` (their
    offset) tells apart otherwise identical ones.
    """
    text = "|".join([record_id or "-", url, capture_time, record_type, digest or "-", extra or ""])
    return hashlib.sha1(text.encode("utf-8", "surrogatepass")).hexdigest()


@dataclass(frozen=True, slots=True)
class Capture:
    """One row of a CDX answer, with field names normalised across IA, pywb and Common Crawl."""

    urlkey: str
    timestamp: str
    url: str
    mime: str | None = None
    status: int | None = None
    digest: str | None = None  # sha1:BASE32
    length: int | None = None
    offset: int | None = None
    filename: str | None = None
    extra: dict[str, str] = field(default_factory=dict)

    @property
    def is_revisit(self) -> bool:
        return self.mime == "warc/revisit"

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(slots=True)
class CatalogRecord:
    """One catalogued capture: where its record lies and what we know of it."""

    record_key: str
    url: str
    urlkey: str
    timestamp: str  # 14 digits
    capture_time: str  # ISO-8601 UTC
    year: int
    pre_cutoff: bool
    status: int | None
    mime: str | None
    digest: str | None  # the archive's claim (WARC-Payload-Digest or CDX), sha1:BASE32
    payload_sha1: str | None  # what we computed from the bytes
    record_type: str
    record_id: str | None
    warc_file: str
    offset: int
    length: int
    source: str
    verification: str
    verification_reason: str | None = None
    refers_to_url: str | None = None
    refers_to_date: str | None = None

    def as_json(self) -> dict[str, Any]:
        """The documented JSON form (``schemas/catalog-record.schema.json``)."""
        return {
            "url": self.url,
            "urlkey": self.urlkey,
            "timestamp": self.timestamp,
            "capture_time": self.capture_time,
            "year": self.year,
            "pre_cutoff": bool(self.pre_cutoff),
            "status": self.status,
            "mime": self.mime,
            "digest": self.digest,
            "payload_sha1": self.payload_sha1,
            "record_type": self.record_type,
            "record_id": self.record_id,
            "warc_file": self.warc_file,
            "offset": self.offset,
            "length": self.length,
            "source": self.source,
            "verification": self.verification,
            "verification_reason": self.verification_reason,
        }


@dataclass(frozen=True, slots=True)
class Selection:
    """Which captures a query or an export covers. ``None`` means no filter on that field.

    ``date_from``/``date_to`` are ISO-8601 UTC bounds, inclusive.
    """

    url: str | None = None
    match: str = "exact"
    date_from: str | None = None
    date_to: str | None = None
    pre_cutoff: bool | None = None
    status: int | None = None
    mime: str | None = None
    verification: str | None = None
    source: str | None = None
    record_types: tuple[str, ...] | None = None

    def describe(self) -> dict[str, Any]:
        """The selection as given, for manifests and job records (``None`` fields left out)."""
        return {k: v for k, v in asdict(self).items() if v is not None and not (k == "match" and self.url is None)}
