"""Metrics files for DVC (`dvc metrics diff`, `dvc plots diff`), each written atomically."""

from __future__ import annotations

import csv
import json
import os
from pathlib import Path
from typing import Any


def _replace_into(path: str | Path, write) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f"{path.name}.tmp-{os.getpid()}")
    try:
        with open(tmp, "w", newline="") as f:
            write(f)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def write_json(path: str | Path, data: dict[str, Any]) -> None:
    """Indented JSON with a trailing newline, via a temporary name."""
    _replace_into(path, lambda f: f.write(json.dumps(data, indent=2) + "\n"))


def write_csv(path: str | Path, rows: list[dict[str, Any]]) -> None:
    """Rows (dicts with the same keys) as CSV with a header, via a temporary name."""
    def write(f):
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    _replace_into(path, write)
