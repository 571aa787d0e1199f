"""Resource bounds: a record bigger than 2 GiB is streamed, not buffered, by a child whose address space is
capped far below its size (``RLIMIT_AS``); a Content-Length past 2**31 survives the import and the read-back."""

from __future__ import annotations

import base64
import hashlib
import sqlite3
import subprocess
import uuid
import zlib
from pathlib import Path

from crashkit import MEMORY_LIMIT, SCALE, Limits, ak_argv, child_env, record, run_ak

BIG = (2 << 30) + 1  # one byte past 2 GiB: any 32-bit length overflows
URL = "http://big.example/zeros.bin"
CHUNK = b"\0" * (1 << 24)


def zeros(total: int) -> list[bytes]:
    out, left = [], total
    while left:
        out.append(CHUNK[:min(len(CHUNK), left)])
        left -= len(out[-1])
    return out


def write_big_warc(path: Path) -> str:
    """A one-record .warc.gz whose resource payload is ``BIG`` zero bytes (about 9 MB compressed)."""
    digest = hashlib.sha1()
    for piece in zeros(BIG):
        digest.update(piece)
    claimed = "sha1:" + base64.b32encode(digest.digest()).decode()
    head = (f"WARC/1.0\r\nWARC-Type: resource\r\nWARC-Record-ID: <urn:uuid:{uuid.UUID(int=7)}>\r\n"
            f"WARC-Date: 2020-02-02T02:02:02Z\r\nWARC-Target-URI: {URL}\r\nContent-Type: application/octet-stream\r\n"
            f"WARC-Payload-Digest: {claimed}\r\nWARC-Block-Digest: {claimed}\r\nContent-Length: {BIG}\r\n\r\n")
    packer = zlib.compressobj(1, zlib.DEFLATED, 31)
    with open(path, "wb") as out:
        out.write(packer.compress(head.encode()))
        for piece in zeros(BIG):
            out.write(packer.compress(piece))
        out.write(packer.compress(b"\r\n\r\n"))
        out.write(packer.flush())
    return claimed


def test_a_record_over_2_gib_is_streamed_not_buffered(tmp_path: Path) -> None:
    claimed = write_big_warc(tmp_path / "big.warc.gz")
    limits = Limits(address_space=MEMORY_LIMIT)  # a quarter of the record
    outcome = run_ak(tmp_path / "ws", "import", str(tmp_path / "big.warc.gz"), "--json", limits=limits, timeout=600)
    handled = 0
    try:
        outcome.assert_clean_failure_or_success()
        assert outcome.returncode == 0, outcome.describe()
        with sqlite3.connect(tmp_path / "ws" / "catalog.db") as conn:
            rows = conn.execute("SELECT verification, payload_sha1, digest, length, offset FROM captures").fetchall()
        assert rows == [("verified", claimed, claimed, (tmp_path / "big.warc.gz").stat().st_size, 0)], rows
        if SCALE > 1:  # full mode: read it back through `show --payload`, streamed to us, under the same cap
            argv = ak_argv(tmp_path / "ws", "show", URL, "--payload")
            proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=child_env(),
                                    preexec_fn=limits.apply)
            assert proc.stdout is not None
            digest, size = hashlib.sha1(), 0
            while piece := proc.stdout.read(1 << 20):
                digest.update(piece)
                size += len(piece)
            assert proc.wait(timeout=600) == 0, proc.stderr.read() if proc.stderr else b""
            assert size == BIG and "sha1:" + base64.b32encode(digest.digest()).decode() == claimed
        handled = 1
    finally:
        record("import", "fault", "record over 2 GiB under a 512 MiB memory cap", injected=1, handled=handled)
