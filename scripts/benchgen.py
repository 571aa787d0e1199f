"""Fast generator of per-record-gzipped WARC files of realistic HTML responses, for ``scripts/bench``.

A pool of distinct HTML pages (markup + Zipf-distributed words, ~8.5 KB gzipped each) is
deflated once; every record is then one gzip member made of its own freshly deflated WARC
headers (unique URI, date, record id) followed by a pool page's pre-deflated HTTP block. The
member's CRC-32 and size are computed over the whole record, so the result is a valid
per-record gzip WARC whose every WARC-Payload-Digest is correct, written at disk speed.
"""

from __future__ import annotations

import base64
import hashlib
import os
import random
import struct
import uuid
import zlib
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

POOL_PAGES = 1500
RECORD_COMPRESSED_TARGET = 8800  # bytes per gzipped record (20,000 records ≈ 176 MB)
_GZIP_HEADER = b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x00\xff"

_SYLLABLES = ["an", "ar", "be", "ca", "de", "di", "el", "en", "er", "es", "ga", "in", "is", "ka", "la", "le", "li",
              "lo", "ma", "me", "mi", "mo", "na", "ne", "no", "on", "or", "pa", "pe", "po", "ra", "re", "ri", "ro",
              "sa", "se", "si", "so", "ta", "te", "ti", "to", "ul", "un", "ur", "va", "ve", "vi", "za", "zo"]
_TLDS = ["com", "org", "net", "de", "fr", "co.uk", "gov", "edu", "io", "info"]


@dataclass(frozen=True)
class _Page:
    block: bytes  # HTTP headers + HTML body + the record's closing CRLF CRLF
    deflated: bytes  # raw deflate of ``block``, finished
    block_length: int  # Content-Length of the WARC record (block without the closing CRLF CRLF)
    payload_digest: str
    block_digest: str


def _vocabulary(rng: random.Random, size: int = 3000) -> list[str]:
    words: set[str] = set()
    while len(words) < size:
        words.add("".join(rng.choice(_SYLLABLES) for _ in range(rng.choice((1, 2, 2, 3, 3, 4)))))
    return sorted(words)


def _sentences(rng: random.Random, words: list[str], count: int) -> list[str]:
    weights = [1.0 / (rank + 1) for rank in range(len(words))]
    out = []
    for _ in range(count):
        chosen = rng.choices(words, weights, k=rng.randint(6, 22))
        out.append(" ".join(chosen).capitalize() + rng.choice((".", ".", ".", "?", "!")))
    return out


def _html(rng: random.Random, words: list[str], sentences: list[str], host: str, paragraphs: int) -> bytes:
    title = rng.choice(sentences)[:60].rstrip(" .?!").title()
    nav = "".join(f'<li class="nav-item dropdown"><a class="nav-link dropdown-toggle" href="/{w}/" '
                  f'data-toggle="dropdown" aria-haspopup="true" aria-expanded="false">{w.title()}</a></li>\n'
                  for w in rng.sample(words[:200], 14))
    body = []
    for i in range(paragraphs):
        if i % 5 == 0:
            body.append(f'<h2 class="section-title" id="s{i}">{rng.choice(sentences)[:-1]}</h2>\n')
        text = " ".join(rng.sample(sentences, rng.randint(2, 5)))
        link = rng.choice(words)
        body.append(f'<p class="text">{text} <a class="inline-link" href="https://{host}/{link}/'
                    f'{rng.randint(1, 9999)}" rel="noopener">{link}</a></p>\n')
    related = "".join(f'<li class="related-item"><a class="related-link" href="/article/{rng.randint(1, 99999)}">'
                      f'<span class="related-title">{rng.choice(sentences)}</span></a></li>\n' for _ in range(10))
    footer = "".join(f'<li class="footer-item"><a class="footer-link" href="/{w}/">{w.title()}</a></li>\n'
                     for w in rng.sample(words[:300], 24))
    config = ", ".join(f'"{w}": {{"enabled": true, "id": {rng.randint(1, 999)}}}' for w in rng.sample(words[:100], 20))
    page = f"""<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{title} | {host}</title>
<meta name="description" content="{rng.choice(sentences)}">
<meta property="og:title" content="{title}">
<meta property="og:type" content="article">
<link rel="stylesheet" href="/static/css/main.{rng.getrandbits(32):08x}.css">
<link rel="icon" href="/favicon.ico">
<script src="/static/js/vendor.{rng.getrandbits(32):08x}.js" defer></script>
<script src="/static/js/app.{rng.getrandbits(32):08x}.js" defer></script>
<script>window.__CONFIG__ = {{{config}}};</script>
<style>.site-header{{display:flex;align-items:center;justify-content:space-between;padding:0 1rem}}
.nav{{list-style:none;margin:0;padding:0;display:flex}}.nav-item{{margin:0 .5rem}}
.text{{line-height:1.6;margin:0 0 1rem}}.related-item{{margin:.25rem 0}}</style>
</head>
<body class="page page-article">
<header class="site-header"><a class="logo" href="/">{host}</a>
<nav class="navbar navbar-expand-lg"><ul class="nav navbar-nav">
{nav}</ul></nav></header>
<main id="content" class="container"><article class="article">
<h1 class="article-title">{title}</h1>
<p class="byline">By <a href="/author/{rng.choice(words)}">{rng.choice(words).title()}
{rng.choice(words).title()}</a></p>
{"".join(body)}</article>
<aside class="sidebar"><h3>Related</h3><ul class="related">
{related}</ul></aside></main>
<footer class="site-footer"><ul class="footer-links">
{footer}</ul><p class="copyright">&copy; {host}. All rights reserved.</p></footer>
</body>
</html>
"""
    return page.encode()


def _make_page(html: bytes, served: datetime) -> _Page:
    http = (
        "HTTP/1.1 200 OK\r\n"
        f"Date: {served.strftime('%a, %d %b %Y %H:%M:%S GMT')}\r\n"
        "Server: nginx\r\n"
        "Content-Type: text/html; charset=utf-8\r\n"
        f"Content-Length: {len(html)}\r\n"
        "Connection: close\r\n\r\n"
    ).encode()
    block = http + html
    full = block + b"\r\n\r\n"
    comp = zlib.compressobj(6, zlib.DEFLATED, -15)
    deflated = comp.compress(full) + comp.flush()
    return _Page(
        block=full, deflated=deflated, block_length=len(block),
        payload_digest="sha1:" + base64.b32encode(hashlib.sha1(html).digest()).decode(),
        block_digest="sha1:" + base64.b32encode(hashlib.sha1(block).digest()).decode(),
    )


def _pool(seed: int, pages: int) -> list[_Page]:
    rng = random.Random(seed)
    words = _vocabulary(rng)
    sentences = _sentences(rng, words, 20000)
    served = datetime(2020, 1, 1, tzinfo=UTC)
    out: list[_Page] = []
    per_paragraph = 300.0  # deflated bytes per paragraph, refined as pages are made
    for _ in range(pages):
        # aim each record near the target (its WARC headers add ~250 bytes), with some spread
        target = RECORD_COMPRESSED_TARGET - 250 + rng.randint(-2000, 2000)
        paragraphs = max(3, round(target / per_paragraph))
        page = _make_page(_html(rng, words, sentences, "example.org", paragraphs), served)
        per_paragraph = 0.8 * per_paragraph + 0.2 * (len(page.deflated) / paragraphs)
        out.append(page)
    return out


def _member(warc_headers: bytes, page: _Page) -> bytes:
    comp = zlib.compressobj(6, zlib.DEFLATED, -15)
    head = comp.compress(warc_headers) + comp.flush(zlib.Z_SYNC_FLUSH)
    crc = zlib.crc32(page.block, zlib.crc32(warc_headers))
    size = (len(warc_headers) + len(page.block)) & 0xFFFFFFFF
    return b"".join((_GZIP_HEADER, head, page.deflated, struct.pack("<II", crc, size)))


def _warcinfo(filename: str) -> bytes:
    body = f"software: archivekeeper bench generator\r\nformat: WARC File Format 1.1\r\nfilename: {filename}\r\n"
    data = body.encode()
    headers = (
        "WARC/1.1\r\nWARC-Type: warcinfo\r\n"
        f"WARC-Record-ID: <urn:uuid:{uuid.uuid4()}>\r\n"
        "WARC-Date: 2024-01-01T00:00:00Z\r\n"
        f"WARC-Filename: {filename}\r\n"
        "Content-Type: application/warc-fields\r\n"
        f"Content-Length: {len(data)}\r\n\r\n"
    ).encode()
    return zlib.compress(headers + data + b"\r\n\r\n", 6, 31)


def write_warc(path: Path, records: int, *, seed: int = 1, pool: list[_Page] | None = None) -> int:
    """Write ``records`` HTML response records (plus a warcinfo) to ``path``; return its size."""
    pool = pool if pool is not None else _pool(7, POOL_PAGES)
    rng = random.Random(seed)
    hosts = [f"www.{''.join(rng.choices(_SYLLABLES, k=rng.randint(2, 4)))}.{rng.choice(_TLDS)}" for _ in range(400)]
    sections = ["news", "article", "blog", "docs", "about", "products", "events", "2019", "2021", "archive"]
    start = datetime(2015, 1, 1, tzinfo=UTC)
    span = int(timedelta(days=365 * 10).total_seconds())
    tmp = path.with_name(path.name + ".part")
    with open(tmp, "wb") as out:
        out.write(_warcinfo(path.name))
        batch: list[bytes] = []
        for n in range(records):
            page = pool[rng.randrange(len(pool))]
            host = rng.choice(hosts)
            url = f"https://{host}/{rng.choice(sections)}/{rng.getrandbits(40):x}/{n}.html"
            if n % 7 == 0:
                url += f"?page={rng.randint(1, 40)}&ref=home"
            when = start + timedelta(seconds=rng.randrange(span))
            headers = (
                "WARC/1.1\r\nWARC-Type: response\r\n"
                f"WARC-Record-ID: <urn:uuid:{uuid.UUID(int=rng.getrandbits(128), version=4)}>\r\n"
                f"WARC-Date: {when.strftime('%Y-%m-%dT%H:%M:%SZ')}\r\n"
                f"WARC-Target-URI: {url}\r\n"
                f"WARC-IP-Address: 10.{rng.randint(0, 255)}.{rng.randint(0, 255)}.{rng.randint(1, 254)}\r\n"
                f"WARC-Block-Digest: {page.block_digest}\r\n"
                f"WARC-Payload-Digest: {page.payload_digest}\r\n"
                "Content-Type: application/http; msgtype=response\r\n"
                f"Content-Length: {page.block_length}\r\n\r\n"
            ).encode()
            batch.append(_member(headers, page))
            if len(batch) >= 256:
                out.write(b"".join(batch))
                batch = []
        out.write(b"".join(batch))
    os.replace(tmp, path)
    return path.stat().st_size


def ensure_warcs(bench_dir: Path, name: str, records: int, count: int = 1) -> list[Path]:
    """``count`` cached WARCs of ``records`` records each under ``bench_dir`` (generated once)."""
    bench_dir.mkdir(parents=True, exist_ok=True)
    paths = [bench_dir / f"{name}-{records}r-{i}.warc.gz" for i in range(count)]
    missing = [p for p in paths if not p.exists()]
    if missing:
        pool = _pool(7, POOL_PAGES)
        for i, path in enumerate(paths):
            if not path.exists():
                write_warc(path, records, seed=zlib.crc32(f"{name}-{i}-{records}".encode()), pool=pool)
    return paths
