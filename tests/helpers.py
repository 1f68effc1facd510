"""Shared test helpers: random well-posed matrices and approximate comparisons."""
from __future__ import annotations

import numpy as np
import torch

from linf_opt.data.datasets import write_idx


def well_posed_matrix(n: int, mu: float, *, offdiag: float = 1.0, neg_diag: float = 0.0, seed: int = 0,
                      dtype=torch.float64) -> torch.Tensor:
    """A random A with μ∞(A) = mu exactly (up to round-off).

    Off-diagonal entries ~ N(0, offdiag²/n); row i's diagonal is mu − Σ_{j≠i}|aᵢⱼ| − sᵢ with slack
    sᵢ ∈ [0, neg_diag] (s₀ = 0 so the maximum is attained); large ``offdiag`` therefore gives strongly
    negative diagonals.
    """
    g = torch.Generator().manual_seed(seed)
    A = torch.randn(n, n, generator=g, dtype=dtype) * (offdiag / max(n, 1) ** 0.5)
    A.fill_diagonal_(0)
    slack = torch.rand(n, generator=g, dtype=dtype) * neg_diag
    slack[0] = 0
    A += torch.diag(mu - A.abs().sum(1) - slack)
    return A


def monotone_matrix(n: int, m: float = 0.2, seed: int = 0, dtype=torch.float64) -> torch.Tensor:
    """A = (1 − m)I − WᵀW + S − Sᵀ, so that μ₂(A) ≤ 1 − m (a monotone-network matrix)."""
    g = torch.Generator().manual_seed(seed)
    W = torch.randn(n, n, generator=g, dtype=dtype) / n ** 0.5
    S = torch.randn(n, n, generator=g, dtype=dtype) / n ** 0.5
    return (1 - m) * torch.eye(n, dtype=dtype) - W.t() @ W + S - S.t()


def brute_mu_inf(A: np.ndarray, eta=None) -> float:
    n = A.shape[0]
    eta = np.ones(n) if eta is None else np.asarray(eta, float)
    return max(A[i, i] + sum(abs(A[i, j]) * eta[j] / eta[i] for j in range(n) if j != i) for i in range(n))


def brute_norm_inf(A: np.ndarray, eta=None) -> float:
    n = A.shape[0]
    eta = np.ones(n) if eta is None else np.asarray(eta, float)
    return max(sum(abs(A[i, j]) * eta[j] / eta[i] for j in range(n)) for i in range(n))


def tiny_mnist(path, n_train: int = 60, n_test: int = 30, seed: int = 0, noise: int = 60):
    """Write a tiny MNIST-shaped data set (IDX, gzip) into ``path``: noise images with one bright row per
    class (row 2·label + 3), so that a small network can learn it. Returns ``path``."""
    rng = np.random.default_rng(seed)
    path.mkdir(parents=True, exist_ok=True)
    for split, n in (("train", n_train), ("t10k", n_test)):
        labels = rng.integers(0, 10, n).astype(np.uint8)
        images = rng.integers(0, noise, (n, 28, 28)).astype(np.uint8)
        for k, lab in enumerate(labels):
            images[k, 2 * lab + 3, :] = 255
        write_idx(path / f"{split}-images-idx3-ubyte.gz", images)
        write_idx(path / f"{split}-labels-idx1-ubyte.gz", labels)
    return path
