"""Run the CAM + AE stages in DAG order through their main()s, as both engines call them; score helpers."""

import json
from pathlib import Path

import numpy as np
import yaml

from maskforge.config import load_config
from maskforge.data.manifest import Manifest
from maskforge.metrics import ConfusionMatrix
from stages import (assemble_ae, crf, erase, evaluate, evaluate_cam, evaluate_saliency, make_cam, prepare, saliency,
                    seeds, train_cam)


def run_cam_pipeline(root: Path, overlays: list, rounds: int, refine: bool = True) -> dict[str, str]:
    """params.yaml + overlays → every store and metrics file of the graph (`rounds` AE rounds) under root;
    without `refine`, only the CAM/AE part (no saliency, assembly or CRF)."""
    root.mkdir(parents=True, exist_ok=True)
    params = root / "params.yaml"
    params.write_text(yaml.safe_dump(load_config("params.yaml", overlays)))
    p = ["--params-file", str(params)]
    d = {"prepared": str(root / "prepared")}
    prepare.main(p + ["--prepared", d["prepared"]])
    for r in range(rounds):
        previous = ["--regions", d[f"regions_r{r - 1}"]] if r else []
        d.update({f"cam_r{r}.pt": str(root / f"cam_r{r}.pt"), f"curve_r{r}.csv": str(root / f"curve_r{r}.csv"),
                  f"cam_r{r}": str(root / f"cam_r{r}"), f"regions_r{r}": str(root / f"regions_r{r}")})
        train_cam.main(p + ["--prepared", d["prepared"], *previous, "--ckpt", d[f"cam_r{r}.pt"], "--curve", d[f"curve_r{r}.csv"]])
        make_cam.main(p + ["--prepared", d["prepared"], "--ckpt", d[f"cam_r{r}.pt"], *previous, "--store", d[f"cam_r{r}"]])
        erase.main(p + ["--cams", d[f"cam_r{r}"], *previous, "--store", d[f"regions_r{r}"]])
        d[f"regions_r{r}.json"] = str(root / f"regions_r{r}.json")
        evaluate.main(p + ["--prepared", d["prepared"], "--store", d[f"regions_r{r}"], "--metrics", d[f"regions_r{r}.json"]])
    d.update({"seeds": str(root / "seeds"), "seeds.json": str(root / "seeds.json"),
              "cam_r0.json": str(root / "cam_r0.json"), "sweep.csv": str(root / "sweep.csv")})
    seeds.main(p + ["--cams", d["cam_r0"], "--store", d["seeds"]])
    evaluate.main(p + ["--prepared", d["prepared"], "--store", d["seeds"], "--metrics", d["seeds.json"]])
    evaluate_cam.main(p + ["--prepared", d["prepared"], "--store", d["cam_r0"], "--metrics", d["cam_r0.json"],
                           "--sweep", d["sweep.csv"]])
    if not refine:
        return d
    for name in ("saliency", "assemble_ae", "seeds_crf", "assemble_ae_crf"):
        d[name], d[f"{name}.json"] = str(root / name), str(root / f"{name}.json")
    d["ignored.json"] = str(root / "ignored.json")
    saliency.main(p + ["--prepared", d["prepared"], "--store", d["saliency"]])
    evaluate_saliency.main(p + ["--prepared", d["prepared"], "--store", d["saliency"], "--metrics", d["saliency.json"]])
    assemble_ae.main(p + ["--regions", d[f"regions_r{rounds - 1}"], "--saliency", d["saliency"], "--store",
                          d["assemble_ae"], "--ignored", d["ignored.json"]])
    for source in ("seeds", "assemble_ae"):
        crf.main(p + ["--prepared", d["prepared"], "--masks", d[source], "--store", d[f"{source}_crf"]])
    for name in ("assemble_ae", "seeds_crf", "assemble_ae_crf"):
        evaluate.main(p + ["--prepared", d["prepared"], "--store", d[name], "--metrics", d[f"{name}.json"]])
    return d


def trivial_baseline_mious(manifest: Manifest) -> dict[str, float]:
    """mIoU on train of two label-aware baselines: all background, and the whole image as the
    image's first labelled class."""
    scores = {}
    for name, fill in {"all_background": lambda i: 0, "whole_image_first_label": lambda i: manifest.label_ids(i)[0]}.items():
        matrix = ConfusionMatrix(len(manifest.classes))
        for image_id in manifest.ids("train"):
            gt = manifest.load_mask(image_id)
            matrix.update(np.full(gt.shape, fill(image_id), np.uint8), gt)
        scores[name] = matrix.miou()
    return scores


def metric(path, key):
    return json.loads(Path(path).read_text())[key]
