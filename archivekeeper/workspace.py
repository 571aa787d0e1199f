"""A workspace: a directory holding ``catalog.db``, the WARC ``store/`` and ``archivekeeper.toml``."""

from __future__ import annotations

import errno
import fcntl
import os
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .config import SETTINGS_FILE, Settings, load_settings
from .errors import WorkspaceError

DEFAULT_WORKSPACE = Path("archivekeeper-workspace")
WORKSPACE_ENV = "ARCHIVEKEEPER_WORKSPACE"
CATALOG_FILE = "catalog.db"
STORE_DIR = "store"
LOCK_FILE = ".lock"


@dataclass(frozen=True)
class Workspace:
    """An opened workspace; create one with :meth:`open`."""

    root: Path
    settings: Settings

    @property
    def catalog_path(self) -> Path:
        return self.root / CATALOG_FILE

    @property
    def store_dir(self) -> Path:
        return self.root / STORE_DIR

    @property
    def settings_path(self) -> Path:
        return self.root / SETTINGS_FILE

    @classmethod
    def open(cls, root: Path | str, *, create: bool = True, env: Mapping[str, str] | None = None,
             overrides: Mapping[str, Any] | None = None) -> Workspace:
        """Open ``root`` as a workspace, initialising it when it is not one yet and ``create`` is set."""
        path = Path(root).expanduser().resolve()
        if path.exists() and not path.is_dir():
            raise WorkspaceError(f"workspace {path} is a file, not a directory", path=path)
        settings_path = path / SETTINGS_FILE
        if not settings_path.exists():
            if not create:
                raise WorkspaceError(f"{path} is not an archivekeeper workspace (run `archivekeeper init`)",
                                     path=path)
            try:
                (path / STORE_DIR).mkdir(parents=True, exist_ok=True)
                # the file gets the defaults only: never the environment's values (credentials in
                # base URLs, one-off overrides), which apply at run time
                _write_atomic(settings_path, load_settings(None, {}).to_toml())
            except OSError as exc:
                raise WorkspaceError(f"cannot create workspace {path}: {exc.strerror or exc}", path=path) from None
        settings = load_settings(settings_path, env, overrides)
        return cls(root=path, settings=settings)

    def file_settings(self) -> Settings:
        """The settings as the workspace file alone says (no environment), to edit and write back."""
        return load_settings(self.settings_path, {})

    def write_settings(self, settings: Settings) -> Workspace:
        """Persist new settings in the workspace file and return the workspace with them."""
        try:
            _write_atomic(self.settings_path, settings.to_toml())
        except OSError as exc:
            raise WorkspaceError(f"cannot write {self.settings_path}: {exc.strerror or exc}",
                                 path=self.settings_path) from None
        return Workspace(root=self.root, settings=settings)

    def relative(self, path: Path) -> str:
        """A path as the catalog stores it: relative to the workspace when inside it, else absolute."""
        resolved = path.resolve()
        try:
            return str(resolved.relative_to(self.root))
        except ValueError:
            return str(resolved)

    def resolve(self, stored: str) -> Path:
        """The filesystem path of a path as stored in the catalog."""
        candidate = Path(stored)
        return candidate if candidate.is_absolute() else self.root / candidate

    def store_path(self, name: str) -> Path:
        """A path inside the store; ``name`` may not escape it."""
        if "\0" in name:  # resolve() would raise ValueError, outside the error hierarchy
            raise WorkspaceError(f"refusing a store name with a NUL byte: {name!r}", path=self.store_dir)
        target = (self.store_dir / name).resolve()
        if self.store_dir.resolve() not in target.parents:
            raise WorkspaceError(f"refusing to write outside the store: {name!r}", path=target)
        return target

    @contextmanager
    def lock(self, *, wait: float = 0.0) -> Iterator[None]:
        """Hold the workspace's writer lock; a second writer waits up to ``wait`` seconds, then fails."""
        lock_path = self.root / LOCK_FILE
        try:
            handle = open(lock_path, "a+")
        except OSError as exc:
            raise WorkspaceError(f"cannot open {lock_path}: {exc.strerror or exc}", path=lock_path) from None
        deadline = time.monotonic() + wait
        try:
            while True:
                try:
                    fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
                    break
                except OSError as exc:
                    if exc.errno not in (errno.EAGAIN, errno.EACCES):
                        raise WorkspaceError(f"cannot lock {lock_path}: {exc.strerror}", path=lock_path) from None
                    if time.monotonic() >= deadline:
                        raise WorkspaceError(
                            f"workspace {self.root} is in use by another archivekeeper process "
                            "(wait for it to finish, or pass --wait SECONDS)", path=self.root) from None
                    time.sleep(0.1)
            handle.seek(0)
            handle.truncate()
            handle.write(f"{os.getpid()}\n")
            handle.flush()
            yield
        finally:
            handle.close()


def _write_atomic(path: Path, text: str) -> None:
    tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp")  # per process: two first uses may race here
    with open(tmp, "w", encoding="utf-8") as handle:
        handle.write(text)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(tmp, path)
