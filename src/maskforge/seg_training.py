"""What the segmentation stage trains for `seg.method`: the model's branch, the loss, the batches.

- deeplab: cross entropy on the masks of the pixel-labelled images (`seg.labelled_fraction` of the
  store's train images, all by default), with `seg.psl.enabled` AE-PSL's online PSL after its
  warm-up (`maskforge.segmentation.OnlinePSL`).
- pseudoseg: PseudoSeg (`maskforge.pseudoseg`) on those pixel-labelled images plus the image labels
  of every train image of the store; an epoch is one pass over all of them.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import partial
from typing import Any, Callable, Iterable, Mapping

import numpy as np
import torch

from maskforge.pseudoseg import PseudoSegParams, pseudoseg_batches, pseudoseg_loss
from maskforge.segmentation import (OnlinePSL, TrainingSet, labelled_split, segmentation_loss, steps_per_epoch,
                                    training_batches)

__all__ = ["TrainingPlan", "check_seg_params", "plan_training"]


@dataclass(frozen=True)
class TrainingPlan:
    branch: str | None                                   # DeepLab's branch: None, "psl" or "pseudoseg"
    attention_dim: int                                   # PseudoSeg's self-attention size (unused otherwise)
    labelled_ids: list[str]                              # the images whose masks are used
    num_images: int                                      # images an epoch passes over
    loss_fn: Callable[[torch.nn.Module, tuple[torch.Tensor, ...]], torch.Tensor]
    make_batches: Callable[[np.random.Generator, int, int], Iterable[tuple[torch.Tensor, ...]]]  # (rng, rank, world)
    on_epoch_start: Callable[[int], None] | None

    def steps_per_epoch(self, batch_size: int, world_size: int) -> int:
        return steps_per_epoch(self.num_images, batch_size, world_size)


def check_seg_params(seg: Mapping[str, Any]) -> None:
    """Combinations the schema cannot express; ValueError naming the key and the fix."""
    if seg["psl"]["enabled"] and seg["method"] != "deeplab":
        raise ValueError(f"seg.psl.enabled: online PSL is a deeplab option, seg.method is {seg['method']!r}"
                         " — set seg.psl.enabled: false or seg.method: deeplab")
    if seg["psl"]["enabled"] and seg["psl"]["start_epoch"] >= seg["train"]["epochs"]:
        raise ValueError(f"seg.psl.start_epoch {seg['psl']['start_epoch']} is not below seg.train.epochs "
                         f"{seg['train']['epochs']}: J(f, Ŝ) would never enter the loss — lower it")


def plan_training(seg: Mapping[str, Any], data: TrainingSet) -> TrainingPlan:
    """The plan for the `seg` params section on the store's train images `data`."""
    check_seg_params(seg)
    train = seg["train"]
    labelled_ids, _ = labelled_split(data.ids, seg["labelled_fraction"], train["seed"])
    labelled = data.subset(labelled_ids)
    crops = {"batch_size": train["batch_size"], "crop_size": train["crop_size"],
             "scale_range": tuple(train["scale_range"])}
    if seg["method"] == "pseudoseg":
        params = PseudoSegParams.from_params(seg["pseudoseg"])
        return TrainingPlan(
            "pseudoseg", params.attention_dim, labelled_ids, len(data.ids), partial(pseudoseg_loss, params=params),
            lambda rng, rank, world: pseudoseg_batches(labelled, data, params, rng=rng, rank=rank, world_size=world,
                                                       **crops),
            None)
    psl = seg["psl"]
    loss = OnlinePSL(psl["start_epoch"], psl["weight"], psl["pixels"], psl["confidence"]) if psl["enabled"] else None
    return TrainingPlan(
        "psl" if loss else None, seg["pseudoseg"]["attention_dim"], labelled_ids, len(labelled_ids),
        loss or segmentation_loss,
        lambda rng, rank, world: training_batches(labelled.images, labelled.masks, labelled.labels, rng=rng, rank=rank,
                                                  world_size=world, **crops),
        loss.set_epoch if loss else None)
