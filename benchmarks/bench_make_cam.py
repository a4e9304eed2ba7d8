"""make_cam throughput: its CAM inference vs a per-image, per-scale, per-flip loop, step by step.

Same model (CAMNet on EfficientNet-Lite0 with ImageNet weights and a fixed random classifier, 15
classes as MSRC), same MSRC train images and labels, same scales (configs/msrc.yaml: max side
224, scales 1.0 0.5 1.5). Each variant turns resized images into what make_cam stores: the
labelled classes' CAMs at full image size, each divided by its max. The steps are cumulative:

  loop       one forward per image, scale and flip, contiguous NCHW, every class map upsampled
  batched    image + flip in one channels_last batch per scale (maskforge.multiscale), inference_mode
  labelled   + only the labelled classes' maps upsampled (multiscale_cams(classes=...))
  bn-folded  + BatchNorm folded into the convs (inference_copy)
  fused      + 1×1 convs as GEMMs with bias/residual/ReLU6 fused, oneDNN stem and depthwise convs
               with ReLU6 fused (fused_cams(inference_copy): what the make_cam stage runs on CPU)
  floor      not CAMs: only the convolutions of a fused pass, each 1×1 conv as a bare GEMM (no bias,
             no activation), the others as fused's oneDNN kernels, on inputs of the pass's shapes;
             what any implementation on these kernels needs at least, so loop / floor bounds the ratio

The machine is shared, so ratios come from interleaved repetitions in one process (every variant
once per repetition, order rotated; ratio = loop seconds / variant seconds of the same repetition,
median over repetitions): contention slows neighbouring runs alike and cancels in the ratio.

    python benchmarks/bench_make_cam.py [--images 16] [--repeats 5] [--batches 1 8]
"""

from __future__ import annotations

import argparse
import copy
import resource
import statistics
import time
from pathlib import Path
from collections import Counter
from typing import Callable

import torch
import torch.nn.functional as F

from _table import Row, print_rows
from maskforge.augment import resize_longer_side
from maskforge.cam import multiscale_cams, normalise_max, same_size_batches
from maskforge.data.voc import read_voc
from maskforge.models.backbones import create_backbone
from maskforge.models.cam import CAMNet
from maskforge.models.inference import _relu6_conv, fused_cams, inference_copy

MSRC = Path(__file__).resolve().parents[2] / "shared" / "datasets" / "msrc"
Images = list[tuple[torch.Tensor, tuple[int, int], list[int]]]   # (resized float 3×h×w, full size, labels)


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


def stored(cam: torch.Tensor, full: tuple[int, int]) -> torch.Tensor:
    """What make_cam writes from a summed CAM at the resized size: full size, each map / its max."""
    return normalise_max(F.interpolate(cam[None], size=full, mode="bilinear", align_corners=False)[0])


def run_loop(model: CAMNet, images: Images, scales) -> list[torch.Tensor]:
    return [stored(per_image_loop(model, x, scales)[[c - 1 for c in labels]], full) for x, full, labels in images]


def run_batched(model: torch.nn.Module, images: Images, scales, batch_size: int, labelled: bool) -> list[torch.Tensor]:
    """make_cam's loop: same-size batches, multiscale_cams (all classes, or the batch's labelled ones)."""
    out: list[torch.Tensor | None] = [None] * len(images)
    for batch in same_size_batches([tuple(x.shape[-2:]) for x, _, _ in images], batch_size):
        present = sorted(set().union(*(images[i][2] for i in batch))) if labelled else None
        cams = multiscale_cams(model, torch.stack([images[i][0] for i in batch]), scales, classes=present)
        for i, cam in zip(batch, cams):
            own = images[i][2]
            out[i] = stored(cam[[present.index(c) if labelled else c - 1 for c in own]], images[i][1])
    return out


def conv_kernels(model: CAMNet, images: Images, scales) -> Callable[[], None]:
    """The convolutions alone of one batch-1 pass of `model` (BatchNorm folded) over `images`:
    each (conv, input shape) it meets, run as often as it meets it, on preallocated inputs."""
    seen: Counter = Counter()
    hooks = [m.register_forward_hook(lambda m, i, o: seen.update([(m, tuple(i[0].shape))]))
             for m in model.modules() if isinstance(m, torch.nn.Conv2d)]
    run_batched(model, images, scales, 1, labelled=True)
    for hook in hooks:
        hook.remove()
    jobs = []
    for (conv, shape), count in seen.items():
        x = torch.randn(shape).contiguous(memory_format=torch.channels_last)
        if conv.kernel_size == (1, 1):
            pixels, weight = x.permute(0, 2, 3, 1).reshape(-1, shape[1]), conv.weight.detach().flatten(1).t().contiguous()
            jobs.append((lambda a=pixels, w=weight: a @ w, count))
        else:
            jobs.append((lambda c=conv, a=x: _relu6_conv(c, a), count))

    @torch.inference_mode()
    def run() -> None:
        for job, count in jobs:
            for _ in range(count):
                job()
    return run


def load_images(n: int, max_side: int) -> Images:
    if not MSRC.exists():
        raise SystemExit(f"{MSRC} not found: this benchmark needs the MSRC dataset in VOC layout")
    manifest = read_voc(str(MSRC), splits={"train": "train", "val": "val"}, label_file=None)
    out = []
    for i in manifest.ids("train")[:n]:
        image = torch.tensor(manifest.load_image(i)).permute(2, 0, 1)
        out.append((resize_longer_side(image, max_side).float(), tuple(image.shape[-2:]), manifest.label_ids(i).tolist()))
    return out


def measure(images_n: int, repeats: int, batches: list[int], scales: list[float], max_side: int) -> list[Row]:
    """Interleaved repetitions of every variant; rows with median seconds and median ratio to the loop."""
    torch.manual_seed(0)
    images = load_images(images_n, max_side)
    model = CAMNet(create_backbone("efficientnet_lite0", "imagenet"), 15).eval()
    channels_last = copy.deepcopy(model).to(memory_format=torch.channels_last)
    fast = inference_copy(model)
    fused = fused_cams(inference_copy(model))
    variants: dict[str, Callable[[], list[torch.Tensor]]] = {
        "loop": lambda: run_loop(model, images, scales),
        "batched": lambda: run_batched(channels_last, images, scales, 1, labelled=False),
        "labelled": lambda: run_batched(channels_last, images, scales, 1, labelled=True),
        "bn-folded": lambda: run_batched(fast, images, scales, 1, labelled=True),
        "fused": lambda: run_batched(fused, images, scales, 1, labelled=True),
        **{f"fused, batch {b}": (lambda b=b: run_batched(fused, images, scales, b, labelled=True))
           for b in batches if b != 1},
        "floor": conv_kernels(fast, images, scales),
    }
    reference = variants["loop"]()
    diff = {name: max(float((a - b).abs().max() / a.abs().max().clamp(min=1e-12)) for a, b in zip(reference, run()))
            for name, run in variants.items() if name != "floor"}
    seconds: dict[str, list[float]] = {name: [] for name in variants}
    names = list(variants)
    for r in range(repeats):
        for name in names[r % len(names):] + names[:r % len(names)]:
            start = time.perf_counter()
            variants[name]()
            seconds[name].append(time.perf_counter() - start)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    n = len(images)
    return [Row(f"make_cam {name}" + ("" if ", batch" in name else " (batch 1)"),
                f"{n / statistics.median(seconds[name]):.2f} img/s", f"{n / statistics.median(seconds['loop']):.2f} img/s",
                statistics.median(a / b for a, b in zip(seconds["loop"], seconds[name])), f"{peak:.0f} MiB RSS (process)",
                "convolutions only (1×1 as bare GEMMs): no CAMs, a bound" if name == "floor"
                else f"max rel. CAM diff {diff[name]:.1e}")
            for name in names if name != "loop"]


def table_rows(tiny: bool) -> list[Row]:
    """Rows for benchmarks/run_all.py: 16 MSRC images at the msrc sizes, 5 repetitions (tiny: a smoke test)."""
    return measure(1, 1, [1], [1.0], 64) if tiny else measure(16, 5, [1], [1.0, 0.5, 1.5], 224)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=16)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--scales", type=float, nargs="+", default=[1.0, 0.5, 1.5])
    parser.add_argument("--max-side", type=int, default=224)
    parser.add_argument("--batches", type=int, nargs="+", default=[1, 8], help="cam.infer.batch_size values")
    args = parser.parse_args()
    print(f"MSRC train, {args.images} images, max side {args.max_side}, scales {args.scales} + flip, "
          f"{torch.get_num_threads()} torch thread(s), {args.repeats} interleaved repetitions (median)")
    print_rows(measure(args.images, args.repeats, args.batches, args.scales, args.max_side))


if __name__ == "__main__":
    main()
