"""Real local servers for the archivekeeper test suite (127.0.0.1 only, no pytest needed).

Every helper is a context manager that starts a real server on a free port, waits until
it answers and stops it on exit (subprocesses run in their own process group, are killed
on exit, at interpreter exit, and -- on Linux, when started from the main thread -- also
when the test process itself dies: ``setpriv --pdeathsig KILL``).

* ``PywbServer``     -- pywb 2.10.0 ``wayback`` (separate GPL venv; only ever run as a
                        subprocess, never imported) over collections built with ``wb-manager``.
* ``MotoS3Server``   -- ``moto_server`` S3 endpoint + fake-credential boto3 client.
* ``FaultServer``    -- scripted faults per path, then static files (with Range) or a
                        reverse proxy to an upstream (e.g. pywb), else 404.
* ``RangeFileServer``-- ``FaultServer`` serving a directory with HTTP Range (Common Crawl style).

Clients should not pick up proxies from the environment: use ``requests.Session()`` with
``trust_env = False`` (this module's own probes bypass proxies).

Observed pywb 2.10.0 behaviour (verified against realdata example.warc.gz, warcio
example.warc.gz and the ZipNum sample; ``{c}`` = ``http://127.0.0.1:PORT/COLL``)
=====================================================================================

CDX API ``GET {c}/cdx?url=...``
  * ``output=json`` -> 200, ``Content-Type: text/x-ndjson``, chunked, one JSON object per
    line, ascending by (urlkey, timestamp). Keys in order: ``urlkey, timestamp, url, mime,
    status, digest, length, offset, filename, source, source-coll, access`` (all values are
    strings; ``source`` = ``COLL/indexes/index.cdxj``).
    **Revisit lines (``mime: warc/revisit``) have NO ``status`` key.** ZipNum lines differ:
    extra ``redirect``/``robotflags`` ("-"), ``source``/``source-coll`` = COLL, no ``access``,
    and revisits carry ``"status": "-"``.
    ``digest`` is the bare base32 SHA-1 (no ``sha1:`` prefix) copied from the WARC; it can
    be hex if the WARC had hex (example2.warc.gz).
  * without ``output``: ``text/x-cdxj`` lines ``URLKEY TIMESTAMP {json}``; ``output=text``:
    space-separated ``text/plain`` -- a revisit simply has one column fewer (no status
    placeholder), so never parse positionally. ``output=cdx`` -> 400.
  * ``fl=timestamp,digest`` restricts the JSON keys. ``limit=N``, ``sort=reverse``,
    ``closest=TS&sort=closest`` and ``filter=!mime:warc/revisit`` work.
  * default match is exact on the SURT key: ``url=example.com`` does NOT match
    ``http://example.com?example=1`` (key ``com,example)/?example=1``). ``matchType=prefix``
    (or ``url=example.com/*``), ``matchType=host``, ``matchType=domain`` (or ``url=*.iana.org``)
    work; scheme-less URLs are fine. SURT drops ``www.``: ``url=iana.org&matchType=host``
    matches ``http://www.iana.org/...``. ``matchType=bogus`` -> 400
    ``application/json`` ``{"message": "Invalid match_type: bogus"}``; missing/empty
    ``url`` -> 400 ``{"message": "The \\"url\\" param is required"}``.
  * ``from``/``to`` accept partial timestamps and are inclusive, padded (``to=2014`` keeps
    all of 2014, ``from=20140103030330`` drops the 030321 capture).
  * empty result -> **200** with an empty body (not 404), same Content-Type. Also for a
    collection that does not exist (``/nope/cdx`` -> 200 empty); replay there -> 404.
  * ``showNumPages=true``: plain (non-ZipNum) collections IGNORE it and return the
    normal lines. ZipNum: one JSON line ``{"pages": N, "pageSize": 10, "blocks": B}`` (even
    without output=json; Content-Type text/x-cdxj or text/x-ndjson); no match ->
    ``{"pages": 0, "pageSize": 10, "blocks": 0}``; ``pageSize=1`` -> one block per page;
    ``page=K`` out of range -> 400 ``{"message": "Page 99 invalid: First Page is 0, Last
    Page is 3"}``. Plain collections ignore ``page``.

Raw replay ``GET {c}/{TS}id_/{url}``
  * 200 with the archived status/headers: original headers that pywb keeps
    (Content-Type, Content-Encoding, Location, Accept-Ranges, X-Cache, ...) plus the rest
    as ``X-Archive-Orig-*`` (``X-Archive-Orig-Date``, ``-Server``, ``-Content-Length`` ...),
    plus ``Memento-Datetime: Fri, 03 Jan 2014 03:03:21 GMT``, ``Content-Location:
    {c}/{capture-TS}id_/{url as recorded}`` and ``Link: <orig>; rel="original", <{c}/{url}>;
    rel="timegate", <{c}/timemap/link/{url}>; rel="timemap"; type="application/link-format",
    <{c}/{TS}mp_/{url}>; rel="memento"; datetime="..."; collection="COLL"``.
    No ``Vary`` unless the request had no timestamp (``{c}/id_/{url}`` -> latest capture, or
    the one nearest an ``Accept-Datetime`` header; 200, ``Vary: accept-datetime``). HEAD ->
    200 with the full Content-Length. ``{c}/timemap/link/{url}`` -> application/link-format.
    ``Link``/``Location``/``Content-Location`` are built from the request's Host header (so
    through FaultServer they point at the FaultServer).
  * inexact timestamp (``2014``, ``20140103030330``, even ``20200101000000``) -> **200 directly,
    no redirect**, serving the closest capture; ``Memento-Datetime`` and the 14-digit TS in
    ``Content-Location`` tell which capture was served.
  * URL normalisation redirect: requesting ``http://example.com?example=1`` (no slash
    before ``?``) -> **307** ``Location: {c}/{TS}id_/http://example.com/?example=1``,
    ``Content-Length: 0``, ``Link: <http://example.com/?example=1>; rel="original"`` (no
    Memento-Datetime). Same-host redirect; the slash form answers 200.
  * archived redirects are replayed as-is: 302 with the ORIGINAL ``Location:
    /domains/reserved`` (not rewritten!) plus Memento headers -> a client that follows
    redirects lands on ``http://127.0.0.1:PORT/domains/reserved`` (pywb 404). Use
    ``allow_redirects=False`` for id_ fetches.
  * Content-Encoding: with ``Accept-Encoding`` containing ``gzip`` the stored gzip payload
    is sent verbatim (``Content-Encoding: gzip``, ``Content-Length`` = stored bytes). With no
    Accept-Encoding, ``identity`` or ``br``, pywb DECODES it: no Content-Encoding, no
    Content-Length, ``Transfer-Encoding: chunked``. The CDX digest is the SHA-1 of the
    payload as stored, i.e. of the gzip bytes: fetch with ``Accept-Encoding: gzip`` and read
    the raw stream (requests: ``r.raw.read(decode_content=False)``); requests' default
    ``Accept-Encoding: gzip, deflate, br`` + ``r.content`` gives decoded bytes (wrong hash).
    HTTP chunked payloads (iana.org) are de-chunked; sha1(body) still equals the CDX digest.
  * revisits replay as 200 with the revisit record's own headers (``X-Archive-Orig-Date`` of
    the revisit) and ``Memento-Datetime`` = revisit time, body = original's payload (same
    digest). If the original is not in the collection -> **503** text/html "Pywb Error".
    URL-agnostic revisits (different WARC-Refers-To-Target-URI) resolve when both files
    are in the collection.
  * unknown URL -> 404 text/html. ``Range: bytes=0-9`` -> 206 with ``Content-Range: bytes
    0-9/1270``. ``-b 127.0.0.1`` binds only loopback; startup ~0.7 s.

wb-manager 2.10.0: ``add`` exits 0 even on failure. Files not matching ``*.warc|*.arc[.gz]``
(e.g. ``*.warc.gz.bad``) log ``[WARNING]: Invalid archives weren't added`` and are not copied;
broken gzip (``example-bad-non-chunked.warc.gz``) logs ``[ERROR]: Error while indexing file``
+ ArchiveLoadFailed, is copied but not indexed. A basename already present is renamed
``NAME-1.warc.gz`` (CDX ``filename`` shows the new name; see ``PywbServer.added``).
Collections added while pywb runs are picked up without restart.
"""

from __future__ import annotations

import atexit
import contextlib
import http.client
import http.server
import json
import os
import re
import shutil
import signal
import socket
import struct
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections import deque
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from email.message import Message
from pathlib import Path
from types import TracebackType
from typing import Any, ClassVar, Self

REPO_ROOT = Path(__file__).resolve().parents[1]
LOCALHOST = "127.0.0.1"

# --------------------------------------------------------------------------------------
# subprocess plumbing
# --------------------------------------------------------------------------------------

_LIVE_PROCS: set[subprocess.Popen[bytes]] = set()
_LIVE_LOCK = threading.Lock()
_SETPRIV = shutil.which("setpriv") if sys.platform == "linux" else None


def free_port() -> int:
    """A TCP port that was free on 127.0.0.1 a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((LOCALHOST, 0))
        return int(s.getsockname()[1])


def _child_env(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in {"PYTHONPATH", "PYTHONHOME"}}
    env["PYTHONUNBUFFERED"] = "1"
    env.update(extra or {})
    return env


def _spawn(cmd: Sequence[str | Path], *, cwd: Path, log_path: Path,
           env: Mapping[str, str] | None = None) -> subprocess.Popen[bytes]:
    argv = [str(c) for c in cmd]
    # `setpriv --pdeathsig KILL` (util-linux) makes the server die with the test process
    # even on SIGKILL. PDEATHSIG fires when the *thread* that forked exits, so only
    # use it from the main thread (pytest fixtures run there).
    if _SETPRIV and threading.current_thread() is threading.main_thread():
        argv = [_SETPRIV, "--pdeathsig", "KILL", "--", *argv]
    with open(log_path, "ab") as log:
        proc = subprocess.Popen(
            argv, cwd=cwd, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
            env=_child_env(env), start_new_session=True,
        )
    with _LIVE_LOCK:
        _LIVE_PROCS.add(proc)
    return proc


def _stop_proc(proc: subprocess.Popen[bytes], timeout: float = 5.0) -> None:
    """SIGTERM the process group, then SIGKILL it; always reaps the child."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        if proc.poll() is not None:
            break
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, sig)
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            continue
    # the group may still hold grandchildren even if the leader is gone
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGKILL)
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.wait(timeout=timeout)
    with _LIVE_LOCK:
        _LIVE_PROCS.discard(proc)


@atexit.register
def _kill_leftovers() -> None:
    for proc in list(_LIVE_PROCS):
        _stop_proc(proc, timeout=2.0)


_NO_PROXY_OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def _log_tail(path: Path, n: int = 40) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-n:])
    except OSError:
        return "<no log>"


def _wait_http(url: str, proc: subprocess.Popen[bytes], log_path: Path, timeout: float) -> None:
    """Poll ``url`` until it answers with any HTTP status; raise if ``proc`` dies first."""
    deadline = time.monotonic() + timeout
    while True:
        if proc.poll() is not None:
            raise _EarlyExit(f"{proc.args!r} exited with {proc.returncode}:\n{_log_tail(log_path)}")
        try:
            with _NO_PROXY_OPENER.open(url, timeout=1.0):
                return
        except urllib.error.HTTPError:
            return  # it answered
        except (OSError, http.client.HTTPException):
            pass
        if time.monotonic() > deadline:
            raise TimeoutError(f"{url} not answering after {timeout}s:\n{_log_tail(log_path)}")
        time.sleep(0.05)


class _EarlyExit(RuntimeError):
    pass


def _start_with_retries(make_cmd: Any, *, cwd: Path, log_path: Path, probe_path: str,
                        timeout: float, env: Mapping[str, str] | None = None,
                        ) -> tuple[subprocess.Popen[bytes], int]:
    """Start ``make_cmd(port)``; retry on a fresh port if the process dies (port race)."""
    last: Exception | None = None
    for _ in range(3):
        port = free_port()
        proc = _spawn(make_cmd(port), cwd=cwd, log_path=log_path, env=env)
        try:
            _wait_http(f"http://{LOCALHOST}:{port}{probe_path}", proc, log_path, timeout)
            return proc, port
        except _EarlyExit as exc:
            _stop_proc(proc)
            last = exc
        except BaseException:
            _stop_proc(proc)
            raise
    raise RuntimeError(f"server failed to start 3 times: {last}")


class _ProcServer:
    """Context-manager base for subprocess servers."""

    proc: subprocess.Popen[bytes] | None = None

    def start(self) -> Self:
        raise NotImplementedError

    def stop(self) -> None:
        if self.proc is not None:
            _stop_proc(self.proc)
            self.proc = None

    def __enter__(self) -> Self:
        try:
            return self.start()
        except BaseException:
            self.stop()
            raise

    def __exit__(self, et: type[BaseException] | None, ev: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()


# --------------------------------------------------------------------------------------
# pywb
# --------------------------------------------------------------------------------------

_COLL_RX = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]*$")


def default_pywb_bin() -> Path:
    env = os.environ.get("ARCHIVEKEEPER_PYWB_BIN")
    return Path(env) if env else REPO_ROOT / ".venv-pywb" / "bin"


@dataclass(frozen=True)
class ZipNumCollection:
    """A ZipNum cluster: ``idx`` is the secondary index (``.idx``); the ``.loc`` with the same
    stem and the shards it lists are copied from the same directory. ``warcs`` are the
    archive files the cluster's lines refer to (by basename)."""

    idx: Path
    warcs: tuple[Path, ...]


class PywbServer(_ProcServer):
    """pywb ``wayback`` over collections built in ``root`` with ``wb-manager``.

    ``collections`` maps collection name -> archive files (each ``wb-manager add``-ed on its
    own; failures land in ``failed_files`` {source path: reason} instead of raising).
    ``added`` maps name -> {source path: basename inside ``archive_dir(name)``}.
    ``zipnum`` maps name -> ZipNumCollection (served via config.yaml, supports showNumPages).
    """

    def __init__(self, root: Path, collections: Mapping[str, Sequence[Path]], *,
                 zipnum: Mapping[str, ZipNumCollection] | None = None,
                 pywb_bin: Path | None = None, startup_timeout: float = 30.0) -> None:
        self.root = Path(root)
        self.collections = {k: [Path(p) for p in v] for k, v in collections.items()}
        self.zipnum = dict(zipnum or {})
        self.bin_dir = Path(pywb_bin) if pywb_bin is not None else default_pywb_bin()
        self.startup_timeout = startup_timeout
        self.failed_files: dict[Path, str] = {}
        self.added: dict[str, dict[Path, str]] = {}
        self.port = 0
        self.log_path = self.root / "wayback.log"
        self._built = False
        for name in [*self.collections, *self.zipnum]:
            if not _COLL_RX.match(name):
                raise ValueError(f"bad collection name {name!r}")

    # URLs -------------------------------------------------------------------------------
    @property
    def base_url(self) -> str:
        return f"http://{LOCALHOST}:{self.port}"

    def collection_url(self, name: str) -> str:
        return f"{self.base_url}/{name}"

    def cdx_url(self, name: str) -> str:
        return f"{self.collection_url(name)}/cdx"

    def replay_url(self, name: str, timestamp: str, url: str, modifier: str = "id_") -> str:
        return f"{self.collection_url(name)}/{timestamp}{modifier}/{url}"

    def archive_dir(self, name: str) -> Path:
        """Directory holding the collection's WARCs (CDX ``filename`` is relative to it)."""
        if name in self.zipnum:
            return self.root / "zipnum" / name / "archive"
        return self.root / "collections" / name / "archive"

    # lifecycle --------------------------------------------------------------------------
    def _wb_manager(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([str(self.bin_dir / "wb-manager"), *args], cwd=self.root,
                              capture_output=True, text=True, timeout=120, check=False, env=_child_env(),
                              stdin=subprocess.DEVNULL)

    def _build(self) -> None:
        if not (self.bin_dir / "wayback").exists():
            raise FileNotFoundError(f"pywb not found in {self.bin_dir} "
                                    "(pass pywb_bin= or set ARCHIVEKEEPER_PYWB_BIN)")
        self.root.mkdir(parents=True, exist_ok=True)
        for name, files in self.collections.items():
            res = self._wb_manager("init", name)
            if res.returncode != 0:
                raise RuntimeError(f"wb-manager init {name} failed:\n{res.stdout}{res.stderr}")
            self.added[name] = {}
            for src in files:
                res = self._wb_manager("add", name, str(src))
                out = res.stdout + res.stderr
                copied = re.search(r"Copied .+ as (.+?)\s*$", out, re.MULTILINE)
                bad = res.returncode != 0 or "Error while indexing" in out or "weren't added" in out
                if bad or copied is None:
                    self.failed_files[src] = _summarize_failure(res.returncode, out)
                else:
                    self.added[name][src] = copied.group(1)
        config: dict[str, Any] = {"enable_memento": True}
        if self.zipnum:
            config["collections"] = {n: self._build_zipnum(n, z) for n, z in self.zipnum.items()}
        # JSON is valid YAML, so no YAML library is needed.
        (self.root / "config.yaml").write_text(json.dumps(config, indent=2) + "\n")

    def _build_zipnum(self, name: str, spec: ZipNumCollection) -> dict[str, str]:
        zdir = self.root / "zipnum" / name
        (zdir / "archive").mkdir(parents=True)
        idx, loc = Path(spec.idx), Path(spec.idx).with_suffix(".loc")
        shutil.copy2(idx, zdir / idx.name)
        shutil.copy2(loc, zdir / loc.name)
        for line in loc.read_text().splitlines():
            for shard in line.split("\t")[1:]:
                if "://" not in shard and (loc.parent / shard).is_file():
                    shutil.copy2(loc.parent / shard, zdir / shard)
        for warc in spec.warcs:
            shutil.copy2(warc, zdir / "archive" / Path(warc).name)
        return {"index_paths": str(zdir / idx.name), "archive_paths": str(zdir / "archive") + "/"}

    def start(self) -> Self:
        if self.proc is not None:
            return self
        if not self._built:  # a stopped server can be restarted on a new port
            self._build()
            self._built = True
        self.proc, self.port = _start_with_retries(
            lambda port: [self.bin_dir / "wayback", "-p", str(port), "-b", LOCALHOST],
            cwd=self.root, log_path=self.log_path, probe_path="/", timeout=self.startup_timeout)
        return self


def _summarize_failure(rc: int, out: str) -> str:
    lines = [ln.strip() for ln in out.splitlines() if ln.strip()]
    keep = [ln for ln in lines
            if "[ERROR]" in ln or "[WARNING]" in ln or re.match(r"^[\w.]+(Error|Exception|Failed):", ln)]
    return f"rc={rc}: " + " | ".join(keep or lines[-3:])


# --------------------------------------------------------------------------------------
# moto S3
# --------------------------------------------------------------------------------------

class MotoS3Server(_ProcServer):
    """``moto_server`` on 127.0.0.1; ``client()`` gives a boto3 S3 client with fake creds."""

    REGION = "us-east-1"
    CREDENTIALS: ClassVar[dict[str, str]] = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
                   "AWS_SESSION_TOKEN": "testing", "AWS_SECURITY_TOKEN": "testing"}

    def __init__(self, *, moto_bin: Path | None = None, workdir: Path | None = None,
                 startup_timeout: float = 30.0) -> None:
        self.moto_bin = moto_bin or Path(sys.executable).parent / "moto_server"
        self.workdir = workdir
        self.startup_timeout = startup_timeout
        self.port = 0
        self._tmp: str | None = None

    @property
    def endpoint_url(self) -> str:
        return f"http://{LOCALHOST}:{self.port}"

    @property
    def env(self) -> dict[str, str]:
        """Environment for code under test (botocore >= 1.31 honours AWS_ENDPOINT_URL*)."""
        return {**self.CREDENTIALS, "AWS_DEFAULT_REGION": self.REGION,
                "AWS_REGION": self.REGION, "AWS_ENDPOINT_URL": self.endpoint_url,
                "AWS_ENDPOINT_URL_S3": self.endpoint_url}

    def client(self) -> Any:
        import boto3
        from botocore.config import Config

        return boto3.client(
            "s3", endpoint_url=self.endpoint_url, region_name=self.REGION,
            aws_access_key_id="testing", aws_secret_access_key="testing",
            aws_session_token="testing",
            config=Config(s3={"addressing_style": "path"}, retries={"max_attempts": 2}))

    def reset(self) -> None:
        """Drop all buckets/objects (moto's reset API)."""
        req = urllib.request.Request(f"{self.endpoint_url}/moto-api/reset", method="POST", data=b"")
        with _NO_PROXY_OPENER.open(req, timeout=10):
            pass

    def start(self) -> Self:
        if self.proc is not None:
            return self
        if self.workdir is None:
            import tempfile

            self._tmp = tempfile.mkdtemp(prefix="moto-")
            self.workdir = Path(self._tmp)
        self.proc, self.port = _start_with_retries(
            lambda port: [self.moto_bin, "-H", LOCALHOST, "-p", str(port)],
            cwd=self.workdir, log_path=self.workdir / "moto_server.log", probe_path="/moto-api/",
            timeout=self.startup_timeout, env=self.CREDENTIALS)
        return self

    def stop(self) -> None:
        super().stop()
        if self._tmp is not None:
            shutil.rmtree(self._tmp, ignore_errors=True)
            self._tmp = None
            self.workdir = None


# --------------------------------------------------------------------------------------
# FaultServer
# --------------------------------------------------------------------------------------

Headers = tuple[tuple[str, str], ...]
_HOP_BY_HOP = {"connection", "keep-alive", "proxy-connection", "transfer-encoding", "te",
               "trailer", "upgrade", "proxy-authorization", "proxy-authenticate"}


def _hdrs(h: Mapping[str, str] | Iterable[tuple[str, str]] | None) -> Headers:
    if h is None:
        return ()
    items = h.items() if isinstance(h, Mapping) else h
    return tuple((str(k), str(v)) for k, v in items)


@dataclass(frozen=True)
class Fault:
    """One scripted response. Build with the classmethods; fields compose.

    ``code=None`` means *pass through*: the response the server would have given anyway
    (static file / upstream proxy / 404) is used, with ``headers`` overriding and ``body``
    (if not None) replacing. Transport effects, in order: ``delay`` seconds of silence;
    ``reset_now`` (RST, no bytes); send headers (``Content-Length`` = ``content_length`` or
    the full body length, unless ``headers`` sets one); send body, pausing ``stall_for`` s
    after ``stall_after`` bytes; stop after ``cut_after`` bytes and RST (``cut_reset``) or
    close cleanly (FIN).
    """

    code: int | None = None
    headers: Headers = ()
    body: bytes | None = None
    delay: float = 0.0
    reset_now: bool = False
    cut_after: int | None = None
    cut_reset: bool = False
    stall_after: int | None = None
    stall_for: float = 0.0
    content_length: int | None = None

    @classmethod
    def passthrough(cls) -> Fault:
        """Consume one slot of the queue and answer normally."""
        return cls()

    @classmethod
    def status(cls, code: int, body: bytes = b"", *, retry_after: float | str | None = None,
               headers: Mapping[str, str] | None = None) -> Fault:
        h = dict(headers or {})
        if retry_after is not None:
            ra = retry_after if isinstance(retry_after, str) else f"{retry_after:g}"
            h.setdefault("Retry-After", ra)
        h.setdefault("Content-Type", "text/plain")
        return cls(code=code, headers=_hdrs(h), body=body)

    @classmethod
    def respond(cls, body: bytes, *, code: int = 200,
                headers: Mapping[str, str] | Iterable[tuple[str, str]] | None = None) -> Fault:
        """Custom body and headers (wrong digest, malformed CDX, page ending mid-line ...)."""
        return cls(code=code, headers=_hdrs(headers), body=body)

    @classmethod
    def redirect(cls, location: str, *, code: int = 302) -> Fault:
        return cls(code=code, headers=(("Location", location),), body=b"")

    @classmethod
    def reset(cls) -> Fault:
        """TCP RST right after the request is read; the client gets no byte."""
        return cls(reset_now=True)

    @classmethod
    def reset_mid_body(cls, body: bytes | None = None, *, after: int, code: int = 200,
                       headers: Mapping[str, str] | None = None) -> Fault:
        """Full headers (true Content-Length), ``after`` body bytes, then RST.
        ``body=None``: cut the pass-through response instead."""
        return cls(code=None if body is None else code, headers=_hdrs(headers), body=body,
                   cut_after=after, cut_reset=True)

    @classmethod
    def short_body(cls, body: bytes | None = None, *, after: int, code: int = 200,
                   headers: Mapping[str, str] | None = None) -> Fault:
        """Content-Length of the full body, only ``after`` bytes sent, then a clean close."""
        return cls(code=None if body is None else code, headers=_hdrs(headers), body=body,
                   cut_after=after, cut_reset=False)

    @classmethod
    def stall(cls, seconds: float, *, after: int | None = None, body: bytes | None = None,
              code: int = 200, headers: Mapping[str, str] | None = None) -> Fault:
        """``after=None``: silence for ``seconds`` before anything is sent; ``after=N``: send
        headers + N body bytes, then pause. ``body=None`` stalls the pass-through response."""
        common: dict[str, Any] = {"code": None if body is None else code,
                                  "headers": _hdrs(headers), "body": body}
        if after is None:
            return cls(delay=seconds, **common)
        return cls(stall_after=after, stall_for=seconds, **common)


@dataclass
class RecordedRequest:
    method: str
    path: str  # with query string, as sent
    headers: Message  # case-insensitive: req.headers["accept-encoding"]
    body: bytes
    time: float  # time.monotonic() when the request line was read
    fault: Fault | None  # the scripted fault applied (None: not scripted)

    @property
    def path_only(self) -> str:
        return urllib.parse.urlsplit(self.path).path

    @property
    def query(self) -> dict[str, list[str]]:
        return urllib.parse.parse_qs(urllib.parse.urlsplit(self.path).query, keep_blank_values=True)


@dataclass
class _Resp:
    code: int
    headers: list[tuple[str, str]]
    body: bytes
    head_length: int | None = None  # Content-Length to announce for HEAD


class _Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "FaultServer/1"
    timeout = 15  # idle keep-alive connections die eventually
    disable_nagle_algorithm = True
    server: _HTTPServer

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def setup(self) -> None:
        super().setup()
        self.server.conns.add(self.connection)

    def finish(self) -> None:
        self.server.conns.discard(self.connection)
        with contextlib.suppress(OSError):
            super().finish()

    def handle(self) -> None:
        with contextlib.suppress(ConnectionError, TimeoutError, OSError):
            super().handle()

    def do_GET(self) -> None:
        self._serve()

    do_HEAD = do_POST = do_PUT = do_DELETE = do_OPTIONS = do_PATCH = do_GET

    # ------------------------------------------------------------------------------
    def _serve(self) -> None:
        fs = self.server.owner
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length > 0 else b""
        fault = fs._next_fault(self.path)
        fs._record(RecordedRequest(self.command, self.path, self.headers, body,
                                   time.monotonic(), fault))
        f = fault or Fault()
        if (f.delay and not fs._sleep(f.delay)) or f.reset_now:
            self._rst()
            return
        if f.code is None:
            resp = self._fallthrough(body)
            hdrs = _override(resp.headers, f.headers)
            out = resp.body if f.body is None else f.body
            resp = _Resp(resp.code, hdrs, out, resp.head_length if f.body is None else None)
        else:
            resp = _Resp(f.code, list(f.headers), f.body or b"")
        self._send(resp, f)

    def _send(self, resp: _Resp, f: Fault) -> None:
        closing = f.cut_after is not None
        headers = [(k, v) for k, v in resp.headers if k.lower() not in _HOP_BY_HOP]
        if not any(k.lower() == "content-length" for k, _ in headers):
            n = f.content_length if f.content_length is not None else (
                resp.head_length if self.command == "HEAD" and resp.head_length is not None
                else len(resp.body))
            headers.append(("Content-Length", str(n)))
        if closing:
            headers.append(("Connection", "close"))
            self.close_connection = True
        self.send_response_only(resp.code)
        names = {k.lower() for k, _ in headers}
        if "date" not in names:
            self.send_header("Date", self.date_time_string())
        if "server" not in names:
            self.send_header("Server", self.version_string())
        for k, v in headers:
            self.send_header(k, v)
        self.end_headers()
        if self.command == "HEAD":
            return
        data = resp.body if f.cut_after is None else resp.body[: f.cut_after]
        if f.stall_after is not None:
            self.wfile.write(data[: f.stall_after])
            if not self.server.owner._sleep(f.stall_for):
                self._rst()
                return
            data = data[f.stall_after:]
        self.wfile.write(data)
        if f.cut_after is not None and f.cut_reset:
            # let the client read what was sent before the RST arrives
            self.server.owner._sleep(0.05)
            self._rst()

    def _rst(self) -> None:
        """Abort the connection with a TCP RST (SO_LINGER 0, close without shutdown)."""
        sock = self.connection
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        self.server.conns.discard(sock)
        with contextlib.suppress(OSError):
            self.rfile.close()
        with contextlib.suppress(OSError):
            sock.close()
        self.close_connection = True

    def _fallthrough(self, body: bytes) -> _Resp:
        fs = self.server.owner
        if fs.static_root is not None:
            resp = self._static(fs.static_root)
            if resp is not None:
                return resp
        if fs.upstream is not None:
            return self._proxy(fs.upstream, body)
        msg = b"FaultServer: nothing scripted, no such file, no upstream\n"
        return _Resp(404, [("Content-Type", "text/plain")], msg)

    def _static(self, root: Path) -> _Resp | None:
        rel = urllib.parse.unquote(urllib.parse.urlsplit(self.path).path).lstrip("/")
        root = root.resolve()
        target = (root / rel).resolve()
        if not target.is_relative_to(root) or not target.is_file():
            return None
        data = target.read_bytes()
        size = len(data)
        mtime = self.date_time_string(int(target.stat().st_mtime))
        base = [("Accept-Ranges", "bytes"), ("Content-Type", "application/octet-stream"),
                ("Last-Modified", mtime)]
        rng = _parse_range(self.headers.get("Range"), size)
        if rng is None:
            return _Resp(200, base, data)
        if isinstance(rng, str):  # unsatisfiable
            return _Resp(416, [*base, ("Content-Range", f"bytes */{size}")], b"")
        start, end = rng
        return _Resp(206, [*base, ("Content-Range", f"bytes {start}-{end}/{size}")],
                     data[start: end + 1])

    def _proxy(self, upstream: str, body: bytes) -> _Resp:
        u = urllib.parse.urlsplit(upstream)
        conn = http.client.HTTPConnection(u.hostname or LOCALHOST, u.port or 80,
                                          timeout=self.server.owner.upstream_timeout)
        try:
            conn.putrequest(self.command, u.path.rstrip("/") + self.path,
                            skip_host=True, skip_accept_encoding=True)
            fwd = [(k, v) for k, v in self.headers.items() if k.lower() not in _HOP_BY_HOP]
            if not any(k.lower() == "host" for k, _ in fwd):
                fwd.append(("Host", u.netloc))
            for k, v in fwd:
                if k.lower() == "content-length":
                    continue
                conn.putheader(k, v)
            if body:
                conn.putheader("Content-Length", str(len(body)))
            conn.endheaders(body or None)
            r = conn.getresponse()
            data = r.read()
            headers = r.getheaders()
        except (OSError, http.client.HTTPException) as exc:
            return _Resp(502, [("Content-Type", "text/plain")], f"upstream error: {exc}\n".encode())
        finally:
            conn.close()
        head_len = next((int(v) for k, v in headers if k.lower() == "content-length"), None)
        kept = [(k, v) for k, v in headers if k.lower() not in _HOP_BY_HOP
                and k.lower() != "content-length"]
        return _Resp(r.status, kept, data, head_len if self.command == "HEAD" else None)


def _override(base: list[tuple[str, str]], extra: Headers) -> list[tuple[str, str]]:
    names = {k.lower() for k, _ in extra}
    return [(k, v) for k, v in base if k.lower() not in names] + list(extra)


def _parse_range(value: str | None, size: int) -> tuple[int, int] | str | None:
    """Single ``bytes=`` range -> (start, end) inclusive; "unsatisfiable"; or None (ignore:
    absent, malformed or multi-range -> full 200 response, as RFC 9110 allows)."""
    if not value:
        return None
    m = re.fullmatch(r"\s*bytes\s*=\s*(\d*)\s*-\s*(\d*)\s*", value)
    if not m or (m.group(1) == "" and m.group(2) == ""):
        return None
    first, last = m.group(1), m.group(2)
    if first == "":  # suffix range: last N bytes
        n = int(last)
        if n == 0 or size == 0:
            return "unsatisfiable"
        return max(0, size - n), size - 1
    start = int(first)
    end = size - 1 if last == "" else min(int(last), size - 1)
    if last != "" and int(last) < start:
        return None  # invalid -> ignore
    if start >= size:
        return "unsatisfiable"
    return start, end


class _HTTPServer(http.server.ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False
    allow_reuse_address = True

    def __init__(self, owner: FaultServer) -> None:
        self.owner = owner
        self.conns: set[socket.socket] = set()
        super().__init__((LOCALHOST, 0), _Handler)

    def handle_error(self, request: Any, client_address: Any) -> None:
        if not isinstance(sys.exc_info()[1], OSError):
            super().handle_error(request, client_address)


class FaultServer:
    """Threaded HTTP/1.1 server on 127.0.0.1 answering from per-path fault queues.

    ``script(key, faults)`` appends to the queue for ``key``: an exact path (matched with or
    without the query string) or a prefix ending in ``*`` (matched against path+query).
    Each request pops one fault from the longest matching key with a non-empty queue;
    otherwise it falls through to: a file under ``static_root`` (Range supported), else a
    reverse proxy to ``upstream`` (Host header forwarded, so pywb builds its Link/Location
    URLs with this server's address; bodies relayed undecoded), else 404.
    ``requests`` records every request received, in order.
    """

    def __init__(self, upstream: str | None = None, *, static_root: Path | None = None,
                 upstream_timeout: float = 30.0) -> None:
        self.upstream = upstream.rstrip("/") if upstream else None
        self.static_root = Path(static_root) if static_root is not None else None
        self.upstream_timeout = upstream_timeout
        self.requests: list[RecordedRequest] = []
        self._scripts: dict[str, deque[Fault]] = {}
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._httpd: _HTTPServer | None = None
        self._thread: threading.Thread | None = None

    # scripting ------------------------------------------------------------------------
    def script(self, key: str, faults: Fault | Iterable[Fault]) -> None:
        items = [faults] if isinstance(faults, Fault) else list(faults)
        with self._lock:
            self._scripts.setdefault(key, deque()).extend(items)

    def pending(self, key: str) -> int:
        with self._lock:
            return len(self._scripts.get(key, ()))

    def clear(self) -> None:
        """Forget scripts and recorded requests."""
        with self._lock:
            self._scripts.clear()
            self.requests.clear()

    def requests_to(self, prefix: str) -> list[RecordedRequest]:
        with self._lock:
            return [r for r in self.requests if r.path.startswith(prefix)]

    def _next_fault(self, path: str) -> Fault | None:
        bare = urllib.parse.urlsplit(path).path
        with self._lock:
            keys = [k for k, q in self._scripts.items() if q and (
                (k.endswith("*") and path.startswith(k[:-1])) or k in (path, bare))]
            if not keys:
                return None
            return self._scripts[max(keys, key=len)].popleft()

    def _record(self, req: RecordedRequest) -> None:
        with self._lock:
            self.requests.append(req)

    def _sleep(self, seconds: float) -> bool:
        """Sleep, interruptible by stop(); False if interrupted."""
        return not self._stopping.wait(seconds)

    # lifecycle ------------------------------------------------------------------------
    @property
    def port(self) -> int:
        assert self._httpd is not None, "server not started"
        return int(self._httpd.server_address[1])

    @property
    def base_url(self) -> str:
        return f"http://{LOCALHOST}:{self.port}"

    def url(self, path: str = "/") -> str:
        return self.base_url + (path if path.startswith("/") else "/" + path)

    def start(self) -> Self:
        if self._httpd is None:
            self._stopping.clear()
            self._httpd = _HTTPServer(self)
            self._thread = threading.Thread(target=self._httpd.serve_forever,
                                            kwargs={"poll_interval": 0.05},
                                            name=f"FaultServer:{self.port}", daemon=True)
            self._thread.start()
        return self

    def stop(self) -> None:
        httpd, self._httpd = self._httpd, None
        if httpd is None:
            return
        self._stopping.set()
        httpd.shutdown()
        httpd.server_close()
        for conn in list(httpd.conns):
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)
        if self._thread is not None:
            self._thread.join(timeout=5)

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, et: type[BaseException] | None, ev: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()


class RangeFileServer(FaultServer):
    """Static files under ``root`` with single-range ``Range`` support (206 +
    ``Content-Range``; 416 ``bytes */SIZE`` past EOF; multi/malformed ranges -> full 200),
    like data.commoncrawl.org. Faults can still be scripted on top."""

    def __init__(self, root: Path) -> None:
        super().__init__(None, static_root=root)
        self.root = Path(root)

    def url_for(self, path: Path) -> str:
        rel = Path(path).resolve().relative_to(self.root.resolve())
        return self.url("/" + urllib.parse.quote(rel.as_posix()))


__all__ = [
    "REPO_ROOT", "Fault", "FaultServer", "MotoS3Server", "PywbServer", "RangeFileServer",
    "RecordedRequest", "ZipNumCollection", "default_pywb_bin", "free_port",
]
