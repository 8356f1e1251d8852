"""Lanczos tridiagonalisation: FASTLANCZOS (Algorithm 2) and SLOWLANCZOS (Algorithm 1).

Given a symmetric operator ``A`` (``p x p``) and a unit start vector ``v_1``,
``m`` steps of Lanczos build the tridiagonal ``T_m = V_m^T A V_m`` with diagonal
``alpha`` and off-diagonal ``beta``.  The eigenpairs ``(theta_j, y_j)`` of ``T_m``
give the Gauss quadrature of the spectral measure seen from ``v_1``:

    v_1^T f(A) v_1  ~  sum_j  y_j[1]^2 f(theta_j)

which is what the spectral densities of :mod:`hessian_spectrum.density` are built from
(paper Section 5.3, after Lin, Saad and Yang 2016).

Numerics (see ``DESIGN.md``):

- ``alpha``, ``beta`` and the tridiagonal eigenproblem are float64 whatever the dtype
  of the vectors (inner products are accumulated in float64).
- A step whose new ``beta`` is below ``breakdown_tol`` (relative to the largest
  coefficient seen) stops that start early: the Krylov space is invariant and the
  quadrature is exact.  This is not an error.
- The residual of Ritz pair ``j`` is ``|beta_m * y_j[m]|`` and costs no product.
- Several starts run as one block: each step multiplies ``k`` vectors at once
  (``matvec`` on ``(p, k)``), so operators that batch (curvature products) share passes.

``fast_lanczos`` keeps three blocks of vectors (``O(p k)`` memory) and does not
reorthogonalise; ``slow_lanczos`` stores the whole basis and reorthogonalises fully
(twice), for validation and small ``p``.

Example
-------
>>> import torch, hessian_spectrum as hs
>>> A = hs.as_operator(torch.diag(torch.arange(1.0, 6.0, dtype=torch.float64)))
>>> theta, weights = hs.fast_lanczos(A, num_iters=10).ritz()
>>> [round(float(t), 6) for t in theta], round(float(weights.sum()), 12)
([1.0, 2.0, 3.0, 4.0, 5.0], 1.0)
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import scipy.linalg
import torch

from ._progress import Progress
from .operators import as_operator

__all__ = ["LanczosResult", "fast_lanczos", "slow_lanczos", "start_vectors"]


@dataclass
class LanczosResult:
    """The tridiagonal matrices of ``k`` Lanczos runs.

    ``alpha[i, :lengths[i]]`` and ``beta[i, :lengths[i]]`` hold run ``i``;
    ``beta[i, m-1]`` is the norm of the last residual (``beta_m``), used for the Ritz
    residuals.  Entries past ``lengths[i]`` are NaN.
    """

    alpha: np.ndarray
    beta: np.ndarray
    lengths: np.ndarray
    num_products: int
    size: int
    vectors: torch.Tensor | None = None  # slow_lanczos only: the basis V_m (p, m)
    _cache: dict = field(default_factory=dict, repr=False, compare=False)

    @property
    def num_starts(self) -> int:
        return self.alpha.shape[0]

    def tridiagonal(self, i: int = 0) -> tuple[np.ndarray, np.ndarray]:
        """``(alpha, beta)`` of ``T_m`` for run ``i`` (``beta`` of length ``m - 1``)."""
        m = int(self.lengths[i])
        return self.alpha[i, :m].copy(), self.beta[i, : m - 1].copy()

    def _eig(self, i: int) -> tuple[np.ndarray, np.ndarray]:
        if i not in self._cache:
            a, b = self.tridiagonal(i)
            if a.size == 1:
                self._cache[i] = (a.copy(), np.ones((1, 1)))
            else:
                self._cache[i] = scipy.linalg.eigh_tridiagonal(a, b)
        return self._cache[i]

    def ritz(self, i: int = 0) -> tuple[np.ndarray, np.ndarray]:
        """Ritz values ``theta`` (ascending) and weights ``y_m[1]^2`` of run ``i``."""
        theta, Y = self._eig(i)
        return theta, Y[0] ** 2

    def ritz_residuals(self, i: int = 0) -> np.ndarray:
        """``|beta_m * y_j[m]|``: the residual norm ``||A x_j - theta_j x_j||``."""
        _, Y = self._eig(i)
        m = int(self.lengths[i])
        return np.abs(self.beta[i, m - 1] * Y[m - 1])

    def ritz_vectors(self, i: int = 0) -> torch.Tensor:
        """Ritz vectors ``V_m Y`` (slow_lanczos only: the basis is kept)."""
        if self.vectors is None:
            raise ValueError("Ritz vectors need the Lanczos basis: use slow_lanczos")
        _, Y = self._eig(i)
        V = self.vectors
        return V @ torch.as_tensor(Y, dtype=V.dtype, device=V.device)


def _check_iters(num_iters: int) -> int:
    if int(num_iters) != num_iters or num_iters < 2:
        raise ValueError(f"num_iters must be an integer >= 2, got {num_iters}")
    return int(num_iters)


def start_vectors(
    size: int,
    num_vectors: int = 1,
    *,
    seed: int = 0,
    kind: str = "rademacher",
    dtype: torch.dtype = torch.float64,
    device: torch.device | str = "cpu",
) -> torch.Tensor:
    """Unit start vectors ``(p, k)``: Rademacher (+-1, the default) or Gaussian.

    Drawn on the CPU from ``seed`` so that a seed gives the same vectors on any device.
    Rademacher starts give lower variance for spectral densities (the quadrature
    weights of a Rademacher vector have no ``chi^2`` fluctuation of the norm).
    """
    if num_vectors < 1:
        raise ValueError(f"num_vectors must be >= 1, got {num_vectors}")
    gen = torch.Generator(device="cpu").manual_seed(int(seed))
    if kind == "rademacher":
        V = torch.randint(0, 2, (size, num_vectors), generator=gen).to(torch.float64)
        V = 2.0 * V - 1.0
    elif kind == "gaussian":
        V = torch.randn(size, num_vectors, generator=gen, dtype=torch.float64)
    else:
        raise ValueError(f"start must be 'rademacher' or 'gaussian', got {kind!r}")
    V = V / V.norm(dim=0, keepdim=True)
    return V.to(device=device, dtype=dtype)


def _check_finite(W: torch.Tensor, step: int) -> None:
    if not bool(torch.isfinite(W).all()):
        raise FloatingPointError(
            f"operator product returned NaN or Inf at Lanczos step {step}"
        )


def _dot(X: torch.Tensor, Y: torch.Tensor) -> torch.Tensor:
    """Column-wise inner products accumulated in float64."""
    return (X.to(torch.float64) * Y.to(torch.float64)).sum(0)


def _default_tol(dtype: torch.dtype) -> float:
    """``max(10 eps, 1e-12)`` relative to the largest coefficient seen.

    A missed breakdown is harmless (the run continues from a rounding-noise vector that
    couples through a ``beta`` near zero, so its Ritz weights are negligible); a false
    one would truncate the quadrature.  Hence a threshold well under any genuine
    ``beta`` of a float32 curvature operator, and above float64 rounding of dense
    products (``~ sqrt(p) eps``).
    """
    return max(10.0 * float(torch.finfo(dtype).eps), 1e-12)


def fast_lanczos(
    op,
    num_iters: int,
    *,
    num_vectors: int = 1,
    seed: int = 0,
    start: str = "rademacher",
    v0: torch.Tensor | None = None,
    breakdown_tol: float | None = None,
    progress: Any = False,
) -> LanczosResult:
    """FASTLANCZOS (Algorithm 2): ``num_iters`` three-term steps, no reorthogonalisation

    Parameters
    ----------
    op : LinearOperator (or anything :func:`as_operator` accepts)
    num_iters : number of steps ``M`` (>= 2).  ``M`` may exceed ``p``: in floating
        point the recurrence goes on (paper Figure 8b: ``M = 2048``, ``p = 1000``);
        an exact invariant subspace still stops it early.
    num_vectors : number of independent starts ``k``, run as one block.
    seed, start : the start vectors (see :func:`start_vectors`), unless ``v0``
        (``(p,)`` or ``(p, k)``, normalised here) is given.
    breakdown_tol : relative threshold on ``beta`` for early stopping
        (default ``max(10 eps, 1e-12)`` for the operator's dtype).
    progress : ``True`` for a line every few seconds on stderr, or a callable
        (:mod:`hessian_spectrum._progress`).

    Memory is ``O(p k)``: three blocks of vectors.
    """
    op = as_operator(op)
    M = _check_iters(num_iters)
    if v0 is None:
        V = start_vectors(
            op.size,
            num_vectors,
            seed=seed,
            kind=start,
            dtype=op.dtype,
            device=op.device,
        )
    else:
        V = v0.reshape(op.size, -1).to(device=op.device, dtype=op.dtype)
        V = V / V.norm(dim=0, keepdim=True)
    k = V.shape[1]
    tol = _default_tol(op.dtype) if breakdown_tol is None else float(breakdown_tol)
    alpha = np.full((k, M), np.nan)
    beta = np.full((k, M), np.nan)
    lengths = np.zeros(k, dtype=int)
    scale = np.zeros(k)
    active = np.arange(k)
    V_prev = torch.zeros_like(V)
    beta_prev = torch.zeros(k, dtype=torch.float64, device=op.device)
    before = op.num_products
    prog = Progress("lanczos", M, progress)
    for m in range(M):
        W = op.matvec(V)
        _check_finite(W, m + 1)
        prog.update(m + 1)
        W = W - (beta_prev.to(W.dtype) * V_prev)
        a = _dot(W, V)
        W = W - a.to(W.dtype) * V
        b = W.to(torch.float64).norm(dim=0)
        a_np, b_np = a.cpu().numpy(), b.cpu().numpy()
        alpha[active, m] = a_np
        beta[active, m] = b_np
        lengths[active] += 1
        scale[active] = np.maximum(scale[active], np.maximum(np.abs(a_np), b_np))
        alive = b_np > tol * np.maximum(scale[active], 1e-300)
        if m == M - 1 or not alive.any():
            break
        keep = torch.as_tensor(np.flatnonzero(alive), device=op.device)
        active = active[alive]
        b_keep = b[keep]
        V_prev = V[:, keep]
        V = W[:, keep] / b_keep.to(W.dtype)
        beta_prev = b_keep
    prog.finish(int(lengths.max()), f"{op.num_products - before} products")
    return LanczosResult(alpha, beta, lengths, op.num_products - before, op.size)


def slow_lanczos(
    op,
    num_iters: int | None = None,
    *,
    seed: int = 0,
    start: str = "rademacher",
    v0: torch.Tensor | None = None,
    breakdown_tol: float | None = None,
) -> LanczosResult:
    """SLOWLANCZOS (Algorithm 1): full reorthogonalisation against the stored basis.

    ``num_iters`` defaults to ``p`` (the full tridiagonalisation).  Memory ``O(p m)``;
    for validation and small operators.  The basis is kept (``result.vectors``) so
    Ritz vectors are available.
    """
    op = as_operator(op)
    M = op.size if num_iters is None else min(_check_iters(num_iters), op.size)
    if v0 is None:
        v = start_vectors(
            op.size, 1, seed=seed, kind=start, dtype=op.dtype, device=op.device
        )[:, 0]
    else:
        v = v0.reshape(-1).to(device=op.device, dtype=op.dtype)
        v = v / v.norm()
    tol = _default_tol(op.dtype) if breakdown_tol is None else float(breakdown_tol)
    basis = torch.empty(op.size, M, dtype=op.dtype, device=op.device)
    alpha = np.full((1, M), np.nan)
    beta = np.full((1, M), np.nan)
    scale = 0.0
    m_done = 0
    before = op.num_products
    for m in range(M):
        basis[:, m] = v
        w = op.matvec(v)
        _check_finite(w, m + 1)
        a = float(_dot(w[:, None], v[:, None])[0])
        w = w - a * v
        if m > 0:
            w = w - beta[0, m - 1] * basis[:, m - 1]
        Vm = basis[:, : m + 1]
        for _ in range(2):  # "twice is enough" (Kahan-Parlett)
            w = w - Vm @ (Vm.T @ w)
        b = float(w.to(torch.float64).norm())
        alpha[0, m], beta[0, m] = a, b
        m_done = m + 1
        scale = max(scale, abs(a), b)
        if b <= tol * max(scale, 1e-300) or m == M - 1:
            break
        v = w / b
    return LanczosResult(
        alpha[:, :m_done] if m_done < M else alpha,
        beta[:, :m_done] if m_done < M else beta,
        np.array([m_done]),
        op.num_products - before,
        op.size,
        vectors=basis[:, :m_done],
    )
