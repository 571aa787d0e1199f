"""``import`` survives SIGKILL at any point: kill it (seeded kill points), re-run it, compare with a clean run.

After every kill the workspace must already be consistent (integrity, no capture twice, counts and
cutoff flags that match the rows, every row reading back at its offset with its digest); after the
re-run completes, the records, files and counts must equal those of an uninterrupted run, and the
store must hold no temporary or broken file. Kills hit the whole process group (a crash) or the
main process alone (``kill -9 PID``, which leaves the scanning workers behind).
"""

from __future__ import annotations

import random
from pathlib import Path

import pytest
from crashkit import (
    KillPoint,
    Profile,
    Snapshot,
    ak_argv,
    check_store,
    check_workspace,
    draw_kill_point,
    group_members,
    kill_group,
    profile_run,
    real_inputs,
    record,
    run_ak,
    run_and_kill,
    same_captures_as,
    scaled,
    seeded,
    wait_for,
)

from archivekeeper.demo import generate_sample_archive

RERUN_WAIT = 60.0  # a re-run waits for the lock rather than racing a dying process


def corpus(name: str, root: Path) -> tuple[list[str], list[str]]:
    """(paths, extra options) of one crash corpus."""
    if name == "generated":
        first = generate_sample_archive(root / "gen-a", seed=11, scale=2)
        generate_sample_archive(root / "gen-b", seed=12, scale=1)
        return [str(first[0].parent), str(root / "gen-b")], []
    if name == "real":
        # example-trunc.warc holds a damaged copy of a record warcio's example.warc holds intact: the final state
        # must not depend on which is read first (it did: test_a_damaged_copy_does_not_hide_the_intact_copy...)
        return [str(p) for p in real_inputs()], []
    generate_sample_archive(root / "gen-c", seed=13, scale=1)
    real = [str(p) for p in real_inputs() if p.name in {"iana.warc.gz", "example.warc.gz", "example.arc.gz",
                                                        "example-digest.warc", "dupes.warc.gz"}]
    return [str(root / "gen-c"), *real], ["--copy"]


def reference(tmp_path: Path, paths: list[str], options: list[str]) -> tuple[int, Snapshot, Profile]:
    workspace = tmp_path / "reference"
    outcome, profile = profile_run(ak_argv(workspace, "import", *options, *paths, "--json"),
                                   workspace / "catalog.db-wal")
    outcome.assert_clean_failure_or_success()
    snapshot = check_workspace(workspace)
    check_store(workspace, snapshot)
    assert snapshot.captures, "the reference import catalogued nothing"
    return outcome.returncode, snapshot, profile


@pytest.mark.parametrize("name", ["generated", "real", "mixed-copy"])
def test_import_survives_sigkill(tmp_path: Path, name: str) -> None:
    paths, options = corpus(name, tmp_path / "inputs")
    ref_code, ref, profile = reference(tmp_path, paths, options)
    rng = seeded("import-crash", name)
    wanted = scaled(17)
    delivered = 0
    survived: dict[str, int] = {}
    tried: dict[str, int] = {}
    chain = 0
    attempts = 0
    try:
        while delivered < wanted:
            chain += 1
            workspace = tmp_path / f"chain-{chain}"
            kills_here: list[tuple[KillPoint, str]] = []
            groups: list[int] = []
            for _ in range(rng.randint(1, 4)):
                attempts += 1
                assert attempts < wanted * 10, "kill points keep missing the run (it ends before them)"
                point = draw_kill_point(rng, profile)
                jobs = ["--jobs", str(rng.choice([1, 2]))]
                argv = ak_argv(workspace, "import", *options, *jobs, *paths, wait=RERUN_WAIT)
                killed, pgid = run_and_kill(argv, point, workspace / "catalog.db-wal")
                groups.append(pgid)
                if not killed:  # the run finished first: later runs of this chain would only skip files
                    break
                delivered += 1
                # consistent right after the kill, before anything repairs it
                partial = check_workspace(workspace, in_progress=True)
                phase = phase_of(partial, ref)
                tried[phase] = tried.get(phase, 0) + 1
                kills_here.append((point, phase))
            final = run_ak(workspace, "import", *options, *paths, "--json", wait=RERUN_WAIT)
            for pgid in groups:
                kill_group(pgid)
            final.assert_clean_failure_or_success()
            assert final.returncode == ref_code, final.describe()
            got = check_workspace(workspace)
            check_store(workspace, got)
            lost = len(ref.record_keys - got.record_keys)
            record("import", "lost", records=lost)
            diffs = same_captures_as(got, ref)  # identical copies in two files: either may hold the record
            assert not diffs, f"after kills at {[k.describe() for k, _ in kills_here]}: {diffs}"
            for _, phase in kills_here:
                survived[phase] = survived.get(phase, 0) + 1
    finally:
        for phase, count in tried.items():
            record("import", "kill", f"{name}: {phase}", tried=count, survived=survived.get(phase, 0))
    assert sum(survived.values()) == delivered >= wanted


def phase_of(partial: Snapshot, ref: Snapshot) -> str:
    """Where a kill landed, judged by what it left: nothing yet, some records, or all of them."""
    if not partial.captures:
        return "before the first record"
    if partial.record_keys >= ref.record_keys:
        return "after the last record"
    return "amid the records"


def test_killing_the_main_process_leaves_no_worker_holding_the_lock(tmp_path: Path) -> None:
    """``kill -9`` of the import's main process while its workers scan: the workers must not live on
    (they inherit the workspace lock) — the next import must get the lock and complete."""
    inputs = tmp_path / "inputs"
    generate_sample_archive(inputs, seed=21, scale=4)
    paths = [str(inputs), *(str(p) for p in real_inputs() if p.name == "iana.warc.gz")]
    workspace = tmp_path / "ws"
    rng = random.Random(5)
    delivered = 0
    for round_number in range(scaled(3)):
        point = KillPoint("workers", rng.uniform(0.0, 0.02), group=False)
        argv = ak_argv(workspace, "import", "--jobs", "2", *paths)
        killed, pgid = run_and_kill(argv, point, workspace / "catalog.db-wal")
        if not killed:
            continue
        delivered += 1
        try:
            orphans_gone = wait_for(lambda pgid=pgid: not group_members(pgid), timeout=RERUN_WAIT)  # type: ignore[misc]
            rerun = run_ak(workspace, "import", *paths, wait=RERUN_WAIT)
        finally:
            kill_group(pgid)
        handled = int(orphans_gone and rerun.returncode == 0)
        record("import", "fault", "kill -9 of the main process", injected=1, handled=handled)
        assert orphans_gone, f"round {round_number}: import workers outlived their killed parent"
        assert rerun.returncode == 0, rerun.describe()
        check_workspace(workspace)
    assert delivered > 0
