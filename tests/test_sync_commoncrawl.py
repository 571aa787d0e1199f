"""The ``commoncrawl`` source: collinfo.json (cached), a paged pywb crawl index, records read by Range or S3.

The crawl index is pywb over the ZipNum sample of ``../shared/realdata`` (the software behind
index.commoncrawl.org, paged with showNumPages/page); the WARC files behind it are served by a
Range-capable file server, or by moto's S3 server as ``s3://commoncrawl/``.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import FaultServerFactory, PywbFactory
from servers import Fault, FaultServer, MotoS3Server, PywbServer, RangeFileServer
from sync_support import crawl_index, record_at, shared_site, sync_archive, warcinfo_problems
from test_sync import FAST_ENV
from typer.testing import CliRunner

from archivekeeper.catalog import Catalog
from archivekeeper.cli import app
from archivekeeper.models import VERIFIED, Selection
from archivekeeper.warcreader import read_record_bytes
from archivekeeper.workspace import Workspace

EARLY, LATE = "CC-MAIN-2014-10", "CC-MAIN-2024-10"
# pywb's sample ZipNum index is older than its WARCs: two lines point at another record's offset
STALE_INDEX_LINES = {"wrong-record": 2}


@pytest.fixture(scope="module")
def warcs(realdata: Path) -> Path:
    return realdata / "pywb" / "sample_archive" / "warcs"


@pytest.fixture(scope="module")
def pywb(pywb_factory: PywbFactory, realdata: Path, tmp_path_factory: pytest.TempPathFactory) -> PywbServer:
    return sync_archive(pywb_factory, realdata, shared_site(tmp_path_factory.getbasetemp())[0])


@pytest.fixture
def index(pywb: PywbServer, tmp_path: Path, fault_server_factory: FaultServerFactory) -> FaultServer:
    """index.commoncrawl.org: collinfo.json (newest crawl first) and each crawl's CDX API."""
    return crawl_index(fault_server_factory, pywb.base_url, tmp_path / "index-static", [
        {"id": LATE, "name": "February 2024 Index", "cdx-api": "/later/cdx",
         "from": "2024-02-20T00:00:00", "to": "2024-03-05T00:00:00"},
        {"id": EARLY, "name": "January 2014 Index", "cdx-api": "/zn/cdx",
         "from": "2014-01-01T00:00:00", "to": "2014-03-01T00:00:00"},
    ])


@pytest.fixture
def data(warcs: Path) -> Iterator[RangeFileServer]:
    with RangeFileServer(warcs) as server:
        yield server


def env_for(index: FaultServer, data_url: str, **extra: str) -> dict[str, str]:
    return {**FAST_ENV, "ARCHIVEKEEPER_COMMONCRAWL_BASE_URL": index.base_url,
            "ARCHIVEKEEPER_COMMONCRAWL_DATA_URL": data_url, **extra}


def run(ws: Path, env: dict[str, str], *args: str) -> tuple[int, Any, str]:
    result = CliRunner().invoke(app, ["-w", str(ws), "sync", "commoncrawl", *args, "--json"], env=env)
    return result.exit_code, json.loads(result.stdout) if result.stdout.strip() else None, result.output


def open_catalog(ws: Path, env: dict[str, str]) -> tuple[Workspace, Catalog]:
    workspace = Workspace.open(ws, env=env)
    return workspace, Catalog.open(workspace.catalog_path, workspace.settings.cutoff)


def test_crawls_before_the_cutoff_records_verbatim_revisits_resolved(tmp_path: Path, index: FaultServer,
                                                                      data: RangeFileServer, warcs: Path) -> None:
    env = env_for(index, data.base_url)
    code, summary, output = run(tmp_path / "ws", env, "iana.org", "--match", "domain")
    assert code == 1, output  # the stale index lines fail, and say why
    assert summary["failed_by_reason"] == STALE_INDEX_LINES and summary["fetched"] == 182
    assert summary["verified"] == 182 and summary["source"] == "commoncrawl"
    paths = [r.path for r in index.requests]
    assert paths[0] == "/collinfo.json" and not any(p.startswith("/later/") for p in paths)  # 2024: after the cutoff
    pages = [p for p in paths if p.startswith("/zn/cdx")]
    assert "showNumPages=true" in pages[0] and [p.rsplit("page=", 1)[-1] for p in pages[1:]] == ["0", "1", "2", "3"]
    assert all(r.headers["Range"] for r in data.requests) and len(data.requests) == 184  # range reads only

    workspace, catalog = open_catalog(tmp_path / "ws", env)
    plan = {(r["url"], r["timestamp"]): r for r in catalog.db.query("SELECT * FROM sync_captures")}
    revisits = 0
    for record in catalog.query(Selection(source="commoncrawl")):
        row = plan[(record.url, record.timestamp)]
        assert record.verification == VERIFIED and record.record_type == "response"
        if row["mime"] == "warc/revisit":  # resolved: the revisit's headers + its original's payload
            revisits += 1
            headers, payload, _ = record_at(workspace.resolve(record.warc_file), record.offset)
            assert payload and headers["WARC-Payload-Digest"] == record.digest
            assert record.refers_to_url is not None
            continue
        ours = b"".join(read_record_bytes(workspace.resolve(record.warc_file), record.offset, record.length))
        with open(warcs / row["filename"], "rb") as handle:
            handle.seek(row["offset"])
            assert ours == handle.read(row["length"])  # the archive's gzip member, byte for byte
        headers, _, _ = record_at(workspace.resolve(record.warc_file), record.offset)
        assert headers["WARC-Record-ID"] == record.record_id  # the original id survives
    assert revisits > 100
    verbatim = {r.record_id for r in catalog.query(Selection(source="commoncrawl")) if r.refers_to_url is None}
    checked, problems = warcinfo_problems(workspace.store_dir, verbatim={v for v in verbatim if v})
    assert not problems and checked == 182 + revisits  # every metadata record, every resolved revisit
    # collinfo.json is cached in the workspace: a second run does not ask for it again
    assert (tmp_path / "ws" / "cache" / "commoncrawl-collinfo.json").exists()
    run(tmp_path / "ws", env, "iana.org", "--match", "domain")
    assert [r.path for r in index.requests].count("/collinfo.json") == 1


def test_revisit_without_its_original_in_the_workspace(tmp_path: Path, index: FaultServer,
                                                       data: RangeFileServer) -> None:
    url = "http://www.iana.org/_css/2013.1/fonts/Inconsolata.otf"
    code, summary, output = run(tmp_path / "ws", env_for(index, data.base_url), url, "--from", "20140126200900")
    assert code == 0, output
    assert (summary["planned"], summary["verified"]) == (4, 4)  # four revisits, the original is from 200826
    lookups = [r for r in index.requests if r.path.startswith("/zn/cdx") and "filter" in r.query]
    assert len(lookups) == 4 and lookups[0].query["url"] == [url]
    assert sum(1 for r in data.requests if r.headers["Range"].startswith("bytes=620049-")) == 4  # the original


def test_from_s3_through_boto3(tmp_path: Path, index: FaultServer, data: RangeFileServer, warcs: Path,
                               moto_s3: MotoS3Server, s3_client: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    s3_client.create_bucket(Bucket="commoncrawl")
    for name in ("dupes.warc.gz", "example.warc.gz", "iana.warc.gz"):
        s3_client.upload_file(str(warcs / name), "commoncrawl", name)
    for key, value in moto_s3.env.items():
        monkeypatch.setenv(key, value)
    env = env_for(index, "s3://commoncrawl/")
    code, summary, output = run(tmp_path / "ws", env, "iana.org", "--match", "domain", "--from", "20140126201000")
    assert summary is not None, output
    assert summary["failed"] == 0 and summary["fetched"] == summary["planned"] > 20
    assert data.requests == []  # everything came from S3
    workspace, catalog = open_catalog(tmp_path / "ws", env)
    assert catalog.count(Selection(verification=VERIFIED)) == summary["fetched"]


def test_named_crawls(tmp_path: Path, index: FaultServer, data: RangeFileServer) -> None:
    env = env_for(index, data.base_url)
    code, _, output = run(tmp_path / "ws", env, "iana.org", "--crawl", "CC-MAIN-2099-99")
    assert code == 1 and "unknown crawl(s) CC-MAIN-2099-99" in output
    code, summary, output = run(tmp_path / "ws", env, "iana.org", "--crawl", LATE, "--to", "2025")
    assert code == 0 and summary["planned"] == 0, output
    assert any(r.path.startswith("/later/cdx") for r in index.requests)


def test_data_server_ignoring_range_is_not_downloaded(tmp_path: Path, index: FaultServer, warcs: Path,
                                                      fault_server_factory: FaultServerFactory) -> None:
    whole = (warcs / "example.warc.gz").read_bytes()
    server = fault_server_factory(static_root=warcs)
    server.script("/example.warc.gz", [Fault.respond(whole)] * 10)  # 200 with the whole file
    code, summary, _ = run(tmp_path / "ws", env_for(index, server.base_url), "http://www.iana.org/domains/example")
    assert code == 1 and summary["failed_by_reason"] == {"range-not-supported": 1}
    assert os.environ.get("ARCHIVEKEEPER_COMMONCRAWL_DATA_URL") is None  # CliRunner's env did not leak
