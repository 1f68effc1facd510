"""Random translations of images (linf_opt.data.augment) against a brute-force loop, their draws, their
errors, and augmented training: reproducible, resumed bit-exactly, rejected on non-image data."""
import pytest
import torch

from linf_opt import ConfigError
from linf_opt.data.augment import random_shift, shift_images
from linf_opt.training.config import load_problem, override
from linf_opt.training.trainer import Trainer, train
from helpers import tiny_mnist


def brute_shift(X, dy, dx):
    """out[b, c, i, j] = X[b, c, clamp(i − dy, 0, H − 1), clamp(j − dx, 0, W − 1)], one pixel at a time."""
    B, C, H, W = X.shape
    out = torch.empty_like(X)
    for b in range(B):
        for i in range(H):
            for j in range(W):
                si = min(max(i - int(dy[b]), 0), H - 1)
                sj = min(max(j - int(dx[b]), 0), W - 1)
                out[b, :, i, j] = X[b, :, si, sj]
    return out


@pytest.mark.parametrize("shape", [(5, 1, 6, 6), (4, 3, 5, 7), (3, 2, 1, 4)])
def test_shift_images_equals_brute_force(shape):
    g = torch.Generator().manual_seed(sum(shape))
    X = torch.randn(shape, generator=g, dtype=torch.float64)
    B, C, H, W = shape
    dy = torch.randint(-(H - 1), H, (B,), generator=g)
    dx = torch.randint(-(W - 1), W, (B,), generator=g)
    expected = brute_shift(X, dy, dx)
    assert torch.equal(shift_images(X, dy, dx), expected)
    flat = shift_images(X.reshape(B, -1), dy, dx, (C, H, W))     # flattened inputs keep their shape
    assert flat.shape == (B, C * H * W) and torch.equal(flat.reshape(shape), expected)


def test_random_shift_draws_every_offset_in_range_and_is_reproducible():
    s, H = 2, 9
    X = torch.zeros(2000, 1, H, H)
    X[:, 0, H // 2, H // 2] = 1                                      # one marked pixel in the middle
    out = random_shift(X, s, generator=torch.Generator().manual_seed(0))
    where = out.reshape(len(X), -1).argmax(1)
    dy, dx = where // H - H // 2, where % H - H // 2
    assert int(dy.abs().max()) == s and int(dx.abs().max()) == s
    assert len(set(zip(dy.tolist(), dx.tolist()))) == (2 * s + 1) ** 2   # all 25 offsets occur
    assert torch.equal(out.sum((1, 2, 3)), torch.ones(len(X)))             # nothing lost, nothing doubled
    again = random_shift(X, s, generator=torch.Generator().manual_seed(0))
    assert torch.equal(out, again)
    assert torch.equal(random_shift(X, 0), X)


def test_augment_errors_name_the_argument():
    X = torch.zeros(3, 1, 4, 4)
    with pytest.raises(ValueError, match="max_shift"):
        random_shift(X, -1)
    with pytest.raises(ValueError, match="max_shift"):
        random_shift(X, True)
    with pytest.raises(ValueError, match="max_shift: expected a shift below the image size 4 × 4"):
        random_shift(X, 4)
    with pytest.raises(ValueError, match="X: expected a batch of images"):
        random_shift(torch.zeros(3, 16), 1)
    with pytest.raises(ValueError, match="X: expected"):
        random_shift(torch.zeros(3, 15), 1, (1, 4, 4))
    with pytest.raises(ValueError, match="dy: expected integer offsets"):
        shift_images(X, torch.zeros(3), torch.zeros(3, dtype=torch.long))
    with pytest.raises(ValueError, match="dx: expected offsets of magnitude below the image size 4"):
        shift_images(X, torch.zeros(3, dtype=torch.long), torch.tensor([0, 4, 0]))


def conv_problem(data_dir, **dotted):
    p = load_problem("problems/mnist_conv.toml")
    return override(p, **{"data.data_dir": str(data_dir), "model.channels": 4, "training.epochs": 2,
                          "training.batch_size": 20, "optimizer.lr": 0.01, "dtype": "float64",
                          "solver.tol": 1e-8, "solver.backward_tol": 1e-10, "training.augment_shift": 2, **dotted})


def test_augmented_training_is_reproducible_resumes_bit_exactly_and_changes_the_inputs(tmp_path, monkeypatch):
    d = tiny_mnist(tmp_path / "mnist")
    seen = []
    original = Trainer._loss

    def spy(self, U, T, *args, **kwargs):
        seen.append(U.clone())
        return original(self, U, T, *args, **kwargs)

    monkeypatch.setattr(Trainer, "_loss", spy)
    full = train(conv_problem(d, **{"training.epochs": 3}), tmp_path / "full", progress=False)
    monkeypatch.setattr(Trainer, "_loss", original)
    # the first batch, rebuilt independently: the trainer's generator (seed + 1) draws the permutation,
    # then the batch's offsets
    plain = Trainer(conv_problem(d, **{"training.augment_shift": 0}), progress=False)
    g = torch.Generator().manual_seed(1)
    first = plain.data.train_inputs[torch.randperm(60, generator=g)[:20]]
    offsets = torch.randint(-2, 3, (2, 20), generator=g)
    assert torch.equal(seen[0], shift_images(first, offsets[0], offsets[1], (1, 28, 28)))
    assert not torch.equal(seen[0], first)
    Trainer(conv_problem(d, **{"training.epochs": 3}), tmp_path / "part", progress=False).fit(2)   # interrupted
    resumed = train(conv_problem(d, **{"training.epochs": 3}), tmp_path / "part", resume=True, progress=False)
    for (n1, p1), (n2, p2) in zip(full.net.state_dict().items(), resumed.net.state_dict().items()):
        assert n1 == n2 and torch.equal(p1, p2), n1
    unshifted = train(conv_problem(d, **{"training.augment_shift": 0}), progress=False)
    assert not torch.equal(unshifted.net.kernel, resumed.net.kernel)


def test_augment_shift_rejects_inputs_that_are_not_large_enough_images():
    p = override(load_problem("problems/function_estimation.toml"), **{"training.augment_shift": 1})
    with pytest.raises(ConfigError, match="training.augment_shift: a shift of 1 pixels needs images larger than 1 × 1"):
        Trainer(p, progress=False)
    with pytest.raises(ConfigError, match="training.augment_shift: expected a value ≥ 0"):
        override(p, **{"training.augment_shift": -1})
