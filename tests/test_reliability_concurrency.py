"""Two archivekeeper processes on one workspace: the writer lock makes the second wait or fail with a clear
message, never corrupt; writers started together end in the state of one sequential run; readers and a
cutoff change do not spoil what a running import writes."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
from datetime import UTC, datetime
from pathlib import Path

from crashkit import (
    ak_argv,
    check_workspace,
    child_env,
    kill_group,
    real_inputs,
    record,
    run_ak,
    same_captures_as,
    scaled,
    seeded,
    wait_for,
)

from archivekeeper.catalog import Catalog
from archivekeeper.demo import generate_sample_archive
from archivekeeper.importer import Importer
from archivekeeper.workspace import Workspace

LOCKED = "in use by another archivekeeper process"


def _start(argv: list[str]) -> subprocess.Popen[bytes]:
    return subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            env=child_env(), start_new_session=True)


def _hold_lock_mid_import(workspace: Path, paths: list[str]) -> subprocess.Popen[bytes] | None:
    """Start an import and freeze it (SIGSTOP) the moment it holds the workspace lock; None if it finished
    before it could be caught (the caller retries)."""
    proc = _start(ak_argv(workspace, "import", *paths))
    lock = workspace / ".lock"

    def holds() -> bool:
        try:
            return lock.read_text().strip() == str(proc.pid) or proc.poll() is not None
        except OSError:
            return False

    wait_for(holds, timeout=60, interval=0.0005)
    if proc.poll() is not None:
        proc.communicate()
        return None
    os.kill(proc.pid, signal.SIGSTOP)
    return proc


def test_a_second_writer_fails_with_one_clear_line_or_waits_for_the_first(tmp_path: Path) -> None:
    inputs = tmp_path / "inputs"
    generate_sample_archive(inputs, seed=41, scale=4)
    first = [str(inputs)]
    second = [str(p) for p in real_inputs() if p.name in {"iana.warc.gz", "dupes.warc.gz"}]
    holder = None
    for attempt in range(10):
        holder = _hold_lock_mid_import(tmp_path / f"ws-{attempt}", first)
        if holder is not None:
            workspace = tmp_path / f"ws-{attempt}"
            break
    assert holder is not None, "the first import always finished before it could be frozen"
    handled = 0
    try:
        for wait in (None, 0.3):
            rival = run_ak(workspace, "import", *second, wait=wait)
            assert rival.returncode == 1, rival.describe()
            assert rival.text.count("\n") == 1 and LOCKED in rival.text and "Traceback" not in rival.text
            handled += 1
        waiter = _start(ak_argv(workspace, "import", *second, wait=600))
        os.kill(holder.pid, signal.SIGCONT)
        assert holder.wait(timeout=300) == 0, holder.communicate()
        out, err = waiter.communicate(timeout=300)
        assert waiter.returncode == 0, err.decode()
        handled += 1
    finally:
        kill_group(holder.pid)
        record("import", "fault", "second writer on a locked workspace", injected=3, handled=handled)
    got = check_workspace(workspace)
    reference = tmp_path / "reference"
    assert run_ak(reference, "import", *first).returncode == 0
    assert run_ak(reference, "import", *second).returncode == 0
    assert not got.same_records_as(check_workspace(reference))


def test_writers_started_together_end_as_one_sequential_run(tmp_path: Path) -> None:
    """Three imports of overlapping inputs launched at once, all with --wait: whatever order the lock hands
    them out in, the catalog ends as a sequential run leaves it."""
    gen = generate_sample_archive(tmp_path / "gen", seed=42, scale=2)
    real = [str(p) for p in real_inputs()]
    rng = seeded("concurrent-writers")
    rounds = scaled(2)
    handled = 0
    for number in range(rounds):
        everything = [str(p) for p in gen] + real
        subsets = [rng.sample(everything, k=len(everything) // 2) for _ in range(3)]
        workspace = tmp_path / f"ws-{number}"
        procs = [_start(ak_argv(workspace, "import", *subset, "--jobs", "1", wait=600)) for subset in subsets]
        try:
            codes = [proc.wait(timeout=600) for proc in procs]
            errors = [proc.communicate()[1].decode() for proc in procs]
        finally:
            for proc in procs:
                kill_group(proc.pid)
        assert all("Traceback" not in e and LOCKED not in e for e in errors), errors
        reference = tmp_path / f"reference-{number}"
        for subset in subsets:
            run_ak(reference, "import", *subset, "--jobs", "1")
        diffs = same_captures_as(check_workspace(workspace), check_workspace(reference))
        assert not diffs, diffs
        assert all(code in (0, 1) for code in codes), codes
        handled += 3
    record("import", "fault", "writers started together (--wait)", injected=3 * rounds, handled=handled)


def test_a_cutoff_change_during_an_import_leaves_no_wrong_pre_cutoff_flags(tmp_path: Path) -> None:
    """``ARCHIVEKEEPER_CUTOFF=2021 archivekeeper stats`` run while an import (cutoff 2023) is under way: the
    reader opens the catalog, recomputes every flag and stores cutoff 2021 (no workspace lock needed for a
    reader), then the import goes on inserting 2021-2022 captures as pre-cutoff. The catalog now says
    2021 but holds post-cutoff captures flagged pre-cutoff; an export with cutoff 2021 finds the meta
    current and would ship them as pre-cutoff."""
    inputs = generate_sample_archive(tmp_path / "in", seed=43, scale=1)
    workspace = Workspace.open(tmp_path / "ws")
    importing = Catalog.open(workspace.catalog_path, datetime(2023, 1, 1, tzinfo=UTC))  # the import's catalog
    Catalog.open(workspace.catalog_path, datetime(2021, 1, 1, tzinfo=UTC)).close()  # the reader's, meanwhile
    Importer(workspace, importing, jobs=1).run([str(p) for p in inputs])
    importing.close()
    check_workspace(workspace.root)


def test_readers_answer_while_a_writer_holds_a_transaction(tmp_path: Path) -> None:
    """``stats`` while another process is inside a write transaction (a long chunk, an import suspended with
    Ctrl-Z, an ``init --cutoff`` on a big catalog): WAL lets readers read the last committed state, but
    opening the catalog asks for the write lock, so ``stats`` waits the 30 s busy timeout and fails with
    "database is locked"."""
    generate_sample_archive(tmp_path / "in", seed=44, scale=1)
    assert run_ak(tmp_path / "ws", "import", str(tmp_path / "in")).returncode == 0
    writer = sqlite3.connect(tmp_path / "ws" / "catalog.db", isolation_level=None)
    try:
        writer.execute("BEGIN IMMEDIATE")
        writer.execute("DELETE FROM year_counts")
        # today it waits out SQLite's 30 s busy timeout and fails; 10 s is plenty for an answer from a snapshot
        stats = run_ak(tmp_path / "ws", "stats", "--json", timeout=10)
    finally:
        writer.execute("ROLLBACK")
        writer.close()
    assert stats.returncode == 0, stats.describe()


def test_a_reader_racing_the_first_writer_on_a_new_workspace_sees_an_empty_catalog(tmp_path: Path) -> None:
    """Two commands started at once on a new workspace: the first creates catalog.db and is about to write the
    schema when the second (``stats``) opens it read-only and fails. Reproduced deterministically with the
    file as the first process leaves it after ``sqlite3.connect`` + WAL mode: an empty database."""
    workspace = tmp_path / "ws"
    assert run_ak(workspace, "init").returncode == 0
    for leftover in workspace.glob("catalog.db*"):
        leftover.unlink()
    conn = sqlite3.connect(workspace / "catalog.db")
    conn.execute("PRAGMA journal_mode=WAL")
    conn.close()
    outcome = run_ak(workspace, "query", "--count")
    assert outcome.returncode == 0 and outcome.stdout.strip() == b"0", outcome.describe()
