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
BATCH = 1000  # captures per yielded batch, so a long unpaged answer never sits in memory whole


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
    """IA ``output=json``: ``[header, row, ..., [], [resume key]]``."""
    if not isinstance(data, list):
        raise SourceError("CDX answer is not a JSON array")
    batch = CdxBatch()
    if not data:
        return batch
    header = [str(name) for name in data[0]]
    rows = data[1:]
    if len(rows) >= 2 and rows[-2] == [] and isinstance(rows[-1], list) and len(rows[-1]) == 1:
        batch.resume_key = str(rows[-1][0])
        rows = rows[:-2]
    for row in rows:
        if not row:
            continue
        try:
            batch.captures.append(normalize_row(dict(zip(header, row, strict=False))))
            batch.raw_lines.append(json.dumps(row))
        except (ValueError, TypeError):
            batch.bad_lines += 1
    return batch


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
        try:
            data = json.load(body)
        except (ValueError, UnicodeDecodeError) as exc:
            raise SourceError(f"CDX answer is not valid JSON: {exc}") from None
        yield parse_json_array(data)
        return
    lines = (raw.decode("utf-8", "replace") for raw in body)
    yield from parse_lines(lines, batch_size=batch_size)


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
        batch = CdxBatch() if body is None else next(parse_cdx(body, batch_size=1 << 30), CdxBatch())
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
