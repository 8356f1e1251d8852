"""SUBSPACEITERATION (Algorithm 5) with a final Rayleigh-Ritz step.

Block power iteration: ``Q <- qr(A Q)`` for ``T`` steps converges to the dominant
(largest-magnitude) invariant subspace of dimension ``rank`` at the rate
``|lambda_{rank+1} / lambda_rank|^T``.  The paper reads eigenvalues off as column norms
``||v_c||``, which loses their sign; here a Rayleigh-Ritz step on the final basis
(``Q^T A Q``, one more block product) gives signed eigenvalues, eigenvectors and their
residual norms ``||A x - lambda x||``.

``oversample`` extra columns speed convergence when the gap after ``rank`` is small;
only the top ``rank`` pairs are returned.

Example
-------
>>> import torch, hessian_spectrum as hs
>>> A = torch.diag(torch.tensor([5.0, 4.0, 3.0, 0.1, 0.05], dtype=torch.float64))
>>> vals, vecs, res = hs.subspace_iteration(A, rank=3, num_iters=64)
>>> [round(float(v), 6) for v in vals]
[5.0, 4.0, 3.0]
"""

from __future__ import annotations

import torch

from .lanczos import _check_finite
from .operators import as_operator

__all__ = ["subspace_iteration"]


def subspace_iteration(
    op,
    rank: int,
    num_iters: int = 128,
    *,
    seed: int = 0,
    oversample: int = 0,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Top-``rank`` eigenpairs (by magnitude) of a symmetric operator.

    Returns ``(values, vectors, residuals)``: ``values`` (rank,) float64 sorted by
    decreasing magnitude, ``vectors`` (p, rank) orthonormal in the operator's dtype,
    ``residuals`` (rank,) float64 ``||A x_j - lambda_j x_j||``.
    Costs ``(num_iters + 1) * (rank + oversample)`` vector products.
    """
    op = as_operator(op)
    if int(rank) != rank or rank < 1:
        raise ValueError(f"rank must be a positive integer, got {rank}")
    if rank >= op.size:
        raise ValueError(
            f"rank must be smaller than the operator size {op.size}, got {rank}"
        )
    if num_iters < 1:
        raise ValueError(f"num_iters must be >= 1, got {num_iters}")
    if oversample < 0:
        raise ValueError(f"oversample must be >= 0, got {oversample}")
    width = min(rank + oversample, op.size)
    gen = torch.Generator(device="cpu").manual_seed(int(seed))
    Q = torch.randn(op.size, width, generator=gen, dtype=torch.float64)
    Q = torch.linalg.qr(Q.to(device=op.device, dtype=op.dtype))[0]
    for t in range(num_iters):
        Z = op.matvec(Q)
        _check_finite(Z, t + 1)
        Q = torch.linalg.qr(Z)[0]
    Z = op.matvec(Q)
    _check_finite(Z, num_iters + 1)
    Q64, Z64 = Q.to(torch.float64), Z.to(torch.float64)
    small = Q64.T @ Z64
    small = 0.5 * (small + small.T)
    vals, W = torch.linalg.eigh(small)
    order = torch.argsort(vals.abs(), descending=True)[:rank]
    vals, W = vals[order], W[:, order]
    vectors = Q64 @ W
    residuals = (Z64 @ W - vectors * vals).norm(dim=0)
    return vals.cpu(), vectors.to(op.dtype), residuals.cpu()
