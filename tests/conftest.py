"""Shared pytest fixtures: real local servers (see ``servers.py``) and the realdata path.

Server fixtures
---------------
* ``realdata`` (session) -> ``Path`` of ``../shared/realdata`` (read-only; never copy it into
  the repo). Fails loudly if it is missing.
* ``pywb_factory`` (session) -> ``factory(collections, *, zipnum=None) -> PywbServer``.
  Servers are cached per collection contents (names, file paths, sizes, mtimes), so tests
  asking for the same collections share one running pywb: treat it as read-only.
* ``moto_s3`` (session) -> running ``MotoS3Server``; ``s3_client`` (function) -> boto3 S3
  client on it, after wiping all moto state.
* ``fault_server`` (function) -> running ``FaultServer`` without upstream; set
  ``fault_server.upstream = pywb.base_url`` or ``.static_root = path`` to change the
  fall-through. ``fault_server_factory`` (function) -> ``factory(upstream=None, *,
  static_root=None) -> FaultServer`` for extra hosts (e.g. a "foreign" host).
* ``http_session`` (function) -> ``requests.Session`` that ignores proxy env vars.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path

import pytest
import requests
from servers import FaultServer, MotoS3Server, PywbServer, ZipNumCollection

REALDATA = Path(__file__).resolve().parents[2] / "shared" / "realdata"

PywbFactory = Callable[..., PywbServer]
FaultServerFactory = Callable[..., FaultServer]


@pytest.fixture(scope="session")
def realdata() -> Path:
    if not (REALDATA / "SOURCES.md").is_file():
        pytest.fail(f"real test data missing: expected {REALDATA}/SOURCES.md "
                    "(../shared/realdata relative to the repo root)", pytrace=False)
    return REALDATA


def _file_key(p: Path) -> tuple[str, int, int]:
    st = p.stat()
    return (str(p.resolve()), st.st_size, st.st_mtime_ns)


@pytest.fixture(scope="session")
def pywb_factory(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PywbFactory]:
    cache: dict[object, PywbServer] = {}
    with contextlib.ExitStack() as stack:

        def factory(collections: Mapping[str, Sequence[Path]], *,
                    zipnum: Mapping[str, ZipNumCollection] | None = None) -> PywbServer:
            key = (
                tuple(sorted((n, tuple(_file_key(Path(p)) for p in files))
                             for n, files in collections.items())),
                tuple(sorted((n, _file_key(z.idx), tuple(_file_key(w) for w in z.warcs))
                             for n, z in (zipnum or {}).items())),
            )
            if key not in cache:
                root = tmp_path_factory.mktemp("pywb")
                cache[key] = stack.enter_context(PywbServer(root, collections, zipnum=zipnum))
            return cache[key]

        yield factory


@pytest.fixture(scope="session")
def moto_s3(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MotoS3Server]:
    with MotoS3Server(workdir=tmp_path_factory.mktemp("moto")) as server:
        yield server


@pytest.fixture
def s3_client(moto_s3: MotoS3Server) -> object:
    moto_s3.reset()
    return moto_s3.client()


@pytest.fixture
def fault_server() -> Iterator[FaultServer]:
    with FaultServer() as server:
        yield server


@pytest.fixture
def fault_server_factory() -> Iterator[FaultServerFactory]:
    with contextlib.ExitStack() as stack:

        def factory(upstream: str | None = None, *,
                    static_root: Path | None = None) -> FaultServer:
            return stack.enter_context(FaultServer(upstream, static_root=static_root))

        yield factory


@pytest.fixture
def http_session() -> Iterator[requests.Session]:
    with requests.Session() as session:
        session.trust_env = False  # never route 127.0.0.1 through an env proxy
        yield session


# ======================================================================================
# archivekeeper package fixtures (owned by the lead) -- add below this line.
# ======================================================================================
