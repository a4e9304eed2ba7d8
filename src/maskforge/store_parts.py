"""The names of the parts of a store written by several jobs (`<store>/part-<i>-of-<n>/`, e.g.
sharded make_cam). No heavy imports: the workflow engines import this at parse time."""

from __future__ import annotations

import re

PART = re.compile(r"^part-(\d{5})-of-(\d{5})$")   # <store>/part-<i>-of-<n>/: one job's share of a store


def part_name(index: int, count: int) -> str:
    """The folder of part `index` of a store written by `count` jobs (e.g. sharded make_cam)."""
    return f"part-{index:05d}-of-{count:05d}"
