"""Helpers of the export tests: synthetic WARCs (warcio), workspaces, and checks every export must pass."""

from __future__ import annotations

import gzip
import hashlib
import io
import json
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import bagit
import jsonschema
import pytest
from warcio.archiveiterator import ArchiveIterator
from warcio.statusandheaders import StatusAndHeaders
from warcio.warcwriter import WARCWriter

from archivekeeper.catalog import Catalog
from archivekeeper.demo import generate_sample_archive
from archivekeeper.digests import sha1_base32
from archivekeeper.importer import Importer
from archivekeeper.models import CatalogRecord, Selection
from archivekeeper.package import ExportOptions, run_export
from archivekeeper.verify import verify_export
from archivekeeper.workspace import Workspace

REPO = Path(__file__).resolve().parents[1]
REALDATA = Path(__file__).resolve().parents[2] / "shared" / "realdata"
WARCS = REALDATA / "pywb" / "sample_archive" / "warcs"
WARCIO_DATA = REALDATA / "warcio" / "test" / "data"
SCHEMA = json.loads((REPO / "schemas" / "export-manifest.schema.json").read_text())
EPOCH = "1700000000"  # 2023-11-14T22:13:20Z


@dataclass
class Rec:
    """One record to write: a response (or a revisit of ``digest``)."""

    url: str
    date: str  # WARC-Date, e.g. 2021-05-01T00:00:00Z
    body: bytes = b"<html><head><title>t</title></head><body><p>hello</p></body></html>"
    mime: str = "text/html"
    status: int = 200
    revisit_of: Rec | None = None
    wrong_digest: bool = False
    headers: dict[str, str] = field(default_factory=dict)

    @property
    def digest(self) -> str:
        return sha1_base32(self.body)


def write_warc(path: Path, records: Sequence[Rec], *, gzipped: bool = True) -> Path:
    """Write ``records`` (with a warcinfo first) to ``path`` with warcio."""
    with open(path, "wb") as out:
        writer = WARCWriter(out, gzip=gzipped)
        writer.write_record(writer.create_warcinfo_record(path.name, {"software": "exportkit"}))
        for rec in records:
            http = StatusAndHeaders(f"{rec.status} OK", [("Content-Type", rec.mime), *rec.headers.items()],
                                    protocol="HTTP/1.1")
            warc_headers = {"WARC-Date": rec.date}
            if rec.revisit_of is not None:
                original = rec.revisit_of
                record = writer.create_revisit_record(
                    rec.url, original.digest, original.url, original.date, http_headers=http,
                    warc_headers_dict=warc_headers)
            else:
                record = writer.create_warc_record(rec.url, "response", payload=io.BytesIO(rec.body),
                                                   http_headers=http, warc_headers_dict=warc_headers)
                if rec.wrong_digest:  # the digest of the body, then one byte of the body changed
                    plain = io.BytesIO()
                    WARCWriter(plain, gzip=False).write_record(record)
                    data = plain.getvalue().replace(rec.body, rec.body[:-1] + b"!")
                    out.write(gzip.compress(data, mtime=0) if gzipped else data)
                    continue
            writer.write_record(record)
    return path


def import_into(root: Path, paths: Sequence[Path]) -> tuple[Workspace, Catalog]:
    workspace = Workspace.open(root)
    catalog = Catalog.open(workspace.catalog_path, workspace.settings.cutoff)
    Importer(workspace, catalog, jobs=1).run([str(p) for p in paths])
    return workspace, catalog


def check_export(path: Path) -> dict[str, Any]:
    """bagit-python validates the bag unchanged, the manifest fits its schema, ``verify`` finds nothing."""
    bag = bagit.Bag(str(path))
    bag.validate(processes=1)
    manifest: dict[str, Any] = json.loads((path / "manifest.json").read_text())
    jsonschema.validate(manifest, SCHEMA)
    report = verify_export(path)
    assert report.problems == [], report.problems
    return manifest


@dataclass
class ShardRecord:
    offset: int
    type: str
    headers: dict[str, str]
    payload: bytes
    raw: bytes  # the gzip member as it lies in the shard


def read_shard(path: Path) -> list[ShardRecord]:
    """Every record of a shard, with digests checked by warcio and its raw member bytes."""
    data = path.read_bytes()
    out: list[ShardRecord] = []
    with open(path, "rb") as handle:
        iterator = ArchiveIterator(handle, check_digests="raise")
        for record in iterator:
            payload = record.content_stream().read() if record.rec_type != "warcinfo" else record.raw_stream.read()
            iterator.read_to_end()
            offset, length = iterator.get_record_offset(), iterator.get_record_length()
            out.append(ShardRecord(offset, record.rec_type, dict(record.rec_headers.headers), payload,
                                   data[offset:offset + length]))
    return out


def tree_digest(root: Path) -> dict[str, str]:
    """``{relative path: sha256}`` of every file under ``root``."""
    return {p.relative_to(root).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


# -- a store shared by the export tests ------------------------------------------------------------

ENV = {"SOURCE_DATE_EPOCH": EPOCH}
PAGE = b"<html><head><title>One</title></head><body><article><p>%s</p></article></body></html>"
BODY1 = PAGE % b"The first page, captured three times and revisited."


def synthetic_records() -> list[Rec]:
    h = Rec("http://synth.example/h", "2020-12-01T00:00:00Z", BODY1)
    a = Rec("http://synth.example/a", "2021-01-01T00:00:00Z", BODY1)
    phantom = Rec("http://synth.example/phantom", "2021-01-01T00:00:00Z", b"never stored")
    return [
        h, a,
        Rec("http://synth.example/a", "2021-06-01T00:00:00Z", BODY1),
        Rec("http://synth.example/b", "2024-03-01T00:00:00Z", PAGE % b"after the cutoff"),
        Rec("http://synth.example/c", "2022-05-05T00:00:00Z", PAGE % b"digest mismatch", wrong_digest=True),
        Rec("http://synth.example/d", "2022-08-01T00:00:00Z", revisit_of=a),
        Rec("http://synth.example/e", "2024-01-01T00:00:00Z", revisit_of=a),
        Rec("http://synth.example/f", "2022-01-01T00:00:00Z", revisit_of=phantom),
        Rec("http://synth.example/edge", "2023-01-01T00:00:00Z", PAGE % b"exactly at the cutoff"),
        Rec("http://synth.example/last", "2022-12-31T23:59:59Z", PAGE % b"one second before the cutoff"),
        Rec("http://synth.example/img.png", "2021-03-03T00:00:00Z", bytes(range(256)) * 4, mime="image/png"),
    ]


def make_store(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Workspace, Catalog]]:
    """A workspace holding real WARCs (pywb, warcio), the demo archive, synthetic and plain-WARC cases."""
    root = tmp_path_factory.mktemp("export-ws")
    inputs = root / "inputs"
    inputs.mkdir()
    write_warc(inputs / "synthetic.warc.gz", synthetic_records())
    write_warc(inputs / "plain.warc", [Rec("http://plain.example/", "2020-02-02T00:00:00Z", PAGE % b"plain")],
               gzipped=False)
    demo = generate_sample_archive(inputs / "demo", seed=7, scale=1)
    real = [WARCS / "iana.warc.gz", WARCS / "example.warc.gz", WARCS / "example-extra.warc", WARCS / "example.arc",
            WARCS / "dupes.warc.gz", WARCS / "example-url-agnostic-orig.warc.gz",
            WARCS / "example-url-agnostic-revisit.warc.gz", WARCIO_DATA / "example-digest.warc"]
    workspace, catalog = import_into(root / "ws", [*real, *demo, inputs / "synthetic.warc.gz", inputs / "plain.warc"])
    yield workspace, catalog
    catalog.close()


def make_full(store: tuple[Workspace, Catalog], factory: pytest.TempPathFactory) -> tuple[Path, dict[str, Any]]:
    """The whole catalog exported in every format, in small shards, with two extraction processes."""
    workspace, catalog = store
    dest = factory.mktemp("full") / "corpus"
    options = ExportOptions(formats=("warc", "jsonl", "parquet"), shard_size=200_000, jobs=2)
    run_export(workspace, catalog, "corpus", str(dest), Selection(), options, env=ENV)
    return dest, check_export(dest)


# -- the export's roles, worked out record by record in Python (the planner does it in SQL) --------

Role = tuple[str, str | None, str | None, bool]  # role, reason, record key of the canonical record, selected


def _left_out_reason(rec: CatalogRecord, cutoff: str) -> str | None:
    if not (rec.pre_cutoff and rec.capture_time < cutoff):
        return "post_cutoff"
    if rec.record_type == "revisit":
        return None
    if rec.verification == "verified" and rec.record_type in ("response", "resource") and rec.digest is not None:
        return None
    return rec.verification if rec.verification in ("mismatch", "transformed") else "unverifiable"


def _holds(rec: CatalogRecord, cutoff: str) -> bool:
    """A record a revisit outside its own selection may be resolved to."""
    return (rec.payload_sha1 == rec.digest and rec.record_type in ("response", "resource")
            and rec.verification == "verified" and rec.pre_cutoff and rec.capture_time < cutoff)


def expected_roles(catalog: Catalog, selection: Selection) -> dict[str, Role]:
    """``{record key: role}`` of every capture an export of ``selection`` covers (module docstring of export.py)."""
    cutoff = catalog.cutoff_iso
    order = lambda rec: (rec.capture_time, rec.record_key)  # noqa: E731
    selected = list(catalog.query(selection))
    everything = list(catalog.query(Selection()))
    reasons = {rec.record_key: _left_out_reason(rec, cutoff) for rec in selected}
    candidates = [rec for rec in selected if reasons[rec.record_key] is None and rec.record_type != "revisit"]
    first: dict[str, CatalogRecord] = {}
    for rec in sorted(candidates, key=order):
        first.setdefault(str(rec.digest), rec)
    roles: dict[str, Role] = {}
    for rec in selected:
        key, reason = rec.record_key, reasons[rec.record_key]
        if reason is not None:
            roles[key] = ("left_out", reason, None, True)
        elif rec.record_type != "revisit":
            holder = first[str(rec.digest)]
            roles[key] = ("exported", None, key, True) if holder is rec else ("alias", "duplicate", holder.record_key,
                                                                             True)
    for rec in selected:
        if rec.record_type != "revisit" or reasons[rec.record_key] is not None:
            continue
        holder = first.get(str(rec.digest)) if rec.digest is not None else None
        if holder is None:
            outside = sorted((h for h in everything if h.digest == rec.digest and _holds(h, cutoff)), key=order)
            holder = outside[0] if outside and rec.digest is not None else None
            if holder is not None:
                roles.setdefault(holder.record_key, ("exported", None, holder.record_key, False))
        roles[rec.record_key] = (("alias", "revisit", holder.record_key, True) if holder is not None
                                 else ("left_out", "revisit_unresolved", None, True))
    return roles


def catalogued_roles(catalog: Catalog, destination: str) -> dict[str, Role]:
    """``{record key: role}`` as ``export_captures`` holds them for the latest export to ``destination``."""
    rows = catalog.conn.execute(
        "SELECT c.record_key, x.role, x.reason, k.record_key, x.selected FROM export_captures x "
        "JOIN captures c ON c.id = x.capture_id LEFT JOIN captures k ON k.id = x.canonical_id "
        "WHERE x.export_id = (SELECT max(id) FROM exports WHERE destination = ?)", (destination,)).fetchall()
    return {key: (role, reason, canonical, bool(selected)) for key, role, reason, canonical, selected in rows}
