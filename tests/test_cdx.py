"""CDX parsing and paging: every answer format normalises to the same Capture; pagers resume."""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

import pytest
import requests
from conftest import PywbFactory
from hypothesis import given, settings
from hypothesis import strategies as st
from servers import PywbServer
from sync_support import shared_site, sync_archive

from archivekeeper.cdx import (
    CdxBatch,
    error_message,
    normalize_row,
    pages_by_number,
    pages_by_resume_key,
    parse_cdx,
    parse_line,
    single_answer,
)
from archivekeeper.config import SourceSettings
from archivekeeper.errors import SourceError
from archivekeeper.http import HttpClient
from archivekeeper.models import Capture
from archivekeeper.sources.base import cdx_fetcher

REALDATA = Path(__file__).resolve().parents[2] / "shared" / "realdata"
SAMPLE = REALDATA / "pywb" / "sample_archive"


def batches(text: str | bytes) -> list[CdxBatch]:
    data = text.encode() if isinstance(text, str) else text
    return list(parse_cdx(io.BytesIO(data)))


def captures(text: str | bytes) -> list[Capture]:
    return [c for b in batches(text) for c in b.captures]


# -- formats ------------------------------------------------------------------------------------

def test_ia_json_array_with_resume_key() -> None:
    body = json.dumps([
        ["urlkey", "timestamp", "original", "mimetype", "statuscode", "digest", "length"],
        ["com,example)/", "20020120142510", "http://example.com:80/", "text/html", "200",
         "HT2DYGA5UKZCPBSFVCV3JOBXGW2G5UUA", "1792"],
        ["com,example)/", "20020328012821", "http://www.example.com/", "warc/revisit", "-",
         "HT2DYGA5UKZCPBSFVCV3JOBXGW2G5UUA", "494"],
        [], ["com%2Cexample%29%2F+20020328012821%21"],
    ])
    [batch] = batches(body)
    assert batch.resume_key == "com%2Cexample%29%2F+20020328012821%21"
    first, revisit = batch.captures
    assert first == Capture(urlkey="com,example)/", timestamp="20020120142510", url="http://example.com:80/",
                            mime="text/html", status=200, digest="sha1:HT2DYGA5UKZCPBSFVCV3JOBXGW2G5UUA", length=1792)
    assert revisit.is_revisit and revisit.status is None
    assert batch.raw_lines[0].startswith('["com,example)/"')


def test_ia_empty_answers() -> None:
    assert captures("[]") == []
    assert captures("") == []
    assert batches("[]")[0].resume_key is None


def test_pywb_ndjson_revisit_has_no_status_and_extras_are_kept() -> None:
    text = (
        '{"urlkey": "com,example)/", "timestamp": "20170306040206", "url": "http://example.com/", "mime": "text/html",'
        ' "status": "200", "digest": "G7HRM7BGOKSKMSXZAHMUQTTV53QOFSMK", "length": "1228", "offset": "784",'
        ' "filename": "example.warc.gz", "source": "wio/indexes/index.cdxj", "access": "allow"}\n'
        '{"urlkey": "com,example)/", "timestamp": "20170306040348", "url": "http://example.com/",'
        ' "mime": "warc/revisit", "digest": "G7HRM7BGOKSKMSXZAHMUQTTV53QOFSMK", "length": "586", "offset": "2621",'
        ' "filename": "example.warc.gz"}\n')
    first, revisit = captures(text)
    assert (first.status, first.offset, first.length, first.filename) == (200, 784, 1228, "example.warc.gz")
    assert first.extra == {"source": "wio/indexes/index.cdxj", "access": "allow"}
    assert revisit.is_revisit and revisit.status is None and revisit.digest == first.digest


def test_common_crawl_ndjson_fields() -> None:
    line = ('{"urlkey": "org,commoncrawl)/", "timestamp": "20210125164313", "url": "https://commoncrawl.org/",'
            ' "mime": "text/html", "mime-detected": "text/html", "status": "200",'
            ' "digest": "sha1:3I42H3S6NNFQ2MSVX7XZKYAYSCX5QBYJ", "length": "5473", "offset": "2071620",'
            ' "filename": "crawl-data/CC-MAIN-2021-04/segments/1610703499999.6/warc/CC-MAIN-20210125.warc.gz",'
            ' "charset": "UTF-8", "languages": "eng", "encoding": "UTF-8", "redirect": "-"}')
    [capture] = captures(line)
    assert capture.digest == "sha1:3I42H3S6NNFQ2MSVX7XZKYAYSCX5QBYJ"
    assert capture.extra == {"mime-detected": "text/html", "charset": "UTF-8", "languages": "eng", "encoding": "UTF-8"}
    assert capture.filename is not None and capture.filename.startswith("crawl-data/CC-MAIN-2021-04/")


def test_cdxj_and_hex_digest() -> None:
    line = ('com,example)/ 20160225042329 {"url": "http://example.com/", "mime": "text/html", "status": "200", '
            '"digest": "37cf167c2672a4a64af901d9484e75eee0e2c98a", "length": "1286", "offset": "363", '
            '"filename": "example2.warc.gz"}')
    [capture] = captures(line)
    assert capture.urlkey == "com,example)/" and capture.timestamp == "20160225042329"
    assert capture.digest == "sha1:G7HRM7BGOKSKMSXZAHMUQTTV53QOFSMK"  # hex → base32


def test_classic_text_formats() -> None:
    seven = "com,example)/ 20020120142510 http://example.com:80/ text/html 200 HT2DYGA5UKZCPBSFVCV3JOBXGW2G5UUA 1792"
    [c7] = captures(seven)
    assert (c7.url, c7.status, c7.length, c7.offset) == ("http://example.com:80/", 200, 1792, None)
    eleven = (" CDX N b a m s k r M S V g\n"
              "com,example)/?example=1 20140103030321 http://example.com?example=1 text/html 200 "
              "B2LTWWPUOYAH7UIPQ7ZUPQ4VMBSVC36A - - 1043 333 example.warc.gz\n")
    [c11] = captures(eleven)
    assert (c11.length, c11.offset, c11.filename) == (1043, 333, "example.warc.gz")
    nine = ("com,example)/ 20140103030321 http://example.com/ text/html 200 B2LTWWPUOYAH7UIPQ7ZUPQ4VMBSVC36A - 333 "
            "a.warc.gz")
    [c9] = captures(nine)
    assert (c9.offset, c9.filename, c9.length) == (333, "a.warc.gz", None)


def test_pywb_text_revisit_line_is_one_column_short() -> None:
    text = ("org,iana)/a 20140126200826 http://www.iana.org/a application/octet-stream 200 "
            "LNMEDYOENSOEI5VPADCKL3CB6N3GWXPR 34054 620049 iana.warc.gz ex/indexes/index.cdxj ex allow\n"
            "org,iana)/a 20140126200912 http://www.iana.org/a warc/revisit "
            "LNMEDYOENSOEI5VPADCKL3CB6N3GWXPR 546 667073 iana.warc.gz ex/indexes/index.cdxj ex allow\n")
    full, revisit = captures(text)
    assert (full.status, full.length, full.offset) == (200, 34054, 620049)
    assert (revisit.status, revisit.digest, revisit.length, revisit.offset, revisit.filename) == (
        None, full.digest, 546, 667073, "iana.warc.gz")


def test_ia_text_resume_key_and_bad_lines() -> None:
    text = ("com,example)/ 20020120142510 http://example.com/ text/html 200 HT2DYGA5UKZCPBSFVCV3JOBXGW2G5UUA 1792\n"
            "garbage line\n"
            "{\"url\": \"http://x/\"}\n"
            "\n"
            "com%2Cexample%29%2F+20020120142510\n")
    [batch] = batches(text)
    assert len(batch.captures) == 1 and batch.bad_lines == 2
    assert batch.resume_key == "com%2Cexample%29%2F+20020120142510"


def test_special_json_objects() -> None:
    assert batches('{"pages": 4, "pageSize": 10, "blocks": 38}\n')[0].num_pages == 4
    with pytest.raises(SourceError, match="Invalid match_type"):
        batches('{"message": "Invalid match_type: bogus"}\n')
    assert error_message(b'{"error": "No Captures found for: http://x/"}') == "No Captures found for: http://x/"
    assert error_message(b"<html>404</html>") is None
    assert parse_line('{"pages": 2}') == {"pages": 2}


def test_normalize_row_rejects_rows_without_url_or_timestamp() -> None:
    with pytest.raises(ValueError):
        normalize_row({"urlkey": "a)/", "timestamp": "2020"})
    with pytest.raises(ValueError):
        normalize_row({"url": "http://a/", "timestamp": "yesterday"})
    computed = normalize_row({"url": "http://www.Example.com/B?z=1&a=2", "timestamp": "20200101000000"})
    assert computed.urlkey == "com,example)/b?a=2&z=1"  # no urlkey given: ours


def test_long_unpaged_answers_come_in_batches() -> None:
    line = '{"urlkey": "a)/%d", "timestamp": "2020010100%04d", "url": "http://a/%d"}\n'
    text = "".join(line % (i, i, i) for i in range(2500))
    got = list(parse_cdx(io.BytesIO(text.encode()), batch_size=1000))
    assert [len(b.captures) for b in got] == [1000, 1000, 500]
    assert [b.page_done for b in got] == [False, False, True]


@pytest.mark.parametrize("path", sorted((SAMPLE / "cdx").glob("*.cdx")) + sorted((SAMPLE / "cdxj").glob("*.cdxj")),
                         ids=lambda p: p.name)
def test_real_index_files_parse_completely(path: Path) -> None:
    lines = [ln for ln in path.read_text().splitlines() if ln.strip() and not ln.startswith(" CDX")]
    [batch] = batches(path.read_bytes())
    assert batch.bad_lines == 0
    assert len(batch.captures) == len(lines)
    for capture in batch.captures:
        assert len(capture.timestamp) == 14 and capture.url.startswith(("http", "metadata"))
        assert capture.digest is None or capture.digest.startswith("sha1:")


fields = st.fixed_dictionaries({
    "urlkey": st.from_regex(r"[a-z]{1,8},[a-z]{1,8}\)/[a-z0-9]{0,8}", fullmatch=True),
    "timestamp": st.from_regex(r"(19|20)\d{12}", fullmatch=True),
    "url": st.from_regex(r"http://[a-z]{1,8}\.[a-z]{2,3}/[a-z0-9]{0,8}", fullmatch=True),
    "mime": st.sampled_from(["text/html", "image/png", "warc/revisit", "application/pdf"]),
    "status": st.sampled_from(["200", "301", "404", "-"]),
    "digest": st.from_regex(r"[A-Z2-7]{32}", fullmatch=True),
    "length": st.integers(0, 10**9).map(str),
})


@given(st.lists(fields, min_size=1, max_size=5))
@settings(max_examples=60, deadline=None)
def test_every_format_normalises_to_the_same_capture(rows: list[dict[str, Any]]) -> None:
    ia = [["urlkey", "timestamp", "original", "mimetype", "statuscode", "digest", "length"]]
    ia += [[r["urlkey"], r["timestamp"], r["url"], r["mime"], r["status"], r["digest"], r["length"]] for r in rows]
    ndjson = "".join(json.dumps(r) + "\n" for r in rows)
    cdxj = "".join(f"{r['urlkey']} {r['timestamp']} " + json.dumps({k: v for k, v in r.items()
                                                                     if k not in ("urlkey", "timestamp")}) + "\n"
                   for r in rows)
    text = "".join(" ".join([r["urlkey"], r["timestamp"], r["url"], r["mime"], r["status"], r["digest"],
                             r["length"]]) + "\n" for r in rows)
    expected = captures(json.dumps(ia))
    assert captures(ndjson) == expected
    assert captures(cdxj) == expected
    assert captures(text) == expected
    for capture, row in zip(expected, rows, strict=True):
        assert capture.status == (None if row["status"] == "-" else int(row["status"]))
        assert capture.digest == "sha1:" + row["digest"]


# -- paging ---------------------------------------------------------------------------------------

class FakeCdx:
    """A scripted CDX API: answers by (page or resume key), records what was asked."""

    def __init__(self, answers: dict[str, str | None]) -> None:
        self.answers = answers
        self.asked: list[dict[str, Any]] = []

    def __call__(self, params: dict[str, Any]) -> io.BytesIO | None:
        self.asked.append(dict(params))
        key = ("pages" if params.get("showNumPages") else f"page={params['page']}" if "page" in params
               else f"key={params.get('resumeKey', '')}")
        answer = self.answers.get(key)
        return None if answer is None else io.BytesIO(answer.encode())


def ia_page(rows: list[str], key: str | None) -> str:
    head = [["urlkey", "timestamp", "original", "mimetype", "statuscode", "digest", "length"]]
    body = [["a)/", ts, "http://a/", "text/html", "200", "HT2DYGA5UKZCPBSFVCV3JOBXGW2G5UUA", "1"] for ts in rows]
    return json.dumps(head + body + ([[], [key]] if key else []))


def test_resume_key_paging_and_resuming_from_a_cursor() -> None:
    fake = FakeCdx({"key=": ia_page(["20200101000000", "20200102000000"], "K1"),
                    "key=K1": ia_page(["20200103000000"], "K2"),
                    "key=K2": ia_page([], "K3"),  # IA can answer an empty page that still has a key
                    "key=K3": ia_page(["20200104000000"], None)})
    pages = list(pages_by_resume_key(fake, {"url": "a"}, page_size=2))
    assert [[c.timestamp[6:8] for c in p.captures] for p in pages] == [["01", "02"], ["03"], [], ["04"]]
    assert [p.cursor for p in pages] == [{"resume_key": "K1"}, {"resume_key": "K2"}, {"resume_key": "K3"}, None]
    assert all(a["limit"] == "2" and a["showResumeKey"] == "true" for a in fake.asked)
    fake.asked.clear()
    resumed = list(pages_by_resume_key(fake, {"url": "a"}, page_size=2, cursor={"resume_key": "K2"}))
    assert [c.timestamp for p in resumed for c in p.captures] == ["20200104000000"]
    assert [a.get("resumeKey") for a in fake.asked] == ["K2", "K3"]


def test_numbered_pages_stop_past_the_end_and_resume() -> None:
    line = '{"urlkey": "a)/", "timestamp": "2020010%d000000", "url": "http://a/"}\n'
    fake = FakeCdx({"pages": '{"pages": 3, "pageSize": 5, "blocks": 11}\n', "page=0": line % 1, "page=1": line % 2,
                    "page=2": None})  # a page that vanished answers 400 → None
    pages = list(pages_by_number(fake, {"url": "a"}))
    assert [c.timestamp for p in pages for c in p.captures] == ["20200101000000", "20200102000000"]
    assert pages[-1].cursor == {"page": 2, "pages": 3}
    fake.asked.clear()
    list(pages_by_number(fake, {"url": "a"}, cursor={"page": 1, "pages": 3}))
    assert [a.get("page") for a in fake.asked] == ["1", "2"]  # no showNumPages again


def test_server_without_paged_index_answers_everything_at_once() -> None:
    lines = "".join(f'{{"urlkey": "a)/", "timestamp": "2020010{i}000000", "url": "http://a/"}}\n' for i in range(3))
    fake = FakeCdx({"pages": lines})
    pages = list(pages_by_number(fake, {"url": "a"}))
    assert [len(p.captures) for p in pages] == [3] and len(fake.asked) == 1
    assert list(single_answer(FakeCdx({"key=": None}), {"url": "a"}))[0].captures == []


# -- against real pywb --------------------------------------------------------------------------

@pytest.fixture(scope="module")
def pywb(pywb_factory: PywbFactory, realdata: Path, tmp_path_factory: pytest.TempPathFactory) -> PywbServer:
    return sync_archive(pywb_factory, realdata, shared_site(tmp_path_factory.getbasetemp())[0])


def test_real_pywb_zipnum_paging_covers_the_unpaged_answer(pywb: PywbServer) -> None:
    http = HttpClient(SourceSettings(base_url=pywb.base_url, cdx_per_minute=0), archive_urls=[pywb.base_url])
    params = {"url": "iana.org", "matchType": "domain", "output": "json"}
    asked: list[dict[str, Any]] = []
    zipnum = cdx_fetcher(http, pywb.cdx_url("zn"))

    def counting(query: dict[str, Any]) -> Any:
        asked.append(query)
        return zipnum(query)

    one_block = [c for p in pages_by_number(counting, {**params, "pageSize": "1"}) for c in p.captures]
    default = [c for p in pages_by_number(zipnum, params) for c in p.captures]
    plain = [c for p in pages_by_number(cdx_fetcher(http, pywb.cdx_url("real")), params) for c in p.captures]
    assert len([a for a in asked if "page" in a]) > 10  # really paged, one block per page
    assert one_block == default  # page size does not change the answer
    key = lambda c: (c.urlkey, c.timestamp, c.digest)  # noqa: E731
    # the sample ZipNum index is older than the WARCs: it knows every capture of the plain index and
    # two more (time-zones/x and /y)
    assert set(map(key, plain)) <= set(map(key, one_block))
    assert len(one_block) == len(plain) + 2
    http.close()


def test_real_pywb_errors_and_empty_answers(pywb: PywbServer) -> None:
    http = HttpClient(SourceSettings(base_url=pywb.base_url, cdx_per_minute=0), archive_urls=[pywb.base_url])
    fetch = cdx_fetcher(http, pywb.cdx_url("real"))
    body = fetch({"url": "nothing.example", "output": "json"})
    assert body is not None and captures(body.read()) == []
    with pytest.raises(SourceError, match="Invalid match_type"):
        fetch({"url": "x", "matchType": "bogus", "output": "json"})
    past = cdx_fetcher(http, pywb.cdx_url("zn"))({"url": "iana.org", "matchType": "domain", "page": "999"})
    assert past is None
    with pytest.raises(SourceError, match="base URL"):
        cdx_fetcher(http, pywb.base_url + "/real/nope/cdx")({"url": "x"})
    http.close()
    assert requests  # the module is used by the fixtures' servers
