"""Malformed ARC records (real ARC files from ``../shared/realdata`` with their header line mutated: a bad
length, a bad date, a missing field, a block the file cuts short, a length that misframes the next record)
are never catalogued silently: each one that is kept is ``unverifiable`` with the reason, and the file is
reported; no stray warcio warning reaches stderr."""

from __future__ import annotations

import gzip
import zlib
from pathlib import Path

import pytest
from crashkit import REAL_WARCS, WARCIO_DATA, check_workspace, iter_gzip_members, run_ak

from archivekeeper.warcreader import ScanResult, scan

HEADER = b"http://example.com/ 93.184.216.119 20140216050221 text/html 1591"


def _mutate_plain(new_header: bytes) -> bytes:
    data = (REAL_WARCS / "example.arc").read_bytes()
    assert data.count(HEADER) == 1
    return data.replace(HEADER, new_header)


def _mutate_gzipped(new_header: bytes) -> bytes:
    data = (REAL_WARCS / "example.arc.gz").read_bytes()
    start, end = list(iter_gzip_members(data))[1]
    plain = zlib.decompress(data[start:end], 31)
    assert plain.startswith(HEADER)
    return data[:start] + gzip.compress(new_header + plain[len(HEADER):], mtime=0) + data[end:]


MUTATIONS = {
    "length-negative": (HEADER[:-4] + b"-1", "length '-1' is not a byte count"),
    "length-text": (HEADER[:-4] + b"abc", "length 'abc' is not a byte count"),
    "length-too-long": (HEADER[:-4] + b"99999", "truncated: the file ends"),
    "date-18-digits": (HEADER.replace(b"20140216050221", b"201402160502210000"), "is not a 14-digit time"),
    "date-bad-month": (HEADER.replace(b"20140216050221", b"20141716050221"), "is not a valid time"),
    "date-short": (HEADER.replace(b"20140216050221", b"201402"), "is not a 14-digit time"),
    "field-missing": (HEADER.replace(b"93.184.216.119 ", b""), "cannot parse ARC"),
}


@pytest.mark.parametrize("gzipped", [False, True], ids=["arc", "arc.gz"])
@pytest.mark.parametrize("name", list(MUTATIONS))
def test_a_malformed_arc_record_is_reported_and_never_verified(tmp_path: Path, name: str, gzipped: bool) -> None:
    header, why = MUTATIONS[name]
    path = tmp_path / ("example.arc.gz" if gzipped else "example.arc")
    path.write_bytes(_mutate_gzipped(header) if gzipped else _mutate_plain(header))
    outcome = run_ak(tmp_path / "ws", "import", str(path), "--json")
    outcome.assert_clean_failure_or_success()  # no traceback, no stray warcio warning on stderr
    [result] = outcome.json()["file_results"]
    assert result["status"] in ("partial", "failed") and outcome.returncode == 1, result
    assert any(why in error for error in result["errors"]), result["errors"]
    rows = check_workspace(tmp_path / "ws", damaged_input=True).captures
    assert all(row[17] == "unverifiable" for row in rows)
    if name in ("field-missing", "date-bad-month", "date-short"):  # no header, or no capture time: not kept
        assert not rows
    else:
        [row] = rows
        assert why in (row[18] or ""), row


def test_a_length_that_misframes_the_next_record_is_reported(tmp_path: Path) -> None:
    """A length 100 bytes short: warcio finds the rest of the block where the next record should start
    (and only warns on stderr); the record is damaged, the file reported, stderr clean."""
    path = tmp_path / "example.arc"
    path.write_bytes(_mutate_plain(HEADER[:-4] + b"1491"))
    outcome = run_ak(tmp_path / "ws", "import", str(path), "--json")
    outcome.assert_clean_failure_or_success()
    [result] = outcome.json()["file_results"]
    assert result["status"] in ("partial", "failed") and result["errors"], result
    rows = check_workspace(tmp_path / "ws", damaged_input=True).captures
    assert rows and all(row[17] == "unverifiable" for row in rows)
    assert "bad framing" in (rows[0][18] or ""), rows[0]


def test_real_malformed_arcs_are_reported() -> None:
    """pywb's bad.arc (18-digit dates, lengths "-1" and "abc") and warcio's example-space-in-url.arc (its
    last block 12 bytes short of its length) were catalogued as if whole."""
    result = ScanResult()
    reasons = [r.verification_reason for r in scan(REAL_WARCS / "bad.arc", result=result)]
    assert reasons == [
        "bad ARC header: archive date '201404010000000000' is not a 14-digit time, length '-1' is not a byte count",
        "no WARC-Payload-Digest in the record",
        "bad ARC header: archive date '201404010000000000' is not a 14-digit time, length 'abc' is not a byte count",
    ]
    assert len(result.problems) == 2
    result = ScanResult()
    [record] = scan(WARCIO_DATA / "example-space-in-url.arc", result=result)
    assert record.verification_reason == "truncated: the file ends 12 bytes before the record does"
    assert len(result.problems) == 1


@pytest.mark.parametrize("name", ["example.arc", "example.arc.gz"])
def test_intact_arcs_are_not_reported(name: str) -> None:
    result = ScanResult()
    [record] = scan(REAL_WARCS / name, result=result)
    assert not result.problems and record.verification_reason == "no WARC-Payload-Digest in the record"
