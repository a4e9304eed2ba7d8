"""DDP on CPU: the segmentation training path (fit + training_batches + wrap_model) under
torchrun with gloo and 2 processes must end with identical weights on both ranks, give the ranks
disjoint images, and match one process trained on the union batches (DDP averages gradients).

Run as a module (`python -m torch.distributed.run ... -m test_distributed OUT`) this file is the
worker: each rank trains and saves its weights and the images it saw to OUT/rank<r>.pt.
"""

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from maskforge.distributed import (Distributed, finish, init_distributed, rank_share, relaunch_under_torchrun,
                                   torchrun_command, under_torchrun, wrap_model)
from maskforge.segmentation import segmentation_loss, steps_per_epoch, training_batches
from maskforge.training import fit

ROOT = Path(__file__).resolve().parents[1]
N, BATCH, SIZE, CLASSES, EPOCHS = 8, 4, 12, 3, 2
CPU = torch.device("cpu")


class TinySegNet(nn.Module):
    """Two convolutions and no BatchNorm (per-process BN statistics would differ from one process's)."""

    num_classes = CLASSES

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 6, 3, padding=1)
        self.classifier = nn.Conv2d(6, CLASSES, 1)

    def forward(self, x):
        return {"out": self.classifier(torch.relu(self.conv(x / 255)))}


def dataset():
    g = torch.Generator().manual_seed(0)
    images = [torch.rand(3, SIZE, SIZE, generator=g) * 255 for _ in range(N)]
    for i, image in enumerate(images):
        image[2] = 10 * i                                   # channel 2 tags the image, whatever the flip
    masks = [torch.randint(0, CLASSES, (SIZE, SIZE), generator=g, dtype=torch.uint8) for _ in range(N)]
    labels = torch.ones(N, CLASSES - 1)
    return images, masks, labels


def train(ctx: Distributed, resume_path: Path) -> tuple[nn.Module, list[int]]:
    """EPOCHS epochs of the real training path on `dataset()`; returns the model and the image
    indices this process trained on, in order."""
    images, masks, labels = dataset()
    torch.manual_seed(0)
    model = TinySegNet()
    wrapped = wrap_model(model, ctx)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.5, momentum=0.9)
    seen: list[int] = []

    def loss_fn(net, batch):
        seen.extend((batch[0][:, 2, 0, 0] / 10).round().int().tolist())
        return segmentation_loss(net, batch)

    # crop = image size and scale 1: no padding, so every rank's loss averages the same pixel count
    fit(wrapped, optimizer, loss_fn,
        lambda rng: training_batches(images, masks, labels, batch_size=BATCH, crop_size=SIZE, scale_range=(1.0, 1.0),
                                     rng=rng, rank=ctx.rank, world_size=ctx.world_size),
        epochs=EPOCHS, steps_per_epoch=steps_per_epoch(N, BATCH, ctx.world_size), seed=3, resume_path=resume_path,
        fingerprint="ddp-test", device=CPU, desc="ddp-test")
    return model, seen


@pytest.fixture(scope="module")
def two_ranks(tmp_path_factory):
    out = tmp_path_factory.mktemp("ddp")
    env = {**os.environ, "CUDA_VISIBLE_DEVICES": "", "OMP_NUM_THREADS": "1",
           "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT / "tests"), os.environ.get("PYTHONPATH")]))}
    env.pop("LOCAL_RANK", None)
    env.pop("WORLD_SIZE", None)
    result = subprocess.run(torchrun_command("test_distributed", [str(out)], 2), cwd=ROOT, env=env,
                            capture_output=True, text=True, timeout=180)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return out, [torch.load(out / f"rank{r}.pt") for r in range(2)]


def test_both_ranks_end_with_identical_weights(two_ranks):
    _, (rank0, rank1) = two_ranks
    assert rank0["world_size"] == rank1["world_size"] == 2 and rank0["backend"] == "gloo"
    for name, value in rank0["state"].items():
        assert torch.equal(value, rank1["state"][name]), name


def test_ranks_take_disjoint_shares_of_every_epoch(two_ranks):
    _, (rank0, rank1) = two_ranks
    per_epoch = N // 2
    assert len(rank0["seen"]) == len(rank1["seen"]) == EPOCHS * per_epoch
    for e in range(EPOCHS):
        a, b = (set(r["seen"][e * per_epoch:(e + 1) * per_epoch]) for r in (rank0, rank1))
        assert not a & b and a | b == set(range(N))


def test_ddp_matches_one_process_on_the_union_batches(two_ranks, tmp_path):
    out, (rank0, _) = two_ranks
    single, seen = train(Distributed(device=CPU), tmp_path / "single.resume")
    for e in range(EPOCHS):     # one process sees, step by step, the union of the ranks' batches
        per_rank = BATCH // 2
        for step in range(N // BATCH):
            union = {*rank0["seen"][e * N // 2 + step * per_rank:][:per_rank],
                     *two_ranks[1][1]["seen"][e * N // 2 + step * per_rank:][:per_rank]}
            assert union == set(seen[e * N + step * BATCH:][:BATCH])
    torch.manual_seed(0)
    initial = TinySegNet().state_dict()
    for name, value in single.state_dict().items():
        assert not torch.allclose(value, initial[name])                 # training moved every tensor
        torch.testing.assert_close(rank0["state"][name], value, rtol=1e-5, atol=1e-6)
    assert (out / "ddp.resume").exists()                                # rank 0 wrote the epoch checkpoint
    assert not list(out.glob("ddp.resume.tmp-*"))


def test_rank_share_pads_like_distributed_sampler():
    order = np.array([4, 0, 3, 1, 2])
    assert rank_share(order, 0, 2).tolist() == [4, 3, 2] and rank_share(order, 1, 2).tolist() == [0, 1, 4]
    assert rank_share(order, 0, 1).tolist() == order.tolist()


def test_single_process_without_torchrun_or_gpus():
    assert under_torchrun({"LOCAL_RANK": "0", "WORLD_SIZE": "2"}) and not under_torchrun({"LOCAL_RANK": "0"})
    if torch.cuda.device_count() < 2:
        assert relaunch_under_torchrun("stages.train_seg", []) is None
    cmd = torchrun_command("stages.train_seg", ["--ckpt", "x"], 4)
    assert cmd[1:] == ["-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "4",
                       "-m", "stages.train_seg", "--ckpt", "x"]


def worker(out: Path) -> None:
    ctx = init_distributed()
    model, seen = train(ctx, out / "ddp.resume")
    torch.save({"state": model.state_dict(), "seen": seen, "world_size": ctx.world_size,
                "backend": torch.distributed.get_backend()}, out / f"rank{ctx.rank}.pt")
    finish(ctx)


if __name__ == "__main__":
    worker(Path(sys.argv[1]))
