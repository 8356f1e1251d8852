"""The paper's figures, drawn from the aggregated NetCDF results (docs/CONTRACTS.md).

One public function per figure kind; each reads xarray objects only (never checkpoints)
and returns a :class:`matplotlib.figure.Figure` built without pyplot, so no backend or
global state is involved. :func:`save_figure` writes it as PNG and PDF.

Conventions shared by all figures:

- Colours per operator are fixed in :data:`OPERATOR_COLORS` (Hess red, G green, H blue,
  A1 gold, B1 yellow-green, A2 teal, B2 dark red). Figure 7 follows the paper
  instead for G itself (blue log spectrum, orange top-C eigenvalues), because there G
  shares the panel with B1's green.
- Densities are drawn on a log density axis clipped to :data:`LOG_DENSITY_DECADES`
  decades below the panel's peak; deflated outliers (point masses of weight 1/p, which
  have no height on a density axis) are drawn as sticks at their eigenvalues.
- A combination (dataset, arch, sample size, epoch) absent from the coordinates is a
  user error (``ValueError`` naming the value and what is present); a spectrum that is
  NaN, or an operator / variant / split absent from the coordinates, is "not computed"
  and its panel says so.
- ``sample_size=None`` / ``epoch=None`` pick the largest sample size, then the largest
  epoch, for which the figure's main spectrum was computed.

Example
-------
>>> import xarray as xr, hessian_spectrum.plotting as hp
>>> spectra = xr.load_dataset("results/spectra.nc")  # doctest: +SKIP
>>> fig = hp.figure2_hessian_deflated(spectra, arch="vgg11")  # doctest: +SKIP
>>> hp.save_figure(fig, "results/figures/fig2.png")  # doctest: +SKIP
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import NamedTuple

import numpy as np
import xarray as xr
from matplotlib import colormaps
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from hessian_spectrum.density import gaussian_width
from hessian_spectrum.powerlaw import PowerLawFit, fit_power_law

__all__ = [
    "OPERATOR_COLORS",
    "Spectrum",
    "ZERO_SPIKE_WIDTHS",
    "bulk_edge",
    "bulk_range",
    "figure1_g_decomposition",
    "figure2_hessian_deflated",
    "figure3_components",
    "figure4_h_tails",
    "figure5_deflation",
    "figure6_dynamics",
    "figure7_g_hierarchy",
    "figure8_selfcheck",
    "figure9_hessian_plain",
    "figure10_learning_curves",
    "g_peak_epochs",
    "save_figure",
    "select_spectrum",
    "tail_range",
]

OPERATOR_COLORS: dict[str, str] = {
    "hess": "tab:red",
    "G": "tab:green",
    "H": "tab:blue",
    "A1": "gold",
    "B1": "yellowgreen",
    "A2": "teal",
    "B2": "firebrick",
    # G minus one component keeps G's colour (Figure 1 draws G itself in grey behind).
    "G-A1": "tab:green",
    "G-A2": "tab:green",
    "G-B1": "tab:green",
    "G-B2": "tab:green",
}
"""Colour of each operator, the same in every figure."""

OPERATOR_LABELS: dict[str, str] = {
    "hess": "Hess",
    "G": "G",
    "H": "H",
    **{k: k for k in ("A1", "A2", "B1", "B2")},
    **{f"G-{k}": f"G − {k}" for k in ("A1", "A2", "B1", "B2")},
}
G_TOP_COLOR = "tab:orange"  # Figure 7: top-C eigenvalues of G (paper's colour)
G_LOG_COLOR = "tab:blue"  # Figure 7: log spectrum of G (paper's colour)
SOURCE_CODES = {0: "A1", 1: "B1", 2: "A2"}  # decomposition.nc a1a2b1_source flags
LOG_DENSITY_DECADES = 7.0
ZERO_SPIKE_WIDTHS = 5.0
"""Half-width, in Gaussian kernel widths of a Lanczos estimate, of the smoothed spike
of zero eigenvalues: beyond it the spike leaves less than 3e-7 of its mass."""
NOT_COMPUTED = "not computed"
LOG_AXIS_LABEL = "log10(|eigenvalue λ| + ε)"
LOG_DENSITY_LABEL = "density of log10|λ|"


class Spectrum(NamedTuple):
    """One estimated spectrum with NaN padding removed."""

    grid: np.ndarray
    density: np.ndarray
    outliers: np.ndarray
    variant: str


# --------------------------------------------------------------------------- selection


def _check_value(ds: xr.Dataset, dim: str, value) -> None:
    present = ds[dim].values.tolist()
    if value not in present:
        raise ValueError(f"{dim}={value!r} is not in the results; present: {present}")


def _first(ds: xr.Dataset, dim: str, value):
    """``value`` checked against the coordinate, or its first entry when None."""
    if value is None:
        return ds[dim].values.tolist()[0]
    _check_value(ds, dim, value)
    return value


def _has(ds: xr.Dataset, dim: str, value) -> bool:
    return value in ds[dim].values.tolist()


def select_spectrum(
    spectra: xr.Dataset,
    *,
    dataset: str,
    arch: str,
    sample_size: int,
    epoch: int,
    split: str,
    operator: str,
    variant: str,
) -> Spectrum | None:
    """The spectrum at one coordinate, or None when it was not computed.

    Raises ``ValueError`` for a dataset, arch, sample size or epoch absent from the
    coordinates; an absent split, operator or variant counts as not computed.
    """
    for dim, value in (
        ("dataset", dataset),
        ("arch", arch),
        ("sample_size", sample_size),
        ("epoch", epoch),
    ):
        _check_value(spectra, dim, value)
    if not all(
        _has(spectra, d, v)
        for d, v in (("split", split), ("operator", operator), ("variant", variant))
    ):
        return None
    point = spectra.sel(
        dataset=dataset,
        arch=arch,
        sample_size=sample_size,
        epoch=epoch,
        split=split,
        operator=operator,
        variant=variant,
    )
    grid = np.asarray(point["grid"].values, dtype=float)
    density = np.asarray(point["density"].values, dtype=float)
    keep = np.isfinite(grid) & np.isfinite(density)
    if not keep.any():
        return None
    outliers = np.array([])
    if "outliers" in point:
        outliers = np.asarray(point["outliers"].values, dtype=float)
        outliers = outliers[np.isfinite(outliers)]
    return Spectrum(grid[keep], density[keep], outliers, variant)


def _first_available(
    spectra: xr.Dataset, variants: Sequence[str], **sel
) -> Spectrum | None:
    for variant in variants:
        found = select_spectrum(spectra, variant=variant, **sel)
        if found is not None:
            return found
    return None


def _computed(spectra: xr.Dataset, dataset: str, arch: str, operator: str, split: str):
    """Boolean (sample_size, epoch) array: is any variant of the spectrum computed?"""
    if not (_has(spectra, "operator", operator) and _has(spectra, "split", split)):
        return None
    dens = spectra["density"].sel(
        dataset=dataset, arch=arch, operator=operator, split=split
    )
    return np.isfinite(dens).any(dim=("variant", "point"))


def _latest_computed(
    spectra: xr.Dataset,
    dataset: str,
    arch: str,
    sample_size: int | None,
    epoch: int | None,
    *,
    operator: str,
    split: str = "train",
) -> tuple[int, int]:
    """Fill in None sample size / epoch by the largest with the spectrum computed."""
    if sample_size is not None:
        _check_value(spectra, "sample_size", sample_size)
    if epoch is not None:
        _check_value(spectra, "epoch", epoch)
    done = _computed(spectra, dataset, arch, operator, split)
    sizes = (
        [sample_size]
        if sample_size is not None
        else sorted(spectra["sample_size"].values.tolist(), reverse=True)
    )
    epochs = (
        [epoch]
        if epoch is not None
        else sorted(spectra["epoch"].values.tolist(), reverse=True)
    )
    if done is not None:
        for n in sizes:
            for e in epochs:
                if bool(done.sel(sample_size=n, epoch=e)):
                    return int(n), int(e)
    return int(sizes[0]), int(epochs[0])


def _grid_values(
    spectra: xr.Dataset, dim: str, chosen: Sequence[int] | None, done, max_panels: int
) -> list[int]:
    """Rows or columns of a grid figure: ``chosen``, else those with data, thinned."""
    if chosen is not None:
        for value in chosen:
            _check_value(spectra, dim, value)
        return [int(v) for v in chosen]
    values = spectra[dim].values
    if done is not None:
        other = "epoch" if dim == "sample_size" else "sample_size"
        with_data = done.any(dim=other).values
        values = values[with_data] if with_data.any() else values
    values = sorted(int(v) for v in values)
    if len(values) > max_panels:
        keep = np.unique(
            np.round(np.linspace(0, len(values) - 1, max_panels)).astype(int)
        )
        values = [values[i] for i in keep]
    return values


# ----------------------------------------------------------------- derived quantities


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


def _kernel_width(spectra: xr.Dataset, grid: np.ndarray) -> float:
    """Gaussian width of a (linear) Lanczos estimate in eigenvalue units, 0 if unknown.

    Algorithm 3's sigma on [-1, 1], floored at the grid spacing as
    :func:`~hessian_spectrum.density.gaussian_width` does, times the half-range of the
    grid (which spans the normalisation bounds).
    """
    iters, kappa = spectra.attrs.get("num_iters"), spectra.attrs.get("kappa")
    if iters is None or kappa is None or grid.size < 2:
        return 0.0
    sigma = gaussian_width(int(iters), float(kappa), int(grid.size))
    return sigma * (grid[-1] - grid[0]) / 2


def g_peak_epochs(
    *,
    dataset: str,
    arch: str,
    decomposition: xr.Dataset | None = None,
    spectra: xr.Dataset | None = None,
) -> dict[int, int]:
    """Per sample size, the checkpoint epoch at which train G is largest (Figure 10).

    "Largest" is the top eigenvalue of train G: ``decomposition.nc``'s
    ``g_top_eigenvalues`` (maximum over rank; from subspace iteration) when given;
    otherwise from ``spectra.nc``: the largest deflated outlier of train G (the same
    subspace-iteration eigenvalue), and where G was not deflated, its ``bound_hi``
    (plain variant: Algorithm 4's upper bound, the top eigenvalue plus the margin).
    Sample sizes without any value are left out.
    """
    if decomposition is not None:
        _check_value(decomposition, "dataset", dataset)
        _check_value(decomposition, "arch", arch)
        top = decomposition["g_top_eigenvalues"].sel(dataset=dataset, arch=arch)
        top = top.max(dim="rank", skipna=True)
    elif spectra is not None:
        _check_value(spectra, "dataset", dataset)
        _check_value(spectra, "arch", arch)
        if not (_has(spectra, "split", "train") and _has(spectra, "operator", "G")):
            return {}
        g = spectra.sel(dataset=dataset, arch=arch, split="train", operator="G")
        top = xr.full_like(g["bound_hi"].isel(variant=0), np.nan)
        if _has(spectra, "variant", "plain"):
            top = g["bound_hi"].sel(variant="plain")
        if _has(spectra, "variant", "deflated"):
            deflated = g["outliers"].sel(variant="deflated").max("outlier", skipna=True)
            top = deflated.fillna(top)
    else:
        raise ValueError("g_peak_epochs needs decomposition or spectra")
    peaks = {}
    for n in top["sample_size"].values:
        series = top.sel(sample_size=n)
        if np.isfinite(series).any():
            peaks[int(n)] = int(series.idxmax(dim="epoch", skipna=True))
    return peaks


# --------------------------------------------------------------------- drawing helpers


def _new_figure(
    nrows: int,
    ncols: int,
    panel: tuple[float, float] = (3.2, 2.4),
    extra: tuple[float, float] = (0.6, 0.9),
) -> Figure:
    """A constrained-layout figure sized per panel, at least 6.5 in wide for titles."""
    width = max(ncols * panel[0] + extra[0], 6.5)
    return Figure(figsize=(width, nrows * panel[1] + extra[1]), layout="constrained")


def _title(dataset: str, arch: str, sample_size: int, epoch: int) -> str:
    return f"{dataset}, {arch}, n = {sample_size} per class, epoch {epoch}"


def _not_computed(ax: Axes, what: str = NOT_COMPUTED) -> None:
    ax.text(
        0.5,
        0.5,
        what,
        transform=ax.transAxes,
        ha="center",
        va="center",
        color="0.45",
        fontsize=10,
        style="italic",
    )
    ax.set_xticks([])
    ax.set_yticks([])


def _positive(density: np.ndarray) -> np.ndarray:
    """Densities for a log axis: non-positive values become gaps, not -inf."""
    return np.where(density > 0, density, np.nan)


def _set_log_density(
    ax: Axes, peaks: Sequence[float], decades=LOG_DENSITY_DECADES
) -> None:
    """Log y axis from ``decades`` below the largest peak to a little above it."""
    ax.set_yscale("log")
    top = max((p for p in peaks if np.isfinite(p) and p > 0), default=None)
    if top is not None:
        ax.set_ylim(top * 10.0**-decades, top * 3.0)


def _draw_spectrum(
    ax: Axes,
    spec: Spectrum,
    *,
    color: str,
    label: str,
    x_scale: float = 1.0,
    log: bool = True,
    **kwargs,
) -> float:
    """Plot a density (``x / x_scale``, mass-preserving); returns its peak height."""
    density = spec.density * x_scale
    ax.plot(
        spec.grid / x_scale,
        _positive(density) if log else density,
        color=color,
        label=label,
        lw=1.3,
        **kwargs,
    )
    return float(np.nanmax(density))


def _draw_outliers(
    ax: Axes,
    outliers: np.ndarray,
    *,
    color: str,
    label: str | None,
    x_scale: float = 1.0,
    height: float = 0.3,
) -> None:
    """Deflated outliers as sticks (axes-fraction height) topped by a marker."""
    if outliers.size == 0:
        return
    x = outliers / x_scale
    trans = ax.get_xaxis_transform()
    ax.vlines(x, 0.0, height, transform=trans, colors=color, lw=1.2)
    ax.plot(
        x,
        np.full(x.size, height),
        "v",
        transform=trans,
        color=color,
        ms=5,
        label=label,
        linestyle="none",
    )


def _include_x(ax: Axes, values: Sequence[np.ndarray], pad: float = 0.04) -> None:
    """x limits covering every array in ``values`` (grids and outliers)."""
    finite = [v[np.isfinite(v)] for v in values if v is not None and np.size(v)]
    finite = [v for v in finite if v.size]
    if not finite:
        return
    lo = min(float(v.min()) for v in finite)
    hi = max(float(v.max()) for v in finite)
    span = hi - lo if hi > lo else max(abs(hi), 1.0)
    ax.set_xlim(lo - pad * span, hi + pad * span)


def _legend_outside(
    fig: Figure, axes: Sequence[Axes], ncols: int | None = None
) -> None:
    """One legend for the figure, below the panels, each label once.

    Operators come in the order of :data:`OPERATOR_COLORS`, other labels after them.
    """
    found: dict[str, object] = {}
    for ax in axes:
        for h, lab in zip(*ax.get_legend_handles_labels(), strict=True):
            found.setdefault(lab, h)
    rank = {OPERATOR_LABELS[op]: i for i, op in enumerate(OPERATOR_COLORS)}
    labels = sorted(found, key=lambda lab: rank.get(lab, len(rank)))
    handles = [found[lab] for lab in labels]
    if handles:
        fig.legend(
            handles,
            labels,
            loc="outside lower center",
            ncols=ncols or min(len(labels), 5),
            frameon=False,
        )


def save_figure(fig: Figure, path: str | Path, *, dpi: int = 150) -> tuple[Path, Path]:
    """Write ``fig`` as ``path`` with suffix .png and .pdf; returns both paths."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    png, pdf = path.with_suffix(".png"), path.with_suffix(".pdf")
    fig.savefig(png, dpi=dpi)
    fig.savefig(pdf)
    return png, pdf


# ------------------------------------------------------------------------------ figures

FIGURE1_OPERATORS = ("G", "G-A1", "G-A2", "G-B1", "G-B2")


def figure1_g_decomposition(
    spectra: xr.Dataset,
    *,
    dataset: str | None = None,
    arch: str | None = None,
    sample_size: int | None = None,
    epoch: int | None = None,
    split: str = "train",
) -> Figure:
    """Figure 1: log spectra of train G, G − A1, G − A2, G − B1, G − B2, one panel each.

    Each G − X panel repeats G in grey, so what disappears with X is visible: the
    outliers with A1, the right bulk with B1, the left bulk with B2.
    """
    dataset, arch = _first(spectra, "dataset", dataset), _first(spectra, "arch", arch)
    sample_size, epoch = _latest_computed(
        spectra, dataset, arch, sample_size, epoch, operator="G-A1", split=split
    )
    sel = dict(
        dataset=dataset,
        arch=arch,
        sample_size=sample_size,
        epoch=epoch,
        split=split,
        variant="log",
    )
    fig = _new_figure(len(FIGURE1_OPERATORS), 1, panel=(6.0, 1.6))
    axes = fig.subplots(len(FIGURE1_OPERATORS), 1, sharex=True, squeeze=False)[:, 0]
    g = select_spectrum(spectra, operator="G", **sel)
    eps = float(spectra.attrs.get("log_eps", 0.0))
    for ax, op in zip(axes, FIGURE1_OPERATORS, strict=True):
        spec = select_spectrum(spectra, operator=op, **sel)
        ax.set_ylabel(
            OPERATOR_LABELS[op], rotation=0, ha="right", va="center", fontsize=11
        )
        if spec is None:
            _not_computed(ax)
            continue
        label = "log spectrum of the matrix on the left"
        peaks = [_draw_spectrum(ax, spec, color=OPERATOR_COLORS[op], label=label)]
        # A deflated log spectrum (if the workflow stores one) keeps its outliers apart.
        outliers = np.log10(np.abs(spec.outliers) + eps)
        _draw_outliers(ax, outliers, color="black", label="deflated top-C eigenvalues")
        if op != "G" and g is not None:
            peaks.append(
                _draw_spectrum(ax, g, color="0.7", label="G (reference)", zorder=1)
            )
        _set_log_density(ax, peaks)
        ax.grid(alpha=0.3)
    axes[-1].set_xlabel(LOG_AXIS_LABEL)
    fig.supylabel(LOG_DENSITY_LABEL)
    fig.suptitle(
        f"Log spectra of {split} G and G minus each component\n"
        + _title(dataset, arch, sample_size, epoch)
    )
    _legend_outside(fig, axes, ncols=2)
    return fig


def _hessian_by_dataset(
    spectra: xr.Dataset,
    *,
    variant: str,
    arch: str | None,
    sample_size: int | None,
    epoch: int | None,
    datasets: Sequence[str] | None,
) -> Figure:
    """Figures 2 and 9: train (top) / test (bottom) Hessian spectra, one column each."""
    arch = _first(spectra, "arch", arch)
    datasets = (
        list(datasets) if datasets is not None else spectra["dataset"].values.tolist()
    )
    for d in datasets:
        _check_value(spectra, "dataset", d)
    splits = ("train", "test")
    fig = _new_figure(len(splits), len(datasets))
    axes = fig.subplots(len(splits), len(datasets), squeeze=False)
    for j, dataset in enumerate(datasets):
        n, e = _latest_computed(
            spectra, dataset, arch, sample_size, epoch, operator="hess"
        )
        axes[0, j].set_title(f"{dataset}\nn = {n} per class, epoch {e}", fontsize=10)
        for i, split in enumerate(splits):
            ax = axes[i, j]
            spec = select_spectrum(
                spectra,
                dataset=dataset,
                arch=arch,
                sample_size=n,
                epoch=e,
                split=split,
                operator="hess",
                variant=variant,
            )
            if spec is None:
                _not_computed(ax)
                continue
            color = OPERATOR_COLORS["hess"]
            peak = _draw_spectrum(ax, spec, color=color, label=f"{variant} spectrum")
            _draw_outliers(
                ax, spec.outliers, color="black", label="deflated top-C eigenvalues"
            )
            _set_log_density(ax, [peak])
            _include_x(ax, [spec.grid, spec.outliers])
            ax.grid(alpha=0.3)
            ax.set_xlabel("eigenvalue λ")
        axes[0, j].set_ylabel("train Hessian\ndensity" if j == 0 else "")
        axes[1, j].set_ylabel("test Hessian\ndensity" if j == 0 else "")
    what = "with low-rank deflation" if variant == "deflated" else "without deflation"
    fig.suptitle(f"Spectrum of the Hessian {what} ({arch})")
    _legend_outside(fig, axes.ravel())
    return fig


def figure2_hessian_deflated(
    spectra: xr.Dataset,
    *,
    arch: str | None = None,
    sample_size: int | None = None,
    epoch: int | None = None,
    datasets: Sequence[str] | None = None,
) -> Figure:
    """Figure 2: train / test Hessian per data set, deflated (outliers as sticks)."""
    return _hessian_by_dataset(
        spectra,
        variant="deflated",
        arch=arch,
        sample_size=sample_size,
        epoch=epoch,
        datasets=datasets,
    )


def figure9_hessian_plain(
    spectra: xr.Dataset,
    *,
    arch: str | None = None,
    sample_size: int | None = None,
    epoch: int | None = None,
    datasets: Sequence[str] | None = None,
) -> Figure:
    """Figure 9: as Figure 2 without low-rank deflation (variant "plain")."""
    return _hessian_by_dataset(
        spectra,
        variant="plain",
        arch=arch,
        sample_size=sample_size,
        epoch=epoch,
        datasets=datasets,
    )


COMPONENT_VARIANTS = {
    "hess": ("deflated", "plain"),
    "G": ("deflated", "plain"),
    "H": ("plain", "deflated"),
}
"""Figures 3 and 6: the variant drawn for each operator, in order of preference."""


def figure3_components(
    spectra: xr.Dataset,
    *,
    dataset: str | None = None,
    arch: str | None = None,
    sample_size: int | None = None,
    epoch: int | None = None,
    zoom: tuple[float, float] = (0.005, 0.995),
) -> Figure:
    """Figure 3: Hess, G and H for train and test.

    (a) Outlier attribution: rows Hess / G / H, columns train / test, log density,
    deflated outliers as sticks. (b) Bulk attribution: the same spectra on linear axes,
    zoomed on the bulk: per split, x runs over the union of :func:`bulk_range` (the
    ``zoom`` mass quantiles, by default the central 99 %) of the three bulks, so the
    outliers are out of view; panels of one split share that range.
    """
    dataset, arch = _first(spectra, "dataset", dataset), _first(spectra, "arch", arch)
    sample_size, epoch = _latest_computed(
        spectra, dataset, arch, sample_size, epoch, operator="hess"
    )
    ops, splits = ("hess", "G", "H"), ("train", "test")
    fig = Figure(figsize=(13.0, 7.6), layout="constrained")
    sub_a, sub_b = fig.subfigures(1, 2, wspace=0.04)
    axes_a = sub_a.subplots(3, 2, squeeze=False)
    axes_b = sub_b.subplots(3, 2, squeeze=False)
    sub_a.suptitle("(a) outliers: log density, deflated outliers as sticks")
    sub_b.suptitle(
        f"(b) bulk zoom: central {100 * (zoom[1] - zoom[0]):g} % of each bulk"
    )
    for j, split in enumerate(splits):
        specs = {
            op: _first_available(
                spectra,
                COMPONENT_VARIANTS[op],
                dataset=dataset,
                arch=arch,
                sample_size=sample_size,
                epoch=epoch,
                split=split,
                operator=op,
            )
            for op in ops
        }
        ranges = [
            bulk_range(s.grid, s.density, lower=zoom[0], upper=zoom[1])
            for s in specs.values()
            if s is not None
        ]
        window = (
            (min(r[0] for r in ranges), max(r[1] for r in ranges)) if ranges else None
        )
        for i, op in enumerate(ops):
            spec, ax_a, ax_b = specs[op], axes_a[i, j], axes_b[i, j]
            label = f"{split} {OPERATOR_LABELS[op]}"
            if spec is None:
                _not_computed(ax_a)
                _not_computed(ax_b)
                continue
            color = OPERATOR_COLORS[op]
            peak = _draw_spectrum(ax_a, spec, color=color, label=label)
            _draw_outliers(
                ax_a, spec.outliers, color="black", label="deflated top-C eigenvalues"
            )
            _set_log_density(ax_a, [peak])
            _include_x(ax_a, [spec.grid, spec.outliers])
            in_window = (spec.grid >= window[0]) & (spec.grid <= window[1])
            ax_b.plot(
                spec.grid[in_window],
                spec.density[in_window],
                color=color,
                label=label,
                lw=1.3,
            )
            ax_b.set_xlim(*window)
            ax_b.xaxis.set_major_locator(MaxNLocator(5))
            ax_b.set_ylim(bottom=0)
            for ax in (ax_a, ax_b):
                ax.grid(alpha=0.3)
                ax.legend(loc="upper right", fontsize=8, frameon=False)
        for axes in (axes_a, axes_b):
            axes[0, j].set_title(split)
            axes[-1, j].set_xlabel("eigenvalue λ")
    for axes in (axes_a, axes_b):
        for i in range(3):
            axes[i, 0].set_ylabel("density")
    fig.suptitle("Hessian, G and H: " + _title(dataset, arch, sample_size, epoch))
    return fig


def figure4_h_tails(
    spectra: xr.Dataset,
    *,
    dataset: str | None = None,
    arch: str | None = None,
    sample_size: int | None = None,
    epoch: int | None = None,
    split: str = "test",
    tail_mass: tuple[float, float] = (0.5, 0.99),
    tail: tuple[float, float] | None = None,
) -> Figure:
    """Figure 4: tails of H on log-log axes, with power-law fits ``φ = a |λ|^b``.

    (a) The density of H (plain) against |λ|: positive part red, |negative part| blue,
    each with its least-squares fit of log10 φ on log10 |λ|. (b) The log spectrum of H
    (variant "log"), mapped to a density of |λ| by the change of measure of eq. (6),
    ``φ(|λ|) = f(log10(|λ| + ε)) / ((|λ| + ε) ln 10)``, with its fit.

    Fit range (unless ``tail`` gives one |λ| range for all fits): :func:`tail_range`
    of each curve, from the ``tail_mass[0]`` to the ``tail_mass[1]`` quantile of the
    mass beyond :data:`ZERO_SPIKE_WIDTHS` Gaussian kernel widths of the estimate
    (for (b): beyond ``100 ε``). The range is shaded and stated in the legend.
    """
    dataset, arch = _first(spectra, "dataset", dataset), _first(spectra, "arch", arch)
    sample_size, epoch = _latest_computed(
        spectra, dataset, arch, sample_size, epoch, operator="H", split=split
    )
    sel = dict(
        dataset=dataset,
        arch=arch,
        sample_size=sample_size,
        epoch=epoch,
        split=split,
        operator="H",
    )
    fig = _new_figure(1, 2, panel=(4.6, 3.6), extra=(0.4, 1.6))
    ax_a, ax_b = fig.subplots(1, 2, squeeze=False)[0]
    ax_a.set_title(f"(a) spectrum of {split} H, |λ| on log axis", fontsize=10)
    ax_b.set_title(f"(b) log spectrum of {split} |H|", fontsize=10)

    plain = _first_available(spectra, ("plain", "deflated"), **sel)
    if plain is None:
        _not_computed(ax_a)
    else:
        width = _kernel_width(spectra, plain.grid)
        # The two sides nearly coincide (H is close to symmetric): the positive side is
        # drawn wide and pale underneath, the negative side thin on top.
        for side, color, fit_color, name, lw in (
            ("positive", "tab:red", "darkred", "λ > 0", 3.0),
            ("negative", "tab:blue", "navy", "|λ|, λ < 0", 1.2),
        ):
            on_side = plain.grid > 0 if side == "positive" else plain.grid < 0
            x, y = np.abs(plain.grid[on_side]), plain.density[on_side]
            ax_a.plot(x, _positive(y), color=color, lw=lw, alpha=0.8, label=name)
            lo_hi = tail or tail_range(
                plain.grid,
                plain.density,
                side=side,
                mass=tail_mass,
                min_abs=ZERO_SPIKE_WIDTHS * width,
            )
            peak = np.nanmax(plain.density)
            _draw_fit(
                ax_a,
                plain.grid,
                plain.density,
                lo_hi,
                side=side,
                color=fit_color,
                floor=peak * 10.0**-LOG_DENSITY_DECADES,
            )
        _loglog(ax_a, "|eigenvalue λ|", "density φ(λ)", peak)

    log_h = select_spectrum(spectra, variant="log", **sel)
    if log_h is None:
        _not_computed(ax_b)
    else:
        eps = float(spectra.attrs.get("log_eps", 0.0))
        shifted = 10.0**log_h.grid  # |λ| + ε
        x = shifted - eps
        keep = x > 0
        x, y = x[keep], log_h.density[keep] / (shifted[keep] * math.log(10.0))
        label = "from the log spectrum"
        ax_b.plot(x, _positive(y), color=OPERATOR_COLORS["H"], lw=1.3, label=label)
        # The bump at ε (zero eigenvalues) would set the scale: use |λ| ≥ 100 ε.
        beyond = y[x >= 100 * eps]
        peak = np.nanmax(beyond) if beyond.size else np.nanmax(y)
        lo_hi = tail or tail_range(x, y, mass=tail_mass, min_abs=100 * eps)
        _draw_fit(
            ax_b,
            x,
            y,
            lo_hi,
            side="positive",
            color="navy",
            floor=peak * 10.0**-LOG_DENSITY_DECADES,
        )
        _loglog(ax_b, "|eigenvalue λ|", "density of |λ|", peak)
    fig.suptitle("Tails of H: " + _title(dataset, arch, sample_size, epoch))
    return fig


def _draw_fit(
    ax: Axes,
    x: np.ndarray,
    y: np.ndarray,
    lo_hi: tuple[float, float],
    *,
    side: str,
    color: str,
    floor: float = 0.0,
) -> PowerLawFit | None:
    """Fit, draw the fitted line over its range, shade the range; None if no fit.

    Points with density below ``floor`` (the bottom of the plotted range) are left out
    of the fit: between isolated Ritz values in the far tail a Lanczos density drops
    by hundreds of decades, and such gaps are not part of any power law.
    """
    lo, hi = lo_hi
    if not (np.isfinite(lo) and np.isfinite(hi) and 0 < lo < hi):
        return None
    try:
        fit = fit_power_law(x, np.where(y >= floor, y, np.nan), lo=lo, hi=hi, side=side)
    except ValueError:
        return None
    xs = np.geomspace(lo, hi, 50)
    ax.plot(
        xs,
        fit(xs),
        "--",
        color=color,
        lw=2.0,
        label=f"φ = {fit.label()}\nfit on {lo:.2g} ≤ |λ| ≤ {hi:.2g}",
    )
    ax.axvspan(lo, hi, color=color, alpha=0.07, lw=0)
    return fit


def _loglog(ax: Axes, xlabel: str, ylabel: str, peak: float) -> None:
    ax.set_xscale("log")
    _set_log_density(ax, [peak])
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.grid(alpha=0.3, which="both")
    ax.legend(loc="lower left", fontsize=7.5, framealpha=0.85)


def figure5_deflation(
    spectra: xr.Dataset,
    *,
    dataset: str | None = None,
    arch: str | None = None,
    sample_size: int | None = None,
    epoch: int | None = None,
    operator: str = "hess",
    split: str = "train",
) -> Figure:
    """Figure 5: deflated (top) against plain (bottom) spectrum, outliers aligned.

    The deflated outliers are drawn as sticks in the top panel and as dotted vertical
    lines through both panels (shared x axis), so they can be matched with the plain
    spectrum's outlier bumps.
    """
    dataset, arch = _first(spectra, "dataset", dataset), _first(spectra, "arch", arch)
    sample_size, epoch = _latest_computed(
        spectra, dataset, arch, sample_size, epoch, operator=operator, split=split
    )
    sel = dict(
        dataset=dataset,
        arch=arch,
        sample_size=sample_size,
        epoch=epoch,
        split=split,
        operator=operator,
    )
    fig = _new_figure(2, 1, panel=(6.5, 2.4))
    ax_d, ax_p = fig.subplots(2, 1, sharex=True, squeeze=False)[:, 0]
    deflated = select_spectrum(spectra, variant="deflated", **sel)
    plain = select_spectrum(spectra, variant="plain", **sel)
    color = OPERATOR_COLORS.get(operator, "black")
    name = f"{split} {OPERATOR_LABELS.get(operator, operator)}"
    outliers = deflated.outliers if deflated is not None else np.array([])
    for ax, spec, what in (
        (ax_d, deflated, "subspace iteration + Lanczos (deflated)"),
        (ax_p, plain, "Lanczos only (plain)"),
    ):
        ax.set_title(what, fontsize=10)
        ax.set_ylabel("density")
        if spec is None:
            _not_computed(ax)
            continue
        peak = _draw_spectrum(ax, spec, color=color, label=f"{name}, {spec.variant}")
        ax.vlines(
            outliers,
            0,
            1,
            transform=ax.get_xaxis_transform(),
            colors="0.3",
            linestyles=":",
            lw=1.0,
            label="deflated top-C eigenvalues",
        )
        _set_log_density(ax, [peak])
        ax.grid(alpha=0.3)
        ax.legend(loc="best", fontsize=8, framealpha=0.85)
    _draw_outliers(ax_d, outliers, color="black", label=None)
    _include_x(ax_p, [s.grid for s in (deflated, plain) if s is not None] + [outliers])
    ax_p.set_xlabel("eigenvalue λ")
    fig.suptitle("Low-rank deflation: " + _title(dataset, arch, sample_size, epoch))
    return fig


def figure6_dynamics(
    spectra: xr.Dataset,
    *,
    dataset: str | None = None,
    arch: str | None = None,
    split: str = "train",
    sample_sizes: Sequence[int] | None = None,
    epochs: Sequence[int] | None = None,
    mass: float = 0.99,
    max_panels: int = 6,
) -> Figure:
    """Figure 6: Hess, G, H over sample size (columns) and epoch (rows).

    Hess and G deflated where available (outliers as sticks), H plain. Eigenvalues are
    divided by the bulk edge of H, :func:`bulk_edge` with ``mass`` and ``min_abs``
    :data:`ZERO_SPIKE_WIDTHS` kernel widths of H's estimate (the zero spike left out),
    and densities multiplied by it, so every panel's x axis is in units of H's bulk
    edge. Without ``sample_sizes`` / ``epochs``: those with H computed, at most
    ``max_panels`` each (evenly spaced, ends kept).
    """
    dataset, arch = _first(spectra, "dataset", dataset), _first(spectra, "arch", arch)
    done = _computed(spectra, dataset, arch, "H", split)
    sizes = _grid_values(spectra, "sample_size", sample_sizes, done, max_panels)
    rows = _grid_values(spectra, "epoch", epochs, done, max_panels)
    fig = _new_figure(len(rows), len(sizes), panel=(2.9, 2.0))
    axes = fig.subplots(len(rows), len(sizes), squeeze=False)
    for i, e in enumerate(rows):
        for j, n in enumerate(sizes):
            ax = axes[i, j]
            specs = {
                op: _first_available(
                    spectra,
                    COMPONENT_VARIANTS[op],
                    dataset=dataset,
                    arch=arch,
                    sample_size=n,
                    epoch=e,
                    split=split,
                    operator=op,
                )
                for op in ("hess", "G", "H")
            }
            if all(s is None for s in specs.values()):
                _not_computed(ax)
            else:
                h = specs["H"]
                edge = math.nan
                if h is not None:
                    width = _kernel_width(spectra, h.grid)
                    edge = bulk_edge(
                        h.grid, h.density, mass=mass, min_abs=ZERO_SPIKE_WIDTHS * width
                    )
                normalised = bool(np.isfinite(edge) and edge > 0)
                scale = edge if normalised else 1.0
                peaks, xs = [], []
                for op, spec in specs.items():
                    if spec is None:
                        continue
                    color = OPERATOR_COLORS[op]
                    peaks.append(
                        _draw_spectrum(
                            ax,
                            spec,
                            color=color,
                            x_scale=scale,
                            label=OPERATOR_LABELS[op],
                        )
                    )
                    _draw_outliers(
                        ax,
                        spec.outliers,
                        color=color,
                        x_scale=scale,
                        label=None,
                        height=0.2,
                    )
                    xs += [spec.grid / scale, spec.outliers / scale]
                _set_log_density(ax, peaks)
                _include_x(ax, xs)
                ax.grid(alpha=0.3)
                if not normalised:
                    ax.text(
                        0.02,
                        0.95,
                        "H missing: λ not normalised",
                        fontsize=7,
                        transform=ax.transAxes,
                        va="top",
                        color="0.4",
                    )
            if i == 0:
                ax.set_title(f"n = {n} per class", fontsize=10)
            if j == 0:
                ax.set_ylabel(f"epoch {e}\ndensity")
            if i == len(rows) - 1:
                ax.set_xlabel("λ / bulk edge of H")
    fig.suptitle(
        f"{split.capitalize()} Hessian, G and H over training and sample size: "
        f"{dataset}, {arch}\n"
        f"λ in units of H's bulk edge ({100 * mass:g} % mass quantile beyond the "
        "zero spike)\nsticks: deflated outliers",
        fontsize=10,
    )
    _legend_outside(fig, axes.ravel())
    return fig


def figure7_g_hierarchy(
    spectra: xr.Dataset,
    decomposition: xr.Dataset,
    *,
    dataset: str | None = None,
    arch: str | None = None,
    sample_sizes: Sequence[int] | None = None,
    epochs: Sequence[int] | None = None,
    max_panels: int = 6,
) -> Figure:
    """Figure 7: the three-level hierarchy of train G over sample size × epoch.

    Each panel, on a log10 eigenvalue axis: the log spectrum of train G (spectra.nc
    operator "G", variant "log"; blue line, log density), and as markers at fixed
    heights: the top-C eigenvalues of G (orange, ``g_top_eigenvalues``), the
    eigenvalues of A1 + A2 + B1 coloured by their source (A1 gold, B1 yellow-green,
    A2 teal), and Tr(B_{2,c})/n per class (dark red). Non-positive eigenvalues have no
    place on the log axis and are left out.
    """
    dataset, arch = _first(spectra, "dataset", dataset), _first(spectra, "arch", arch)
    _check_value(decomposition, "dataset", dataset)
    _check_value(decomposition, "arch", arch)
    dec = decomposition.sel(dataset=dataset, arch=arch)
    done = np.isfinite(dec["g_top_eigenvalues"]).any(dim="rank")
    sizes = _grid_values(decomposition, "sample_size", sample_sizes, done, max_panels)
    rows = _grid_values(decomposition, "epoch", epochs, done, max_panels)
    fig = _new_figure(len(rows), len(sizes), panel=(3.0, 2.0))
    axes = fig.subplots(len(rows), len(sizes), squeeze=False)
    for i, e in enumerate(rows):
        for j, n in enumerate(sizes):
            ax = axes[i, j]
            log_g = None
            if _has(spectra, "sample_size", n) and _has(spectra, "epoch", e):
                log_g = select_spectrum(
                    spectra,
                    dataset=dataset,
                    arch=arch,
                    sample_size=n,
                    epoch=e,
                    split="train",
                    operator="G",
                    variant="log",
                )
            point = dec.sel(sample_size=n, epoch=e)
            drawn = _draw_hierarchy_markers(ax, point)
            xs = list(drawn)
            if log_g is not None:
                peak = _draw_spectrum(
                    ax, log_g, color=G_LOG_COLOR, label="log spectrum of G"
                )
                # Three decades of headroom: the markers sit above the density.
                ax.set_yscale("log")
                ax.set_ylim(peak * 10.0**-LOG_DENSITY_DECADES, peak * 1e3)
                xs.append(log_g.grid)
            if log_g is None and not drawn:
                _not_computed(ax)
            else:
                _include_x(ax, xs)
                ax.grid(alpha=0.3)
            if i == 0:
                ax.set_title(f"n = {n} per class", fontsize=10)
            if j == 0:
                ax.set_ylabel(f"epoch {e}\ndensity")
            if i == len(rows) - 1:
                ax.set_xlabel("log10(eigenvalue λ)")
    fig.suptitle(f"Three-level hierarchy of train G: {dataset}, {arch}")
    _legend_outside(fig, axes.ravel(), ncols=3)
    return fig


def _draw_hierarchy_markers(ax: Axes, point: xr.Dataset) -> list[np.ndarray]:
    """Figure 7's markers at fixed axes-fraction heights; returns the x values drawn."""
    trans = ax.get_xaxis_transform()
    drawn = []

    def mark(values, height, color, marker, label):
        values = np.asarray(values, dtype=float)
        values = np.log10(values[np.isfinite(values) & (values > 0)])
        if values.size:
            ax.plot(
                values,
                np.full(values.size, height),
                marker,
                color=color,
                transform=trans,
                ms=6,
                mec="black",
                mew=0.4,
                linestyle="none",
                label=label,
            )
            drawn.append(values)

    mark(point["g_top_eigenvalues"].values, 0.94, G_TOP_COLOR, "o", "top-C of G")
    eigs = point["a1a2b1_eigenvalues"].values
    source = point["a1a2b1_source"].values
    for code, name in SOURCE_CODES.items():
        mark(
            eigs[source == code],
            0.86,
            OPERATOR_COLORS[name],
            "D",
            f"A1+A2+B1: from {name}",
        )
    mark(
        point["b2_trace_per_class"].values,
        0.78,
        OPERATOR_COLORS["B2"],
        "s",
        "Tr(B2,c)/n",
    )
    return drawn


def figure8_selfcheck(selfcheck: xr.Dataset, *, bins: int = 100) -> Figure:
    """Figure 8: exact eigenvalues (histogram) against our estimate (red line).

    (a) case "fig8a" in eigenvalue units, log density axis so the three outliers show;
    (b) case "fig8b" on the log10(|λ| + ε) axis. Titles give the Wasserstein-1
    distance relative to the spectrum's width (``w1_relative``).
    """
    eps = float(selfcheck.attrs.get("eps", 0.0))
    fig = _new_figure(1, 2, panel=(4.6, 3.4))
    axes = fig.subplots(1, 2, squeeze=False)[0]
    cases = {
        "fig8a": ("(a) spiked Wishart", "eigenvalue λ"),
        "fig8b": ("(b) heavy-tailed Wishart, log spectrum", LOG_AXIS_LABEL),
    }
    for ax, (case, (name, xlabel)) in zip(axes, cases.items(), strict=True):
        if not _has(selfcheck, "case", case):
            ax.set_title(name, fontsize=10)
            _not_computed(ax)
            continue
        point = selfcheck.sel(case=case)
        exact = point["exact_eigenvalues"].values
        exact = exact[np.isfinite(exact)]
        grid, density = point["grid"].values, point["density"].values
        keep = np.isfinite(grid) & np.isfinite(density)
        if exact.size == 0 and not keep.any():
            ax.set_title(name, fontsize=10)
            _not_computed(ax)
            continue
        values = np.log10(np.abs(exact) + eps) if case == "fig8b" else exact
        heights, _, _ = ax.hist(
            values,
            bins=bins,
            density=True,
            color="tab:blue",
            alpha=0.6,
            label=f"exact eigenvalues ({exact.size}), {bins} bins",
        )
        ax.plot(
            grid[keep], density[keep], color="tab:red", lw=1.5, label="our estimate"
        )
        if case == "fig8a":
            # Down to a third of the lowest bar: one outlier's bar stays visible, the
            # estimate's Gaussian tails far below it do not set the scale.
            ax.set_yscale("log")
            bars = heights[heights > 0]
            top = max(bars.max(initial=0.0), np.nanmax(density[keep], initial=0.0))
            if bars.size and top > 0:
                ax.set_ylim(bars.min() / 3, top * 3)
        w1 = float(point["w1_relative"]) if "w1_relative" in point else math.nan
        ax.set_title(f"{name}\nW1 / width = {w1:.3g}", fontsize=10)
        ax.set_xlabel(xlabel)
        ax.set_ylabel("density")
        ax.grid(alpha=0.3)
        ax.legend(loc="upper right", fontsize=8, framealpha=0.85)
    fig.suptitle("Self-check on synthetic matrices with known eigenvalues")
    return fig


def figure10_learning_curves(
    training: xr.Dataset,
    *,
    dataset: str | None = None,
    arch: str | None = None,
    decomposition: xr.Dataset | None = None,
    spectra: xr.Dataset | None = None,
    sample_sizes: Sequence[int] | None = None,
) -> Figure:
    """Figure 10: train and test misclassification against epoch (log x), per n.

    Each sample size is one colour, at its selected learning rate (``selected_lr``; the
    nearest ``lr`` coordinate). Large open circles mark the epoch where train G peaks,
    from :func:`g_peak_epochs` (decomposition.nc preferred, else spectra.nc).
    """
    dataset, arch = _first(training, "dataset", dataset), _first(training, "arch", arch)
    runs = training.sel(dataset=dataset, arch=arch)
    sizes = (
        sample_sizes
        if sample_sizes is not None
        else [int(n) for n in runs["sample_size"].values]
    )
    for n in sizes:
        _check_value(training, "sample_size", n)
    peaks = {}
    if decomposition is not None or spectra is not None:
        peaks = g_peak_epochs(
            dataset=dataset, arch=arch, decomposition=decomposition, spectra=spectra
        )
    fig = _new_figure(1, 2, panel=(4.4, 3.4), extra=(1.8, 0.8))
    axes = fig.subplots(1, 2, sharey=True, squeeze=False)[0]
    cmap = _sample_size_colors(len(sizes))
    drawn = False
    for n, color in zip(sizes, cmap, strict=True):
        run = runs.sel(sample_size=n)
        lr = float(run["selected_lr"])
        if not np.isfinite(lr):
            continue
        run = run.sel(lr=lr, method="nearest")
        for ax, var in zip(axes, ("train_error", "test_error"), strict=True):
            err = run[var]
            finite = np.isfinite(err.values) & (err["epoch"].values > 0)
            if not finite.any():
                continue
            drawn = True
            epochs = err["epoch"].values[finite]
            ax.plot(
                epochs,
                err.values[finite],
                color=color,
                lw=1.4,
                label=f"n = {n} (lr {lr:.3g})",
            )
            peak = peaks.get(int(n))
            if peak is not None and peak in epochs:
                ax.plot(
                    [peak],
                    [float(err.sel(epoch=peak))],
                    "o",
                    ms=11,
                    mfc="none",
                    mec=color,
                    mew=2.0,
                )
    for ax, name in zip(axes, ("train", "test"), strict=True):
        ax.set_title(f"{name} error", fontsize=10)
        ax.set_xlabel("epoch")
        if drawn:
            ax.set_xscale("log")
            ax.grid(alpha=0.3, which="both")
        else:
            _not_computed(ax)
    axes[0].set_ylabel("misclassification rate")
    if drawn:
        if peaks:
            axes[0].plot(
                [],
                [],
                "o",
                ms=11,
                mfc="none",
                mec="0.2",
                mew=2.0,
                label="epoch of G's peak",
            )
        fig.legend(
            loc="outside right center",
            fontsize=8,
            frameon=False,
            handles=axes[0].get_legend_handles_labels()[0],
        )
    source = (
        "decomposition.nc g_top_eigenvalues"
        if decomposition is not None
        else "spectra.nc: top outlier or bound_hi of G"
        if spectra is not None
        else "not given"
    )
    fig.suptitle(
        f"Misclassification during training: {dataset}, {arch}\n"
        f"circles: epoch where train G's top eigenvalue peaks ({source})"
    )
    return fig


def _sample_size_colors(count: int) -> list:
    cmap = colormaps["viridis"]
    return [cmap(x) for x in np.linspace(0.0, 0.9, max(count, 1))][:count]
