"""HTTP for talking to archives politely: one session per worker, rate limits, retries, raw bytes.

* One ``requests.Session`` per worker thread (keep-alive), sending a User-Agent that names the
  tool, its version and the contact from the settings (:func:`user_agent`).
* Per source one :class:`Pacer`, shared by every worker: it spaces CDX calls
  (``cdx_per_minute``) and fetches (``fetches_per_second``) and pauses the *whole source* after
  ``pause_after`` rate signals in a row — a 429, or a refused or reset connection, which is how
  the Internet Archive often shows a block.
* 429, 5xx, timeouts, resets and truncated bodies are retried with exponential backoff and jitter,
  honouring ``Retry-After``, up to ``max_retries``; then :class:`RateLimitedError` (429, refused or
  reset), :class:`SourceError` (5xx) or :class:`FetchError` (``reason`` ``timeout``,
  ``truncated-body``) is raised.
* Redirects are followed by hand and only inside the archive's own hosts; a redirect anywhere else
  raises :class:`ForeignRedirectError` and is never requested. With ``memento=True`` a reply that
  carries ``Memento-Datetime`` is the archived answer itself (an archived 302 or 404), never a
  redirect or an error to retry.
* Bodies are read undecoded (``decode_content=False``: requests would silently undo
  Content-Encoding) into a spooled temporary file and hashed (SHA-1) in the same pass.
"""

from __future__ import annotations

import functools
import hashlib
import ipaddress
import random
import tempfile
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from email.utils import parsedate_to_datetime
from typing import IO, Any, TypeVar
from urllib.parse import unquote, urljoin, urlsplit

import requests
import requests.auth
import urllib3

from . import __version__
from .config import SourceSettings
from .digests import format_sha1
from .errors import ArchiveKeeperError, FetchError, ForeignRedirectError, RateLimitedError, SourceError

READ_CHUNK = 1 << 16
SPOOL_MAX = 1 << 20  # bodies above this go to a temporary file, so memory stays flat
MAX_REDIRECTS = 5
MAX_RETRY_AFTER = 3600.0
MAX_SOURCE_PAUSE = 1800.0
DEFAULT_ACCEPT_ENCODING = "gzip"  # ask for stored gzip bodies as stored (pywb decodes them otherwise)

T = TypeVar("T")
Sleep = Callable[[float], None]
Clock = Callable[[], float]


def user_agent(contact: str) -> str:
    """``archivekeeper/VERSION (+contact)``: archives ask to be told who is calling."""
    if contact.strip():
        return f"archivekeeper/{__version__} (+{contact.strip()})"
    return f"archivekeeper/{__version__} (no contact configured: archivekeeper init --contact EMAIL)"


def parse_retry_after(value: str | None, *, now: float | None = None) -> float | None:
    """Seconds to wait from a ``Retry-After`` header (seconds or an HTTP date), capped."""
    if not value:
        return None
    text = value.strip()
    try:
        seconds = float(text)
    except ValueError:
        try:
            moment = parsedate_to_datetime(text)
        except (TypeError, ValueError):
            return None
        seconds = moment.timestamp() - (time.time() if now is None else now)
    return min(max(seconds, 0.0), MAX_RETRY_AFTER)


class Pacer:
    """The politeness state of one source, shared by all its workers (thread-safe)."""

    def __init__(self, settings: SourceSettings, *, clock: Clock = time.monotonic, sleep: Sleep = time.sleep) -> None:
        self.settings = settings
        self.clock = clock
        self.sleep = sleep
        self._lock = threading.Lock()
        self._interval = {
            "cdx": 60.0 / settings.cdx_per_minute if settings.cdx_per_minute > 0 else 0.0,
            "fetch": 1.0 / settings.fetches_per_second if settings.fetches_per_second > 0 else 0.0,
        }
        self._next = {"cdx": 0.0, "fetch": 0.0}
        self.paused_until = 0.0
        self.strikes = 0
        self.pauses = 0  # whole-source pauses so far
        self.rate_signals = 0  # 429s and refused/reset connections so far

    def acquire(self, kind: str) -> None:
        """Wait for this worker's turn to send a request of ``kind`` (``cdx`` or ``fetch``)."""
        while True:
            with self._lock:
                now = self.clock()
                if now < self.paused_until:
                    delay, go = self.paused_until - now, False
                else:
                    start = max(now, self._next[kind])
                    self._next[kind] = start + self._interval[kind]
                    delay, go = start - now, True
            if delay > 0:
                self.sleep(delay)
            if go:
                return

    def rate_signal(self, retry_after: float | None) -> None:
        """A 429 or a refused/reset connection; after ``pause_after`` in a row, pause the source."""
        with self._lock:
            self.rate_signals += 1
            self.strikes += 1
            if self.strikes >= max(1, self.settings.pause_after):
                pause = max(retry_after or 0.0, self.settings.pause_seconds * 2 ** min(self.pauses, 5))
                self.paused_until = max(self.paused_until, self.clock() + min(pause, MAX_SOURCE_PAUSE))
                self.pauses += 1
                self.strikes = 0

    def success(self) -> None:
        with self._lock:
            self.strikes = 0


@dataclass
class Reply:
    """An archive's answer: status, headers as sent, and the body exactly as received."""

    url: str  # the URL that gave this answer (after redirects inside the archive)
    status: int
    reason: str
    headers: list[tuple[str, str]]
    body: IO[bytes]  # spooled, positioned at 0
    size: int
    sha1: str  # sha1:BASE32 of the body as received
    redirects: list[tuple[int, str]] = field(default_factory=list)  # (status, location) followed

    def header(self, name: str) -> str | None:
        lower = name.lower()
        return next((value for key, value in self.headers if key.lower() == lower), None)

    def read(self) -> bytes:
        self.body.seek(0)
        data = self.body.read()
        self.body.seek(0)
        return data

    def close(self) -> None:
        self.body.close()


class _Retry(Exception):
    """One failed attempt that may succeed later."""

    def __init__(self, reason: str, message: str, *, status: int | None = None, retry_after: float | None = None,
                 rate_signal: bool = False) -> None:
        super().__init__(message)
        self.reason = reason
        self.status = status
        self.retry_after = retry_after
        self.rate_signal = rate_signal


def _final_error(failure: _Retry, url: str, attempts: int) -> ArchiveKeeperError:
    message = f"{url}: {failure} (gave up after {attempts} attempts)"
    if failure.reason in ("rate-limited", "connection-refused", "connection-reset"):
        return RateLimitedError(message, url=url, status=failure.status, retry_after=failure.retry_after)
    if failure.status is not None:
        return SourceError(message, url=url, status=failure.status)
    return FetchError(message, url=url, reason=failure.reason)


def failure_reason(exc: BaseException) -> str:
    """A short, stable reason code for an error (the keys of "failed by reason")."""
    if isinstance(exc, FetchError):
        return exc.reason
    if isinstance(exc, ForeignRedirectError):
        return "foreign-redirect"
    if isinstance(exc, RateLimitedError):
        return "rate-limited" if exc.status == 429 else "connection-refused"
    if isinstance(exc, SourceError):
        return f"http-{exc.status}" if exc.status else "source-error"
    return "error"


def _host_port(url: str) -> tuple[str, int]:
    parts = urlsplit(url)
    default = 443 if parts.scheme == "https" else 80
    return (parts.hostname or "").lower(), parts.port or default


def split_credentials(url: str) -> tuple[str, tuple[str, str] | None]:
    """``https://user:pw@host/x`` → (``https://host/x``, (user, pw)): credentials are used, never recorded."""
    parts = urlsplit(url)
    if parts.username is None and parts.password is None:
        return url, None
    netloc = parts.hostname or ""
    if ":" in netloc:
        netloc = f"[{netloc}]"
    if parts.port is not None:
        netloc += f":{parts.port}"
    clean = parts._replace(netloc=netloc).geturl()
    return clean, (unquote(parts.username or ""), unquote(parts.password or ""))


class _HostAuth(requests.auth.AuthBase):
    """HTTP Basic credentials, sent to one host only (never to a data host or elsewhere)."""

    def __init__(self, credentials: tuple[str, str], host: tuple[str, int]) -> None:
        self.basic = requests.auth.HTTPBasicAuth(*credentials)
        self.host = host

    def __call__(self, request: requests.PreparedRequest) -> requests.PreparedRequest:
        if _host_port(request.url or "") == self.host:
            return self.basic(request)
        return request


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class HttpClient:
    """HTTP for one source: paced, retried, one keep-alive session per worker thread."""

    def __init__(self, settings: SourceSettings, *, contact: str = "", archive_urls: Iterable[str] = (),
                 pacer: Pacer | None = None, sleep: Sleep = time.sleep, clock: Clock = time.monotonic,
                 rng: random.Random | None = None, credentials: tuple[str, str] | None = None) -> None:
        self.settings = settings
        self.user_agent = user_agent(contact)
        self.pacer = pacer or Pacer(settings, clock=clock, sleep=sleep)
        self.sleep = sleep
        self.rng = rng or random.Random()
        self.archive_hosts: set[tuple[str, int]] = set()
        for url in archive_urls:
            self.allow(url)
        self.retries = 0
        self.auth = _HostAuth(credentials, _host_port(settings.base_url)) if credentials else None
        self._local = threading.local()
        self._sessions: list[requests.Session] = []
        self._lock = threading.Lock()

    def allow(self, url: str) -> None:
        """Treat ``url``'s host as part of the archive (redirects there are followed)."""
        if url and "://" in url:
            self.archive_hosts.add(_host_port(url))

    def inside(self, url: str) -> bool:
        host, port = _host_port(url)
        if (host, port) in self.archive_hosts:
            return True
        # http → https upgrade on the same host name
        return port in (80, 443) and any(h == host and p in (80, 443) for h, p in self.archive_hosts)

    def session(self) -> requests.Session:
        """This thread's session (created on first use)."""
        current: requests.Session | None = getattr(self._local, "session", None)
        if current is None:
            current = requests.Session()
            current.headers.update({"User-Agent": self.user_agent, "Accept-Encoding": DEFAULT_ACCEPT_ENCODING})
            current.trust_env = not all(_is_loopback(host) for host, _ in self.archive_hosts or {("", 0)})
            current.auth = self.auth
            adapter = requests.adapters.HTTPAdapter(pool_connections=2, pool_maxsize=2, max_retries=0)
            current.mount("http://", adapter)
            current.mount("https://", adapter)
            self._local.session = current
            with self._lock:
                self._sessions.append(current)
        return current

    def close(self) -> None:
        with self._lock:
            sessions, self._sessions = self._sessions, []
        for item in sessions:
            item.close()

    # -- retrying ------------------------------------------------------------------------------
    def backoff(self, attempt: int, retry_after: float | None) -> float:
        """Seconds before attempt ``attempt + 1``: ``Retry-After`` if given, else exponential + jitter."""
        if retry_after is not None:
            return retry_after
        base = min(self.settings.backoff_max, self.settings.backoff_base * 2 ** max(0, attempt - 1))
        return base * (0.5 + 0.5 * self.rng.random())

    def retrying(self, kind: str, url: str, attempt_once: Callable[[], T]) -> T:
        """Run ``attempt_once`` (which raises :class:`_Retry` on a transient failure) with pacing,
        backoff and rate signals; raise the final error once ``max_retries`` are spent."""
        attempt = 0
        while True:
            self.pacer.acquire(kind)
            try:
                result = attempt_once()
            except _Retry as failure:
                if failure.rate_signal:
                    self.pacer.rate_signal(failure.retry_after)
                attempt += 1
                if attempt > self.settings.max_retries:
                    raise _final_error(failure, url, attempt) from None
                self.retries += 1
                self.sleep(self.backoff(attempt, failure.retry_after))
                continue
            self.pacer.success()
            return result

    # -- requests -----------------------------------------------------------------------------
    def get(self, url: str, *, params: Mapping[str, Any] | None = None, headers: dict[str, str] | None = None,
            kind: str = "fetch", memento: bool = False, follow: bool = True, max_bytes: int | None = None) -> Reply:
        """GET ``url`` (paced and retried), following redirects inside the archive only.

        ``max_bytes``: a body announced or found to be longer is not read (``FetchError`` ``too-large``),
        so a data server that ignores ``Range`` never makes us download a whole file."""
        current = (requests.Request("GET", url, params=params).prepare().url or url) if params else url
        redirects: list[tuple[int, str]] = []
        for _ in range(MAX_REDIRECTS + 1):
            target = current
            reply = self.retrying(kind, target, functools.partial(self._attempt, target, headers, memento, max_bytes))
            location = reply.header("Location")
            archived = memento and reply.header("Memento-Datetime") is not None
            if not (follow and 300 <= reply.status < 400 and location and not archived):
                reply.redirects = redirects
                return reply
            reply.close()
            following = urljoin(target, location)
            if not self.inside(following):
                raise ForeignRedirectError(
                    f"{target}: the archive redirects to {following}, outside the archive host; not followed",
                    url=target, location=following)
            redirects.append((reply.status, following))
            current = following
        raise FetchError(f"{url}: more than {MAX_REDIRECTS} redirects", url=url, reason="too-many-redirects")

    def _attempt(self, url: str, headers: dict[str, str] | None, memento: bool, max_bytes: int | None) -> Reply:
        timeout = (self.settings.connect_timeout, self.settings.read_timeout)
        try:
            resp = self.session().get(url, headers=headers, stream=True, allow_redirects=False, timeout=timeout)
        except requests.Timeout as exc:
            raise _Retry("timeout", f"timed out: {exc}") from None
        except requests.ConnectionError as exc:
            text = str(exc).lower()
            reason = "connection-refused" if "refused" in text else "connection-reset"
            raise _Retry(reason, f"connection failed: {reason}", rate_signal=True) from None
        except requests.RequestException as exc:
            raise SourceError(f"{url}: {exc}", url=url) from None
        status = resp.status_code
        archived = memento and "Memento-Datetime" in resp.headers
        if (status == 429 or status >= 500) and not archived:
            retry_after = parse_retry_after(resp.headers.get("Retry-After"))
            resp.close()
            if status == 429:
                raise _Retry("rate-limited", "rate limited (429)", status=429, retry_after=retry_after,
                             rate_signal=True)
            raise _Retry(f"http-{status}", f"server error {status}", status=status, retry_after=retry_after)
        # pywb replays an archived redirect with its Content-Length but without its body: that is the
        # archive's answer, not a transfer fault (the caller judges the bytes)
        empty_redirect_ok = archived and 300 <= status < 400
        announced = resp.headers.get("Content-Length", "")
        if max_bytes is not None and announced.isdigit() and int(announced) > max_bytes:
            resp.close()
            raise FetchError(f"{url}: the server sends {announced} bytes where at most {max_bytes} were asked for "
                             f"(status {status})", url=url, reason="too-large")
        return self._read(resp, url, empty_redirect_ok=empty_redirect_ok, max_bytes=max_bytes)

    def _read(self, resp: requests.Response, url: str, *, empty_redirect_ok: bool = False,
              max_bytes: int | None = None) -> Reply:
        spool: IO[bytes] = tempfile.SpooledTemporaryFile(max_size=SPOOL_MAX)  # noqa: SIM115
        digest = hashlib.sha1()
        size = 0
        try:
            while True:
                chunk = resp.raw.read(READ_CHUNK, decode_content=False)
                if not chunk:
                    break
                digest.update(chunk)
                spool.write(chunk)
                size += len(chunk)
                if max_bytes is not None and size > max_bytes:
                    spool.close()
                    resp.close()
                    raise FetchError(f"{url}: the body is longer than the {max_bytes} bytes asked for", url=url,
                                     reason="too-large")
        except (urllib3.exceptions.HTTPError, requests.RequestException, OSError) as exc:
            spool.close()
            resp.close()
            text = str(exc).lower()
            if "timed out" in text or isinstance(exc, urllib3.exceptions.ReadTimeoutError):
                raise _Retry("timeout", "read timed out") from None
            if "reset" in text or "refused" in text:
                raise _Retry("connection-reset", "connection reset during the body", rate_signal=True) from None
            raise _Retry("truncated-body", f"body cut short: {exc}") from None
        expected = resp.headers.get("Content-Length")
        chunked = "Transfer-Encoding" in resp.headers
        if (expected is not None and expected.isdigit() and int(expected) != size and not chunked
                and not (empty_redirect_ok and size == 0)):
            spool.close()
            resp.close()
            raise _Retry("truncated-body", f"body cut short: {size} of {expected} bytes")
        resp.close()
        spool.seek(0)
        return Reply(url=url, status=resp.status_code, reason=resp.reason or "", headers=list(resp.headers.items()),
                     body=spool, size=size, sha1=format_sha1(digest.digest()))


def retryable(reason: str, message: str, **kwargs: Any) -> Exception:
    """An exception that :meth:`HttpClient.retrying` retries (for non-HTTP transports like S3)."""
    return _Retry(reason, message, **kwargs)
