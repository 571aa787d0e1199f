"""The one exception hierarchy of archivekeeper.

Every error the library raises on purpose is an :class:`ArchiveKeeperError`; the CLI catches
that class alone, prints its one-line message and exits non-zero.

    ArchiveKeeperError
    ├── ConfigError            bad settings, bad date, bad URL, bad option value
    ├── WorkspaceError         workspace missing, unwritable, locked by another process
    ├── CatalogError           the SQLite catalog cannot be read or written
    ├── InputFileError         a WARC/ARC file cannot be read (path, offset)
    │   └── NotAWarcError      the file is not a WARC or ARC at all
    ├── StoreError             the WARC store cannot be written (full disk, read-only)
    ├── SourceError            an archive answered badly (url, status)
    │   ├── RateLimitedError   429 or a refused/reset connection (retry_after)
    │   └── ForeignRedirectError  a redirect left the archive's host
    ├── FetchError             a capture could not be fetched or verified (reason)
    └── ExportError            an export cannot be built, published or verified
        └── VerificationFailed files missing, extra or altered (problems)
"""

from __future__ import annotations

from pathlib import Path


class ArchiveKeeperError(Exception):
    """Base class of every error archivekeeper raises on purpose."""


class ConfigError(ArchiveKeeperError):
    """A setting, option, date or URL is not valid."""


class WorkspaceError(ArchiveKeeperError):
    """The workspace cannot be created, opened or locked."""

    def __init__(self, message: str, *, path: Path | None = None) -> None:
        super().__init__(message)
        self.path = path


class CatalogError(ArchiveKeeperError):
    """The catalog database cannot be read or written."""


class InputFileError(ArchiveKeeperError):
    """A WARC or ARC file cannot be read completely."""

    def __init__(self, message: str, *, path: Path | str, offset: int | None = None) -> None:
        where = f"{path}" if offset is None else f"{path} at offset {offset}"
        super().__init__(f"{where}: {message}")
        self.path = path
        self.offset = offset
        self.reason = message


class NotAWarcError(InputFileError):
    """The file is neither a WARC nor an ARC file."""


class StoreError(ArchiveKeeperError):
    """The WARC store or an output directory cannot be written."""

    def __init__(self, message: str, *, path: Path | str | None = None) -> None:
        super().__init__(message)
        self.path = path


class SourceError(ArchiveKeeperError):
    """An archive answered with an error or something unparsable."""

    def __init__(self, message: str, *, url: str | None = None, status: int | None = None) -> None:
        super().__init__(message)
        self.url = url
        self.status = status


class RateLimitedError(SourceError):
    """The archive asked us to slow down (429, or refused/reset connections)."""

    def __init__(
        self,
        message: str,
        *,
        url: str | None = None,
        status: int | None = None,
        retry_after: float | None = None,
    ) -> None:
        super().__init__(message, url=url, status=status)
        self.retry_after = retry_after


class ForeignRedirectError(SourceError):
    """A redirect pointed outside the archive's host; it is recorded, never followed."""

    def __init__(self, message: str, *, url: str | None = None, location: str) -> None:
        super().__init__(message, url=url)
        self.location = location


class FetchError(ArchiveKeeperError):
    """A capture could not be fetched or failed verification."""

    def __init__(self, message: str, *, url: str | None = None, reason: str = "error") -> None:
        super().__init__(message)
        self.url = url
        self.reason = reason


class ExportError(ArchiveKeeperError):
    """An export cannot be built, published, pulled or verified."""


class VerificationFailed(ExportError):
    """An export's files do not match its manifests."""

    def __init__(self, message: str, *, problems: list[str]) -> None:
        super().__init__(message)
        self.problems = problems
