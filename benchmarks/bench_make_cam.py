"""make_cam throughput: its multi-scale + flip inference vs a per-image, per-scale, per-flip loop.

Same model (CAMNet on EfficientNet-Lite0 with ImageNet weights), same images (MSRC train when
../shared/datasets/msrc exists, else synthetic), same scales. Prints images/s for both and the
largest difference between their CAMs, for each cam.infer.batch_size given.

    python benchmarks/bench_make_cam.py [--images 32] [--scales 1.0 0.5 1.5 2.0] [--max-side 320] [--batches 1 8]
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from maskforge.augment import resize_longer_side
from maskforge.cam import multiscale_cams, same_size_batches
from maskforge.data.voc import read_voc
from maskforge.models.backbones import create_backbone
from maskforge.models.cam import CAMNet

MSRC = Path(__file__).resolve().parents[2] / "shared" / "datasets" / "msrc"


@torch.no_grad()
def per_image_loop(model: CAMNet, image: torch.Tensor, scales) -> torch.Tensor:
    """The straightforward way: one forward per image, scale and flip, contiguous NCHW."""
    h, w = image.shape[-2:]
    total = image.new_zeros((model.num_classes, h, w))
    for scale in scales:
        size = (max(1, round(h * scale)), max(1, round(w * scale)))
        x = F.interpolate(image[None], size=size, mode="bilinear", align_corners=False)
        for flip in (False, True):
            cam = model.cams(model.backbone.normalize(x.flip(-1) if flip else x))
            cam = cam.flip(-1) if flip else cam
            total += F.interpolate(cam, size=(h, w), mode="bilinear", align_corners=False)[0]
    return total


def load_images(n: int, max_side: int) -> list[torch.Tensor]:
    if MSRC.exists():
        manifest = read_voc(str(MSRC), splits={"train": "train", "val": "val"}, label_file=None)
        ids = manifest.ids("train")[:n]
        return [resize_longer_side(torch.tensor(manifest.load_image(i)).permute(2, 0, 1), max_side).float() for i in ids]
    generator = torch.Generator().manual_seed(0)
    return [torch.rand(3, 213, 320, generator=generator) * 255 for _ in range(n)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=32)
    parser.add_argument("--scales", type=float, nargs="+", default=[1.0, 0.5, 1.5, 2.0])
    parser.add_argument("--max-side", type=int, default=320)
    parser.add_argument("--batches", type=int, nargs="+", default=[1, 8], help="cam.infer.batch_size values")
    args = parser.parse_args()
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    images = load_images(args.images, args.max_side)
    model = CAMNet(create_backbone("efficientnet_lite0", "imagenet"), 15).eval().to(device)

    def sync():
        if device.type == "cuda":
            torch.cuda.synchronize()

    per_image_loop(model, images[0].to(device), args.scales[:1])     # warm-up
    sync()
    start = time.perf_counter()
    loop = [per_image_loop(model, x.to(device), args.scales) for x in images]
    sync()
    loop_s = time.perf_counter() - start

    model = model.to(memory_format=torch.channels_last)
    rows = [("per-image, per-scale, per-flip loop", loop_s, 0.0)]
    for batch_size in args.batches:
        batched: list[torch.Tensor | None] = [None] * len(images)
        start = time.perf_counter()
        for batch in same_size_batches([tuple(x.shape[-2:]) for x in images], batch_size):
            cams = multiscale_cams(model, torch.stack([images[i] for i in batch]).to(device), args.scales)
            for i, cam in zip(batch, cams):
                batched[i] = cam
        sync()
        diff = max((a - b).abs().max().item() / (a.abs().max().item() + 1e-6) for a, b in zip(loop, batched))
        rows.append((f"make_cam, batch_size {batch_size}", time.perf_counter() - start, diff))

    print(f"device: {device}, threads: {torch.get_num_threads()}, images: {len(images)}, "
          f"scales: {args.scales} + flip, max side {args.max_side}")
    print(f"{'method':<38}{'seconds':>9}{'images/s':>10}{'speed-up':>10}{'max rel. diff':>15}")
    for name, seconds, diff in rows:
        print(f"{name:<38}{seconds:>9.2f}{len(images) / seconds:>10.2f}{loop_s / seconds:>9.2f}x{diff:>15.1e}")


if __name__ == "__main__":
    main()
