"""predict: the trained DeepLab's masks for the val split.

Each image is resized so its longer side is at most seg.infer.max_side; the softmax is averaged
over seg.infer.scales, each with a horizontal flip, and upsampled to full resolution. With
seg.infer.crf a dense CRF (the crf section's settings) over all classes refines it (no image
labels at test time). AE-PSL's test threshold: pixels whose best class probability is below
seg.infer.confidence become background. Written as a mask store (--store) and as VOC palette
PNGs <id>.png in --pngs (the folder is replaced whole).
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
import torch.nn.functional as F

from maskforge.atomic import temp_path
from maskforge.augment import resize_longer_side
from maskforge.checkpoint import CheckpointError, load_model
from maskforge.crf import CRFParams
from maskforge.parallel import map_in_pool
from maskforge.data.manifest import Manifest
from maskforge.models.backbones import create_backbone
from maskforge.models.deeplab import DeepLab
from maskforge.progress import track
from maskforge.segmentation import labels_from_probs, predict_probs
from maskforge.store import StoreWriter, input_digest, open_store
from maskforge.store_png import export_pngs
from maskforge.training import pick_device
from stages._stage import parse_stage_args, run_stage


def seg_network(state: dict, classes: list[str]) -> DeepLab:
    """The untrained DeepLab of a seg checkpoint, which must be trained on `classes`."""
    if state["classes"] != classes:
        raise CheckpointError(f"trained on classes {state['classes']}, the dataset has {classes} — retrain on this dataset")
    return DeepLab(create_backbone(state["backbone"], None, state["output_stride"]), len(classes), state["branch"],
                   state["attention_dim"])


def refine(item: tuple[np.ndarray, np.ndarray, float, CRFParams | None]) -> np.ndarray:
    return labels_from_probs(*item)


def main(argv: Sequence[str] | None = None) -> None:
    args, params = parse_stage_args(__spec__.name, __doc__, argv)
    infer = params["seg"]["infer"]
    crf = CRFParams.from_params(params["crf"]) if infer["crf"] else None
    manifest = Manifest.read(Path(args.prepared) / "manifest.json")
    device = pick_device()
    model = load_model(args.ckpt, "seg", lambda state: seg_network(state, manifest.classes), device)
    ids = manifest.ids("val")

    def scored():
        for image_id in ids:
            image = manifest.load_image(image_id)
            x = resize_longer_side(torch.tensor(image).permute(2, 0, 1), infer["max_side"]).float()[None]
            probs = predict_probs(model, x.to(device), infer["scales"])
            probs = F.interpolate(probs, size=image.shape[:2], mode="bilinear", align_corners=False)[0]
            yield image, probs.cpu().numpy(), infer["confidence"], crf

    inputs = {"prepared": input_digest(args.prepared), "ckpt": input_digest(args.ckpt)}
    with StoreWriter(args.store, kind="mask", stage="predict", params=params, inputs=inputs, manifest=manifest.sha256,
                     classes=manifest.classes) as writer:
        masks = map_in_pool(refine, scored(), params["crf"]["workers"] if crf else 1)
        for image_id, mask in zip(ids, track(masks, len(ids), "predict")):
            writer.add(image_id, mask)
    pngs = Path(args.pngs)
    tmp = temp_path(pngs)
    with open_store(args.store, kind="mask") as store:
        export_pngs(store, tmp)
    shutil.rmtree(pngs, ignore_errors=True)
    tmp.rename(pngs)
    print(f"predict: {len(ids)} val images, scales {infer['scales']} + flip, crf {infer['crf']}", flush=True)


if __name__ == "__main__":
    run_stage(main)
