"""The WARC store: rotation, one gzip member per record, warcinfo heads, crash recovery, confinement."""

from __future__ import annotations

import gzip
import hashlib
import io
import zlib
from pathlib import Path

import pytest
from sync_support import warcinfo_problems
from warcio.archiveiterator import ArchiveIterator

from archivekeeper.catalog import Catalog
from archivekeeper.digests import sha1_base32
from archivekeeper.errors import WorkspaceError
from archivekeeper.models import VERIFIED, CatalogRecord, Selection, make_record_key
from archivekeeper.warcreader import read_payload
from archivekeeper.warcrecords import Serialized, serialize_response, serialize_verbatim
from archivekeeper.warcstore import OPEN_SUFFIX, WarcStore, Written, record_id_for
from archivekeeper.workspace import Workspace


@pytest.fixture
def ws(tmp_path: Path) -> tuple[Workspace, Catalog]:
    workspace = Workspace.open(tmp_path / "ws")
    return workspace, Catalog.open(workspace.catalog_path, workspace.settings.cutoff)


def write(store: WarcStore, n: int, size: int = 600) -> tuple[Written, bytes]:
    body = (f"<p>capture {n}</p>".encode() * size)[:size] + bytes([n % 256]) * 7
    url = f"http://example.org/{n}"
    rid = record_id_for("test", url, "2021-01-01T00:00:00Z", sha1_base32(body))
    written = store.write_response(uri=url, capture_time="2021-01-01T00:00:00Z", record_id=rid, status=200,
                                   reason="OK", headers=[("Content-Type", "text/html")], body=io.BytesIO(body),
                                   body_size=len(body), payload_sha1=sha1_base32(body), metadata={"n": n})
    return written, body


def catalogue(catalog: Catalog, store: WarcStore, items: list[tuple[Written, bytes]]) -> None:
    """What sync does after writing: fsync, then rows + committed size in one transaction."""
    store.flush()
    rows = []
    for written, body in items:
        url = f"http://example.org/{body[-1]}"
        key = make_record_key(written.record_id, url, "2021-01-01T00:00:00Z", "response", sha1_base32(body))
        record = CatalogRecord(key, url, "org,example)/", "20210101000000", "2021-01-01T00:00:00Z", 2021, False, 200,
                               "text/html", sha1_base32(body), sha1_base32(body), "response", written.record_id,
                               written.path, written.offset, written.length, "test", VERIFIED)
        rows.append(catalog.row_for(record, written.file_id))
    with catalog.transaction():
        catalog.insert_rows(rows)
        store.mark_committed()


def members(path: Path) -> list[bytes]:
    """Split a file into its gzip members, decompressed."""
    data = path.read_bytes()
    out = []
    while data:
        inflater = zlib.decompressobj(31)
        out.append(inflater.decompress(data))
        assert inflater.eof
        data = inflater.unused_data
    return out


def test_rotation_warcinfo_heads_and_one_member_per_record(ws: tuple[Workspace, Catalog]) -> None:
    workspace, catalog = ws
    store = WarcStore(workspace, catalog, source="http://127.0.0.1:8080/coll", info={"query": {"url": "x"}},
                      size_limit=3000)
    for n in range(12):
        catalogue(catalog, store, [write(store, n)])
        store.rotate_if_full()
    store.close()
    files = sorted((workspace.store_dir / "sync").iterdir())
    assert len(files) >= 3 and not any(f.name.endswith(OPEN_SUFFIX) for f in files)
    assert all(f.name.startswith("ak-127.0.0.1-8080-coll-") and f.name.endswith(".warc.gz") for f in files)
    total = 0
    for path in files:
        parts = members(path)
        assert all(p.startswith(b"WARC/1.0\r\n") and p.count(b"WARC/1.0\r\n") == 1 for p in parts)
        with open(path, "rb") as handle:
            types = [r.rec_type for r in ArchiveIterator(handle)]
        assert types[0] == "warcinfo" and types.count("warcinfo") == 1
        assert types[1:] == ["response", "metadata"] * ((len(types) - 1) // 2)
        row = catalog.file_by_path(workspace.relative(path))
        assert row is not None and row["status"] == "complete" and row["size"] == path.stat().st_size
        assert row["sha256"] == hashlib.sha256(path.read_bytes()).hexdigest()
        total += types.count("response")
        assert b"software: archivekeeper/" in parts[0] and b'query: {"url": "x"}' in parts[0]
    assert total == 12
    for record in catalog.query(Selection()):
        payload = b"".join(read_payload(workspace.resolve(record.warc_file), record.offset, decode=False))
        assert sha1_base32(payload) == record.payload_sha1


def test_recover_drops_uncommitted_tail_and_finishes_the_file(ws: tuple[Workspace, Catalog]) -> None:
    workspace, catalog = ws
    store = WarcStore(workspace, catalog, source="wayback", info={})
    committed = [write(store, n) for n in range(3)]
    catalogue(catalog, store, committed)
    write(store, 3)  # written and even flushed, but its row never committed: as if killed here
    store.flush()
    assert store._out is not None
    store._out.handle.write(b"\x1f\x8b\x08\x00partial-member")  # killed in the middle of a record
    store._out.handle.flush()
    open_files = list((workspace.store_dir / "sync").glob("*" + OPEN_SUFFIX))
    assert len(open_files) == 1
    row = catalog.file_by_path(workspace.relative(open_files[0]))
    assert row is not None and row["status"] == "writing"

    again = WarcStore(workspace, catalog, source="wayback", info={})
    done = again.recover()
    assert len(done) == 1 and "finished with 3 records" in done[0]
    final = open_files[0].with_name(open_files[0].name.removesuffix(OPEN_SUFFIX))
    assert final.exists() and not open_files[0].exists()
    assert final.stat().st_size == row["size"]
    with open(final, "rb") as handle:
        assert [r.rec_type for r in ArchiveIterator(handle)].count("response") == 3
    fixed = catalog.file_by_path(workspace.relative(final))
    assert fixed is not None and fixed["status"] == "complete" and fixed["records"] == 3
    assert fixed["sha256"] == hashlib.sha256(final.read_bytes()).hexdigest()
    assert again.recover() == []


def test_recover_handles_every_crash_point_of_a_file(ws: tuple[Workspace, Catalog]) -> None:
    workspace, catalog = ws
    sync_dir = workspace.store_dir / "sync"
    # 1. killed after creating the file, before the catalog heard of it
    stray = WarcStore(workspace, catalog, source="wayback", info={})
    write(stray, 1)
    stray.flush()
    assert stray._path is not None and stray._out is not None
    stray_row = catalog.file_by_path(workspace.relative(stray._path))
    assert stray_row is not None
    catalog.forget_file(int(stray_row["id"]))  # as if the register never committed
    # 2. registered, nothing catalogued yet
    empty = WarcStore(workspace, catalog, source="commoncrawl", info={})
    write(empty, 2)
    empty.flush()
    # 3. renamed to its final name but killed before the catalog said so
    renamed = WarcStore(workspace, catalog, source="http://a.example/c", info={})
    catalogue(catalog, renamed, [write(renamed, 3)])
    assert renamed._path is not None
    final = renamed._path.with_name(renamed._path.name.removesuffix(OPEN_SUFFIX))
    renamed._out.handle.close()  # type: ignore[union-attr]
    renamed._path.rename(final)

    done = WarcStore(workspace, catalog, source="wayback", info={}).recover()
    assert len(done) == 3
    left = sorted(p.name for p in sync_dir.iterdir())
    assert left == [final.name]
    assert {row["status"] for row in catalog.db.query("SELECT status FROM files")} == {"complete"}
    assert catalog.file_by_path(workspace.relative(final))["records"] == 1  # type: ignore[index]


def test_files_stay_inside_the_store(ws: tuple[Workspace, Catalog]) -> None:
    workspace, catalog = ws
    store = WarcStore(workspace, catalog, source="../../../etc/passwd", info={})
    written, _ = write(store, 1)
    store.close()
    path = workspace.resolve(written.path.removesuffix(OPEN_SUFFIX))
    assert workspace.store_dir.resolve() in path.resolve().parents
    with pytest.raises(WorkspaceError):
        workspace.store_path("../escape.warc.gz")


def test_record_ids_are_deterministic() -> None:
    first = record_id_for("wayback", "http://a/", "2021-01-01T00:00:00Z", "sha1:X")
    assert first == record_id_for("wayback", "http://a/", "2021-01-01T00:00:00Z", "sha1:X")
    assert first != record_id_for("wayback", "http://a/", "2021-01-01T00:00:01Z", "sha1:X")
    assert first.startswith("<urn:uuid:") and first.endswith(">")


def test_recovery_never_follows_a_link_out_of_the_store(ws: tuple[Workspace, Catalog], tmp_path: Path) -> None:
    workspace, catalog = ws
    store = WarcStore(workspace, catalog, source="wayback", info={})
    catalogue(catalog, store, [write(store, 1)])
    assert store._path is not None and store._out is not None
    store._out.handle.close()
    outside = tmp_path / "precious.bin"
    outside.write_bytes(b"x" * 100_000)
    store._path.unlink()
    store._path.symlink_to(outside)  # a hostile swap while the writer was dead
    done = WarcStore(workspace, catalog, source="wayback", info={}).recover()
    assert done == [f"{store._relative_path}: left alone (a link, or outside the store)"]
    assert outside.read_bytes() == b"x" * 100_000  # not truncated, not renamed
    assert store._path.is_symlink()
    with pytest.raises(WorkspaceError):  # and a store whose sync folder leads outside is refused
        (workspace.store_dir / "sync").rename(workspace.store_dir / "moved")
        (workspace.store_dir / "sync").symlink_to(tmp_path)
        WarcStore(workspace, catalog, source="wayback", info={})


def test_records_built_for_a_finished_file_are_retargeted(ws: tuple[Workspace, Catalog], realdata: Path) -> None:
    """A worker builds records for the file open now; if the store rotates before they are appended, their
    WARC-Warcinfo-ID is rewritten to the new file's warcinfo. An archive's verbatim record is never touched."""
    workspace, catalog = ws
    store = WarcStore(workspace, catalog, source="test", info={}, size_limit=1)
    body = b"<p>built for the first file</p>" * 40

    def response(n: int) -> Serialized:
        return serialize_response(uri=f"http://example.org/{n}", capture_time="2021-01-01T00:00:00Z",
                                  record_id=record_id_for(str(n)), status=200, reason="OK", headers=[],
                                  body=io.BytesIO(body), body_size=len(body), payload_sha1=sha1_base32(body),
                                  metadata={"n": n}, warcinfo_id=store.warcinfo_id)

    data = (realdata / "pywb" / "sample_archive" / "warcs" / "example.warc.gz").read_bytes()
    member = data[333:333 + 1043]  # example.warc.gz's first response record: one gzip member
    assert gzip.decompress(member).startswith(b"WARC/1.0\r\nWARC-Type: response")
    early = response(1)
    verbatim = serialize_verbatim(member=io.BytesIO(member), uri="http://example.com?example=1",
                                  capture_time="2014-01-03T03:03:21Z", record_id="<urn:uuid:x>", metadata={},
                                  warcinfo_id=store.warcinfo_id)
    first_file = store.warcinfo_id
    store.append(response(0))
    store.flush()
    store.rotate_if_full()  # the first file is finished: ``early`` and ``verbatim`` were built for it
    assert store.warcinfo_id != first_file
    second = store.append(early)
    third = store.append(verbatim)
    store.close()
    files = sorted((workspace.store_dir / "sync").iterdir())
    assert len(files) == 2
    original_id = gzip.decompress(member).split(b"WARC-Record-ID: ", 1)[1].split(b"\r\n", 1)[0].decode()
    checked, problems = warcinfo_problems(workspace.store_dir, verbatim={original_id})
    assert not problems and checked == 5
    stored = files[1].read_bytes()
    assert stored[third.offset:third.offset + third.length] == member  # byte for byte
    assert stored[second.offset:second.offset + second.length] != b"" and second.length > 0
    payload = b"".join(read_payload(files[1], second.offset, decode=False))
    assert payload == body
