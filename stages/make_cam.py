"""make_cam: multi-scale + flip CAMs of one AE round's classifier for every training image.

The maps are those of cam.method (the checkpoint must have been trained with it): CAM, Grad-CAM
or another method's (src/maskforge/cam_methods.py); the store's provenance records the method.

Round r > 0 infers on the images its classifier was trained on (regions mined so far erased).
CAMs are kept for the labelled classes only, each divided by its max, and written as a float16
CAM store at the image's full resolution. Same-size images share a batch (cam.infer.batch_size).
With --part i (cam.infer.shards = n > 1) only the i-th of n contiguous id ranges is inferred and
--store is that part's folder <store>/part-<i>-of-<n>; the n parts together read as one store.
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import torch
import torch.nn.functional as F

from maskforge.augment import resize_longer_side
from maskforge.cam import multiscale_cams, normalise_max, part_of, same_size_batches
from maskforge.cam_methods import get_method, method_knobs, network_from_checkpoint
from maskforge.config import ConfigError
from maskforge.checkpoint import load_model
from maskforge.data.manifest import Manifest
from maskforge.erasing import round_image
from maskforge.models.inference import fold_batchnorm, fused_cams
from maskforge.progress import Progress
from maskforge.store import StoreWriter, input_digest, open_store
from maskforge.training import pick_device
from stages._stage import parse_stage_args, run_stage


def main(argv: Sequence[str] | None = None) -> None:
    args, params = parse_stage_args(__spec__.name, __doc__, argv)
    cam, infer = params["cam"], params["cam"]["infer"]
    manifest = Manifest.read(Path(args.prepared) / "manifest.json")
    regions = open_store(args.regions, kind="region", manifest=manifest) if args.regions else None
    device = pick_device()
    model = load_model(args.ckpt, "cam", lambda state: network_from_checkpoint(
        state, len(manifest.classes) - 1, cam["method"]), device)
    model = fold_batchnorm(model).to(memory_format=torch.channels_last)   # in place: no copy of a fresh model
    model = get_method(cam["method"]).inference_view(model, method_knobs(cam))
    model = fused_cams(model)        # CPU Lite CAM: fused 1×1 GEMMs and oneDNN convs; else unchanged
    ids = manifest.ids("train")
    if args.part is not None:
        try:
            ids = part_of(ids, args.part, infer["shards"])
        except ValueError as exc:
            raise ConfigError(f"make_cam --part: {exc} (cam.infer.shards)") from None
    sizes = [resize_longer_side(torch.empty(1, r.height, r.width), infer["max_side"]).shape[-2:]
             for r in (manifest.images[i] for i in ids)]
    inputs = {"prepared": input_digest(args.prepared), "ckpt": input_digest(args.ckpt),
              **({"regions": input_digest(args.regions)} if args.regions else {})}
    progress = Progress(len(ids), "make_cam" + (f" part {args.part}" if args.part is not None else ""))
    with StoreWriter(args.store, kind="cam", stage="make_cam", params=params, inputs=inputs, manifest=manifest.sha256,
                     classes=manifest.classes) as writer:
        for batch in same_size_batches(sizes, infer["batch_size"]):
            full = [torch.tensor(round_image(manifest, regions, ids[i])).permute(2, 0, 1) for i in batch]
            images = torch.stack([resize_longer_side(x, infer["max_side"]) for x in full]).float().to(device)
            labels = [manifest.label_ids(ids[i]).tolist() for i in batch]
            present = sorted(set().union(*labels))          # only these maps are upsampled
            cams = multiscale_cams(model, images, infer["scales"], classes=present)
            for i, image, cam, own in zip(batch, full, cams, labels):
                cam = cam[[present.index(c) for c in own]]
                cam = F.interpolate(cam[None], size=image.shape[-2:], mode="bilinear", align_corners=False)[0]
                writer.add(ids[i], normalise_max(cam).cpu().numpy(), classes=own)
            progress.update(len(batch))
    print(f"make_cam: {len(ids)} images, scales {infer['scales']} + flip"
          + (f", part {args.part} of {infer['shards']}" if args.part is not None else ""), flush=True)


if __name__ == "__main__":
    run_stage(main)
