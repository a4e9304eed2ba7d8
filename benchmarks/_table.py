"""The one benchmark table: a row per measurement (name, ours, baseline, ratio, memory, note)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

COLUMNS = ("name", "ours", "baseline", "ratio", "memory", "note")


@dataclass(frozen=True)
class Row:
    name: str
    ours: str
    baseline: str
    ratio: float | None          # how many times better ours is than the baseline (speed or size)
    memory: str
    note: str = ""


def print_rows(rows: Sequence[Row]) -> None:
    """A markdown table of `rows`."""
    print("| " + " | ".join(COLUMNS) + " |")
    print("| --- | ---: | ---: | ---: | ---: | --- |")
    for r in rows:
        ratio = "" if r.ratio is None else f"{r.ratio:.2f}×"
        print(f"| {r.name} | {r.ours} | {r.baseline} | {ratio} | {r.memory} | {r.note} |")
