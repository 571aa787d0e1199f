"""``import``: catalogue the WARC/ARC files an archivist already holds.

Files are scanned in worker processes (one file per worker, so a multi-file import uses every
core) while the main process writes their records to the catalog, one transaction per chunk.
A file that breaks part-way keeps the records read before the fault, is marked ``partial`` and
reported; the next file is still imported. Re-importing a file adds nothing.
"""

from __future__ import annotations

import contextlib
import ctypes
import fcntl
import glob
import hashlib
import multiprocessing
import os
import secrets
import shutil
import signal
import sqlite3
import sys
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass, field
from multiprocessing.connection import Connection
from multiprocessing.connection import wait as wait_for
from pathlib import Path
from typing import Any, cast

from .catalog import BulkWriter, Catalog
from .digests import HashingReader
from .errors import ArchiveKeeperError, CatalogError, InputFileError, StoreError, WorkspaceError
from .warcreader import ScanResult, build_row, scan_raw
from .workspace import Workspace

WARC_SUFFIXES = (".warc", ".warc.gz", ".arc", ".arc.gz")
CHUNK_ROWS = 1000  # records per message from a worker (~200 KiB pickled)
PIPE_BYTES = 1 << 20  # pipe buffer per worker (the Linux default maximum for a pipe)
WRITE_BATCH_ROWS = 10_000  # at most this many rows taken from the pipes at once (bounds memory)
HASH_CHUNK = 1 << 20
IMPORT_SOURCE = "import"


@dataclass
class FileOutcome:
    """What happened to one input file."""

    path: str
    status: str  # imported | partial | skipped | failed
    records_new: int = 0
    records_seen: int = 0
    size: int = 0
    sha256: str | None = None
    errors: list[str] = field(default_factory=list)


@dataclass
class ImportSummary:
    files: list[FileOutcome] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def failed(self) -> list[FileOutcome]:
        return [f for f in self.files if f.errors]

    def as_json(self) -> dict[str, Any]:
        counts = {s: sum(1 for f in self.files if f.status == s) for s in ("imported", "partial", "skipped", "failed")}
        total_bytes = sum(f.size for f in self.files if f.status != "skipped")
        return {
            "files": len(self.files),
            **counts,
            "records_new": sum(f.records_new for f in self.files),
            "records_seen": sum(f.records_seen for f in self.files),
            "bytes": total_bytes,
            "seconds": round(self.seconds, 3),
            "mb_per_s": round(total_bytes / 1e6 / self.seconds, 1) if self.seconds > 0 else None,
            "errors": [err for f in self.files for err in f.errors],
            "file_results": [asdict(f) for f in self.files],
        }


ProgressCallback = Callable[[str, int], None]  # (event, bytes): "total" once, then "advance"


def expand_paths(paths: Iterable[str]) -> tuple[list[Path], list[FileOutcome]]:
    """Files, directories (searched recursively for WARC/ARC files) and glob patterns → files.

    Names that match nothing come back as failed outcomes.
    """
    found: list[Path] = []
    missing: list[FileOutcome] = []
    seen: set[Path] = set()

    def add(candidate: Path) -> None:
        resolved = candidate.resolve()
        if resolved not in seen:
            seen.add(resolved)
            found.append(resolved)

    for raw in paths:
        path = Path(raw).expanduser()
        if path.is_dir():
            for child in sorted(path.rglob("*")):
                if child.is_file() and child.name.lower().endswith(WARC_SUFFIXES):
                    add(child)
        elif path.exists():
            add(path)
        elif glob.has_magic(raw):
            matches = sorted(glob.glob(os.path.expanduser(raw), recursive=True))
            files = [Path(m) for m in matches if Path(m).is_file()]
            if not files:
                missing.append(FileOutcome(path=raw, status="failed", errors=[f"{raw}: no file matches"]))
            for match in files:
                add(match)
        else:
            missing.append(FileOutcome(path=raw, status="failed", errors=[f"{raw}: no such file or directory"]))
    return found, missing


def _store_name(name: str, limit: int = 200) -> str:
    """``name`` cut to ``limit`` UTF-8 bytes, keeping its WARC/ARC suffix (file names may have 255)."""
    if len(name.encode("utf-8")) <= limit:
        return name
    suffix = next((s for s in sorted(WARC_SUFFIXES, key=len, reverse=True) if name.lower().endswith(s)), "")
    stem = name[: len(name) - len(suffix)]
    budget = limit - len(suffix.encode("utf-8"))
    while len(stem.encode("utf-8")) > budget:
        stem = stem[:-1]
    return stem + suffix


# -- worker side -------------------------------------------------------------------------------
# Workers take two kinds of task: ("scan", ...) parses a file and streams its rows; ("hash", ...)
# reads it once more for its SHA-256. Hashing in its own task keeps it off the parser's core (a
# thread beside FastWARC would fight it for the GIL), so even a one-file import uses two cores.

def _scan_to_pipe(index: int, path: str, out: Any) -> None:
    """Scan one file, sending ("rows", index, raw records, position) chunks then ("scanned", index, ...).

    Only the parsing half runs here: the main process turns the raw records into catalog rows
    (:func:`warcreader.build_row`), so a one-file import keeps a second core busy.
    """
    result = ScanResult()
    chunk: list[tuple[Any, ...]] = []
    error: str | None = None
    try:
        for raw in scan_raw(Path(path), result=result, hash_file=False):
            chunk.append(raw)
            if len(chunk) >= CHUNK_ROWS:
                out.send(("rows", index, chunk, raw[0]))
                chunk = []
    except ArchiveKeeperError as exc:
        error = str(exc)
    except Exception as exc:  # an unexpected fault in a parser must not kill the whole import
        error = f"{path}: unexpected error while reading: {type(exc).__name__}: {exc}"
    if chunk:
        out.send(("rows", index, chunk, chunk[-1][0]))
    out.send(("scanned", index, [str(p) for p in result.problems], error, result.records_seen))


def _hash_to_pipe(index: int, path: str, out: Any) -> None:
    """SHA-256 and size of one file: ("hashed", index, size, sha256, error)."""
    digest = hashlib.sha256()
    size = 0
    buffer = bytearray(HASH_CHUNK)
    view = memoryview(buffer)
    try:
        with open(path, "rb", buffering=0) as handle:
            while count := handle.readinto(buffer):
                digest.update(view[:count])
                size += count
    except OSError as exc:
        out.send(("hashed", index, size, None, f"{path}: cannot read: {exc.strerror or exc}"))
        return
    out.send(("hashed", index, size, digest.hexdigest(), None))


def _die_with_parent(parent_pid: int) -> None:
    """Make a worker end when the import's main process does (even by SIGKILL): an orphaned worker
    would keep the workspace lock (inherited across fork) and wait on its full pipe forever."""
    if sys.platform.startswith("linux"):
        with contextlib.suppress(OSError, AttributeError):
            ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    else:
        threading.Thread(target=_watch_parent, args=(parent_pid,), daemon=True).start()
    if os.getppid() != parent_pid:  # the parent died before we could ask
        os._exit(1)


def _watch_parent(parent_pid: int) -> None:
    while os.getppid() == parent_pid:
        time.sleep(0.5)
    os._exit(1)


def _worker_main(tasks: Any, out: Connection, parent_pid: int) -> None:
    _die_with_parent(parent_pid)
    while True:
        task: tuple[Any, ...] | None = tasks.get()
        if task is None:
            out.close()
            return
        kind, index, path = task
        if kind == "scan":
            _scan_to_pipe(index, path, out)
        else:
            _hash_to_pipe(index, path, out)


# -- main side ---------------------------------------------------------------------------------

def _widen(pipe: Connection) -> None:
    """Let a pipe hold a few messages (Linux: 64 KiB by default, less than one), so a worker goes on
    parsing while the main process is busy writing the catalog."""
    with contextlib.suppress(AttributeError, OSError):
        fcntl.fcntl(pipe.fileno(), fcntl.F_SETPIPE_SZ, PIPE_BYTES)


def _receive(pipes: list[Connection]) -> list[tuple[Any, ...]]:
    """The next worker messages: wait (up to a second) for one, then take whatever else is ready,
    up to ``WRITE_BATCH_ROWS`` rows. A pipe at its end is dropped from ``pipes``."""
    messages: list[tuple[Any, ...]] = []
    rows = 0
    ready = cast(list[Connection], wait_for(pipes, timeout=1.0))
    while ready and rows < WRITE_BATCH_ROWS:
        for pipe in ready:
            try:
                message: tuple[Any, ...] = pipe.recv()
            except EOFError:
                pipes.remove(pipe)
                continue
            messages.append(message)
            if message[0] == "rows":
                rows += len(message[2])
        ready = cast(list[Connection], wait_for(pipes, timeout=0))
    return messages


class Importer:
    """Import WARC/ARC files into a workspace's catalog."""

    def __init__(self, workspace: Workspace, catalog: Catalog, *, copy: bool = False, jobs: int | None = None,
                 source: str = IMPORT_SOURCE, progress: ProgressCallback | None = None) -> None:
        self.workspace = workspace
        self.catalog = catalog
        self.copy = copy
        self.jobs = jobs if jobs is not None else (os.cpu_count() or 1)
        self.source = source
        self.progress = progress or (lambda event, amount: None)
        self._problems: dict[int, list[str]] = {}  # record-level faults met building rows, per file

    def run(self, paths: Sequence[str]) -> ImportSummary:
        started = time.monotonic()
        files, missing = expand_paths(paths)
        summary = ImportSummary(files=list(missing))
        todo: list[tuple[Path, FileOutcome, int]] = []
        sizes = 0
        for path in files:
            outcome, file_id = self._prepare(path)
            summary.files.append(outcome)
            if file_id is not None:
                todo.append((path, outcome, file_id))
                sizes += outcome.size
        self.progress("total", sizes)
        if todo:
            with self.catalog.bulk_writes() as writer:
                self._scan_all(todo, writer)
        summary.seconds = time.monotonic() - started
        return summary

    def _prepare(self, path: Path) -> tuple[FileOutcome, int | None]:
        """Decide whether ``path`` needs scanning; copy it into the store with ``--copy``."""
        try:
            stat = path.stat()
        except OSError as exc:
            return FileOutcome(path=str(path), status="failed", errors=[f"{path}: {exc.strerror}"]), None
        if not path.is_file():
            return FileOutcome(path=str(path), status="failed", errors=[f"{path}: not a regular file"]), None
        if self.copy and self.workspace.store_dir.resolve() not in path.parents:
            try:
                path = self._copy_into_store(path)
                stat = path.stat()
            except StoreError as exc:
                return FileOutcome(path=str(path), status="failed", errors=[str(exc)]), None
        stored = self.workspace.relative(path)
        outcome = FileOutcome(path=stored, status="imported", size=stat.st_size)
        known = self.catalog.file_by_path(stored)
        unchanged = known is not None and known["size"] == stat.st_size and known["mtime"] == stat.st_mtime
        if known and known["status"] == "complete" and unchanged:
            outcome.status = "skipped"
            outcome.sha256 = known["sha256"]
            return outcome, None
        file_id = self.catalog.register_file(stored, source=self.source, status="importing", size=stat.st_size,
                                             mtime=stat.st_mtime)
        return outcome, file_id

    def _copy_into_store(self, path: Path) -> Path:
        """Copy ``path`` to ``store/imported/`` (hashing as it copies); never follows a link out of the
        store, and keeps every name it writes within the file-system's name limit."""
        target = path
        try:
            target = self.workspace.store_path(f"imported/{_store_name(path.name)}")
            target.parent.mkdir(parents=True, exist_ok=True)
            self.workspace.store_path(f"imported/{target.name}")  # the folder made may not be a link out
            for stale in target.parent.glob(".import-*.part"):  # left by a killed run; we hold the lock
                stale.unlink(missing_ok=True)
            tmp = target.with_name(f".import-{os.getpid()}-{secrets.token_hex(4)}.part")
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0), 0o644)
            try:
                with open(path, "rb") as src, os.fdopen(fd, "wb") as dst:
                    reader = HashingReader(src)
                    while chunk := reader.read(1 << 20):
                        dst.write(chunk)
                    dst.flush()
                    os.fsync(dst.fileno())
            except BaseException:
                tmp.unlink(missing_ok=True)
                raise
            sha = reader.sha256.hexdigest()
            if target.exists():
                existing = HashingReader(open(target, "rb"))
                while existing.read(1 << 20):
                    pass
                existing.close()
                if existing.sha256.hexdigest() == sha:
                    tmp.unlink()
                    return target
                target = self.workspace.store_path(f"imported/{_store_name(f'{sha[:12]}-{path.name}')}")
            os.replace(tmp, target)
            shutil.copystat(path, target)
        except OSError as exc:
            raise StoreError(f"cannot copy {path} into the store: {exc.strerror or exc}", path=target) from None
        except WorkspaceError as exc:
            raise StoreError(f"cannot copy {path} into the store: {exc}", path=target) from None
        return target

    def _scan_all(self, todo: list[tuple[Path, FileOutcome, int]], writer: BulkWriter) -> None:
        self._problems = {}
        # scans in input order, then the (much shorter) hashes: they fill the gap while the last
        # scans finish, and with one file the hash runs beside its scan
        tasks_list: list[tuple[Any, ...]] = [("scan", index, str(path)) for index, (path, _, _) in enumerate(todo)]
        tasks_list += [("hash", index, str(path)) for index, (path, _, _) in enumerate(todo)]
        workers = max(1, min(self.jobs, len(tasks_list)))
        ctx = multiprocessing.get_context("fork")
        tasks = ctx.SimpleQueue()
        for task in tasks_list:
            tasks.put(task)
        for _ in range(workers):
            tasks.put(None)
        # one pipe per worker: sending pickles in the worker's own thread (no feeder thread to
        # contend with the parser for the GIL), and a full pipe makes the worker wait for us
        procs: list[Any] = []
        pipes: list[Connection] = []
        for _ in range(workers):
            receive, send = ctx.Pipe(duplex=False)
            _widen(send)
            proc = ctx.Process(target=_worker_main, args=(tasks, send, os.getpid()), daemon=True)
            proc.start()
            send.close()
            procs.append(proc)
            pipes.append(receive)
        positions = [0] * len(todo)
        scanned: dict[int, tuple[Any, ...]] = {}
        hashed: dict[int, tuple[Any, ...]] = {}
        remaining = len(todo)
        try:
            while remaining:
                if not pipes:
                    raise CatalogError("import workers exited unexpectedly")
                batch: list[tuple[Any, ...]] = []
                for message in _receive(pipes):
                    if message[0] == "rows":
                        batch.append(message)
                        continue
                    self._write(writer, batch, todo, positions)  # a file's rows are in before its end
                    batch = []
                    remaining -= self._handle(message, todo, positions, scanned, hashed)
                self._write(writer, batch, todo, positions)
        finally:
            for pipe in pipes:
                pipe.close()
            for proc in procs:
                if proc.is_alive():
                    proc.terminate()
                proc.join(timeout=5)
            tasks.close()

    def _write(self, writer: BulkWriter, batch: list[tuple[Any, ...]], todo: list[tuple[Path, FileOutcome, int]],
               positions: list[int]) -> None:
        """Build the rows of the chunks received together and insert them (the writer commits in
        large transactions, which cost the catalog's random-key indexes far fewer page writes)."""
        cutoff_iso = self.catalog.cutoff_iso
        for _, index, raws, position in batch:
            path, outcome, file_id = todo[index]
            rows = []
            for raw in raws:
                try:
                    rows.append(build_row(raw, source=self.source, path=path, file_id=file_id, cutoff_iso=cutoff_iso))
                except InputFileError as exc:
                    self._problems.setdefault(index, []).append(str(exc))
            try:
                outcome.records_new += writer.insert_rows(rows)
            except sqlite3.DatabaseError as exc:
                raise CatalogError(f"cannot write the catalog: {exc}") from None
            self.progress("advance", max(0, position - positions[index]))
            positions[index] = max(positions[index], position)

    def _handle(self, message: tuple[Any, ...], todo: list[tuple[Path, FileOutcome, int]], positions: list[int],
                scanned: dict[int, tuple[Any, ...]], hashed: dict[int, tuple[Any, ...]]) -> int:
        """Act on the end of a file's scan or hash; 1 when that completed the file."""
        kind, index = message[0], message[1]
        _, outcome, file_id = todo[index]
        (scanned if kind == "scanned" else hashed)[index] = message[2:]
        if index not in scanned or index not in hashed:
            return 0
        problems, error, seen = scanned.pop(index)
        problems = self._problems.pop(index, []) + problems
        size, sha256, hash_error = hashed.pop(index)
        if error:  # as a single pass would: no file digest for a file that broke
            sha256 = None
        elif hash_error:
            error = hash_error
        self._finish(outcome, file_id, size, sha256, problems, error, seen)
        self.progress("advance", max(0, outcome.size - positions[index]))
        return 1

    def _finish(self, outcome: FileOutcome, file_id: int, size: int, sha256: str | None, problems: list[str],
                error: str | None, seen: int) -> None:
        outcome.records_seen = seen
        outcome.sha256 = sha256
        outcome.errors.extend(problems)
        if error:
            outcome.errors.append(error)
        if error and not outcome.records_new and not self.catalog.file_records(file_id):
            outcome.status = "failed"
        elif error or problems:
            outcome.status = "partial"
        with self.catalog.transaction():
            status = "complete" if not error else ("failed" if outcome.status == "failed" else "partial")
            values: dict[str, Any] = {"status": status, "records": self.catalog.file_records(file_id),
                                      "error": "; ".join(outcome.errors) or None}
            if sha256:
                values["sha256"] = sha256
                values["size"] = size
            self.catalog.update_file(file_id, **values)
            if sha256 and status == "complete":
                self._detect_move(file_id, sha256, outcome)

    def _detect_move(self, file_id: int, sha256: str, outcome: FileOutcome) -> None:
        """The same bytes known under another path that no longer exists: the file was moved."""
        for other in self.catalog.files_by_sha256(sha256):
            if other["id"] == file_id or self.workspace.resolve(other["path"]).exists():
                continue
            self.catalog.conn.execute("UPDATE captures SET file_id = ? WHERE file_id = ?", (file_id, other["id"]))
            self.catalog.conn.execute("DELETE FROM files WHERE id = ?", (other["id"],))
            self.catalog.update_file(file_id, records=self.catalog.file_records(file_id))
            outcome.status = "moved"


def import_paths(workspace: Workspace, catalog: Catalog, paths: Sequence[str], **options: Any) -> ImportSummary:
    """Convenience wrapper: ``Importer(workspace, catalog, **options).run(paths)``."""
    return Importer(workspace, catalog, **options).run(paths)


__all__ = ["FileOutcome", "ImportSummary", "Importer", "expand_paths", "import_paths", "InputFileError"]
