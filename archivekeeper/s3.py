"""S3 publication and download: boto3 with its standard credential chain, any S3-compatible endpoint.

The endpoint is ``--endpoint-url``, else ``AWS_ENDPOINT_URL_S3`` / ``AWS_ENDPOINT_URL``, else AWS.
Every object is sent with a SHA-256 checksum (``ChecksumSHA256``, per part for multipart uploads,
which start above ``part_size``) and the file's full SHA-256 in its metadata (``x-amz-meta-sha256``),
so a re-run skips objects already present with the same size and checksum. Data files go first,
then the BagIt tag files, ``manifest.json`` last: an export whose manifest is there is complete.

botocore exceptions are translated here, at one seam (:func:`s3_errors`), into one-line
:class:`~archivekeeper.errors.ExportError` messages (missing credentials, bucket, access denied).
"""

from __future__ import annotations

import base64
import hashlib
import os
import threading
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO

from .errors import ExportError

DEFAULT_PART_SIZE = 64 << 20
MIN_PART_SIZE = 5 << 20  # S3's smallest part but the last
DEFAULT_CONCURRENCY = 4
READ_CHUNK = 1 << 20
SHA256_META = "sha256"
Reporter = Callable[[str, int], None]


@dataclass(frozen=True, slots=True)
class S3Location:
    bucket: str
    prefix: str  # no leading or trailing slash; may be empty

    @property
    def url(self) -> str:
        return f"s3://{self.bucket}/{self.prefix}" if self.prefix else f"s3://{self.bucket}"

    def key(self, relpath: str) -> str:
        return f"{self.prefix}/{relpath}" if self.prefix else relpath


def is_s3_url(text: str) -> bool:
    return text.startswith("s3://")


def parse_s3_url(text: str) -> S3Location:
    if not is_s3_url(text):
        raise ExportError(f"not an S3 URL: {text!r} (expected s3://BUCKET/PREFIX)")
    bucket, _, prefix = text[5:].partition("/")
    if not bucket:
        raise ExportError(f"no bucket in {text!r} (expected s3://BUCKET/PREFIX)")
    return S3Location(bucket, prefix.strip("/"))


def endpoint_from_env(endpoint_url: str | None = None) -> str | None:
    return endpoint_url or os.environ.get("AWS_ENDPOINT_URL_S3") or os.environ.get("AWS_ENDPOINT_URL") or None


def make_client(endpoint_url: str | None = None, *, max_pool: int = 10) -> Any:
    """An S3 client from boto3's standard credential chain (env, profile, SSO, instance role...)."""
    import boto3
    from botocore.config import Config

    endpoint = endpoint_from_env(endpoint_url)
    config = Config(retries={"max_attempts": 5, "mode": "standard"}, max_pool_connections=max_pool,
                    s3={"addressing_style": "path"} if endpoint else {})
    try:
        return boto3.session.Session().client("s3", endpoint_url=endpoint, config=config)
    except Exception as exc:  # botocore raises ValueError for a malformed endpoint
        raise ExportError(f"cannot create an S3 client: {exc}") from None


@contextmanager
def s3_errors(location: S3Location) -> Iterator[None]:
    """Translate botocore exceptions into one-line :class:`ExportError` messages."""
    from botocore.exceptions import (
        BotoCoreError,
        ClientError,
        EndpointConnectionError,
        NoCredentialsError,
        PartialCredentialsError,
    )

    try:
        yield
    except (NoCredentialsError, PartialCredentialsError):
        raise ExportError("no AWS credentials found: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, or AWS_PROFILE, "
                          "or configure another source of the standard credential chain") from None
    except EndpointConnectionError as exc:
        raise ExportError(f"cannot reach the S3 endpoint {exc.kwargs.get('endpoint_url', '')}") from None
    except ClientError as exc:
        error = exc.response.get("Error", {})
        code = str(error.get("Code", ""))
        status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
        if code in ("NoSuchBucket",) or (code in ("404", "NotFound") and exc.operation_name == "HeadBucket"):
            raise ExportError(f"bucket {location.bucket!r} does not exist ({location.url})") from None
        if code in ("AccessDenied", "AllAccessDisabled", "InvalidAccessKeyId", "SignatureDoesNotMatch",
                    "403", "Forbidden") or status == 403:
            raise ExportError(f"access denied to {location.url} ({code or status})") from None
        raise ExportError(f"S3 {exc.operation_name} failed on {location.url}: {code} {error.get('Message', '')}"
                          .rstrip()) from None
    except BotoCoreError as exc:
        raise ExportError(f"S3 error on {location.url}: {exc}") from None


def check_bucket(client: Any, location: S3Location) -> None:
    """Fail early (one line) when the bucket is missing, unreachable or forbidden."""
    with s3_errors(location):
        client.head_bucket(Bucket=location.bucket)


def b64(hex_digest: str) -> str:
    return base64.b64encode(bytes.fromhex(hex_digest)).decode("ascii")


@dataclass(frozen=True, slots=True)
class UploadItem:
    relpath: str
    size: int
    sha256: str


@dataclass
class UploadSummary:
    uploaded: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    bytes_uploaded: int = 0
    aborted_uploads: int = 0

    def as_json(self) -> dict[str, Any]:
        return {"uploaded": len(self.uploaded), "skipped": len(self.skipped), "bytes_uploaded": self.bytes_uploaded,
                "aborted_stale_multipart_uploads": self.aborted_uploads}


class Uploader:
    """Uploads a local export tree to an :class:`S3Location` (see the module docstring for the order)."""

    def __init__(self, client: Any, location: S3Location, *, part_size: int = DEFAULT_PART_SIZE,
                 concurrency: int = DEFAULT_CONCURRENCY, progress: Reporter | None = None) -> None:
        if part_size < MIN_PART_SIZE:
            raise ExportError(f"part size must be at least {MIN_PART_SIZE} bytes (5 MiB), not {part_size}")
        self.client = client
        self.location = location
        self.part_size = part_size
        self.concurrency = max(1, concurrency)
        self.progress = progress or (lambda event, amount: None)
        self.summary = UploadSummary()
        self._lock = threading.Lock()

    def run(self, root: Path, data: Sequence[UploadItem], tags: Sequence[UploadItem]) -> UploadSummary:
        """Upload ``data`` (concurrently), then ``tags`` one by one in the given order."""
        with s3_errors(self.location):
            self.client.head_bucket(Bucket=self.location.bucket)
            self._abort_stale({self.location.key(i.relpath) for i in [*data, *tags]})
            self.progress("total", sum(i.size for i in [*data, *tags]))
            with ThreadPoolExecutor(self.concurrency, thread_name_prefix="s3-upload") as pool:
                finishers: list[Callable[[], None]] = []
                futures: list[Future[None]] = []
                for item in data:
                    if self._present(item):
                        continue
                    if item.size > self.part_size:
                        finishers.append(self._multipart(pool, futures, root, item))
                    else:
                        futures.append(pool.submit(self._put, root, item))
                for future in futures:
                    future.result()
                for finish in finishers:
                    finish()
            for item in tags:
                if not self._present(item):
                    self._put(root, item)
        return self.summary

    def _abort_stale(self, keys: set[str]) -> None:
        paginator = self.client.get_paginator("list_multipart_uploads")
        for page in paginator.paginate(Bucket=self.location.bucket, Prefix=self.location.prefix):
            for upload in page.get("Uploads", []):
                if upload["Key"] in keys:
                    self.client.abort_multipart_upload(Bucket=self.location.bucket, Key=upload["Key"],
                                                       UploadId=upload["UploadId"])
                    self.summary.aborted_uploads += 1

    def _present(self, item: UploadItem) -> bool:
        from botocore.exceptions import ClientError

        try:
            head = self.client.head_object(Bucket=self.location.bucket, Key=self.location.key(item.relpath))
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") in ("404", "NoSuchKey", "NotFound"):
                return False
            raise
        same = head.get("ContentLength") == item.size and head.get("Metadata", {}).get(SHA256_META) == item.sha256
        if same:
            self.summary.skipped.append(item.relpath)
            self.progress("advance", item.size)
        return bool(same)

    def _done(self, item: UploadItem) -> None:
        with self._lock:
            self.summary.uploaded.append(item.relpath)
            self.summary.bytes_uploaded += item.size

    def _put(self, root: Path, item: UploadItem) -> None:
        with open(root / item.relpath, "rb") as body:
            self.client.put_object(Bucket=self.location.bucket, Key=self.location.key(item.relpath), Body=body,
                                   ChecksumAlgorithm="SHA256", ChecksumSHA256=b64(item.sha256),
                                   Metadata={SHA256_META: item.sha256})
        self._done(item)
        self.progress("advance", item.size)

    def _multipart(self, pool: ThreadPoolExecutor, futures: list[Future[None]], root: Path,
                   item: UploadItem) -> Callable[[], None]:
        key = self.location.key(item.relpath)
        upload_id = self.client.create_multipart_upload(
            Bucket=self.location.bucket, Key=key, ChecksumAlgorithm="SHA256",
            Metadata={SHA256_META: item.sha256})["UploadId"]
        count = (item.size + self.part_size - 1) // self.part_size
        parts: list[dict[str, Any]] = [{} for _ in range(count)]

        def send(number: int) -> None:
            with open(root / item.relpath, "rb") as handle:
                handle.seek((number - 1) * self.part_size)
                body = handle.read(self.part_size)
            checksum = base64.b64encode(hashlib.sha256(body).digest()).decode("ascii")
            answer = self.client.upload_part(Bucket=self.location.bucket, Key=key, UploadId=upload_id,
                                             PartNumber=number, Body=body, ChecksumSHA256=checksum)
            parts[number - 1] = {"PartNumber": number, "ETag": answer["ETag"], "ChecksumSHA256": checksum}
            self.progress("advance", len(body))

        mine = [pool.submit(send, n) for n in range(1, count + 1)]
        futures.extend(mine)

        def finish() -> None:
            try:
                for future in mine:
                    future.result()
                self.client.complete_multipart_upload(Bucket=self.location.bucket, Key=key, UploadId=upload_id,
                                                      MultipartUpload={"Parts": parts})
            except BaseException:
                self.client.abort_multipart_upload(Bucket=self.location.bucket, Key=key, UploadId=upload_id)
                raise
            self._done(item)

        return finish


def list_objects(client: Any, location: S3Location) -> dict[str, int]:
    """``{path relative to the prefix: size}`` of every object under the location."""
    out: dict[str, int] = {}
    prefix = location.prefix + "/" if location.prefix else ""
    with s3_errors(location):
        for page in client.get_paginator("list_objects_v2").paginate(Bucket=location.bucket, Prefix=prefix):
            for obj in page.get("Contents", []):
                out[obj["Key"][len(prefix):]] = int(obj["Size"])
    return out


def open_object(client: Any, location: S3Location, relpath: str, start: int = 0) -> BinaryIO:
    """A streaming body of one object (from byte ``start``)."""
    extra = {"Range": f"bytes={start}-"} if start else {}
    with s3_errors(location):
        answer = client.get_object(Bucket=location.bucket, Key=location.key(relpath), **extra)
    return answer["Body"]  # type: ignore[no-any-return]


def read_object(client: Any, location: S3Location, relpath: str) -> bytes:
    body = open_object(client, location, relpath)
    try:
        return bytes(body.read())
    finally:
        body.close()
