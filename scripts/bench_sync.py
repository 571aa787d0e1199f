"""``scripts/bench_sync.py``: the sync section of ``scripts/bench``; every figure beside a baseline.

- ``throughput``: captures/s and MB/s of ``archivekeeper sync`` from a local pywb (the real pywb of
  ``.venv-pywb``) at concurrency 1, 4 and 16, against a plain ``requests`` loop (one session per
  thread, the same concurrency) that lists the captures with one CDX call and fetches the same
  ``id_`` URLs, in the same run; politeness limits are lifted for both. The sync figure covers all
  of its work: planning from the CDX API, fetching, hashing, writing gzipped WARC records with
  fsync, cataloguing (its own ``this_run.seconds``, without interpreter start-up). MB/s counts the
  bytes received. Target: ≥ 0.9× at every concurrency.
- ``rss``: peak RSS of the sync process as the job grows from 1,000 to 10,000 and 100,000 captures
  (``--quick``: to 10,000): flat means within 10 % of the first.

Archives are generated (one host, pages of 10–40 KB captured 2019–2022) and cached in
``$ARCHIVEKEEPER_BENCH_DIR/sync`` (default ``/tmp/archivekeeper-bench``), outside the repository.
Timed syncs run in fresh subprocesses; the best of ``--repeats`` runs counts.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from io import BytesIO
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests"))  # servers.py runs pywb as a subprocess (GPL: never imported)

BENCH_ROOT = Path(os.environ.get("ARCHIVEKEEPER_BENCH_DIR", Path(tempfile.gettempdir()) / "archivekeeper-bench"))
BENCH_DIR = BENCH_ROOT / "sync"
HOST = "bench.example"
UNLIMITED = {f"ARCHIVEKEEPER_CDX_{key}": value for key, value in
             {"FETCHES_PER_SECOND": "0", "CDX_PER_MINUTE": "0", "BACKOFF_BASE": "0.05"}.items()}
WORDS = ("the of and to in is was for on that with as by at from his it an were are which this be or has had "
         "not but one new first all their two been after its who other more also year into when time city "
         "people years would there can about most some over three during only may such many these between "
         "river school church station council market library garden harbour bridge mill railway museum").split()


def write_archive(path: Path, captures: int, *, small: bool) -> None:
    """``captures`` responses of ``https://bench.example/p/N.html``, 2019–2022, as one per-record-gzip WARC."""
    from warcio.statusandheaders import StatusAndHeaders
    from warcio.warcwriter import WARCWriter

    rng = random.Random(captures)
    start = datetime(2019, 1, 1, tzinfo=UTC)
    tmp = path.with_name(path.name + ".part")
    with open(tmp, "wb") as out:
        writer = WARCWriter(out, gzip=True)
        for n in range(captures):
            size = rng.randint(300, 900) if small else rng.randint(10_000, 40_000)
            words = " ".join(rng.choice(WORDS) for _ in range(size // 6))
            body = f"<html><head><title>page {n}</title></head><body><p>{words}</p></body></html>".encode()
            when = start + timedelta(seconds=rng.randrange(4 * 365 * 86400))
            headers = StatusAndHeaders("200 OK", [("Content-Type", "text/html; charset=utf-8"),
                                                  ("Content-Length", str(len(body)))], protocol="HTTP/1.1")
            record = writer.create_warc_record(f"https://{HOST}/p/{n}.html", "response", payload=BytesIO(body),
                                               length=len(body), http_headers=headers,
                                               warc_headers_dict={"WARC-Date": when.strftime("%Y-%m-%dT%H:%M:%SZ")})
            writer.write_record(record)
    os.replace(tmp, path)


def archive(name: str, captures: int, *, small: bool = False) -> Path:
    BENCH_DIR.mkdir(parents=True, exist_ok=True)
    path = BENCH_DIR / f"{name}-{captures}.warc.gz"
    if not path.exists():
        write_archive(path, captures, small=small)
    return path


def id_urls(collection: str) -> list[str]:
    import requests

    with requests.Session() as session:
        session.trust_env = False
        lines = session.get(f"{collection}/cdx", params={"url": HOST, "matchType": "host", "output": "json"}).text
    return [f"{collection}/{row['timestamp']}id_/{row['url']}" for row in map(json.loads, lines.splitlines())]


def plain_loop(urls: list[str], concurrency: int, collection: str | None = None) -> tuple[float, int]:
    """The baseline: list the captures (one CDX call, when ``collection`` is given, as the sync does),
    then fetch every URL with requests (a session per thread), reading the raw bytes."""
    import requests

    local = threading.local()

    def get(url: str) -> int:
        session = getattr(local, "session", None)
        if session is None:
            session = local.session = requests.Session()
            session.trust_env = False
        resp = session.get(url, headers={"Accept-Encoding": "gzip"}, stream=True, allow_redirects=False)
        return len(resp.raw.read(decode_content=False))

    started = time.perf_counter()
    if collection is not None:
        assert len(id_urls(collection)) >= len(urls)
    with ThreadPoolExecutor(concurrency) as pool:
        size = sum(pool.map(get, urls))
    return time.perf_counter() - started, size


def run_sync(collection: str, concurrency: int, workdir: Path, limit: int | None = None) -> tuple[dict[str, Any], int]:
    """``archivekeeper sync`` in a fresh workspace and process: (its summary, its peak RSS in KiB)."""
    ws = workdir / f"ws-{concurrency}-{time.monotonic_ns()}"
    wrapper = ("import resource, subprocess, sys; p = subprocess.run(sys.argv[1:], capture_output=True, text=True); "
               "sys.stdout.write(p.stdout); sys.stderr.write(p.stderr); "
               "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss); sys.exit(p.returncode)")
    cmd = [sys.executable, "-c", wrapper, sys.executable, "-m", "archivekeeper", "-w", str(ws), "sync", collection,
           HOST, "--match", "host", "--concurrency", str(concurrency), "--json",
           *(["--limit", str(limit)] if limit else [])]
    done = subprocess.run(cmd, env={**os.environ, **UNLIMITED}, capture_output=True, text=True, cwd=REPO)
    if done.returncode != 0:
        raise SystemExit(f"sync failed:\n{done.stderr[-3000:]}")
    *lines, rss = done.stdout.strip().splitlines()
    shutil.rmtree(ws, ignore_errors=True)
    return json.loads("\n".join(lines)), int(rss)


def throughput(pywb_factory: Any, sizes: dict[int, int], repeats: int, workdir: Path) -> None:
    """At each concurrency, a job big enough to last several seconds (the first N captures)."""
    biggest = max(sizes.values())
    server = pywb_factory({"tp": [archive("pages", biggest)]})
    collection = server.collection_url("tp")
    every = id_urls(collection)
    assert len(every) == biggest, len(every)
    plain_loop(every[:50], 4)  # warm pywb up
    print(f"\nsync throughput: captures of 10–40 KB from a local pywb 2.10 (best of {repeats}; "
          "ratio = sync / plain requests loop)")
    print(f"{'concurrency':>11} {'captures':>8}  {'plain cap/s':>11} {'MB/s':>6}  {'sync cap/s':>10} {'MB/s':>6}  "
          f"{'ratio':>5}")
    for concurrency, captures in sorted(sizes.items()):
        urls = every[:captures]
        plain, ours = [], []
        for _ in range(repeats):  # interleaved, so both see the same machine
            seconds, size = plain_loop(urls, concurrency, collection)
            plain.append((captures / seconds, size / 1e6 / seconds))
            summary, _ = run_sync(collection, concurrency, workdir, limit=captures)
            run = summary["this_run"]
            assert summary["complete"] and run["fetched"] == captures, summary
            ours.append((captures / run["seconds"], run["bytes"] / 1e6 / run["seconds"]))
        best_plain, best_ours = max(plain), max(ours)
        print(f"{concurrency:>11} {captures:>8}  {best_plain[0]:>11.1f} {best_plain[1]:>6.2f}  {best_ours[0]:>10.1f} "
              f"{best_ours[1]:>6.2f}  {best_ours[0] / best_plain[0]:>4.2f}×")


def rss(pywb_factory: Any, sizes: tuple[int, ...], workdir: Path) -> None:
    print("\nsync peak RSS as the job grows (small pages, concurrency 16; flat = within 10 %)")
    figures = []
    for captures in sizes:
        server = pywb_factory({f"rss{captures}": [archive("small", captures, small=True)]})
        summary, peak = run_sync(server.collection_url(f"rss{captures}"), 16, workdir)
        assert summary["complete"] and summary["fetched"] == captures, summary
        figures.append(peak)
        load = " ".join(f"{value:.2f}" for value in os.getloadavg())
        print(f"{captures:>8} captures: peak RSS {peak / 1024:6.1f} MiB "
              f"({summary['this_run']['captures_per_s']} captures/s; load average {load})")
    print(f"{'':>8} ratio {figures[-1] / figures[0]:.2f}× for {sizes[-1] // sizes[0]}× the captures")


def main() -> None:
    parser = argparse.ArgumentParser(prog="scripts/bench_sync.py", description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="smaller archives (about three minutes; full: ~25)")
    parser.add_argument("--repeats", type=int, default=None)
    parser.add_argument("--only", choices=("throughput", "rss"), default=None)
    args = parser.parse_args()
    from servers import PywbServer

    # sized so every timed job lasts several seconds at that concurrency against pywb
    captures = {1: 300, 4: 1000, 16: 2000} if args.quick else {1: 1000, 4: 3000, 16: 8000}
    repeats = args.repeats or (2 if args.quick else 3)
    sizes = (1_000, 10_000) if args.quick else (1_000, 10_000, 100_000)
    servers: list[PywbServer] = []
    with tempfile.TemporaryDirectory(prefix="ak-bench-sync-") as tmp:
        workdir = Path(tmp)

        def factory(collections: dict[str, list[Path]]) -> PywbServer:
            server = PywbServer(workdir / f"pywb-{len(servers)}", collections).start()
            servers.append(server)
            return server

        try:
            print(f"archivekeeper sync bench ({'quick' if args.quick else 'full'}): {os.cpu_count()} cores")
            if args.only in (None, "throughput"):
                throughput(factory, captures, repeats, workdir)
            if args.only in (None, "rss"):
                rss(factory, sizes, workdir)
        finally:
            for server in servers:
                server.stop()


if __name__ == "__main__":
    main()
