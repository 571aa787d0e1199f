"""Any pywb- or OutbackCDX-compatible archive, given by the base URL of a collection.

Planning: ``BASE/cdx`` (pywb answers NDJSON, IA-style servers JSON arrays: both are parsed), paged
with ``showNumPages``/``page`` when the server has a paged (ZipNum) index; a plain index answers
everything at once. Fetching: the raw replay ``BASE/<timestamp>id_/<url>``, or — when the settings
give a ``data_url`` for the archive's files and the CDX row has ``filename``/``offset``/``length`` —
a direct range read of the WARC record, stored verbatim (an ARC record's block is written into a
WARC record of ours: :mod:`.arc`).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from typing import IO, Any

from ..cdx import CdxPage, pages_by_number
from ..errors import FetchError
from ..models import Capture
from .base import Fetched, LocalPayload, Source, SyncQuery, cdx_fetcher
from .records import (
    RangeReader,
    http_range_reader,
    local_payload,
    parse_record,
    payload_of,
    resolve_revisit,
    s3_range_reader,
)
from .replay import fetch_replay


def pywb_params(query: SyncQuery) -> dict[str, Any]:
    """The CDX API parameters of a query, in pywb's dialect (``~field:regex``, pywb field names)."""
    params: dict[str, Any] = {"url": query.url, "matchType": query.match, "output": "json"}
    if query.date_from:
        params["from"] = query.date_from
    if query.date_to:
        params["to"] = query.date_to
    filters = [f"{'!' if negated else ''}~{name}:(?:{regex})$" for negated, name, regex in query.filter_expressions()]
    if filters:
        params["filter"] = filters
    return params


def range_reader(source: Source, data_url: str) -> RangeReader:
    if data_url.startswith("s3://"):
        import boto3

        return s3_range_reader(source.http, data_url, boto3.client("s3"))
    source.http.allow(data_url)
    return http_range_reader(source.http, data_url)


PayloadFinder = Callable[[Fetched], tuple[IO[bytes], int, str, dict[str, Any]] | None]


def fetch_ranged(read: RangeReader, capture: Capture, original: LocalPayload | None,
                 find_remote: PayloadFinder) -> Fetched:
    """Read a record by range; a revisit gets the payload of the capture it refers to."""
    raw, details = read(capture)
    fetched = parse_record(capture, raw, details)
    payload_of(fetched).close()
    if fetched.record_type != "revisit":
        return fetched
    if original is not None:
        payload, size, sha1 = local_payload(original)
        origin = {"workspace_record": original.record_id, "url": original.url, "capture_time": original.capture_time}
        return resolve_revisit(fetched, payload, size, sha1, origin)
    remote = find_remote(fetched)
    if remote is None:
        fetched.close()
        raise FetchError(f"revisit of {capture.url} at {capture.timestamp}: no capture holding its payload "
                         f"({capture.digest}) was found", url=capture.url, reason="revisit-unresolved")
    return resolve_revisit(fetched, *remote)


class CdxServerSource(Source):
    """A pywb-style collection: its CDX API at ``BASE/cdx``, its raw replay at ``BASE/<ts>id_/<url>``."""

    resolves_revisits_locally = True

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.name = self.base_url
        data_url = self.settings.data_url
        self._reader: RangeReader | None = range_reader(self, data_url) if data_url else None

    def plan(self, query: SyncQuery, cursor: Mapping[str, Any] | None) -> Iterator[CdxPage]:
        fetch = cdx_fetcher(self.http, self.base_url + "/cdx")
        yield from pages_by_number(fetch, pywb_params(query), cursor=cursor)

    def _ranged(self, capture: Capture) -> bool:
        return bool(self.settings.data_url and capture.filename and capture.offset is not None and capture.length)

    def fetch(self, capture: Capture, *, original: LocalPayload | None = None) -> Fetched:
        if self._reader is None or not self._ranged(capture) or (capture.is_revisit and original is None):
            return fetch_replay(self.http, self.base_url, capture)  # the archive resolves revisits itself
        try:
            return fetch_ranged(self._reader, capture, original, lambda revisit: None)
        except FetchError as exc:
            if exc.reason != "revisit-unresolved":
                raise
            return fetch_replay(self.http, self.base_url, capture)
