"""Documents for training pipelines: main text, title and language of exported HTML captures.

The main text comes from trafilatura (measured against resiliparse on the sample archive: it keeps
lists and tables inside the article that resiliparse's main-content heuristics drop, F1 0.96 vs
0.89, at about a twentieth of the speed; see the README). The title is the page's ``<title>``, taken
from the one parse of the page, the language comes from resiliparse's fast detector run on the start
of the extracted text.

Extraction runs in worker processes (``jobs`` > 1, one per core by default) fed in batches through
a bounded window, so results come back in export order and memory stays flat; the workers read
the records themselves, the main process only hands out batches and writes rows. Rows are written as
gzipped JSON lines and/or Parquet with the same fields: ``id`` and ``text`` (what datatrove's
readers and HF ``datasets`` expect) plus metadata columns, see :data:`ROW_FIELDS`.
"""

from __future__ import annotations

import codecs
import functools
import html
import json
import multiprocessing
import multiprocessing.context
import os
import re
import threading
import zlib
from collections import deque
from collections.abc import Iterator
from concurrent.futures import Future, ProcessPoolExecutor
from pathlib import Path
from typing import Any

from .errors import ConfigError, ExportError
from .shards import DataFile, HashingFile

HTML_TYPES = frozenset({"text/html", "application/xhtml+xml"})
PLAIN_TYPES = frozenset({"text/plain"})
MAX_DOCUMENT_BYTES = 16 << 20  # larger payloads get no text (and a row saying so)
READ_CHUNK = 1 << 16
_TITLE_OPEN = re.compile(rb"<title\b[^<>]{0,4096}>", re.I)  # a try ends at the next "<": linear
_TITLE_CLOSE = re.compile(rb"</title\s*>", re.I)
_CHARSET = re.compile(rb"<meta\b[^>]*?charset\s*=\s*[\"']?([A-Za-z0-9_.:-]+)", re.I)
MIN_LANGUAGE_CHARS = 20
LANGUAGE_SAMPLE_CHARS = 2000  # detect_fast is linear in its input; the start of the text is enough to tell
BATCH = 32  # documents per task: about 50 ms of work, so hand-offs cost under 2 % of the main process
ROW_GROUP_ROWS = 2000
ROW_GROUP_TEXT = 32 << 20
JSONL_GZIP_LEVEL = 3  # a ninth of level 6's time for 15 % more bytes: text rows are made in bulk
# Row fields, in order. ``id`` is the capture's catalog record key; ``warc_shard``/``warc_offset``
# locate the record in this export's WARC shards (null when the export has no warc format).
ROW_FIELDS: tuple[str, ...] = (
    "id", "text", "title", "language", "url", "capture_time", "digest", "mime", "status",
    "warc_record_id", "warc_shard", "warc_offset", "source",
)


def extractor_name() -> str:
    from importlib.metadata import version

    return f"trafilatura {version('trafilatura')}"


def is_document(mime: str | None, status: int | None) -> bool:
    """Exported records that become documents: HTML or plain text answered 200 (or without HTTP)."""
    return mime in HTML_TYPES | PLAIN_TYPES and status in (200, None)


@functools.cache
def extractor_options() -> Any:
    """trafilatura's settings for every page: plain text with comments and tables, no deduplication.

    Built once: constructing them is about 6 % of an extraction. The bench's baseline loop uses them too."""
    from trafilatura.settings import Extractor

    return Extractor(output_format="txt", comments=True, tables=True, dedup=False)


def extract_html(data: bytes) -> tuple[str, str | None]:
    """Main text and title of an HTML page ("" and None when nothing is found).

    trafilatura is handed the bytes: handed a parsed tree, it copies it before extracting (8 % of the
    time). The title is read from the bytes instead (:func:`html_title`)."""
    import trafilatura

    text = trafilatura.extract(data, options=extractor_options())
    return text or "", html_title(data)


def html_title(data: bytes) -> str | None:
    """The text of the page's first ``<title>`` (what ``.//title`` finds in the parsed tree: raw text, entities
    decoded, white space collapsed), decoded as UTF-8, else as the charset the page declares, else cp1252."""
    opening = _TITLE_OPEN.search(data)
    closing = _TITLE_CLOSE.search(data, opening.end()) if opening else None
    if opening is None or closing is None:  # one linear scan each, whatever the page holds
        return None
    raw = data[opening.end():closing.start()]
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        text = raw.decode(_declared_charset(data[:opening.start()]) or "cp1252", "replace")
    return " ".join(html.unescape(text).split()) or None


def _declared_charset(head: bytes) -> str | None:
    """The charset a ``<meta>`` in ``head`` declares, if Python knows it."""
    match = _CHARSET.search(head)
    if match is None:
        return None
    name = match.group(1).decode("ascii")
    try:
        return codecs.lookup(name).name
    except LookupError:
        return None


def decode_plain(data: bytes) -> str:
    from resiliparse.parse.encoding import bytes_to_str, detect_encoding

    return str(bytes_to_str(data, detect_encoding(data) or "utf-8"))


def detect_language(text: str) -> str | None:
    """ISO-639-1 code of the text's language, or None when too short or unclear."""
    if len(text) < MIN_LANGUAGE_CHARS:
        return None
    from resiliparse.parse.lang import detect_fast

    lang, _rank = detect_fast(text[:LANGUAGE_SAMPLE_CHARS])
    return None if lang == "unknown" else str(lang)


def read_document(path: str, offset: int) -> bytes:
    """The decoded payload of the record at ``offset`` (at most :data:`MAX_DOCUMENT_BYTES`, else b"").

    Undoes transfer and content encodings; a record that claims one it does not have (real crawls
    keep ``Transfer-Encoding: chunked`` on de-chunked bodies) is read with less decoding.
    """
    from fastwarc.warc import ArchiveIterator

    for mode in ("all", "content", "none"):
        try:
            with open(path, "rb") as handle:
                handle.seek(offset)
                for record in ArchiveIterator(handle, parse_http=True, auto_decode=mode, quirks_mode=True):
                    return _read_bounded(record.reader)
        except (OSError, ValueError):
            continue
        return b""
    return b""


def _read_bounded(reader: Any) -> bytes:
    """The payload in ``READ_CHUNK`` pieces, b"" past :data:`MAX_DOCUMENT_BYTES`. One ``read`` sized for the
    limit allocates 16 MiB per record, and that churn slows the extraction that follows by 3 to 5 %."""
    parts: list[bytes] = []
    size = 0
    while chunk := reader.read(READ_CHUNK):
        size += len(chunk)
        if size > MAX_DOCUMENT_BYTES:
            return b""
        parts.append(bytes(chunk))
    return b"".join(parts)


def document_row(data: bytes, meta: dict[str, Any]) -> dict[str, Any]:
    """The document row of one record, from its decoded payload (``data``) and catalog fields (``meta``)."""
    text, title = "", None
    try:
        if data and meta["mime"] in HTML_TYPES:
            text, title = extract_html(data)
        elif data:
            text = decode_plain(data)
    except ImportError:  # a broken install is not an odd page: fail the export instead of emptying it
        raise
    except Exception:  # an extractor failing on one odd page leaves that document without text
        text, title = "", None
    row = {"id": meta["id"], "text": text, "title": title, "language": detect_language(text)}
    for key in ROW_FIELDS[4:]:
        row[key] = meta.get(key)
    return row


def _rows(batch: list[tuple[str, int, dict[str, Any]]]) -> list[dict[str, Any]]:
    """The rows of a batch. Its payloads are all read before the first is extracted: reads interleaved with
    extractions slow the extractor by 5 to 10 % (measured on the bench's pages), a batch read first does not."""
    try:
        payloads = [read_document(path, offset) for path, offset, _ in batch]
        return [document_row(data, meta) for data, (_, _, meta) in zip(payloads, batch, strict=True)]
    except Exception as exc:  # exceptions must cross the process boundary as plain, picklable ones
        raise ExportError(f"text extraction failed: {exc}") from None


def _load_extractor() -> None:
    """Worker start-up: import the extractor and the language detector before the first batch."""
    import trafilatura  # noqa: F401
    from resiliparse.parse import lang  # noqa: F401


def _threads() -> int:
    """Threads of this process: the kernel's count where it tells (pyarrow's are invisible to Python)."""
    try:
        return len(os.listdir("/proc/self/task"))
    except OSError:
        return threading.active_count()


def _worker_context() -> multiprocessing.context.BaseContext:
    """fork while this process has a single thread: workers start in milliseconds, import nothing twice and
    never re-run the main module (from a console script, spawned workers would each import the whole CLI).
    Forking a threaded process is unsafe (the progress bar's thread, pyarrow's): forkserver then."""
    if _threads() == 1 and "fork" in multiprocessing.get_all_start_methods():
        return multiprocessing.get_context("fork")
    ctx = multiprocessing.get_context("forkserver")
    ctx.set_forkserver_preload(["archivekeeper.extract", "trafilatura", "resiliparse.parse.lang"])
    return ctx


class DocumentPipeline:
    """Ordered, bounded extraction: ``submit`` jobs, get rows back in submission order.

    With ``jobs`` = 1 rows are made inline, a batch at a time; otherwise ``jobs`` worker processes (see
    :func:`_worker_context`) take batches, at most ``2 × jobs`` batches in flight. The main process
    only reads the catalog, hands out batches and writes rows.
    """

    def __init__(self, jobs: int) -> None:
        self.jobs = max(1, jobs)
        self._batch: list[tuple[str, int, dict[str, Any]]] = []
        self._pending: deque[Future[list[dict[str, Any]]]] = deque()
        self._pool: ProcessPoolExecutor | None = None
        if self.jobs > 1:
            self._pool = ProcessPoolExecutor(max_workers=self.jobs, mp_context=_worker_context(),
                                             initializer=_load_extractor)
            self._pool.submit(_load_extractor)  # start the workers now, while this process is as checked

    def submit(self, path: str, offset: int, meta: dict[str, Any]) -> Iterator[dict[str, Any]]:
        """Queue one document; yields the rows that are ready (in order)."""
        self._batch.append((path, offset, meta))
        if len(self._batch) >= BATCH:
            yield from self._send()

    def _send(self) -> Iterator[dict[str, Any]]:
        if self._pool is None:
            batch, self._batch = self._batch, []
            yield from _rows(batch)
            return
        if self._batch:
            self._pending.append(self._pool.submit(_rows, self._batch))
            self._batch = []
        while self._pending and (len(self._pending) > 2 * self.jobs or self._pending[0].done()):
            yield from self._pending.popleft().result()

    def finish(self) -> Iterator[dict[str, Any]]:
        """The rows still in flight, in order."""
        yield from self._send()
        while self._pending:
            yield from self._pending.popleft().result()

    def close(self) -> None:
        if self._pool is not None:
            for future in self._pending:
                future.cancel()
            self._pool.shutdown(wait=True, cancel_futures=True)
            self._pool = None


class JsonlWriter:
    """Rows as gzipped JSON lines (one gzip stream, mtime 0, no name)."""

    suffix = ".jsonl.gz"

    def __init__(self, bag_root: Path, relpath: str) -> None:
        self.relpath = relpath
        self._out = HashingFile(bag_root / relpath)
        self._deflater = zlib.compressobj(JSONL_GZIP_LEVEL, zlib.DEFLATED, 31)
        self.rows = 0

    def write(self, row: dict[str, Any]) -> None:
        line = json.dumps(row, ensure_ascii=False, separators=(",", ":")) + "\n"
        self._out.write(self._deflater.compress(line.encode("utf-8")))
        self.rows += 1

    def close(self) -> DataFile:
        self._out.write(self._deflater.flush())
        size, digest = self._out.close()
        return DataFile(self.relpath, size, digest, rows=self.rows)


def parquet_schema() -> Any:
    import pyarrow as pa

    return pa.schema([
        ("id", pa.string()), ("text", pa.string()), ("title", pa.string()), ("language", pa.string()),
        ("url", pa.string()), ("capture_time", pa.string()), ("digest", pa.string()), ("mime", pa.string()),
        ("status", pa.int32()), ("warc_record_id", pa.string()), ("warc_shard", pa.string()),
        ("warc_offset", pa.int64()), ("source", pa.string()),
    ])


def require_pyarrow() -> None:
    """Fail early when pyarrow is missing, without importing it yet (its threads would keep the extraction
    workers from being forked: see :func:`_worker_context`)."""
    import importlib.util

    if importlib.util.find_spec("pyarrow") is None:  # a submodule's spec would import the package
        raise ConfigError("the parquet format needs pyarrow: pip install 'archivekeeper[parquet]'")


class ParquetWriter:
    """Rows as a Parquet file (zstd), written a row group at a time."""

    suffix = ".parquet"

    def __init__(self, bag_root: Path, relpath: str) -> None:
        import pyarrow.parquet as pq

        self.relpath = relpath
        self.path = bag_root / relpath
        self._schema = parquet_schema()
        self._writer = pq.ParquetWriter(str(self.path), self._schema, compression="zstd")
        self._buffer: list[dict[str, Any]] = []
        self._text = 0
        self.rows = 0

    def write(self, row: dict[str, Any]) -> None:
        self._buffer.append(row)
        self._text += len(row["text"])
        self.rows += 1
        if len(self._buffer) >= ROW_GROUP_ROWS or self._text >= ROW_GROUP_TEXT:
            self._flush()

    def _flush(self) -> None:
        import pyarrow as pa

        if self._buffer:
            self._writer.write_table(pa.Table.from_pylist(self._buffer, schema=self._schema))
            self._buffer = []
            self._text = 0

    def close(self) -> DataFile:
        from .digests import sha256_file

        self._flush()
        self._writer.close()
        return DataFile(self.relpath, self.path.stat().st_size, sha256_file(str(self.path)), rows=self.rows)
