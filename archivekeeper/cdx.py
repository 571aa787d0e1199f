"""CDX answers → :class:`~archivekeeper.models.Capture`, and paging over a CDX API as a generator.

Formats are told apart by the body, not the Content-Type (servers disagree about it):

* IA ``output=json``: a JSON array of arrays, the header row first, ``[]`` when empty; with
  ``showResumeKey=true`` the tail is ``[]`` then ``["<resume key>"]``.
* pywb / Common Crawl ``output=json``: NDJSON, one object per line.
* CDXJ: ``urlkey timestamp {json}`` per line.
* classic text: IA's 7 fields (``urlkey timestamp original mimetype statuscode digest length``),
  the 9- and 11-field ``CDX N b a m s k r [M S] V g`` files, pywb's ``output=text``; IA text with
  ``showResumeKey`` ends with a blank line and the key.

Field names differ between servers (``original``/``url``, ``mimetype``/``mime``,
``statuscode``/``status``); :func:`normalize_row` is the one place that maps them. Digests become
``sha1:BASE32``, ``-`` becomes ``None``, numbers become ``int``; other fields go to ``extra``.
"""

from __future__ import annotations

import itertools
import json
import re
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import IO, Any

from .digests import normalize_digest
from .errors import ArchiveKeeperError, SourceError
from .models import Capture
from .surt import surt

#: CDX field names → the names of :class:`Capture`.
FIELD_ALIASES: Mapping[str, str] = {
    "original": "url", "mimetype": "mime", "mime-type": "mime", "statuscode": "status",
    "status_code": "status", "key": "urlkey", "compressedoffset": "offset", "robotflags": "robotflags",
}
IA_FIELDS = ("urlkey", "timestamp", "original", "mimetype", "statuscode", "digest", "length")
_CLASSIC_LETTERS = {"N": "urlkey", "b": "timestamp", "a": "original", "m": "mimetype", "s": "statuscode",
                    "k": "digest", "r": "redirect", "M": "metatags", "S": "length", "V": "offset", "g": "filename"}
_CLASSIC_9 = ("urlkey", "timestamp", "original", "mimetype", "statuscode", "digest", "redirect", "offset", "filename")
_CLASSIC_11 = ("urlkey", "timestamp", "original", "mimetype", "statuscode", "digest", "redirect", "metatags",
               "length", "offset", "filename")
_PYWB_TEXT = ("urlkey", "timestamp", "url", "mime", "status", "digest", "length", "offset", "filename",
              "source", "source-coll", "access")
_STATUS = re.compile(r"^(\d{3}|-)$")
_TIMESTAMP = re.compile(r"^\d{4,14}$")
BATCH = 250  # captures per yielded batch, so a long unpaged answer never sits in memory whole
MAX_JSON_ROW = 1 << 24  # characters of one row of a JSON array answer (a real one is a few hundred)


@dataclass
class CdxBatch:
    """Captures parsed from (part of) one CDX answer, and where to continue."""

    captures: list[Capture] = field(default_factory=list)
    raw_lines: list[str] = field(default_factory=list)
    resume_key: str | None = None  # IA showResumeKey
    num_pages: int | None = None  # answer to showNumPages
    bad_lines: int = 0
    page_done: bool = True  # False: more batches of the same answer follow


def _int(value: Any) -> int | None:
    if value is None:
        return None
    text = str(value).strip()
    return int(text) if text.isdigit() else None


def normalize_row(row: Mapping[str, Any]) -> Capture:
    """One CDX row (any server's field names) as a :class:`Capture`; ``ValueError`` if unusable."""
    values: dict[str, str] = {}
    for name, value in row.items():
        key = FIELD_ALIASES.get(str(name).lower(), str(name).lower())
        if value is None or key in values and values[key] not in ("", "-"):
            continue
        values[key] = str(value)
    url = values.pop("url", "").strip()
    timestamp = values.pop("timestamp", "").strip()
    if not url or not _TIMESTAMP.match(timestamp):
        raise ValueError(f"CDX row without a URL or a timestamp: {dict(row)!r}")
    urlkey = values.pop("urlkey", "").strip()
    if not urlkey:
        try:
            urlkey = surt(url)
        except ArchiveKeeperError:
            raise ValueError(f"CDX row with an unusable URL: {url!r}") from None
    mime = values.pop("mime", "").strip().lower() or None
    status = _int(values.pop("status", None))
    digest = normalize_digest(values.pop("digest", None))
    length = _int(values.pop("length", None))
    offset = _int(values.pop("offset", None))
    filename = values.pop("filename", "").strip() or None
    if filename == "-":
        filename = None
    return Capture(urlkey=urlkey, timestamp=timestamp, url=url, mime=None if mime == "-" else mime,
                   status=status, digest=digest, length=length, offset=offset, filename=filename,
                   extra={k: v for k, v in values.items() if v not in ("", "-")})


def _text_fields(parts: list[str], schema: tuple[str, ...] | None) -> dict[str, str]:
    if schema is not None:
        return dict(zip(schema, parts, strict=False))
    # revisit lines of pywb's text output have no status column: never trust positions blindly
    if len(parts) > 4 and parts[3] == "warc/revisit" and not _STATUS.match(parts[4]):
        parts = [*parts[:4], "-", *parts[4:]]
    names: tuple[str, ...]
    if len(parts) == 7:
        names = IA_FIELDS
    elif len(parts) == 9:
        names = _CLASSIC_9
    elif len(parts) == 11:
        names = _CLASSIC_11
    elif len(parts) >= 9 and parts[6].isdigit() and parts[7].isdigit():
        names = _PYWB_TEXT
    else:
        raise ValueError(f"unknown CDX text line ({len(parts)} fields)")
    return dict(zip(names, parts, strict=False))


def parse_line(line: str, schema: tuple[str, ...] | None = None) -> Capture | dict[str, Any]:
    """Parse one NDJSON, CDXJ or text line. A JSON object that is not a capture (``{"pages": 3}``,
    ``{"error": ...}``) comes back as a dict."""
    text = line.strip()
    if text.startswith("{"):
        obj = json.loads(text)
        if not isinstance(obj, dict):
            raise ValueError("not a JSON object")
        if "timestamp" not in obj:
            return obj
        return normalize_row(obj)
    head, sep, rest = text.partition(" {")
    if sep and len(head.split()) == 2:
        obj = json.loads("{" + rest)
        urlkey, timestamp = head.split()
        return normalize_row({"urlkey": urlkey, "timestamp": timestamp, **obj})
    return normalize_row(_text_fields(text.split(), schema))


def _schema_from_header(line: str) -> tuple[str, ...] | None:
    parts = line.split()
    if parts and parts[0] == "CDX" and all(p in _CLASSIC_LETTERS for p in parts[1:]):
        return tuple(_CLASSIC_LETTERS[p] for p in parts[1:])
    return None


def parse_json_array(data: Any) -> CdxBatch:
    """IA ``output=json`` already decoded: ``[header, row, ..., [], [resume key]]``, as one batch."""
    if not isinstance(data, list):
        raise SourceError("CDX answer is not a JSON array")
    return next(parse_json_rows(iter(data), batch_size=len(data) + 1))


def parse_lines(lines: Iterable[str], *, batch_size: int = BATCH) -> Iterator[CdxBatch]:
    """NDJSON, CDXJ or text lines → batches of captures (the last one has ``page_done``)."""
    batch = CdxBatch(page_done=False)
    schema: tuple[str, ...] | None = None
    blank_seen = False
    for raw in lines:
        line = raw.rstrip("\r\n")
        if not line.strip():
            blank_seen = True
            continue
        if blank_seen and " " not in line.strip():  # IA text: blank line, then the resume key
            batch.resume_key = line.strip()
            continue
        header_schema = _schema_from_header(line)
        if header_schema is not None:
            schema = header_schema
            continue
        try:
            parsed = parse_line(line, schema)
        except (ValueError, TypeError):
            batch.bad_lines += 1
            continue
        if isinstance(parsed, dict):
            if "pages" in parsed:
                batch.num_pages = _int(parsed.get("pages")) or 0
            elif "error" in parsed or "message" in parsed:
                raise SourceError(f"CDX server error: {parsed.get('error') or parsed.get('message')}")
            else:
                batch.bad_lines += 1
            continue
        batch.captures.append(parsed)
        batch.raw_lines.append(line)
        if len(batch.captures) >= batch_size:
            yield batch
            batch = CdxBatch(page_done=False)
    batch.page_done = True
    yield batch


def parse_cdx(body: IO[bytes], *, batch_size: int = BATCH) -> Iterator[CdxBatch]:
    """Parse a whole CDX answer (a binary file object), whatever its format, in batches."""
    head = body.read(64)
    body.seek(0)
    if head.lstrip().startswith(b"["):
        yield from parse_json_rows(iter_json_array(body), batch_size=batch_size)
        return
    lines = (raw.decode("utf-8", "replace") for raw in body)
    yield from parse_lines(lines, batch_size=batch_size)


def iter_json_array(body: IO[bytes], *, chunk_size: int = 1 << 16) -> Iterator[Any]:
    """The elements of the JSON array that is all of ``body``, decoded one by one as the bytes are read
    (an IA answer of millions of rows never sits in memory whole); :class:`SourceError` if it is not one."""
    decoder = json.JSONDecoder()
    text, pos, opened, eof = "", 0, False, False
    while not eof:
        piece = body.read(chunk_size)
        eof = not piece
        text = text[pos:] + piece.decode("utf-8", "replace")
        pos = 0
        while True:
            while pos < len(text) and text[pos] in " \t\r\n,":
                pos += 1
            if pos >= len(text):
                break
            if not opened:
                if text[pos] != "[":
                    raise SourceError("CDX answer is not a JSON array")
                opened, pos = True, pos + 1
                continue
            if text[pos] == "]":
                if text[pos + 1:].strip() or body.read(1).strip():
                    raise SourceError("CDX answer is not valid JSON: data after the array")
                return
            try:
                value, end = decoder.raw_decode(text, pos)
            except ValueError:
                if eof:
                    raise SourceError(f"CDX answer is not valid JSON at row {text[pos:pos + 80]!r}") from None
                break  # the row continues in the next piece
            if end == len(text) and not eof:
                break  # a number or word cut short: decode it once the next piece is here
            yield value
            pos = end
        if len(text) - pos > MAX_JSON_ROW:
            raise SourceError(f"CDX answer has a JSON row longer than {MAX_JSON_ROW} characters")
    raise SourceError("CDX answer is not valid JSON: it ends inside the array")


def parse_json_rows(elements: Iterator[Any], *, batch_size: int = BATCH) -> Iterator[CdxBatch]:
    """IA ``output=json`` rows (``header, row, ..., [], [resume key]``) as batches of captures; the last
    batch has ``page_done`` and the resume key."""
    header: list[str] | None = None
    batch = CdxBatch(page_done=False)
    tail: list[Any] = []  # the last two elements: they may be the [] + [resume key] ending
    for element in elements:
        if header is None:
            if not isinstance(element, list):
                raise SourceError("CDX answer is not a JSON array of rows")
            header = [str(name) for name in element]
            continue
        tail.append(element)
        if len(tail) > 2:
            _add_json_row(batch, header, tail.pop(0))
            if len(batch.captures) >= batch_size:
                yield batch
                batch = CdxBatch(page_done=False)
    if len(tail) == 2 and tail[0] == [] and isinstance(tail[1], list) and len(tail[1]) == 1:
        batch.resume_key = str(tail[1][0])
        tail = []
    for row in tail:
        _add_json_row(batch, header or [], row)
    batch.page_done = True
    yield batch


def _add_json_row(batch: CdxBatch, header: list[str], row: Any) -> None:
    if not row:
        return
    try:
        batch.captures.append(normalize_row(dict(zip(header, row, strict=False))))
        batch.raw_lines.append(json.dumps(row))
    except (ValueError, TypeError):
        batch.bad_lines += 1


def error_message(body: bytes) -> str | None:
    """The ``error``/``message`` of a JSON error body (pywb, IA), if it is one."""
    try:
        obj = json.loads(body.decode("utf-8", "replace"))
    except ValueError:
        return None
    if isinstance(obj, dict):
        value = obj.get("error") or obj.get("message")
        return None if value is None else str(value)
    return None


# -- paging --------------------------------------------------------------------------------------

#: ``fetch(params) -> body`` asks the CDX API once; ``None`` means "no captures" (404 or past the end).
CdxFetch = Callable[[dict[str, Any]], IO[bytes] | None]


@dataclass
class CdxPage:
    """A batch of captures and the cursor to resume from once it is stored (``None``: finished)."""

    captures: list[Capture]
    raw_lines: list[str]
    cursor: dict[str, Any] | None
    bad_lines: int = 0


def pages_by_resume_key(fetch: CdxFetch, params: Mapping[str, Any], *, page_size: int,
                        cursor: Mapping[str, Any] | None = None) -> Iterator[CdxPage]:
    """IA paging: ``limit`` + ``showResumeKey=true``, then ``resumeKey=`` until no key comes back.

    ``cursor`` (from a stored :class:`CdxPage`) resumes after the last page stored."""
    resume_key = (cursor or {}).get("resume_key")
    while True:
        query = {**params, "limit": str(page_size), "showResumeKey": "true"}
        if resume_key:
            query["resumeKey"] = str(resume_key)
        body = fetch(query)
        this_page = {"resume_key": resume_key} if resume_key else {}  # resumes at this page's start
        next_key = None
        for batch in [CdxBatch()] if body is None else parse_cdx(body):
            if not batch.page_done:  # a page longer than one batch (a server that ignores limit)
                yield CdxPage(batch.captures, batch.raw_lines, this_page, batch.bad_lines)
                continue
            next_key = batch.resume_key if batch.resume_key and batch.resume_key != resume_key else None
            yield CdxPage(batch.captures, batch.raw_lines, {"resume_key": next_key} if next_key else None,
                          batch.bad_lines)
        if not next_key:
            return
        resume_key = next_key


def pages_by_number(fetch: CdxFetch, params: Mapping[str, Any], *,
                    cursor: Mapping[str, Any] | None = None) -> Iterator[CdxPage]:
    """pywb / Common Crawl paging: ``showNumPages=true`` then ``page=0..N-1``.

    A server without a paged (ZipNum) index ignores ``showNumPages`` and answers with every
    capture at once: that answer is used as the only page. A page past the end (400) ends it.
    """
    start = int((cursor or {}).get("page", 0))
    pages = (cursor or {}).get("pages")
    if pages is None:
        body = fetch({**params, "showNumPages": "true"})
        if body is None:
            return
        batches = parse_cdx(body)
        first = next(batches, None)
        if first is not None and first.num_pages is not None and not first.captures:
            pages = first.num_pages
        else:  # no paged index: this answer already holds every capture
            for batch in itertools.chain([first] if first is not None else [], batches):
                yield CdxPage(batch.captures, batch.raw_lines, None if batch.page_done else {}, batch.bad_lines)
            return
    for page in range(start, int(pages)):
        body = fetch({**params, "page": str(page)})
        if body is None:
            return
        for batch in parse_cdx(body):
            after = {"page": page + 1, "pages": pages} if batch.page_done else {"page": page, "pages": pages}
            yield CdxPage(batch.captures, batch.raw_lines, after, batch.bad_lines)


def single_answer(fetch: CdxFetch, params: Mapping[str, Any]) -> Iterator[CdxPage]:
    """A server without paging: one answer, parsed in batches."""
    body = fetch(dict(params))
    if body is None:
        yield CdxPage([], [], None)
        return
    for batch in parse_cdx(body):
        yield CdxPage(batch.captures, batch.raw_lines, None if batch.page_done else {}, batch.bad_lines)
