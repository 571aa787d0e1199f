"""``manifest.json``: the self-description of an export (schema: ``schemas/export-manifest.schema.json``).

It names the export, the tool, the cutoff and the selection as given, counts what went in and what
was left out by reason, and lists every data file with its path, size, SHA-256 and record or row
count. It is written with a fixed key order and indentation, so the same export gives the same bytes.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from . import __version__
from .errors import VerificationFailed
from .shards import DataFile

MANIFEST_JSON = "manifest.json"
MANIFEST_VERSION = 1

POLICY = {
    "exported": "captures made strictly before the cutoff whose payload SHA-1 equals the archive's own digest",
    "left_out": "post-cutoff captures, and captures whose payload is not verified (mismatch, transformed, "
                "unverifiable), counted by reason; nothing post-cutoff is ever exported",
    "duplicates": "one record per payload digest: the earliest capture; the others are aliases",
    "revisits": "a revisit is resolved to the verified pre-cutoff record holding its payload and listed as an alias",
    "warc": "records copied byte-for-byte from the store (plain .warc records gzipped one member each), "
            "each shard headed by a warcinfo record describing the export",
}


def file_kind(path: str) -> str:
    if path.endswith(".warc.gz"):
        return "warc"
    if path == "data/aliases.jsonl.gz":
        return "aliases"
    if path.endswith(".jsonl.gz"):
        return "jsonl"
    return "parquet"


def file_entry(data_file: DataFile) -> dict[str, Any]:
    entry: dict[str, Any] = {"path": data_file.path, "kind": file_kind(data_file.path), "size": data_file.size,
                             "sha256": data_file.sha256}
    if data_file.records is not None:
        entry["records"] = data_file.records
    if data_file.rows is not None:
        entry["rows"] = data_file.rows
    return entry


def build_manifest(*, name: str, created: str, cutoff: str, selection: dict[str, Any], formats: Sequence[str],
                   counts: dict[str, Any], sources: dict[str, int], text: dict[str, Any] | None,
                   files: Sequence[DataFile]) -> dict[str, Any]:
    return {
        "manifest_version": MANIFEST_VERSION,
        "name": name,
        "created": created,
        "tool": {"name": "archivekeeper", "version": __version__},
        "cutoff": cutoff,
        "selection": selection,
        "formats": list(formats),
        "policy": dict(POLICY),
        "counts": counts,
        "sources": [{"name": source, "exported": n} for source, n in sorted(sources.items())],
        "text": text,
        "files": [file_entry(f) for f in sorted(files, key=lambda f: f.path)],
    }


def dumps(manifest: dict[str, Any]) -> bytes:
    return (json.dumps(manifest, indent=2, ensure_ascii=False) + "\n").encode("utf-8")


def loads(data: bytes, *, where: str = MANIFEST_JSON) -> dict[str, Any]:
    """Parse a manifest just enough to verify against it (``files`` entries with path, size, sha256)."""
    try:
        manifest = json.loads(data.decode("utf-8"))
        files = manifest["files"]
        for entry in files:
            if not isinstance(entry["path"], str) or not isinstance(entry["size"], int) \
                    or not isinstance(entry["sha256"], str):
                raise TypeError("bad file entry")
    except (UnicodeDecodeError, ValueError, KeyError, TypeError) as exc:
        raise VerificationFailed(f"{where} is not a valid export manifest ({exc})",
                                 problems=[f"invalid: {where}"]) from None
    return dict(manifest)
