r"""Spectral densities by stochastic Lanczos quadrature (paper Section 5, Appendix B).

- :func:`spectral_bounds` -- NORMALIZATION (Algorithm 4): extreme Ritz values widened by
  their residuals ``|beta_M y_m[M]|`` and a margin ``tau``.
- :func:`lanczos_approx_spec` -- LANCZOSAPPROXSPEC (Algorithm 3): the density
  ``phi(t) = 1/n_vec sum_l sum_m y_m^l[1]^2 g_sigma(t - theta_m^l)`` on ``K`` points of
  the normalised range ``[-1, 1]``, with
  ``sigma = 2 / ((M - 1) sqrt(8 log kappa))``, mapped back to eigenvalue units.
  Optional low-rank deflation (Algorithm 5 first, paper Section 5.7 and C.2).
- :func:`log_spectrum` -- the density of ``log10(|lambda| + eps)`` (paper Section 5.6).

One Krylov space serves both the bounds and the density.  Lanczos is shift- and
scale-equivariant: on ``(A - cI)/d`` from the same start it produces the same basis with
``alpha' = (alpha - c)/d`` and ``beta' = beta/d``, so its Ritz values are
``(theta - c)/d`` and its weights are unchanged.  Algorithm 4 followed by Algorithm 3
therefore needs only the ``M`` products of one run (the paper spends ``M_0 + M``); the
bounds come from the full ``T_M`` (tighter than from ``T_{M_0}``, which is its leading
block).

Log spectrum convention.  ``log_spectrum`` returns the density ``psi(s)`` of
``s = log10(|lambda| + eps)`` under the spectral measure
``(1/p) sum_i delta_{lambda_i}``: the Gauss quadrature nodes ``theta_m`` are mapped to
``s_m = log10(|theta_m| + eps)`` and smoothed there, so ``psi`` integrates to 1 over
``s``.  To plot against ``|lambda|`` use the change of measure (paper eq. 6)

    phi_{|lambda|}(x) = psi(log10(x + eps)) / ((x + eps) ln 10),

available as :meth:`SpectralDensity.abs_density`.  The ``eps`` floor puts the mass of
the zero (and near-zero) eigenvalues at ``s = log10(eps)``: the bump at ``1e-5`` of the
paper's Figure 7.

Example
-------
>>> import torch, hessian_spectrum as hs
>>> A = torch.diag(torch.linspace(-1, 1, 500, dtype=torch.float64))
>>> sd = hs.lanczos_approx_spec(A, num_iters=64, num_points=256, num_vectors=4)
>>> round(sd.integral(), 3)
1.0
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from .lanczos import LanczosResult, fast_lanczos, start_vectors
from .operators import ProjectedOperator, as_operator
from .subspace import subspace_iteration

__all__ = [
    "SpectralDensity",
    "spectral_bounds",
    "bounds_from_lanczos",
    "lanczos_approx_spec",
    "log_spectrum",
    "gaussian_width",
]


@dataclass
class SpectralDensity:
    """An estimated spectral density.

    ``grid`` and ``density`` (float64, length K): eigenvalue units for ``kind ==
    "linear"``; for ``kind == "log"`` the grid is ``log10(|lambda| + eps)`` and the
    density is with respect to that variable.  ``outliers``: deflated eigenvalues, each
    a point mass of weight ``1/p``; the density integrates to ``1 - len(outliers)/p``.
    """

    grid: np.ndarray
    density: np.ndarray
    outliers: np.ndarray
    bounds: tuple[float, float]
    p: int
    num_products: int
    settings: dict = field(default_factory=dict)
    kind: str = "linear"
    eps: float | None = None
    outlier_residuals: np.ndarray | None = None

    def integral(self) -> float:
        """Trapezoid integral of the density over its grid."""
        return float(np.trapezoid(self.density, self.grid))

    @property
    def bulk_weight(self) -> float:
        return 1.0 - len(self.outliers) / self.p

    def abs_density(self) -> tuple[np.ndarray, np.ndarray]:
        """For a log spectrum: ``(|lambda|, density w.r.t. |lambda|)`` (paper eq. 6)."""
        if self.kind != "log":
            raise ValueError("abs_density applies to log spectra (kind='log')")
        x = 10.0**self.grid - self.eps
        keep = x > 0
        return x[keep], self.density[keep] / ((x[keep] + self.eps) * math.log(10.0))


def gaussian_width(
    num_iters: int, kappa: float, num_points: int | None = None
) -> float:
    """``sigma = 2 / ((M - 1) sqrt(8 log kappa))`` on the normalised range [-1, 1].

    With ``num_points`` given, ``sigma`` is floored at the grid spacing ``2 / (K - 1)``:
    narrower Gaussians fall between grid points and the density would no longer
    integrate to 1 on its grid (this happens for ``M > K / 3``, e.g. the paper's log
    spectra with ``M = 2048``, ``K = 1024``).
    """
    sigma = 2.0 / ((num_iters - 1) * math.sqrt(8.0 * math.log(kappa)))
    if num_points is not None:
        sigma = max(sigma, 2.0 / (num_points - 1))
    return sigma


def _validate(num_iters, num_points, num_vectors, kappa, margin, deflate, size):
    if int(num_iters) != num_iters or num_iters < 2:
        raise ValueError(f"num_iters must be an integer >= 2, got {num_iters}")
    if int(num_points) != num_points or num_points < 2:
        raise ValueError(f"num_points must be an integer >= 2, got {num_points}")
    if int(num_vectors) != num_vectors or num_vectors < 1:
        raise ValueError(f"num_vectors must be a positive integer, got {num_vectors}")
    if not kappa > 1.0:
        raise ValueError(f"kappa must be > 1, got {kappa}")
    if not margin >= 0.0:
        raise ValueError(f"margin must be >= 0, got {margin}")
    if int(deflate) != deflate or deflate < 0 or deflate >= size:
        raise ValueError(f"deflate must be an integer in [0, {size}), got {deflate}")


def bounds_from_lanczos(
    res: LanczosResult, margin: float = 0.05
) -> tuple[float, float]:
    """Algorithm 4 on an existing Lanczos run (all its starts): no further products."""
    lo, hi = math.inf, -math.inf
    for i in range(res.num_starts):
        theta, _ = res.ritz(i)
        resid = res.ritz_residuals(i)
        lo = min(lo, theta[0] - resid[0])
        hi = max(hi, theta[-1] + resid[-1])
    return _widen(lo, hi, margin)


def _widen(lo: float, hi: float, margin: float) -> tuple[float, float]:
    width = hi - lo
    if width <= 1e-12 * max(abs(lo), abs(hi), 1e-300):
        # A multiple of the identity (or zero): give the grid a width to live on.
        width = max(abs(lo), abs(hi), 1.0) * 1e-3
        return lo - width, hi + width
    delta = margin * width
    return lo - delta, hi + delta


def spectral_bounds(
    op,
    num_iters: int = 32,
    margin: float = 0.05,
    *,
    seed: int = 0,
    num_vectors: int = 1,
) -> tuple[float, float]:
    """NORMALIZATION (Algorithm 4): ``(lambda_min, lambda_max)`` with margin ``tau``.

    ``theta_1 - ||(A - theta_1) x_1||`` and ``theta_M + ||(A - theta_M) x_M||``, each
    residual read off the tridiagonal as ``|beta_M y_m[M]|``, then widened by
    ``margin * (max - min)`` on each side.  Costs ``num_iters`` products per start.
    Defaults ``M_0 = 32``, ``tau = 0.05`` are the paper's (Appendix C.2).
    """
    op = as_operator(op)
    res = fast_lanczos(op, num_iters, num_vectors=num_vectors, seed=seed)
    return bounds_from_lanczos(res, margin)


def _smooth(nodes_weights, grid: np.ndarray, sigma: float) -> np.ndarray:
    """``sum_l sum_m w_m^l g_sigma(grid - node_m^l) / n_vec``."""
    out = np.zeros_like(grid)
    norm = 1.0 / (sigma * math.sqrt(2.0 * math.pi))
    for nodes, weights in nodes_weights:
        z = (grid[:, None] - nodes[None, :]) / sigma
        out += (np.exp(-0.5 * z * z) * norm) @ weights
    return out / len(nodes_weights)


def _krylov(op, num_iters, num_vectors, seed, start, deflate, subspace_iters):
    """Run Lanczos (after deflation, if asked); return the run and what it cost."""
    op = as_operator(op)
    outliers = np.empty(0)
    residuals = None
    target = op
    v0 = None
    products = 0
    if deflate:
        before = op.num_products
        vals, vecs, resid = subspace_iteration(op, deflate, subspace_iters, seed=seed)
        products += op.num_products - before
        outliers, residuals = vals.numpy(), resid.numpy()
        target = ProjectedOperator(op, vecs)
        v0 = target.project(
            start_vectors(
                op.size,
                num_vectors,
                seed=seed,
                kind=start,
                dtype=op.dtype,
                device=op.device,
            )
        )
    res = fast_lanczos(
        target, num_iters, num_vectors=num_vectors, seed=seed, start=start, v0=v0
    )
    products += res.num_products
    return op, res, outliers, residuals, products


def lanczos_approx_spec(
    op,
    num_iters: int = 128,
    num_points: int = 1024,
    num_vectors: int = 1,
    kappa: float = 3.0,
    seed: int = 0,
    *,
    deflate: int = 0,
    margin: float = 0.05,
    bounds: tuple[float, float] | None = None,
    subspace_iters: int = 128,
    start: str = "rademacher",
) -> SpectralDensity:
    """LANCZOSAPPROXSPEC (Algorithm 3), normalised by Algorithm 4, in eigenvalue units.

    Defaults are the paper's (Appendix C.2): ``M = 128``, ``K = 1024``, ``n_vec = 1``,
    ``kappa = 3``, margin ``tau = 0.05``, subspace iterations ``T = 128``.

    ``deflate = r`` first finds the top-``r`` eigenpairs by :func:`subspace_iteration`;
    the bulk then comes from ``P A P`` (``P`` projecting out those eigenvectors) with
    start vectors in the complement, so the ``r`` deflated directions add no spurious
    mass at zero: the bulk carries weight ``(p - r)/p`` and each outlier ``1/p``.

    ``bounds`` skips Algorithm 4; otherwise the bounds come from the same Krylov space
    (see the module docstring): total cost ``M * n_vec`` products (plus
    ``(T + 1) r`` for deflation).
    """
    return _estimate(
        op,
        num_iters,
        num_points,
        num_vectors,
        kappa,
        seed,
        deflate,
        margin,
        subspace_iters,
        start,
        bounds=bounds,
    )


def log_spectrum(
    op,
    num_iters: int = 2048,
    num_points: int = 1024,
    num_vectors: int = 1,
    kappa: float = 3.0,
    seed: int = 0,
    *,
    eps: float = 1e-5,
    deflate: int = 0,
    margin: float = 0.05,
    subspace_iters: int = 128,
    start: str = "rademacher",
) -> SpectralDensity:
    """Density of ``s = log10(|lambda| + eps)`` (paper Section 5.6; ``M = 2048`` there).

    The Ritz nodes of one Lanczos run are mapped to ``s`` and smoothed on the
    normalised ``s`` range with the same ``sigma`` as Algorithm 3.  The ``s`` range is
    ``[log10(eps), log10(max|lambda| + eps)]`` (from the Ritz bounds) widened by
    ``margin``.  See the module docstring for the change of measure to ``|lambda|``.
    """
    if not eps > 0:
        raise ValueError(f"eps must be > 0, got {eps}")
    return _estimate(
        op,
        num_iters,
        num_points,
        num_vectors,
        kappa,
        seed,
        deflate,
        margin,
        subspace_iters,
        start,
        eps=float(eps),
    )


def _estimate(
    op,
    num_iters,
    num_points,
    num_vectors,
    kappa,
    seed,
    deflate,
    margin,
    subspace_iters,
    start,
    *,
    bounds=None,
    eps=None,
) -> SpectralDensity:
    """One Lanczos run (after deflation) smoothed into a density: of ``lambda``
    (``eps=None``, on ``bounds`` or the widened Ritz bounds) or of
    ``log10(|lambda| + eps)`` (on ``[log10 eps, log10(max|lambda| + eps)]`` widened)."""
    op = as_operator(op)
    _validate(num_iters, num_points, num_vectors, kappa, margin, deflate, op.size)
    op, res, outliers, residuals, products = _krylov(
        op, num_iters, num_vectors, seed, start, deflate, subspace_iters
    )
    settings = dict(
        num_iters=int(num_iters),
        num_points=int(num_points),
        num_vectors=int(num_vectors),
        kappa=float(kappa),
        seed=int(seed),
        deflate=int(deflate),
        margin=float(margin),
        subspace_iters=int(subspace_iters),
        start=start,
    )
    if eps is None:
        lo, hi = bounds if bounds is not None else bounds_from_lanczos(res, margin)
        axis_lo, axis_hi = lo, hi

        def to_axis(theta):
            return theta

        log = {}
    else:
        lo, hi = bounds_from_lanczos(res, 0.0)
        axis_lo, axis_hi = _widen(
            math.log10(eps), math.log10(max(abs(lo), abs(hi)) + eps), margin
        )

        def to_axis(theta):
            return np.log10(np.abs(theta) + eps)

        settings["eps"] = eps
        log = dict(kind="log", eps=eps)
    grid, density = _smoothed(
        res,
        to_axis,
        axis_lo,
        axis_hi,
        num_iters,
        num_points,
        kappa,
        bulk_weight=1.0 - deflate / op.size,
    )
    return SpectralDensity(
        grid=grid,
        density=density,
        outliers=outliers,
        bounds=(float(lo), float(hi)),
        p=op.size,
        num_products=products,
        settings=settings,
        outlier_residuals=residuals,
        **log,
    )


def _smoothed(res, to_axis, lo, hi, num_iters, num_points, kappa, *, bulk_weight):
    """Algorithm 3 on ``[lo, hi]`` of the axis ``to_axis(theta)``: (grid, density).

    The Ritz nodes of every start, mapped to the axis, are normalised to ``[-1, 1]``
    (``c``, ``d``), smoothed there with the Gaussian width of Algorithm 3, and the
    density is mapped back (``/ d``) and scaled by the bulk's weight.
    """
    c, d = 0.5 * (lo + hi), 0.5 * (hi - lo)
    t = np.linspace(-1.0, 1.0, int(num_points))
    sigma = gaussian_width(int(num_iters), kappa, int(num_points))
    nodes = [
        ((to_axis(theta) - c) / d, w)
        for theta, w in (res.ritz(i) for i in range(res.num_starts))
    ]
    return c + d * t, _smooth(nodes, t, sigma) / d * bulk_weight
