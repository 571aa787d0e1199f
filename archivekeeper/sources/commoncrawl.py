"""Common Crawl.

Crawls are listed by ``BASE/collinfo.json`` (cached in the workspace for ``collinfo_ttl`` seconds,
as Common Crawl asks); the crawls that overlap the query's dates are chosen (or those named with
``--crawl``). Each crawl's CDX API (pywb: NDJSON, ``showNumPages``/``page``) is asked in turn, and
each record is read with a ``Range`` request on the data host (``data_url``; ``s3://commoncrawl/``
reads through boto3). The bytes are a complete gzipped WARC record and are stored verbatim; in the
oldest crawls (CC-MAIN-2008-2009, CC-MAIN-2009-2010, CC-MAIN-2012) they are a gzipped ARC record,
whose block is written into a WARC record of ours (:mod:`.arc`).
"""

from __future__ import annotations

import json
import os
import re
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, replace
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import IO, Any

from ..cdx import CdxPage, pages_by_number, parse_cdx
from ..errors import ConfigError, SourceError
from ..models import VERIFIED, Capture
from ..timestamps import parse_iso, to_timestamp
from .base import Fetched, LocalPayload, Source, SyncQuery, cdx_fetcher
from .cdxserver import fetch_ranged, pywb_params, range_reader
from .records import parse_record, payload_of

CACHE_FILE = "commoncrawl-collinfo.json"
_WEEKLY = re.compile(r"^CC-MAIN-(\d{4})-(\d{2})$")
_YEARS = re.compile(r"^CC-MAIN-(\d{4})(?:-(\d{4}))?$")


@dataclass(frozen=True, slots=True)
class Crawl:
    id: str
    cdx_api: str
    start: str  # 14 digits: the earliest capture the crawl may hold
    end: str  # 14 digits: the latest


def crawl_window(entry: Mapping[str, Any]) -> tuple[str, str]:
    """When a crawl ran: collinfo's ``from``/``to`` if given, else guessed from its id
    (``CC-MAIN-2021-04`` ran in the weeks up to ISO week 4 of 2021)."""
    if entry.get("from") and entry.get("to"):
        try:
            return to_timestamp(parse_iso(str(entry["from"]))), to_timestamp(parse_iso(str(entry["to"])))
        except ConfigError:
            pass
    crawl_id = str(entry.get("id", ""))
    weekly = _WEEKLY.match(crawl_id)
    if weekly:
        monday = date.fromisocalendar(int(weekly.group(1)), max(1, min(53, int(weekly.group(2)))), 1)
        start = datetime.combine(monday - timedelta(weeks=6), datetime.min.time(), UTC)
        end = datetime.combine(monday + timedelta(days=6), datetime.max.time(), UTC)
        return to_timestamp(start), to_timestamp(end)
    years = _YEARS.match(crawl_id)
    if years:
        return f"{years.group(1)}0101000000", f"{years.group(2) or years.group(1)}1231235959"
    return "00000000000000", "99991231235959"


class CommonCrawlSource(Source):
    name = "commoncrawl"
    resolves_revisits_locally = True

    def __init__(self, *args: Any, cache_dir: Path, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.cache_dir = cache_dir
        self.crawls_by_id: dict[str, Crawl] = {}
        data_url = self.settings.data_url or "https://data.commoncrawl.org"
        self.reader = range_reader(self, data_url)

    # -- crawls -----------------------------------------------------------------------------
    def collinfo(self) -> list[dict[str, Any]]:
        """The crawl list, from the workspace cache while it is fresh."""
        cache = self.cache_dir / CACHE_FILE
        stale: list[dict[str, Any]] | None = None
        try:
            cached = json.loads(cache.read_text(encoding="utf-8"))
            if cached.get("base_url") == self.base_url:
                stale = list(cached["crawls"])
                if time.time() - float(cached["fetched_at"]) < self.settings.collinfo_ttl:
                    return stale
        except (OSError, ValueError, KeyError, TypeError):
            pass
        try:
            reply = self.http.get(self.base_url + "/collinfo.json", kind="cdx")
            if reply.status != 200:
                raise SourceError(f"{reply.url}: {reply.status}", url=reply.url, status=reply.status)
            crawls = json.loads(reply.read().decode("utf-8"))
            reply.close()
            if not isinstance(crawls, list):
                raise SourceError(f"{reply.url}: not a list of crawls", url=reply.url)
        except (SourceError, ValueError) as exc:
            if stale is not None:
                return stale  # an old list beats none
            raise SourceError(f"cannot list Common Crawl crawls: {exc}") from None
        self.cache_dir.mkdir(parents=True, exist_ok=True)
        tmp = cache.with_name(cache.name + ".tmp")
        tmp.write_text(json.dumps({"base_url": self.base_url, "fetched_at": time.time(), "crawls": crawls}),
                       encoding="utf-8")
        os.replace(tmp, cache)
        return crawls

    def known_crawls(self) -> dict[str, Crawl]:
        if not self.crawls_by_id:
            for entry in self.collinfo():
                crawl_id = str(entry.get("id", ""))
                if not crawl_id:
                    continue
                start, end = crawl_window(entry)
                api = str(entry.get("cdx-api") or f"{self.base_url}/{crawl_id}-index")
                self.http.allow(api)
                self.crawls_by_id[crawl_id] = Crawl(crawl_id, api, start, end)
        return self.crawls_by_id

    def choose_crawls(self, query: SyncQuery) -> list[Crawl]:
        """The crawls to ask, oldest first: those named, or those overlapping the query's dates."""
        known = self.known_crawls()
        if query.crawls:
            missing = [c for c in query.crawls if c not in known]
            if missing:
                raise ConfigError(f"unknown crawl(s) {', '.join(missing)}; known: {', '.join(sorted(known)[-5:])} ...")
            chosen = [known[c] for c in query.crawls]
        else:
            low, high = query.date_from or "0", query.date_to or "9"
            chosen = [c for c in known.values() if c.start <= high and c.end >= low]
        return sorted(chosen, key=lambda c: (c.start, c.id))

    # -- plan and fetch -----------------------------------------------------------------------
    def plan(self, query: SyncQuery, cursor: Mapping[str, Any] | None) -> Iterator[CdxPage]:
        crawls = self.choose_crawls(query)
        start = int((cursor or {}).get("crawl_index", 0))
        params = pywb_params(query)
        for index in range(start, len(crawls)):
            crawl = crawls[index]
            inner = dict((cursor or {}).get("page_cursor") or {}) if index == start else {}
            fetch = cdx_fetcher(self.http, crawl.cdx_api)
            for page in pages_by_number(fetch, params, cursor=inner or None):
                captures = [replace(c, extra={**c.extra, "crawl": crawl.id}) for c in page.captures]
                after: dict[str, Any] = ({"crawl_index": index, "page_cursor": page.cursor} if page.cursor is not None
                                         else {"crawl_index": index + 1})
                yield CdxPage(captures, page.raw_lines, after, page.bad_lines)
            yield CdxPage([], [], {"crawl_index": index + 1})

    def prepare(self) -> None:
        self.known_crawls()  # revisits are resolved through their crawl's index

    def fetch(self, capture: Capture, *, original: LocalPayload | None = None) -> Fetched:
        return fetch_ranged(self.reader, capture, original, self._find_original)

    def _find_original(self, revisit: Fetched) -> tuple[IO[bytes], int, str, dict[str, Any]] | None:
        """Ask the revisit's crawl index for a capture with the same digest that holds a payload."""
        capture = revisit.capture
        crawl = self.known_crawls().get(capture.extra.get("crawl", ""))
        if crawl is None or capture.digest is None:
            return None
        url = revisit.details.get("refers_to_url") or capture.url
        body = cdx_fetcher(self.http, crawl.cdx_api)({"url": url, "output": "json",
                                                       "filter": ["!~mime:warc/revisit$"]})
        if body is None:
            return None
        rows = [c for batch in parse_cdx(body) for c in batch.captures
                if c.digest == capture.digest and not c.is_revisit and c.filename and c.length]
        for row in sorted(rows, key=lambda c: abs(int(c.timestamp[:14].ljust(14, "0")) - int(capture.timestamp))):
            raw, details = self.reader(row)
            found = parse_record(row, raw, details)
            payload = payload_of(found)
            found.close()
            if found.verification == VERIFIED:
                payload.seek(0, 2)
                size = payload.tell()
                payload.seek(0)
                origin = {"record_id": found.record_id, "url": row.url, "timestamp": row.timestamp,
                          "filename": row.filename, "offset": row.offset}
                return payload, size, found.payload_sha1, origin
            payload.close()
        return None
