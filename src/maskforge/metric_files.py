"""Metrics files for DVC (`dvc metrics diff`, `dvc plots diff`), each written atomically."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path
from typing import Any

from maskforge.atomic import atomic_write_text


def write_json(path: str | Path, data: dict[str, Any]) -> None:
    """Indented JSON with a trailing newline, via a temporary name."""
    atomic_write_text(path, json.dumps(data, indent=2) + "\n")


def read_csv(path: str | Path) -> list[dict[str, str]]:
    """The rows of a CSV written by write_csv, values as text."""
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def write_csv(path: str | Path, rows: list[dict[str, Any]]) -> None:
    """Rows (dicts with the same keys) as CSV with a header, via a temporary name."""
    text = io.StringIO(newline="")
    writer = csv.DictWriter(text, fieldnames=list(rows[0]))
    writer.writeheader()
    writer.writerows(rows)
    atomic_write_text(path, text.getvalue())
