"""Settings, resolved once: command line > environment > workspace file > defaults.

The workspace file is ``archivekeeper.toml``::

    cutoff = "2023-01-01T00:00:00Z"
    contact = "archivist@example.org"

    [store]
    warc_size_limit = 1073741824

    [sources.wayback]
    base_url = "https://web.archive.org"
    cdx_per_minute = 20
    concurrency = 2

Environment variables override it: ``ARCHIVEKEEPER_CUTOFF``, ``ARCHIVEKEEPER_CONTACT``,
``ARCHIVEKEEPER_WARC_SIZE_LIMIT`` and, per source, ``ARCHIVEKEEPER_<SOURCE>_<KEY>`` (for example
``ARCHIVEKEEPER_WAYBACK_BASE_URL``, ``ARCHIVEKEEPER_COMMONCRAWL_DATA_URL``).
"""

from __future__ import annotations

import os
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field, fields, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from .errors import ConfigError
from .timestamps import parse_user_date, to_iso

DEFAULT_CUTOFF = datetime(2023, 1, 1, tzinfo=UTC)
DEFAULT_WARC_SIZE_LIMIT = 1 << 30
DEFAULT_SHARD_SIZE = 1 << 30
DEFAULT_CONTACT = ""
SETTINGS_FILE = "archivekeeper.toml"
ENV_PREFIX = "ARCHIVEKEEPER_"


@dataclass(frozen=True, slots=True)
class SourceSettings:
    """Where an archive is and how politely to talk to it."""

    base_url: str
    data_url: str | None = None  # Common Crawl / CDX data host for range reads
    cdx_per_minute: float = 20.0  # CDX API calls per minute
    fetches_per_second: float = 2.0  # replay / range requests per second, all workers together
    concurrency: int = 2
    max_retries: int = 5
    connect_timeout: float = 10.0
    read_timeout: float = 60.0
    collinfo_ttl: float = 86400.0  # Common Crawl asks clients to cache collinfo.json
    backoff_base: float = 2.0  # first retry waits about this long (exponential, with jitter)
    backoff_max: float = 120.0
    pause_after: int = 3  # rate signals (429, refused/reset connections) in a row before the source pauses
    pause_seconds: float = 60.0  # first whole-source pause; doubles on each further pause


DEFAULT_SOURCES: Mapping[str, SourceSettings] = {
    "wayback": SourceSettings(base_url="https://web.archive.org", cdx_per_minute=20.0,
                              fetches_per_second=1.0, concurrency=2),
    "commoncrawl": SourceSettings(base_url="https://index.commoncrawl.org",
                                  data_url="https://data.commoncrawl.org", cdx_per_minute=10.0,
                                  fetches_per_second=5.0, concurrency=4),
    "cdx": SourceSettings(base_url="", cdx_per_minute=60.0, fetches_per_second=5.0, concurrency=4),
}


@dataclass(frozen=True, slots=True)
class Settings:
    """Everything a workspace is configured with."""

    cutoff: datetime = DEFAULT_CUTOFF
    contact: str = DEFAULT_CONTACT
    warc_size_limit: int = DEFAULT_WARC_SIZE_LIMIT
    shard_size: int = DEFAULT_SHARD_SIZE
    sources: Mapping[str, SourceSettings] = field(default_factory=lambda: dict(DEFAULT_SOURCES))

    @property
    def cutoff_iso(self) -> str:
        return to_iso(self.cutoff)

    def source(self, name: str) -> SourceSettings:
        """The settings of a source; unknown names (a CDX server URL) get the generic ``cdx`` ones."""
        return self.sources.get(name) or self.sources["cdx"]

    def with_cutoff(self, cutoff: datetime) -> Settings:
        return replace(self, cutoff=cutoff)

    def to_toml(self) -> str:
        """The settings as a workspace file."""
        lines = [
            "# archivekeeper workspace settings (environment variables ARCHIVEKEEPER_* override these)",
            f'cutoff = "{self.cutoff_iso}"',
            f"contact = {_toml_str(self.contact)}",
            "",
            "[store]",
            f"warc_size_limit = {self.warc_size_limit}",
            "",
            "[export]",
            f"shard_size = {self.shard_size}",
        ]
        for name, src in self.sources.items():
            lines += ["", f"[sources.{name}]"]
            for fld in fields(SourceSettings):
                value = getattr(src, fld.name)
                if value is None:
                    continue
                lines.append(f"{fld.name} = {_toml_value(value)}")
        return "\n".join(lines) + "\n"


def _toml_str(value: str) -> str:
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _toml_value(value: Any) -> str:
    if isinstance(value, str):
        return _toml_str(value)
    return repr(value)


def _coerce(name: str, value: Any, kind: type) -> Any:
    try:
        if kind is int:
            return int(value)
        if kind is float:
            return float(value)
        return str(value)
    except (TypeError, ValueError):
        raise ConfigError(f"setting {name}: expected {kind.__name__}, got {value!r}") from None


def _source_from(name: str, base: SourceSettings, values: Mapping[str, Any], env: Mapping[str, str]) -> SourceSettings:
    changes: dict[str, Any] = {}
    types = {"base_url": str, "data_url": str, "cdx_per_minute": float, "fetches_per_second": float,
             "concurrency": int, "max_retries": int, "connect_timeout": float, "read_timeout": float,
             "collinfo_ttl": float, "backoff_base": float, "backoff_max": float, "pause_after": int,
             "pause_seconds": float}
    for key, value in values.items():
        if key not in types:
            raise ConfigError(f"unknown setting sources.{name}.{key}")
        changes[key] = _coerce(f"sources.{name}.{key}", value, types[key])
    for key, kind in types.items():
        env_name = f"{ENV_PREFIX}{name.upper()}_{key.upper()}"
        if env_name in env:
            changes[key] = _coerce(env_name, env[env_name], kind)
    return replace(base, **changes)


def load_settings(path: Path | None, env: Mapping[str, str] | None = None,
                  overrides: Mapping[str, Any] | None = None) -> Settings:
    """Resolve settings from a workspace file (if it exists), the environment and overrides."""
    env = os.environ if env is None else env
    data: dict[str, Any] = {}
    if path is not None and path.exists():
        try:
            data = tomllib.loads(path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
            raise ConfigError(f"{path}: cannot read settings: {exc}") from None
    overrides = overrides or {}

    def pick(key: str, file_value: Any) -> Any:
        if overrides.get(key) is not None:
            return overrides[key]
        if f"{ENV_PREFIX}{key.upper()}" in env:
            return env[f"{ENV_PREFIX}{key.upper()}"]
        return file_value

    cutoff_value = pick("cutoff", data.get("cutoff"))
    cutoff = DEFAULT_CUTOFF
    if cutoff_value is not None:
        cutoff = cutoff_value if isinstance(cutoff_value, datetime) else parse_user_date(str(cutoff_value))
        if cutoff.tzinfo is None:
            cutoff = cutoff.replace(tzinfo=UTC)
    contact = str(pick("contact", data.get("contact", DEFAULT_CONTACT)))
    store = data.get("store", {})
    export = data.get("export", {})
    size_limit = _coerce("warc_size_limit",
                         pick("warc_size_limit", store.get("warc_size_limit", DEFAULT_WARC_SIZE_LIMIT)), int)
    shard_size = _coerce("shard_size", pick("shard_size", export.get("shard_size", DEFAULT_SHARD_SIZE)), int)
    if size_limit < 1024 or shard_size < 1024:
        raise ConfigError("warc_size_limit and shard_size must be at least 1024 bytes")
    sources: dict[str, SourceSettings] = {}
    file_sources = data.get("sources", {})
    for name in sorted(set(DEFAULT_SOURCES) | set(file_sources)):
        base = DEFAULT_SOURCES.get(name, DEFAULT_SOURCES["cdx"])
        sources[name] = _source_from(name, base, file_sources.get(name, {}), env)
    return Settings(cutoff=cutoff.astimezone(UTC), contact=contact, warc_size_limit=size_limit,
                    shard_size=shard_size, sources=sources)
