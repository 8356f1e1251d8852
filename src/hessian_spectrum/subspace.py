"""SUBSPACEITERATION (Algorithm 5) with Rayleigh-Ritz and a convergence test.

Block power iteration: ``Q <- qr(A Q)`` converges to the dominant (largest-magnitude)
invariant subspace of dimension ``rank`` at the rate ``|lambda_{rank+1} / lambda_rank|``
per step.  The paper runs a fixed ``T`` steps and reads eigenvalues off as column norms
``||v_c||``, which loses their sign; here every step ends with a Rayleigh-Ritz step on
the current basis (``Q^T Z`` with ``Z = A Q``, the step's own product, so it costs no
extra product) that gives signed Ritz values, Ritz vectors and their residual norms
``||A x_j - theta_j x_j|| = ||Z w_j - theta_j Q w_j||``.

Convergence.  The iteration stops as soon as every one of the top ``rank`` pairs has

    ||A x_j - theta_j x_j||  <=  tol * |theta_1|    (theta_1: the largest Ritz value)

or after ``num_iters`` steps, whichever comes first.  For a symmetric operator a
residual ``r`` bounds the eigenvalue error by ``r`` (and typically by ``r^2 / gap``),
so ``tol = 1e-3`` places every reported eigenvalue within 0.1 % of the spectral radius
of an exact eigenvalue.  Pairs that miss the tolerance are flagged in
:attr:`SubspaceResult.converged`: when the top ``rank`` eigenvalues are not separated
from the rest (an untrained network has no outliers) no number of steps makes them
converge, and such values must not be reported as outliers.

``oversample`` extra columns speed convergence when the gap after ``rank`` is small
(rate ``|lambda_{rank+oversample+1} / lambda_rank|``); only the top ``rank`` pairs are
returned and tested.

Example
-------
>>> import torch, hessian_spectrum as hs
>>> A = torch.diag(torch.tensor([5.0, 4.0, 3.0, 0.1, 0.05], dtype=torch.float64))
>>> res = hs.subspace_iteration(A, rank=3, num_iters=64, tol=1e-9)
>>> [round(float(v), 6) for v in res.values], bool(res.converged.all()), res.num_iters
([5.0, 4.0, 3.0], True, 6)
>>> vals, vecs, residuals = res  # unpacks as (values, vectors, residuals)
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch

from ._progress import Progress
from .lanczos import _check_finite
from .operators import as_operator

__all__ = ["subspace_iteration", "SubspaceResult", "DEFAULT_TOL"]

DEFAULT_TOL = 1e-3
"""Default relative residual tolerance of :func:`subspace_iteration`."""


class SubspaceResult(tuple):
    """``(values, vectors, residuals)`` of :func:`subspace_iteration`, with more.

    Unpacks as the three-tuple; attributes ``values`` (rank,) float64 by decreasing
    magnitude, ``vectors`` (p, rank) orthonormal in the operator's dtype,
    ``residuals`` (rank,) float64 ``||A x_j - lambda_j x_j||``, ``converged``
    (rank,) bool numpy array (residual within ``tol * |lambda_1|``), ``num_iters``
    (steps run), ``tol`` and ``num_products`` (vector products spent).
    """

    def __new__(
        cls, values, vectors, residuals, *, converged, num_iters, tol, products
    ):
        self = super().__new__(cls, (values, vectors, residuals))
        self.converged = np.asarray(converged, dtype=bool)
        self.num_iters = int(num_iters)
        self.tol = float(tol)
        self.num_products = int(products)
        return self

    def __getnewargs_ex__(self):
        return tuple(self), {
            "converged": self.converged,
            "num_iters": self.num_iters,
            "tol": self.tol,
            "products": self.num_products,
        }

    @property
    def values(self) -> torch.Tensor:
        return self[0]

    @property
    def vectors(self) -> torch.Tensor:
        return self[1]

    @property
    def residuals(self) -> torch.Tensor:
        return self[2]

    @property
    def rank(self) -> int:
        return int(self[0].numel())

    @property
    def all_converged(self) -> bool:
        return bool(self.converged.all())

    def relative_residuals(self) -> np.ndarray:
        """``||A x_j - lambda_j x_j|| / |lambda_1|`` (what ``tol`` is compared with)."""
        scale = float(self[0].abs().max()) if self.rank else 0.0
        res = self[2].numpy()
        return res / scale if scale > 0 else np.full_like(res, np.inf)


def _rayleigh_ritz(Q: torch.Tensor, Z: torch.Tensor, rank: int):
    """Top-``rank`` Ritz pairs of the basis ``Q`` given ``Z = A Q`` (float64)."""
    Q64, Z64 = Q.to(torch.float64), Z.to(torch.float64)
    small = Q64.T @ Z64
    small = 0.5 * (small + small.T)
    vals, W = torch.linalg.eigh(small)
    order = torch.argsort(vals.abs(), descending=True)[:rank]
    vals, W = vals[order], W[:, order]
    vectors = Q64 @ W
    residuals = (Z64 @ W - vectors * vals).norm(dim=0)
    return vals, vectors, residuals


def subspace_iteration(
    op,
    rank: int,
    num_iters: int = 128,
    *,
    seed: int = 0,
    oversample: int = 0,
    tol: float | None = DEFAULT_TOL,
    progress: Any = False,
) -> SubspaceResult:
    """Top-``rank`` eigenpairs (by magnitude) of a symmetric operator.

    Runs at most ``num_iters`` steps (the paper's ``T``, 128 in Appendix C.2) and
    stops early once all ``rank`` pairs meet ``tol`` (module docstring); ``tol=None``
    runs all ``num_iters`` steps, as the paper does, and flags convergence against
    :data:`DEFAULT_TOL`.  Returns a
    :class:`SubspaceResult`, which unpacks as ``(values, vectors, residuals)``.
    Costs ``(steps + 1) * (rank + oversample)`` vector products, with
    ``steps <= num_iters``.  ``progress``: ``True`` for a line every few seconds on
    stderr, or a callable (:mod:`hessian_spectrum._progress`).
    """
    op = as_operator(op)
    if int(rank) != rank or rank < 1:
        raise ValueError(f"rank must be a positive integer, got {rank}")
    if rank >= op.size:
        raise ValueError(
            f"rank must be smaller than the operator size {op.size}, got {rank}"
        )
    if int(num_iters) != num_iters or num_iters < 1:
        raise ValueError(f"num_iters must be an integer >= 1, got {num_iters}")
    if int(oversample) != oversample or oversample < 0:
        raise ValueError(f"oversample must be an integer >= 0, got {oversample}")
    stop = tol is not None
    tol = DEFAULT_TOL if tol is None else tol
    if not (isinstance(tol, (int, float)) and math.isfinite(tol) and tol > 0):
        raise ValueError(f"tol must be a finite number > 0 (or None), got {tol!r}")
    tol = float(tol)
    rank, width = int(rank), min(int(rank) + int(oversample), op.size)
    gen = torch.Generator(device="cpu").manual_seed(int(seed))
    Q = torch.randn(op.size, width, generator=gen, dtype=torch.float64)
    Q = torch.linalg.qr(Q.to(device=op.device, dtype=op.dtype))[0]
    step = 0
    prog = Progress("subspace iteration", num_iters, progress, unit="iteration")
    while True:
        Z = op.matvec(Q)
        _check_finite(Z, step + 1)
        vals, vectors, residuals = _rayleigh_ritz(Q, Z, rank)
        scale = float(vals.abs().max())
        converged = (residuals <= tol * scale).cpu().numpy()
        prog.update(step, f"{int(converged.sum())}/{rank} pairs converged")
        if step == num_iters or (stop and converged.all()):
            break
        Q = torch.linalg.qr(Z)[0]
        step += 1
    prog.finish(step, f"{int(converged.sum())}/{rank} pairs converged")
    return SubspaceResult(
        vals.cpu(),
        vectors.to(op.dtype),
        residuals.cpu(),
        converged=converged,
        num_iters=step,
        tol=tol,
        products=(step + 1) * width,
    )
