"""Check an export, in a folder or under ``s3://BUCKET/PREFIX``, against its own manifests — and pull one.

:func:`verify_export` recomputes the SHA-256 of every file and compares it with ``manifest.json``,
``manifest-sha256.txt`` and ``tagmanifest-sha256.txt``; it names each file that is missing, extra
or altered (and any disagreement between the manifests). It needs nothing from a workspace.

:func:`pull_export` downloads an export from S3 (``manifest.json`` first, so an incomplete upload is
refused; files already complete locally are skipped, a partial ``.part`` download is resumed with a
range request, ``manifest.json`` is written last) and then verifies the copy.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO, Protocol

from . import bagit
from .errors import ExportError, VerificationFailed
from .manifest import MANIFEST_JSON, loads
from .s3 import S3Location, is_s3_url, list_objects, make_client, open_object, parse_s3_url, read_object

READ_CHUNK = 1 << 20
HASH_THREADS = 2
TAG_FILES = (bagit.BAGIT_TXT, bagit.BAG_INFO_TXT, bagit.MANIFEST_TXT, bagit.TAGMANIFEST_TXT, MANIFEST_JSON)
Reporter = Callable[[str, int], None]


class Tree(Protocol):
    """Where an export lies: a local folder or an S3 prefix."""

    description: str

    def files(self) -> dict[str, int]: ...

    def open(self, relpath: str) -> BinaryIO: ...


class LocalTree:
    def __init__(self, root: Path) -> None:
        if not root.is_dir():
            raise ExportError(f"{root} is not a directory")
        self.root = root
        self.description = str(root)

    def files(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for dirpath, _dirs, names in os.walk(self.root):
            for name in names:
                path = Path(dirpath) / name
                out[path.relative_to(self.root).as_posix()] = path.stat().st_size
        return out

    def open(self, relpath: str) -> BinaryIO:
        return open(self.root / relpath, "rb")


class S3Tree:
    def __init__(self, client: Any, location: S3Location) -> None:
        self.client = client
        self.location = location
        self.description = location.url

    def files(self) -> dict[str, int]:
        return list_objects(self.client, self.location)

    def open(self, relpath: str) -> BinaryIO:
        return open_object(self.client, self.location, relpath)


@dataclass
class VerifyReport:
    location: str
    files_checked: int = 0
    bytes_checked: int = 0
    problems: list[str] = field(default_factory=list)
    name: str | None = None

    @property
    def ok(self) -> bool:
        return not self.problems

    def as_json(self) -> dict[str, Any]:
        return {"location": self.location, "name": self.name, "ok": self.ok, "files_checked": self.files_checked,
                "bytes_checked": self.bytes_checked, "problems": list(self.problems)}

    def raise_for_problems(self) -> None:
        if self.problems:
            count = len(self.problems)
            raise VerificationFailed(f"{self.location}: {count} problem{'s' if count != 1 else ''}: "
                                     + "; ".join(self.problems), problems=self.problems)


def _sha256(tree: Tree, relpath: str) -> tuple[int, str]:
    digest = hashlib.sha256()
    size = 0
    with tree.open(relpath) as handle:
        while chunk := handle.read(READ_CHUNK):
            digest.update(chunk)
            size += len(chunk)
    return size, digest.hexdigest()


def _read(tree: Tree, relpath: str) -> bytes:
    with tree.open(relpath) as handle:
        return bytes(handle.read())


def open_tree(location: str | Path, *, client: Any = None, endpoint_url: str | None = None) -> Tree:
    text = str(location)
    if is_s3_url(text):
        return S3Tree(client or make_client(endpoint_url), parse_s3_url(text))
    return LocalTree(Path(text))


def verify_export(location: str | Path, *, client: Any = None, endpoint_url: str | None = None,
                  progress: Reporter | None = None) -> VerifyReport:
    """Recompute every checksum of an export against its manifests; the report lists each problem."""
    tree = open_tree(location, client=client, endpoint_url=endpoint_url)
    return verify_tree(tree, progress=progress)


def verify_tree(tree: Tree, *, progress: Reporter | None = None) -> VerifyReport:
    report = VerifyReport(tree.description)
    present = tree.files()
    problems: dict[str, str] = {}
    claims: dict[str, list[tuple[str, int | None, str]]] = {}  # path -> (which manifest, size, sha256)

    def claim(path: str, source: str, size: int | None, sha256: str) -> None:
        claims.setdefault(path, []).append((source, size, sha256.lower()))

    manifest_files: set[str] = set()
    if MANIFEST_JSON in present:
        manifest = loads(_read(tree, MANIFEST_JSON), where=f"{tree.description}/{MANIFEST_JSON}")
        report.name = manifest.get("name")
        for entry in manifest["files"]:
            manifest_files.add(entry["path"])
            claim(entry["path"], MANIFEST_JSON, entry["size"], entry["sha256"])
    payload_files: set[str] = set()
    for name, target in ((bagit.MANIFEST_TXT, payload_files), (bagit.TAGMANIFEST_TXT, None)):
        if name not in present:
            continue
        try:
            listed = bagit.parse_manifest(_read(tree, name).decode("utf-8"))
        except (UnicodeDecodeError, ValueError) as exc:
            problems[name] = f"invalid: {name} ({exc})"
            continue
        for path, checksum in listed.items():
            claim(path, name, None, checksum)
            if target is not None:
                target.add(path)
    for name in TAG_FILES:
        if name not in present:
            problems[name] = f"missing: {name}"
    if bagit.BAGIT_TXT in present and not _read(tree, bagit.BAGIT_TXT).startswith(b"BagIt-Version: "):
        problems[bagit.BAGIT_TXT] = f"altered: {bagit.BAGIT_TXT} (no BagIt-Version line)"
    for path in sorted(manifest_files ^ payload_files):
        if MANIFEST_JSON in present and bagit.MANIFEST_TXT in present:
            where = MANIFEST_JSON if path in manifest_files else bagit.MANIFEST_TXT
            problems.setdefault(f"~{path}", f"inconsistent: {path} is listed only in {where}")
    _check_files(tree, present, claims, problems, report, progress)
    known = set(claims) | set(TAG_FILES)
    for path in present:
        if path not in known:
            problems.setdefault(path, f"extra: {path}")
    report.problems = [problems[key] for key in sorted(problems, key=lambda k: (k.lstrip("~"), k))]
    return report


def _check_files(tree: Tree, present: dict[str, int], claims: dict[str, list[tuple[str, int | None, str]]],
                 problems: dict[str, str], report: VerifyReport, progress: Reporter | None) -> None:
    to_hash = sorted(p for p in claims if p in present)
    for path in sorted(set(claims) - set(present)):
        problems.setdefault(path, f"missing: {path}")
    if progress:
        progress("total", sum(present[p] for p in to_hash))
    with ThreadPoolExecutor(HASH_THREADS, thread_name_prefix="verify") as pool:
        for path, (size, digest) in zip(to_hash, pool.map(lambda p: _sha256(tree, p), to_hash), strict=True):
            report.files_checked += 1
            report.bytes_checked += size
            if progress:
                progress("advance", size)
            for source, claimed_size, claimed in claims[path]:
                if claimed != digest or (claimed_size is not None and claimed_size != size):
                    problems.setdefault(path, f"altered: {path} (sha256 {digest[:16]}…, {source} says "
                                              f"{claimed[:16]}…; {size} bytes)")


# -- pull ------------------------------------------------------------------------------------------

@dataclass
class PullSummary:
    location: str
    destination: str
    downloaded: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    bytes_downloaded: int = 0
    report: VerifyReport | None = None

    def as_json(self) -> dict[str, Any]:
        return {"location": self.location, "destination": self.destination, "downloaded": len(self.downloaded),
                "skipped": len(self.skipped), "bytes_downloaded": self.bytes_downloaded,
                "verify": self.report.as_json() if self.report else None}


def _local_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(READ_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def pull_export(url: str, destination: Path, *, client: Any = None, endpoint_url: str | None = None,
                progress: Reporter | None = None) -> PullSummary:
    """Download the export at ``url`` into ``destination`` (resumable), then verify the copy."""
    location = parse_s3_url(url)
    client = client or make_client(endpoint_url)
    summary = PullSummary(location.url, str(destination))
    remote = list_objects(client, location)
    if MANIFEST_JSON not in remote:
        raise ExportError(f"{location.url} has no {MANIFEST_JSON}: not an export, or its upload is not complete")
    manifest_bytes = read_object(client, location, MANIFEST_JSON)
    manifest = loads(manifest_bytes, where=f"{location.url}/{MANIFEST_JSON}")
    tag_bytes = read_object(client, location, bagit.TAGMANIFEST_TXT) if bagit.TAGMANIFEST_TXT in remote else b""
    try:
        tag_claims = bagit.parse_manifest(tag_bytes.decode("utf-8"))
    except (UnicodeDecodeError, ValueError):
        tag_claims = {}
    wanted = [(e["path"], e["size"], e["sha256"]) for e in manifest["files"]]
    wanted += [(p, remote.get(p, 0), c) for p, c in sorted(tag_claims.items()) if p != MANIFEST_JSON]
    destination.mkdir(parents=True, exist_ok=True)
    if progress:
        progress("total", sum(size for _, size, _ in wanted))
    for relpath, size, sha256 in wanted:
        _fetch(client, location, destination, relpath, size, sha256, summary, progress)
    _write_file(destination / bagit.TAGMANIFEST_TXT, tag_bytes)
    _write_file(destination / MANIFEST_JSON, manifest_bytes)
    summary.report = verify_tree(LocalTree(destination))
    return summary


def _fetch(client: Any, location: S3Location, destination: Path, relpath: str, size: int, sha256: str,
           summary: PullSummary, progress: Reporter | None) -> None:
    parts = relpath.split("/")
    if (not relpath or relpath.startswith("/") or "\x00" in relpath
            or any(part in ("", ".", "..") for part in parts)):
        raise ExportError(f"refusing to write outside {destination}: bad path {relpath!r} in the export's manifest")
    target = destination / relpath
    if destination.resolve() not in target.resolve().parents:
        raise ExportError(f"refusing to write outside {destination}: {relpath!r}")
    if target.is_file() and target.stat().st_size == size and _local_sha256(target) == sha256:
        summary.skipped.append(relpath)
        if progress:
            progress("advance", size)
        return
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_name(target.name + ".part")
    start = partial.stat().st_size if partial.is_file() else 0
    if start >= size:
        start = 0
    body = open_object(client, location, relpath, start)
    try:
        with open(partial, "ab" if start else "wb") as out:
            while chunk := body.read(READ_CHUNK):
                out.write(chunk)
                summary.bytes_downloaded += len(chunk)
                if progress:
                    progress("advance", len(chunk))
            out.flush()
            os.fsync(out.fileno())
    finally:
        body.close()
    os.replace(partial, target)
    summary.downloaded.append(relpath)


def _write_file(path: Path, data: bytes) -> None:
    tmp = path.with_name(path.name + ".part")
    with open(tmp, "wb") as out:
        out.write(data)
        out.flush()
        os.fsync(out.fileno())
    os.replace(tmp, path)
