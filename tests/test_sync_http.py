"""The polite HTTP client against a real fault-injecting server: retries, pauses, redirects, raw bytes."""

from __future__ import annotations

import gzip
import random
import threading
from dataclasses import replace

import pytest
from conftest import FaultServerFactory
from servers import Fault, FaultServer

from archivekeeper import __version__
from archivekeeper.config import DEFAULT_SOURCES, SourceSettings
from archivekeeper.digests import sha1_base32
from archivekeeper.errors import FetchError, ForeignRedirectError, RateLimitedError, SourceError
from archivekeeper.http import HttpClient, Pacer, failure_reason, parse_retry_after, user_agent

FAST = SourceSettings(base_url="", cdx_per_minute=0, fetches_per_second=0, max_retries=3, backoff_base=0.5,
                      backoff_max=4.0, pause_after=3, pause_seconds=30.0, connect_timeout=2.0, read_timeout=2.0)


class FakeTime:
    """A clock that only moves when someone sleeps; records every sleep."""

    def __init__(self) -> None:
        self.now = 1000.0
        self.sleeps: list[float] = []
        self.lock = threading.Lock()

    def clock(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        with self.lock:
            self.sleeps.append(round(seconds, 3))
            self.now += seconds


def client(server: FaultServer, fake: FakeTime, settings: SourceSettings = FAST, **kwargs: object) -> HttpClient:
    return HttpClient(replace(settings, base_url=server.base_url), archive_urls=[server.base_url], sleep=fake.sleep,
                      clock=fake.clock, rng=random.Random(7), **kwargs)  # type: ignore[arg-type]


def test_user_agent_names_tool_version_and_contact(fault_server: FaultServer) -> None:
    fault_server.script("/x", Fault.respond(b"ok"))
    fake = FakeTime()
    http = client(fault_server, fake, contact="archivist@example.org")
    assert http.get(fault_server.url("/x")).read() == b"ok"
    sent = fault_server.requests[0].headers
    assert sent["User-Agent"] == f"archivekeeper/{__version__} (+archivist@example.org)"
    assert sent["Accept-Encoding"] == "gzip"  # stored gzip bodies as stored
    assert "contact" in user_agent("")  # no contact: the User-Agent says how to set one


def test_429_retry_after_is_honoured(fault_server: FaultServer) -> None:
    fault_server.script("/x", [Fault.status(429, retry_after=7), Fault.status(429, retry_after="3"),
                               Fault.respond(b"ok")])
    fake = FakeTime()
    http = client(fault_server, fake)
    assert http.get(fault_server.url("/x")).read() == b"ok"
    assert fake.sleeps == [7.0, 3.0]
    assert http.pacer.rate_signals == 2 and http.pacer.pauses == 0 and http.retries == 2


def test_5xx_backoff_is_exponential_with_jitter(fault_server: FaultServer) -> None:
    fault_server.script("/x", [Fault.status(503), Fault.status(502), Fault.status(500), Fault.respond(b"ok")])
    fake = FakeTime()
    http = client(fault_server, fake)
    assert http.get(fault_server.url("/x")).read() == b"ok"
    assert len(fake.sleeps) == 3
    for attempt, slept in enumerate(fake.sleeps):
        base = min(FAST.backoff_max, FAST.backoff_base * 2 ** attempt)
        assert base * 0.5 <= slept <= base
    assert http.pacer.rate_signals == 0  # server errors are not rate signals


def test_gives_up_after_max_retries_with_the_reason(fault_server: FaultServer) -> None:
    fault_server.script("/busy", [Fault.status(503)] * 10)
    fault_server.script("/limited", [Fault.status(429)] * 10)
    fake = FakeTime()
    http = client(fault_server, fake, settings=replace(FAST, pause_after=100))
    with pytest.raises(SourceError) as busy:
        http.get(fault_server.url("/busy"))
    assert busy.value.status == 503 and failure_reason(busy.value) == "http-503"
    assert len(fault_server.requests_to("/busy")) == FAST.max_retries + 1
    with pytest.raises(RateLimitedError) as limited:
        http.get(fault_server.url("/limited"))
    assert failure_reason(limited.value) == "rate-limited"


def test_repeated_429s_pause_the_whole_source(fault_server: FaultServer) -> None:
    fault_server.script("/x", [Fault.status(429)] * 3 + [Fault.respond(b"ok")])
    fake = FakeTime()
    http = client(fault_server, fake)
    assert http.get(fault_server.url("/x")).read() == b"ok"
    assert http.pacer.pauses == 1
    # the third 429 paused the source: from then on, the worker's backoff plus its wait for its next
    # turn add up to the pause, not just a backoff
    assert len(fake.sleeps) == 4 and fake.sleeps[2] < FAST.backoff_max
    assert sum(fake.sleeps[2:]) == pytest.approx(FAST.pause_seconds)
    # a pause holds every worker and every kind of request: another acquire during it waits too
    pacer = Pacer(FAST, clock=fake.clock, sleep=fake.sleep)
    for _ in range(3):
        pacer.rate_signal(None)
    fake.sleeps.clear()
    pacer.acquire("cdx")
    assert fake.sleeps == [FAST.pause_seconds]


def test_rate_limits_space_requests_per_kind() -> None:
    fake = FakeTime()
    pacer = Pacer(replace(FAST, cdx_per_minute=20, fetches_per_second=4), clock=fake.clock, sleep=fake.sleep)
    for _ in range(3):
        pacer.acquire("cdx")
    assert fake.sleeps == [3.0, 3.0]  # 20 per minute
    fake.sleeps.clear()
    pacer.acquire("fetch")
    pacer.acquire("fetch")
    assert fake.sleeps == [0.25]
    defaults = DEFAULT_SOURCES["wayback"]
    assert defaults.cdx_per_minute <= 20 and defaults.concurrency <= 2  # well under IA's ~60/min


def test_reset_and_refused_connections_are_rate_signals(fault_server: FaultServer,
                                                        fault_server_factory: FaultServerFactory) -> None:
    fault_server.script("/x", [Fault.reset(), Fault.reset_mid_body(b"x" * 5000, after=100), Fault.respond(b"ok")])
    fake = FakeTime()
    http = client(fault_server, fake)
    assert http.get(fault_server.url("/x")).read() == b"ok"
    assert http.pacer.rate_signals == 2
    gone = fault_server_factory()
    url = gone.url("/y")
    refused = client(gone, fake, settings=replace(FAST, pause_after=100))
    gone.stop()  # nothing listens there any more: connections are refused
    with pytest.raises(RateLimitedError) as caught:
        refused.get(url)
    assert caught.value.status is None and refused.pacer.rate_signals == FAST.max_retries + 1


def test_short_bodies_and_stalls_are_retried(fault_server: FaultServer) -> None:
    body = b"y" * 10_000
    fault_server.script("/short", [Fault.short_body(body, after=1000), Fault.respond(body)])
    fault_server.script("/stall", [Fault.stall(5.0, after=10, body=body), Fault.respond(body)])
    fake = FakeTime()
    http = client(fault_server, fake, settings=replace(FAST, read_timeout=0.3))
    assert http.get(fault_server.url("/short")).read() == body
    assert http.get(fault_server.url("/stall")).read() == body
    assert http.retries == 2
    fault_server.script("/always-short", [Fault.short_body(body, after=10)] * 10)
    with pytest.raises(FetchError) as caught:
        http.get(fault_server.url("/always-short"))
    assert caught.value.reason == "truncated-body"


def test_redirects_are_followed_only_inside_the_archive(fault_server: FaultServer,
                                                        fault_server_factory: FaultServerFactory) -> None:
    foreign = fault_server_factory()
    fault_server.script("/a", Fault.redirect("/b"))
    fault_server.script("/b", Fault.redirect(fault_server.url("/c"), code=307))
    fault_server.script("/c", Fault.respond(b"landed"))
    fault_server.script("/away", Fault.redirect(foreign.url("/elsewhere")))
    fake = FakeTime()
    http = client(fault_server, fake)
    reply = http.get(fault_server.url("/a"))
    assert reply.read() == b"landed" and reply.url == fault_server.url("/c")
    assert reply.redirects == [(302, fault_server.url("/b")), (307, fault_server.url("/c"))]
    with pytest.raises(ForeignRedirectError) as caught:
        http.get(fault_server.url("/away"))
    assert caught.value.location == foreign.url("/elsewhere")
    assert foreign.requests == []  # recorded, never fetched


def test_archived_redirects_and_errors_are_answers_not_faults(fault_server: FaultServer) -> None:
    memento = {"Memento-Datetime": "Sun, 26 Jan 2014 20:06:24 GMT"}
    fault_server.script("/r", Fault.respond(b"", code=302, headers={**memento, "Location": "http://elsewhere/"}))
    fault_server.script("/e", Fault.respond(b"archived outage page", code=503, headers=memento))
    fake = FakeTime()
    http = client(fault_server, fake)
    assert http.get(fault_server.url("/r"), memento=True).status == 302
    archived = http.get(fault_server.url("/e"), memento=True)
    assert (archived.status, archived.read()) == (503, b"archived outage page")
    assert fake.sleeps == [] and len(fault_server.requests) == 2


def test_bodies_are_hashed_as_received_not_decoded(fault_server: FaultServer) -> None:
    page = b"<html>" + b"hello " * 500 + b"</html>"
    stored = gzip.compress(page, mtime=0)
    fault_server.script("/gz", Fault.respond(stored, headers={"Content-Encoding": "gzip", "Content-Type": "text/html"}))
    reply = client(fault_server, FakeTime()).get(fault_server.url("/gz"))
    assert reply.read() == stored and reply.size == len(stored)
    assert reply.sha1 == sha1_base32(stored) != sha1_base32(page)


def test_one_session_per_worker_thread(fault_server: FaultServer) -> None:
    http = client(fault_server, FakeTime())
    seen: list[object] = []
    threads = [threading.Thread(target=lambda: seen.extend([http.session(), http.session()])) for _ in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len({id(s) for s in seen}) == 3
    assert all(seen[i] is seen[i + 1] for i in range(0, 6, 2))
    http.close()


def test_retry_after_forms() -> None:
    assert parse_retry_after("120") == 120.0
    assert parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT", now=1445412480.0 - 30) == 30.0
    assert parse_retry_after("soon") is None and parse_retry_after(None) is None
    assert parse_retry_after("999999") == 3600.0
