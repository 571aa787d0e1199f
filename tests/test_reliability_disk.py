"""Out of disk and unwritable stores: one clear error line, a consistent catalog, nothing already stored lost.

A full disk is simulated with ``RLIMIT_FSIZE`` in the child (writes past the limit fail with EFBIG, which
SQLite reports as an I/O error), at seeded limits spread from "cannot even open the catalog" to "fails
on the last commit"; an unwritable store with a file where a directory should be, and with read-only
directories (the child drops root with ``setpriv`` when the suite runs as root, which ignores modes).
"""

from __future__ import annotations

import hashlib
import os
import shutil
import stat
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from crashkit import (
    Limits,
    Outcome,
    Snapshot,
    ak_argv,
    check_store,
    check_workspace,
    child_env,
    real_inputs,
    record,
    run_ak,
    run_argv,
    scaled,
    seeded,
)

from archivekeeper.demo import generate_sample_archive

NOBODY = 65534


def assert_one_clear_error(outcome: Outcome) -> None:
    """Failed with one-line ``archivekeeper: error:`` messages that name the problem, not an internal error."""
    outcome.assert_clean_failure_or_success()
    assert outcome.returncode != 0, outcome.describe()
    lines = outcome.text.strip().splitlines()
    assert lines, f"failed without a word: {outcome.describe()}"
    for line in lines:
        assert line.startswith("archivekeeper: error: ") and "internal error" not in line, outcome.describe()


def keeps(got: Snapshot, before: Snapshot) -> None:
    missing = before.record_keys - got.record_keys
    assert not missing, f"{len(missing)} records catalogued before the failure are gone"


@pytest.fixture(scope="module")
def inputs(tmp_path_factory: pytest.TempPathFactory) -> tuple[list[str], list[str]]:
    """(already imported, imported when the disk fills)."""
    root = tmp_path_factory.mktemp("disk-inputs")
    first = generate_sample_archive(root / "first", seed=51, scale=1)
    second = generate_sample_archive(root / "second", seed=52, scale=2)
    iana = [str(p) for p in real_inputs() if p.name == "iana.warc.gz"]
    return [str(p) for p in first], [str(p) for p in second] + iana


@pytest.mark.parametrize("copy", [False, True], ids=["referenced", "copied"])
def test_a_full_disk_mid_import_is_one_clear_error_and_loses_nothing(
        tmp_path: Path, inputs: tuple[list[str], list[str]], copy: bool) -> None:
    first, second = inputs
    options = ["--copy"] if copy else []
    base = tmp_path / "base"
    assert run_ak(base, "import", *options, *first).returncode == 0
    before = check_workspace(base)
    reference = tmp_path / "reference"
    shutil.copytree(base, reference)
    assert run_ak(reference, "import", *options, *second).returncode == 0
    want = check_workspace(reference)
    biggest = max(p.stat().st_size for p in reference.rglob("*") if p.is_file())
    rng = seeded("full-disk", copy)
    limits = sorted({rng.randint(0, biggest) for _ in range(scaled(3))} | {0, 4096})
    handled = 0
    try:
        for number, limit in enumerate(limits):
            workspace = tmp_path / f"ws-{number}"
            shutil.copytree(base, workspace)
            outcome = run_ak(workspace, "import", *options, *second, limits=Limits(file_size=limit))
            if outcome.returncode != 0:
                assert_one_clear_error(outcome)
            got = check_workspace(workspace, in_progress=True)
            keeps(got, before)
            check_store(workspace, got) if outcome.returncode == 0 else None
            rerun = run_ak(workspace, "import", *options, *second)
            assert rerun.returncode == 0, rerun.describe()
            final = check_workspace(workspace)
            check_store(workspace, final)
            assert not final.same_records_as(want), (limit, final.same_records_as(want))
            handled += 1
    finally:
        record("import", "fault", "disk full (RLIMIT_FSIZE)", injected=len(limits), handled=handled)


def test_a_blocked_store_path_is_one_clear_error(tmp_path: Path,
                                                                  inputs: tuple[list[str], list[str]]) -> None:
    first, second = inputs
    workspace = tmp_path / "ws"
    assert run_ak(workspace, "import", "--copy", *first).returncode == 0
    before = check_workspace(workspace)
    for name in second:  # a directory where each copy must go (the name taken: then SHA-prefixed)
        target = workspace / "store" / "imported" / Path(name).name
        if target.exists():
            sha = hashlib.sha256(Path(name).read_bytes()).hexdigest()
            target = target.with_name(f"{sha[:12]}-{Path(name).name}")
        target.mkdir()
    outcome = run_ak(workspace, "import", "--copy", *second)
    handled = 0
    try:
        assert_one_clear_error(outcome)
        assert all("into the store" in line for line in outcome.text.splitlines()), outcome.describe()
        keeps(check_workspace(workspace, in_progress=True), before)
        handled = 1
    finally:
        record("import", "fault", "store path blocked", injected=1, handled=handled)


# -- read-only directories ------------------------------------------------------------------------------

@pytest.fixture
def shared_dir() -> Iterator[Path]:
    """A directory an unprivileged child can reach (pytest's own are private to us)."""
    path = Path(tempfile.mkdtemp(prefix="ak-readonly-"))
    path.chmod(0o755)
    try:
        yield path
    finally:
        for child in path.rglob("*"):
            if child.is_dir():
                child.chmod(0o755)
        shutil.rmtree(path, ignore_errors=True)


def as_unprivileged(workspace: Path) -> list[str]:
    """argv prefix running the child as a user that read-only modes apply to (root ignores them)."""
    if os.geteuid() != 0:
        return []
    setpriv = shutil.which("setpriv")
    assert setpriv, "running as root needs util-linux setpriv to test read-only directories"
    for path in [workspace, *workspace.rglob("*")]:
        os.chown(path, NOBODY, NOBODY, follow_symlinks=False)
    return [setpriv, f"--reuid={NOBODY}", f"--regid={NOBODY}", "--clear-groups", "--"]


def read_only(path: Path) -> None:
    path.chmod(stat.S_IRUSR | stat.S_IXUSR | stat.S_IRGRP | stat.S_IXGRP | stat.S_IROTH | stat.S_IXOTH)


@pytest.mark.parametrize("what", ["store", "workspace"])
def test_a_read_only_store_or_workspace_is_one_clear_error(shared_dir: Path, what: str) -> None:
    inputs = generate_sample_archive(shared_dir / "in", seed=53, scale=1)
    later = generate_sample_archive(shared_dir / "later", seed=54, scale=1)
    for path in [shared_dir / "in", shared_dir / "later", *inputs, *later]:
        path.chmod(0o755 if path.is_dir() else 0o644)
    workspace = shared_dir / "ws"
    assert run_ak(workspace, "import", "--copy", *map(str, inputs)).returncode == 0
    before = check_workspace(workspace)
    prefix = as_unprivileged(workspace)
    targets = [workspace / "store" / "imported"] if what == "store" else [workspace / "store" / "imported",
                                                                          workspace / "store", workspace]
    for target in targets:
        read_only(target)
    handled = 0
    try:
        env = child_env({"HOME": str(shared_dir)})
        outcome = run_argv([*prefix, *ak_argv(workspace, "import", "--copy", *map(str, later))], env=env)
        assert_one_clear_error(outcome)
        got = check_workspace(workspace, in_progress=True)
        keeps(got, before)
        check_store(workspace, got)
        handled = 1
    finally:
        record("import", "fault", f"read-only {what}", injected=1, handled=handled)


def test_a_read_only_workspace_can_still_be_queried(shared_dir: Path) -> None:
    """A finished workspace on read-only media (or made read-only to protect it): ``query`` and ``stats`` only
    read, yet opening the catalog fails with "attempt to write a readonly database"."""
    inputs = generate_sample_archive(shared_dir / "in", seed=55, scale=1)
    for path in [shared_dir / "in", *inputs]:
        path.chmod(0o755 if path.is_dir() else 0o644)
    workspace = shared_dir / "ws"
    assert run_ak(workspace, "import", *map(str, inputs)).returncode == 0
    prefix = as_unprivileged(workspace)
    (workspace / "catalog.db").chmod(0o444)
    read_only(workspace)
    outcome = run_argv([*prefix, *ak_argv(workspace, "query", "--count")], env=child_env({"HOME": str(shared_dir)}))
    assert outcome.returncode == 0 and int(outcome.stdout) > 0, outcome.describe()
