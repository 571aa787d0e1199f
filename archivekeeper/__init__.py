"""archivekeeper: fetch, catalog and export dated web captures made before the AI era.

The library never prints or exits; the ``archivekeeper`` command is a thin layer over it.
"""

__version__ = "0.1.0"

from .catalog import Catalog  # noqa: E402
from .config import DEFAULT_CUTOFF, Settings, SourceSettings, load_settings  # noqa: E402
from .errors import (  # noqa: E402
    ArchiveKeeperError,
    CatalogError,
    ConfigError,
    ExportError,
    FetchError,
    ForeignRedirectError,
    InputFileError,
    NotAWarcError,
    RateLimitedError,
    SourceError,
    StoreError,
    VerificationFailed,
    WorkspaceError,
)
from .importer import Importer, ImportSummary  # noqa: E402
from .models import Capture, CatalogRecord, Selection  # noqa: E402
from .workspace import Workspace  # noqa: E402

__all__ = [
    "DEFAULT_CUTOFF",
    "ArchiveKeeperError",
    "Capture",
    "Catalog",
    "CatalogError",
    "CatalogRecord",
    "ConfigError",
    "ExportError",
    "FetchError",
    "ForeignRedirectError",
    "ImportSummary",
    "Importer",
    "InputFileError",
    "NotAWarcError",
    "RateLimitedError",
    "Selection",
    "Settings",
    "SourceError",
    "SourceSettings",
    "StoreError",
    "VerificationFailed",
    "Workspace",
    "WorkspaceError",
    "__version__",
    "load_settings",
]
