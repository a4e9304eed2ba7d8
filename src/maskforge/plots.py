"""Static plots as PNG bytes (matplotlib, Agg canvas: no display, no pyplot state): training curves,
CAM threshold sweeps and the heat-map colour bar. The report embeds them and writes them as files
that `dvc plots diff` shows as images, offline."""

from __future__ import annotations

import io
from typing import Any, Mapping, Sequence

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.colors import Normalize
from matplotlib.cm import ScalarMappable
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

SIZE = (5.0, 3.0)   # inches; at DPI a 500×300 px picture
DPI = 100
LOSS_COLOUR, SCORE_COLOUR, CHOSEN_COLOUR = "tab:blue", "tab:orange", "tab:red"


def _png(figure: Figure) -> bytes:
    FigureCanvasAgg(figure)
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=DPI, metadata={"Software": None})   # same rows, same bytes
    return buffer.getvalue()


def training_curve_png(rows: Sequence[Mapping[str, Any]], title: str) -> bytes:
    """A training curve CSV's rows (epoch, step, loss, lr[, val_miou]) as loss per epoch, with the
    validation mIoU (%) on a second axis when the rows have it."""
    figure = Figure(figsize=SIZE, layout="constrained")
    axes = figure.add_subplot()
    epochs = [float(r["epoch"]) for r in rows]
    axes.plot(epochs, [float(r["loss"]) for r in rows], "o-", color=LOSS_COLOUR, label="loss")
    axes.set(xlabel="epoch", ylabel="loss", title=title)
    axes.xaxis.set_major_locator(MaxNLocator(integer=True))
    axes.tick_params(axis="y", labelcolor=LOSS_COLOUR)
    scored = [(e, float(r["val_miou"])) for e, r in zip(epochs, rows) if r.get("val_miou") not in (None, "")]
    if scored:
        score_axes = axes.twinx()
        score_axes.plot(*zip(*scored), "s--", color=SCORE_COLOUR, label="val mIoU")
        score_axes.set_ylabel("val mIoU (%)", color=SCORE_COLOUR)
        score_axes.tick_params(axis="y", labelcolor=SCORE_COLOUR)
    axes.grid(alpha=0.3)
    return _png(figure)


def sweep_png(rows: Sequence[Mapping[str, Any]], chosen: Mapping[str, float], title: str) -> bytes:
    """A threshold sweep (rows threshold, miou) as mIoU over τ with the best τ marked, and each
    τ the pipeline used (`chosen`: the store that used it → τ) as a vertical line."""
    figure = Figure(figsize=SIZE, layout="constrained")
    axes = figure.add_subplot()
    taus, scores = [float(r["threshold"]) for r in rows], [float(r["miou"]) for r in rows]
    axes.plot(taus, scores, "o-", color=LOSS_COLOUR, label="mIoU")
    best = max(range(len(rows)), key=scores.__getitem__)
    axes.plot([taus[best]], [scores[best]], "*", markersize=16, color=SCORE_COLOUR,
              label=f"best τ {taus[best]:g} ({scores[best]:.1f})")
    for name, tau in chosen.items():
        axes.axvline(tau, color=CHOSEN_COLOUR, linestyle="--", label=f"{name}: τ {tau:g}")
    axes.set(xlabel="background threshold τ", ylabel="mIoU (%)", title=title)
    axes.grid(alpha=0.3)
    axes.legend(fontsize=8)
    return _png(figure)


def colour_bar_png(colour_map: str = "jet") -> bytes:
    """A horizontal colour bar 0…1 for the CAM and saliency heat maps."""
    figure = Figure(figsize=(4.0, 0.7), layout="constrained")
    axes = figure.add_subplot()
    figure.colorbar(ScalarMappable(Normalize(0, 1), colour_map), cax=axes, orientation="horizontal",
                    label="normalised CAM / saliency")
    return _png(figure)
