"""``import``: catalogue the WARC/ARC files an archivist already holds.

Files are scanned in worker processes (one file per worker, so a multi-file import uses every
core) while the main process writes their records to the catalog, one transaction per chunk.
A file that breaks part-way keeps the records read before the fault, is marked ``partial`` and
reported; the next file is still imported. Re-importing a file adds nothing.
"""

from __future__ import annotations

import glob
import multiprocessing
import os
import queue as queue_module
import shutil
import sqlite3
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from .catalog import Catalog
from .digests import HashingReader
from .errors import ArchiveKeeperError, CatalogError, InputFileError, StoreError
from .warcreader import ScanResult, scan
from .workspace import Workspace

WARC_SUFFIXES = (".warc", ".warc.gz", ".arc", ".arc.gz")
CHUNK_ROWS = 5000
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


# -- worker side -------------------------------------------------------------------------------

def _scan_to_queue(index: int, path: str, source: str, out: Any) -> None:
    """Scan one file, sending ("rows", index, rows, position) chunks then ("done", index, ...)."""
    result = ScanResult()
    chunk: list[tuple[Any, ...]] = []
    error: str | None = None
    try:
        for record in scan(Path(path), source=source, result=result):
            chunk.append(_wire(record))
            if len(chunk) >= CHUNK_ROWS:
                out.put(("rows", index, chunk, record.offset))
                chunk = []
    except ArchiveKeeperError as exc:
        error = str(exc)
    except Exception as exc:  # an unexpected fault in a parser must not kill the whole import
        error = f"{path}: unexpected error while reading: {type(exc).__name__}: {exc}"
    if chunk:
        out.put(("rows", index, chunk, chunk[-1][14]))
    out.put(("done", index, result.size, result.sha256, [str(p) for p in result.problems], error,
             result.records_seen))


def _wire(record: Any) -> tuple[Any, ...]:
    return (record.record_key, record.url, record.urlkey, record.timestamp, record.capture_time, record.year,
            0, record.status, record.mime, record.digest, record.payload_sha1, record.record_type,
            record.record_id, 0, record.offset, record.length, record.source, record.verification,
            record.verification_reason, record.refers_to_url, record.refers_to_date)


def _worker_main(tasks: Any, out: Any) -> None:
    while True:
        task = tasks.get()
        if task is None:
            return
        index, path, source = task
        _scan_to_queue(index, path, source, out)


# -- main side ---------------------------------------------------------------------------------

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
            self._scan_all(todo)
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
        if known and known["status"] == "complete" and known["size"] == stat.st_size and known["mtime"] == stat.st_mtime:
            outcome.status = "skipped"
            outcome.sha256 = known["sha256"]
            return outcome, None
        file_id = self.catalog.register_file(stored, source=self.source, status="importing", size=stat.st_size,
                                             mtime=stat.st_mtime)
        return outcome, file_id

    def _copy_into_store(self, path: Path) -> Path:
        target_dir = self.workspace.store_dir / "imported"
        target = target_dir / path.name
        try:
            target_dir.mkdir(parents=True, exist_ok=True)
            tmp = target.with_name(target.name + ".part")
            with open(path, "rb") as src, open(tmp, "wb") as dst:
                reader = HashingReader(src)
                while chunk := reader.read(1 << 20):
                    dst.write(chunk)
                dst.flush()
                os.fsync(dst.fileno())
            sha = reader.sha256.hexdigest()
            if target.exists():
                existing = HashingReader(open(target, "rb"))
                while existing.read(1 << 20):
                    pass
                existing.close()
                if existing.sha256.hexdigest() == sha:
                    tmp.unlink()
                    return target
                target = target_dir / f"{sha[:12]}-{path.name}"
            os.replace(tmp, target)
            shutil.copystat(path, target)
        except OSError as exc:
            raise StoreError(f"cannot copy {path} into the store: {exc.strerror or exc}", path=target) from None
        return target

    def _scan_all(self, todo: list[tuple[Path, FileOutcome, int]]) -> None:
        workers = max(1, min(self.jobs, len(todo)))
        ctx = multiprocessing.get_context("fork")
        tasks = ctx.Queue()
        results = ctx.Queue(maxsize=8 * workers)
        for index, (path, _, _) in enumerate(todo):
            tasks.put((index, str(path), self.source))
        for _ in range(workers):
            tasks.put(None)
        procs = [ctx.Process(target=_worker_main, args=(tasks, results), daemon=True) for _ in range(workers)]
        for proc in procs:
            proc.start()
        positions = [0] * len(todo)
        remaining = len(todo)
        try:
            while remaining:
                try:
                    message = results.get(timeout=1.0)
                except queue_module.Empty:
                    if not any(proc.is_alive() for proc in procs):
                        raise CatalogError("import workers exited unexpectedly") from None
                    continue
                kind, index = message[0], message[1]
                path, outcome, file_id = todo[index]
                if kind == "rows":
                    rows, position = message[2], message[3]
                    outcome.records_new += self._insert(rows, file_id)
                    self.progress("advance", max(0, position - positions[index]))
                    positions[index] = max(positions[index], position)
                else:
                    size, sha256, problems, error, seen = message[2:]
                    self._finish(outcome, file_id, size, sha256, problems, error, seen)
                    self.progress("advance", max(0, outcome.size - positions[index]))
                    remaining -= 1
        finally:
            for proc in procs:
                if proc.is_alive():
                    proc.terminate()
                proc.join(timeout=5)

    def _insert(self, rows: list[tuple[Any, ...]], file_id: int) -> int:
        cutoff = self.catalog.cutoff_iso
        fixed = [(*row[:6], int(row[4] < cutoff), *row[7:13], file_id, *row[14:]) for row in rows]
        try:
            return self.catalog.insert_rows(fixed)
        except sqlite3.DatabaseError as exc:
            raise CatalogError(f"cannot write the catalog: {exc}") from None

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
