"""The progress file a contender subprocess writes: "<messages processed> <monotonic seconds>".

CLOCK_MONOTONIC is system-wide on Linux, so the bench compares the writer's time with its own.
A write replaces the file atomically (rename), so a reader never sees half a line.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

REPORT_EVERY_S = 0.5  # how often a contender reports between its first and last message


class ProgressFile:
    """Write side: `report(count)` now; `maybe_report(count)` at most every `every_s`."""

    def __init__(self, path: Path, expected: int, every_s: float = REPORT_EVERY_S) -> None:
        self.path = path
        self.expected = expected  # reported the moment it is reached, whatever the interval
        self.every_s = every_s
        self._scratch = path.with_name(path.name + ".tmp")
        self._last: float | None = None  # the first count is reported at once

    def report(self, count: int) -> None:
        now = time.monotonic()
        self._scratch.write_text(f"{count} {now}\n")
        os.replace(self._scratch, self.path)
        self._last = now

    def maybe_report(self, count: int) -> None:
        last = self._last
        if last is None or count >= self.expected or time.monotonic() - last >= self.every_s:
            self.report(count)


def read_progress(path: Path) -> tuple[int, float] | None:
    """(messages processed, monotonic time of that count), or None before the first report."""
    try:
        count, at = path.read_text().split()
    except (FileNotFoundError, ValueError):
        return None
    return int(count), float(at)
