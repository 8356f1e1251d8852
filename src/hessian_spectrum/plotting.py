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
import os
from collections.abc import Sequence
from pathlib import Path
from typing import NamedTuple

import numpy as np
import xarray as xr
from matplotlib import colormaps
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from hessian_spectrum.features import (
    ZERO_SPIKE_WIDTHS,
    bulk_edge,
    bulk_range,
    kernel_width,
    tail_range,
)
from hessian_spectrum.powerlaw import PowerLawFit, fit_power_law, fit_tail

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
NOT_COMPUTED = "not computed"
LOG_AXIS_LABEL = "log10(|eigenvalue λ| + ε)"
LOG_DENSITY_LABEL = "density of log10|λ|"


class Spectrum(NamedTuple):
    """One estimated spectrum with NaN padding removed."""

    grid: np.ndarray
    density: np.ndarray
    outliers: np.ndarray
    variant: str
    resolved_from: float = -math.inf
    """Log spectra: grid value below which M Lanczos steps do not resolve the
    spectrum (``spectra.nc`` variable ``resolved_from``); ``-inf``: all resolved."""
    converged: np.ndarray | None = None
    """Per outlier: did subspace iteration meet its tolerance (None: unknown)."""


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
    outliers, converged = np.array([]), None
    if "outliers" in point:
        outliers = np.asarray(point["outliers"].values, dtype=float)
        found = np.isfinite(outliers)
        if "outlier_converged" in point:
            converged = point["outlier_converged"].values[found] != 0
        outliers = outliers[found]
    floor = -math.inf
    if "resolved_from" in point and np.isfinite(point["resolved_from"].values):
        floor = float(point["resolved_from"].values)
    return Spectrum(grid[keep], density[keep], outliers, variant, floor, converged)


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


UNRESOLVED_LABEL = "unresolved by M Lanczos steps"
UNCONVERGED_LABEL = "not converged (subspace iteration)"


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
    """Plot a density (``x / x_scale``, mass-preserving); returns its peak height.

    The part of a log spectrum below ``spec.resolved_from`` is not data the estimate
    resolves: it is drawn thin and dotted over a grey band (labelled once per axes),
    and it does not count towards the returned peak (so the zero spike there does not
    set the scale).
    """
    density = spec.density * x_scale
    x = spec.grid / x_scale
    y = _positive(density) if log else density
    resolved = x >= spec.resolved_from / x_scale
    ax.plot(
        np.where(resolved, x, np.nan), y, color=color, label=label, lw=1.3, **kwargs
    )
    if not resolved.all():
        edge = spec.resolved_from / x_scale
        ax.plot(
            np.where(resolved, np.nan, x), y, color=color, lw=0.8, ls=":", alpha=0.7
        )
        first = not getattr(ax, "_unresolved_drawn", False)
        ax.axvspan(
            x[0],
            edge,
            color="0.85",
            alpha=0.5,
            lw=0,
            zorder=0,
            label=UNRESOLVED_LABEL if first else None,
        )
        ax._unresolved_drawn = True
    shown = density[resolved] if resolved.any() else density
    return float(np.nanmax(shown))


def _draw_outliers(
    ax: Axes,
    outliers: np.ndarray,
    *,
    color: str,
    label: str | None,
    x_scale: float = 1.0,
    height: float = 0.3,
    converged: np.ndarray | None = None,
) -> None:
    """Deflated outliers as sticks (axes-fraction height) topped by a marker.

    Eigenpairs that missed subspace iteration's tolerance (``converged`` False) are
    drawn dashed and pale with hollow markers: they are no outliers to report.
    """
    if outliers.size == 0:
        return
    ok = np.ones(outliers.size, bool) if converged is None else np.asarray(converged)
    trans = ax.get_xaxis_transform()
    for good in (True, False):
        x = outliers[ok == good] / x_scale
        if x.size == 0:
            continue
        ax.vlines(
            x,
            0.0,
            height,
            transform=trans,
            colors=color,
            lw=1.2 if good else 0.8,
            linestyles="solid" if good else "dashed",
            alpha=1.0 if good else 0.5,
        )
        ax.plot(
            x,
            np.full(x.size, height),
            "v",
            transform=trans,
            color=color,
            mfc=color if good else "none",
            ms=5,
            label=label if good else UNCONVERGED_LABEL,
            linestyle="none",
            alpha=1.0 if good else 0.6,
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
    for target, options in ((png, {"dpi": dpi}), (pdf, {})):
        # atomically: a killed job leaves no half-written figure under its name
        tmp = target.with_name(f".{target.name}.tmp{target.suffix}")
        try:
            fig.savefig(tmp, format=target.suffix[1:], **options)
            os.replace(tmp, target)
        finally:
            tmp.unlink(missing_ok=True)
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

    Each G − X panel repeats G itself in grey -- its log spectrum and, where that
    spectrum was deflated (``spectra.log_deflate``), its top-C eigenvalues as grey
    sticks -- so what disappears with X is visible. The paper's reading (Figure 1
    caption): the outliers go with A1, the right bulk with B2, the left bulk with B1,
    and removing A2 changes nothing visible.
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
    g_top = np.log10(np.abs(g.outliers) + eps) if g is not None else np.array([])
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
        if op == "G":
            _draw_outliers(
                ax, g_top, color="black", label="top-C eigenvalues of G (deflated)"
            )
        elif g is not None:
            peaks.append(
                _draw_spectrum(ax, g, color="0.6", label="G (reference)", zorder=1)
            )
            _draw_outliers(ax, g_top, color="0.6", label=None, height=0.2)
        _set_log_density(ax, peaks)
        ax.grid(alpha=0.3)
    axes[-1].set_xlabel(LOG_AXIS_LABEL)
    fig.supylabel(LOG_DENSITY_LABEL)
    fig.suptitle(
        f"Log spectra of {split} G and G minus each component (grey: G itself)\n"
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
                ax,
                spec.outliers,
                color="black",
                label="deflated top-C eigenvalues",
                converged=spec.converged,
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
    zoomed on the bulk: per split, x runs over the union of the three bulks' ranges,
    each from the ``zoom[1]`` mass quantile of its negative side to that of its
    positive side, both counted beyond the spike of zero eigenvalues
    (:data:`ZERO_SPIKE_WIDTHS` kernel widths; by default 99.5 %), so the outliers are
    out of view; panels of one split share that range. The y axis stops a little above
    the bulk's own height: the zero spike, which would flatten the bulk, is cut off.
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
        f"(b) bulk zoom: to the {100 * zoom[1]:g} % quantiles beyond the zero spike"
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
            _bulk_window(s, spectra.attrs, zoom)
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
                ax_a,
                spec.outliers,
                color="black",
                label="deflated top-C eigenvalues",
                converged=spec.converged,
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
            spike = ZERO_SPIKE_WIDTHS * kernel_width(spectra.attrs, spec.grid)
            bulk = spec.density[in_window & (np.abs(spec.grid) > spike)]
            top = 1.15 * float(bulk.max()) if bulk.size and bulk.max() > 0 else None
            ax_b.set_ylim(bottom=0, top=top)
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


def _bulk_window(
    spec: Spectrum, attrs, zoom: tuple[float, float]
) -> tuple[float, float]:
    """Figure 3b's x range of one bulk: its negative and positive ``zoom[1]`` mass
    quantiles beyond the zero spike (:func:`bulk_range` where a side has no mass)."""
    spike = ZERO_SPIKE_WIDTHS * kernel_width(attrs, spec.grid)
    hi = bulk_edge(spec.grid, spec.density, mass=zoom[1], min_abs=spike)
    lo = -bulk_edge(-spec.grid[::-1], spec.density[::-1], mass=zoom[1], min_abs=spike)
    fallback = bulk_range(spec.grid, spec.density, lower=zoom[0], upper=zoom[1])
    lo = lo if np.isfinite(lo) else min(fallback[0], 0.0)
    hi = hi if np.isfinite(hi) else max(fallback[1], 0.0)
    return lo, hi


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
    (for (b): beyond ``100 ε`` and beyond what the M Lanczos steps resolve, the part
    below drawn dotted over a grey band). The range is shaded and stated in the
    legend.
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
        width = kernel_width(spectra.attrs, plain.grid)
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
            if side == "positive":
                _note_tail_fit(ax_a, plain, lo_hi, ZERO_SPIKE_WIDTHS * width)
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
        # The bump at ε (zero eigenvalues) is not fitted (|λ| ≥ 100 ε); below the
        # resolution of the M Lanczos steps the curve is dotted over a grey band.
        floor = 100 * eps
        color = OPERATOR_COLORS["H"]
        if np.isfinite(log_h.resolved_from):
            floor = max(floor, 10.0**log_h.resolved_from - eps)
            low = x < floor
            ax_b.plot(
                np.where(low, x, np.nan), _positive(y), color=color, lw=0.8, ls=":"
            )
            ax_b.axvspan(
                x[0],
                floor,
                color="0.85",
                alpha=0.5,
                lw=0,
                zorder=0,
                label=UNRESOLVED_LABEL,
            )
            x_line = np.where(low, np.nan, x)
        else:
            x_line = x
        ax_b.plot(x_line, _positive(y), color=color, lw=1.3, label=label)
        ok = x >= floor
        beyond = y[ok]
        peak = np.nanmax(beyond) if beyond.size else np.nanmax(y)
        lo_hi = tail or tail_range(x, y, mass=tail_mass, min_abs=floor)
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


def _note_tail_fit(ax: Axes, spec: Spectrum, lo_hi, min_abs: float) -> None:
    """State the complementary-CDF fit of the positive tail (what finding F4 uses)."""
    lo, hi = lo_hi
    if not (np.isfinite(lo) and np.isfinite(hi) and 0 < lo < hi):
        return
    try:
        fit = fit_tail(spec.grid, spec.density, lo=lo, hi=hi, min_abs=min_abs)
    except ValueError:
        return
    ax.text(
        0.98,
        0.98,
        f"tail CDF fit (λ > 0, finding F4):\n|λ|^{fit.exponent:.2f}, "
        f"R² = {fit.r2:.3f} (exponential: {fit.r2_exponential:.3f})",
        transform=ax.transAxes,
        ha="right",
        va="top",
        fontsize=7.5,
        bbox=dict(facecolor="white", alpha=0.8, lw=0),
    )


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
    _draw_outliers(
        ax_d,
        outliers,
        color="black",
        label=None,
        converged=deflated.converged if deflated is not None else None,
    )
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
                    width = kernel_width(spectra.attrs, h.grid)
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
                        converged=spec.converged,
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
    heights: the top-C eigenvalues of G (orange, ``g_top_eigenvalues``; hollow where
    subspace iteration did not converge), the eigenvalues of A1 + A2 + B1 by the
    paper's rule (top C: A1, gold; next C² − 2C: B1, yellow-green), the eigenvalues of
    A2 itself (teal, ``a2_eigenvalues``) and Tr(B_{2,c})/n per class (dark red).

    The paper colours the last C eigenvalues of A1 + A2 + B1 teal "due to A2"; they
    are structural zeros: ``sum_c' p_{i,c'} g_{i,c'} = 0`` for every sample, so
    ``rank(A1 + A2 + B1) <= C² - C``, and ``g_{c,c} = -(p_c / p_{c,c}) g_c`` puts A2
    inside A1's span. They are left out (round-off, not data), and A2's own
    eigenvalues are shown instead. Non-positive values have no place on the log axis.
    """
    dataset, arch = _first(spectra, "dataset", dataset), _first(spectra, "arch", arch)
    _check_value(decomposition, "dataset", dataset)
    _check_value(decomposition, "arch", arch)
    dec = decomposition.sel(dataset=dataset, arch=arch)
    done = np.isfinite(dec["g_top_eigenvalues"]).any(dim="rank")
    sizes = _grid_values(decomposition, "sample_size", sample_sizes, done, max_panels)
    rows = _grid_values(decomposition, "epoch", epochs, done, max_panels)
    eps = float(spectra.attrs.get("log_eps", 1e-5))
    x_lo = math.log10(eps) - 0.5  # one axis for all panels, from just below log10 ε
    fig = _new_figure(len(rows), len(sizes), panel=(3.4, 2.1), extra=(0.6, 1.6))
    axes = fig.subplots(len(rows), len(sizes), squeeze=False, sharex=True)
    x_hi = x_lo + 1.0
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
            drawn = _draw_hierarchy_markers(ax, point, x_min=x_lo)
            xs = list(drawn)
            if log_g is not None:
                peak = _draw_spectrum(
                    ax, log_g, color=G_LOG_COLOR, label="log spectrum of G"
                )
                # Four decades of headroom: the markers sit above the density.
                ax.set_yscale("log")
                ax.set_ylim(peak * 10.0**-LOG_DENSITY_DECADES, peak * 1e4)
                xs.append(log_g.grid)
            if log_g is None and not drawn:
                _not_computed(ax)
            else:
                ax.grid(alpha=0.3)
                finite = [v[np.isfinite(v)] for v in xs if np.size(v)]
                x_hi = max([x_hi] + [float(v.max()) for v in finite if v.size])
            if i == 0:
                ax.set_title(f"n = {n} per class", fontsize=10)
            if j == 0:
                ax.set_ylabel(f"epoch {e}\ndensity")
            if i == len(rows) - 1:
                ax.set_xlabel("log10(eigenvalue λ)")
    axes[0, 0].set_xlim(x_lo, x_hi + 0.2)
    fig.suptitle(
        f"Three-level hierarchy of train G: {dataset}, {arch}\n"
        "A1+A2+B1's last C eigenvalues are structural zeros (A2 lies in A1's span): "
        "not drawn;\nteal: A2's own eigenvalues. ◄ k: eigenvalues below the axis",
        fontsize=9,
    )
    _legend_outside(fig, axes.ravel(), ncols=2)
    return fig


def _draw_hierarchy_markers(
    ax: Axes, point: xr.Dataset, *, x_min: float = -math.inf
) -> list[np.ndarray]:
    """Figure 7's markers at fixed axes-fraction heights; returns the x values drawn.

    Values below ``10**x_min`` are not drawn; a "◄ k" at the left edge counts them.
    """
    trans = ax.get_xaxis_transform()
    drawn = []

    def mark(values, height, color, marker, label, filled=None):
        values = np.asarray(values, dtype=float)
        keep = np.isfinite(values) & (values > 0)
        below = int((keep & (values < 10.0**x_min)).sum())
        keep &= values >= 10.0**x_min
        if below:
            ax.text(
                0.01,
                height,
                f"◄ {below}",
                transform=ax.transAxes,
                color="black",
                fontsize=7,
                va="center",
                zorder=5,
                bbox=dict(facecolor=color, alpha=0.8, lw=0, pad=1),
            )
        filled = np.ones(values.shape, bool) if filled is None else filled
        for full in (True, False):
            x = np.log10(values[keep & (filled == full)])
            if x.size:
                ax.plot(
                    x,
                    np.full(x.size, height),
                    marker,
                    color=color,
                    transform=trans,
                    ms=6,
                    mec="black",
                    mew=0.4,
                    mfc=color if full else "none",
                    linestyle="none",
                    label=label if full else f"{label} (not converged)",
                )
                drawn.append(x)

    converged = None
    if "g_top_converged" in point:
        converged = point["g_top_converged"].values != 0
    mark(
        point["g_top_eigenvalues"].values,
        0.94,
        G_TOP_COLOR,
        "o",
        "top-C of G",
        converged,
    )
    eigs = point["a1a2b1_eigenvalues"].values
    source = point["a1a2b1_source"].values
    for name in ("A1", "B1"):
        code = next(k for k, v in SOURCE_CODES.items() if v == name)
        mark(
            eigs[source == code],
            0.86,
            OPERATOR_COLORS[name],
            "D",
            f"A1+A2+B1: {name} ({'top C' if name == 'A1' else 'next C²−2C'})",
        )
    if "a2_eigenvalues" in point:
        mark(point["a2_eigenvalues"].values, 0.78, OPERATOR_COLORS["A2"], "D", "A2")
    mark(
        point["b2_trace_per_class"].values,
        0.70,
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
        floor = -math.inf
        if "resolved_from" in point and np.isfinite(point["resolved_from"].values):
            floor = float(point["resolved_from"].values)
        _draw_spectrum(
            ax,
            Spectrum(grid[keep], density[keep], np.array([]), "", floor),
            color="tab:red",
            label="our estimate",
            log=False,
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
