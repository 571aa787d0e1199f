"""Nobody gets in: names cannot escape the store, credentials never leak, input cannot forge output.

* Secrets: every command runs with known fake credentials in its environment (AWS keys, a password and an
  API key inside archive base URLs); no output, catalog, WAL, store file or setting file may contain them.
* Paths: ``Workspace.store_path`` and ``import --copy`` never write outside the workspace, whatever the
  name (``../``, absolute, NUL, overlong) or a symlink planted in the store.
* Output: a hostile file name cannot add lines to the one-line errors.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import os
import urllib.parse
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import PywbFactory
from crashkit import REAL_WARCS, available_commands, child_env, real_inputs, record, run_ak
from servers import MotoS3Server, PywbServer
from sync_support import shared_site, sync_archive

from archivekeeper.demo import generate_sample_archive
from archivekeeper.errors import WorkspaceError
from archivekeeper.workspace import Workspace

FAKE_SECRETS = {
    "AWS_ACCESS_KEY_ID": "AKIARELIABILITYFAKE01",
    "AWS_SECRET_ACCESS_KEY": "fake/Secret+Key/ReliabilityTest0123456789",
    "AWS_SESSION_TOKEN": "FakeSessionTokenReliability987",
}
URL_SECRETS = {  # credentials inside archive URLs (basic auth, API keys)
    "ARCHIVEKEEPER_WAYBACK_BASE_URL": ("https://archiveuser:PwReliab1lity@127.0.0.1:9", "PwReliab1lity"),
    "ARCHIVEKEEPER_CDX_BASE_URL": ("http://127.0.0.1:9/cdx?api_key=KeyReliab1lity42", "KeyReliab1lity42"),
}


@pytest.fixture(scope="module")
def pywb(pywb_factory: PywbFactory, tmp_path_factory: pytest.TempPathFactory, realdata: Path) -> PywbServer:
    site, _ = shared_site(tmp_path_factory.getbasetemp())
    return sync_archive(pywb_factory, realdata, site)


def secret_values() -> list[str]:
    return [*FAKE_SECRETS.values(), *(secret for _, secret in URL_SECRETS.values())]


def secret_env() -> dict[str, str]:
    return child_env({**FAKE_SECRETS, **{name: url for name, (url, _) in URL_SECRETS.items()}})


def leaks(blob: bytes, secrets: list[str]) -> list[str]:
    found = []
    for secret in secrets:
        forms = {secret, urllib.parse.quote(secret, safe=""), urllib.parse.quote_plus(secret)}
        if any(form.encode() in blob for form in forms):
            found.append(secret)
    return found


def files_under(root: Path) -> Iterator[Path]:
    for path in sorted(root.rglob("*")):
        if path.is_file():
            yield path


def import_side_commands(ws: Path, inputs: list[str]) -> list[list[str]]:
    broken = [str(p) for p in real_inputs() if p.name in {"example-bad.warc.gz.bad", "example-trunc.warc"}]
    return [
        ["--help"], ["import", "--help"], ["init", "--cutoff", "2020-01-01", "--json"],
        ["import", *inputs, "--json"], ["import", "--copy", *inputs[:2], *broken, str(ws / "missing.warc")],
        ["query", "--format", "jsonl"], ["query", "--format", "csv"], ["query"], ["query", "--count"],
        ["query", "--from", "20x1"], ["stats"], ["stats", "--json"],
        ["show", "https://www.example.org/", "--json"], ["show", "https://www.example.org/", "--payload"],
        ["show", "http://nowhere.example/"], ["demo", "--json"],
    ]


def test_credentials_never_appear_in_any_output_or_file(tmp_path: Path) -> None:
    """AWS credentials and URL credentials in the environment, through every import-side command (sync and
    export: the next test): not in stdout, stderr, the catalog, its WAL, the store or the setting file."""
    inputs = [str(p) for p in generate_sample_archive(tmp_path / "in", seed=61, scale=1)]
    workspace = tmp_path / "ws"
    env = secret_env()
    secrets = secret_values()
    commands = available_commands(env)
    runs = import_side_commands(workspace, inputs)
    findings: list[str] = []
    for args in runs:
        outcome = run_ak(workspace, *args, env=env)
        assert "Traceback" not in outcome.text, outcome.describe()
        for secret in leaks(outcome.stdout + outcome.stderr, secrets):
            findings.append(f"{args[0]}: output contains {secret!r}")
    for path in files_under(tmp_path):
        for secret in leaks(path.read_bytes(), secrets):
            findings.append(f"{path.relative_to(tmp_path)} contains {secret!r}")
    record("import", "fault", "fake credentials in the environment", injected=len(runs),
           handled=len(runs) - len({f.split(':')[0] for f in findings}))
    assert "import" in commands
    assert not findings, "\n".join(findings)


def test_credentials_never_leak_from_sync_or_export(tmp_path: Path, pywb: PywbServer, moto_s3: MotoS3Server,
                                                    s3_client: Any) -> None:
    """A sync from an archive URL carrying a user:password, then exports (local and S3, with fake AWS keys,
    and one to a bucket that does not exist): no output, catalog, store WARC (headers included), manifest,
    bag file or pulled copy holds a credential."""
    s3_client.create_bucket(Bucket="secrets-test")
    password = "PwSyncReliab1lity"
    host = urllib.parse.urlsplit(pywb.base_url).netloc
    source = f"http://archiveuser:{password}@{host}/real"
    env = child_env({**FAKE_SECRETS, "AWS_ENDPOINT_URL": moto_s3.endpoint_url,
                     "AWS_ENDPOINT_URL_S3": moto_s3.endpoint_url, "AWS_DEFAULT_REGION": moto_s3.REGION,
                     **{name: url for name, (url, _) in URL_SECRETS.items()}})
    secrets = [*secret_values(), password]
    workspace = tmp_path / "ws"
    runs = [
        ["sync", source, "http://example.com/", "--match", "prefix", "--json"], ["sync", "--resume"],
        ["sync", source, "iana.org", "--match", "domain", "--limit", "5"],
        ["export", "corpus", "--to", str(tmp_path / "out" / "corpus"), "--json"],
        ["export", "corpus-s3", "--to", "s3://secrets-test/corpus", "--json"],
        ["export", "corpus-nobucket", "--to", "s3://no-such-bucket-here/x"],
        ["verify", "s3://secrets-test/corpus", "--json"],
        ["pull", "s3://secrets-test/corpus", str(tmp_path / "pulled")],
        ["exports", "--json"], ["query", "--format", "jsonl"], ["stats", "--json"],
    ]
    findings: list[str] = []
    for args in runs:
        outcome = run_ak(workspace, *args, env=env)
        assert "Traceback" not in outcome.text, outcome.describe()
        for secret in leaks(outcome.stdout + outcome.stderr, secrets):
            findings.append(f"{' '.join(args[:2])}: output contains {secret!r}")
    for path in files_under(tmp_path):
        if path.suffix == ".gz":  # WARC shards and store files: their (decompressed) headers too
            with gzip.open(path, "rb") as handle:
                blob = handle.read()
        else:
            blob = path.read_bytes()
        for secret in leaks(blob, secrets):
            findings.append(f"{path.relative_to(tmp_path)} contains {secret!r}")
    record("sync", "fault", "credentials in the archive URL", injected=1, handled=int(not findings))
    record("export", "fault", "fake AWS credentials", injected=1, handled=int(not findings))
    assert not findings, "\n".join(findings)


def test_credentials_in_archive_urls_are_not_written_into_the_settings_file(tmp_path: Path) -> None:
    """``ARCHIVEKEEPER_CDX_BASE_URL=https://...?api_key=... archivekeeper stats`` on a new workspace: the
    environment is meant to override the file, but the file is created from the environment, so the key
    (or a user:password in a base URL) is stored in plain text and outlives the variable."""
    outcome = run_ak(tmp_path / "ws", "stats", env=secret_env())
    assert outcome.returncode == 0, outcome.describe()
    found = leaks((tmp_path / "ws" / "archivekeeper.toml").read_bytes(), secret_values())
    assert not found, f"archivekeeper.toml holds {found}"


# -- paths -------------------------------------------------------------------------------------------------

HOSTILE_NAMES = [
    "../x", "../../etc/passwd", "/etc/passwd", "a/../../x", "imported/../../x", "", ".", "..", "./../x",
    "a" * 5000, "b" * 300 + "/x", "imported/" + "c" * 255, "\\..\\x", "~/x", "x/./../../y",
    "x\0y",  # fixed: raised ValueError (embedded null byte) instead of WorkspaceError
]


@pytest.mark.parametrize("name", HOSTILE_NAMES, ids=lambda n: repr(n)[:24])
def test_store_path_never_leaves_the_store(tmp_path: Path, name: str) -> None:
    workspace = Workspace.open(tmp_path / "ws")
    store = workspace.store_dir.resolve()
    try:
        target = workspace.store_path(name)
    except WorkspaceError:
        record("import", "fault", "hostile store name", injected=1, handled=1)
        return
    ok = target.resolve().is_relative_to(store) and target.resolve() != store
    record("import", "fault", "hostile store name", injected=1, handled=int(ok))
    assert ok, f"{name!r} -> {target}"


def test_store_path_refuses_a_symlink_out_of_the_store(tmp_path: Path) -> None:
    workspace = Workspace.open(tmp_path / "ws")
    outside = tmp_path / "outside"
    outside.mkdir()
    (workspace.store_dir / "warcs").symlink_to(outside)
    with pytest.raises(WorkspaceError):
        workspace.store_path("warcs/x.warc.gz")


def test_import_copy_never_writes_outside_the_workspace(tmp_path: Path) -> None:
    workspace = tmp_path / "ws"
    (workspace / "store").mkdir(parents=True)
    outside = tmp_path / "outside"
    outside.mkdir()
    (workspace / "store" / "imported").symlink_to(outside)
    run_ak(workspace, "import", "--copy", str(REAL_WARCS / "example.warc.gz"))
    assert not list(outside.iterdir()), f"written outside the workspace: {list(outside.iterdir())}"


def test_import_copy_of_a_file_with_a_long_but_valid_name(tmp_path: Path) -> None:
    source = tmp_path / ("x" * 250 + ".warc")  # 255 bytes: legal
    source.write_bytes((REAL_WARCS / "example.warc").read_bytes())
    outcome = run_ak(tmp_path / "ws", "import", "--copy", str(source))
    assert outcome.returncode == 0, outcome.describe()


def test_a_file_name_cannot_forge_error_lines(tmp_path: Path) -> None:
    """A file named ``evil\\narchivekeeper: error: forged.warc``: its one error becomes two lines, the second
    one written by whoever named the file."""
    folder = tmp_path / "in"
    folder.mkdir()
    (folder / "evil\narchivekeeper: error: forged.warc").write_bytes(b"not a warc")
    outcome = run_ak(tmp_path / "ws", "import", str(folder))
    assert outcome.returncode == 1
    assert len(outcome.text.strip().splitlines()) == 1, outcome.text


def test_no_write_lands_outside_the_workspace_during_a_copy_import(tmp_path: Path) -> None:
    """Everything ``import --copy`` writes is under the workspace (the inputs' folder is untouched)."""
    inputs = tmp_path / "in"
    paths = generate_sample_archive(inputs, seed=62, scale=1)
    before = {p: (p.stat().st_size, p.stat().st_mtime_ns) for p in inputs.rglob("*")}
    outcome = run_ak(tmp_path / "ws", "import", "--copy", *map(str, paths))
    assert outcome.returncode == 0, outcome.describe()
    after = {p: (p.stat().st_size, p.stat().st_mtime_ns) for p in inputs.rglob("*")}
    assert before == after
    assert sorted(os.listdir(tmp_path)) == ["in", "ws"]


# -- export names and pulled paths --------------------------------------------------------------------------

@pytest.mark.parametrize("name", ["../x", "..", ".", "/abs", "a/b", "x" * 200, "-rf", ".hidden", "na me", "ok\nname",
                                  "x\\y", "ok:name"])
def test_export_names_cannot_escape_the_destination(tmp_path: Path, name: str) -> None:
    """Export names become shard file names: anything but a plain name is refused with one clear line, and
    nothing is written anywhere."""
    workspace = tmp_path / "ws"
    assert run_ak(workspace, "import", str(REAL_WARCS / "iana.warc.gz")).returncode == 0
    before = sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*"))
    outcome = run_ak(workspace, "export", "--to", str(tmp_path / "out"), "--", name)
    after = sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*"))
    ok = outcome.returncode == 1 and len(outcome.text.strip().splitlines()) == 1 and "Traceback" not in outcome.text
    created = [p for p in after if p not in before and p.parts[0] != "ws"]
    record("export", "fault", "hostile export name", injected=1, handled=int(ok and not created))
    assert ok, outcome.describe()
    assert not created, created


HOSTILE_PULL_PATHS = [
    "data/warc/../../../../escaped.txt", "/abs/escaped.txt", "data/../../escaped.txt", "", ".", "data/\0x",
]


@pytest.mark.parametrize("evil", HOSTILE_PULL_PATHS, ids=lambda p: repr(p)[:30])
def test_pull_of_a_hostile_export_never_writes_outside_the_destination(
        tmp_path: Path, moto_s3: MotoS3Server, s3_client: Any, evil: str) -> None:
    """A bucket whose manifest.json lists a path meant to escape: ``pull`` refuses it with one clear line and
    writes nothing outside the destination folder."""
    bucket = "hostile-exports"
    s3_client.create_bucket(Bucket=bucket)
    body = b"planted\n"
    manifest = {"files": [{"path": evil, "size": len(body), "sha256": hashlib.sha256(body).hexdigest()}]}
    s3_client.put_object(Bucket=bucket, Key=f"evil/{evil.lstrip('/')}", Body=body)
    s3_client.put_object(Bucket=bucket, Key="evil/manifest.json", Body=json.dumps(manifest).encode())
    env = child_env({**moto_s3.env})
    outer = tmp_path / "outer"
    dest = outer / "dest"
    outcome = run_ak(tmp_path / "ws", "pull", f"s3://{bucket}/evil", str(dest), env=env)
    outside = [p for p in outer.rglob("*") if not p.is_relative_to(dest)] + list(tmp_path.glob("escaped*"))
    clear = outcome.returncode == 1 and "internal error" not in outcome.text and "Traceback" not in outcome.text
    record("export", "fault", "hostile path in a pulled manifest", injected=1, handled=int(clear and not outside))
    assert not outside, f"written outside {dest}: {outside}"
    assert clear, outcome.describe()
