"""How the `chorus` command talks to a person or a script: lines, JSON, progress, errors.

Progress bars go to stderr and only when it is a terminal and the job is big enough
to be worth watching, so pipes and scripts see exactly the lines Kubo would print.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from rich.console import Console
from rich.progress import (
    BarColumn,
    DownloadColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
    TransferSpeedColumn,
)

__all__ = ["PROGRESS_THRESHOLD", "emit_json", "fail", "progress_bar"]

#: Jobs smaller than this finish before a bar would be worth drawing.
PROGRESS_THRESHOLD = 4 * 1024 * 1024


def emit_json(value: Any) -> None:
    """One JSON document on its own line (NDJSON when called repeatedly)."""
    sys.stdout.write(json.dumps(value, sort_keys=True) + "\n")


def fail(message: str, code: int = 1) -> int:
    """Print the one-line error every failure gets and return the exit code."""
    sys.stderr.write(f"chorus: error: {message}\n")
    sys.stderr.flush()
    return code


@contextmanager
def progress_bar(
    description: str, total: int | None, *, enabled: bool = True
) -> Iterator[Callable[[int], None] | None]:
    """Yield an advance(n) callback drawing a transfer bar, or None when not shown."""
    console = Console(stderr=True)
    big_enough = total is None or total >= PROGRESS_THRESHOLD
    if not (enabled and console.is_terminal and big_enough):
        yield None
        return
    columns = [
        TextColumn("{task.description}"),
        BarColumn(),
        DownloadColumn(),
        TransferSpeedColumn(),
        TimeRemainingColumn(),
    ]
    with Progress(*columns, console=console, transient=True) as bar:
        task = bar.add_task(description, total=total)
        yield lambda n: bar.advance(task, n)


@contextmanager
def count_bar(description: str, total: int | None = None) -> Iterator[Callable[[int], None] | None]:
    """Yield a done(count) callback drawing "N entries" progress on a terminal, else None.

    For long item-by-item work (a ledger audit of a million entries takes minutes);
    the callback takes the absolute count done so far."""
    console = Console(stderr=True)
    if not console.is_terminal:
        yield None
        return
    columns = [TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
               TimeElapsedColumn()]
    with Progress(*columns, console=console, transient=True) as bar:
        task = bar.add_task(description, total=total)
        yield lambda done: bar.update(task, completed=done)
