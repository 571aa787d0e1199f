"""Import of real WARC/ARC files: counts and digests agree with an independent warcio reading."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from typer.testing import CliRunner
from warcio.archiveiterator import ArchiveIterator

from archivekeeper.catalog import Catalog
from archivekeeper.cli import app
from archivekeeper.digests import normalize_digest, sha1_base32
from archivekeeper.importer import Importer
from archivekeeper.models import Selection
from archivekeeper.warcreader import read_payload, read_record_bytes
from archivekeeper.workspace import Workspace

REALDATA = Path(__file__).resolve().parents[2] / "shared" / "realdata"
WARCS = REALDATA / "pywb" / "sample_archive" / "warcs"
WARCIO_DATA = REALDATA / "warcio" / "test" / "data"

# Files warcio reads completely (the broken ones are tested separately below).
GOOD_FILES = sorted(
    p for p in [*WARCS.iterdir(), *WARCIO_DATA.iterdir()]
    if p.name.endswith((".warc", ".warc.gz", ".arc", ".arc.gz"))
    and p.name not in {"example-bad-non-chunked.warc.gz", "bad.arc"}
)


def warcio_view(path: Path) -> list[dict[str, object]]:
    """Every response/resource/revisit record as warcio sees it."""
    out = []
    seen: set[tuple[object, ...]] = set()
    with open(path, "rb") as handle:
        iterator = ArchiveIterator(handle, arc2warc=True)
        for record in iterator:
            if record.rec_type not in ("response", "resource", "revisit"):
                continue
            body = record.raw_stream.read()
            computed = sha1_base32(body) if record.rec_type != "revisit" else None
            identity = (record.rec_headers.get_header("WARC-Record-ID"), record.rec_headers.get_header("WARC-Date"),
                        record.rec_headers.get_header("WARC-Target-URI"), record.rec_type,
                        computed or record.rec_headers.get_header("WARC-Payload-Digest"))
            if identity[0] is not None and identity in seen:
                continue  # the same record written twice (example-extra.warc does this): catalogued once
            seen.add(identity)
            out.append({
                "offset": iterator.get_record_offset(),
                "url": record.rec_headers.get_header("WARC-Target-URI"),
                "claimed": normalize_digest(record.rec_headers.get_header("WARC-Payload-Digest")),
                "computed": sha1_base32(body) if record.rec_type != "revisit" else None,
                "type": record.rec_type,
            })
    return out


@pytest.fixture()
def workspace(tmp_path: Path) -> Workspace:
    return Workspace.open(tmp_path / "ws")


def run_import(workspace: Workspace, paths: list[str], **kwargs: object) -> tuple[Catalog, object]:
    catalog = Catalog.open(workspace.catalog_path, workspace.settings.cutoff)
    summary = Importer(workspace, catalog, **kwargs).run(paths)  # type: ignore[arg-type]
    return catalog, summary


@pytest.mark.parametrize("path", GOOD_FILES, ids=lambda p: p.name)
def test_import_agrees_with_warcio(workspace: Workspace, path: Path) -> None:
    expected = warcio_view(path)
    catalog, summary = run_import(workspace, [str(path)])
    records = list(catalog.query(Selection(), order="c.offset"))
    assert len(records) == len(expected), summary.as_json()  # type: ignore[attr-defined]
    for record, want in zip(records, expected, strict=True):
        assert record.offset == want["offset"]
        assert record.record_type == want["type"]
        if want["type"] != "revisit":
            assert record.payload_sha1 == want["computed"]
        if want["claimed"] is not None:
            assert record.digest == want["claimed"]
            expected_state = "verified" if want["claimed"] == want["computed"] else (
                "unverifiable" if want["type"] == "revisit" else "mismatch")
            assert record.verification == expected_state
        else:
            assert record.verification == "unverifiable"
        # the record reads back at its catalogued offset and length, without scanning
        raw = b"".join(read_record_bytes(workspace.resolve(record.warc_file), record.offset, record.length))
        assert len(raw) == record.length
        if want["type"] != "revisit" and record.verification == "verified":
            body = b"".join(read_payload(workspace.resolve(record.warc_file), record.offset, decode=False))
            assert sha1_base32(body) == record.digest


def test_reimport_adds_nothing_and_keeps_counts(workspace: Workspace) -> None:
    paths = [str(WARCS / "iana.warc.gz"), str(WARCS / "example.warc.gz")]
    catalog, first = run_import(workspace, paths)
    total = catalog.count(Selection())
    assert total == 171 + 3
    catalog, second = run_import(workspace, paths)
    assert catalog.count(Selection()) == total
    assert [f.status for f in second.files] == ["skipped", "skipped"]  # type: ignore[attr-defined]
    assert sum(r["total"] for r in catalog.stats()) == total
    # touching the file forces a re-scan, which still adds nothing
    copy = workspace.root.parent / "copy.warc.gz"
    shutil.copy(WARCS / "example.warc.gz", copy)
    catalog, third = run_import(workspace, [str(copy)])
    assert third.files[0].records_new == 0  # type: ignore[attr-defined]
    assert catalog.count(Selection()) == total


def test_cutoff_change_recomputes_flags(workspace: Workspace) -> None:
    catalog, _ = run_import(workspace, [str(WARCS / "example.warc.gz")])
    assert catalog.count(Selection(pre_cutoff=True)) == 3
    catalog.close()
    from datetime import UTC, datetime

    moved = Catalog.open(workspace.catalog_path, datetime(2014, 1, 10, tzinfo=UTC))
    # 2014-01-03 response + revisit before, the 2014-01-28 capture after
    assert moved.count(Selection(pre_cutoff=True)) == 2
    assert moved.count(Selection(pre_cutoff=False)) == 1
    stats = moved.stats()
    assert sum(r["pre_cutoff"] for r in stats) == 2 and sum(r["post_cutoff"] for r in stats) == 1


BROKEN = [
    (WARCIO_DATA / "example-bad-non-chunked.warc.gz", "per-record gzip"),
    (WARCS / "example-bad.warc.gz.bad", "per-record gzip"),
]


@pytest.mark.parametrize(("path", "message"), BROKEN, ids=lambda v: getattr(v, "name", str(v)))
def test_broken_files_fail_cleanly_and_next_file_still_imports(tmp_path: Path, path: Path, message: str) -> None:
    runner = CliRunner()
    ws = tmp_path / "ws"
    result = runner.invoke(app, ["-w", str(ws), "import", str(path), str(WARCS / "example.warc.gz"), "--json"])
    assert result.exit_code == 1
    assert "Traceback" not in result.output
    summary = json.loads(result.stdout)
    assert summary["records_new"] == 3
    assert any(message in err and str(path) in err for err in summary["errors"])


def test_truncated_and_corrupt_gzip_keep_earlier_records(tmp_path: Path) -> None:
    small = (WARCS / "dupes.warc.gz").read_bytes()
    truncated = tmp_path / "truncated.warc.gz"
    truncated.write_bytes(small[: len(small) // 2])
    data = (WARCS / "iana.warc.gz").read_bytes()
    flipped = bytearray(data)
    flipped[len(data) // 3] ^= 0xFF
    corrupt = tmp_path / "corrupt.warc.gz"
    corrupt.write_bytes(bytes(flipped))
    empty = tmp_path / "empty.warc"
    empty.write_bytes(b"")
    text = tmp_path / "notes.warc"
    text.write_text("not a warc\n")
    runner = CliRunner()
    ws = tmp_path / "ws"
    result = runner.invoke(app, ["-w", str(ws), "import", str(truncated), str(corrupt), str(empty), str(text),
                                 str(tmp_path / "missing.warc"), "--json"])
    assert result.exit_code == 1
    summary = json.loads(result.stdout)
    statuses = {Path(f["path"]).name: f["status"] for f in summary["file_results"]}
    assert statuses["truncated.warc.gz"] == "partial"
    assert statuses["corrupt.warc.gz"] == "partial"
    assert statuses["empty.warc"] == "failed" and statuses["notes.warc"] == "failed"
    assert len(summary["errors"]) == 5
    assert all("\n" not in e for e in summary["errors"])
    catalog = Catalog.open(ws / "catalog.db", Workspace.open(ws).settings.cutoff)
    kept = list(catalog.query(Selection()))
    assert 0 < len(kept) < 171 + 12
    assert {Path(r.warc_file).name for r in kept} == {"truncated.warc.gz", "corrupt.warc.gz"}
    # everything kept reads back with its digest at its offset
    for record in kept:
        if record.verification == "verified":
            body = b"".join(read_payload(ws / record.warc_file if not Path(record.warc_file).is_absolute()
                                         else Path(record.warc_file), record.offset, decode=False))
            assert sha1_base32(body) == record.digest


def test_cli_query_stats_show(tmp_path: Path) -> None:
    runner = CliRunner()
    ws = str(tmp_path / "ws")
    imported = runner.invoke(app, ["-w", ws, "import", str(WARCS / "iana.warc.gz"), str(WARCS / "example.warc.gz")])
    assert imported.exit_code == 0
    result = runner.invoke(app, ["-w", ws, "query", "--url", "iana.org", "--match", "domain", "--format", "jsonl"])
    assert result.exit_code == 0
    rows = [json.loads(line) for line in result.stdout.splitlines()]
    assert len(rows) == 172  # 171 iana.org captures + www.iana.org/domains/example from example.warc.gz
    required = {"url", "timestamp", "capture_time", "pre_cutoff", "status", "mime", "digest", "record_type",
                "warc_file", "offset", "length", "source", "verification"}
    assert all(required <= set(row) for row in rows)
    count = runner.invoke(app, ["-w", ws, "query", "--url", "http://www.iana.org/_css/", "--match", "prefix",
                                "--count"])
    assert int(count.stdout) == sum(1 for r in rows if "/_css/" in r["url"])
    csv_out = runner.invoke(app, ["-w", ws, "query", "--status", "302", "--format", "csv"])
    assert csv_out.stdout.splitlines()[0].startswith("url,")
    stats = json.loads(runner.invoke(app, ["-w", ws, "stats", "--json"]).stdout)
    assert stats["totals"]["total"] == 174 and stats["years"][0]["year"] == 2014
    shown = runner.invoke(app, ["-w", ws, "show", "http://example.com?example=1", "--at", "20140103", "--json"])
    assert json.loads(shown.stdout)["timestamp"] == "20140103030321"
    body = runner.invoke(app, ["-w", ws, "show", "http://example.com?example=1", "--at", "20140103", "--payload"])
    assert b"Example Domain" in body.stdout_bytes
    bad = runner.invoke(app, ["-w", ws, "query", "--from", "20x1"])
    assert bad.exit_code != 0 and "not" in bad.output and "Traceback" not in bad.output
