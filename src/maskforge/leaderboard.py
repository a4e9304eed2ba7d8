"""The report's leaderboard: every scored store of every compared variant, best mIoU first, with
the ratio to the store it was made from (each refinement is scored against its input).

A store's input is found by content, not by name: its provenance (`meta.json` `inputs`) lists the
sha256 of each input, so the scored store whose bytes have that hash is its input store. This works
for any graph, variant or hand-run command.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping, Sequence

from maskforge.store import StoreReader, input_digest

DEFAULT_VARIANT = "default"


def run_labels(paths: Sequence[str | os.PathLike]) -> list[str]:
    """Names of outputs relative to their common folder, suffix dropped: data/stores/seeds → seeds,
    data/stores/seam/seeds → seam/seeds, metrics/seam/seeds.json → seam/seeds."""
    if not paths:
        return []
    base = os.path.commonpath([Path(p).parent for p in paths])
    return [Path(os.path.relpath(p, base)).with_suffix("").as_posix() for p in paths]


@dataclass(frozen=True)
class Entry:
    variant: str
    store: str
    split: str
    miou: float
    source: str | None        # the label of the scored store it was made from
    ratio: float | None       # miou / the source's miou


def leaderboard(stores: Mapping[str, StoreReader], summaries: Mapping[str, Mapping[str, Any]]) -> list[Entry]:
    """One entry per labelled store with a score (`summaries[label]["miou"]`), best first. A store's
    source is its first scored input; through an unscored input (e.g. assemble_ae), that one's."""
    scored = {label: store for label, store in stores.items() if "miou" in summaries.get(label, {})}
    label_of_digest = {input_digest(store.path): label for label, store in stores.items()}

    def scored_source(label: str, seen: frozenset[str]) -> str | None:
        for digest in stores[label].meta["inputs"].values():
            parent = label_of_digest.get(digest)
            if parent is None or parent in seen:
                continue
            found = parent if parent in scored else scored_source(parent, seen | {parent})
            if found:
                return found
        return None

    entries = []
    for label, store in scored.items():
        source = scored_source(label, frozenset({label}))
        miou = float(summaries[label]["miou"])
        base = float(summaries[source]["miou"]) if source else 0.0
        variant, _, name = label.rpartition("/")
        entries.append(Entry(variant or DEFAULT_VARIANT, name, summaries[label].get("split", ""), miou, source,
                             miou / base if base > 0 else None))
    return sorted(entries, key=lambda e: (-e.miou, e.variant, e.store))
