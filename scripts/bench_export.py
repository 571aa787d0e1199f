"""``scripts/bench_export.py``: the export section of ``scripts/bench``; every figure beside a baseline.

- ``shards``: ``archivekeeper export --format warc`` of a store (≥ 500 MB; ``--quick``: 100 MB) against
  the same stored bytes copied and SHA-256-hashed by a plain loop (target ≥ 0.7×); also on a store
  of small HTML records only, where per-record work weighs most;
- ``text``: documents/s of ``export --format jsonl`` with one and with two extraction processes against
  the chosen extractor (trafilatura, with the export's settings) called in a plain loop on the same
  documents held in memory, in a fresh process timed from ``import trafilatura`` as the export is
  (targets ≥ 0.9× on one core, ≥ 1.7× with both); the loop's rate without the import is shown too;
- ``s3``: archivekeeper's upload of an export to a local ``moto_server`` against plain boto3
  ``upload_file`` of the same files to the same server (target ≥ 0.9×);
- ``rss``: peak RSS of ``export --format warc`` on a 100 MB store against a 2 GB one (``--quick``:
  50 MB / 400 MB): flat means within 10 %;
- ``--compare-extractors``: quality (against the ``<main>`` text of the demo pages) and speed of
  trafilatura and resiliparse, the measurement behind the README's choice.

Stores are generated (unique payloads, all captured 2015–2022, 3 of 4 records HTML, the rest
incompressible "images") and cached in ``$ARCHIVEKEEPER_BENCH_DIR`` (default
``/tmp/archivekeeper-bench``). Timed exports run in fresh subprocesses.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import random
import shutil
import subprocess
import sys
import tempfile
import time
import zlib
from base64 import b32encode
from collections.abc import Callable
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
BENCH_DIR = Path(os.environ.get("ARCHIVEKEEPER_BENCH_DIR", "/tmp/archivekeeper-bench")) / "export"
AK = [sys.executable, "-m", "archivekeeper"]
FILE_LIMIT = 256 << 20
WORDS = ("the of and to in is was for on that with as by at from his it an were are which this be or has "
         "had not but one new first all their two been after its who other more also year into when time "
         "city people years would there can about most some over three during only may such many these "
         "between them than made used since then later world where before while under known through both "
         "river school church station council market library garden harbour bridge mill railway museum "
         "festival meeting season report street village county history family music club water road "
         "winter summer spring autumn building north south east west local public open early late").split()


# -- the generated store -------------------------------------------------------------------------

def _sha1(data: bytes) -> str:
    return "sha1:" + b32encode(hashlib.sha1(data).digest()).decode()


def _paragraphs(rng: random.Random, count: int) -> list[str]:
    return [" ".join(rng.choice(WORDS) for _ in range(rng.randint(25, 90))).capitalize() + "."
            for _ in range(count)]


def _html(rng: random.Random, pool: list[str], n: int) -> bytes:
    title = f"{' '.join(rng.choice(WORDS) for _ in range(5)).title()} ({n})"
    nav = "".join(f'<li><a href="/{w}/">{w.title()}</a></li>' for w in rng.sample(WORDS, 25))
    body = "".join(f"<p>{p}</p>\n" for p in rng.sample(pool, rng.randint(4, 14)))
    items = "".join(f"<li>{rng.choice(pool)[:80]}</li>" for _ in range(rng.randint(0, 6)))
    script = json.dumps({"page": n, "tags": rng.sample(WORDS, 12), "ads": [rng.random() for _ in range(20)]})
    return (f"<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>{title}</title>"
            f"<script>window.__STATE__ = {script};</script></head><body><header><nav><ul>{nav}</ul></nav>"
            f"</header><main><article><h1>{title}</h1><p class=\"byline\">Story {n}: {rng.choice(pool)}</p>"
            f"{body}<ul>{items}</ul></article></main><footer><p>{rng.choice(pool)}</p><ul>{nav}</ul></footer>"
            "</body></html>\n").encode()


def _record(url: str, when: str, mime: str, payload: bytes, n: int, level: int) -> bytes:
    http = (f"HTTP/1.1 200 OK\r\nContent-Type: {mime}\r\nContent-Length: {len(payload)}\r\n\r\n").encode() + payload
    head = ("WARC/1.1\r\nWARC-Type: response\r\n"
            f"WARC-Record-ID: <urn:uuid:00000000-0000-4000-8000-{n:012x}>\r\n"
            f"WARC-Date: {when}\r\nWARC-Target-URI: {url}\r\n"
            f"WARC-Payload-Digest: {_sha1(payload)}\r\nWARC-Block-Digest: {_sha1(http)}\r\n"
            "Content-Type: application/http; msgtype=response\r\n"
            f"Content-Length: {len(http)}\r\n\r\n").encode()
    deflater = zlib.compressobj(level, zlib.DEFLATED, 31)
    return deflater.compress(head) + deflater.compress(http) + deflater.compress(b"\r\n\r\n") + deflater.flush()


def make_store(name: str, megabytes: int, *, html_only: bool = False, seed: int = 1) -> list[Path]:
    """WARC files of about ``megabytes`` MB with unique payloads, cached under BENCH_DIR/name."""
    folder = BENCH_DIR / f"{name}-{megabytes}mb"
    done = folder / "COMPLETE"
    if done.exists():
        return sorted(folder.glob("*.warc.gz"))
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    rng = random.Random(seed)
    pool = _paragraphs(rng, 3000)
    hosts = [f"www.{rng.choice(WORDS)}{rng.choice(WORDS)}{i}.example" for i in range(300)]
    target, written, n, index = megabytes << 20, 0, 0, 0
    while written < target:
        path = folder / f"store-{index:03d}.warc.gz"
        with open(path, "wb") as out:
            size = 0
            while size < FILE_LIMIT and written + size < target:
                n += 1
                when = f"{rng.randint(2015, 2022)}-{rng.randint(1, 12):02d}-{rng.randint(1, 28):02d}T12:00:00Z"
                host = rng.choice(hosts)
                if html_only or rng.random() < 0.75:
                    url, mime, payload, level = f"https://{host}/story/{n}.html", "text/html", _html(rng, pool, n), 6
                else:
                    length = int(min(1 << 20, max(4096, rng.lognormvariate(11.0, 0.9))))
                    url, mime, payload, level = f"https://{host}/img/{n}.jpg", "image/jpeg", rng.randbytes(length), 1
                data = _record(url, when, mime, payload, n, level)
                out.write(data)
                size += len(data)
        written += size
        index += 1
    done.write_text(f"{n} records, {written} bytes\n")
    return sorted(folder.glob("*.warc.gz"))


def workspace_for(paths: list[Path], name: str) -> Path:
    """A workspace with ``paths`` imported (cached beside the store)."""
    root = paths[0].parent / f"ws-{name}"
    marker = root / "IMPORTED"
    if not marker.exists():
        shutil.rmtree(root, ignore_errors=True)
        run([*AK, "-w", str(root), "import", *map(str, paths), "--json"])
        marker.write_text("ok\n")
    return root


# -- measuring -----------------------------------------------------------------------------------

def run(command: list[str], env: dict[str, str] | None = None) -> tuple[float, int, str]:
    """Run a command; return (seconds, peak RSS in KB of that process, stdout)."""
    started = time.perf_counter()
    proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env, text=True)
    out, err = proc.communicate()
    seconds = time.perf_counter() - started
    rss = _peak_rss(proc.pid)
    if proc.returncode != 0:
        raise SystemExit(f"failed: {' '.join(command)}\n{err}")
    return seconds, rss, out


_RUSAGE: dict[int, int] = {}


def _peak_rss(pid: int) -> int:
    return _RUSAGE.pop(pid, 0)


def _wait_with_rusage() -> None:
    """Make Popen reap children with wait4 so each child's own peak RSS is known."""
    original = subprocess.Popen._try_wait  # type: ignore[attr-defined]

    def try_wait(self: subprocess.Popen[Any], wait_flags: int) -> tuple[int, int]:
        pid, status, usage = os.wait4(self.pid, wait_flags)
        if pid:
            _RUSAGE[pid] = usage.ru_maxrss
        return pid, status

    subprocess.Popen._try_wait = try_wait  # type: ignore[attr-defined]
    _ = original


def export_env() -> dict[str, str]:
    return {**os.environ, "SOURCE_DATE_EPOCH": "1700000000"}


def export(root: Path, name: str, dest: str, *extra: str) -> tuple[float, int, dict[str, Any]]:
    """Run ``archivekeeper export``; return (seconds inside the export, peak RSS KB, JSON summary)."""
    _, rss, out = run([*AK, "-w", str(root), "export", name, "--to", dest, "--json", *extra], env=export_env())
    summary = json.loads(out)
    return float(summary["seconds"]), rss, summary


def copy_and_hash(paths: list[Path], dest: Path) -> float:
    """The baseline: the store's bytes read, SHA-256-hashed and written by a plain loop."""
    started = time.perf_counter()
    for path in paths:
        digest = hashlib.sha256()
        with open(path, "rb") as src, open(dest, "wb") as out:
            while chunk := src.read(1 << 20):
                digest.update(chunk)
                out.write(chunk)
            out.flush()
            os.fsync(out.fileno())
    return time.perf_counter() - started


def warm(paths: list[Path]) -> None:
    for path in paths:
        with open(path, "rb") as handle:
            while handle.read(8 << 20):
                pass


def best(times: int, measure: Callable[[], float]) -> float:
    return min(measure() for _ in range(times))


ROWS: list[tuple[str, str, str, str, str]] = []


def row(figure: str, ours: str, baseline: str, ratio: float | None, target: str) -> None:
    ROWS.append((figure, ours, baseline, "-" if ratio is None else f"{ratio:.2f}×", target))
    print(f"  {figure}: {ours} vs {baseline}" + ("" if ratio is None else f" = {ratio:.2f}×"), flush=True)


def load_average() -> str:
    """The machine's load (1, 5, 15 minutes): ratios drift when other work shares the cores."""
    one, five, fifteen = os.getloadavg()
    return f"load average {one:.2f} {five:.2f} {fifteen:.2f}"


def print_table() -> None:
    print(f"\nat the end: {load_average()}")
    head = ("figure", "archivekeeper", "baseline", "ratio", "target")
    widths = [max(len(r[i]) for r in [head, *ROWS]) for i in range(5)]
    print()
    for line in [head, tuple("-" * w for w in widths), *ROWS]:
        print("  ".join(cell.ljust(width) for cell, width in zip(line, widths, strict=True)))


def scratch(size: int) -> Path:
    """Where outputs go: tmpfs when it has room (disk write speed here varies too much to compare)."""
    shm = Path("/dev/shm")
    if shm.is_dir() and shutil.disk_usage(shm).free > 3 * size:
        return Path(tempfile.mkdtemp(prefix="ak-bench-", dir=shm))
    BENCH_DIR.mkdir(parents=True, exist_ok=True)
    return Path(tempfile.mkdtemp(prefix="ak-bench-", dir=BENCH_DIR))


# -- sections ------------------------------------------------------------------------------------

def bench_shards(name: str, megabytes: int, *, html_only: bool, rounds: int) -> None:
    paths = make_store(name, megabytes, html_only=html_only)
    root = workspace_for(paths, name)
    size = sum(p.stat().st_size for p in paths)
    records = int((paths[0].parent / "COMPLETE").read_text().split()[0])
    out = scratch(size)
    ours, built, base = [], [], []
    try:
        for attempt in range(rounds):
            warm(paths)
            base.append(copy_and_hash(paths, out / "baseline.bin"))
            (out / "baseline.bin").unlink()
            seconds, _, summary = export(root, f"bench-{os.getpid()}-{attempt}", str(out / "export"), "--format",
                                         "warc")
            ours.append(seconds)
            built.append(summary["timings"]["build"])
            shutil.rmtree(out / "export")
    finally:
        shutil.rmtree(out, ignore_errors=True)
    mb = size / 1e6
    label = f"{mb:.0f} MB store ({records} records, {size // records // 1024} KB avg)"
    row(f"export --format warc, {label}", f"{mb / min(ours):.0f} MB/s", f"copy+SHA-256 loop {mb / min(base):.0f} MB/s",
        min(base) / min(ours), "≥ 0.7×")
    row(f"  of which writing the shards, {label}", f"{mb / min(built):.0f} MB/s",
        f"copy+SHA-256 loop {mb / min(base):.0f} MB/s", min(base) / min(built), "(info)")


def _documents(paths: list[Path]) -> list[bytes]:
    from fastwarc.warc import ArchiveIterator, WarcRecordType

    docs = []
    for path in paths:
        with open(path, "rb") as handle:
            for record in ArchiveIterator(handle, record_types=WarcRecordType.response, parse_http=True,
                                          auto_decode="all"):
                if (record.http_headers.get("Content-Type") or "").startswith("text/html"):
                    docs.append(bytes(record.reader.read()))
    return docs


def baseline_loop(folder: str) -> None:
    """Print ``docs seconds_with_import seconds_loop``: trafilatura in a plain loop, in this fresh process.

    The documents are read first (untimed); the clock starts before ``import trafilatura``, because the
    export pays that import too (its workers import it): on a few hundred documents it is a sixth of the
    time, and a warm loop would count it against the export alone. Settings: the export's own."""
    docs = _documents(sorted(Path(folder).glob("*.warc.gz")))
    sys.path.insert(0, str(REPO))
    from archivekeeper.extract import extractor_options  # imports archivekeeper, not trafilatura

    assert "trafilatura" not in sys.modules
    started = time.perf_counter()
    import trafilatura

    options = extractor_options()
    looped = time.perf_counter()
    for html in docs:
        trafilatura.extract(html, options=options)
    ended = time.perf_counter()
    print(len(docs), ended - started, ended - looped)


def _plain_loop(paths: list[Path]) -> tuple[int, float, float]:
    code = f"import sys; sys.path.insert(0, {str(REPO / 'scripts')!r}); import bench_export; " \
           f"bench_export.baseline_loop({str(paths[0].parent)!r})"
    _, _, out = run([sys.executable, "-c", code])
    docs, cold, warm = out.split()
    return int(docs), float(cold), float(warm)


def bench_text(docs_wanted: int, rounds: int) -> None:
    paths = make_store(f"html-{docs_wanted}", max(1, docs_wanted * 5 // 2048), html_only=True, seed=5)
    root = workspace_for(paths, "text")
    docs = len(_documents(paths))
    out = scratch(sum(p.stat().st_size for p in paths))
    cold: list[float] = []
    warm: list[float] = []
    ours: dict[int, list[float]] = {1: [], 2: []}
    try:
        for attempt in range(rounds):  # interleaved, best of each: the machine's load varies
            looped, with_import, loop_only = _plain_loop(paths)
            assert looped == docs, (looped, docs)
            cold.append(with_import)
            warm.append(loop_only)
            for jobs in (1, 2):
                name = f"text-{os.getpid()}-{attempt}-{jobs}"
                seconds, _, summary = export(root, name, str(out / name), "--format", "jsonl", "--jobs", str(jobs))
                assert summary["counts"]["documents"] == docs, summary
                ours[jobs].append(seconds)
    finally:
        shutil.rmtree(out, ignore_errors=True)
    base = docs / min(cold)
    for jobs, target in ((1, "≥ 0.9×"), (2, "≥ 1.7×")):
        rate = docs / min(ours[jobs])
        row(f"text extraction, {docs} docs, {jobs} process{'es' if jobs > 1 else ''}", f"{rate:.0f} docs/s",
            f"trafilatura loop {base:.0f} docs/s (import incl.; {docs / min(warm):.0f} without)", rate / base, target)


def bench_s3(megabytes: int, rounds: int) -> None:
    import boto3
    from botocore.config import Config

    sys.path.insert(0, str(REPO / "tests"))
    from servers import MotoS3Server  # the tests' moto_server runner (127.0.0.1, free port)

    from archivekeeper.package import _tag_items
    from archivekeeper.s3 import S3Location, Uploader, UploadItem

    paths = make_store("mixed", megabytes)
    root = workspace_for(paths, "mixed")
    out = scratch(2 * sum(p.stat().st_size for p in paths))
    work = Path(tempfile.mkdtemp(prefix="ak-moto-"))
    try:
        export(root, f"s3-{os.getpid()}", str(out / "export"), "--format", "warc", "--shard-size", str(64 << 20))
        manifest = json.loads((out / "export" / "manifest.json").read_text())
        data = [UploadItem(f["path"], f["size"], f["sha256"]) for f in manifest["files"]]
        tags = _tag_items(out / "export")
        total = sum(i.size for i in [*data, *tags]) / 1e6
        with MotoS3Server(workdir=work) as moto:
            client = boto3.client("s3", endpoint_url=moto.endpoint_url, region_name="us-east-1",
                                  aws_access_key_id="testing", aws_secret_access_key="testing",
                                  config=Config(s3={"addressing_style": "path"}, max_pool_connections=10))
            client.create_bucket(Bucket="bench")
            ours, base = [], []
            for attempt in range(rounds):
                started = time.perf_counter()
                for item in [*data, *tags]:
                    client.upload_file(str(out / "export" / item.relpath), "bench", f"plain{attempt}/{item.relpath}")
                base.append(time.perf_counter() - started)
                started = time.perf_counter()
                Uploader(client, S3Location("bench", f"ours{attempt}")).run(out / "export", data, tags)
                ours.append(time.perf_counter() - started)
                moto.reset()
                client.create_bucket(Bucket="bench")
        row(f"S3 upload to moto_server, {total:.0f} MB in {len(data) + len(tags)} files",
            f"{total / min(ours):.0f} MB/s", f"boto3 upload_file loop {total / min(base):.0f} MB/s",
            min(base) / min(ours), "≥ 0.9×")
    finally:
        shutil.rmtree(out, ignore_errors=True)
        shutil.rmtree(work, ignore_errors=True)


def bench_rss(small: int, big: int) -> None:
    results = {}
    for megabytes in (small, big):
        paths = make_store("mixed", megabytes)
        root = workspace_for(paths, "mixed")
        out = scratch(sum(p.stat().st_size for p in paths))
        try:
            _, rss, _ = export(root, f"rss-{os.getpid()}", str(out / "export"), "--format", "warc")
        finally:
            shutil.rmtree(out, ignore_errors=True)
        results[megabytes] = rss
    row(f"peak RSS of export --format warc, {big} MB vs {small} MB store", f"{results[big] / 1024:.0f} MB",
        f"{results[small] / 1024:.0f} MB", results[big] / results[small], "≤ 1.1× (flat)")


def compare_extractors() -> None:
    """Quality (token P/R/F1 against each page's <main> text) and speed of the two extractors."""
    import re
    from collections import Counter

    import lxml.html
    import trafilatura
    from resiliparse.extract.html2text import extract_plain_text
    from resiliparse.parse.encoding import detect_encoding
    from resiliparse.parse.html import HTMLTree

    sys.path.insert(0, str(REPO))
    from archivekeeper.demo import generate_sample_archive

    folder = BENCH_DIR / "demo-20"
    paths = sorted(folder.glob("*.warc.gz")) or generate_sample_archive(folder, scale=20)
    pages = [d for d in _documents(paths) if b"<main>" in d]

    def tokens(text: str) -> Counter[str]:
        return Counter(re.findall(r"\w+", text.lower()))

    def resiliparse(html: bytes) -> str:
        tree = HTMLTree.parse_from_bytes(html, detect_encoding(html) or "utf-8")
        return str(extract_plain_text(tree, main_content=True, alt_texts=False, links=False))

    extractors: dict[str, Callable[[bytes], str]] = {
        "trafilatura (default)": lambda html: trafilatura.extract(html) or "",
        "trafilatura fast=True": lambda html: trafilatura.extract(html, fast=True) or "",
        "resiliparse main_content": resiliparse,
    }
    gold = [tokens(lxml.html.fromstring(p).find(".//main").text_content()) for p in pages]
    print(f"\nextractors on {len(pages)} sample pages (tokens against each page's <main> text)")
    for label, extract in extractors.items():
        started = time.perf_counter()
        outputs = [tokens(extract(p)) for p in pages]
        rate = len(pages) / (time.perf_counter() - started)
        scores = []
        for got, want in zip(outputs, gold, strict=True):
            overlap = sum((got & want).values())
            scores.append((overlap / max(1, sum(got.values())), overlap / max(1, sum(want.values()))))
        precision = sum(p for p, _ in scores) / len(scores)
        recall = sum(r for _, r in scores) / len(scores)
        f1 = sum(2 * p * r / (p + r) if p + r else 0.0 for p, r in scores) / len(scores)
        print(f"  {label:26} P {precision:.3f}  R {recall:.3f}  F1 {f1:.3f}  {rate:7.0f} docs/s")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small inputs (about two minutes)")
    parser.add_argument("--store-mb", type=int, help="size of the store for the shard and S3 figures")
    parser.add_argument("--docs", type=int, help="documents for the text figures")
    parser.add_argument("--rss-mb", type=int, nargs=2, metavar=("SMALL", "BIG"), help="stores compared for RSS")
    parser.add_argument("--rounds", type=int, default=3, help="timed repetitions (the best counts)")
    parser.add_argument("--only", choices=["shards", "text", "s3", "rss"], action="append")
    parser.add_argument("--compare-extractors", action="store_true", help="only the extractor comparison")
    args = parser.parse_args()
    _wait_with_rusage()
    if args.compare_extractors:
        compare_extractors()
        return
    store = args.store_mb or (100 if args.quick else 500)
    docs = args.docs or (800 if args.quick else 4000)
    small, big = args.rss_mb or ((50, 400) if args.quick else (100, 2000))
    sections = args.only or ["shards", "text", "s3", "rss"]
    print(f"export bench ({'quick' if args.quick else 'full'}): stores in {BENCH_DIR}, {os.cpu_count()} cores, "
          f"{load_average()}",
          flush=True)
    if "shards" in sections:
        bench_shards("mixed", store, html_only=False, rounds=args.rounds)
        bench_shards("html", max(20, store // 5), html_only=True, rounds=args.rounds)
    if "text" in sections:
        bench_text(docs, max(1, args.rounds - 1))
    if "s3" in sections:
        bench_s3(store, max(1, args.rounds - 1))
    if "rss" in sections:
        bench_rss(small, big)
    print_table()


if __name__ == "__main__":
    main()
