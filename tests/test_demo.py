"""The offline demo's sample archive: deterministic, valid WARC that warcio, FastWARC and pywb read."""

from __future__ import annotations

import base64
import gzip
import hashlib
import zlib
from collections import Counter
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from pathlib import Path

import pytest
import requests
from conftest import PywbFactory
from fastwarc.warc import ArchiveIterator as FastArchiveIterator
from fastwarc.warc import WarcRecordType
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from warcio.archiveiterator import ArchiveIterator

from archivekeeper.demo import CUTOFF_EDGE_URL, DEMO_SITES, TRAP_URL, generate_sample_archive

CUTOFF = datetime(2023, 1, 1, tzinfo=UTC)
REVISIT_PROFILES = {
    "http://netpreserve.org/warc/1.0/revisit/identical-payload-digest",
    "http://netpreserve.org/warc/1.1/revisit/identical-payload-digest",
}


def sha1_b32(data: bytes) -> str:
    return "sha1:" + base64.b32encode(hashlib.sha1(data).digest()).decode("ascii")


@dataclass
class Rec:
    path: Path
    offset: int
    length: int  # compressed bytes of this record's gzip member
    type: str
    headers: dict[str, str]
    status: str | None
    http: dict[str, str]
    block: bytes  # everything after the WARC headers (HTTP headers + payload)
    payload: bytes

    @property
    def date(self) -> datetime:
        return datetime.strptime(self.headers["WARC-Date"], "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC)

    @property
    def uri(self) -> str:
        return self.headers.get("WARC-Target-URI", "")


def read_all(path: Path) -> list[Rec]:
    """Every record via warcio with digest checking; fails on any digest problem."""
    recs: list[Rec] = []
    with open(path, "rb") as fh:
        it = ArchiveIterator(fh, check_digests=True)
        for record in it:
            raw = record.raw_stream.read()
            problems = record.digest_checker.problems
            assert not problems, (path.name, record.rec_headers.get_header("WARC-Record-ID"), problems)
            http = record.http_headers
            head = http.headers_buff if http is not None and http.headers_buff else b""
            if http is not None and not head:
                http.compute_headers_buffer()
                head = http.headers_buff
            recs.append(Rec(
                path=path,
                offset=it.get_record_offset(),
                length=0,
                type=record.rec_type,
                headers=dict(record.rec_headers.headers),
                status=http.get_statuscode() if http is not None and record.rec_type != "request" else None,
                http=dict(http.headers) if http is not None else {},
                block=head + raw,
                payload=raw,
            ))
    # Compressed lengths: the next record's offset (or end of file).
    size = path.stat().st_size
    for rec, nxt in zip(recs, [*recs[1:], None], strict=True):
        rec.length = (nxt.offset if nxt else size) - rec.offset
    return recs


@pytest.fixture(scope="module")
def sample(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    return generate_sample_archive(tmp_path_factory.mktemp("demo"))


@pytest.fixture(scope="module")
def records(sample: list[Path]) -> dict[Path, list[Rec]]:
    return {path: read_all(path) for path in sample}


def captures(records: dict[Path, list[Rec]]) -> list[Rec]:
    return [r for recs in records.values() for r in recs if r.type in ("response", "revisit")]


# --------------------------------------------------------------------------------- files


def test_files_one_per_site(sample: list[Path]) -> None:
    assert [p.name for p in sample] == [f"ak-demo-{host}.warc.gz" for host in DEMO_SITES]
    assert all(p.is_file() and p.stat().st_size > 10_000 for p in sample)
    assert not list(sample[0].parent.glob("*.part"))
    total = sum(p.stat().st_size for p in sample)
    assert 100_000 < total < 1_500_000


def test_deterministic(sample: list[Path], tmp_path: Path) -> None:
    again = generate_sample_archive(tmp_path / "again")
    assert [p.name for p in again] == [p.name for p in sample]
    for first, second in zip(sample, again, strict=True):
        assert first.read_bytes() == second.read_bytes(), first.name
    other = generate_sample_archive(tmp_path / "other", seed=7)
    assert other[0].read_bytes() != sample[0].read_bytes()


def test_rewrites_in_place(tmp_path: Path) -> None:
    first = [p.read_bytes() for p in generate_sample_archive(tmp_path, seed=5)]
    second = [p.read_bytes() for p in generate_sample_archive(tmp_path, seed=5)]
    assert first == second
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(f"ak-demo-{h}.warc.gz" for h in DEMO_SITES)


def test_bad_scale(tmp_path: Path) -> None:
    with pytest.raises(ValueError):
        generate_sample_archive(tmp_path, scale=0)


def test_scale_multiplies_captures(records: dict[Path, list[Rec]], tmp_path: Path) -> None:
    base = len(captures(records))
    assert 120 <= base <= 260
    bigger = {p: read_all(p) for p in generate_sample_archive(tmp_path, scale=3)}
    assert 2.3 * base < len(captures(bigger)) < 3.7 * base


# ------------------------------------------------------------------------------ structure


def test_one_gzip_member_per_record(records: dict[Path, list[Rec]]) -> None:
    for path, recs in records.items():
        data = path.read_bytes()
        for rec in recs:
            member = data[rec.offset : rec.offset + rec.length]
            assert member[:2] == b"\x1f\x8b"
            d = zlib.decompressobj(wbits=31)
            text = d.decompress(member)
            assert d.eof and d.unused_data == b""
            assert text.startswith(b"WARC/1.0\r\n") and text.endswith(b"\r\n\r\n")
        assert gzip.decompress(data).count(b"WARC/1.0\r\nWARC-Type: ") == len(recs)


def test_warcinfo_first_and_ids_unique(records: dict[Path, list[Rec]]) -> None:
    ids: list[str] = []
    for path, recs in records.items():
        assert recs[0].type == "warcinfo"
        assert recs[0].headers["WARC-Filename"] == path.name
        assert b"isPartOf: archivekeeper-demo" in recs[0].payload
        assert sum(r.type == "warcinfo" for r in recs) == 1
        info_id = recs[0].headers["WARC-Record-ID"]
        assert all(r.headers["WARC-Warcinfo-ID"] == info_id for r in recs[1:])
        ids += [r.headers["WARC-Record-ID"] for r in recs]
    assert len(ids) == len(set(ids))
    assert all(i.startswith("<urn:uuid:") and i.endswith(">") for i in ids)


def test_request_precedes_each_capture(records: dict[Path, list[Rec]]) -> None:
    for recs in records.values():
        body = recs[1:]
        assert len(body) % 2 == 0
        for req, resp in zip(body[::2], body[1::2], strict=True):
            assert req.type == "request" and resp.type in ("response", "revisit")
            assert req.headers["WARC-Concurrent-To"] == resp.headers["WARC-Record-ID"]
            assert req.uri == resp.uri and req.headers["WARC-Date"] == resp.headers["WARC-Date"]
            assert req.block.startswith(b"GET /")
        dates = [r.date for r in body]
        assert dates == sorted(dates)


def test_http_headers(records: dict[Path, list[Rec]]) -> None:
    for rec in captures(records):
        assert rec.block.startswith(b"HTTP/1.1 ")
        assert rec.http["Content-Type"] == "text/html; charset=utf-8"
        assert parsedate_to_datetime(rec.http["Date"]) == rec.date
        assert rec.http["Server"]
        length = int(rec.http["Content-Length"])
        if rec.type == "response":
            assert length == len(rec.payload)
            assert rec.headers["WARC-Payload-Digest"] == sha1_b32(rec.payload)
        else:
            assert rec.payload == b""
        assert rec.headers["WARC-Block-Digest"] == sha1_b32(rec.block)


def test_pages_look_like_html(records: dict[Path, list[Rec]]) -> None:
    sizes = []
    for rec in captures(records):
        if rec.type != "response" or rec.status != "200":
            continue
        text = rec.payload.decode("utf-8")
        for tag in ("<html", "<head>", '<meta charset="utf-8">', "<title>", "<body>", "<article", "<h1>", "<p>"):
            assert tag in text, (rec.uri, tag)
        sizes.append(len(rec.payload))
    assert min(sizes) > 1000 and 1500 < sum(sizes) / len(sizes) < 8000


def test_fastwarc_agrees(records: dict[Path, list[Rec]]) -> None:
    for path, recs in records.items():
        with open(path, "rb") as fh:
            seen = []
            # FastWARC checks block digests only on unparsed records, payload digests only on parsed ones
            for record in FastArchiveIterator(fh, parse_http=False):
                assert record.verify_block_digest(), (path.name, record.record_id)
                seen.append((record.stream_pos, record.record_id, record.record_date))
        with open(path, "rb") as fh:
            for record in FastArchiveIterator(fh, parse_http=True, record_types=WarcRecordType.response):
                assert record.verify_payload_digest(), (path.name, record.record_id)
                assert record.http_headers.status_code in (200, 301, 302)
        assert [(s[0], s[1]) for s in seen] == [(r.offset, r.headers["WARC-Record-ID"]) for r in recs]
        assert [s[2] for s in seen] == [r.date for r in recs]
        with open(path, "rb") as fh:
            wanted = WarcRecordType.response | WarcRecordType.revisit
            dates = [r.record_date for r in FastArchiveIterator(fh, record_types=wanted)]
        assert dates == [r.date for r in recs if r.type in ("response", "revisit")]


# ------------------------------------------------------------------------------- content


def test_both_sides_of_cutoff(records: dict[Path, list[Rec]]) -> None:
    for recs in records.values():
        years = Counter(r.date.year for r in recs if r.type in ("response", "revisit"))
        assert set(years) == set(range(2019, 2025))
        assert all(n >= 3 for n in years.values())
        caps = [r for r in recs if r.type in ("response", "revisit")]
        assert any(r.date < CUTOFF for r in caps) and any(r.date >= CUTOFF for r in caps)
    assert len({r.uri for r in captures(records) if r.status == "200" and r.type == "response"}) >= 40


def test_revisits_refer_to_earlier_identical_response(records: dict[Path, list[Rec]]) -> None:
    revisits = 0
    for recs in records.values():
        originals: dict[tuple[str, str], Rec] = {}
        for rec in recs:
            if rec.type == "response" and rec.status == "200":
                originals.setdefault((rec.uri, rec.headers["WARC-Payload-Digest"]), rec)
            elif rec.type == "revisit":
                revisits += 1
                orig = originals[(rec.uri, rec.headers["WARC-Payload-Digest"])]
                assert orig.date < rec.date
                assert rec.headers["WARC-Profile"] in REVISIT_PROFILES
                assert rec.headers["WARC-Refers-To-Target-URI"] == orig.uri
                assert rec.headers["WARC-Refers-To-Date"] == orig.headers["WARC-Date"]
                assert rec.headers["WARC-Refers-To"] == orig.headers["WARC-Record-ID"]
                assert rec.http["Content-Length"] == orig.http["Content-Length"]
        # a fresh response is never a byte-identical copy of an earlier one of the same URL
        bodies = Counter((r.uri, r.headers["WARC-Payload-Digest"]) for r in recs
                         if r.type == "response" and r.status == "200")
        assert max(bodies.values()) == 1
    assert revisits >= 20
    # the content of a page captured before the cutoff also turns up in post-cutoff revisits
    caps = captures(records)
    assert any(r.type == "revisit" and r.date >= CUTOFF
               and r.headers["WARC-Refers-To-Date"] < "2023" for r in caps)


def test_redirects(records: dict[Path, list[Rec]]) -> None:
    caps = captures(records)
    moved = [r for r in caps if r.status == "301"]
    assert moved and all(r.uri == "http://example.org/" for r in moved)
    assert all(r.http["Location"] == "https://www.example.org/" for r in moved)
    found = [r for r in caps if r.status == "302"]
    assert found
    for rec in found:
        assert rec.uri.endswith(".html") and rec.http["Location"].startswith("https://news.example.com/articles/")
        assert rec.http["Location"].encode() in rec.payload and len(rec.payload) < 400
    # each redirect is followed by a capture of its target
    for recs in records.values():
        for i, rec in enumerate(recs):
            if rec.status in ("301", "302") and rec.type == "response":
                assert recs[i + 2].uri == rec.http["Location"]


def test_trap_page(records: dict[Path, list[Rec]]) -> None:
    trap = [r for r in captures(records) if r.uri == TRAP_URL]
    years = {r.date.year for r in trap}
    assert {2021, 2024} <= years
    first = next(r for r in trap if r.date.year == 2021 and r.type == "response")
    late = next(r for r in trap if r.date.year == 2024)
    assert late.type == "response"
    assert late.headers["WARC-Payload-Digest"] != first.headers["WARC-Payload-Digest"]
    assert parsedate_to_datetime(late.http["Last-Modified"]).year == 2021
    assert b"14 June 2021" in late.payload and b"Update:" in late.payload
    assert b"Update:" not in first.payload


def test_cutoff_edge(records: dict[Path, list[Rec]]) -> None:
    caps = captures(records)
    edge = [r for r in caps if r.uri == CUTOFF_EDGE_URL and r.date == CUTOFF]
    assert len(edge) == 1
    before = [r for r in caps if r.uri.startswith("https://library.example.org/")
              and r.headers["WARC-Date"].startswith("2022-12-31T23:59")]
    assert before


@settings(max_examples=6, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(seed=st.integers(min_value=0, max_value=2**32))
def test_any_seed_is_consistent(tmp_path_factory: pytest.TempPathFactory, seed: int) -> None:
    paths = generate_sample_archive(tmp_path_factory.mktemp("seed"), seed=seed)
    recs = {p: read_all(p) for p in paths}
    caps = captures(recs)
    types = Counter((r.type, r.status) for r in caps)
    assert types[("revisit", "200")] and types[("response", "301")] and types[("response", "302")]
    assert any(r.date < CUTOFF for r in caps) and any(r.date >= CUTOFF for r in caps)
    for file_recs in recs.values():
        digests: dict[str, set[str]] = {}
        for rec in file_recs:
            if rec.type == "response" and rec.status == "200":
                digests.setdefault(rec.uri, set()).add(rec.headers["WARC-Payload-Digest"])
            elif rec.type == "revisit":
                assert rec.headers["WARC-Payload-Digest"] in digests[rec.uri]


# ---------------------------------------------------------------------------------- pywb


def test_pywb_replays_revisits(sample: list[Path], records: dict[Path, list[Rec]],
                               pywb_factory: PywbFactory, http_session: requests.Session) -> None:
    pywb = pywb_factory({"demo": sample})
    assert not pywb.failed_files
    pywb.start()
    revisit = next(r for r in captures(records) if r.type == "revisit")
    original = next(r for r in captures(records)
                    if r.headers["WARC-Record-ID"] == revisit.headers["WARC-Refers-To"])
    stamp = revisit.date.strftime("%Y%m%d%H%M%S")
    resp = http_session.get(pywb.replay_url("demo", stamp, revisit.uri), timeout=30)
    assert resp.status_code == 200
    assert resp.content == original.payload
    assert resp.headers.get("Memento-Datetime") == revisit.date.strftime("%a, %d %b %Y %H:%M:%S GMT")
