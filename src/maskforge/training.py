"""A resumable training loop shared by the CAM, IRN and segmentation stages.

Randomness is drawn per epoch from (seed, epoch), so a run killed after epoch e and resumed from
its epoch checkpoint takes exactly the steps an uninterrupted run would have taken.

Under torch.distributed (maskforge.distributed) the same loop runs on every rank with a
DistributedDataParallel model: every rank draws the same per-epoch generator (each takes its own
share of the batches), the epoch loss is averaged over ranks, and only rank 0 writes the epoch
checkpoint, prints and runs the end-of-epoch hook.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable, Iterable, Iterator

import numpy as np
import torch

from maskforge.checkpoint import load_checkpoint, save_checkpoint
from maskforge.distributed import global_mean, is_main_process, unwrap
from maskforge.metric_files import write_csv
from maskforge.progress import Progress

Batch = tuple[torch.Tensor, ...]   # (images, targets) or (images, targets, more targets, …)


def poly_lr(base_lr: float, step: int, total_steps: int, power: float = 0.9) -> float:
    """DeepLab/IRN poly schedule: base · (1 − step/total)^power."""
    return base_lr * (1 - step / max(total_steps, 1)) ** power


def fit(model: torch.nn.Module, optimizer: torch.optim.Optimizer,
        loss_fn: Callable[[torch.nn.Module, Batch], torch.Tensor],
        make_batches: Callable[[np.random.Generator], Iterable[Batch]], *,
        epochs: int, steps_per_epoch: int, seed: int, resume_path: str | Path,
        fingerprint: str, device: torch.device, desc: str,
        on_epoch_end: Callable[[torch.nn.Module, int], dict[str, Any]] | None = None,
        on_epoch_start: Callable[[int], None] | None = None) -> list[dict[str, Any]]:
    """Train with poly LR (each param group keeps its base-lr ratio); checkpoint after every epoch.

    `resume_path` holds the last finished epoch; a rerun with the same `fingerprint` (hash of the
    params and inputs) continues from it, any other fingerprint starts over. Every tensor of a
    batch is moved to `device` and the batch passed to `loss_fn` whole. Returns the loss curve
    rows (epoch, step, loss, lr), each extended by `on_epoch_end(model, epoch)` if given (rank 0
    only, called with the unwrapped model, e.g. a validation score). `on_epoch_start(epoch)` (0-based)
    runs on every rank before each epoch that is trained, resumed ones included (e.g. a loss whose
    terms depend on the epoch). The model may be wrapped in
    DistributedDataParallel; checkpoints hold the unwrapped state dict.
    """
    base_lrs = [group["lr"] for group in optimizer.param_groups]
    main = is_main_process()
    start_epoch, rows = 0, []
    if Path(resume_path).exists():
        state = load_checkpoint(resume_path, "resume")
        if state["fingerprint"] == fingerprint:
            unwrap(model).load_state_dict(state["model"])
            optimizer.load_state_dict(state["optimizer"])
            start_epoch, rows = state["epoch"], state["rows"]
    total = epochs * steps_per_epoch
    step = start_epoch * steps_per_epoch
    progress = Progress(total - step, desc, "steps", enabled=main)   # ETA over the steps left to train
    for epoch in range(start_epoch, epochs):
        if on_epoch_start is not None:
            on_epoch_start(epoch)
        rng = np.random.default_rng([seed, epoch])
        torch.manual_seed(int(rng.integers(2**31)))
        model.train()
        losses = []
        for batch in _take(make_batches(rng), steps_per_epoch):
            for group, base in zip(optimizer.param_groups, base_lrs):
                group["lr"] = poly_lr(base, step, total)
            loss = loss_fn(model, tuple(t.to(device) for t in batch))
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            losses.append(loss.item())
            step += 1
            progress.update(epoch=f"{epoch + 1}/{epochs}", loss=losses[-1])
        rows.append({"epoch": epoch + 1, "step": step, "loss": global_mean(float(np.sum(losses)), len(losses)),
                     "lr": optimizer.param_groups[0]["lr"]})
        if not main:
            continue
        if on_epoch_end is not None:
            rows[-1].update(on_epoch_end(unwrap(model), epoch + 1))
        print(f"{desc}: epoch {epoch + 1}/{epochs} " + " ".join(f"{k} {v:.4f}" for k, v in rows[-1].items()
                                                                 if k not in ("epoch", "step", "lr")), flush=True)
        save_checkpoint(resume_path, {"kind": "resume", "fingerprint": fingerprint, "epoch": epoch + 1,
                                      "rows": rows, "model": unwrap(model).state_dict(),
                                      "optimizer": optimizer.state_dict()})
    return rows


def finish_training(ckpt: str | Path, state: dict[str, Any], curve: str | Path, rows: list[dict[str, Any]]) -> None:
    """End of a training stage: the final checkpoint and the loss curve CSV, each written
    atomically, then the epoch checkpoint `<ckpt>.resume*` (of every phase) removed."""
    save_checkpoint(ckpt, state)
    write_csv(curve, rows)
    for resume in Path(ckpt).parent.glob(f"{Path(ckpt).name}.resume*"):
        resume.unlink(missing_ok=True)


def _take(batches: Iterable[Batch], n: int) -> Iterator[Batch]:
    for i, batch in enumerate(batches):
        if i == n:
            return
        yield batch


def pick_device() -> torch.device:
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")
