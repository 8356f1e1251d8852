"""Spectral features read off estimated densities: bulk edges, tail ranges.

Shared by the figures (:mod:`hessian_spectrum.plotting`) and the findings
(:mod:`hessian_spectrum.findings`); numpy only.  A Lanczos density is a sum of Gaussian
bumps, so every feature here is a *mass quantile* (robust to the far tails of single
bumps and to small spurious bumps) rather than a height threshold, and the smoothed
spike of zero eigenvalues is left out by ``min_abs`` (:data:`ZERO_SPIKE_WIDTHS` kernel
widths, :func:`kernel_width`).
"""

from __future__ import annotations

import math
from collections.abc import Mapping

import numpy as np

from .density import gaussian_width

__all__ = [
    "ZERO_SPIKE_WIDTHS",
    "bulk_edge",
    "bulk_range",
    "tail_range",
    "kernel_width",
]

ZERO_SPIKE_WIDTHS = 5.0
"""Half-width, in Gaussian kernel widths of a Lanczos estimate, of the smoothed spike
of zero eigenvalues: beyond it the spike leaves less than 3e-7 of its mass."""


def _cumulative(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Trapezoid cumulative integral of y over x, starting at 0."""
    steps = 0.5 * (y[1:] + y[:-1]) * np.diff(x)
    return np.concatenate([[0.0], np.cumsum(steps)])


def _crossing(x: np.ndarray, cum: np.ndarray, target: float) -> float:
    """First x where the non-decreasing ``cum`` reaches ``target`` (linear interp.)."""
    i = int(np.searchsorted(cum, target, side="left"))
    if i == 0:
        return float(x[0])
    if i >= len(x):
        return float(x[-1])
    c0, c1 = cum[i - 1], cum[i]
    t = 0.0 if c1 == c0 else (target - c0) / (c1 - c0)
    return float(x[i - 1] + t * (x[i] - x[i - 1]))


def bulk_edge(
    grid: np.ndarray, density: np.ndarray, *, mass: float = 0.99, min_abs: float = 0.0
) -> float:
    """Right edge of the bulk: the ``mass`` quantile of the positive part of a density.

    Definition: with ``s = max(min_abs, 0)``, the smallest ``λ ≥ s`` such that the mass
    of the density above ``λ`` is at most ``1 - mass`` of its mass on ``λ ≥ s``::

        ∫_λ^∞ φ  ≤  (1 - mass) ∫_s^∞ φ.

    A mass quantile rather than "where φ drops below a fraction of its peak" because a
    Lanczos density is a sum of Gaussian bumps: its far tail (the smoothing of the top
    Ritz values) and any small spurious bumps hold little mass and barely move a
    quantile, whereas a height threshold jumps between bumps, and the peak itself (the
    spike at zero) varies by orders of magnitude. That spike can hold most of the mass
    when most eigenvalues vanish (p much larger than the number of examples), and would
    then pull the quantile into itself: ``min_abs`` leaves it out (Figure 6 passes
    :data:`ZERO_SPIKE_WIDTHS` Gaussian kernel widths of the estimate). Integrals are
    trapezoidal on the grid
    (cut at ``s`` by linear interpolation); the crossing is interpolated linearly in
    the cumulative mass. For a semicircle of radius R, ``mass=0.99`` and ``min_abs=0``
    this is ``t·R`` with ``(acos t - t √(1 - t²)) / π = 0.005``; for the uniform density
    on [0, 1], 0.99. Returns NaN when there is no mass above ``s``.
    """
    x = np.asarray(grid, dtype=float)
    y = np.clip(np.asarray(density, dtype=float), 0.0, None)
    keep = np.isfinite(x) & np.isfinite(y)
    order = np.argsort(x[keep])
    x, y = x[keep][order], y[keep][order]
    start = max(float(min_abs), 0.0)
    if x.size < 2 or x[-1] <= start:
        return math.nan
    if x[0] < start:
        y0 = float(np.interp(start, x, y))
        above = x > start
        x, y = np.concatenate([[start], x[above]]), np.concatenate([[y0], y[above]])
    cum = _cumulative(x, y)
    if cum[-1] <= 0:
        return math.nan
    return _crossing(x, cum, mass * cum[-1])


def bulk_range(
    grid: np.ndarray, density: np.ndarray, *, lower: float = 0.005, upper: float = 0.995
) -> tuple[float, float]:
    """Central range of a density: its ``lower`` and ``upper`` mass quantiles.

    Used as the zoom of Figure 3b on a deflated (bulk-only) density, where it is the
    range holding the central 99 % of the bulk's mass by default.
    """
    x = np.asarray(grid, dtype=float)
    cum = _cumulative(x, np.clip(np.asarray(density, dtype=float), 0.0, None))
    if cum[-1] <= 0:
        return float(x[0]), float(x[-1])
    return _crossing(x, cum, lower * cum[-1]), _crossing(x, cum, upper * cum[-1])


def tail_range(
    grid: np.ndarray,
    density: np.ndarray,
    *,
    side: str = "positive",
    mass: tuple[float, float] = (0.5, 0.99),
    min_abs: float = 0.0,
) -> tuple[float, float]:
    """The |λ| range over which Figure 4 fits a power law, on one side of the origin.

    Only ``|λ| ≥ min_abs`` counts (Figure 4 passes :data:`ZERO_SPIKE_WIDTHS` kernel
    widths of the Lanczos estimate, so the smoothed spike at zero is excluded). Of the
    mass beyond ``min_abs``, the range runs from its ``mass[0]`` quantile to its
    ``mass[1]`` quantile: by default from the median of the tail to where 1 % of it is
    left, which also leaves out the Gaussian fall-off past the largest Ritz value,
    where no power law holds.
    """
    x = np.asarray(grid, dtype=float)
    y = np.clip(np.asarray(density, dtype=float), 0.0, None)
    on_side = x > 0 if side == "positive" else x < 0
    ax, ay = np.abs(x[on_side]), y[on_side]
    order = np.argsort(ax)
    ax, ay = ax[order], ay[order]
    keep = ax >= min_abs
    ax, ay = ax[keep], ay[keep]
    if ax.size < 3:
        return math.nan, math.nan
    cum = _cumulative(ax, ay)
    if cum[-1] <= 0:
        return math.nan, math.nan
    return _crossing(ax, cum, mass[0] * cum[-1]), _crossing(ax, cum, mass[1] * cum[-1])


def kernel_width(attrs: Mapping, grid: np.ndarray) -> float:
    """Gaussian width of a (linear) Lanczos estimate in eigenvalue units, 0 if unknown.

    Algorithm 3's sigma on [-1, 1] for the ``num_iters`` and ``kappa`` in ``attrs``
    (the attributes of ``spectra.nc``), floored at the grid spacing as
    :func:`~hessian_spectrum.density.gaussian_width` does, times the half-range of the
    grid (which spans the normalisation bounds).  For adaptive smoothing this is the
    smallest width any node has.
    """
    iters, kappa = attrs.get("num_iters"), attrs.get("kappa")
    grid = np.asarray(grid, dtype=float)
    if iters is None or kappa is None or grid.size < 2:
        return 0.0
    sigma = gaussian_width(int(iters), float(kappa), int(grid.size))
    return sigma * (grid[-1] - grid[0]) / 2
