"""Rotating ``.warc.gz`` files in the workspace store, safe against a kill at any moment.

* Files live in ``store/sync/`` and are named ``ak-<source>-<UTC time>-<pid>-<serial>.warc.gz``;
  while being written they carry an extra ``.open`` suffix. Each starts with a ``warcinfo``
  record (tool, version, source, query) and holds one gzip member per record (warcio
  ``WARCWriter(gzip=True)``); every record of ours names that warcinfo in ``WARC-Warcinfo-ID``
  (see :mod:`archivekeeper.warcrecords`). A file is finished (renamed, hashed, marked ``complete``) once it
  passes the size limit, at a commit boundary, or when the job ends.
* The catalog knows a file from the moment it is opened (status ``writing``, ``size`` = the bytes
  whose records are catalogued). The caller writes records, calls :meth:`WarcStore.flush`
  (``fsync``), then commits its catalog rows together with :meth:`WarcStore.mark_committed`.
* :meth:`WarcStore.recover` handles files a killed run left behind: each is cut back to its
  committed size — dropping a partial record or records never catalogued — and finished; one
  without catalogued records, or one the catalog never heard of, is removed.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from . import __version__
from .catalog import Catalog
from .digests import sha256_file
from .errors import StoreError
from .timestamps import to_iso
from .warcrecords import (
    Serialized,
    builder,
    new_record_id,
    record_id_for,  # noqa: F401 - re-exported
    retarget,
    serialize_response,
    serialize_verbatim,
    write_record,
)
from .workspace import Workspace

STORE_SUBDIR = "sync"
OPEN_SUFFIX = ".open"
WRITING = "writing"
COMPLETE = "complete"


@dataclass(frozen=True, slots=True)
class Written:
    """Where a record went: its file (catalog id and path) and its gzip member."""

    file_id: int
    path: str
    offset: int
    length: int
    record_id: str


def source_slug(source: str) -> str:
    """``wayback``, or a CDX server URL made file-name safe (``127.0.0.1-8080-coll``)."""
    text = re.sub(r"^[a-z]+://", "", source.lower())
    return re.sub(r"[^a-z0-9.]+", "-", text).strip("-.")[:60] or "source"


class _Output:
    """The open file: counts and hashes every byte written."""

    def __init__(self, handle: IO[bytes]) -> None:
        self.handle = handle
        self.position = 0
        self.sha256 = hashlib.sha256()

    def write(self, data: bytes) -> int:
        self.handle.write(data)
        self.sha256.update(data)
        self.position += len(data)
        return len(data)

    def flush(self) -> None:
        self.handle.flush()


class WarcStore:
    """Writes fetched captures into rotating WARC files and keeps the catalog's file rows current."""

    def __init__(self, workspace: Workspace, catalog: Catalog, *, source: str, info: dict[str, Any],
                 size_limit: int | None = None) -> None:
        self.workspace = workspace
        self.catalog = catalog
        self.source = source
        self.info = info
        self.size_limit = size_limit or workspace.settings.warc_size_limit
        self.directory = workspace.store_path(STORE_SUBDIR)
        self.serial = 0
        self.files_finished: list[str] = []
        self._out: _Output | None = None
        self._path: Path | None = None
        self._relative_path = ""
        self._file_id = 0
        self._warcinfo_id = new_record_id()  # of the file open now, or of the next one

    @property
    def warcinfo_id(self) -> str:
        """The WARC-Record-ID of the warcinfo record heading the file records go into next (read by
        workers building records; a record built for a file finished meanwhile is retargeted)."""
        return self._warcinfo_id

    # -- files ---------------------------------------------------------------------------------
    def _open(self) -> None:
        from datetime import UTC, datetime

        stamp = datetime.now(UTC).strftime("%Y%m%d%H%M%S")
        while True:  # a name no file and no catalog row uses yet
            self.serial += 1
            name = f"ak-{source_slug(self.source)}-{stamp}-{os.getpid()}-{self.serial:05d}.warc.gz"
            final = self.workspace.store_path(f"{STORE_SUBDIR}/{name}")
            path = final.with_name(final.name + OPEN_SUFFIX)
            if not (final.exists() or path.exists() or self.catalog.file_by_path(self.workspace.relative(final))
                    or self.catalog.file_by_path(self.workspace.relative(path))):
                break
        try:
            self.directory.mkdir(parents=True, exist_ok=True)
            handle = open(path, "xb")  # noqa: SIM115 - closed in _finish
        except OSError as exc:
            raise StoreError(f"cannot create {path}: {exc.strerror or exc}", path=path) from None
        self._out = _Output(handle)
        fields = {"software": f"archivekeeper/{__version__}", "format": "WARC File Format 1.0",
                  "conformsTo": "http://bibnum.bnf.fr/WARC/WARC_ISO_28500_version1_latestdraft.pdf",
                  "operator": self.workspace.settings.contact or None,
                  "description": "captures fetched from a web archive by `archivekeeper sync`",
                  "source": self.source, **{k: (v if isinstance(v, str) else json.dumps(v, sort_keys=True))
                                            for k, v in self.info.items()}}
        warcinfo = builder().create_warcinfo_record(name, fields)
        warcinfo.rec_headers.replace_header("WARC-Record-ID", self._warcinfo_id)
        write_record(self._out, warcinfo)
        self._sync_file()
        _fsync_dir(self.directory)
        self._path = path
        self._relative_path = self.workspace.relative(path)
        self._file_id = self.catalog.register_file(self._relative_path, source=self.source, status=WRITING,
                                                   size=self._out.position)

    def _sync_file(self) -> None:
        assert self._out is not None
        try:
            self._out.flush()
            os.fsync(self._out.handle.fileno())
        except OSError as exc:
            raise StoreError(f"cannot write the WARC store: {exc.strerror or exc}", path=self._path) from None

    def _finish(self) -> None:
        """Close the current file, give it its final name and mark it complete."""
        if self._out is None or self._path is None:
            return
        self._sync_file()
        self._out.handle.close()
        final = self._path.with_name(self._path.name.removesuffix(OPEN_SUFFIX))
        os.replace(self._path, final)
        _fsync_dir(final.parent)
        self.catalog.update_file(self._file_id, path=self.workspace.relative(final), status=COMPLETE,
                                 size=self._out.position, sha256=self._out.sha256.hexdigest(),
                                 mtime=final.stat().st_mtime, records=self.catalog.file_records(self._file_id))
        self.files_finished.append(self.workspace.relative(final))
        self._out = None
        self._path = None
        self._warcinfo_id = new_record_id()

    def close(self) -> None:
        """Finish the current file (call after the last commit)."""
        self._finish()

    def rotate_if_full(self) -> None:
        """At a commit boundary: finish the current file once it has reached the size limit."""
        if self._out is not None and self._out.position >= self.size_limit:
            self._finish()

    def flush(self) -> None:
        """Make every record written so far durable (``fsync``) before its catalog rows commit."""
        if self._out is not None:
            self._sync_file()

    def mark_committed(self) -> None:
        """Inside the caller's catalog transaction: the file's records so far are catalogued."""
        if self._out is not None:
            self.catalog.update_file(self._file_id, size=self._out.position)

    # -- records -------------------------------------------------------------------------------
    def append(self, records: Serialized) -> Written:
        """Append serialized records to the current file (opening one if needed)."""
        if self._out is None:
            self._open()
        assert self._out is not None and self._path is not None
        if records.warcinfo_id is not None and records.warcinfo_id != self._warcinfo_id:
            retarget(records, self._warcinfo_id)
        offset = self._out.position
        try:
            records.body.seek(0)
            while chunk := records.body.read(1 << 20):
                self._out.write(chunk)
        except OSError as exc:
            raise StoreError(f"cannot write the WARC store: {exc.strerror or exc}", path=self._path) from None
        return Written(self._file_id, self._relative_path, offset, records.first_length, records.record_id)

    def write_response(self, **fields: Any) -> Written:
        """:func:`serialize_response` + :meth:`append`."""
        return self.append(serialize_response(**fields))

    def write_verbatim(self, **fields: Any) -> Written:
        """:func:`serialize_verbatim` + :meth:`append`."""
        return self.append(serialize_verbatim(**fields))

    # -- recovery ------------------------------------------------------------------------------
    def recover(self) -> list[str]:
        """Finish (or remove) files a killed run left open; returns what was done, one line each."""
        done: list[str] = []
        known: set[Path] = set()
        for row in self.catalog.files_with_status(WRITING):
            path = self.workspace.resolve(row["path"])
            if self.directory not in path.parents:
                continue
            known.add(path)
            final = path.with_name(path.name.removesuffix(OPEN_SUFFIX))
            present = path if path.exists() else final if final.exists() else None
            records = self.catalog.file_records(int(row["id"]))
            if present is not None and (present.is_symlink() or self.directory not in present.resolve().parents):
                self.catalog.update_file(int(row["id"]), status="partial",
                                         error="not finished: the file is a link or lies outside the store")
                done.append(f"{row['path']}: left alone (a link, or outside the store)")
                continue
            if present is None:
                self.catalog.update_file(int(row["id"]), status="partial", error="file missing after a crash")
                done.append(f"{row['path']}: missing ({records} catalogued records lost)")
                continue
            if records == 0:
                present.unlink()
                self.catalog.forget_file(int(row["id"]))
                done.append(f"{row['path']}: removed (nothing catalogued in it)")
                continue
            with open(present, "r+b") as handle:
                handle.truncate(int(row["size"]))
                handle.flush()
                os.fsync(handle.fileno())
            if present != final:
                os.replace(present, final)
                _fsync_dir(final.parent)
            self.catalog.update_file(int(row["id"]), path=self.workspace.relative(final), status=COMPLETE,
                                     size=final.stat().st_size, sha256=sha256_file(str(final)),
                                     mtime=final.stat().st_mtime, records=records)
            done.append(f"{row['path']}: finished with {records} records")
        if self.directory.is_dir():
            for stray in sorted(self.directory.glob(f"*{OPEN_SUFFIX}")):
                if stray.resolve() not in {p.resolve() for p in known}:
                    stray.unlink()
                    done.append(f"{self.workspace.relative(stray)}: removed (never catalogued)")
        return done


def _fsync_dir(directory: Path) -> None:
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def capture_date(moment: Any) -> str:
    """WARC-Date of a capture time (second precision, UTC)."""
    return to_iso(moment)
