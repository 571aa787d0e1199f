"""The Internet Archive's Wayback Machine.

Planning: the CDX API at ``BASE/cdx/search/cdx`` (``output=json``, IA field names, paged with
``showResumeKey``/``resumeKey``: its ``page``/``showNumPages`` miscount when filters are used).
Fetching: the raw replay ``BASE/web/<14-digit timestamp>id_/<original url>``; revisits are resolved
by the archive itself. IA allows about 60 CDX calls per minute per IP and blocks abusers, often by
refusing connections: the defaults stay far below (see :data:`~archivekeeper.config.DEFAULT_SOURCES`).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

from ..cdx import IA_FIELDS, CdxPage, pages_by_resume_key
from ..models import Capture
from .base import Fetched, LocalPayload, Source, SyncQuery, cdx_fetcher
from .replay import fetch_replay

CDX_PATH = "/cdx/search/cdx"
REPLAY_PATH = "/web"
PAGE_SIZE = 5000


def ia_params(query: SyncQuery) -> dict[str, Any]:
    """The CDX API parameters of a query, in IA's dialect (filters are full-match regexes)."""
    params: dict[str, Any] = {"url": query.url, "matchType": query.match, "output": "json", "fl": ",".join(IA_FIELDS)}
    if query.date_from:
        params["from"] = query.date_from
    if query.date_to:
        params["to"] = query.date_to
    names = {"status": "statuscode", "mime": "mimetype", "url": "original"}
    filters = [f"{'!' if negated else ''}{names.get(name, name)}:{regex}"
               for negated, name, regex in query.filter_expressions()]
    if filters:
        params["filter"] = filters
    if query.collapse:
        params["collapse"] = list(query.collapse)
    return params


class WaybackSource(Source):
    name = "wayback"

    def plan(self, query: SyncQuery, cursor: Mapping[str, Any] | None) -> Iterator[CdxPage]:
        fetch = cdx_fetcher(self.http, self.base_url + CDX_PATH)
        page_size = min(PAGE_SIZE, query.limit) if query.limit else PAGE_SIZE
        yield from pages_by_resume_key(fetch, ia_params(query), page_size=page_size, cursor=cursor)

    def fetch(self, capture: Capture, *, original: LocalPayload | None = None) -> Fetched:
        return fetch_replay(self.http, self.base_url + REPLAY_PATH, capture)
