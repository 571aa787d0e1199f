"""Property: over randomly generated catalogs, no exported record is post-cutoff or unverified."""

from __future__ import annotations

import tempfile
from pathlib import Path

from exportkit import (
    EPOCH,
    Rec,
    catalogued_roles,
    check_export,
    expected_roles,
    import_into,
    read_shard,
    tree_digest,
    write_warc,
)
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from archivekeeper.catalog import Catalog
from archivekeeper.digests import sha1_base32
from archivekeeper.errors import ExportError
from archivekeeper.models import Selection
from archivekeeper.package import ExportOptions, run_export
from archivekeeper.workspace import Workspace

CUTOFF = "2023-01-01T00:00:00Z"
DATES = ["2019-05-05T10:00:00Z", "2021-01-01T00:00:00Z", "2022-12-31T23:59:59Z", CUTOFF, "2023-01-01T00:00:01Z",
         "2024-06-30T12:00:00Z"]
URLS = ["http://p.example/", "http://p.example/a", "http://p.example/b", "http://q.example/"]
BODIES = [b"<html><body><p>alpha</p></body></html>", b"<html><body><p>beta</p></body></html>",
          b"<html><body><p>gamma</p></body></html>", b"plain words"]

record = st.fixed_dictionaries({
    "url": st.sampled_from(URLS),
    "date": st.sampled_from(DATES),
    "body": st.sampled_from(BODIES),
    "kind": st.sampled_from(["response", "response", "mismatch", "revisit", "revisit-unknown"]),
})
selection = st.sampled_from([
    Selection(),
    Selection(url="http://p.example/", match="prefix"),
    Selection(url="p.example", match="host", date_from="2021-01-01T00:00:00Z"),
    Selection(date_to="2022-12-31T23:59:59Z"),
    Selection(pre_cutoff=True),
    Selection(verification="verified"),
])


SHARD_SIZE = 2048  # a few records per shard


def check_warc_only_export_matches(workspace: Workspace, catalog: Catalog, chosen: Selection, root: Path) -> None:
    """A WARC-only export (records copied in runs, no per-record reading) has the same shards and placements."""
    run_export(workspace, catalog, "prop", str(root / "warc"), chosen,
               ExportOptions(formats=("warc",), shard_size=SHARD_SIZE, jobs=1), env={"SOURCE_DATE_EPOCH": EPOCH})
    check_export(root / "warc")
    shards = {k: v for k, v in tree_digest(root / "out").items() if k.startswith("data/warc/")}
    assert {k: v for k, v in tree_digest(root / "warc").items() if k.startswith("data/warc/")} == shards
    placed = ("SELECT c.record_key, x.role, x.seq, x.shard, x.shard_offset FROM export_captures x JOIN captures c "
              "ON c.id = x.capture_id WHERE x.export_id = (SELECT max(id) FROM exports WHERE destination = ?) "
              "ORDER BY c.record_key")
    assert (catalog.conn.execute(placed, (str(root / "warc"),)).fetchall()
            == catalog.conn.execute(placed, (str(root / "out"),)).fetchall())
    assert catalogued_roles(catalog, str(root / "warc")) == catalogued_roles(catalog, str(root / "out"))


def build(specs: list[dict[str, object]]) -> list[Rec]:
    out: list[Rec] = []
    for spec in specs:
        url, date, body, kind = spec["url"], spec["date"], spec["body"], spec["kind"]
        assert isinstance(url, str) and isinstance(date, str) and isinstance(body, bytes)
        if kind == "revisit":
            out.append(Rec(url, date, revisit_of=Rec(url, date, body)))
        elif kind == "revisit-unknown":
            out.append(Rec(url, date, revisit_of=Rec(url, date, b"never captured " + body)))
        else:
            out.append(Rec(url, date, body, wrong_digest=kind == "mismatch"))
    return out


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(record, min_size=1, max_size=14), st.booleans(), selection)
def test_no_exported_record_is_post_cutoff_or_unverified(specs: list[dict[str, object]], gzipped: bool,
                                                         chosen: Selection) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        warc = write_warc(root / ("in.warc.gz" if gzipped else "in.warc"), build(specs), gzipped=gzipped)
        workspace, catalog = import_into(root / "ws", [warc])
        try:
            try:
                result = run_export(workspace, catalog, "prop", str(root / "out"), chosen,
                                    ExportOptions(formats=("warc", "jsonl"), shard_size=SHARD_SIZE, jobs=1),
                                    env={"SOURCE_DATE_EPOCH": EPOCH})
            except ExportError as exc:
                assert "nothing to export" in str(exc)
                assert not (root / "out").exists()
                assert not any(r.pre_cutoff and r.verification == "verified" and r.record_type != "revisit"
                               for r in catalog.query(chosen))
                return
            manifest = check_export(root / "out")
            counts = manifest["counts"]
            assert counts["selected"] == catalog.count(chosen)
            assert counts["selected"] == (counts["exported"] - counts["brought_in_for_revisits"]
                                          + counts["aliases_total"] + counts["left_out_total"])
            digests: set[str] = set()
            exported = 0
            for entry in manifest["files"]:
                if entry["kind"] != "warc":
                    continue
                for rec in read_shard(root / "out" / entry["path"])[1:]:  # warcio checks digests too
                    exported += 1
                    assert rec.type == "response"
                    assert rec.headers["WARC-Date"] < CUTOFF
                    claimed = rec.headers["WARC-Payload-Digest"]
                    assert claimed == sha1_base32(rec.payload)  # verified: the bytes match the claim
                    assert claimed not in digests  # one record per payload
                    digests.add(claimed)
            assert exported == counts["exported"] == result.manifest["counts"]["exported"]
            assert catalogued_roles(catalog, str(root / "out")) == expected_roles(catalog, chosen)
            check_warc_only_export_matches(workspace, catalog, chosen, root)
        finally:
            catalog.close()
