"""Documents for training pipelines: main text, title, language; JSON lines and Parquet rows alike."""

from __future__ import annotations

import gzip
import io
import json
import re
import subprocess
import sys
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import lxml.html
import pyarrow.json as pajson
import pyarrow.parquet as pq
import pytest
from crashkit import REAL_WARCS
from exportkit import make_full, make_store
from warcio.archiveiterator import ArchiveIterator
from warcio.exceptions import ArchiveLoadFailed

from archivekeeper import extract
from archivekeeper.catalog import Catalog
from archivekeeper.demo import generate_sample_archive
from archivekeeper.extract import (
    ROW_FIELDS,
    DocumentPipeline,
    detect_language,
    extract_html,
    html_title,
    is_document,
)
from archivekeeper.workspace import Workspace


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Workspace, Catalog]]:
    yield from make_store(tmp_path_factory)


@pytest.fixture(scope="module")
def full(store: tuple[Workspace, Catalog], tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, Any]]:
    return make_full(store, tmp_path_factory)


def rows_of(dest: Path, manifest: dict[str, Any], kind: str) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for entry in manifest["files"]:
        if entry["kind"] == "jsonl" and kind == "jsonl":
            out += [json.loads(line) for line in gzip.open(dest / entry["path"])]
        elif entry["kind"] == "parquet" and kind == "parquet":
            out += pq.read_table(dest / entry["path"]).to_pylist()
    return out


def tokens(text: str) -> Counter[str]:
    return Counter(re.findall(r"\w+", text.lower()))


def test_main_text_of_the_sample_pages_matches_their_main_content(tmp_path: Path) -> None:
    """The extractor recovers the <main> content of the demo pages, without header, nav or footer."""
    scores = []
    for path in generate_sample_archive(tmp_path, seed=11, scale=1):
        with open(path, "rb") as handle:
            for record in ArchiveIterator(handle):
                if record.rec_type != "response" or record.http_headers.get_statuscode() != "200":
                    continue
                html = record.content_stream().read()
                tree = lxml.html.fromstring(html)
                gold = tokens(tree.find(".//main").text_content())
                text, title = extract_html(html)
                assert title == " ".join(tree.findtext(".//title").split())
                got = tokens(text)
                overlap = sum((got & gold).values())
                precision, recall = overlap / max(1, sum(got.values())), overlap / max(1, sum(gold.values()))
                scores.append(2 * precision * recall / (precision + recall) if overlap else 0.0)
                assert "Powered by" not in text and "Skip to" not in text
    assert len(scores) > 50
    assert sum(scores) / len(scores) > 0.9


def _lxml_title(html: bytes) -> str | None:
    tree = lxml.html.fromstring(html)
    found = tree.findtext(".//title")
    return " ".join(found.split()) or None if found else None


def test_title_is_what_the_parsed_tree_holds_on_real_pages() -> None:
    """The title read from the bytes equals the parsed tree's on every HTML page of the real archives."""
    checked = 0
    for path in sorted(REAL_WARCS.glob("*.warc*")):
        try:
            with open(path, "rb") as handle:
                for record in ArchiveIterator(handle):
                    if record.rec_type != "response" or not record.http_headers:
                        continue
                    if "html" not in (record.http_headers.get_header("Content-Type") or ""):
                        continue
                    html = record.content_stream().read()
                    if b"<title" not in html.lower():
                        continue
                    assert html_title(html) == _lxml_title(html), (path.name, record.rec_headers["WARC-Target-URI"])
                    checked += 1
        except ArchiveLoadFailed:
            continue  # one gzip stream over several records: not a page source here
    assert checked >= 10


@pytest.mark.parametrize(("html", "title"), [
    ("<html><head><TITLE lang=en>  Caf\u00e9 &amp; Bar\n menu </TITLE></head></html>".encode(), "Caf\u00e9 & Bar menu"),
    ('<meta charset="iso-8859-1"><title>Caf\u00e9</title>'.encode("latin-1"), "Caf\u00e9"),
    ('<meta http-equiv="Content-Type" content="text/html; charset=koi8-r"><title>\u041c\u0438\u0440</title>'
     .encode("koi8-r"), "\u041c\u0438\u0440"),
    ("<title>na\u00efve</title>".encode("cp1252"), "na\u00efve"),  # no charset declared, not UTF-8: cp1252
    (b"<title>   </title><p>empty</p>", None),
    (b"<html><body><p>no title</p></body></html>", None),
    (b"<titles>not one</titles>", None),
])
def test_title_decoding(html: bytes, title: str | None) -> None:
    assert html_title(html) == title


def test_title_of_hostile_pages_is_found_in_one_pass() -> None:
    """Millions of unclosed ``<title`` tags, or a title that never closes, give no title after one linear pass
    (a search that scans on from every ``<title`` would be quadratic on these)."""
    assert html_title(b"<title" * 2_000_000) is None
    assert html_title(b"<title>" + b"a" * 4_000_000) is None
    assert html_title(b"<title" * 1000 + b"<title data-x=1>found</TITLE >") == "found"


def test_language_is_detected_only_when_there_is_enough_text() -> None:
    assert detect_language("The library opens again on Monday after the summer works on the roof.") == "en"
    assert detect_language("Die Bibliothek öffnet am Montag wieder, nachdem das Dach repariert wurde.") == "de"
    assert detect_language("ok") is None


def test_documents_are_html_or_plain_text_answered_200() -> None:
    assert is_document("text/html", 200) and is_document("text/plain", None)
    assert not is_document("text/html", 301) and not is_document("image/png", 200)


def test_rows_in_jsonl_and_parquet_are_the_same_documents(full) -> None:
    dest, manifest = full
    jsonl, parquet = rows_of(dest, manifest, "jsonl"), rows_of(dest, manifest, "parquet")
    assert jsonl == parquet and len(jsonl) == manifest["counts"]["documents"] > 50
    assert all(list(row) == list(ROW_FIELDS) for row in jsonl)
    assert len({row["id"] for row in jsonl}) == len(jsonl)
    assert all(row["capture_time"] < manifest["cutoff"] for row in jsonl)
    assert all(is_document(row["mime"], row["status"]) for row in jsonl)
    demo = [row for row in jsonl if ".example." in row["url"] and row["mime"] == "text/html"]
    assert demo and all(row["language"] == "en" and row["title"] and len(row["text"]) > 40 for row in demo)
    iana = [row for row in jsonl if "iana.org" in row["url"] and row["mime"] == "text/html"]
    assert iana and all(row["text"] for row in iana)  # chunked/odd real records are read too
    for entry in manifest["files"]:
        if entry["kind"] in ("jsonl", "parquet"):
            counted = sum(1 for row in rows_of(dest, {"files": [entry]}, entry["kind"]))
            assert entry["rows"] == counted


def test_each_row_points_at_its_record_in_a_warc_shard(full) -> None:
    dest, manifest = full
    for row in rows_of(dest, manifest, "jsonl"):
        with open(dest / row["warc_shard"], "rb") as handle:
            handle.seek(row["warc_offset"])
            record = next(iter(ArchiveIterator(handle)))
            assert record.rec_headers.get_header("WARC-Record-ID") == row["warc_record_id"]
            assert record.rec_headers.get_header("WARC-Target-URI") == row["url"]


def test_rows_read_the_way_datatrove_and_hf_datasets_read_them(full) -> None:
    dest, manifest = full
    for entry in manifest["files"]:
        if entry["kind"] == "jsonl":
            # HF datasets' json builder reads with pyarrow's JSON reader: one type per column, no surprises
            table = pajson.read_json(io.BytesIO(gzip.decompress((dest / entry["path"]).read_bytes())),
                                     read_options=pajson.ReadOptions(block_size=1 << 20))
            assert table.num_rows == entry["rows"] and {"id", "text"} <= set(table.column_names)
    for row in rows_of(dest, manifest, "jsonl"):
        # datatrove's default adapter: text and id, everything else becomes metadata
        data = dict(row)
        document = {"text": data.pop("text"), "id": data.pop("id"), "metadata": data}
        assert isinstance(document["text"], str) and isinstance(document["id"], str)
        assert "metadata" not in row and "media" not in row


def test_hf_datasets_loads_the_jsonl_and_parquet_files(full, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The README's ``load_dataset("json"/"parquet", data_files=...)`` on a real export: every row, every field."""
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    import datasets

    dest, manifest = full
    expected = rows_of(dest, manifest, "parquet")
    loaded = {}
    for kind in ("json", "parquet"):
        files = [str(dest / f["path"]) for f in manifest["files"] if f["kind"] == ("jsonl" if kind == "json" else kind)]
        assert len(files) > 1  # several shards, read as one split
        loaded[kind] = datasets.load_dataset(kind, data_files=files, split="train", cache_dir=str(tmp_path / "cache"))
    assert loaded["parquet"].column_names == list(ROW_FIELDS) == loaded["json"].column_names
    assert loaded["parquet"].to_list() == expected
    # pyarrow's JSON reader (HF's json builder) types ISO-8601 capture times as timestamps; the rest is equal
    for got, want in zip(loaded["json"].to_list(), expected, strict=True):
        assert got.pop("capture_time").strftime("%Y-%m-%dT%H:%M:%SZ") == want.pop("capture_time")
        assert got == want


@pytest.mark.filterwarnings("ignore:This process .* is multi-threaded:DeprecationWarning")  # Python ≥ 3.12
def test_parallel_extraction_gives_the_rows_of_inline_extraction(full, monkeypatch: pytest.MonkeyPatch) -> None:
    """Workers forked (a single-threaded main process) or from the forkserver give the rows made inline."""
    dest, manifest = full
    jobs = [(str(dest / row["warc_shard"]), row["warc_offset"], {k: row[k] for k in ROW_FIELDS if k != "text"})
            for row in rows_of(dest, manifest, "jsonl")[:70]]
    results = {}
    for label, workers, threads in (("inline", 1, 1), ("fork", 2, 1), ("forkserver", 2, 3)):
        monkeypatch.setattr(extract, "_threads", lambda n=threads: n)
        assert extract._worker_context().get_start_method() == ("forkserver" if threads > 1 else "fork")
        pipeline = DocumentPipeline(workers)
        try:
            rows = [row for job in jobs for row in pipeline.submit(*job)]
            rows += list(pipeline.finish())
        finally:
            pipeline.close()
        results[label] = rows
    assert results["inline"] == results["fork"] == results["forkserver"] and len(results["inline"]) == 70


def test_the_cli_starts_without_pandas_or_threads() -> None:
    """sqlite-utils would import pandas and numpy (and with them pyarrow's allocator threads) whenever they
    are installed, as they are here; a command starts without them, single-threaded, so extraction workers
    fork; pandas still imports afterwards for whoever wants it."""
    code = ("import os, sys; import archivekeeper.cli, archivekeeper.package, archivekeeper.extract as ex\n"
            "print(sorted(m for m in ('pandas', 'numpy', 'pyarrow') if m in sys.modules), ex._threads(),\n"
            "      ex._worker_context().get_start_method())\n"
            "import pandas, sqlite_utils; print(sqlite_utils.Database(memory=True).execute('select 1').fetchone())")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split("\n")
    assert out[0] == "[] 1 fork"
    assert out[1] == "(1,)"
