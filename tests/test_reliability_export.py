"""``export`` survives SIGKILL: an export either exists complete and verifies, or is absent (local and S3).

Kill points are seeded (time after start, catalog WAL growth); after every kill the destination must be
absent or pass ``archivekeeper verify``, and whatever is there must hold only pre-cutoff records whose
payload genuinely matches its digest (read with this suite's own parser). A re-run then completes, and
the finished export holds the same records, byte for byte, as one built without interruption; no
staging folder is left behind and the catalog lists the export.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path
from typing import Any

import pytest
from crashkit import (
    REAL_WARCS,
    WARCIO_DATA,
    KillPoint,
    Profile,
    ak_argv,
    check_workspace,
    child_env,
    draw_kill_point,
    gunzip_member,
    iter_gzip_members,
    kill_group,
    norm_digest,
    open_catalog,
    parse_record,
    profile_run,
    record,
    run_ak,
    run_and_kill,
    run_killed_at,
    scaled,
    seeded,
    sha1_b32,
)
from servers import MotoS3Server

from archivekeeper.demo import generate_sample_archive

CUTOFF = "2023-01-01T00:00:00Z"
EPOCH = {"SOURCE_DATE_EPOCH": "1700000000"}
WAIT = 60.0


@pytest.fixture(scope="module")
def template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A workspace holding pre- and post-cutoff, verified, mismatched and revisit captures."""
    root = tmp_path_factory.mktemp("export-template")
    generate_sample_archive(root / "in", seed=71, scale=1)
    extra = [REAL_WARCS / "example-extra.warc", REAL_WARCS / "dupes.warc.gz", WARCIO_DATA / "example.warc.gz"]
    outcome = run_ak(root / "ws", "import", str(root / "in"), *map(str, extra))
    assert outcome.returncode == 0, outcome.describe()
    return root / "ws"


def fresh_workspace(template: Path, target: Path) -> Path:
    shutil.copytree(template, target, ignore=shutil.ignore_patterns(".lock"))
    return target


# -- what an export holds -------------------------------------------------------------------------------

def exported_records(root: Path) -> tuple[set[tuple[str, str, str]], int]:
    """(record id, date, digest) of every record in the export's WARC shards, and how many of them are
    post-cutoff or do not genuinely verify (payload SHA-1 == its own WARC-Payload-Digest)."""
    held: set[tuple[str, str, str]] = set()
    leaked = 0
    for shard in sorted((root / "data" / "warc").glob("*.warc.gz")):
        data = shard.read_bytes()
        for start, end in iter_gzip_members(data):
            raw = parse_record(gunzip_member(data[start:end]))
            if raw.header("warc-type") not in ("response", "resource", "revisit"):
                continue
            date = raw.header("warc-date") or ""
            claimed = norm_digest(raw.header("warc-payload-digest"))
            genuine = raw.payload is not None and claimed == sha1_b32(raw.payload)
            leaked += int(not date < CUTOFF or not genuine)
            held.add((raw.header("warc-record-id") or "", date, claimed or ""))
    return held, leaked


def data_files(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted((root / "data").rglob("*")) if p.is_file()}


def check_export(root: Path, env: dict[str, str], location: str | None = None) -> set[tuple[str, str, str]]:
    """A present export verifies and leaks nothing; returns its records."""
    verify = run_ak(root.parent, "verify", location or str(root), env=env)
    assert verify.returncode == 0, verify.describe()
    held, leaked = exported_records(root)
    record("export", "leaked", records=leaked)
    assert leaked == 0, f"{leaked} post-cutoff or unverified records in {root}"
    return held


def listed(workspace: Path, name: str, env: dict[str, str], *, via_cli: bool = False) -> bool:
    """The catalog lists ``name`` as a complete export (read directly, or through ``archivekeeper exports``)."""
    if via_cli:
        out = run_ak(workspace, "exports", "--json", env=env)
        assert out.returncode == 0, out.describe()
        return any(item["name"] == name and item["status"] == "complete" for item in json.loads(out.stdout))
    with open_catalog(workspace) as conn:
        assert conn is not None
        found = conn.execute("SELECT 1 FROM exports WHERE name = ? AND status = 'complete'", (name,)).fetchone()
    return found is not None


# -- local ----------------------------------------------------------------------------------------------

@pytest.mark.parametrize("formats", ["warc", "warc,jsonl,parquet"])
def test_local_export_survives_sigkill(tmp_path: Path, template: Path, formats: str) -> None:
    env = child_env(EPOCH)
    name = "corpus"
    ref_ws = fresh_workspace(template, tmp_path / "ref-ws")
    ref_dest = tmp_path / "reference" / name
    outcome, profile = profile_run(ak_argv(ref_ws, "export", name, "--to", str(ref_dest), "--format", formats),
                                   ref_ws / "catalog.db-wal", env=env)
    assert outcome.returncode == 0, outcome.describe()
    want = check_export(ref_dest, env)
    want_files = data_files(ref_dest)
    for kind in formats.split(","):  # every format asked for is in the export the kills must reproduce
        assert any(f".{kind}" in Path(path).name for path in want_files), (kind, sorted(want_files))
    rng = seeded("export-local", formats)
    wanted = scaled(30 if formats == "warc" else 5)
    tried = survived = chain = 0
    try:
        while tried < wanted:
            chain += 1
            workspace = fresh_workspace(template, tmp_path / f"ws-{chain}")
            dest = tmp_path / f"out-{chain}" / name
            argv = ak_argv(workspace, "export", name, "--to", str(dest), "--format", formats, wait=WAIT)
            kills = 0
            for _ in range(rng.randint(3, 6)):
                if dest.exists():
                    break
                point = draw_kill_point(rng, profile, workers=False)
                killed, pgid = run_and_kill(argv, point, workspace / "catalog.db-wal",
                                            env=env)
                kill_group(pgid)
                if not killed:
                    break
                kills += 1
                tried += 1
                if dest.exists():  # complete and verified, or not there at all
                    check_export(dest, env)
                check_workspace(workspace, in_progress=True, read_back=False)
            if not dest.exists() or not listed(workspace, name, env):
                # not there yet, or killed between the rename into place and the catalog's 'complete':
                # the re-run builds it, or completes the publication without rebuilding
                final = run_ak(workspace, *argv[5:], env=env)
                assert final.returncode == 0, final.describe()
            got = check_export(dest, env)
            lost = len(want - got)
            record("export", "lost", records=lost)
            assert got == want and data_files(dest) == want_files, f"chain {chain}: the export differs"
            assert sorted(p.name for p in dest.parent.iterdir()) == [name], "staging left next to the export"
            assert listed(workspace, name, env), "the finished export is not listed as complete in the catalog"
            survived += kills
    finally:
        record("export", "kill", f"local {formats}", tried=tried, survived=survived)
    assert survived == tried >= wanted


# -- S3 -------------------------------------------------------------------------------------------------

def s3_keys(client: Any, bucket: str, prefix: str) -> list[str]:
    pages = client.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix + "/")
    return [item["Key"] for page in pages for item in page.get("Contents", [])]


def test_s3_export_survives_sigkill(tmp_path: Path, template: Path, moto_s3: MotoS3Server, s3_client: Any) -> None:
    env = child_env({**EPOCH, **moto_s3.env})
    bucket = "reliability"
    s3_client.create_bucket(Bucket=bucket)
    name = "corpus"
    ref_ws = fresh_workspace(template, tmp_path / "ref-ws")
    ref_dest = tmp_path / "reference" / name
    assert run_ak(ref_ws, "export", name, "--to", str(ref_dest), "--format", "warc", env=env).returncode == 0
    want = check_export(ref_dest, env)
    want_files = data_files(ref_dest)
    probe_ws = fresh_workspace(template, tmp_path / "probe-ws")
    _, profile = profile_run(ak_argv(probe_ws, "export", name, "--to", f"s3://{bucket}/probe", "--format", "warc"),
                             probe_ws / "catalog.db-wal", env=env)
    rng = seeded("export-s3")
    wanted = scaled(15)
    tried = survived = chain = 0
    try:
        while tried < wanted:
            chain += 1
            workspace = fresh_workspace(template, tmp_path / f"ws-{chain}")
            prefix = f"exports/chain-{chain}"
            location = f"s3://{bucket}/{prefix}"
            argv = ak_argv(workspace, "export", name, "--to", location, "--format", "warc", wait=WAIT)
            kills = 0
            for _ in range(rng.randint(3, 6)):
                point: KillPoint = draw_kill_point(rng, Profile(profile.seconds, profile.wal_bytes), workers=False)
                killed, pgid = run_and_kill(argv, point, workspace / "catalog.db-wal", env=env)
                kill_group(pgid)
                if not killed:
                    break
                kills += 1
                tried += 1
                if f"{prefix}/manifest.json" in s3_keys(s3_client, bucket, prefix):  # complete: it must verify
                    verify = run_ak(workspace, "verify", location, env=env)
                    assert verify.returncode == 0, verify.describe()
                check_workspace(workspace, in_progress=True, read_back=False)
            final = run_ak(workspace, *argv[5:], env=env)
            assert final.returncode == 0, final.describe()
            pulled = tmp_path / f"pulled-{chain}" / name
            pull = run_ak(workspace, "pull", location, str(pulled), env=env)  # pull verifies what it got
            assert pull.returncode == 0, pull.describe()
            got, leaked = exported_records(pulled)
            record("export", "leaked", records=leaked)
            record("export", "lost", records=len(want - got))
            assert leaked == 0 and got == want and data_files(pulled) == want_files, f"chain {chain}: differs"
            assert not (workspace / ".export-staging" / name).exists(), "staging left in the workspace"
            survived += kills
    finally:
        record("export", "kill", "s3 warc", tried=tried, survived=survived)
    assert survived == tried >= wanted


@pytest.mark.parametrize("call", [1, 2], ids=["before-rename", "after-rename"])
def test_a_local_export_killed_around_its_rename_is_catalogued_by_the_rerun(tmp_path: Path, template: Path,
                                                                           call: int) -> None:
    """``finish_export``'s first call catalogues the export as 'publishing' (then the folder is renamed into
    place), its second marks it complete: a kill at either leaves an export the re-run completes."""
    env = child_env(EPOCH)
    workspace = fresh_workspace(template, tmp_path / "ws")
    dest = tmp_path / "out" / "corpus"
    killed = run_killed_at(f"archivekeeper.package:finish_export#{call}", workspace, "export", "corpus",
                           "--to", str(dest), "--format", "warc", env=env)
    assert killed.returncode == -9, killed.describe()
    assert dest.exists() == (call == 2)
    assert not listed(workspace, "corpus", env)
    manifest = (dest / "manifest.json").read_bytes() if dest.exists() else None
    rerun = run_ak(workspace, "export", "corpus", "--to", str(dest), "--format", "warc", "--json", env=env)
    assert rerun.returncode == 0, rerun.describe()
    assert json.loads(rerun.stdout)["counts"]["exported"] > 0
    assert listed(workspace, "corpus", env, via_cli=True)
    check_export(dest, env)
    if manifest is not None:
        assert (dest / "manifest.json").read_bytes() == manifest  # completed as it was, not rebuilt
    assert not (dest.parent / ".corpus.partial").exists()
