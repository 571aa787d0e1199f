"""Archives behind one small interface: plan captures from a CDX API, fetch one capture.

    source = open_source("wayback", settings, cache_dir=workspace.root / "cache")
    for page in source.plan(query, cursor=None):     # batches of Capture, with a resume cursor
        ...
    fetched = source.fetch(capture)                  # bytes + the archive's capture time + headers

``wayback`` is the Internet Archive, ``commoncrawl`` Common Crawl, and any ``http(s)://`` URL the
base of a pywb-style collection (CDX API at ``BASE/cdx``, raw replay at ``BASE/<ts>id_/<url>``).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

from ..config import Settings
from ..errors import ConfigError
from ..http import HttpClient, Pacer, split_credentials
from .base import CaptureFilter, Fetched, LocalPayload, Source, SyncQuery
from .cdxserver import CdxServerSource
from .commoncrawl import CommonCrawlSource
from .wayback import WaybackSource

NAMED_SOURCES = ("wayback", "commoncrawl")


def open_source(name: str, settings: Settings, *, cache_dir: Path, base_url: str | None = None,
                concurrency: int | None = None, sleep: Callable[[float], None] = time.sleep,
                clock: Callable[[], float] = time.monotonic) -> Source:
    """The source called ``name`` (``wayback``, ``commoncrawl`` or a CDX server's base URL)."""
    if name in NAMED_SOURCES:
        config = settings.source(name)
        if base_url:
            config = replace(config, base_url=base_url)
    elif name.startswith(("http://", "https://")):
        config = replace(settings.source("cdx"), base_url=name.rstrip("/"))
        name = split_credentials(config.base_url)[0]
    else:
        raise ConfigError(f"unknown source {name!r}: give wayback, commoncrawl or the base URL of a CDX server "
                          "(http://host/collection)")
    if not config.base_url:
        raise ConfigError(f"no base URL for source {name!r} (set sources.{name}.base_url)")
    clean, credentials = split_credentials(config.base_url)  # used for requests, never recorded
    config = replace(config, base_url=clean)
    if concurrency is not None:
        if concurrency < 1:
            raise ConfigError("--concurrency must be at least 1")
        config = replace(config, concurrency=concurrency)
    http = HttpClient(config, contact=settings.contact, archive_urls=[config.base_url],
                      pacer=Pacer(config, clock=clock, sleep=sleep), sleep=sleep, clock=clock, credentials=credentials)
    if name == "wayback":
        return WaybackSource(config, http)
    if name == "commoncrawl":
        return CommonCrawlSource(config, http, cache_dir=cache_dir)
    return CdxServerSource(config, http)


__all__ = ["NAMED_SOURCES", "CaptureFilter", "Fetched", "LocalPayload", "Source", "SyncQuery", "open_source"]
