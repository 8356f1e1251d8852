"""Synthetic self-checks of the spectral estimators (paper Figure 8) and the W1 metric.

- :func:`figure8a_matrix`: ``Y = X + Z Z^T / 20000`` with ``X = diag(5, 4, 3, 0, ...)``
  and standard normal ``Z`` (p x p): three outliers over a Marchenko-Pastur bulk.
- :func:`figure8b_matrix`: ``Y = Z^T Z / 1000`` with ``Z`` (500 x 1000) i.i.d. Pareto
  with index ``alpha = 1`` (classical Pareto on ``[1, inf)``): a power-law spectrum
  spanning many decades (and 500 zero eigenvalues).
- :func:`wasserstein1`: the Wasserstein-1 distance between an estimated density (plus
  point masses) and a set of exact eigenvalues, the metric of the self-check.
"""

from __future__ import annotations

import numpy as np
import torch

__all__ = ["figure8a_matrix", "figure8b_matrix", "wasserstein1", "log_eigenvalues"]


def figure8a_matrix(p: int = 2000, seed: int = 0) -> torch.Tensor:
    """``X + Z Z^T / 20000`` (float64), ``X = diag(5, 4, 3, 0, ...)``, ``Z`` (p, p)."""
    if p < 4:
        raise ValueError(f"p must be at least 4, got {p}")
    rng = np.random.default_rng(seed)
    Z = rng.standard_normal((p, p))
    Y = Z @ Z.T / 20000.0
    Y[np.arange(3), np.arange(3)] += np.array([5.0, 4.0, 3.0])
    return torch.from_numpy(0.5 * (Y + Y.T))


def figure8b_matrix(seed: int = 0, rows: int = 500, cols: int = 1000) -> torch.Tensor:
    """``Z^T Z / 1000`` (float64) with ``Z`` (rows, cols) i.i.d. Pareto(alpha = 1)."""
    rng = np.random.default_rng(seed)
    Z = rng.pareto(1.0, size=(rows, cols)) + 1.0
    Y = Z.T @ Z / 1000.0
    return torch.from_numpy(0.5 * (Y + Y.T))


def log_eigenvalues(eigenvalues, eps: float) -> np.ndarray:
    """``log10(|lambda| + eps)``: the variable of a log spectrum."""
    return np.log10(np.abs(np.asarray(eigenvalues, dtype=float)) + eps)


def wasserstein1(grid, density, eigenvalues, point_masses=None, weight=None) -> float:
    """W1 distance between ``density`` on ``grid`` (+ point masses) and eigenvalues.

    The estimate's CDF is the cumulative trapezoid of ``density`` plus a step of
    ``weight`` (default ``1 / len(eigenvalues)``) at each point mass, renormalised to
    total mass 1 (Gaussian tails cut off at the grid's ends carry ~1e-6 of mass);
    the exact CDF is the empirical CDF of ``eigenvalues``.
    ``W1 = int |F_est - F_exact| dt``, evaluated exactly on the union of both supports
    (midpoint rule on intervals where ``F_exact`` is constant and ``F_est`` linear).
    """
    grid = np.asarray(grid, dtype=float)
    density = np.asarray(density, dtype=float)
    eig = np.sort(np.asarray(eigenvalues, dtype=float))
    masses = np.sort(np.asarray([] if point_masses is None else point_masses, float))
    w = 1.0 / eig.size if weight is None else float(weight)
    cum = np.concatenate(
        [[0.0], np.cumsum(0.5 * (density[1:] + density[:-1]) * np.diff(grid))]
    )
    total = cum[-1] + w * masses.size
    knots = np.unique(np.concatenate([grid, eig, masses]))
    mid = 0.5 * (knots[1:] + knots[:-1])
    f_est = np.interp(mid, grid, cum, left=0.0, right=cum[-1])
    f_est = (f_est + w * np.searchsorted(masses, mid, side="right")) / total
    f_exact = np.searchsorted(eig, mid, side="right") / eig.size
    return float(np.sum(np.abs(f_est - f_exact) * np.diff(knots)))
