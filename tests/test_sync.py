"""``sync`` from a real pywb (the CDX API + ``id_`` replay), direct and through a fault-injecting proxy."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import requests
from conftest import FaultServerFactory, PywbFactory
from servers import Fault, FaultServer, PywbServer
from sync_support import SITE, Made, pre_cutoff, record_at, shared_site, sync_archive, warcinfo_problems
from typer.testing import CliRunner

from archivekeeper.catalog import Catalog
from archivekeeper.cli import app
from archivekeeper.digests import sha1_base32
from archivekeeper.models import MISMATCH, TRANSFORMED, VERIFIED, CatalogRecord, Selection
from archivekeeper.sources import SyncQuery
from archivekeeper.sync import SyncSummary, run_sync
from archivekeeper.warcreader import read_payload
from archivekeeper.workspace import Workspace

FAST = {"FETCHES_PER_SECOND": "0", "CDX_PER_MINUTE": "0", "BACKOFF_BASE": "0.01", "BACKOFF_MAX": "0.05",
        "PAUSE_SECONDS": "0.05", "MAX_RETRIES": "3", "READ_TIMEOUT": "5"}
FAST_ENV = {f"ARCHIVEKEEPER_{source}_{key}": value
            for source in ("CDX", "WAYBACK", "COMMONCRAWL") for key, value in FAST.items()}
TO = "20221231235959"  # the default --to: just before the 2023-01-01 cutoff


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[Made]]:
    return shared_site(tmp_path_factory.getbasetemp())


@pytest.fixture(scope="module")
def pywb(pywb_factory: PywbFactory, site: tuple[Path, list[Made]], realdata: Path) -> PywbServer:
    return sync_archive(pywb_factory, realdata, site[0])


def open_ws(root: Path) -> tuple[Workspace, Catalog]:
    workspace = Workspace.open(root, env=FAST_ENV)
    return workspace, Catalog.open(workspace.catalog_path, workspace.settings.cutoff)


def sync(root: Path, source: str, url: str, **query: Any) -> tuple[SyncSummary, Workspace, Catalog]:
    workspace, catalog = open_ws(root)
    summary = run_sync(workspace, catalog, source, SyncQuery(url=url, **{"date_to": TO, **query}))
    return summary, workspace, catalog


def records(catalog: Catalog) -> list[CatalogRecord]:
    return list(catalog.query(Selection()))


def keyed(items: list[CatalogRecord]) -> dict[tuple[str, str], CatalogRecord]:
    return {(r.url, r.timestamp): r for r in items}


def test_sync_brings_exactly_the_pre_cutoff_captures_verified(tmp_path: Path, pywb: PywbServer,
                                                               site: tuple[Path, list[Made]]) -> None:
    made = site[1]
    expected = pre_cutoff(made)
    summary, workspace, catalog = sync(tmp_path / "ws", pywb.collection_url("site"), "site.test", match="host")
    data = summary.as_json()
    assert (data["planned"], data["fetched"], data["failed"], data["skipped"]) == (len(expected), len(expected), 0, 0)
    assert summary.complete and data["pending"] == 0
    got = keyed(records(catalog))
    assert set(got) == {(m.url, m.timestamp) for m in expected}  # not 2023-01-01T00:00:00Z, nothing later
    for item in expected:
        record = got[(item.url, item.timestamp)]
        assert record.pre_cutoff and record.capture_time == item.iso and record.source == pywb.collection_url("site")
        assert record.record_type == "response"  # revisits come back with their payload, never empty
        headers, payload, status = record_at(workspace.resolve(record.warc_file), record.offset)
        assert headers["WARC-Target-URI"] == item.url and headers["WARC-Date"] == item.iso
        assert status is not None and status.startswith(str(item.status))
        if item.url.endswith("/moved"):  # pywb replays archived redirects without their body
            assert record.verification == TRANSFORMED and payload == b""
            continue
        assert record.verification == VERIFIED and payload == item.payload  # as stored (gzip for /gz)
        assert sha1_base32(payload) == record.payload_sha1 == record.digest == item.digest
        assert headers["WARC-Payload-Digest"] == record.payload_sha1
    gz = got[(SITE + "/gz", "20210701000000")]
    _, _, _ = record_at(workspace.resolve(gz.warc_file), gz.offset)
    decoded = b"".join(read_payload(workspace.resolve(gz.warc_file), gz.offset, decode=True))
    assert decoded.startswith(b"<html>")  # Content-Encoding: gzip kept with the gzip bytes
    assert got[(SITE + "/missing", "20210101000000")].status == 404
    # a second run of the same job fetches nothing and writes no file
    again, _, catalog2 = sync(tmp_path / "ws", pywb.collection_url("site"), "site.test", match="host")
    assert again.fetched_now == 0 and again.files == [] and len(records(catalog2)) == len(expected)
    assert again.job_id == summary.job_id
    years = {row["year"]: row["pre_cutoff"] for row in catalog2.stats()}
    assert years == {y: sum(1 for m in expected if m.when.year == y) for y in (2019, 2020, 2021, 2022)}


def test_metadata_record_holds_the_cdx_line_and_fetch_details(tmp_path: Path, pywb: PywbServer) -> None:
    _, workspace, catalog = sync(tmp_path / "ws", pywb.collection_url("site"), "http://site.test/b")
    [path] = {workspace.resolve(r.warc_file) for r in records(catalog)}
    from warcio.archiveiterator import ArchiveIterator

    with open(path, "rb") as handle:
        found = [(r.rec_type, dict(r.rec_headers.headers), r.content_stream().read()) for r in ArchiveIterator(handle)]
    assert [t for t, _, _ in found] == ["warcinfo", "response", "metadata", "response", "metadata"]
    info = found[0][2].decode()
    assert "software: archivekeeper/" in info and '"url": "http://site.test/b"' in info
    response, metadata = found[3][1], found[4][1]
    assert metadata["WARC-Concurrent-To"] == response["WARC-Record-ID"]
    assert metadata["Content-Type"] == "application/json"
    details = json.loads(found[4][2])
    cdx = json.loads(details["cdx"])
    assert cdx["mime"] == "warc/revisit" and cdx["timestamp"] == "20210310000000"
    assert details["capture_time_from"] == "memento-datetime" and details["drift_seconds"] == 0
    assert details["request_url"].endswith("/site/20210310000000id_/http://site.test/b")
    assert ["Memento-Datetime", "Wed, 10 Mar 2021 00:00:00 GMT"] in details["archive_headers"]


def test_real_warcs_through_pywb(tmp_path: Path, pywb: PywbServer) -> None:
    summary, workspace, catalog = sync(tmp_path / "ws", pywb.collection_url("real"), "iana.org", match="domain")
    data = summary.as_json()
    # dupes, example and iana.warc.gz hold 182 captures of *.iana.org (131 of them revisits). pywb replays
    # three archived 302s without their bodies (transformed); instead of two http:// captures that redirect
    # to their https:// twins one second later it serves the twins, and instead of http://iana.org's 302
    # the 200 recorded in the same second under the same URL key (all planned in their own right).
    assert (data["planned"], data["fetched"], data["verified"], data["transformed"]) == (182, 179, 176, 3)
    assert data["skipped_by_reason"] == {"served-other-capture": 3} and data["failed"] == 0 and summary.complete
    got = records(catalog)
    assert len(got) == 179 and all(r.record_type == "response" and r.pre_cutoff for r in got)
    for record in got:
        payload = b"".join(read_payload(workspace.resolve(record.warc_file), record.offset, decode=False))
        assert sha1_base32(payload) == record.payload_sha1
        assert (record.payload_sha1 == record.digest) == (record.verification == VERIFIED)


def test_every_record_names_its_files_warcinfo(tmp_path: Path, pywb: PywbServer) -> None:
    """Small files and four workers: files rotate while records built for the old one are in flight
    (retargeted: see test_sync_warcstore)."""
    workspace = Workspace.open(tmp_path / "ws", env={**FAST_ENV, "ARCHIVEKEEPER_WARC_SIZE_LIMIT": "60000"})
    catalog = Catalog.open(workspace.catalog_path, workspace.settings.cutoff)
    summary = run_sync(workspace, catalog, pywb.collection_url("real"),
                       SyncQuery(url="iana.org", match="domain", date_to=TO), concurrency=4)
    assert summary.complete and len(summary.files) >= 3
    checked, problems = warcinfo_problems(workspace.store_dir)
    assert not problems and checked == 2 * 179  # a response and a metadata record per capture
    for record in records(catalog):  # a retargeted record still reads back as catalogued
        payload = b"".join(read_payload(workspace.resolve(record.warc_file), record.offset, decode=False))
        assert sha1_base32(payload) == record.payload_sha1


# -- faults ---------------------------------------------------------------------------------------

def replay_path(item: str, ts: str) -> str:
    return f"/site/{ts}id_/{SITE}{item}"


def test_faults_are_retried_recorded_and_resumed(tmp_path: Path, pywb: PywbServer, fault_server: FaultServer,
                                                 fault_server_factory: FaultServerFactory,
                                                 site: tuple[Path, list[Made]]) -> None:
    fault_server.upstream = pywb.base_url
    foreign = fault_server_factory()
    base = fault_server.url("/site")
    fault_server.script(replay_path("/a", "20190501120000"), [Fault.status(429, retry_after=0.01)] * 2)
    fault_server.script(replay_path("/a", "20210615080000"), [Fault.status(503), Fault.status(502)])
    fault_server.script(replay_path("/b", "20200310000000"), Fault.reset_mid_body(after=10))
    fault_server.script(replay_path("/logo.png", "20220202020202"), Fault.short_body(after=100))
    fault_server.script(replay_path("/gz", "20210701000000"), Fault(body=b"tampered once"))
    fault_server.script(replay_path("/missing", "20210101000000"), [Fault(body=b"tampered always")] * 3)
    # the archive "corrects" a 2022 request to its 2024 capture, and sends another one abroad
    fault_server.script(replay_path("/a", TO), Fault.redirect(base + f"/20240220100000id_/{SITE}/a"))
    fault_server.script(replay_path("/moved", "20200101000000"), Fault.redirect(foreign.url("/somewhere")))
    # ... and serves the 2021 revisit of /b by redirecting to the 2020 capture with the same payload
    fault_server.script(replay_path("/b", "20210310000000"), Fault.redirect(base + f"/20200310000000id_/{SITE}/b"))

    summary, workspace, catalog = sync(tmp_path / "ws", base, "site.test", match="host")
    data = summary.as_json()
    assert data["failed_by_reason"] == {"digest-mismatch": 1, "out-of-range": 1, "foreign-redirect": 1}
    assert data["this_run"]["rate_signals"] == 3 and data["this_run"]["retries"] >= 6
    assert not summary.complete
    assert foreign.requests == []  # a redirect off the archive host is recorded, never fetched
    got = keyed(records(catalog))
    assert not [r for r in got.values() if r.capture_time >= "2023-01-01T00:00:00Z"]  # the 2024 capture: not kept
    assert (SITE + "/a", TO) not in got and (SITE + "/moved", "20200101000000") not in got
    mismatch = got[(SITE + "/missing", "20210101000000")]
    assert mismatch.verification == MISMATCH and "does not match the CDX digest" in (mismatch.verification_reason or "")
    assert got[(SITE + "/gz", "20210701000000")].verification == VERIFIED  # wrong once, right on retry
    assert (SITE + "/b", "20210310000000") not in got  # served as the 2020 capture: same record, kept once
    rows = {(r["url"], r["timestamp"]): r for r in catalog.db.query("SELECT * FROM sync_captures")}
    drifted = rows[(SITE + "/a", TO)]
    assert (drifted["state"], drifted["reason"], drifted["served_timestamp"]) == ("failed", "out-of-range",
                                                                                   "20240220100000")
    assert "asked for the capture of 20221231235959" in drifted["detail"]
    revisit = rows[(SITE + "/b", "20210310000000")]
    assert (revisit["state"], revisit["served_timestamp"], revisit["drift_seconds"]) == ("fetched", "20200310000000",
                                                                                          -31536000)
    assert rows[(SITE + "/moved", "20200101000000")]["detail"].endswith("outside the archive host; not followed")

    # the archive behaves again: a re-run retries only what failed, and now completes
    fault_server.clear()
    again, _, catalog = sync(tmp_path / "ws", base, "site.test", match="host")
    assert again.complete and again.fetched_now == 3 and again.failed == 0
    got = keyed(records(catalog))
    assert got[(SITE + "/a", TO)].verification == VERIFIED
    missing = [r for r in records(catalog) if r.url == SITE + "/missing"]
    assert sorted(r.verification for r in missing) == [MISMATCH, VERIFIED]  # the flagged copy stays flagged


def test_repeated_429s_pause_the_source_and_the_job_still_completes(tmp_path: Path, pywb: PywbServer,
                                                                      fault_server: FaultServer) -> None:
    fault_server.upstream = pywb.base_url
    fault_server.script("/site/*", [Fault.status(429)] * 3)
    summary, _, catalog = sync(tmp_path / "ws", fault_server.url("/site"), "http://site.test/a")
    assert summary.complete and summary.pauses >= 1 and summary.rate_signals == 3
    assert len(records(catalog)) == 3  # 2019, 2021 and the last second of 2022


def _identity_answer(pywb: PywbServer, path: str) -> tuple[bytes, dict[str, str]]:
    with requests.Session() as session:
        session.trust_env = False
        resp = session.get(pywb.base_url + path, headers={"Accept-Encoding": "identity"}, allow_redirects=False)
    headers = {k: v for k, v in resp.headers.items() if k.lower() not in ("transfer-encoding", "content-length")}
    return resp.content, headers


def test_archive_that_decodes_gzip_is_transformed_not_corrupt(tmp_path: Path, pywb: PywbServer,
                                                              fault_server: FaultServer) -> None:
    fault_server.upstream = pywb.base_url
    path = replay_path("/gz", "20210701000000")
    body, headers = _identity_answer(pywb, path)
    assert "X-Archive-Orig-Content-Encoding" in headers and "Content-Encoding" not in headers
    fault_server.script(path, Fault.respond(body, headers=headers))
    summary, workspace, catalog = sync(tmp_path / "ws", fault_server.url("/site"), "http://site.test/gz")
    [record] = records(catalog)
    assert record.verification == TRANSFORMED and summary.complete
    assert "decoded Content-Encoding: gzip" in (record.verification_reason or "")
    _, payload, _ = record_at(workspace.resolve(record.warc_file), record.offset)
    assert payload == body and payload.startswith(b"<html>")
    from warcio.archiveiterator import ArchiveIterator

    with open(workspace.resolve(record.warc_file), "rb") as handle:
        handle.seek(record.offset)
        stored = next(iter(ArchiveIterator(handle))).http_headers
    assert stored.get_header("Content-Encoding") is None  # the stored bytes are not gzip any more
    assert stored.get_header("X-Archive-Orig-Content-Encoding") == "gzip"


def test_archive_that_compresses_on_the_fly_is_undone(tmp_path: Path, pywb: PywbServer, fault_server: FaultServer,
                                                     site: tuple[Path, list[Made]]) -> None:
    import gzip

    fault_server.upstream = pywb.base_url
    path = replay_path("/logo.png", "20220202020202")
    body, headers = _identity_answer(pywb, path)
    fault_server.script(path, Fault.respond(gzip.compress(body), headers={**headers, "Content-Encoding": "gzip"}))
    _, workspace, catalog = sync(tmp_path / "ws", fault_server.url("/site"), "http://site.test/logo.png")
    [record] = records(catalog)
    assert record.verification == VERIFIED and "decoded bytes" in (record.verification_reason or "")
    _, payload, _ = record_at(workspace.resolve(record.warc_file), record.offset)
    assert payload == body == next(m.payload for m in site[1] if m.url.endswith("/logo.png"))


def test_capture_time_comes_from_the_answer(tmp_path: Path, pywb: PywbServer, fault_server: FaultServer) -> None:
    fault_server.upstream = pywb.base_url
    fault_server.script(replay_path("/a", "20210615080000"),
                        Fault(headers=(("Memento-Datetime", "Thu, 01 Jun 2023 00:00:00 GMT"),)))
    fault_server.script(replay_path("/a", "20190501120000"), Fault.respond(b"no date", headers={"X": "y"}))
    summary, _, catalog = sync(tmp_path / "ws", fault_server.url("/site"), "http://site.test/a")
    assert summary.failed_by_reason == {"out-of-range": 1, "no-capture-time": 1}
    assert [r.timestamp for r in records(catalog)] == [TO]


# -- the command ------------------------------------------------------------------------------------

def test_cli_json_summary_exit_codes_and_resume(tmp_path: Path, pywb: PywbServer, fault_server: FaultServer) -> None:
    fault_server.upstream = pywb.base_url
    runner = CliRunner()
    ws = str(tmp_path / "ws")
    base = fault_server.url("/site")
    fault_server.script(replay_path("/a", "20210615080000"), [Fault.status(503)] * 10)
    first = runner.invoke(app, ["-w", ws, "sync", base, "http://site.test/a", "--from", "2020", "--json"], env=FAST_ENV)
    assert first.exit_code == 1, first.output
    data = json.loads(first.stdout)
    assert (data["planned"], data["fetched"], data["failed_by_reason"]) == (2, 1, {"http-503": 1})
    assert data["query"] == {"url": "http://site.test/a", "match": "exact", "date_from": "20200101000000",
                             "date_to": TO}
    fault_server.clear()
    resumed = runner.invoke(app, ["-w", ws, "sync", "--resume"], env=FAST_ENV)
    assert resumed.exit_code == 0, resumed.output
    assert "2 fetched" in resumed.stdout and "0 failed" in resumed.stdout
    nothing = runner.invoke(app, ["-w", ws, "sync", "--resume"], env=FAST_ENV)
    assert (nothing.exit_code, nothing.stdout.strip()) == (0, "no unfinished sync jobs")
    bad = runner.invoke(app, ["-w", ws, "sync", "gopher://x", "y"], env=FAST_ENV)
    assert bad.exit_code == 1 and "unknown source" in bad.stderr and "Traceback" not in bad.output
    missing = runner.invoke(app, ["-w", ws, "sync"], env=FAST_ENV)
    assert missing.exit_code == 1 and "give a SOURCE and a URL" in missing.stderr
    wrong = runner.invoke(app, ["-w", ws, "sync", base, "x", "--match", "everything"], env=FAST_ENV)
    assert wrong.exit_code == 1 and "--match must be one of" in wrong.stderr


def test_cli_filters_collapse_and_limit(tmp_path: Path, pywb: PywbServer) -> None:
    runner = CliRunner()
    base = pywb.collection_url("site")
    ws = str(tmp_path / "ws")
    html = runner.invoke(app, ["-w", ws, "sync", base, "site.test", "--match", "host", "--mime", "text/html",
                               "--status", "200", "--json"], env=FAST_ENV)
    assert html.exit_code == 0, html.output
    assert json.loads(html.stdout)["planned"] == 5  # /a ×3, /b 2020, /gz (revisits have no status or mime)
    one_a_year = runner.invoke(app, ["-w", ws, "sync", base, "http://site.test/a", "--collapse", "timestamp:4",
                                     "--to", "2030", "--json"], env=FAST_ENV)
    assert json.loads(one_a_year.stdout)["planned"] == 5  # 2019, 2021, 2022, 2023, 2024
    limited = runner.invoke(app, ["-w", ws, "sync", base, "site.test", "--match", "host", "--limit", "2",
                                  "--filter", "!mimetype:warc/revisit", "--json"], env=FAST_ENV)
    assert json.loads(limited.stdout)["planned"] == 2


def test_cdx_server_with_a_data_url_reads_records_directly(tmp_path: Path, pywb: PywbServer,
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    from servers import RangeFileServer

    with RangeFileServer(pywb.archive_dir("real")) as data:
        monkeypatch.setitem(FAST_ENV, "ARCHIVEKEEPER_CDX_DATA_URL", data.base_url)
        summary, workspace, catalog = sync(tmp_path / "ws", pywb.collection_url("real"), "iana.org", match="domain")
        ranged = len(data.requests)
        # read directly, the three redirects keep their bodies and nothing is served in place of another
        assert (summary.planned, summary.as_json()["verified"], summary.failed) == (182, 182, 0)
        assert ranged == 182 and all("Range" in r.headers for r in data.requests)
        got = records(catalog)
        assert {r.record_type for r in got} == {"response"}
        plain = {(r.url, r.timestamp) for r in got if r.refers_to_url is None}
        assert len(plain) == 51  # the 51 responses stored verbatim; the 131 revisits got their payloads
        # a revisit whose original is not in the workspace: the archive's replay resolves it
        font = "http://www.iana.org/_css/2013.1/fonts/Inconsolata.otf"
        late, _, catalog2 = sync(tmp_path / "ws2", pywb.collection_url("real"), font, date_from="20140126200900")
        assert (late.planned, late.as_json()["verified"]) == (4, 4)
        assert len(data.requests) == ranged  # no range read: replayed
        assert {r.record_type for r in records(catalog2)} == {"response"}


def test_progress_events_and_replan(tmp_path: Path, pywb: PywbServer) -> None:
    events: list[tuple[str, int]] = []
    workspace, catalog = open_ws(tmp_path / "ws")
    query = SyncQuery(url="http://site.test/a", date_to=TO)
    first = run_sync(workspace, catalog, pywb.collection_url("site"), query,
                     progress=lambda event, amount: events.append((event, amount)))
    assert ("total", 3) in events and sum(n for e, n in events if e == "advance") == 3
    assert any(e.startswith("planning: 3 captures") for e, _ in events)
    assert any(e == "3 fetched, 0 failed, 0 skipped" for e, _ in events)  # the bar's description
    again = run_sync(workspace, catalog, pywb.collection_url("site"), query, replan=True)
    assert (again.job_id, again.planned, again.fetched_now, again.complete) == (first.job_id, 3, 0, True)


def test_credentials_in_the_archive_url_are_used_never_recorded(tmp_path: Path, pywb: PywbServer,
                                                                 fault_server: FaultServer) -> None:
    import base64
    import gzip

    fault_server.upstream = pywb.base_url
    secret = "S3cretPassw0rd"
    base = fault_server.url("/site").replace("http://", f"http://archivist:{secret}@")
    runner = CliRunner()
    result = runner.invoke(app, ["-w", str(tmp_path / "ws"), "sync", base, "http://site.test/a", "--json"],
                           env=FAST_ENV)
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["source"] == fault_server.url("/site")
    token = base64.b64encode(f"archivist:{secret}".encode()).decode()
    assert {r.headers["Authorization"] for r in fault_server.requests} == {f"Basic {token}"}
    for path in (tmp_path / "ws").rglob("*"):
        if path.is_file():
            data = gzip.decompress(path.read_bytes()) if path.name.endswith(".warc.gz") else path.read_bytes()
            assert secret.encode() not in data and token.encode() not in data, path
    assert secret not in result.output
