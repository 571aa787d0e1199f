"""Progress display for the CLI: a rich bar on a terminal, nothing in pipelines or with ``--json``."""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager

Reporter = Callable[[str, int], None]


@contextmanager
def progress_bar(description: str, *, enabled: bool | None = None, unit: str = "bytes") -> Iterator[Reporter]:
    """Yield a reporter ``(event, amount)``: ``("total", n)`` sets the size, ``("advance", n)`` moves on.

    The bar shows only when ``enabled`` (default: stderr is a terminal)."""
    if enabled is None:
        enabled = sys.stderr.isatty()
    if not enabled:
        yield lambda event, amount: None
        return
    from rich.console import Console
    from rich.progress import (
        BarColumn,
        DownloadColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeRemainingColumn,
        TransferSpeedColumn,
    )

    columns = [TextColumn("{task.description}"), BarColumn()]
    if unit == "bytes":
        columns += [DownloadColumn(), TransferSpeedColumn()]
    else:
        columns += [MofNCompleteColumn()]
    columns.append(TimeRemainingColumn())
    with Progress(*columns, console=Console(stderr=True), transient=True) as bar:
        task = bar.add_task(description, total=None)

        def report(event: str, amount: int) -> None:
            if event == "total":
                bar.update(task, total=amount)
            elif event == "advance":
                bar.advance(task, amount)
            else:
                bar.update(task, description=f"{description} {event}")

        yield report
