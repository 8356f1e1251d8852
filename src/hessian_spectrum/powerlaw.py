"""Power-law fits of spectral densities on log-log axes (paper Figure 4).

``phi(|lambda|) ~ a |lambda|^b`` is fitted by least squares of
``log10 phi = log10 a + b log10 |lambda|`` over the grid points with
``lo <= |lambda| <= hi`` and ``phi > 0`` on one side of the origin; ``r2`` is the
coefficient of determination of that linear fit (in log space).  The paper reports
``phi = 1.2e-4 |lambda|^-2.7`` with ``R^2 = 0.99`` for the test H of VGG11 on MNIST.

:func:`fit_tail` fits the tail's complementary CDF ``P(|lambda| > x) ~ x^(b + 1)``
instead: integrating the density averages out the quadrature noise of sparse tail
nodes (a regression on the density itself scores the noise, Clauset, Shalizi and
Newman 2009, SIAM Review 51), and it also fits an exponential tail
(``log P`` linear in ``x``) over the same range, so a power law can be told from it.

Example
-------
>>> import numpy as np, hessian_spectrum as hs
>>> x = np.logspace(-2, 1, 200)
>>> fit = hs.fit_power_law(x, 3e-4 * x**-2.5, lo=0.1, hi=5)
>>> round(fit.exponent, 6), round(fit.coefficient, 10), round(fit.r2, 6)
(-2.5, 0.0003, 1.0)
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = ["PowerLawFit", "fit_power_law", "TailFit", "fit_tail"]


@dataclass(frozen=True)
class PowerLawFit:
    """``phi = coefficient * |lambda| ** exponent`` fitted over ``[lo, hi]``."""

    coefficient: float
    exponent: float
    r2: float
    lo: float
    hi: float
    num_points: int
    side: str

    def __call__(self, x):
        return self.coefficient * np.abs(np.asarray(x, dtype=float)) ** self.exponent

    def label(self) -> str:
        return f"{self.coefficient:.2g} |λ|^{self.exponent:.2f}, R²={self.r2:.2f}"


def fit_power_law(
    x, y=None, *, lo: float, hi: float, side: str = "positive"
) -> PowerLawFit:
    """Fit ``y ~ a |x|^b`` over ``lo <= |x| <= hi`` on one ``side`` of the origin.

    ``x`` is either a grid (with densities ``y``) or a
    :class:`~hessian_spectrum.density.SpectralDensity`; a log spectrum
    (``kind == "log"``) is first mapped to a density of ``|lambda|`` (change of
    measure, paper eq. 6) and ``side`` is ignored.
    """
    if y is None:
        sd = x
        if getattr(sd, "kind", None) == "log":
            x, y = sd.abs_density()
            side = "positive"
        else:
            x, y = sd.grid, sd.density
    x = np.asarray(x, dtype=float)
    y = np.asarray(y, dtype=float)
    if x.shape != y.shape:
        raise ValueError(f"grid and density differ in shape: {x.shape} vs {y.shape}")
    if side not in ("positive", "negative"):
        raise ValueError(f"side must be 'positive' or 'negative', got {side!r}")
    if not 0 < lo < hi:
        raise ValueError(f"need 0 < lo < hi, got lo={lo}, hi={hi}")
    on_side = x > 0 if side == "positive" else x < 0
    ax = np.abs(x)
    keep = on_side & (ax >= lo) & (ax <= hi) & (y > 0) & np.isfinite(y)
    if keep.sum() < 3:
        raise ValueError(
            f"fewer than 3 grid points with positive density in [{lo}, {hi}] on the "
            f"{side} side: cannot fit a power law"
        )
    lx, ly = np.log10(ax[keep]), np.log10(y[keep])
    b, log_a = np.polyfit(lx, ly, 1)
    pred = log_a + b * lx
    ss_res = float(np.sum((ly - pred) ** 2))
    ss_tot = float(np.sum((ly - ly.mean()) ** 2))
    r2 = 1.0 - ss_res / ss_tot if ss_tot > 0 else 1.0
    return PowerLawFit(
        float(10**log_a), float(b), r2, float(lo), float(hi), int(keep.sum()), side
    )


@dataclass(frozen=True)
class TailFit:
    """A tail ``P(|lambda| > x) ~ x^(exponent + 1)`` on ``[lo, hi]``, one side.

    ``exponent`` is that of the density (``phi ~ |lambda|^exponent``); ``r2`` is the
    R² of the log-log line of the complementary CDF, ``r2_exponential`` that of the
    best exponential tail (``log P`` linear in ``x``) over the same points.
    """

    exponent: float
    r2: float
    r2_exponential: float
    lo: float
    hi: float
    num_points: int
    side: str

    @property
    def power_law_wins(self) -> bool:
        return self.r2 > self.r2_exponential


def _r2(x: np.ndarray, y: np.ndarray) -> tuple[float, float]:
    slope, icept = np.polyfit(x, y, 1)
    ss_tot = float(np.sum((y - y.mean()) ** 2))
    r2 = 1.0 - float(np.sum((y - icept - slope * x) ** 2)) / ss_tot if ss_tot else 1.0
    return float(slope), r2


def fit_tail(
    x, y, *, lo: float, hi: float, side: str = "positive", min_abs: float = 0.0
) -> TailFit:
    """Fit the tail of a density ``y`` on grid ``x`` through its complementary CDF.

    The CDF is the trapezoid integral of the density over ``|x| >= min_abs`` on
    ``side`` (so a spike at zero is left out), normalised to the mass there; the
    fits use its grid points with ``lo <= |x| <= hi`` and positive tail mass.
    """
    x = np.asarray(x, dtype=float)
    y = np.asarray(y, dtype=float)
    if x.shape != y.shape:
        raise ValueError(f"grid and density differ in shape: {x.shape} vs {y.shape}")
    if side not in ("positive", "negative"):
        raise ValueError(f"side must be 'positive' or 'negative', got {side!r}")
    if not 0 < lo < hi:
        raise ValueError(f"need 0 < lo < hi, got lo={lo}, hi={hi}")
    on = (x > 0 if side == "positive" else x < 0) & np.isfinite(y)
    ax, ay = np.abs(x[on]), np.clip(y[on], 0.0, None)
    order = np.argsort(ax)
    ax, ay = ax[order], ay[order]
    keep = ax >= min_abs
    ax, ay = ax[keep], ay[keep]
    cum = np.concatenate([[0.0], np.cumsum(0.5 * (ay[1:] + ay[:-1]) * np.diff(ax))])
    tail = cum[-1] - cum
    sel = (ax >= lo) & (ax <= hi) & (tail > 0)
    if sel.sum() < 3:
        raise ValueError(
            f"fewer than 3 grid points with tail mass in [{lo}, {hi}] on the {side} "
            "side: cannot fit a tail"
        )
    log_tail = np.log10(tail[sel] / cum[-1])
    slope, r2 = _r2(np.log10(ax[sel]), log_tail)
    _, r2_exp = _r2(ax[sel], log_tail)
    return TailFit(slope - 1.0, r2, r2_exp, float(lo), float(hi), int(sel.sum()), side)
