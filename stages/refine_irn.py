"""refine_irn: IRN's pseudo masks (Ahn et al., CVPR 2019, step/make_sem_seg_labels.py) for every
image of the round-0 CAM store.

Per image: the class-boundary map B of the trained branch (irn checkpoint) at stride 4 of the image
resized to longer side irn.infer.max_side, from the mean of the logits of the image and of its
horizontal flip; the CAMs resized to that grid; the random walk x · T^(2^exp_times) with
x = CAM ⊙ (1 − B) and T the column-normalised affinities (1 − max B on the line i→j)^beta within
irn.infer.radius, applied as a radius-limited stencil (never an n×n matrix); the scores upsampled
to the full image, divided by their max, background score irn.infer.bg_score prepended, argmax.
With irn.infer.bg_power α set, the background channel (1 − max CAM)^α (AffinityNet, Ahn & Kwak
2018) is walked with the CAMs instead and the argmax taken over the walked channels.
Written as a mask store.
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

from maskforge.checkpoint import load_model
from maskforge.data.manifest import Manifest
from maskforge.memory import return_free_memory
from maskforge.models.backbones import create_backbone
from maskforge.models.irn import BoundaryNet
from maskforge.progress import track
from maskforge.randomwalk import irn_mask
from maskforge.store import StoreWriter, input_digest, open_store
from maskforge.training import pick_device
from stages._stage import parse_stage_args, run_stage


def main(argv: Sequence[str] | None = None) -> None:
    args, params = parse_stage_args(__spec__.name, __doc__, argv)
    infer = params["irn"]["infer"]
    manifest = Manifest.read(Path(args.prepared) / "manifest.json")
    cams = open_store(args.cams, kind="cam", manifest=manifest)
    device = pick_device()
    model = load_model(args.ckpt, "irn", lambda state: BoundaryNet(create_backbone(state["backbone"], None,
                                                                                     state["output_stride"])), device)
    inputs = {"prepared": input_digest(args.prepared), "ckpt": input_digest(args.ckpt), "cams": input_digest(args.cams)}
    with StoreWriter(args.store, kind="mask", stage="refine_irn", params=params, inputs=inputs, manifest=manifest.sha256,
                     classes=cams.classes) as writer:
        for image_id in track(cams.ids, len(cams.ids), "refine_irn (random walk)"):
            writer.add(image_id, irn_mask(model, manifest.load_image(image_id), cams[image_id],
                                          cams.label_classes(image_id).tolist(), **infer))
            return_free_memory()       # else RSS grows with the image count (heap holes: maskforge.memory)
    print(f"refine_irn: {len(cams.ids)} images, 2^{infer['exp_times']} random-walk steps", flush=True)


if __name__ == "__main__":
    run_stage(main)
