"""Exports to S3 (a real moto_server on 127.0.0.1): checksums, multipart, order, resume, errors, verify, pull."""

from __future__ import annotations

import base64
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from exportkit import ENV, Rec, check_export, import_into, tree_digest, write_warc
from servers import Fault, FaultServer, MotoS3Server
from typer.testing import CliRunner

from archivekeeper.catalog import Catalog
from archivekeeper.cli import app
from archivekeeper.demo import generate_sample_archive
from archivekeeper.errors import ExportError
from archivekeeper.models import Selection
from archivekeeper.package import ExportOptions, run_export
from archivekeeper.verify import pull_export, verify_export
from archivekeeper.workspace import Workspace

BUCKET = "corpora"
CLI = [sys.executable, "-m", "archivekeeper"]
ACCESS_DENIED = (b'<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>AccessDenied</Code>'
                 b"<Message>Access Denied</Message></Error>")


@pytest.fixture(scope="module")
def demo_store(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Workspace, Catalog]]:
    root = tmp_path_factory.mktemp("s3-ws")
    paths = generate_sample_archive(root / "in", seed=3, scale=2)
    big = [Rec(f"http://big.example/{i}.bin", f"2021-04-0{i + 1}T00:00:00Z", os.urandom(3 << 20),
               mime="application/octet-stream") for i in range(4)]
    paths.append(write_warc(root / "in" / "big.warc.gz", big))
    workspace, catalog = import_into(root / "ws", paths)
    yield workspace, catalog
    catalog.close()


@pytest.fixture
def s3(s3_client: Any) -> Any:
    s3_client.create_bucket(Bucket=BUCKET)
    return s3_client


def cli_env(moto: MotoS3Server, endpoint: str | None = None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "SOURCE_DATE_EPOCH"))}
    env.update(moto.env)
    env["AWS_EC2_METADATA_DISABLED"] = "true"
    if endpoint:
        env["AWS_ENDPOINT_URL"] = env["AWS_ENDPOINT_URL_S3"] = endpoint
    return env


def client_for(endpoint: str) -> Any:
    import boto3
    from botocore.config import Config

    return boto3.client("s3", endpoint_url=endpoint, region_name=MotoS3Server.REGION, aws_access_key_id="testing",
                        aws_secret_access_key="testing", config=Config(s3={"addressing_style": "path"}))


def keys(client: Any, prefix: str) -> dict[str, dict[str, Any]]:
    out = {}
    for obj in client.list_objects_v2(Bucket=BUCKET, Prefix=prefix + "/").get("Contents", []):
        out[obj["Key"][len(prefix) + 1:]] = client.head_object(Bucket=BUCKET, Key=obj["Key"], ChecksumMode="ENABLED")
    return out


def test_export_to_s3_sends_checksums_and_gives_the_local_bytes(demo_store, s3, tmp_path: Path) -> None:
    workspace, catalog = demo_store
    options = ExportOptions(formats=("warc", "jsonl", "parquet"), shard_size=16 << 20, jobs=1, part_size=5 << 20)
    result = run_export(workspace, catalog, "web", f"s3://{BUCKET}/exports/web", Selection(), options, client=s3,
                        env=ENV)
    objects = keys(s3, "exports/web")
    manifest = result.manifest
    assert set(objects) == {f["path"] for f in manifest["files"]} | {
        "manifest.json", "bagit.txt", "bag-info.txt", "manifest-sha256.txt", "tagmanifest-sha256.txt"}
    multipart = 0
    for entry in manifest["files"]:
        head = objects[entry["path"]]
        assert head["Metadata"]["sha256"] == entry["sha256"] and head["ContentLength"] == entry["size"]
        if "-" in head["ETag"]:  # multipart: one SHA-256 per part
            multipart += 1
            assert entry["size"] > 5 << 20
        else:
            assert head["ChecksumSHA256"] == base64.b64encode(bytes.fromhex(entry["sha256"])).decode()
    assert multipart >= 1  # the 12 MB of incompressible bodies
    assert verify_export(f"s3://{BUCKET}/exports/web", client=s3).problems == []
    # the same export to a folder has the same bytes, and pulling gives them back
    run_export(workspace, catalog, "web", str(tmp_path / "local"), Selection(), options, env=ENV)
    pulled = pull_export(f"s3://{BUCKET}/exports/web", tmp_path / "pulled", client=s3)
    assert pulled.report is not None and pulled.report.ok
    check_export(tmp_path / "pulled")
    assert tree_digest(tmp_path / "pulled") == tree_digest(tmp_path / "local")
    # a second run finds everything in place
    again = run_export(workspace, catalog, "web", f"s3://{BUCKET}/exports/web", Selection(), options, client=s3,
                       env=ENV)
    assert again.upload is not None and again.upload.uploaded == [] and len(again.upload.skipped) == len(objects)


def test_data_files_go_first_and_the_manifest_last(demo_store, moto_s3, s3, tmp_path: Path) -> None:
    workspace, catalog = demo_store
    with FaultServer(moto_s3.endpoint_url) as proxy:
        client = client_for(proxy.base_url)
        run_export(workspace, catalog, "order", f"s3://{BUCKET}/order", Selection(),
                   ExportOptions(formats=("warc", "jsonl"), shard_size=200_000, jobs=1), client=client, env=ENV)
        puts = [r.path_only.split("/order/", 1)[1] for r in proxy.requests if r.method == "PUT"]
    tags = ["bagit.txt", "bag-info.txt", "manifest-sha256.txt", "tagmanifest-sha256.txt", "manifest.json"]
    assert puts[-5:] == tags and all(p.startswith("data/") for p in puts[:-5]) and len(puts) > 5


def test_a_killed_upload_resumes_uploading_only_what_is_missing(demo_store, moto_s3, s3, tmp_path: Path) -> None:
    workspace, _ = demo_store
    stalled = f"/{BUCKET}/killed/data/warc/killed-00002.warc.gz"
    with FaultServer(moto_s3.endpoint_url) as proxy:
        proxy.script(stalled, [Fault.passthrough(), Fault.stall(600)])  # HEAD answers, the PUT hangs
        env = cli_env(moto_s3, proxy.base_url)
        command = [*CLI, "-w", str(workspace.root), "export", "killed", "--to", f"s3://{BUCKET}/killed",
                   "--format", "warc", "--shard-size", "150000", "--concurrency", "1", "--json"]
        proc = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        try:
            deadline = time.monotonic() + 120
            while not any(r.method == "PUT" and r.path_only == stalled for r in proxy.requests):
                assert proc.poll() is None, proc.communicate()
                assert time.monotonic() < deadline, "the export never reached the stalled upload"
                time.sleep(0.05)
            proc.send_signal(signal.SIGKILL)
        finally:
            proc.wait()
            proc.stdout.close()  # type: ignore[union-attr]
            proc.stderr.close()  # type: ignore[union-attr]
        present = keys(s3, "killed")
        assert "manifest.json" not in present and "killed-00002" not in " ".join(present)
        assert any(k.startswith("data/warc/killed-0000") for k in present)
        proxy.requests.clear()
        rerun = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)
        assert rerun.returncode == 0, rerun.stderr
        uploaded = {r.path_only.split("/killed/", 1)[1] for r in proxy.requests if r.method == "PUT"}
    final = keys(s3, "killed")
    assert uploaded == set(final) - set(present)  # nothing uploaded twice
    assert "data/warc/killed-00002.warc.gz" in uploaded and "manifest.json" in uploaded
    assert verify_export(f"s3://{BUCKET}/killed", client=s3).problems == []


def test_verify_names_each_altered_missing_or_extra_object(demo_store, s3) -> None:
    workspace, catalog = demo_store
    result = run_export(workspace, catalog, "tamper", f"s3://{BUCKET}/t", Selection(url="news.example.com",
                        match="host"), ExportOptions(formats=("warc", "jsonl"), jobs=1), client=s3, env=ENV)
    shard = next(f["path"] for f in result.manifest["files"] if f["kind"] == "warc")
    text = next(f["path"] for f in result.manifest["files"] if f["kind"] == "jsonl")
    body = bytearray(s3.get_object(Bucket=BUCKET, Key=f"t/{shard}")["Body"].read())
    body[len(body) // 2] ^= 0x01
    s3.put_object(Bucket=BUCKET, Key=f"t/{shard}", Body=bytes(body))
    s3.delete_object(Bucket=BUCKET, Key=f"t/{text}")
    s3.put_object(Bucket=BUCKET, Key="t/data/stray.bin", Body=b"x")
    problems = verify_export(f"s3://{BUCKET}/t", client=s3).problems
    assert problems == ["extra: data/stray.bin", f"missing: {text}", problems[2]]
    assert problems[2].startswith(f"altered: {shard} (sha256 ")


def test_pull_refuses_an_incomplete_export_and_resumes(demo_store, s3, tmp_path: Path) -> None:
    workspace, catalog = demo_store
    with pytest.raises(ExportError, match="has no manifest.json"):
        pull_export(f"s3://{BUCKET}/nothing", tmp_path / "none", client=s3)
    result = run_export(workspace, catalog, "p", f"s3://{BUCKET}/p", Selection(url="blog.example.net", match="host"),
                        ExportOptions(formats=("warc", "jsonl"), jobs=1), client=s3, env=ENV)
    first = pull_export(f"s3://{BUCKET}/p", tmp_path / "p", client=s3)
    assert first.report is not None and first.report.ok
    shard = next(f for f in result.manifest["files"] if f["kind"] == "warc")
    target = tmp_path / "p" / shard["path"]
    data = target.read_bytes()
    target.unlink()
    target.with_name(target.name + ".part").write_bytes(data[:1000])  # an interrupted download
    second = pull_export(f"s3://{BUCKET}/p", tmp_path / "p", client=s3)
    assert second.downloaded == [shard["path"]] and second.bytes_downloaded == len(data) - 1000
    assert second.report is not None and second.report.ok and target.read_bytes() == data
    check_export(tmp_path / "p")


def test_s3_errors_are_one_line(demo_store, moto_s3, s3, tmp_path: Path) -> None:
    workspace, _ = demo_store
    root = str(workspace.root)
    base = [*CLI, "-w", root, "export", "e", "--format", "warc"]

    def run(args: list[str], env: dict[str, str]) -> str:
        done = subprocess.run(args, env=env, capture_output=True, text=True, timeout=120)
        assert done.returncode == 1 and done.stdout == "", done
        assert len(done.stderr.strip().splitlines()) == 1 and "Traceback" not in done.stderr
        return done.stderr.strip()

    env = cli_env(moto_s3)
    assert "bucket 'no-such-bucket' does not exist" in run([*base, "--to", "s3://no-such-bucket/x"], env)
    bare = {k: v for k, v in env.items() if not k.startswith("AWS_") or k.startswith("AWS_ENDPOINT")}
    bare.update(AWS_CONFIG_FILE=str(tmp_path / "none"), AWS_SHARED_CREDENTIALS_FILE=str(tmp_path / "none"),
                AWS_EC2_METADATA_DISABLED="true")
    assert "no AWS credentials found" in run([*base, "--to", f"s3://{BUCKET}/x"], bare)
    with FaultServer(moto_s3.endpoint_url) as proxy:
        proxy.script("/*", [Fault.respond(ACCESS_DENIED, code=403, headers={"Content-Type": "application/xml"})] * 20)
        assert f"access denied to s3://{BUCKET}/x" in run([*base, "--to", f"s3://{BUCKET}/x"],
                                                          cli_env(moto_s3, proxy.base_url))
        denied = CliRunner().invoke(app, ["verify", f"s3://{BUCKET}/x", "--endpoint-url", proxy.base_url],
                                    env=cli_env(moto_s3))
        assert denied.exit_code == 1 and "access denied" in denied.output


def readme_pipeline() -> str:
    text = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    match = re.search(r"<!-- pipeline-example -->\s*```python\n(.*?)```", text, re.S)
    assert match, "README.md lost its pipeline example"
    return match.group(1)


def test_the_readme_pipeline_reads_an_export_straight_from_s3(demo_store, moto_s3, s3, tmp_path: Path) -> None:
    workspace, catalog = demo_store
    result = run_export(workspace, catalog, "corpus", f"s3://{BUCKET}/exports/corpus-2022", Selection(),
                        ExportOptions(formats=("warc", "jsonl", "parquet"), jobs=1), client=s3, env=ENV)
    script = tmp_path / "pipeline.py"
    script.write_text(readme_pipeline())
    env = cli_env(moto_s3)
    env["EXPORT"] = f"s3://{BUCKET}/exports/corpus-2022"
    done = subprocess.run([sys.executable, str(script)], env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert f"{result.manifest['counts']['documents']} documents" in done.stdout
