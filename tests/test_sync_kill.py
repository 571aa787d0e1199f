"""kill -9 a sync at any moment; the re-run must end with exactly the expected records, each readable.

Two kinds of kill: at moments chosen by watching the catalog grow (a real ``archivekeeper`` process
killed with SIGKILL mid-planning and mid-fetching, several times over), and at exact points inside
the crash windows — between the fsync of a batch and its catalog commit, in the middle of writing a
record, between a file's rename and its catalog update — by a process that SIGKILLs itself there.
"""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import PywbFactory
from servers import Fault, FaultServer, PywbServer
from sync_support import all_records, record_at, shared_site, sync_archive
from test_sync import FAST_ENV

from archivekeeper.catalog import Catalog
from archivekeeper.digests import sha1_base32
from archivekeeper.models import Selection
from archivekeeper.sources import SyncQuery
from archivekeeper.sync import run_sync
from archivekeeper.warcstore import OPEN_SUFFIX
from archivekeeper.workspace import Workspace

REPO = Path(__file__).resolve().parents[1]
ENV = {**FAST_ENV, "ARCHIVEKEEPER_WARC_SIZE_LIMIT": "150000", "ARCHIVEKEEPER_CUTOFF": "2023-01-01"}
SMALL = ("--limit", "60")  # the crash-window cases need only a few files' worth

#: runs the CLI, after patching one function to SIGKILL the process on its Nth call
KILLER = """
import os, signal, sys, importlib
module_name, qualname, nth = os.environ["AK_KILL_IN"].split(":")
module = importlib.import_module(module_name)
owner_name, _, func_name = qualname.rpartition(".")
owner = getattr(module, owner_name) if owner_name else module
original = getattr(owner, func_name)
calls = [0]
def killing(*args, **kwargs):
    calls[0] += 1
    if calls[0] == int(nth):
        if os.environ.get("AK_KILL_HALF"):      # write half of what was asked, then die
            args[0].handle.write(args[1][: len(args[1]) // 2]); args[0].handle.flush()
        os.kill(os.getpid(), signal.SIGKILL)
    return original(*args, **kwargs)
setattr(owner, func_name, killing)
from archivekeeper.cli import app
sys.argv = ["archivekeeper", *sys.argv[1:]]
app()
"""


@pytest.fixture(scope="module")
def pywb(pywb_factory: PywbFactory, realdata: Path, tmp_path_factory: pytest.TempPathFactory) -> PywbServer:
    return sync_archive(pywb_factory, realdata, shared_site(tmp_path_factory.getbasetemp())[0])


def command(ws: Path, base: str, *extra: str) -> list[str]:
    return ["-w", str(ws), "sync", base, "iana.org", "--match", "domain", "--concurrency", "2", "--json", *extra]


def start(args: list[str], kill_in: str | None = None, half: bool = False) -> subprocess.Popen[bytes]:
    env = {**os.environ, **ENV}
    code = ["-c", KILLER] if kill_in else ["-m", "archivekeeper"]
    if kill_in:
        env["AK_KILL_IN"] = kill_in
    if half:
        env["AK_KILL_HALF"] = "1"
    return subprocess.Popen([sys.executable, *code, *args], env=env, cwd=REPO, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE)


def count(ws: Path, sql: str) -> int:
    db = ws / "catalog.db"
    if not db.exists():
        return 0
    try:
        with sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=5) as conn:
            return int(conn.execute(sql).fetchone()[0])
    except sqlite3.OperationalError:  # tables not created yet
        return 0


def kill_when(proc: subprocess.Popen[bytes], ws: Path, sql: str, at_least: int) -> None:
    """SIGKILL ``proc`` as soon as ``sql`` counts ``at_least`` (a condition, not a time)."""
    deadline = time.monotonic() + 120  # only a guard against a hung test
    while proc.poll() is None and count(ws, sql) < at_least:
        assert time.monotonic() < deadline, "the sync never got there"
        time.sleep(0.005)
    proc.kill()
    proc.wait()
    assert proc.returncode == -signal.SIGKILL, "the sync finished before it could be killed"


def finish(ws: Path, base: str, *extra: str) -> None:
    done = subprocess.run([sys.executable, "-m", "archivekeeper", *command(ws, base, *extra)],
                          env={**os.environ, **ENV}, cwd=REPO, capture_output=True, timeout=300)
    assert done.returncode == 0, done.stderr.decode()


Identity = tuple[str, str, str | None, str]


def identities(catalog: Catalog) -> set[Identity]:
    """What a record is, whichever URL the archive was reached at (record ids include the source)."""
    return {(r.url, r.capture_time, r.payload_sha1, r.verification) for r in catalog.query(Selection())}


def check_workspace(ws: Path, reference: set[Identity]) -> None:
    """Exactly the reference records; each readable at its offset; nothing uncatalogued or doubled."""
    workspace = Workspace.open(ws, env=ENV)
    catalog = Catalog.open(workspace.catalog_path, workspace.settings.cutoff)
    records = list(catalog.query(Selection()))
    assert identities(catalog) == reference and len(records) == len(reference)
    for record in records:
        headers, payload, _ = record_at(workspace.resolve(record.warc_file), record.offset)
        assert headers["WARC-Record-ID"] == record.record_id and headers["WARC-Target-URI"] == record.url
        assert headers["WARC-Date"] == record.capture_time and sha1_base32(payload) == record.payload_sha1
    stored = [h for _, h in all_records(workspace.store_dir) if h["WARC-Type"] == "response"]
    assert sorted(h["WARC-Record-ID"] for h in stored) == sorted(r.record_id for r in records)  # type: ignore[type-var]
    assert not list(workspace.store_dir.rglob("*" + OPEN_SUFFIX))
    files = list(catalog.db.query("SELECT path, status, size, records FROM files"))
    assert {f["status"] for f in files} == {"complete"}
    assert all(workspace.resolve(f["path"]).stat().st_size == f["size"] for f in files)
    assert sum(f["records"] for f in files) == len(records)
    states = dict(catalog.conn.execute("SELECT state, count(*) FROM sync_captures GROUP BY state").fetchall())
    assert set(states) <= {"fetched", "skipped"}
    catalog.close()


@pytest.fixture(scope="module")
def reference(pywb: PywbServer, tmp_path_factory: pytest.TempPathFactory) -> dict[str, set[Identity]]:
    """The records of uninterrupted runs of the same jobs (in-process: the same library)."""
    out = {}
    for name, collection, limit in (("real", "real", None), ("small", "real", 60), ("zn", "zn", 1000)):
        workspace = Workspace.open(tmp_path_factory.mktemp("reference") / "ws", env=ENV)
        catalog = Catalog.open(workspace.catalog_path, workspace.settings.cutoff)
        query = SyncQuery(url="iana.org", match="domain", date_to="20221231235959", limit=limit)
        assert run_sync(workspace, catalog, pywb.collection_url(collection), query).complete
        out[name] = identities(catalog)
        catalog.close()
    assert (len(out["real"]), len(out["small"])) == (179, 59)  # 60 planned, 1 served-other-capture
    return out


def test_killed_again_and_again_while_fetching(tmp_path: Path, pywb: PywbServer, fault_server: FaultServer,
                                               reference: dict[str, set[Identity]]) -> None:
    fault_server.upstream = pywb.base_url
    fault_server.script("/real/2*", [Fault(delay=0.01)] * 2000)  # slow replays, so there is a "mid-job"
    ws = tmp_path / "ws"
    base = fault_server.url("/real")
    for at_least in (5, 60, 120):
        kill_when(start(command(ws, base)), ws, "SELECT count(*) FROM captures", at_least)
    finish(ws, base)
    check_workspace(ws, reference["real"])


def test_killed_while_planning_page_by_page(tmp_path: Path, pywb: PywbServer, fault_server: FaultServer,
                                            reference: dict[str, set[Identity]]) -> None:
    fault_server.upstream = pywb.base_url
    fault_server.script("/zn/cdx", [Fault(delay=0.05)] * 200)  # slow CDX pages (ZipNum: paged)
    ws = tmp_path / "ws"
    base = fault_server.url("/zn")
    planned = "SELECT count(*) FROM sync_captures"
    kill_when(start(command(ws, base, "--limit", "1000")), ws, planned, 20)
    assert count(ws, "SELECT count(*) FROM sync_jobs WHERE planned = 0 AND plan_cursor IS NOT NULL") == 1
    first = count(ws, planned)
    kill_when(start(command(ws, base, "--limit", "1000")), ws, planned, first + 20)
    pages_before = len(fault_server.requests_to("/zn/cdx"))
    finish(ws, fault_server.url("/zn") + "/", "--limit", "1000")  # the same job: the base URL is normalised
    resumed_pages = [r for r in fault_server.requests_to("/zn/cdx")[pages_before:]]
    assert resumed_pages and not any("showNumPages" in r.path for r in resumed_pages)  # went on from the cursor
    check_workspace(ws, reference["zn"])


@pytest.mark.parametrize(("kill_in", "half"), [
    ("archivekeeper.warcstore:WarcStore.mark_committed:3", False),  # records fsynced, rows not committed
    ("archivekeeper.warcstore:_Output.write:40", True),  # in the middle of writing a record
    ("archivekeeper.warcstore:_fsync_dir:2", False),  # a full file renamed, the catalog not told yet
    ("archivekeeper.warcstore:_fsync_dir:3", False),  # the next file created, not yet in the catalog
], ids=["before-commit", "mid-record", "after-rename", "before-register"])
def test_killed_inside_each_crash_window(tmp_path: Path, pywb: PywbServer, kill_in: str, half: bool,
                                         reference: dict[str, set[Identity]]) -> None:
    ws = tmp_path / "ws"
    base = pywb.collection_url("real")
    proc = start(command(ws, base, *SMALL), kill_in=kill_in, half=half)
    proc.wait(timeout=300)
    assert proc.returncode == -signal.SIGKILL, proc.stderr.read().decode() if proc.stderr else ""
    finish(ws, base, *SMALL)
    check_workspace(ws, reference["small"])


@pytest.mark.parametrize("size_limit", ["150000", "1073741824"], ids=["mid-job-rotation", "end-of-job"])
def test_killed_right_after_a_file_is_renamed(tmp_path: Path, pywb: PywbServer, size_limit: str,
                                              reference: dict[str, set[Identity]]) -> None:
    """``_finish`` renames ``X.warc.gz.open`` → ``X.warc.gz``, fsyncs the directory, then tells the catalog.
    Killed at that directory fsync (its 2nd call: the 1st created the file) — a full file rotated mid-job,
    or the only file finished at the end of the job — the catalog still names ``X.warc.gz.open``: the
    re-run must find the file under its final name, finish it and leave every record readable where the
    catalog says."""
    import crashkit

    ws = tmp_path / "ws"
    args = command(ws, pywb.collection_url("real"), *SMALL)[2:]
    env = crashkit.child_env({**ENV, "ARCHIVEKEEPER_WARC_SIZE_LIMIT": size_limit})
    killed = crashkit.run_killed_at("archivekeeper.warcstore:_fsync_dir#2", ws, *args, env=env)
    assert killed.returncode == -signal.SIGKILL, killed.describe()
    with crashkit.open_catalog(ws) as conn:
        assert conn is not None
        writing = conn.execute("SELECT path FROM files WHERE status = 'writing'").fetchall()
    assert [Path(p).name.endswith(OPEN_SUFFIX) for (p,) in writing] == [True]  # the window: renamed, not told
    assert not (ws / writing[0][0]).exists() and (ws / writing[0][0].removesuffix(OPEN_SUFFIX)).exists()
    crashkit.check_workspace(ws, in_progress=True)  # even now every catalogued record reads back

    rerun = crashkit.run_ak(ws, *args, env=env)
    assert rerun.returncode == 0, rerun.describe()
    snapshot = crashkit.check_workspace(ws)  # offsets, digests, no key twice, counts, cutoff flags
    assert crashkit.check_store(ws, snapshot) >= 1  # complete files, no .open left
    assert all(not f[0].endswith(OPEN_SUFFIX) and f[3] == "complete" for f in snapshot.files)
    assert any("finished with" in line for line in rerun.json()["recovered"])
    check_workspace(ws, reference["small"])
