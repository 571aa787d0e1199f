"""WARC shards: exported records copied byte-for-byte from the store into ``.warc.gz`` files.

Each shard starts with a ``warcinfo`` record describing the export, then holds records exactly as
stored — a record of a ``.warc.gz`` store file is its own gzip member already and is copied
verbatim (original WARC-Record-ID, headers, digests and compression intact). A record of a plain
``.warc`` file is gzipped into a member of its own (mtime 0, no file name), so every shard stays a
per-record-gzip ``.warc.gz`` whose uncompressed bytes are the stored bytes.

Bytes are read with ``preadv`` straight into fixed blocks from source files kept open; records that
lie back to back in a gzipped store file are read together. One thread hashes (SHA-256) and another
writes each full block meanwhile: one pass, flat memory, no shard ever in memory.
A new shard starts before a record when the current one holds records and the record's stored
length would take it past ``shard_size``.
"""

from __future__ import annotations

import hashlib
import os
import queue
import threading
import uuid
import zlib
from collections import OrderedDict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from .errors import ExportError, StoreError
from .warcreader import sniff

COPY_CHUNK = 1 << 20
WRITE_BLOCK = 1 << 20  # read, hashed and written while still in the CPU cache
BLOCKS = 4
RUN_LIMIT = 8 << 20
OPEN_FILES = 64
GZIP_LEVEL = 6
GZIP_MAGIC = b"\x1f\x8b"
EXPORT_NAMESPACE = uuid.uuid5(uuid.NAMESPACE_URL, "https://archivekeeper.invalid/export")  # of warcinfo IDs


@dataclass(frozen=True, slots=True)
class DataFile:
    """A finished data file of an export: path relative to the bag root, size, SHA-256, count."""

    path: str
    size: int
    sha256: str
    records: int | None = None
    rows: int | None = None


class HashingFile:
    """A write-only file that hashes (SHA-256) and counts every byte; ``close`` fsyncs.

    Bytes are gathered in fixed blocks. Each full block is hashed by one thread while another writes
    it (hashing, writing and ``preadv`` all release the GIL), so reading the next records, hashing
    and writing overlap: one pass over the bytes. At most four blocks circulate: memory stays flat
    whatever the file size.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        try:
            self._fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        except OSError as exc:
            raise StoreError(f"cannot write {path}: {exc.strerror or exc}", path=path) from None
        self._sha256 = hashlib.sha256()
        self.size = 0
        self._free: queue.Queue[bytearray] = queue.Queue()
        self._blocks = 1  # allocated on demand, up to BLOCKS: a small file needs one
        self._full: queue.Queue[tuple[bytearray, int] | None] = queue.Queue()
        self._writes: queue.Queue[tuple[memoryview, threading.Event] | None] = queue.Queue()
        self._block = bytearray(WRITE_BLOCK)
        self._fill = 0
        self._error: OSError | None = None
        # started with the first full block: a file of one block is hashed and written at close
        self._hasher = threading.Thread(target=self._hash_blocks, name="shard-hasher", daemon=True)
        self._writer = threading.Thread(target=self._write_blocks, name="shard-writer", daemon=True)

    def _hash_blocks(self) -> None:
        """Hash each full block while the writer thread writes it; free the block when both are done."""
        while (item := self._full.get()) is not None:
            block, count = item
            written = threading.Event()
            with memoryview(block) as whole, whole[:count] as view:
                self._writes.put((view, written))
                self._sha256.update(view)
                written.wait()
            self._free.put(block)
        self._writes.put(None)

    def _write_blocks(self) -> None:
        while (item := self._writes.get()) is not None:
            view, written = item
            try:
                self._write_all(view)
            finally:
                written.set()

    def _write_all(self, view: memoryview) -> None:
        """Write the bytes unless an earlier write failed; note the first error."""
        try:
            if self._error is None:
                done = 0
                while done < len(view):
                    done += os.write(self._fd, view[done:])
        except OSError as exc:
            self._error = exc

    def _raise_error(self) -> None:
        if self._error is not None:
            raise StoreError(f"cannot write {self.path}: {self._error.strerror or self._error}",
                             path=self.path) from None

    def _hand_off(self, last: bool = False) -> None:
        self._raise_error()
        if last and not self._hasher.is_alive():
            with memoryview(self._block) as whole, whole[:self._fill] as view:
                self._sha256.update(view)
                self._write_all(view)
            return
        if not self._hasher.is_alive():
            self._hasher.start()
            self._writer.start()
        self._full.put((self._block, self._fill))
        if last:
            return
        if self._free.empty() and self._blocks < BLOCKS:
            self._blocks += 1
            self._block = bytearray(WRITE_BLOCK)
        else:
            self._block = self._free.get()
        self._fill = 0

    def write(self, data: bytes | bytearray | memoryview) -> int:
        with memoryview(data) as view:
            total, done = len(view), 0
            while done < total:
                count = min(WRITE_BLOCK - self._fill, total - done)
                self._block[self._fill:self._fill + count] = view[done:done + count]
                self._fill += count
                done += count
                if self._fill == WRITE_BLOCK:
                    self._hand_off()
        self.size += total
        return total

    def copy_from(self, fd: int, offset: int, length: int) -> tuple[int, bytes]:
        """Append ``length`` bytes of ``fd`` from ``offset``, read straight into the block.

        Returns the number of bytes read and the first two of them."""
        if WRITE_BLOCK - self._fill < 2:
            self._hand_off()
        start = self._fill
        position, remaining, head = offset, length, b""
        while remaining > 0:
            count = min(WRITE_BLOCK - self._fill, remaining)
            with memoryview(self._block) as whole, whole[self._fill:self._fill + count] as view:
                got = os.preadv(fd, [view], position)
            if got <= 0:
                break
            if position == offset:
                head = bytes(self._block[start:start + min(got, 2)])
            self._fill += got
            position += got
            remaining -= got
            self.size += got
            if self._fill == WRITE_BLOCK:
                self._hand_off()
        return length - remaining, head

    def close(self) -> tuple[int, str]:
        """Flush, fsync and close; returns ``(size, sha256 hex)``."""
        if self._fd >= 0:
            try:
                if self._fill:
                    self._hand_off(last=True)
                self._stop()
                self._raise_error()
                os.fsync(self._fd)
            finally:
                self._stop()
                os.close(self._fd)
                self._fd = -1
        return self.size, self._sha256.hexdigest()

    def _stop(self) -> None:
        """Let both threads finish the blocks handed off, then end (once)."""
        if self._hasher.is_alive():
            self._full.put(None)
            self._hasher.join()
            self._writer.join()

    def abort(self) -> None:
        if self._fd >= 0:
            self._stop()
            os.close(self._fd)
            self._fd = -1


def gzip_member(chunks: Sequence[bytes]) -> bytes:
    """One gzip member (mtime 0, no name) of the concatenated chunks."""
    deflater = zlib.compressobj(GZIP_LEVEL, zlib.DEFLATED, 31)
    return b"".join(deflater.compress(c) for c in chunks) + deflater.flush()


def warcinfo_record(filename: str, date: str, fields: Sequence[tuple[str, str]], *, seed: str) -> bytes:
    """A gzipped ``warcinfo`` record; its ID is derived from ``seed`` and ``filename`` (reproducible)."""
    block = "".join(f"{key}: {' '.join(value.split())}\r\n" for key, value in fields).encode("utf-8")
    record_id = uuid.uuid5(EXPORT_NAMESPACE, f"{seed}/{filename}")
    head = (
        "WARC/1.1\r\n"
        "WARC-Type: warcinfo\r\n"
        f"WARC-Date: {date}\r\n"
        f"WARC-Filename: {filename}\r\n"
        f"WARC-Record-ID: <urn:uuid:{record_id}>\r\n"
        "Content-Type: application/warc-fields\r\n"
        f"WARC-Block-Digest: sha256:{hashlib.sha256(block).hexdigest()}\r\n"
        f"Content-Length: {len(block)}\r\n"
        "\r\n"
    ).encode("ascii")
    return gzip_member([head, block, b"\r\n\r\n"])


class SourceFiles:
    """Store files kept open (a small LRU of descriptors) and whether each is gzipped."""

    def __init__(self, check: Callable[[Path], None] | None = None) -> None:
        self._open: OrderedDict[Path, tuple[int, bool]] = OrderedDict()
        self._kinds: dict[Path, bool] = {}
        self._check = check

    def get(self, path: Path) -> tuple[int, bool]:
        entry = self._open.get(path)
        if entry is not None:
            self._open.move_to_end(path)
            return entry
        gzipped = self._kinds.get(path)
        if gzipped is None:
            if self._check is not None:
                self._check(path)
            fmt = sniff(path)
            if fmt.kind != "warc":
                raise ExportError(f"{path}: ARC records cannot be exported (they carry no verifiable digest)")
            gzipped = self._kinds[path] = fmt.gzipped
        try:
            fd = os.open(path, os.O_RDONLY)
        except OSError as exc:
            raise ExportError(f"cannot read store file {path}: {exc.strerror or exc}") from None
        self._open[path] = (fd, gzipped)
        if len(self._open) > OPEN_FILES:
            _, (old_fd, _) = self._open.popitem(last=False)
            os.close(old_fd)
        return fd, gzipped

    def close(self) -> None:
        while self._open:
            _, (fd, _) = self._open.popitem()
            os.close(fd)


def copy_record(out: HashingFile, fd: int, gzipped: bool, offset: int, length: int, path: Path) -> None:
    """Copy one stored record into ``out``: verbatim if gzipped, else as a gzip member of its own."""
    if gzipped:
        copied, head = out.copy_from(fd, offset, length)
        if head != GZIP_MAGIC[:len(head)] or copied < 2:
            raise ExportError(f"{path}: no gzip member at offset {offset} (changed since import? re-import it)")
        if copied != length:
            raise ExportError(f"{path}: file ends inside the record at offset {offset} (changed since import? "
                              "re-import it)")
        return
    deflater = zlib.compressobj(GZIP_LEVEL, zlib.DEFLATED, 31)
    position, remaining = offset, length
    while remaining > 0:
        chunk = os.pread(fd, min(COPY_CHUNK, remaining), position)
        if not chunk:
            raise ExportError(f"{path}: file ends inside the record at offset {offset} (changed since import? "
                              "re-import it)")
        position += len(chunk)
        remaining -= len(chunk)
        out.write(deflater.compress(chunk))
    out.write(deflater.flush())


class Placements(Protocol):
    """Where a :class:`ShardWriter` put records, told in runs (see :meth:`ShardWriter.add`), and bytes done."""

    def run(self, first_seq: int, relpath: str, shard_offset: int, file_offset: int) -> None: ...

    def advance(self, amount: int) -> None: ...


class ShardWriter:
    """Writes records into ``<dir>/<name>-NNNNN.warc.gz`` shards, each headed by a warcinfo record.

    ``header(filename, index)`` returns the gzipped warcinfo record of a shard. Records that lie back
    to back in a gzipped store file are read together, in runs of up to :data:`RUN_LIMIT` bytes.
    Where records went is told to ``log`` in runs: a record whose place in the shard is as far after
    the previous run's start as its place in the store file adds nothing (so a whole store file copied
    into one shard is one run); a new shard, another file, a gap or a record gzipped on the way starts
    a new run.
    """

    def __init__(self, bag_root: Path, subdir: str, name: str, shard_size: int,
                 header: Callable[[str, int], bytes], sources: SourceFiles, log: Placements) -> None:
        self.bag_root = bag_root
        self.subdir = subdir
        self.name = name
        self.shard_size = shard_size
        self.header = header
        self.sources = sources
        self.log = log
        self.files: list[DataFile] = []
        self.index = -1
        self._out: HashingFile | None = None
        self._relpath = ""
        self._records = 0
        self._size = 0  # of the shard, counting the run not read yet
        self._run: list[Any] = []  # [fd, path, start offset, length] of contiguous gzipped records
        self._placed: tuple[Path | None, int] = (None, 0)  # store file, shard minus file offset of the run
        (bag_root / subdir).mkdir(parents=True, exist_ok=True)

    def add(self, seq: int, path: Path, offset: int, length: int) -> tuple[str, int]:
        """Add record ``seq``; returns the shard's path relative to ``bag_root`` and the record's offset in it."""
        fd, gzipped = self.sources.get(path)
        start = self._add(seq, fd, gzipped, path, offset, length)
        return self._relpath, start

    def add_rows(self, rows: Iterable[tuple[int, int, int, int]], path_of: Callable[[int], Path]) -> None:
        """Add records given as ``(seq, file id, offset, length)`` in export order (as :meth:`add` would)."""
        file_id, fd, gzipped, path, pending = -1, -1, False, Path(), 0
        limit = min(self.shard_size, RUN_LIMIT)
        for seq, row_file, offset, length in rows:
            if row_file != file_id:
                file_id, path = row_file, path_of(row_file)
                fd, gzipped = self.sources.get(path)
            run = self._run
            if (run and run[0] == fd and run[2] + run[3] == offset and run[3] + length <= limit
                    and self._size + length <= self.shard_size):
                # the next record of a gzipped run in this shard, same place relative to the run: _add's work
                run[3] += length
                self._size += length
                self._records += 1
            else:
                self._add(seq, fd, gzipped, path, offset, length)
            pending += length
            if pending >= RUN_LIMIT:
                self.log.advance(pending)
                pending = 0
        self.log.advance(pending)

    def _add(self, seq: int, fd: int, gzipped: bool, path: Path, offset: int, length: int) -> int:
        """Append one record (in a new shard if it would overflow this one); returns its offset in the shard."""
        if self._out is None or (self._records and self._size + length > self.shard_size):
            self._roll()
        assert self._out is not None
        start = self._size
        if self._placed != (path, start - offset):
            self._placed = (path, start - offset)
            self.log.run(seq, self._relpath, start, offset)
        self._records += 1
        run = self._run
        if gzipped:
            if run and run[0] == fd and run[2] + run[3] == offset and run[3] + length <= RUN_LIMIT:
                run[3] += length
            else:
                self._flush_run()
                self._run = [fd, path, offset, length]
            self._size += length
        else:
            self._flush_run()
            copy_record(self._out, fd, False, offset, length, path)
            self._size = self._out.size
            self._placed = (None, 0)  # the next record starts a run
        return start

    def _flush_run(self) -> None:
        if self._run:
            assert self._out is not None
            fd, path, offset, length = self._run
            self._run = []
            copy_record(self._out, fd, True, offset, length, path)

    def _roll(self) -> None:
        self._finish()
        self.index += 1
        filename = f"{self.name}-{self.index:05d}.warc.gz"
        self._relpath = f"{self.subdir}/{filename}"
        self._out = HashingFile(self.bag_root / self._relpath)
        self._out.write(self.header(filename, self.index))
        self._size = self._out.size
        self._records = 0
        self._placed = (None, 0)

    def _finish(self) -> None:
        if self._out is not None:
            self._flush_run()
            size, digest = self._out.close()
            self.files.append(DataFile(self._relpath, size, digest, records=self._records))
            self._out = None

    def close(self) -> list[DataFile]:
        self._finish()
        return self.files

    def abort(self) -> None:
        self._run = []
        if self._out is not None:
            self._out.abort()
            self._out = None
