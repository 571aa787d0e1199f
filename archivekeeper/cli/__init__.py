"""The ``archivekeeper`` command: parse → call the library → print → exit. No logic lives here.

This module holds the app, the global options and the error seam; each group of commands lives in
its own module and registers itself on :data:`app`.
"""

from __future__ import annotations

import functools
import json
import logging
import os
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer

from .. import __version__
from ..catalog import Catalog
from ..errors import ArchiveKeeperError
from ..workspace import DEFAULT_WORKSPACE, WORKSPACE_ENV, Workspace

app = typer.Typer(
    name="archivekeeper",
    help="Fetch, catalog and export dated web captures made before the AI era.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

F = TypeVar("F", bound=Callable[..., Any])


@dataclass
class State:
    workspace_dir: Path
    wait: float


def one_line(text: str) -> str:
    """Control characters (a newline in a file name, say) escaped, so one error is one line."""
    return "".join(ch if ch.isprintable() else repr(ch)[1:-1] for ch in str(text))


def print_error(message: str) -> None:
    typer.echo(f"archivekeeper: error: {one_line(message)}", err=True)


def fail(message: str, code: int = 1) -> typer.Exit:
    print_error(message)
    return typer.Exit(code)


def handle_errors(func: F) -> F:
    """Turn library errors (and a few OS ones) into one line on stderr and a non-zero exit."""

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return func(*args, **kwargs)
        except ArchiveKeeperError as exc:
            raise fail(str(exc)) from None
        except KeyboardInterrupt:
            raise fail("interrupted", 130) from None
        except BrokenPipeError:
            sys.stderr.close()
            raise typer.Exit(141) from None
        except OSError as exc:
            where = f"{exc.filename}: " if exc.filename else ""
            raise fail(f"{where}{exc.strerror or exc}") from None
        except (typer.Exit, typer.Abort):
            raise
        except Exception as exc:  # the last line of defence: one line, never a traceback
            if os.environ.get("ARCHIVEKEEPER_DEBUG"):
                raise
            raise fail(f"internal error: {type(exc).__name__}: {exc} "
                       "(set ARCHIVEKEEPER_DEBUG=1 for a traceback, and please report it)", 70) from None

    return wrapper  # type: ignore[return-value]


def _print_version(value: bool) -> None:
    if value:
        typer.echo(f"archivekeeper {__version__}")
        raise typer.Exit(0)


@app.callback()
def main(
    ctx: typer.Context,
    workspace: Annotated[Path | None, typer.Option(
        "--workspace", "-w", envvar=WORKSPACE_ENV,
        help=f"Workspace directory (catalog.db, store/, archivekeeper.toml). Default: ./{DEFAULT_WORKSPACE}.")] = None,
    wait: Annotated[float, typer.Option(
        help="Seconds to wait for another archivekeeper process holding the workspace.")] = 0.0,
    version: Annotated[bool, typer.Option("--version", help="Print the version and exit.", is_eager=True,
                                          callback=lambda value: _print_version(value))] = False,
) -> None:
    """Fetch, catalog and export dated web captures made before the AI era."""
    logging.getLogger("warcio").setLevel(logging.ERROR)
    ctx.obj = State(workspace_dir=workspace or DEFAULT_WORKSPACE, wait=wait)


@contextmanager
def opened(ctx: typer.Context, *, write: bool = False) -> Iterator[tuple[Workspace, Catalog]]:
    """The workspace and its catalog (initialised if needed).

    ``write`` holds the workspace lock for the whole command. Readers take no lock and write
    nothing, so they answer while a writer works and on read-only media; only a new catalog, or
    one whose cutoff changed, is first set up under the lock.
    """
    state: State = ctx.obj
    workspace = Workspace.open(state.workspace_dir)
    cutoff = workspace.settings.cutoff
    if write:
        with workspace.lock(wait=state.wait):
            catalog = Catalog.open(workspace.catalog_path, cutoff)
            try:
                yield workspace, catalog
            finally:
                catalog.close()
        return
    if workspace.catalog_path.exists():
        reader = Catalog.open(workspace.catalog_path, cutoff, readonly=True)
        if not reader.cutoff_is_stale:
            try:
                yield workspace, reader
            finally:
                reader.close()
            return
        reader.close()
    with workspace.lock(wait=state.wait):  # a new catalog, or one whose cutoff changed: set up once
        Catalog.open(workspace.catalog_path, cutoff).close()
    catalog = Catalog.open(workspace.catalog_path, cutoff, readonly=True)
    try:
        yield workspace, catalog
    finally:
        catalog.close()


def emit_json(data: Any) -> None:
    typer.echo(json.dumps(data, sort_keys=False, default=str))


def run() -> None:
    """Console-script entry point."""
    app()


# Command modules register themselves on `app` when imported.
from . import catalog_commands, demo_command, export_commands, sync_command  # noqa: E402,F401
