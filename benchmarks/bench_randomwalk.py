"""IRN random walk: IRN's dense n×n transition matrix vs the radius-limited stencil walk.

One image's walk at stride 4 (default 500×375 → 94×125 positions, radius 5, β 10, 2^8 steps,
K = 3 classes) on random-but-smooth inputs from a fixed seed: a boundary map B with thin ridges
along the zero lines of a smooth random field, and smooth random CAMs. Each variant runs in a fresh
subprocess, which reports the walk's time and its peak memory: on CPU the process's peak RSS
(ru_maxrss) minus its RSS just before the walk (inputs and libraries loaded), on CUDA
torch.cuda.max_memory_allocated minus the memory allocated before. Prints a markdown table and
the fraction of full-size pixels whose labels (scores upsampled, background score 0.25, argmax)
agree, and the largest score difference relative to the largest score.

    python benchmarks/bench_randomwalk.py [--height 375] [--width 500] [--device cpu|cuda] [--threads 1]
"""

from __future__ import annotations

import argparse
import json
import math
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from _table import Row
from maskforge.irn import STRIDE
from maskforge.randomwalk import bounded_random_walk, dense_random_walk, upsample_scores, walk_labels

WALKS = {"dense": dense_random_walk, "bounded": bounded_random_walk}


def smooth_field(shape: tuple[int, ...], cells: int, rng: np.random.Generator) -> torch.Tensor:
    """Gaussian noise on a coarse grid (`cells` per side), bilinearly upsampled to shape[-2:]."""
    coarse = torch.from_numpy(rng.standard_normal((*shape[:-2], cells, cells)).astype(np.float32))
    return F.interpolate(coarse.reshape(-1, 1, cells, cells), size=shape[-2:], mode="bilinear",
                         align_corners=True).reshape(shape)


def inputs(height: int, width: int, classes: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(boundary h×w in [0, 1], cams K×h×w in [0, 1], each class map max 1) at stride 4."""
    rng = np.random.default_rng(seed)
    h, w = math.ceil(height / STRIDE), math.ceil(width / STRIDE)
    boundary = torch.exp(-(smooth_field((h, w), 6, rng) / 0.15) ** 2)     # ridges where the field crosses 0
    cams = smooth_field((classes, h, w), 4, rng).clamp(min=0)
    cams = cams / cams.flatten(1).amax(dim=1).clamp(min=1e-5).view(-1, 1, 1)
    return boundary, cams


def rss_kib() -> int:
    """The current resident set size in KiB (Linux /proc)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise RuntimeError("no VmRSS in /proc/self/status")


def child(args: argparse.Namespace) -> None:
    """Run one variant and write its scores (.npy) and a JSON line with time and memory."""
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    boundary, cams = (t.to(device) for t in inputs(args.height, args.width, args.classes, args.seed))
    walk = WALKS[args.variant]
    if device.type == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        before = torch.cuda.memory_allocated()
    else:
        before = rss_kib() * 1024
    start = time.perf_counter()
    with torch.inference_mode():
        scores = walk(cams, boundary, args.radius, args.beta, args.exp_times)
    if device.type == "cuda":
        torch.cuda.synchronize()
    seconds = time.perf_counter() - start
    if device.type == "cuda":
        peak = torch.cuda.max_memory_allocated() - before
    else:
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 - before
    np.save(args.scores, scores.float().cpu().numpy())
    print(json.dumps({"seconds": seconds, "peak_bytes": peak}))


def parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--height", type=int, default=375)
    parser.add_argument("--width", type=int, default=500)
    parser.add_argument("--device", default="cpu", help="cpu or cuda")
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads in each variant's process")
    parser.add_argument("--radius", type=int, default=5)
    parser.add_argument("--beta", type=float, default=10)
    parser.add_argument("--exp-times", type=int, default=8)
    parser.add_argument("--classes", type=int, default=3)
    parser.add_argument("--bg-score", type=float, default=0.25)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--variants", nargs="+", default=["dense", "bounded"], choices=sorted(WALKS))
    parser.add_argument("--variant", choices=sorted(WALKS), help=argparse.SUPPRESS)   # child process
    parser.add_argument("--scores", help=argparse.SUPPRESS)
    return parser


def main() -> None:
    args = parser().parse_args()
    if args.variant:
        child(args)
        return

    h, w = math.ceil(args.height / STRIDE), math.ceil(args.width / STRIDE)
    print(f"{args.width}×{args.height} image → {w}×{h} = {h * w} positions at stride {STRIDE}; radius {args.radius}, "
          f"β {args.beta}, 2^{args.exp_times} steps, K = {args.classes}, device {args.device}, "
          f"{args.threads} thread(s)", flush=True)
    results, agree, difference = measure(args)
    print("\n| walk | time (s) | peak memory (MiB) |\n| --- | ---: | ---: |")
    for variant, r in results.items():
        print(f"| {variant} | {r['seconds']:.2f} | {r['peak_bytes'] / 2**20:.1f} |")
    if agree is not None:
        print(f"\nlabels agree on {agree:.6f} of the {args.height}×{args.width} pixels; "
              f"max |score difference| / max score = {difference:.2e}")


def measure(args: argparse.Namespace) -> tuple[dict, float | None, float | None]:
    """Each variant in its own subprocess: {variant: seconds, peak_bytes}, label agreement, score difference."""
    results, scores = {}, {}
    with tempfile.TemporaryDirectory() as tmp:
        for variant in args.variants:
            out = Path(tmp) / f"{variant}.npy"
            settings = [f"--{k.replace('_', '-')}={v}" for k, v in vars(args).items()
                        if k not in ("variants", "variant", "scores")]
            run = subprocess.run([sys.executable, __file__, *settings, "--variant", variant, "--scores", str(out)],
                                 capture_output=True, text=True, check=True)
            results[variant] = json.loads(run.stdout.strip().splitlines()[-1])
            scores[variant] = torch.from_numpy(np.load(out))
    if len(scores) != 2:
        return results, None, None
    classes = list(range(1, args.classes + 1))
    labels = {v: walk_labels(upsample_scores(s, (args.height, args.width), (args.height, args.width)), classes,
                             args.bg_score) for v, s in scores.items()}
    a, b = scores["dense"], scores["bounded"]
    agree = float(np.mean(labels["dense"] == labels["bounded"]))
    return results, agree, float((a - b).abs().max() / a.abs().max().clamp(min=1e-12))


def table_rows(tiny: bool) -> list[Row]:
    """Rows for benchmarks/run_all.py: the bounded walk vs IRN's dense walk, 500×375 (tiny: 64×48)."""
    args = parser().parse_args(["--height", "48", "--width", "64"] if tiny else [])
    results, agree, difference = measure(args)
    dense, bounded = results["dense"], results["bounded"]
    return [Row(f"random walk {args.width}×{args.height}, bounded vs IRN dense", f"{bounded['seconds']:.2f} s",
                f"{dense['seconds']:.2f} s", dense["seconds"] / bounded["seconds"],
                f"{bounded['peak_bytes'] / 2**20:.1f} vs {dense['peak_bytes'] / 2**20:.1f} MiB peak",
                f"labels agree {agree:.4f}, score diff {difference:.1e}")]


if __name__ == "__main__":
    main()
