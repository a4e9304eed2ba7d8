"""Peak RSS of the make_cam, seeds, crf and refine_irn stages at 1× and 4× the MSRC image count.

A stage that streams (reads an image, writes its result, forgets it) has the same peak memory
at any image count; one that collects results grows with it. The 4× dataset repeats each MSRC
train image four times under new ids (symlinks). Each stage runs as `python -m stages.<name>`
in its own process, which reports its peak RSS (ru_maxrss; torch and the model included).
Checkpoints are untrained (ImageNet backbone, random heads): memory does not depend on weights.
Cheaper-per-image settings than configs/msrc.yaml (the point is how memory grows, not speed):
CAM scale 1.0 only, CRF 2 iterations in 1 process, 2^4 random-walk steps.

    python benchmarks/bench_stage_memory.py [--copies 1 4] [--images 296]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import runpy
import subprocess
import sys
import tempfile
from pathlib import Path

import yaml

from _table import Row, print_rows

REPO = Path(__file__).resolve().parents[1]
MSRC = REPO.parent / "shared" / "datasets" / "msrc"
STAGES = ("make_cam", "seeds", "crf", "refine_irn")


def repeated_dataset(dest: Path, copies: int, images: int) -> None:
    """MSRC in VOC layout with the first `images` train ids repeated `copies` times (val: the first 2)."""
    train = (MSRC / "ImageSets/Segmentation/train.txt").read_text().split()[:images]
    val = (MSRC / "ImageSets/Segmentation/val.txt").read_text().split()[:2]
    (dest / "JPEGImages").mkdir(parents=True)
    (dest / "SegmentationClass").mkdir()
    (dest / "ImageSets/Segmentation").mkdir(parents=True)
    (dest / "classes.json").symlink_to(MSRC / "classes.json")
    ids = []
    for c in range(copies):
        for i in train:
            ids.append(f"{i}-c{c}")
            (dest / f"JPEGImages/{ids[-1]}.jpg").symlink_to(MSRC / f"JPEGImages/{i}.jpg")
            (dest / f"SegmentationClass/{ids[-1]}.png").symlink_to(MSRC / f"SegmentationClass/{i}.png")
    for i in val:
        (dest / f"JPEGImages/{i}.jpg").symlink_to(MSRC / f"JPEGImages/{i}.jpg")
        (dest / f"SegmentationClass/{i}.png").symlink_to(MSRC / f"SegmentationClass/{i}.png")
    (dest / "ImageSets/Segmentation/train.txt").write_text("\n".join(ids) + "\n")
    (dest / "ImageSets/Segmentation/val.txt").write_text("\n".join(val) + "\n")


def untrained_checkpoints(work: Path, classes: list[str]) -> None:
    import torch

    from maskforge.cam_methods import checkpoint_fields
    from maskforge.checkpoint import save_checkpoint
    from maskforge.models.backbones import create_backbone
    from maskforge.models.cam import CAMNet
    from maskforge.models.irn import BoundaryNet

    torch.manual_seed(0)
    cam = CAMNet(create_backbone("efficientnet_lite0", "imagenet", 16), len(classes) - 1)
    fields = checkpoint_fields({"method": "cam", "backbone": "efficientnet_lite0", "output_stride": 16})
    save_checkpoint(work / "cam.pt", {"kind": "cam", **fields, "classes": classes, "model": cam.state_dict()})
    irn = BoundaryNet(create_backbone("efficientnet_lite0", "imagenet", 16))
    save_checkpoint(work / "irn.pt", {"kind": "irn", "backbone": "efficientnet_lite0", "output_stride": 16,
                                      "classes": classes, "model": irn.state_dict()})


def stage_rss(module: str, args: list[str], cwd: Path, out: Path) -> int:
    """Run `python -m <module> args` in `cwd`, in a child that reports its peak RSS (bytes) in `out`."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    run = subprocess.run([sys.executable, __file__, "--child", module, str(out), *args], cwd=cwd, env=env,
                         capture_output=True, text=True)
    if run.returncode != 0:
        raise SystemExit(f"{module} failed:\n{run.stdout[-2000:]}\n{run.stderr[-2000:]}")
    return json.loads(out.read_text())["maxrss_kib"] * 1024


def child(module: str, out: str, args: list[str]) -> None:
    sys.argv = [module, *args]
    try:
        runpy.run_module(module, run_name="__main__", alter_sys=True)
    finally:
        Path(out).write_text(json.dumps({"maxrss_kib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss}))


def measure(copies: list[int], images: int) -> dict[int, dict[str, int]]:
    """{copies: {stage: peak RSS bytes}}."""
    from maskforge.config import load_config

    if not MSRC.exists():
        raise SystemExit(f"{MSRC} not found: this benchmark needs the MSRC dataset in VOC layout")
    result = {}
    for count in copies:
        with tempfile.TemporaryDirectory() as tmp:
            work = Path(tmp)
            repeated_dataset(work / "msrc", count, images)
            params = load_config(REPO / "params.yaml", [REPO / "configs/msrc.yaml"])
            params["dataset"]["root"] = str(work / "msrc")
            params["cam"]["infer"]["scales"] = [1.0]
            params["crf"].update(iterations=2, workers=1)
            params["irn"]["infer"]["exp_times"] = 4
            (work / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
            common = ["--params-file", str(work / "params.yaml")]
            subprocess.run([sys.executable, "-m", "stages.prepare", *common, "--prepared", str(work / "prepared")],
                           cwd=REPO, check=True, capture_output=True)
            classes = json.loads((work / "prepared/manifest.json").read_text())["classes"]
            untrained_checkpoints(work, classes)
            p = ["--prepared", str(work / "prepared")]
            runs = {"make_cam": [*p, "--ckpt", str(work / "cam.pt"), "--store", str(work / "cam")],
                    "seeds": ["--cams", str(work / "cam"), "--store", str(work / "seeds")],
                    "crf": [*p, "--masks", str(work / "seeds"), "--store", str(work / "seeds_crf")],
                    "refine_irn": [*p, "--ckpt", str(work / "irn.pt"), "--cams", str(work / "cam"),
                                   "--store", str(work / "irn")]}
            result[count] = {name: stage_rss(f"stages.{name}", [*common, *runs[name]], REPO, work / "rss.json") for name in STAGES}
    return result


def table_rows(tiny: bool) -> list[Row]:
    """Rows for benchmarks/run_all.py: 1× vs 4× of 24 MSRC images (tiny: 2)."""
    images = 2 if tiny else 24
    m = measure([1, 4], images)
    return [Row(f"{name}: peak RSS at {4 * images} vs {images} images", "", "", None,
                f"{m[4][name] / 2**20:.0f} vs {m[1][name] / 2**20:.0f} MiB",
                f"growth {(m[4][name] - m[1][name]) / 2**20:+.0f} MiB") for name in STAGES]


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "--child":
        child(sys.argv[2], sys.argv[3], sys.argv[4:])
        return
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--copies", type=int, nargs="+", default=[1, 4])
    parser.add_argument("--images", type=int, default=296, help="MSRC train images per copy")
    args = parser.parse_args()
    m = measure(args.copies, args.images)
    print(f"peak RSS (MiB) per stage; {args.images} MSRC train images × copies")
    print_rows([Row(f"{name}", "", "", None, " / ".join(f"{c}×: {m[c][name] / 2**20:.0f} MiB" for c in args.copies),
                    "") for name in STAGES])


if __name__ == "__main__":
    main()
