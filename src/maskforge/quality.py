"""The quality table (DESIGN §9): every scored store of a run with its mIoU, the mean precision and
recall of its labelled pixels, how much of the image it labels, and the ratio of its mIoU to the
store it was made from — so a user sees which stage helps on their data.

Columns marked "GT" compare against pixel ground truth (a user's own dataset has none); the
labelled and foreground shares are read from the store alone. A CAM store is scored at the τ its
evaluation swept against GT: the note says so, the seeds store shows the τ the pipeline chose. A mask
store that calls (nearly) every labelled pixel foreground, or background, gets a warning naming the knob.
Rows follow the chain: each variant's stores by their distance from a store made from nothing scored.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping

import numpy as np

from maskforge.degenerate import DOMINANT_SHARE, LIKELY_KNOB
from maskforge.leaderboard import DEFAULT_VARIANT, Entry, leaderboard
from maskforge.metrics import IGNORE
from maskforge.store import StoreReader

HEADERS = ("variant", "store", "made from", "split", "mIoU (GT)", "ratio (GT)", "precision (GT)", "recall (GT)",
           "labelled %", "foreground %", "note")


@dataclass(frozen=True)
class QualityRow:
    entry: Entry
    precision: float | None    # mean over classes of correct / labelled-as-c pixels, percent (GT)
    recall: float | None       # mean over classes of correct / GT pixels of c, percent (GT)
    labelled: float | None     # share of the store's pixels that are not ignore (255), percent (no GT)
    foreground: float | None   # share of its labelled pixels that are an object class, percent (no GT)
    note: str

    def cells(self) -> list[Any]:
        e = self.entry
        return [e.variant, e.store, e.source or "", e.split, e.miou, e.ratio, self.precision, self.recall,
                self.labelled, self.foreground, self.note]


def mask_shares(store: StoreReader) -> tuple[float, float]:
    """(labelled %, foreground % of the labelled pixels) over every image of a mask store."""
    counts = np.zeros(3, np.int64)       # background, object, ignore
    for image_id in store.ids:
        mask = store[image_id]
        ignored = int(np.count_nonzero(mask == IGNORE))
        background = int(np.count_nonzero(mask == 0))
        counts += (background, mask.size - ignored - background, ignored)
    labelled = counts[0] + counts[1]
    return 100 * labelled / max(counts.sum(), 1), 100 * counts[1] / max(labelled, 1)


def _class_mean(values: Mapping[str, float | None] | None) -> float | None:
    known = [v for v in (values or {}).values() if v is not None]
    return 100 * float(np.mean(known)) if known else None


def seeds_threshold(store: StoreReader) -> float:
    """The τ a seeds store used: the value "otsu" derived from its CAM store (recorded in the store's
    meta as derived.bg_threshold), else the number cam.bg_threshold gave."""
    return float(store.meta.get("derived", {}).get("bg_threshold", store.params["cam"]["bg_threshold"]))


def _note(store: StoreReader, summary: Mapping[str, Any], foreground: float | None) -> str:
    """The τ behind the row's numbers, and DESIGN §9's warning for a degenerate mask store."""
    if store.kind == "cam" and "bg_threshold" in summary:
        return f"at the GT-best tau {summary['bg_threshold']:g}"
    stage = store.meta["stage"]
    setting = store.params["cam"]["bg_threshold"] if stage == "seeds" else None
    notes = [] if setting is None else [f"tau {setting} (no GT)" if setting != "otsu" else
                                        f"tau otsu = {seeds_threshold(store):.3f} (no GT)"]
    if foreground is not None and stage in LIKELY_KNOB and max(foreground, 100 - foreground) >= 100 * DOMINANT_SHARE:
        notes.append(f"WARNING: {'foreground' if foreground > 50 else 'background'} almost everywhere "
                     f"(check {LIKELY_KNOB[stage]})")
    return "; ".join(notes)


def quality_rows(stores: Mapping[str, StoreReader], summaries: Mapping[str, Mapping[str, Any]]) -> list[QualityRow]:
    """One row per scored store (the leaderboard's entries), in chain order within each variant."""
    entries = {(e.variant, e.store): e for e in leaderboard(stores, summaries)}

    def label(e: Entry) -> str:
        return e.store if e.variant == DEFAULT_VARIANT else f"{e.variant}/{e.store}"

    def depth(e: Entry) -> int:
        hops, seen = 0, {label(e)}
        while e.source and e.source not in seen:
            seen.add(e.source)
            variant, _, name = e.source.rpartition("/")
            e, hops = entries[(variant or DEFAULT_VARIANT, name)], hops + 1
        return hops

    rows = []
    for e in sorted(entries.values(), key=lambda e: (e.variant != DEFAULT_VARIANT, e.variant, depth(e), e.split != "train", e.store)):
        store, summary = stores[label(e)], summaries[label(e)]
        labelled, foreground = mask_shares(store) if store.kind == "mask" else (None, None)
        rows.append(QualityRow(e, _class_mean(summary.get("precision")), _class_mean(summary.get("recall")),
                               labelled, foreground, _note(store, summary, foreground)))
    return rows

