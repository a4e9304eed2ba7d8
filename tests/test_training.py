"""The shared training loop: poly LR, and a killed run resumes to the same result."""

import pytest
import torch

from maskforge.training import fit, poly_lr


def test_poly_lr_decays_to_zero():
    assert poly_lr(0.1, 0, 10) == 0.1 and poly_lr(0.1, 10, 10) == 0
    assert poly_lr(0.1, 5, 10) == pytest.approx(0.1 * 0.5 ** 0.9)


def make_run():
    torch.manual_seed(0)
    model = torch.nn.Linear(4, 2)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    data = torch.randn(32, 4), torch.randn(32, 2)

    def batches(rng):
        order = rng.permutation(32)
        for i in range(0, 32, 8):
            yield data[0][order[i:i + 8]], data[1][order[i:i + 8]]

    return model, optimizer, batches


def loss_fn(model, batch):
    return torch.nn.functional.mse_loss(model(batch[0]), batch[1])


def run(tmp_path, epochs, fingerprint="a"):
    model, optimizer, batches = make_run()
    rows = fit(model, optimizer, loss_fn, batches, epochs=epochs, steps_per_epoch=4, seed=1,
               resume_path=tmp_path / "r.pt", fingerprint=fingerprint, device=torch.device("cpu"), desc="t")
    return model, rows


def test_resumed_run_equals_uninterrupted_run(tmp_path):
    full, full_rows = run(tmp_path / "full", 3)
    model, optimizer, batches = make_run()
    epochs_started = []

    def killed_in_second_epoch(rng):
        epochs_started.append(1)
        if len(epochs_started) == 2:
            raise KeyboardInterrupt          # the process dies mid-epoch 2
        yield from batches(rng)

    with pytest.raises(KeyboardInterrupt):
        fit(model, optimizer, loss_fn, killed_in_second_epoch, epochs=3, steps_per_epoch=4, seed=1,
            resume_path=tmp_path / "k.pt", fingerprint="a", device=torch.device("cpu"), desc="t")
    model, optimizer, batches = make_run()   # a fresh process: new model, resumes from epoch 1's checkpoint
    resumed_epochs = []
    rows = fit(model, optimizer, loss_fn, lambda rng: (resumed_epochs.append(1), (yield from batches(rng))),
               epochs=3, steps_per_epoch=4, seed=1, resume_path=tmp_path / "k.pt", fingerprint="a",
               device=torch.device("cpu"), desc="t")
    assert len(resumed_epochs) == 2 and rows == full_rows
    for a, b in zip(model.parameters(), full.parameters()):
        assert torch.equal(a, b)


def test_changed_fingerprint_starts_over(tmp_path):
    run(tmp_path, 2, fingerprint="a")
    model, optimizer, batches = make_run()
    seen = []
    fit(model, optimizer, loss_fn, lambda rng: (seen.append(1), (yield from batches(rng))), epochs=2, steps_per_epoch=4,
        seed=1, resume_path=tmp_path / "r.pt", fingerprint="b", device=torch.device("cpu"), desc="t")
    assert len(seen) == 2
