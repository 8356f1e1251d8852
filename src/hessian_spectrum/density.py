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

Smoothing (``smoothing=``).  ``"paper"`` is Algorithm 3's fixed width
``sigma = 2 / ((M - 1) sqrt(8 log kappa))`` on the normalised axis.  On the linear axis
the Ritz nodes of ``M`` steps are spread roughly evenly (their asymptotic density is
the arcsine law of the spectral interval), so one width fits all.  On the log axis
they are not: mapped through ``log10(|theta| + eps)`` the nodes crowd at the top of
the spectrum and thin out towards zero, where consecutive nodes lie decades apart,
and the fixed width draws a comb of narrow spikes (one per node) that only ``M``
close to ``p`` hides.  ``"adaptive"`` (the default of :func:`log_spectrum`) gives
each node the width of the resolution the quadrature has where it sits:

    h_m = max(sigma, c * min(t_m - t_{m-1}, t_{m+1} - t_m)),   c = ADAPTIVE_FACTOR = 0.5

(``t`` the normalised axis, the nodes of one start in ascending order; for a log
spectrum the positive and the negative nodes apart, since on the ``|lambda|`` axis the
two sides' nodes interleave irregularly).  Twins are merged first: fast Lanczos
places near-copies of converged eigenvalues ("ghosts", paper Section 5.5); two nodes
much closer to each other than to their other neighbours (:data:`TWIN_RATIO`) count
as one node for the gaps, else both would get a tiny width and draw a spike; for the
same reason nodes of negligible weight (:data:`LIGHT_RATIO`) are left out.  A
converged Ritz value is an eigenvalue (or an atom of equal ones, such as the zero
eigenvalues of G): its width is capped by its Ritz residual ``|beta_M y_m[M]|``, so
an atom next to a wide gap is not smeared across it.  An
``M``-node Gauss rule is exact for polynomials of degree ``2M - 1`` and cannot tell
apart two spectra that differ only within a node's cell, so a width below the cell
invents structure (the comb) and a width much above it erases structure the rule does
resolve.  With ``c = 0.5`` the sum of Gaussians over evenly spaced nodes ripples by
``2 exp(-2 pi^2 c^2) = 1.4 %`` (``c = 0.4``: 8.5 %), while two groups of nodes
separated by a gap wider than their spacing stay separated (tests: a power law, a
two-mode spectrum, counted local maxima and total variation against the
exact eigenvalues).  Taking the smaller of the two gaps keeps the nodes at the edge
of a group (the top outlier, the lowest node of a bulk) from spreading across the
gap next to them.

Resolution.  ``M`` steps resolve the spectrum near ``lambda = 0`` only to the node
spacing there: for nodes with the arcsine density on ``[lo, hi]`` that is
``d * ((pi/M) sqrt(1 - t0^2) + (pi/M)^2 / 2)`` with ``c, d`` the centre and half-width
of ``[lo, hi]`` and ``t0 = -c/d`` the position of zero, i.e. about ``5 lambda_max /
M^2`` for a positive semi-definite operator (zero at the edge) and ``pi lambda_max /
M`` for an indefinite one (zero inside).  :attr:`SpectralDensity.resolution` holds it;
a log spectrum below ``log10(resolution + eps)`` is mass the estimate cannot place
(:meth:`SpectralDensity.resolved`): results and figures mark it as unresolved.  Nodes
below that floor keep the fixed width ``sigma``.

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
from typing import Any

import numpy as np

from ._progress import Progress
from .lanczos import LanczosResult, fast_lanczos, start_vectors
from .operators import ProjectedOperator, as_operator
from .subspace import DEFAULT_TOL, SubspaceResult, subspace_iteration

__all__ = [
    "SpectralDensity",
    "spectral_bounds",
    "bounds_from_lanczos",
    "lanczos_approx_spec",
    "log_spectrum",
    "gaussian_width",
    "adaptive_widths",
    "lanczos_resolution",
    "SMOOTHINGS",
    "ADAPTIVE_FACTOR",
]

SMOOTHINGS = ("paper", "adaptive")
"""Kernel widths: Algorithm 3's fixed ``sigma``, or per node from the node spacing."""

ADAPTIVE_FACTOR = 0.5
"""``c`` of the adaptive widths ``h_m = max(sigma, c * gap_m)`` (module docstring)."""


@dataclass
class SpectralDensity:
    """An estimated spectral density.

    ``grid`` and ``density`` (float64, length K): eigenvalue units for ``kind ==
    "linear"``; for ``kind == "log"`` the grid is ``log10(|lambda| + eps)`` and the
    density is with respect to that variable.  ``outliers``: deflated eigenvalues, each
    a point mass of weight ``1/p``; the density integrates to ``1 - len(outliers)/p``.
    ``outlier_residuals`` / ``outliers_converged``: their residual norms and whether
    they met the subspace iteration's tolerance.  ``bounds``: the range the density
    was normalised on (Algorithm 4, with its margin for linear spectra);
    ``extremes``: the smallest and largest eigenvalue of the operator the Lanczos run
    saw (deflated: the bulk), Ritz values widened by their residuals, no margin.
    ``second_moment``: ``(1/p) sum lambda^2`` over that operator's spectrum, weighted
    like the density (Gauss quadrature, exact for degree 2, averaged over starts).
    ``resolution``: see :attr:`resolved_from`.
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
    outliers_converged: np.ndarray | None = None
    resolution: float | None = None
    extremes: tuple[float, float] | None = None
    second_moment: float | None = None

    def __repr__(self) -> str:
        grid = np.asarray(self.grid)
        span = f"[{grid[0]:.4g}, {grid[-1]:.4g}]" if grid.size else "[]"
        what = "log10(|lambda| + eps)" if self.kind == "log" else "lambda"
        return (
            f"SpectralDensity(kind={self.kind!r}, p={self.p}, "
            f"{len(grid)} points of {what} in {span}, "
            f"bounds=({self.bounds[0]:.4g}, {self.bounds[1]:.4g}), "
            f"outliers={len(self.outliers)}, num_products={self.num_products})"
        )

    def to_xarray(self):
        """This density as an ``xarray.Dataset`` with the grid as its coordinate.

        Variables ``density`` (dimension ``grid``), ``outliers``,
        ``outlier_residuals`` and ``outlier_converged`` (dimension ``outlier``, empty
        without deflation), scalars ``bound_lo``/``bound_hi``, ``lambda_min``/
        ``lambda_max``, ``second_moment``, ``resolution``; ``kind``, ``p``,
        ``num_products``, ``eps`` and the estimator settings as attributes.  The
        names are those of the workflow's ``spectra.nc``
        (:func:`hessian_spectrum.results.spectrum_dataset`), without its keys.
        xarray is imported only here.

        >>> ds = sd.to_xarray()                                   # doctest: +SKIP
        >>> ds.density.plot()                                     # doctest: +SKIP
        """
        import xarray as xr

        log = self.kind == "log"
        r = len(self.outliers)

        def opt(a, dtype, fill):
            return np.full(r, fill, dtype) if a is None else np.asarray(a, dtype)

        def val(x):
            return np.nan if x is None else float(x)

        grid_name = "log10(|eigenvalue| + eps)" if log else "eigenvalue"
        ds = xr.Dataset(
            {
                "density": (
                    "grid",
                    np.asarray(self.density, dtype=np.float64),
                    {"long_name": f"spectral density w.r.t. {grid_name}", "units": "1"},
                ),
                "outliers": (
                    "outlier",
                    np.asarray(self.outliers, dtype=np.float64).reshape(-1),
                    {
                        "long_name": "deflated top eigenvalues (weight 1/p each)",
                        "units": "1",
                    },
                ),
                "outlier_residuals": (
                    "outlier",
                    opt(self.outlier_residuals, np.float64, np.nan).reshape(-1),
                    {
                        "long_name": "residual norms of the deflated eigenpairs",
                        "units": "1",
                    },
                ),
                "outlier_converged": (
                    "outlier",
                    opt(self.outliers_converged, np.int8, -1).reshape(-1),
                    {"long_name": "deflated eigenpair met the residual tolerance"},
                ),
                "bound_lo": ((), float(self.bounds[0]), {"units": "1"}),
                "bound_hi": ((), float(self.bounds[1]), {"units": "1"}),
                "lambda_min": (
                    (),
                    val(self.extremes and self.extremes[0]),
                    {"units": "1"},
                ),
                "lambda_max": (
                    (),
                    val(self.extremes and self.extremes[1]),
                    {"units": "1"},
                ),
                "second_moment": ((), val(self.second_moment), {"units": "1"}),
                "resolution": ((), val(self.resolution), {"units": "1"}),
            },
            coords={
                "grid": (
                    "grid",
                    np.asarray(self.grid, dtype=np.float64),
                    {"long_name": grid_name, "units": "1"},
                )
            },
        )
        attrs = {
            k: v
            for k, v in self.settings.items()
            if isinstance(v, (int, float, str)) and not isinstance(v, bool)
        }
        attrs.update(kind=self.kind, p=int(self.p), num_products=int(self.num_products))
        if self.eps is not None:
            attrs["eps"] = float(self.eps)
        ds.attrs.update(attrs)
        return ds

    def integral(self) -> float:
        """Trapezoid integral of the density over its grid."""
        return float(np.trapezoid(self.density, self.grid))

    @property
    def bulk_weight(self) -> float:
        return 1.0 - len(self.outliers) / self.p

    @property
    def resolved_from(self) -> float:
        """Grid value below which the estimate is unresolved (``-inf``: nowhere).

        For a log spectrum ``log10(resolution + eps)``; a linear spectrum resolves its
        whole range at the scale of its kernel.
        """
        if self.kind != "log" or self.resolution is None:
            return -math.inf
        return math.log10(self.resolution + self.eps)

    def resolved(self) -> np.ndarray:
        """Mask of the grid points the ``M`` steps resolve (module docstring)."""
        return self.grid >= self.resolved_from

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


TWIN_RATIO = 0.25
"""Two neighbouring nodes closer than this fraction of the gaps on either side of
them are twins (a ghost copy of a converged eigenvalue) and share one width."""


LIGHT_RATIO = 1e-3
"""A node whose quadrature weight is below this fraction of both neighbours' (a
ghost, or a node the start vector barely sees) carries no mass worth resolving: it
is left out of the spacings, which it would otherwise halve for its neighbours."""


def adaptive_widths(
    nodes: np.ndarray,
    sigma: float,
    *,
    weights: np.ndarray | None = None,
    residuals: np.ndarray | None = None,
    factor: float = ADAPTIVE_FACTOR,
    fixed_below: float = -math.inf,
) -> np.ndarray:
    """Per-node kernel widths ``max(sigma, min(factor * gap, residual))``, ``gap`` the
    smaller of the gaps to the neighbouring nodes.

    ``nodes`` are one start's Ritz nodes on the normalised axis (any order) and
    ``weights`` their quadrature weights.  Light nodes (:data:`LIGHT_RATIO`) are left
    out of the gaps and get the width of the nearest other node; twins
    (:data:`TWIN_RATIO`) are merged into one node at their mean before the gaps are
    taken, and every member gets the merged node's width.  ``residuals`` (the Ritz
    residuals ``|beta_M y_m[M]|`` in axis units) cap each width: a converged Ritz
    value is an eigenvalue (or a cluster of equal ones, such as the zero
    eigenvalues), whose place is known to within its residual.  Nodes below
    ``fixed_below`` (the unresolved part of a log spectrum) keep ``sigma``.  See the
    module docstring for the choice of ``factor``.
    """
    nodes = np.asarray(nodes, dtype=float)
    widths = np.full(nodes.shape, float(sigma))
    if nodes.size < 2:
        return widths
    order = np.argsort(nodes)
    t = nodes[order]
    heavy = np.ones(t.size, bool)
    if weights is not None:
        w = np.asarray(weights, dtype=float)[order]
        left = np.insert(w[:-1], 0, 0.0)
        right = np.append(w[1:], 0.0)
        heavy = w >= LIGHT_RATIO * np.maximum(left, right)
    th = t[heavy]
    if th.size < 2:
        return widths
    gaps = np.diff(th)
    outer = np.minimum(np.insert(gaps[:-1], 0, np.inf), np.append(gaps[1:], np.inf))
    twin = gaps < TWIN_RATIO * outer
    group = np.concatenate([[0], np.cumsum(~twin)])
    centres = np.bincount(group, weights=th) / np.bincount(group)
    if centres.size < 2:
        return widths
    merged = np.diff(centres)
    nearest = np.minimum(np.append(merged, np.inf), np.insert(merged, 0, np.inf))
    w_heavy = np.maximum(sigma, factor * nearest)[group]
    # Every node takes the width of the nearest heavy node (itself, if heavy).
    pos = np.clip(np.searchsorted(th, t), 1, th.size - 1)
    nearer = np.where(np.abs(t - th[pos - 1]) <= np.abs(th[pos] - t), pos - 1, pos)
    out = w_heavy[nearer]
    out[heavy] = w_heavy
    if residuals is not None:
        out = np.maximum(sigma, np.minimum(out, np.asarray(residuals, float)[order]))
    out[t < fixed_below] = sigma
    widths[order] = out
    return widths


def lanczos_resolution(lo: float, hi: float, num_iters: int) -> float:
    """Node spacing at ``lambda = 0`` of an ``M``-node Gauss rule on ``[lo, hi]``.

    ``d ((pi/M) sqrt(1 - t0^2) + (pi/M)^2 / 2)`` with ``c, d`` the centre and
    half-width of ``[lo, hi]`` and ``t0 = -c/d`` clipped to ``[-1, 1]``: the spacing
    of the arcsine-distributed nodes there (about ``5 lambda_max / M^2`` for a
    semi-definite spectrum, ``pi lambda_max / M`` around an interior zero).
    """
    c, d = 0.5 * (lo + hi), 0.5 * (hi - lo)
    if not d > 0:
        return 0.0
    t0 = min(max(-c / d, -1.0), 1.0)
    step = math.pi / int(num_iters)
    return d * (step * math.sqrt(max(0.0, 1.0 - t0 * t0)) + 0.5 * step * step)


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
    if isinstance(deflate, SubspaceResult):
        if deflate.vectors.shape[0] != size:
            raise ValueError(
                f"deflate: the eigenvectors have {deflate.vectors.shape[0]} rows, "
                f"the operator has size {size}"
            )
    elif int(deflate) != deflate or deflate < 0 or deflate >= size:
        raise ValueError(f"deflate must be an integer in [0, {size}), got {deflate}")


def _check_smoothing(smoothing: str) -> None:
    if smoothing not in SMOOTHINGS:
        raise ValueError(
            f"smoothing must be one of {', '.join(SMOOTHINGS)}, got {smoothing!r}"
        )


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


def _smooth(nodes_weights_widths, grid: np.ndarray) -> np.ndarray:
    """``sum_l sum_m w_m^l g_{h_m^l}(grid - node_m^l) / n_vec``."""
    out = np.zeros_like(grid)
    for nodes, weights, widths in nodes_weights_widths:
        z = (grid[:, None] - nodes[None, :]) / widths[None, :]
        norm = 1.0 / (widths * math.sqrt(2.0 * math.pi))
        out += np.exp(-0.5 * z * z) @ (weights * norm)
    return out / len(nodes_weights_widths)


def _krylov(
    op,
    num_iters,
    num_vectors,
    seed,
    start,
    deflate,
    subspace_iters,
    subspace_tol,
    subspace_oversample,
    progress=False,
):
    """Run Lanczos (after deflation, if asked); return the run and what it cost.

    ``deflate``: a rank (subspace iteration runs here) or a :class:`SubspaceResult`
    already computed for this operator (shared by several estimates).
    """
    op = as_operator(op)
    outliers = np.empty(0)
    residuals = converged = None
    target = op
    v0 = None
    products = 0
    if isinstance(deflate, SubspaceResult) or deflate:
        if isinstance(deflate, SubspaceResult):
            found = deflate
        else:
            found = subspace_iteration(
                op,
                deflate,
                subspace_iters,
                seed=seed,
                tol=subspace_tol,
                oversample=subspace_oversample,
                progress=progress,
            )
        products += found.num_products  # counted by every estimate that uses it
        vals, vecs, resid = found
        outliers, residuals = vals.numpy(), resid.numpy()
        converged = found.converged
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
        target,
        num_iters,
        num_vectors=num_vectors,
        seed=seed,
        start=start,
        v0=v0,
        progress=progress,
    )
    products += res.num_products
    return op, res, (outliers, residuals, converged), products


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
    subspace_tol: float | None = DEFAULT_TOL,
    subspace_oversample: int = 0,
    start: str = "rademacher",
    smoothing: str = "paper",
    progress: Any = False,
) -> SpectralDensity:
    """LANCZOSAPPROXSPEC (Algorithm 3), normalised by Algorithm 4, in eigenvalue units.

    Defaults are the paper's (Appendix C.2): ``M = 128``, ``K = 1024``, ``n_vec = 1``,
    ``kappa = 3``, margin ``tau = 0.05``, subspace iterations ``T = 128``.

    ``deflate = r`` first finds the top-``r`` eigenpairs by :func:`subspace_iteration`
    (at most ``subspace_iters`` steps with ``subspace_oversample`` extra columns,
    stopping at ``subspace_tol``; the residuals and
    convergence flags are kept in ``outlier_residuals`` and ``outliers_converged``);
    ``deflate`` may also be a :class:`~hessian_spectrum.subspace.SubspaceResult` of
    this operator computed before (several estimates then share one subspace
    iteration).  The bulk then comes from ``P A P`` (``P`` projecting out those
    eigenvectors) with start vectors in the complement, so the ``r`` deflated
    directions add no spurious mass at zero: the bulk carries weight ``(p - r)/p`` and
    each outlier ``1/p``.

    ``smoothing``: ``"paper"`` (Algorithm 3's fixed width, the default here) or
    ``"adaptive"`` (per-node widths from the node spacing; module docstring).

    ``bounds`` skips Algorithm 4; otherwise the bounds come from the same Krylov space
    (see the module docstring): total cost ``M * n_vec`` products (plus
    ``(T + 1) r`` for deflation).

    ``progress``: ``True`` prints a line every few seconds to stderr (the subspace
    iteration's and the Lanczos steps, with elapsed time and an estimate of what is
    left); a callable ``f(what, done, total, elapsed_s)`` gets every step
    (:mod:`hessian_spectrum._progress`).
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
        (subspace_tol, subspace_oversample),
        start,
        smoothing,
        bounds=bounds,
        progress=Progress("lanczos_approx_spec", 0, progress),
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
    deflate: int | SubspaceResult = 0,
    margin: float = 0.05,
    subspace_iters: int = 128,
    subspace_tol: float | None = DEFAULT_TOL,
    subspace_oversample: int = 0,
    start: str = "rademacher",
    smoothing: str = "adaptive",
    progress: Any = False,
) -> SpectralDensity:
    """Density of ``s = log10(|lambda| + eps)`` (paper Section 5.6; ``M = 2048`` there).

    The Ritz nodes of one Lanczos run are mapped to ``s`` and smoothed on the
    normalised ``s`` range: by default with per-node widths from the node spacing
    (``smoothing="adaptive"``), or with Algorithm 3's fixed ``sigma``
    (``smoothing="paper"``, the paper's kernel, which draws a comb unless ``M`` is
    close to ``p``; module docstring).  The ``s`` range is
    ``[log10(eps), log10(max|lambda| + eps)]`` (from the Ritz bounds) widened by
    ``margin``.  ``resolution`` (and :meth:`SpectralDensity.resolved`) mark the part
    below what ``M`` steps resolve.  See the module docstring for the change of
    measure to ``|lambda|``; ``deflate`` and ``progress`` as in
    :func:`lanczos_approx_spec`.
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
        (subspace_tol, subspace_oversample),
        start,
        smoothing,
        eps=float(eps),
        progress=Progress("log_spectrum", 0, progress),
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
    subspace,
    start,
    smoothing,
    *,
    bounds=None,
    eps=None,
    progress=None,
) -> SpectralDensity:
    """One Lanczos run (after deflation) smoothed into a density: of ``lambda``
    (``eps=None``, on ``bounds`` or the widened Ritz bounds) or of
    ``log10(|lambda| + eps)`` (on ``[log10 eps, log10(max|lambda| + eps)]`` widened)."""
    op = as_operator(op)
    _validate(num_iters, num_points, num_vectors, kappa, margin, deflate, op.size)
    _check_smoothing(smoothing)
    subspace_tol, subspace_oversample = subspace
    op, res, (outliers, residuals, converged), products = _krylov(
        op,
        num_iters,
        num_vectors,
        seed,
        start,
        deflate,
        subspace_iters,
        subspace_tol,
        subspace_oversample,
        progress,
    )
    rank = outliers.size
    settings = dict(
        num_iters=int(num_iters),
        num_points=int(num_points),
        num_vectors=int(num_vectors),
        kappa=float(kappa),
        seed=int(seed),
        deflate=int(rank),
        margin=float(margin),
        subspace_iters=int(subspace_iters),
        start=start,
        smoothing=smoothing,
    )
    if rank:
        settings["subspace_tol"] = float(
            deflate.tol
            if isinstance(deflate, SubspaceResult)
            else (DEFAULT_TOL if subspace_tol is None else subspace_tol)
        )
    ritz_lo, ritz_hi = bounds_from_lanczos(res, 0.0)
    resolution = lanczos_resolution(ritz_lo, ritz_hi, int(num_iters))
    bulk_weight = 1.0 - rank / op.size
    moment = bulk_weight * float(
        np.mean([np.sum(w * t * t) for t, w in map(res.ritz, range(res.num_starts))])
    )
    if eps is None:
        lo, hi = bounds if bounds is not None else bounds_from_lanczos(res, margin)
        axis_lo, axis_hi = lo, hi

        def to_axis(theta):
            return theta

        log = {}
        floor = -math.inf
    else:
        lo, hi = ritz_lo, ritz_hi
        axis_lo, axis_hi = _widen(
            math.log10(eps), math.log10(max(abs(lo), abs(hi)) + eps), margin
        )

        def to_axis(theta):
            return np.log10(np.abs(theta) + eps)

        settings["eps"] = eps
        log = dict(kind="log", eps=eps)
        floor = math.log10(resolution + eps)
    grid, density = _smoothed(
        res,
        to_axis,
        axis_lo,
        axis_hi,
        num_iters,
        num_points,
        kappa,
        smoothing=smoothing,
        fixed_below=floor,
        bulk_weight=bulk_weight,
        by_sign=eps is not None,
    )
    if progress is not None:
        progress.unit = "product"
        progress.finish(products, f"{rank} outliers deflated")
    return SpectralDensity(
        grid=grid,
        density=density,
        outliers=outliers,
        bounds=(float(lo), float(hi)),
        p=op.size,
        num_products=products,
        settings=settings,
        outlier_residuals=residuals,
        outliers_converged=converged,
        resolution=float(resolution),
        extremes=(float(ritz_lo), float(ritz_hi)),
        second_moment=moment,
        **log,
    )


def _smoothed(
    res,
    to_axis,
    lo,
    hi,
    num_iters,
    num_points,
    kappa,
    *,
    smoothing,
    fixed_below,
    bulk_weight,
    by_sign=False,
):
    """Algorithm 3 on ``[lo, hi]`` of the axis ``to_axis(theta)``: (grid, density).

    The Ritz nodes of every start, mapped to the axis, are normalised to ``[-1, 1]``
    (``c``, ``d``), smoothed there with the Gaussian width of Algorithm 3 (or the
    adaptive widths, nodes below ``fixed_below`` on the axis keeping the fixed one),
    and the density is mapped back (``/ d``) and scaled by the bulk's weight.
    """
    c, d = 0.5 * (lo + hi), 0.5 * (hi - lo)
    t = np.linspace(-1.0, 1.0, int(num_points))
    sigma = gaussian_width(int(num_iters), kappa, int(num_points))
    below = (fixed_below - c) / d
    nodes = []
    for i in range(res.num_starts):
        theta, w = res.ritz(i)
        x = (to_axis(theta) - c) / d
        widths = np.full(x.shape, sigma)
        if smoothing == "adaptive":
            # A residual r in eigenvalue units moves the node by |d axis / d theta| r.
            step = 1e-6 * np.maximum(np.abs(theta), 1e-300)
            slope = np.abs(to_axis(theta + step) - to_axis(theta)) / step
            resid = res.ritz_residuals(i) * slope / d
            # Each sign's nodes form one Gauss rule; on the |lambda| axis of a log
            # spectrum the two interleave, so their spacings are read apart.
            for side in (theta >= 0, theta < 0) if by_sign else (slice(None),):
                widths[side] = adaptive_widths(
                    x[side],
                    sigma,
                    weights=w[side],
                    residuals=resid[side],
                    fixed_below=below,
                )
        nodes.append((x, w, widths))
    return c + d * t, _smooth(nodes, t) / d * bulk_weight
