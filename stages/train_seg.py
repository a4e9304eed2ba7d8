"""train_seg: train DeepLabV3 (torchvision's, on seg.backbone) on a mask store of the train split.

--labels is the mask store (seg.labels names it; 255 = ignore). seg.labelled_fraction of its train
images (drawn from seg.train.seed) give their masks. Images are resized so their longer side is at
most seg.train.max_side, then randomly rescaled (seg.train.scale_range), flipped and cropped
(seg.train.crop_size; padding ignored).

seg.method deeplab: loss AE-PSL's J(f, S), the mean −log softmax over labelled pixels (= cross
entropy ignoring 255), on the pixel-labelled images only; with seg.psl.enabled, from epoch
seg.psl.start_epoch on also seg.psl.weight · J(f, Ŝ) for the online label Ŝ = argmax([1, v] ⊗ f)
over background and the image's labels, plus the classification branch's multi-label loss
(from the first epoch). seg.method pseudoseg: PseudoSeg — supervised loss on the pixel-labelled
crops, multi-label loss on all train images, and the fused decoder + self-attention Grad-CAM
pseudo label of each weak view supervising its strong view (colour jitter + cut-out), seg.pseudoseg.

SGD (momentum 0.9), poly LR: the backbone at seg.train.lr, the ASPP head (and branch) at 10x. The
last incomplete batch of an epoch is dropped.

--curve gets one row per epoch: epoch, step, loss, lr, val_miou (single scale, no flip, on the
val ids with GT). A checkpoint is saved every epoch next to the output (<ckpt>.resume); a killed
run started again resumes from it. With more than one GPU visible the stage re-launches itself
under torchrun, one DDP process per GPU (seg.train.batch_size is the global batch).
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import torch

from maskforge.augment import resize_longer_side
from maskforge.checkpoint import save_checkpoint
from maskforge.config import ConfigError, canonical_json
from maskforge.data.manifest import Manifest
from maskforge.distributed import finish, init_distributed, relaunch_under_torchrun, unwrap, wrap_model
from maskforge.models.backbones import create_backbone
from maskforge.models.deeplab import DeepLab
from maskforge.metric_files import write_csv
from maskforge.seg_training import plan_training
from maskforge.segmentation import load_training_set, validation_miou
from maskforge.store import input_digest
from maskforge.training import fit
from stages._stage import parse_stage_args, run_stage


def main(argv: Sequence[str] | None = None) -> None:
    args, params = parse_stage_args(__spec__.name, __doc__, argv)   # bad arguments fail here, once
    code = relaunch_under_torchrun(__spec__.name, argv)
    if code is not None:
        raise SystemExit(code)
    seg, train = params["seg"], params["seg"]["train"]
    manifest = Manifest.read(Path(args.prepared) / "manifest.json")
    data = load_training_set(manifest, args.labels, train["max_side"])
    try:
        plan = plan_training(seg, data)
    except ValueError as exc:
        raise ConfigError(str(exc)) from None
    ctx = init_distributed()
    try:
        steps = plan.steps_per_epoch(train["batch_size"], ctx.world_size)
    except ValueError as exc:
        raise ConfigError(f"seg.train.batch_size: {exc}") from None
    val_ids = [i for i in manifest.ids("val") if manifest.images[i].mask is not None] if ctx.is_main else []
    val_images = [resize_longer_side(torch.tensor(manifest.load_image(i)).permute(2, 0, 1), train["max_side"])
                  for i in val_ids]
    val_masks = [manifest.load_mask(i) for i in val_ids]

    torch.manual_seed(train["seed"])
    model = DeepLab(create_backbone(seg["backbone"], seg["weights"], seg["output_stride"]), len(manifest.classes),
                    plan.branch, plan.attention_dim).to(ctx.device)
    model = wrap_model(model, ctx)
    optimizer = torch.optim.SGD(unwrap(model).param_groups(train["lr"], train["weight_decay"]), lr=train["lr"],
                                momentum=0.9)
    inputs = {"prepared": input_digest(args.prepared), "labels": input_digest(args.labels)}
    rows = fit(model, optimizer, plan.loss_fn, lambda rng: plan.make_batches(rng, ctx.rank, ctx.world_size),
               epochs=train["epochs"], steps_per_epoch=steps, seed=train["seed"],
               resume_path=f"{args.ckpt}.resume", fingerprint=canonical_json({"params": params, "inputs": inputs}),
               device=ctx.device, desc=Path(args.ckpt).stem,
               on_epoch_end=(lambda net, epoch: {"val_miou": validation_miou(net, val_images, val_masks, ctx.device)})
               if val_ids else None, on_epoch_start=plan.on_epoch_start)
    if ctx.is_main:
        save_checkpoint(args.ckpt, {"kind": "seg", "backbone": seg["backbone"], "output_stride": seg["output_stride"],
                                    "branch": plan.branch, "attention_dim": plan.attention_dim,
                                    "classes": manifest.classes, "params": params,
                                    "inputs": inputs, "model": unwrap(model).state_dict()})
        write_csv(args.curve, rows)
        Path(f"{args.ckpt}.resume").unlink(missing_ok=True)
        print(f"train_seg: {seg['method']}, {len(plan.labelled_ids)} pixel-labelled of {len(data.ids)} images, "
              f"{plan.num_images} per epoch, {ctx.world_size} process(es), {len(rows)} epochs", flush=True)
    finish(ctx)


if __name__ == "__main__":
    run_stage(main)
