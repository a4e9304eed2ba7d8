"""train_irn: train IRN's class-boundary branch (Ahn et al., CVPR 2019) on the mask store named
by irn.labels: IRN's IR labels (ir_labels) or another mask store of the run (255 = ignore).

The backbone (cam.backbone with cam.weights, output stride 16) is frozen; per backbone level a 1×1
conv + GroupNorm, upsampled to stride 4, fused by a 1×1 conv into the boundary map B. The loss is
IRN's class-boundary loss over the pixel pairs within irn.train.radius at stride 4: affinity
a_ij = 1 − max B on the line i→j is pulled up for pairs of one class (background pairs and
foreground pairs weighted half each) and down for pairs of two classes; pairs touching ignore
(255) are skipped. Images are resized so their longer side is at most irn.train.max_side, then
rescaled, flipped and cropped together with their labels. Plain SGD with poly LR, as IRN. A
checkpoint is saved every epoch next to the output (<ckpt>.resume); a killed run started again
resumes from it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import torch

from maskforge.augment import resize_longer_side
from maskforge.config import canonical_json
from maskforge.data.manifest import Manifest
from maskforge.irn import affinity_batches, boundary_loss
from maskforge.models.backbones import create_backbone
from maskforge.models.irn import BoundaryNet
from maskforge.store import input_digest, open_store
from maskforge.training import finish_training, fit, pick_device
from stages._stage import parse_stage_args, run_stage

OUTPUT_STRIDE = 16   # IRN's backbone strides (2, 2, 2, 1): layer4 at 1/16


def main(argv: Sequence[str] | None = None) -> None:
    args, params = parse_stage_args(__spec__.name, __doc__, argv)
    cam, train = params["cam"], params["irn"]["train"]
    manifest = Manifest.read(Path(args.prepared) / "manifest.json")
    labels = open_store(args.labels, kind="mask", manifest=manifest)
    ids = labels.ids
    images = [resize_longer_side(torch.tensor(manifest.load_image(i)).permute(2, 0, 1), train["max_side"]) for i in ids]
    masks = [resize_longer_side(torch.from_numpy(labels[i])[None], train["max_side"], mode="nearest")[0] for i in ids]

    torch.manual_seed(train["seed"])
    device = pick_device()
    model = BoundaryNet(create_backbone(cam["backbone"], cam["weights"], OUTPUT_STRIDE)).to(device)
    optimizer = torch.optim.SGD(model.trainable_parameters(), lr=train["lr"], weight_decay=train["weight_decay"])
    steps = -(-len(ids) // train["batch_size"])
    inputs = {"prepared": input_digest(args.prepared), "labels": input_digest(args.labels)}
    radius = train["radius"]
    rows = fit(model, optimizer,
               lambda net, batch: boundary_loss(net(net.backbone.normalize(batch[0])), batch[1], radius),
               lambda rng: affinity_batches(images, masks, batch_size=train["batch_size"], crop_size=train["crop_size"],
                                            scale_range=tuple(train["scale_range"]), rng=rng),
               epochs=train["epochs"], steps_per_epoch=steps, seed=train["seed"],
               resume_path=f"{args.ckpt}.resume", fingerprint=canonical_json({"params": params, "inputs": inputs}),
               device=device, desc=Path(args.ckpt).stem)
    finish_training(args.ckpt, {"kind": "irn", "backbone": cam["backbone"], "output_stride": OUTPUT_STRIDE,
                                "classes": labels.classes, "params": params, "inputs": inputs,
                                "model": model.state_dict()}, args.curve, rows)


if __name__ == "__main__":
    run_stage(main)
