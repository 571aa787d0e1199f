"""Build an export package and publish it: the ``export`` step of the pipeline.

    plan (export.py) → WARC shards (shards.py) + documents (extract.py) + aliases
    → manifest.json (manifest.py) + BagIt tag files (bagit.py) → publish

The package is built in a staging folder next to the destination (local) or inside the workspace
(S3). Local publication renames the finished folder into place, so a half-written export never
sits under the final name; S3 publication uploads data files first and ``manifest.json`` last.

Reproducible: the same catalog and selection give byte-identical data files and manifest. The
one timestamp (``created``: manifest, bag-info, warcinfo ``WARC-Date``) is ``SOURCE_DATE_EPOCH``
when set, else the time of the first run of this same export, kept in the catalog.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import time
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from . import __version__, bagit
from .catalog import Catalog
from .config import DEFAULT_SHARD_SIZE
from .errors import ConfigError, ExportError
from .export import (
    PAGE_ROWS,
    ExportSpec,
    PlanCounts,
    file_path,
    finish_export,
    iter_aliases,
    iter_exported,
    iter_placements,
    pending_publication,
    plan_export,
    record_runs,
    roomy_cache,
    save_captures,
    start_export,
    validate_name,
)
from .extract import (
    ROW_FIELDS,
    DocumentPipeline,
    JsonlWriter,
    ParquetWriter,
    extractor_name,
    is_document,
    require_pyarrow,
)
from .manifest import MANIFEST_JSON, build_manifest, dumps, loads
from .models import Selection
from .s3 import (
    DEFAULT_CONCURRENCY,
    DEFAULT_PART_SIZE,
    Uploader,
    UploadItem,
    UploadSummary,
    check_bucket,
    is_s3_url,
    make_client,
    parse_s3_url,
)
from .shards import DataFile, ShardWriter, SourceFiles, warcinfo_record
from .timestamps import to_iso
from .workspace import Workspace

FORMATS = ("warc", "jsonl", "parquet")
DEFAULT_FORMATS = ("warc", "jsonl")
WARC_DIR = "data/warc"
TEXT_DIR = "data/text"
ALIASES_FILE = "data/aliases.jsonl.gz"
STAGING_DIR = ".export-staging"
Reporter = Callable[[str, int], None]


@dataclass(frozen=True, slots=True)
class ExportOptions:
    formats: tuple[str, ...] = DEFAULT_FORMATS
    shard_size: int = DEFAULT_SHARD_SIZE
    jobs: int = os.cpu_count() or 1
    part_size: int = DEFAULT_PART_SIZE
    concurrency: int = DEFAULT_CONCURRENCY
    endpoint_url: str | None = None


@dataclass
class ExportResult:
    name: str
    destination: str
    created: str
    manifest: dict[str, Any]
    seconds: float = 0.0
    upload: UploadSummary | None = None
    files: list[DataFile] = field(default_factory=list)
    timings: dict[str, float] = field(default_factory=dict)  # seconds per phase: plan, build, publish, catalog

    def as_json(self) -> dict[str, Any]:
        return {"name": self.name, "destination": self.destination, "created": self.created,
                "counts": self.manifest["counts"], "files": len(self.files),
                "bytes": sum(f.size for f in self.files), "seconds": round(self.seconds, 3),
                "timings": {phase: round(value, 3) for phase, value in self.timings.items()},
                "upload": self.upload.as_json() if self.upload else None}


def parse_formats(text: str | Any) -> tuple[str, ...]:
    """``warc,jsonl`` → ``("warc", "jsonl")`` in canonical order; unknown names are a ConfigError."""
    items = [p.strip().lower() for p in str(text).split(",") if p.strip()]
    unknown = sorted(set(items) - set(FORMATS))
    if unknown or not items:
        raise ConfigError(f"--format takes a comma-separated list of {', '.join(FORMATS)}, not {text!r}")
    return tuple(f for f in FORMATS if f in items)


def source_date(env: Mapping[str, str] | None = None) -> str | None:
    """``SOURCE_DATE_EPOCH`` as ISO-8601 UTC, or None when unset."""
    value = (os.environ if env is None else env).get("SOURCE_DATE_EPOCH")
    if value is None or value == "":
        return None
    try:
        return to_iso(datetime.fromtimestamp(int(value), tz=UTC))
    except (ValueError, OverflowError, OSError):
        raise ConfigError(f"SOURCE_DATE_EPOCH must be whole seconds since 1970, not {value!r}") from None


def run_export(workspace: Workspace, catalog: Catalog, name: str, destination: str, selection: Selection,
               options: ExportOptions | None = None, *, progress: Reporter | None = None, client: Any = None,
               env: Mapping[str, str] | None = None) -> ExportResult:
    """Plan, build and publish one export; the catalog records it and the captures in it."""
    options = options or ExportOptions()
    started = time.monotonic()
    validate_name(name)
    if options.shard_size < 1024:
        raise ConfigError("shard size must be at least 1024 bytes")
    if "parquet" in options.formats:
        require_pyarrow()
    report = progress or (lambda event, amount: None)
    if is_s3_url(destination):
        location = parse_s3_url(destination)
        client = client or make_client(options.endpoint_url)
        check_bucket(client, location)
        staging = workspace.root / STAGING_DIR / name
        dest_text = location.url
    else:
        target = Path(destination).expanduser().absolute()
        finished = _finish_interrupted_publication(catalog, name, target, started)
        if finished is not None:
            return finished
        if target.exists() and (not target.is_dir() or any(target.iterdir())):
            raise ExportError(f"{target} already exists and is not empty: choose another --to or remove it")
        staging = target.parent / f".{target.name}.partial"
        dest_text = str(target)
    spec = ExportSpec(name, dest_text, selection, options.formats)
    export_id, created = start_export(catalog, spec, source_date(env), to_iso(datetime.now(UTC)))
    try:
        with roomy_cache(catalog):
            result = _export(workspace, catalog, export_id, spec, created, staging, options, report, client)
    except BaseException:
        finish_export(catalog, export_id, "failed")
        shutil.rmtree(staging, ignore_errors=True)
        raise
    result.seconds = time.monotonic() - started
    return result


def _export(workspace: Workspace, catalog: Catalog, export_id: int, spec: ExportSpec, created: str, staging: Path,
            options: ExportOptions, report: Reporter, client: Any) -> ExportResult:
    clock = time.monotonic()
    counts = plan_export(catalog, export_id, spec.selection)
    timings = {"plan": time.monotonic() - clock}
    if counts.exported == 0:
        raise ExportError(f"nothing to export: {counts.selected} captures selected, none pre-cutoff and "
                          f"verified (left out: {_left_out_text(counts)})")
    if staging.exists():
        shutil.rmtree(staging)
    staging.mkdir(parents=True)
    clock = time.monotonic()
    manifest, files = build_package(workspace, catalog, spec, created, counts, staging, options, report)
    timings["build"] = time.monotonic() - clock
    result = ExportResult(spec.name, spec.destination, created, manifest, files=files, timings=timings)
    if is_s3_url(spec.destination):
        clock = time.monotonic()
        report("upload", 0)
        uploader = Uploader(client, parse_s3_url(spec.destination), part_size=options.part_size,
                            concurrency=options.concurrency, progress=report)
        result.upload = uploader.run(staging, [UploadItem(f.path, f.size, f.sha256) for f in files],
                                     _tag_items(staging))
        shutil.rmtree(staging, ignore_errors=True)
        timings["publish"] = time.monotonic() - clock
        clock = time.monotonic()
        save_captures(catalog, export_id)
        finish_export(catalog, export_id, "complete", manifest["counts"], manifest_sha256(manifest))
        timings["catalog"] = time.monotonic() - clock
    else:
        # Catalogued first (as 'publishing'), renamed second, marked complete last: a kill after the rename
        # leaves an export the catalog knows, and the re-run only marks it complete.
        clock = time.monotonic()
        save_captures(catalog, export_id)
        finish_export(catalog, export_id, "publishing", manifest["counts"], manifest_sha256(manifest))
        timings["catalog"] = time.monotonic() - clock
        clock = time.monotonic()
        _publish_local(staging, Path(spec.destination))
        finish_export(catalog, export_id, "complete")
        timings["publish"] = time.monotonic() - clock
    return result


def _finish_interrupted_publication(catalog: Catalog, name: str, target: Path,
                                    started: float) -> ExportResult | None:
    """A local export whose run was killed after renaming its folder into place but before the catalog marked
    it complete: the folder's manifest is the one catalogued, so mark it complete (nothing is rebuilt)."""
    pending = pending_publication(catalog, name, str(target))
    manifest_path = target / MANIFEST_JSON
    if pending is None or not manifest_path.is_file():
        return None
    data = manifest_path.read_bytes()
    if hashlib.sha256(data).hexdigest() != pending[1]:
        return None
    manifest = loads(data)
    finish_export(catalog, pending[0], "complete")
    files = [DataFile(f["path"], int(f["size"]), f["sha256"], f.get("records"), f.get("rows"))
             for f in manifest["files"]]
    return ExportResult(name, str(target), str(manifest.get("created", "")), manifest,
                        seconds=time.monotonic() - started, files=files)


def _left_out_text(counts: PlanCounts) -> str:
    return ", ".join(f"{reason} {n}" for reason, n in counts.left_out.items() if n) or "none"


def manifest_sha256(manifest: dict[str, Any]) -> str:
    return hashlib.sha256(dumps(manifest)).hexdigest()


def _tag_items(root: Path) -> list[UploadItem]:
    """BagIt tag files in upload order: bagit.txt, bag-info.txt, manifest-sha256.txt, tag manifest, manifest.json."""
    from .digests import sha256_file

    names = [bagit.BAGIT_TXT, bagit.BAG_INFO_TXT, bagit.MANIFEST_TXT, bagit.TAGMANIFEST_TXT, MANIFEST_JSON]
    return [UploadItem(n, (root / n).stat().st_size, sha256_file(str(root / n))) for n in names]


def _publish_local(staging: Path, target: Path) -> None:
    for dirpath, _dirs, names in os.walk(staging):
        for item in names:
            fd = os.open(Path(dirpath) / item, os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
    if target.exists():
        target.rmdir()  # an empty directory, checked before the build
    os.rename(staging, target)
    fd = os.open(target.parent, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class _TextShards:
    """Document rows routed to ``data/text/<name>-NNNNN.{jsonl.gz,parquet}`` by shard index."""

    def __init__(self, root: Path, name: str, formats: tuple[str, ...]) -> None:
        self.root = root
        self.name = name
        self.kinds = [k for k in (JsonlWriter, ParquetWriter) if k.suffix.lstrip(".").split(".")[0] in formats]
        self.index = -1
        self.writers: list[Any] = []
        self.files: list[DataFile] = []
        self.rows = 0
        (root / TEXT_DIR).mkdir(parents=True, exist_ok=True)

    def write(self, row: dict[str, Any], index: int) -> None:
        if index != self.index:
            self.close()
            self.index = index
            self.writers = [k(self.root, f"{TEXT_DIR}/{self.name}-{index:05d}{k.suffix}") for k in self.kinds]
        for writer in self.writers:
            writer.write(row)
        self.rows += 1

    def close(self) -> None:
        self.files.extend(writer.close() for writer in self.writers)
        self.writers = []


def build_package(workspace: Workspace, catalog: Catalog, spec: ExportSpec, created: str,
                  counts: PlanCounts, root: Path, options: ExportOptions,
                  progress: Reporter) -> tuple[dict[str, Any], list[DataFile]]:
    """Write data files, manifest.json and the BagIt tag files of a planned export under ``root``."""
    formats = options.formats
    sources = SourceFiles(check=_source_check(workspace, catalog))
    info_fields = _warcinfo_fields(spec, created, catalog.cutoff_iso)
    seed = f"{spec.name}/{created}/{spec.selection_json()}"

    def header(filename: str, index: int) -> bytes:
        return warcinfo_record(filename, created, [*info_fields, ("archivekeeper-shard", str(index))], seed=seed)

    log = _CatalogPlacements(catalog, progress)
    shards = ShardWriter(root, WARC_DIR, spec.name, options.shard_size, header, sources, log) \
        if "warc" in formats else None
    text = _TextShards(root, spec.name, formats) if {"jsonl", "parquet"} & set(formats) else None
    pipeline = DocumentPipeline(options.jobs) if text is not None else None
    routes: deque[int] = deque()
    virtual_index, virtual_size = 0, 0
    resolved: dict[str, Path] = {}
    progress("total", counts.exported_bytes)
    try:
        if text is None and shards is not None:  # WARC only: no per-record work beyond the copy
            shards.add_rows(iter_placements(catalog), _path_resolver(workspace, catalog))
        else:
            for item in iter_exported(catalog):
                record = item.record
                path = resolved.get(record.warc_file)
                if path is None:
                    path = resolved[record.warc_file] = workspace.resolve(record.warc_file)
                shard_path: str | None = None
                offset: int | None = None
                if shards is not None:
                    shard_path, offset = shards.add(item.seq, path, record.offset, record.length)
                    index = shards.index
                else:
                    if virtual_size and virtual_size + record.length > options.shard_size:
                        virtual_index, virtual_size = virtual_index + 1, 0
                    virtual_size += record.length
                    index = virtual_index
                if text is not None and pipeline is not None and is_document(record.mime, record.status):
                    routes.append(index)
                    meta = {"id": record.record_key, "url": record.url, "capture_time": record.capture_time,
                            "digest": record.digest, "mime": record.mime, "status": record.status,
                            "warc_record_id": record.record_id, "warc_shard": shard_path, "warc_offset": offset,
                            "source": record.source}
                    for row in pipeline.submit(str(path), record.offset, meta):
                        text.write(row, routes.popleft())
                progress("advance", record.length)
            if text is not None and pipeline is not None:
                for row in pipeline.finish():
                    text.write(row, routes.popleft())
        files = shards.close() if shards is not None else []
        log.flush()
    except BaseException:
        if shards is not None:
            shards.abort()
        raise
    finally:
        sources.close()
        if pipeline is not None:
            pipeline.close()
    if text is not None:
        text.close()
        files += text.files
    files.append(_write_aliases(catalog, root))
    counts_json = {**counts.as_json(), "exported_bytes": counts.exported_bytes,
                   "documents": text.rows if text is not None else 0}
    text_info = None
    if text is not None:
        from importlib.metadata import version

        text_info = {"extractor": extractor_name(),
                     "language_detector": f"resiliparse {version('resiliparse')} detect_fast",
                     "fields": list(ROW_FIELDS)}
    manifest = build_manifest(name=spec.name, created=created, cutoff=catalog.cutoff_iso,
                              selection=spec.selection.describe(), formats=formats, counts=counts_json,
                              sources=counts.sources, text=text_info, files=files)
    data = dumps(manifest)
    (root / MANIFEST_JSON).write_bytes(data)
    manifest_entry = bagit.Entry(MANIFEST_JSON, len(data), hashlib.sha256(data).hexdigest())
    payload = [bagit.Entry(f.path, f.size, f.sha256) for f in files]
    info = {"Bag-Software-Agent": f"archivekeeper {__version__}", "Bagging-Date": created[:10],
            "External-Identifier": spec.name,
            "External-Description": f"Web captures made before {catalog.cutoff_iso}, payload digests verified; "
                                    f"see {MANIFEST_JSON}"}
    bagit.write_bag(root, payload, info, [manifest_entry])
    return manifest, files


class _CatalogPlacements:
    """Notes runs of placed records (in batches) in the catalog's temp tables; reports bytes done."""

    def __init__(self, catalog: Catalog, progress: Reporter) -> None:
        self.catalog = catalog
        self.progress = progress
        self.runs: list[tuple[int, str, int, int]] = []

    def run(self, first_seq: int, relpath: str, shard_offset: int, file_offset: int) -> None:
        self.runs.append((first_seq, relpath, shard_offset, file_offset))
        if len(self.runs) >= PAGE_ROWS:
            self.flush()

    def advance(self, amount: int) -> None:
        self.progress("advance", amount)

    def flush(self) -> None:
        record_runs(self.catalog, self.runs)
        self.runs = []


def _path_resolver(workspace: Workspace, catalog: Catalog) -> Callable[[int], Path]:
    resolved: dict[int, Path] = {}

    def path_of(file_id: int) -> Path:
        path = resolved.get(file_id)
        if path is None:
            path = resolved[file_id] = workspace.resolve(file_path(catalog, file_id))
        return path

    return path_of


def _write_aliases(catalog: Catalog, root: Path) -> DataFile:
    writer = JsonlWriter(root, ALIASES_FILE)
    for alias in iter_aliases(catalog):
        writer.write(alias)
    return writer.close()


def _warcinfo_fields(spec: ExportSpec, created: str, cutoff: str) -> list[tuple[str, str]]:
    return [
        ("software", f"archivekeeper/{__version__}"),
        ("format", "WARC File Format 1.1"),
        ("conformsTo", "http://iipc.github.io/warc-specifications/specifications/warc-format/warc-1.1/"),
        ("isPartOf", spec.name),
        ("description", f"Captures made before {cutoff} whose payload digest was verified, copied byte-for-byte "
                        "from an archivekeeper store; one record per payload digest"),
        ("archivekeeper-export", spec.name),
        ("archivekeeper-created", created),
        ("archivekeeper-cutoff", cutoff),
        ("archivekeeper-selection", spec.selection_json()),
    ]


def _source_check(workspace: Workspace, catalog: Catalog) -> Callable[[Path], None]:
    def check(path: Path) -> None:
        known = catalog.file_by_path(workspace.relative(path))
        try:
            stat = path.stat()
        except OSError as exc:
            raise ExportError(f"store file {path} is missing ({exc.strerror}); re-import or restore it") from None
        if known is not None and (known["size"] != stat.st_size or
                                  (known["mtime"] is not None and known["mtime"] != stat.st_mtime)):
            raise ExportError(f"store file {path} changed since it was catalogued: re-import it first")

    return check
