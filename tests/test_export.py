"""Local exports: what goes in and what is left out (by reason), the WARC shards, the package, reproducibility."""

from __future__ import annotations

import gzip
import json
import shutil
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from exportkit import (
    BODY1,
    ENV,
    EPOCH,
    Rec,
    catalogued_roles,
    check_export,
    expected_roles,
    import_into,
    make_full,
    make_store,
    read_shard,
    tree_digest,
    write_warc,
)
from typer.testing import CliRunner

from archivekeeper.catalog import Catalog
from archivekeeper.cli import app
from archivekeeper.errors import ConfigError, ExportError
from archivekeeper.export import exports_containing
from archivekeeper.models import Selection
from archivekeeper.package import ExportOptions, run_export
from archivekeeper.warcreader import read_record_bytes
from archivekeeper.workspace import Workspace


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Workspace, Catalog]]:
    yield from make_store(tmp_path_factory)


@pytest.fixture(scope="module")
def full(store: tuple[Workspace, Catalog], tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, Any]]:
    return make_full(store, tmp_path_factory)


def synth(store: tuple[Workspace, Catalog], dest: Path, url: str = "http://synth.example/", match: str = "prefix",
          **options: Any) -> dict[str, Any]:
    workspace, catalog = store
    run_export(workspace, catalog, "synth", str(dest), Selection(url=url, match=match),
               ExportOptions(formats=("warc", "jsonl"), jobs=1, **options), env=ENV)
    return check_export(dest)


def test_only_pre_cutoff_verified_records_go_in_and_the_rest_is_counted_by_reason(store, tmp_path: Path) -> None:
    manifest = synth(store, tmp_path / "out")
    assert manifest["counts"] == {
        "selected": 11, "exported": 3, "brought_in_for_revisits": 0,
        "aliases": {"duplicate": 2, "revisit": 1}, "aliases_total": 3,
        "left_out": {"post_cutoff": 3, "mismatch": 1, "transformed": 0, "unverifiable": 0, "revisit_unresolved": 1},
        "left_out_total": 5, "exported_bytes": manifest["counts"]["exported_bytes"], "documents": 2,
    }
    records = read_shard(tmp_path / "out" / "data" / "warc" / "synth-00000.warc.gz")
    assert [r.type for r in records] == ["warcinfo", "response", "response", "response"]
    # export order: store order (file, offset); the earliest capture of a payload is the one kept
    assert [(r.headers["WARC-Target-URI"], r.headers["WARC-Date"]) for r in records[1:]] == [
        ("http://synth.example/h", "2020-12-01T00:00:00Z"),
        ("http://synth.example/last", "2022-12-31T23:59:59Z"),
        ("http://synth.example/img.png", "2021-03-03T00:00:00Z"),
    ]
    aliases = [json.loads(line) for line in gzip.open(tmp_path / "out" / "data" / "aliases.jsonl.gz")]
    assert [(a["url"], a["reason"], a["alias_of_url"]) for a in aliases] == [
        ("http://synth.example/a", "duplicate", "http://synth.example/h"),
        ("http://synth.example/a", "duplicate", "http://synth.example/h"),
        ("http://synth.example/d", "revisit", "http://synth.example/h"),
    ]


def test_a_revisit_brings_in_the_record_holding_its_payload_never_an_empty_body(store, tmp_path: Path) -> None:
    manifest = synth(store, tmp_path / "out", url="http://synth.example/d", match="exact")
    counts = manifest["counts"]
    assert (counts["selected"], counts["exported"], counts["brought_in_for_revisits"]) == (1, 1, 1)
    assert counts["aliases"] == {"duplicate": 0, "revisit": 1}
    records = read_shard(tmp_path / "out" / "data" / "warc" / "synth-00000.warc.gz")
    assert [r.type for r in records] == ["warcinfo", "response"]
    assert records[1].payload == BODY1 and records[1].headers["WARC-Target-URI"] == "http://synth.example/h"


def test_nothing_post_cutoff_is_ever_exported(store, tmp_path: Path) -> None:
    workspace, catalog = store
    with pytest.raises(ExportError, match="nothing to export: 3 captures selected.*post_cutoff 3"):
        run_export(workspace, catalog, "late", str(tmp_path / "late"),
                   Selection(url="http://synth.example/", match="prefix", pre_cutoff=False), ExportOptions(jobs=1),
                   env=ENV)
    assert not (tmp_path / "late").exists() and not (tmp_path / ".late.partial").exists()


def test_every_shard_record_is_a_byte_for_byte_copy_of_the_stored_record(store, full) -> None:
    workspace, catalog = store
    dest, manifest = full
    rows = catalog.conn.execute(
        "SELECT x.shard, x.shard_offset, f.path, c.offset, c.length, c.capture_time, c.verification, c.record_type "
        "FROM export_captures x JOIN exports e ON e.id = x.export_id JOIN captures c ON c.id = x.capture_id "
        "JOIN files f ON f.id = c.file_id WHERE e.destination = ? AND x.role = 'exported'", (str(dest),)).fetchall()
    assert len(rows) == manifest["counts"]["exported"] > 100
    plain = 0
    for shard, shard_offset, path, offset, length, capture_time, verification, record_type in rows:
        assert capture_time < catalog.cutoff_iso and verification == "verified" and record_type != "revisit"
        stored = b"".join(read_record_bytes(workspace.resolve(path), offset, length))
        with open(dest / shard, "rb") as handle:
            handle.seek(shard_offset)
            copied = handle.read(length if path.endswith(".gz") else 2 * length + 1024)
        if path.endswith(".gz"):
            assert copied == stored
        else:  # a plain .warc record becomes a gzip member of its own, same bytes inside
            plain += 1
            assert zlib.decompressobj(31).decompress(copied) == stored
    assert plain >= 1


def test_shards_are_per_record_gzip_warcs_headed_by_a_warcinfo_record(full) -> None:
    dest, manifest = full
    shards = [f for f in manifest["files"] if f["kind"] == "warc"]
    assert len(shards) >= 3  # shard_size=200 kB
    total = 0
    for entry in shards:
        records = read_shard(dest / entry["path"])  # warcio checks every digest on the way
        assert records[0].type == "warcinfo" and records[0].offset == 0
        info = records[0].payload.decode()
        assert "isPartOf: corpus" in info and "archivekeeper-cutoff: 2023-01-01T00:00:00Z" in info
        assert records[0].headers["WARC-Date"] == "2023-11-14T22:13:20Z"
        assert all(r.type in ("response", "resource") and r.headers["WARC-Date"] < "2023-01-01" for r in records[1:])
        assert entry["records"] == len(records) - 1
        total += entry["records"]
        assert entry["size"] <= 200_000 or entry["records"] == 1
    assert total == manifest["counts"]["exported"]


def test_manifest_describes_the_export(store, full) -> None:
    _, catalog = store
    _dest, manifest = full
    assert manifest["name"] == "corpus" and manifest["cutoff"] == "2023-01-01T00:00:00Z"
    assert manifest["created"] == "2023-11-14T22:13:20Z" and manifest["selection"] == {}
    assert manifest["formats"] == ["warc", "jsonl", "parquet"]
    counts = manifest["counts"]
    assert counts["selected"] == catalog.total()
    assert counts["selected"] == (counts["exported"] - counts["brought_in_for_revisits"] + counts["aliases_total"]
                                  + counts["left_out_total"])
    assert counts["left_out"]["post_cutoff"] > 0 and counts["left_out"]["mismatch"] > 0
    assert counts["left_out"]["unverifiable"] > 0  # the ARC record, digest-less records
    assert {s["name"] for s in manifest["sources"]} == {"import"}
    assert [f["path"] for f in manifest["files"]] == sorted(f["path"] for f in manifest["files"])


def test_same_catalog_and_selection_give_identical_bytes(store, full, tmp_path: Path) -> None:
    workspace, catalog = store
    dest, _ = full
    again = tmp_path / "corpus"
    run_export(workspace, catalog, "corpus", str(again), Selection(),
               ExportOptions(formats=("warc", "jsonl", "parquet"), shard_size=200_000, jobs=1), env=ENV)
    assert tree_digest(again) == tree_digest(dest)


def test_without_source_date_epoch_a_rerun_keeps_the_first_runs_timestamp(store, tmp_path: Path) -> None:
    workspace, catalog = store
    selection = Selection(url="http://synth.example/", match="prefix")
    first = run_export(workspace, catalog, "again", str(tmp_path / "a"), selection, ExportOptions(jobs=1), env={})
    before = tree_digest(tmp_path / "a")
    shutil.rmtree(tmp_path / "a")
    second = run_export(workspace, catalog, "again", str(tmp_path / "a"), selection, ExportOptions(jobs=1), env={})
    assert second.created == first.created and tree_digest(tmp_path / "a") == before


def test_publication_is_atomic(store, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    workspace, catalog = store
    (tmp_path / "taken").mkdir()
    (tmp_path / "taken" / "x").write_text("x")
    with pytest.raises(ExportError, match="already exists and is not empty"):
        run_export(workspace, catalog, "x", str(tmp_path / "taken"), Selection(), ExportOptions(jobs=1), env=ENV)

    import archivekeeper.shards as shards

    real = shards.copy_record
    calls = []

    def failing(*args: Any) -> None:
        calls.append(1)
        if len(calls) > 5:
            raise OSError(28, "No space left on device")
        real(*args)

    monkeypatch.setattr(shards, "copy_record", failing)
    with pytest.raises(OSError):
        run_export(workspace, catalog, "broken", str(tmp_path / "broken"), Selection(), ExportOptions(jobs=1), env=ENV)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["taken"]  # no half export under any name
    status = catalog.conn.execute("SELECT status FROM exports WHERE name = 'broken'").fetchone()[0]
    assert status == "failed"


def test_a_store_file_changed_since_import_stops_the_export(tmp_path: Path) -> None:
    path = write_warc(tmp_path / "one.warc.gz", [Rec("http://one.example/", "2020-01-01T00:00:00Z")])
    workspace, catalog = import_into(tmp_path / "ws", [path])
    with open(path, "ab") as handle:
        handle.write(b"\0" * 10)
    with pytest.raises(ExportError, match="changed since it was catalogued: re-import it"):
        run_export(workspace, catalog, "one", str(tmp_path / "out"), Selection(), ExportOptions(jobs=1), env=ENV)
    catalog.close()


def test_roles_and_placements_match_a_record_by_record_reference(store, full, tmp_path: Path) -> None:
    workspace, catalog = store
    dest, _ = full
    expected = expected_roles(catalog, Selection())
    assert catalogued_roles(catalog, str(dest)) == expected
    assert {role for role, *_ in expected.values()} == {"exported", "alias", "left_out"}
    # WARC only: records are copied in runs without reading each one's catalog row; same shards, same places
    warc_only = tmp_path / "corpus"
    run_export(workspace, catalog, "corpus", str(warc_only), Selection(),
               ExportOptions(formats=("warc",), shard_size=200_000, jobs=1), env=ENV)
    check_export(warc_only)
    shards = {k: v for k, v in tree_digest(dest).items() if k.startswith("data/warc/")}
    assert {k: v for k, v in tree_digest(warc_only).items() if k.startswith("data/warc/")} == shards
    placed = ("SELECT c.record_key, x.seq, x.shard, x.shard_offset FROM export_captures x JOIN captures c "
              "ON c.id = x.capture_id WHERE x.export_id = (SELECT max(id) FROM exports WHERE destination = ?) "
              "ORDER BY c.record_key")
    assert (catalog.conn.execute(placed, (str(warc_only),)).fetchall()
            == catalog.conn.execute(placed, (str(dest),)).fetchall())
    assert catalogued_roles(catalog, str(warc_only)) == expected


def test_the_catalog_knows_which_exports_contain_a_url(store, full) -> None:
    _, catalog = store
    dest, _ = full
    names = {(e["name"], e["destination"]) for e in exports_containing(catalog, "http://synth.example/d")}
    assert ("corpus", str(dest)) in names  # d is a revisit: an alias in the corpus
    assert exports_containing(catalog, "http://synth.example/b") == []  # post-cutoff: in no corpus
    runner = CliRunner()
    result = runner.invoke(app, ["-w", str(store[0].root), "exports", "--url", "http://synth.example/h", "--json"])
    assert result.exit_code == 0, result.output
    assert any(row["name"] == "corpus" and row["captures_of_url"] == 1 for row in json.loads(result.output))


def test_cli_export_verify_and_errors(store, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SOURCE_DATE_EPOCH", EPOCH)
    runner = CliRunner()
    root = str(store[0].root)
    result = runner.invoke(app, ["-w", root, "export", "cli", "--to", str(tmp_path / "cli"), "--url",
                                 "http://synth.example/", "--match", "prefix", "--until", "2022", "--json"])
    assert result.exit_code == 0, result.output
    summary = json.loads(result.output)
    assert summary["counts"]["exported"] == 3 and summary["counts"]["selected"] == 8
    check_export(tmp_path / "cli")
    result = runner.invoke(app, ["verify", str(tmp_path / "cli"), "--json"])
    assert result.exit_code == 0 and json.loads(result.output)["ok"] is True
    result = runner.invoke(app, ["-w", root, "export", "bad", "--to", str(tmp_path / "bad"), "--format", "pdf"])
    assert result.exit_code == 1 and "--format takes" in result.output and "Traceback" not in result.output
    result = runner.invoke(app, ["-w", root, "export", "../evil", "--to", str(tmp_path / "evil")])
    assert result.exit_code == 1 and "export name" in result.output


def test_unknown_formats_and_names_are_config_errors() -> None:
    from archivekeeper.export import validate_name
    from archivekeeper.package import parse_formats

    assert parse_formats("jsonl, WARC") == ("warc", "jsonl")
    for bad in ("", "csv", "warc,zip"):
        with pytest.raises(ConfigError):
            parse_formats(bad)
    for bad in ("", "-x", "a/b", "a b", "x" * 200):
        with pytest.raises(ConfigError):
            validate_name(bad)
