"""What every source shares: the query, the fetched capture, CDX access and local filtering."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator, Mapping
from dataclasses import asdict, dataclass, field
from datetime import datetime
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

from ..cdx import FIELD_ALIASES, CdxFetch, CdxPage, error_message
from ..config import SourceSettings
from ..errors import ConfigError, SourceError
from ..http import HttpClient
from ..models import MATCH_TYPES, Capture

if TYPE_CHECKING:
    from .arc import ArcRecord

_COLLAPSE = re.compile(r"^([a-z_-]+)(?::(\d+))?$")
_FILTER = re.compile(r"^(!?)([a-z_-]+):(.*)$", re.S)
_CAPTURE_FIELDS = frozenset({"urlkey", "timestamp", "url", "mime", "status", "digest", "length", "offset", "filename"})


@dataclass(frozen=True, slots=True)
class SyncQuery:
    """Which captures a sync job asks an archive for. Dates are 14-digit bounds, both inclusive."""

    url: str
    match: str = "exact"
    date_from: str | None = None
    date_to: str | None = None
    statuses: tuple[int, ...] = ()
    mimes: tuple[str, ...] = ()
    collapse: tuple[str, ...] = ()
    filters: tuple[str, ...] = ()  # CDX filter expressions, ``[!]field:regex`` (IA semantics)
    limit: int | None = None
    crawls: tuple[str, ...] = ()  # Common Crawl crawl ids

    def __post_init__(self) -> None:
        if self.match not in MATCH_TYPES:
            raise ConfigError(f"--match must be one of {', '.join(MATCH_TYPES)}, not {self.match!r}")
        for spec in self.collapse:
            if not _COLLAPSE.match(spec):
                raise ConfigError(f"bad --collapse {spec!r} (give FIELD or FIELD:N, e.g. digest or timestamp:8)")
        for expr in self.filters:
            if not _FILTER.match(expr):
                raise ConfigError(f"bad --filter {expr!r} (give [!]FIELD:REGEX, e.g. !mimetype:warc/revisit)")
            try:
                re.compile(_FILTER.match(expr).group(3))  # type: ignore[union-attr]
            except re.error as exc:
                raise ConfigError(f"bad --filter {expr!r}: {exc}") from None
        if self.limit is not None and self.limit < 1:
            raise ConfigError("--limit must be at least 1")

    def describe(self) -> dict[str, Any]:
        return {k: (list(v) if isinstance(v, tuple) else v) for k, v in asdict(self).items()
                if v not in (None, ())}

    def filter_expressions(self) -> list[tuple[bool, str, str]]:
        """Every filter as ``(negated, capture field, full-match regex)``, --status/--mime included."""
        out: list[tuple[bool, str, str]] = []
        if self.statuses:
            out.append((False, "status", "|".join(str(s) for s in self.statuses)))
        if self.mimes:
            out.append((False, "mime", "|".join(re.escape(m.lower()) for m in self.mimes)))
        for expr in self.filters:
            neg, name, regex = _FILTER.match(expr).groups()  # type: ignore[union-attr]
            out.append((neg == "!", FIELD_ALIASES.get(name, name), regex))
        return out


def capture_field(capture: Capture, name: str) -> str:
    """A capture's field as CDX text (``-`` for none), for filtering and collapsing."""
    name = FIELD_ALIASES.get(name, name)
    value = getattr(capture, name) if name in _CAPTURE_FIELDS else capture.extra.get(name)
    if value is None:
        return "-"
    if name == "digest" and isinstance(value, str):
        return value.removeprefix("sha1:")
    return str(value)


class CaptureFilter:
    """The local side of a query: the date window, filters and ``collapse`` (which on the servers
    folds only adjacent rows of one answer, so we apply it again across pages and resumes)."""

    def __init__(self, query: SyncQuery, state: Mapping[str, str] | None = None) -> None:
        self.query = query
        self.filters = [(neg, name, re.compile(f"(?:{regex})")) for neg, name, regex in query.filter_expressions()]
        self.collapse = [(m.group(1), int(m.group(2)) if m.group(2) else None)
                         for m in (_COLLAPSE.match(spec) for spec in query.collapse) if m]
        self.last: dict[str, str] = dict(state or {})

    def accepts(self, capture: Capture) -> bool:
        ts = capture.timestamp.ljust(14, "0")
        if self.query.date_from and ts < self.query.date_from:
            return False
        if self.query.date_to and ts > self.query.date_to:
            return False
        for negated, name, regex in self.filters:
            if bool(regex.fullmatch(capture_field(capture, name))) == negated:
                return False
        for name, width in self.collapse:
            value = capture_field(capture, name)
            value = value[:width] if width else value
            key = f"{name}:{width or ''}"
            if self.last.get(key) == value:
                return False
            self.last[key] = value
        return True


@dataclass
class Fetched:
    """One capture as fetched: the bytes, the archive's capture time, headers and verification.

    ``kind`` is ``replay`` (a payload rebuilt into a response record), ``record`` (a complete WARC
    record to store verbatim; ``body`` holds its bytes), ``arc`` (an ARC record; ``body`` holds its
    block as stored, written into a WARC record of ours) or ``resolved-revisit`` (a revisit's
    headers with the payload of the capture it refers to).
    """

    capture: Capture
    kind: str
    capture_time: datetime
    body: IO[bytes]
    body_size: int
    payload_sha1: str
    verification: str
    verification_reason: str | None = None
    status: int | None = None
    reason: str = ""
    http_headers: list[tuple[str, str]] = field(default_factory=list)
    target_uri: str = ""
    record_type: str = "response"
    record_id: str | None = None
    claimed_digest: str | None = None  # WARC-Payload-Digest of a verbatim record
    details: dict[str, Any] = field(default_factory=dict)  # goes into the metadata record
    arc: ArcRecord | None = None  # kind ``arc``: the ARC header line and the block's SHA-1

    def close(self) -> None:
        self.body.close()


@dataclass(frozen=True, slots=True)
class LocalPayload:
    """Where the payload of a revisit already lies in the workspace (found by digest)."""

    path: Path
    offset: int
    record_id: str | None
    url: str
    capture_time: str


def cdx_fetcher(http: HttpClient, endpoint: str) -> CdxFetch:
    """``fetch(params)`` for the pagers in :mod:`archivekeeper.cdx`: ``None`` when the server says
    there are no captures (404 with a JSON error) or a page is past the end (400)."""

    def fetch(params: dict[str, Any]) -> IO[bytes] | None:
        reply = http.get(endpoint, params=params, kind="cdx")
        if reply.status == 200:
            return reply.body
        body = reply.read()
        reply.close()
        message = error_message(body)
        if reply.status == 404 and message is not None:
            return None
        if reply.status == 400 and "page" in params and message and "page" in message.lower():
            return None
        detail = message or body[:200].decode("utf-8", "replace").strip() or "no message"
        hint = " (is the base URL right?)" if reply.status == 404 else ""
        raise SourceError(f"CDX query {reply.url} failed with {reply.status}{hint}: {detail}",
                          url=reply.url, status=reply.status)

    return fetch


def cdx_line(capture: Capture, raw: str | None) -> str:
    """The CDX line kept in the plan and in the metadata record (as the server sent it)."""
    return raw if raw else json.dumps(capture.as_dict(), sort_keys=True)


class Source:
    """An archive: plan captures from its CDX API, fetch one capture. Subclasses set the rest."""

    name: str = ""
    #: revisits are resolved from payloads already in the workspace before asking the archive
    resolves_revisits_locally: bool = False

    def __init__(self, settings: SourceSettings, http: HttpClient) -> None:
        self.settings = settings
        self.http = http

    @property
    def base_url(self) -> str:
        return self.settings.base_url.rstrip("/")

    def describe(self) -> dict[str, Any]:
        return {"source": self.name, "base_url": self.base_url}

    def plan(self, query: SyncQuery, cursor: Mapping[str, Any] | None) -> Iterator[CdxPage]:
        """Batches of captures with the cursor to resume planning from once a batch is stored."""
        raise NotImplementedError

    def prepare(self) -> None:
        """Called once before fetching starts (in the main thread)."""

    def fetch(self, capture: Capture, *, original: LocalPayload | None = None) -> Fetched:
        raise NotImplementedError

    def close(self) -> None:
        self.http.close()
