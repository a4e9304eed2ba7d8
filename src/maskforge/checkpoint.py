"""Checkpoint files: written to a temporary name and renamed, read with a clear error.

torch is imported inside the functions: every stage catches CheckpointError, and the stages that
never touch a model (evaluate, seeds, erase, crf, report, ...) then start without torch (~1.6 s
of CPU each)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

from maskforge.atomic import temp_path

if TYPE_CHECKING:
    import torch


class CheckpointError(ValueError):
    """A checkpoint that is missing, truncated or of the wrong kind."""


def save_checkpoint(path: str | Path, state: dict[str, Any]) -> None:
    """torch.save to `<path>.tmp-<pid>`, fsync, then rename: a crash never leaves a half file."""
    import torch

    path = Path(path)
    tmp = temp_path(path)
    try:
        with open(tmp, "wb") as f:
            torch.save(state, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def load_checkpoint(path: str | Path, kind: str) -> dict[str, Any]:
    """Load a checkpoint written by save_checkpoint whose state['kind'] is `kind`."""
    import torch

    try:
        state = torch.load(path, map_location="cpu", weights_only=False)
    except FileNotFoundError:
        raise CheckpointError(f"{path}: no such checkpoint; run the stage that trains it first") from None
    except Exception as exc:  # torch raises several types for truncated/corrupt files
        raise CheckpointError(f"{path}: unreadable checkpoint ({exc.__class__.__name__}); delete it and retrain") from None
    if not isinstance(state, dict) or state.get("kind") != kind:
        raise CheckpointError(f"{path}: not a {kind} checkpoint; point the stage at a {kind} checkpoint")
    return state


def load_model(path: str | Path, kind: str, build: Callable[[dict[str, Any]], torch.nn.Module],
               device: torch.device) -> torch.nn.Module:
    """The trained network of a `kind` checkpoint, on `device` in eval mode and channels_last.

    `build(state)` returns the untrained network the checkpoint's weights belong to (it reads
    the architecture the checkpoint records: backbone, output stride, method, ...); a
    CheckpointError it raises is reported with the file's name."""
    import torch

    state = load_checkpoint(path, kind)
    try:
        model = build(state)
    except CheckpointError as exc:
        raise CheckpointError(f"{path}: {exc}") from None
    model.load_state_dict(state["model"])
    return model.to(device, memory_format=torch.channels_last).eval()
