"""The ``wayback`` source: IA's CDX dialect (JSON arrays, resumeKey paging, statuscode '-') over real replay."""

from __future__ import annotations

import json
import urllib.parse
from pathlib import Path

import pytest
from conftest import PywbFactory
from servers import PywbServer
from sync_support import SITE, IAFront, Made, pre_cutoff, shared_site, sync_archive
from test_sync import FAST_ENV
from typer.testing import CliRunner

from archivekeeper import __version__
from archivekeeper.catalog import Catalog
from archivekeeper.cli import app
from archivekeeper.models import VERIFIED, Selection
from archivekeeper.sources import wayback
from archivekeeper.workspace import Workspace


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[Made]]:
    return shared_site(tmp_path_factory.getbasetemp())


@pytest.fixture(scope="module")
def pywb(pywb_factory: PywbFactory, site: tuple[Path, list[Made]], realdata: Path) -> PywbServer:
    return sync_archive(pywb_factory, realdata, site[0])


@pytest.fixture
def front(pywb: PywbServer) -> object:
    with IAFront(pywb.base_url, "site") as running:
        yield running


def test_wayback_plans_with_resume_keys_and_replays_id_(tmp_path: Path, front: IAFront,
                                                       site: tuple[Path, list[Made]],
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(wayback, "PAGE_SIZE", 3)  # force several CDX pages
    env = {**FAST_ENV, "ARCHIVEKEEPER_WAYBACK_BASE_URL": front.base_url,
           "ARCHIVEKEEPER_CONTACT": "archivist@example.org"}
    result = CliRunner().invoke(app, ["-w", str(tmp_path / "ws"), "sync", "wayback", "site.test", "--match", "host",
                                      "--json"], env=env)
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    expected = pre_cutoff(site[1])
    assert (data["planned"], data["fetched"], data["source"]) == (len(expected), len(expected), "wayback")
    cdx_calls = [urllib.parse.parse_qs(urllib.parse.urlsplit(p).query) for p in front.seen if p.startswith("/cdx")]
    assert len(cdx_calls) == -(-len(expected) // 3)  # one call per page of 3, chained by resumeKey
    assert [c.get("resumeKey", [None])[0] for c in cdx_calls] == [None, *[str(3 * i) for i in range(1, len(cdx_calls))]]
    first = cdx_calls[0]
    assert first["output"] == ["json"] and first["showResumeKey"] == ["true"] and first["to"] == ["20221231235959"]
    assert first["fl"] == ["urlkey,timestamp,original,mimetype,statuscode,digest,length"]
    assert all(p.startswith(("/cdx/search/cdx?", "/web/")) for p in front.seen)
    assert all(ua == f"archivekeeper/{__version__} (+archivist@example.org)" for ua in front.user_agents)
    workspace = Workspace.open(tmp_path / "ws", env=env)
    catalog = Catalog.open(workspace.catalog_path, workspace.settings.cutoff)
    got = {(r.url, r.timestamp): r for r in catalog.query(Selection(source="wayback"))}
    assert set(got) == {(m.url, m.timestamp) for m in expected}
    revisit = got[(SITE + "/b", "20210310000000")]  # IA lists it as warc/revisit with status '-'
    assert revisit.record_type == "response" and revisit.verification == VERIFIED
    plan = {r["timestamp"]: r for r in catalog.db.query("SELECT * FROM sync_captures WHERE url = ?", [SITE + "/b"])}
    assert plan["20210310000000"]["mime"] == "warc/revisit" and plan["20210310000000"]["status"] is None


def test_wayback_filters_in_ia_dialect_and_warns_without_contact(tmp_path: Path, front: IAFront) -> None:
    env = {**FAST_ENV, "ARCHIVEKEEPER_WAYBACK_BASE_URL": front.base_url}
    result = CliRunner().invoke(app, ["-w", str(tmp_path / "ws"), "sync", "wayback", "site.test", "--match", "host",
                                      "--status", "200", "--mime", "text/html", "--collapse", "digest"], env=env)
    assert result.exit_code == 0, result.output
    query = urllib.parse.parse_qs(urllib.parse.urlsplit(front.seen[0]).query)
    assert query["filter"] == ["statuscode:200", "mimetype:text/html"] and query["collapse"] == ["digest"]
    assert "no contact configured" in result.stderr
    assert "5 planned, 5 fetched" in result.stdout  # /a 2019, 2021, 2022, /b 2020 and /gz: no two alike in a row
