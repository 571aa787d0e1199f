"""WARC-Block-Digest is checked on import, in the same pass as the payload digest: real files agree with
warcio's own check, and a bit flipped in a response's HTTP headers (where the payload digest cannot see it)
keeps the record from being ``verified``."""

from __future__ import annotations

import base64
import gzip
import hashlib
import zlib
from pathlib import Path

import pytest
from crashkit import REAL_WARCS, WARCIO_DATA, iter_gzip_members
from warcio.archiveiterator import ArchiveIterator
from warcio.exceptions import ArchiveLoadFailed

from archivekeeper.errors import InputFileError
from archivekeeper.models import MISMATCH, UNVERIFIABLE, VERIFIED
from archivekeeper.warcreader import FREEZE_MAX, ScanResult, parse_block_digest, scan

BLOCK_FILES = sorted(p for d in (REAL_WARCS, WARCIO_DATA) for p in d.iterdir()
                     if p.name.endswith((".warc", ".warc.gz")))


def _warcio_block_failures(path: Path) -> dict[int, bool] | None:
    """offset → whether warcio's digest check found the block digest wrong, for records that carry one
    (None when warcio cannot read the file through)."""
    out: dict[int, bool] = {}
    try:
        with open(path, "rb") as handle:
            iterator = ArchiveIterator(handle, check_digests=True)
            for record in iterator:
                has_block = record.rec_headers.get_header("WARC-Block-Digest") is not None
                record.content_stream().read()
                iterator.read_to_end()
                if has_block and record.rec_type in ("response", "resource"):
                    problems = record.digest_checker.problems
                    out[iterator.get_record_offset()] = any("block digest" in p for p in problems)
    except ArchiveLoadFailed:
        return None
    return out


@pytest.mark.parametrize("path", BLOCK_FILES, ids=lambda p: p.name)
def test_real_block_digests_agree_with_warcio(path: Path) -> None:
    expected = _warcio_block_failures(path)
    if expected is None:  # warcio stops inside one gzip stream of several records: so does the import, loudly
        with pytest.raises(InputFileError, match="not a per-record gzip WARC"):
            list(scan(path, result=ScanResult()))
        return
    records = {r.offset: r for r in scan(path, result=ScanResult())}
    for offset, failed in expected.items():
        reason = records[offset].verification_reason or ""
        assert ("WARC-Block-Digest" in reason) == failed, (offset, reason)
    if path.name == "example-trunc.warc":
        assert any(failed for failed in expected.values())  # the one real file whose block is wrong


def test_real_files_with_block_digests_still_verify() -> None:
    """The real response/resource records that carry both digests (hex and base32) are verified."""
    checked = 0
    for name in ("post-test.warc.gz", "example2.warc.gz", "example-wget-1-14.warc.gz", "httpbin-resource.warc.gz"):
        for record in scan(REAL_WARCS / name):
            if record.verification_reason == "no WARC-Payload-Digest in the record":
                assert record.url.startswith("metadata://"), name  # wget's carry a block digest only
                continue
            assert record.verification == VERIFIED, (name, record.url, record.verification_reason)
            checked += 1
    assert checked >= 6


def _flip_http_header_bit(data: bytes, member: tuple[int, int] | None) -> bytes:
    """``data`` with one bit of the first response's HTTP status line changed ('200' becomes '201')."""
    if member is None:
        at = data.index(b"HTTP/1.1 200") + len("HTTP/1.1 20")
        return data[:at] + bytes([data[at] ^ 1]) + data[at + 1:]
    start, end = member
    plain = bytearray(zlib.decompress(data[start:end], 31))
    at = plain.index(b" 200 ") + 3
    plain[at] ^= 1
    return data[:start] + gzip.compress(bytes(plain), mtime=0) + data[end:]


@pytest.mark.parametrize("name", ["post-test.warc.gz", "example.warc"])
def test_a_bit_flipped_in_the_http_headers_is_caught(tmp_path: Path, name: str) -> None:
    source = (REAL_WARCS if name.endswith(".gz") else WARCIO_DATA) / name
    data = source.read_bytes()
    member = None
    if name.endswith(".gz"):
        member = next(m for m in iter_gzip_members(data) if b"msgtype=response" in zlib.decompress(data[m[0]:m[1]], 31))
    path = tmp_path / name
    path.write_bytes(_flip_http_header_bit(data, member))
    before = {r.record_id: r for r in scan(source)}
    after = {r.record_id: r for r in scan(path)}
    changed = [r for r in after.values() if r.verification != before[r.record_id].verification]
    assert len(changed) == 1, [(r.url, r.verification, r.verification_reason) for r in changed]
    [flipped] = changed
    assert flipped.verification == MISMATCH and flipped.status == 201
    assert flipped.payload_sha1 == flipped.digest  # the payload itself is intact: only the block digest tells
    assert "does not match WARC-Block-Digest" in (flipped.verification_reason or "")


def _b32(algo: str, data: bytes) -> str:
    return base64.b32encode(hashlib.new(algo, data).digest()).decode()


def _record(url: str, block: bytes, payload: bytes, block_digest: str, http: bool) -> bytes:
    head = (f"WARC/1.1\r\nWARC-Type: {'response' if http else 'resource'}\r\n"
            f"WARC-Record-ID: <urn:uuid:{hashlib.md5(url.encode()).hexdigest()}>\r\n"
            f"WARC-Date: 2019-01-01T00:00:00Z\r\nWARC-Target-URI: {url}\r\n"
            f"Content-Type: {'application/http; msgtype=response' if http else 'text/plain'}\r\n"
            f"WARC-Payload-Digest: sha1:{_b32('sha1', payload)}\r\nWARC-Block-Digest: {block_digest}\r\n"
            f"Content-Length: {len(block)}\r\n\r\n")
    return gzip.compress(head.encode() + block + b"\r\n\r\n", compresslevel=1)


@pytest.mark.parametrize("size", [100, FREEZE_MAX + 1000], ids=["held", "read-again"])
@pytest.mark.parametrize("http", [True, False], ids=["response", "resource"])
def test_block_digest_forms_and_sizes(tmp_path: Path, size: int, http: bool) -> None:
    """base32 (any case, unpadded), base16, sha256; a wrong one, an undecodable one, an unknown algorithm;
    small blocks (checked from memory) and big ones (read again), HTTP and not."""
    payload = bytes(range(256)) * (size // 256 + 1)
    block = (b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n\r\n" + payload) if http else payload
    cases = {
        "b32": (f"sha1:{_b32('sha1', block)}", VERIFIED),
        "b32-lower-unpadded": (f"SHA-1:{_b32('sha1', block).lower()}", VERIFIED),
        "hex": (f"sha1:{hashlib.sha1(block).hexdigest().upper()}", VERIFIED),
        "sha256": (f"sha256:{hashlib.sha256(block).hexdigest()}", VERIFIED),
        "wrong": (f"sha1:{_b32('sha1', block + b'x')}", MISMATCH),
        "wrong-sha256": (f"sha256:{_b32('sha256', b'x')}", MISMATCH),
        "garbage": ("sha1:not-a-digest!", MISMATCH),
        "unknown-algorithm": ("crc32:abcd", VERIFIED),
    }
    path = tmp_path / "forms.warc.gz"
    path.write_bytes(b"".join(_record(f"http://b.example/{name}", block, payload, claim, http)
                              for name, (claim, _) in cases.items()))
    got = {r.url.rsplit("/", 1)[1]: r for r in scan(path)}
    for name, (_, state) in cases.items():
        assert got[name].verification == state, (name, got[name].verification_reason)
        assert got[name].payload_sha1 == f"sha1:{_b32('sha1', payload)}", name
    assert f"block sha1:{_b32('sha1', block)} does not match" in (got["wrong"].verification_reason or "")
    assert "is not a sha1 digest" in (got["garbage"].verification_reason or "")


def test_a_revisit_block_digest_is_not_held_against_it(tmp_path: Path) -> None:
    """As in warcio, a revisit's digests are not checked (writers put the original's there); it stays
    unverifiable for its own reason."""
    head = (b"WARC/1.1\r\nWARC-Type: revisit\r\nWARC-Record-ID: <urn:uuid:r>\r\nWARC-Date: 2019-01-01T00:00:00Z\r\n"
            b"WARC-Target-URI: http://r.example/\r\nContent-Type: application/http; msgtype=response\r\n"
            b"WARC-Block-Digest: sha1:AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA\r\nContent-Length: 19\r\n\r\n")
    path = tmp_path / "revisit.warc"
    path.write_bytes(head + b"HTTP/1.1 200 OK\r\n\r\n" + b"\r\n\r\n")
    [record] = scan(path)
    assert record.verification == UNVERIFIABLE and "revisit" in (record.verification_reason or "")


@pytest.mark.parametrize(("value", "expected"), [
    (None, None), ("", None), ("md5:" + "0" * 32, ("md5", bytes(16))), ("sha1:" + "A" * 32, ("sha1", bytes(20))),
    ("sha1:" + "a" * 32, ("sha1", bytes(20))), ("sha1:" + "00" * 20, ("sha1", bytes(20))), ("xx:1", None),
    ("sha1:AAAA", ("sha1", None)), ("sha1", ("sha1", None)),
])
def test_parse_block_digest(value: str | None, expected: tuple[str, bytes | None] | None) -> None:
    parsed = parse_block_digest(value)
    assert (parsed[:2] if parsed else None) == expected
