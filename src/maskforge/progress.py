"""Progress lines a person can follow in a log file and on the console (the workflow engines show a
stage's output on the console and keep it in its log): `make_cam r0: 48/96 images (50%), 1m10s,
ETA 1m10s`, printed at most every `interval` seconds and once at the end. Plain lines, no carriage
returns, so a log file reads like the console did. Every long stage uses this one helper.
"""

from __future__ import annotations

import sys
import time
from typing import Any, Callable, Iterable, Iterator, TextIO, TypeVar

T = TypeVar("T")
INTERVAL = 10.0   # seconds between two progress lines


def duration(seconds: float) -> str:
    """75 → '1m15s', 3725 → '1h02m', 9.4 → '9s'."""
    seconds = max(0, round(seconds))
    if seconds < 60:
        return f"{seconds}s"
    if seconds < 3600:
        return f"{seconds // 60}m{seconds % 60:02d}s"
    return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"


class Progress:
    """Counts work done out of `total` and prints `desc: done/total unit (pct%), elapsed, ETA ...`
    plus the latest `update(**status)` values (e.g. epoch, loss), at most every `interval` seconds
    and when the count reaches `total`. With `enabled=False` (a DDP rank other than 0) it is silent."""

    def __init__(self, total: int, desc: str, unit: str = "images", *, interval: float = INTERVAL,
                 stream: TextIO | None = None, clock: Callable[[], float] = time.monotonic, enabled: bool = True):
        self.total, self.desc, self.unit, self.interval = total, desc, unit, interval
        self.stream, self.clock, self.enabled = stream, clock, enabled
        self.done, self.status = 0, {}
        self.start = self.last = clock()

    def update(self, n: int = 1, **status: Any) -> None:
        self.done += n
        self.status.update(status)
        now = self.clock()
        if self.enabled and (self.done >= self.total or now - self.last >= self.interval):
            self.last = now
            print(self.line(now), file=self.stream or sys.stdout, flush=True)

    def line(self, now: float) -> str:
        elapsed = now - self.start
        text = f"{self.desc}: {self.done}/{self.total} {self.unit}"
        if self.total:
            text += f" ({100 * self.done // self.total}%)"
        text += f", {duration(elapsed)}"
        if 0 < self.done < self.total:
            text += f", ETA {duration(elapsed / self.done * (self.total - self.done))}"
        return text + "".join(f", {k} {_value(v)}" for k, v in self.status.items())


def track(items: Iterable[T], total: int, desc: str, unit: str = "images", **options: Any) -> Iterator[T]:
    """Yield `items`, counting each one on a Progress (options as Progress takes them)."""
    progress = Progress(total, desc, unit, **options)
    for item in items:
        yield item
        progress.update()


def _value(value: Any) -> str:
    return f"{value:.4f}" if isinstance(value, float) else str(value)
