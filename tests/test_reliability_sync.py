"""``sync`` against a real pywb behind this suite's fault server: SIGKILL at seeded points, and every fault of
issue 5, with a second fault server playing a foreign host that must never see a request.

Crash safety: kill the sync (seeded kill points), re-run the same command, and compare with an
uninterrupted run: same captures, each row reading back from the store's WARC files at its offset with its
digest, no capture twice, every WARC file in the store ending in a complete record.

Faults (each run on its own workspace, through ``FaultServer`` in front of pywb): the job completes, or the
capture is reported failed with the right reason; nothing wrong is catalogued as verified (a verified row
genuinely hashes to its record's digest, which is the CDX digest); no post-cutoff capture is catalogued;
the foreign host sees nothing; once the archive behaves, a re-run brings the job to completion.
"""

from __future__ import annotations

import json
import sqlite3
import urllib.parse
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest
from conftest import FaultServerFactory, PywbFactory
from crashkit import (
    Outcome,
    ak_argv,
    check_store,
    check_workspace,
    child_env,
    draw_kill_point,
    kill_group,
    open_catalog,
    profile_run,
    record,
    run_ak,
    run_and_kill,
    same_captures_as,
    scaled,
    seeded,
)
from servers import Fault, FaultServer, PywbServer
from sync_support import SITE, shared_site, sync_archive

CUTOFF = "2023-01-01T00:00:00Z"
FAST = {"FETCHES_PER_SECOND": "0", "CDX_PER_MINUTE": "0", "BACKOFF_BASE": "0.01", "BACKOFF_MAX": "0.05",
        "PAUSE_SECONDS": "0.05", "MAX_RETRIES": "3", "READ_TIMEOUT": "1"}
ENV = {f"ARCHIVEKEEPER_CDX_{key}": value for key, value in FAST.items()}
WAIT = 60.0


@pytest.fixture(scope="module")
def pywb(pywb_factory: PywbFactory, tmp_path_factory: pytest.TempPathFactory, realdata: Path) -> PywbServer:
    site, _ = shared_site(tmp_path_factory.getbasetemp())
    return sync_archive(pywb_factory, realdata, site)


def sync_rows(workspace: Path) -> dict[tuple[str, str], tuple[str, str | None, str | None, str | None]]:
    """(url, timestamp) -> (state, reason, CDX digest, record key) of the job's plan."""
    with open_catalog(workspace) as conn:
        if conn is None:
            return {}
        try:
            rows = conn.execute("SELECT url, timestamp, state, reason, digest, record_key FROM sync_captures")
            found = rows.fetchall()
        except sqlite3.OperationalError:  # killed before the job's tables were created
            return {}
    return {(r[0], r[1]): (r[2], r[3], r[4], r[5]) for r in found}


def check_sync_workspace(workspace: Path, *, in_progress: bool = False) -> list[str]:
    """The workspace invariants, plus: no post-cutoff capture, and every verified row's digest is the CDX
    digest its plan row holds. Returns problems (empty: none)."""
    problems = []
    snapshot = check_workspace(workspace, in_progress=in_progress)
    if not in_progress:
        check_store(workspace, snapshot)
    late = [row for row in snapshot.captures if row[4] >= CUTOFF]
    if late:
        problems.append(f"{len(late)} post-cutoff capture(s) catalogued: {[(r[1], r[3]) for r in late][:3]}")
    plan_digest = {key: digest for (_, _), (_, _, digest, key) in sync_rows(workspace).items() if key}
    for row in snapshot.captures:
        planned = plan_digest.get(row[0])
        if row[17] == "verified" and planned:
            cdx = planned if ":" in planned else f"sha1:{planned}"
            if cdx.upper() != (row[9] or "").upper():
                problems.append(f"verified {row[1]} {row[3]} with digest {row[9]}, the CDX says {cdx}")
    return problems


# -- SIGKILL ---------------------------------------------------------------------------------------------

def test_sync_survives_sigkill(tmp_path: Path, pywb: PywbServer, fault_server_factory: FaultServerFactory) -> None:
    archive = fault_server_factory(pywb.base_url)  # records every request; nothing scripted
    foreign = fault_server_factory()
    env = child_env({**ENV, "ARCHIVEKEEPER_WARC_SIZE_LIMIT": "200000"})
    command = ["sync", archive.url("/real"), "iana.org", "--match", "domain", "--limit", "12", "--json"]
    kill_chains(tmp_path, command, env, "sync iana.org (real pywb)", wanted=scaled(50), seed="sync-crash",
                foreign=foreign)
    assert all(not r.path.startswith("http") for r in archive.requests)


def test_wayback_sync_survives_sigkill(tmp_path: Path, pywb: PywbServer,
                                       fault_server_factory: FaultServerFactory) -> None:
    """``sync wayback`` (IA's CDX dialect and ``/web/<ts>id_/`` replay, emulated over pywb's real WARCs)."""
    from sync_support import IAFront

    foreign = fault_server_factory()
    with IAFront(pywb.base_url, "real") as front:
        env = child_env({**named_env("WAYBACK"), "ARCHIVEKEEPER_WAYBACK_BASE_URL": front.base_url,
                         "ARCHIVEKEEPER_CONTACT": "archivist@example.org", "ARCHIVEKEEPER_WARC_SIZE_LIMIT": "200000"})
        command = ["sync", "wayback", "iana.org", "--match", "domain", "--limit", "10", "--json"]
        kill_chains(tmp_path, command, env, "sync wayback iana.org (IA front over pywb)", wanted=scaled(8),
                    seed="sync-crash-wayback", foreign=foreign)
        assert any(path.startswith("/cdx/search/cdx?") for path in front.seen)


def test_commoncrawl_sync_survives_sigkill(tmp_path: Path, pywb: PywbServer,
                                           fault_server_factory: FaultServerFactory, realdata: Path) -> None:
    """``sync commoncrawl``: collinfo.json, a paged pywb crawl index (the real ZipNum sample) and records
    read by Range from a file server, as data.commoncrawl.org serves them."""
    from servers import RangeFileServer

    foreign = fault_server_factory()
    static = tmp_path / "index-static"
    static.mkdir()
    index = fault_server_factory(pywb.base_url, static_root=static)
    (static / "collinfo.json").write_text(json.dumps([
        {"id": "CC-MAIN-2014-10", "name": "January 2014 Index", "cdx-api": index.url("/zn/cdx"),
         "from": "2014-01-01T00:00:00", "to": "2014-03-01T00:00:00"}]))
    with RangeFileServer(realdata / "pywb" / "sample_archive" / "warcs") as data:
        env = child_env({**named_env("COMMONCRAWL"), "ARCHIVEKEEPER_COMMONCRAWL_BASE_URL": index.base_url,
                         "ARCHIVEKEEPER_COMMONCRAWL_DATA_URL": data.base_url,
                         "ARCHIVEKEEPER_WARC_SIZE_LIMIT": "200000"})
        command = ["sync", "commoncrawl", "iana.org", "--match", "domain", "--limit", "10", "--json"]
        kill_chains(tmp_path, command, env, "sync commoncrawl iana.org (paged index, range reads)",
                    wanted=scaled(8), seed="sync-crash-commoncrawl", foreign=foreign)


def named_env(source: str) -> dict[str, str]:
    """The fast settings of ``ENV`` for a named source (``WAYBACK``, ``COMMONCRAWL``)."""
    return {f"ARCHIVEKEEPER_{source}_{key}": value for key, value in FAST.items()}


def kill_chains(tmp_path: Path, command: list[str], env: dict[str, str], label: str, *, wanted: int, seed: str,
                foreign: FaultServer) -> None:
    """Kill ``command`` at seeded points in chains of 3-7, each chain then run to the end: every run ends like
    an uninterrupted one (same summary counts, same captures), the workspace invariants hold after every
    kill, and the foreign host is never asked anything. Counted in the report under ``label``."""
    reference = tmp_path / "reference"
    outcome, profile = profile_run(ak_argv(reference, *command), reference / "catalog.db-wal", env=env)
    assert outcome.returncode in (0, 1), outcome.describe()
    expected = _end_state(outcome)
    assert expected["complete"] or outcome.returncode == 1, outcome.stdout
    assert not check_sync_workspace(reference)
    want = check_workspace(reference)
    assert len(want.captures) >= 8
    rng = seeded(seed)
    tried = survived = chain = 0
    try:
        while tried < wanted:
            chain += 1
            workspace = tmp_path / f"ws-{chain}"
            argv = ak_argv(workspace, *command, wait=WAIT)
            kills = 0
            for _ in range(rng.randint(3, 7)):
                point = draw_kill_point(rng, profile, workers=False)
                killed, pgid = run_and_kill(argv, point, workspace / "catalog.db-wal", env=env)
                kill_group(pgid)
                if not killed:  # the run finished first: the job is complete, later runs would do nothing
                    break
                kills += 1
                tried += 1
                assert not check_sync_workspace(workspace, in_progress=True)
            final = run_ak(workspace, *command, env=env, wait=WAIT)
            assert final.returncode == outcome.returncode and _end_state(final) == expected, final.describe()
            assert not check_sync_workspace(workspace)
            got = check_workspace(workspace)
            record("sync", "lost", records=len(want.record_keys - got.record_keys))
            diffs = same_captures_as(got, want, files=False)
            assert not diffs, f"chain {chain}: {diffs}"
            survived += kills
    finally:
        record("sync", "kill", label, tried=tried, survived=survived)
        record("sync", "foreign", requests=len(foreign.requests))
    assert survived == tried >= wanted


def _end_state(outcome: Outcome) -> dict[str, object]:
    """What a finished run's ``--json`` summary says of the whole job (not of this run)."""
    summary = json.loads(outcome.stdout)
    keys = ("planned", "fetched", "verified", "mismatch", "unverifiable", "skipped", "failed", "failed_by_reason",
            "complete")
    return {key: summary[key] for key in keys}


# -- faults ----------------------------------------------------------------------------------------------

def replay(item: str, ts: str) -> str:
    return f"/site/{ts}id_/{SITE}{item}"


A2019 = replay("/a", "20190501120000")


@dataclass(frozen=True)
class Case:
    """A fault, how to script it, and what the capture it hits must end as (``None``: fetched)."""

    name: str
    script: Callable[[FaultServer, FaultServer], None]
    reason: str | None = None  # the failure reason the plan row must carry
    target: tuple[str, str] = (SITE + "/a", "20190501120000")


def _cdx_answer(archive: FaultServer, pywb: PywbServer, workspace: Path, env: dict[str, str]) -> tuple[str, bytes]:
    """The CDX request a sync of site.test makes, and pywb's answer to it."""
    archive.clear()
    run_ak(workspace, "sync", archive.url("/site"), "site.test", "--match", "host", env=env)
    path = next(r.path for r in archive.requests if urllib.parse.urlsplit(r.path).path == "/site/cdx")
    with urllib.request.build_opener(urllib.request.ProxyHandler({})).open(pywb.base_url + path) as answer:
        body = answer.read()
    archive.clear()
    return path, body


def _redirect_loop(archive: FaultServer) -> None:
    archive.script(A2019, [Fault.redirect(archive.url(A2019 + "?x"))] * 40)
    archive.script(A2019 + "?x", [Fault.redirect(archive.url(A2019))] * 40)


CASES = [
    Case("429 with Retry-After", lambda a, f: a.script(A2019, [Fault.status(429, retry_after=0.01)] * 2)),
    Case("429 without Retry-After", lambda a, f: a.script(A2019, [Fault.status(429)] * 2)),
    *(Case(f"{code}", lambda a, f, code=code: a.script(A2019, [Fault.status(code)] * 2))  # type: ignore[misc]
      for code in (500, 502, 503, 504)),
    Case("503 every time", lambda a, f: a.script(A2019, [Fault.status(503)] * 20), reason="http-503"),
    Case("connection reset before the body", lambda a, f: a.script(A2019, [Fault.reset()] * 2)),
    Case("connection reset mid-body", lambda a, f: a.script(A2019, [Fault.reset_mid_body(after=10)] * 2)),
    Case("body shorter than Content-Length", lambda a, f: a.script(A2019, [Fault.short_body(after=20)] * 2)),
    Case("stalled read (timeout)", lambda a, f: a.script(A2019, Fault.stall(2.0, after=10))),
    Case("wrong digest", lambda a, f: a.script(A2019, [Fault(body=b"tampered with")] * 20),
         reason="digest-mismatch"),
    Case("redirect loop", lambda a, f: _redirect_loop(a), reason="too-many-redirects"),
    Case("redirect to a foreign host", lambda a, f: a.script(A2019, [Fault.redirect(f.url("/elsewhere"))] * 20),
         reason="foreign-redirect"),
    Case("redirect to a post-cutoff capture",
         lambda a, f: a.script(A2019, [Fault.redirect(a.url(replay("/a", "20240220100000")))] * 20),
         reason="out-of-range"),
]


def _check_case(case: Case, outcome: Outcome, workspace: Path, foreign: FaultServer) -> list[str]:
    problems = []
    try:
        outcome.assert_clean_failure_or_success()
    except AssertionError as exc:
        problems.append(str(exc))
    problems += check_sync_workspace(workspace)
    if foreign.requests:
        problems.append(f"the foreign host got {len(foreign.requests)} request(s)")
    rows = sync_rows(workspace)
    state, reason, _, _ = rows.get(case.target, ("absent", None, None, None))
    if case.reason is None and state != "fetched":
        problems.append(f"{case.target} ended {state} ({reason}), not fetched")
    if case.reason is not None and (state, reason) != ("failed", case.reason):
        problems.append(f"{case.target} ended {state} ({reason}), not failed ({case.reason})")
    return problems


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.name)
def test_sync_fault(tmp_path: Path, pywb: PywbServer, fault_server_factory: FaultServerFactory, case: Case) -> None:
    archive = fault_server_factory(pywb.base_url)
    foreign = fault_server_factory()
    env = child_env(ENV)
    workspace = tmp_path / "ws"
    case.script(archive, foreign)
    outcome = run_ak(workspace, "sync", archive.url("/site"), "site.test", "--match", "host", "--json", env=env)
    problems = _check_case(case, outcome, workspace, foreign)
    if not any(r.fault is not None for r in archive.requests):
        problems.append("the fault was never served (the scripted path was not requested)")
    archive.clear()  # the archive behaves again: the same command completes the job
    again = run_ak(workspace, "sync", archive.url("/site"), "site.test", "--match", "host", "--json", env=env)
    if again.returncode != 0 or not json.loads(again.stdout or b"{}").get("complete"):
        problems.append(f"the re-run did not complete: {again.describe()}")
    problems += check_sync_workspace(workspace)
    record("sync", "fault", case.name, injected=1, handled=int(not problems))
    record("sync", "foreign", requests=len(foreign.requests))
    assert not problems, problems


@pytest.mark.parametrize("damage", ["malformed lines", "page ends mid-line", "short CDX body"])
def test_sync_survives_a_broken_cdx_answer(tmp_path: Path, pywb: PywbServer,
                                           fault_server_factory: FaultServerFactory, damage: str) -> None:
    """A CDX answer with garbage lines, or cut in the middle of a line: no garbage is planned or catalogued,
    the bad lines are counted or the page is retried, and a clean answer later completes the job."""
    archive = fault_server_factory(pywb.base_url)
    foreign = fault_server_factory()
    env = child_env(ENV)
    path, body = _cdx_answer(archive, pywb, tmp_path / "probe", env)
    lines = body.splitlines(keepends=True)
    assert len(lines) > 4, body
    if damage == "malformed lines":
        garbage = [b"{not json\n", b"\x00\xff\xfe garbage\n", b'{"urlkey": "test,site)/x"}\n',
                   b'{"urlkey": "test,site)/a", "timestamp": "2024", "url": "http://site.test/a"}\n', b"\n"]
        mangled = b"".join(lines[:2] + garbage + lines[2:])
        archive.script(path, [Fault.respond(mangled, headers={"Content-Type": "text/x-ndjson"})] * 5)
    elif damage == "page ends mid-line":
        cut = len(b"".join(lines[:3])) + len(lines[3]) // 2
        archive.script(path, [Fault.respond(body[:cut], headers={"Content-Type": "text/x-ndjson"})] * 5)
    else:
        archive.script(path, [Fault.short_body(after=len(body) // 2)] * 2)
    workspace = tmp_path / "ws"
    outcome = run_ak(workspace, "sync", archive.url("/site"), "site.test", "--match", "host", "--json", env=env)
    problems: list[str] = []
    try:
        outcome.assert_clean_failure_or_success()
    except AssertionError as exc:
        problems.append(str(exc))
    problems += check_sync_workspace(workspace)
    planned = sync_rows(workspace)
    junk = [key for key in planned if not key[0].startswith(SITE) or len(key[1]) != 14]
    if junk:
        problems.append(f"garbage planned: {junk}")
    if not any(r.fault is not None for r in archive.requests):
        problems.append("the damaged CDX answer was never served")
    archive.clear()
    again = run_ak(workspace, "sync", archive.url("/site"), "site.test", "--match", "host", "--replan", "--json",
                   env=env)
    if again.returncode != 0 or not json.loads(again.stdout or b"{}").get("complete"):
        problems.append(f"the re-run did not complete: {again.describe()}")
    problems += check_sync_workspace(workspace)
    record("sync", "fault", f"CDX {damage}", injected=1, handled=int(not problems))
    record("sync", "foreign", requests=len(foreign.requests))
    assert not problems, problems
