"""train_cam: train the CAM classifier of one AE round with the seed method cam.method.

cam and gradcam: GAP + 1×1 classifier, multi-label soft margin; other methods: see
src/maskforge/cam_methods.py. The checkpoint records the method and its knobs.

Round 0 trains on the original images, round r > 0 on images whose regions mined in rounds < r
are filled with the mean pixel (AE-PSL). A checkpoint is saved every epoch next to the output
(<ckpt>.resume); a killed run started again resumes from it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import torch

from maskforge.augment import resize_longer_side
from maskforge.cam import training_batches
from maskforge.cam_methods import TrainingRun, build_network, checkpoint_fields, get_method, method_knobs
from maskforge.config import canonical_json
from maskforge.data.manifest import Manifest
from maskforge.erasing import round_image
from maskforge.store import input_digest, open_store
from maskforge.training import finish_training, pick_device
from stages._stage import parse_stage_args, run_stage


def main(argv: Sequence[str] | None = None) -> None:
    args, params = parse_stage_args(__spec__.name, __doc__, argv)
    cam, train = params["cam"], params["cam"]["train"]
    manifest = Manifest.read(Path(args.prepared) / "manifest.json")
    regions = open_store(args.regions, kind="region", manifest=manifest) if args.regions else None
    ids = manifest.ids("train")
    images = [resize_longer_side(torch.tensor(round_image(manifest, regions, i)).permute(2, 0, 1), train["max_side"])
              for i in ids]
    labels = torch.stack([torch.from_numpy(manifest.multi_hot(i)) for i in ids])

    torch.manual_seed(train["seed"])
    device = pick_device()
    model = build_network(cam, len(manifest.classes) - 1, cam["weights"], train["freeze_bn"]).to(device)
    inputs = {"prepared": input_digest(args.prepared), **({"regions": input_digest(args.regions)} if args.regions else {})}
    run = TrainingRun(
        make_batches=lambda rng: training_batches(images, labels, batch_size=train["batch_size"],
                                                  crop_size=train["crop_size"], scale_range=tuple(train["scale_range"]),
                                                  jitter=train["color_jitter"], rng=rng),
        lr=train["lr"], weight_decay=train["weight_decay"], epochs=train["epochs"],
        steps_per_epoch=-(-len(ids) // train["batch_size"]), seed=train["seed"], resume_path=f"{args.ckpt}.resume",
        fingerprint=canonical_json({"params": params, "inputs": inputs}), device=device, desc=Path(args.ckpt).stem)
    rows = get_method(cam["method"]).train(model, method_knobs(cam), run)
    finish_training(args.ckpt, {"kind": "cam", **checkpoint_fields(cam), "classes": manifest.classes,
                                "params": params, "inputs": inputs, "model": model.state_dict()}, args.curve, rows)


if __name__ == "__main__":
    run_stage(main)
