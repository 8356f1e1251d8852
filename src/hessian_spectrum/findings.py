"""The paper's findings as stated rules over the aggregated results.

:func:`evaluate` reads ``results/spectra.nc`` (and, where a finding needs them,
``decomposition.nc``, ``training.nc`` and ``selfcheck.nc``) and returns one
:class:`Finding` per result of Papyan (2019): the statistic that decides it, where it
was measured (data set, arch, n per class, epoch, split) and a verdict that follows
from a rule written down here, never from looking at a figure:

=====  ======================================================================
F1     the train Hessian has about C outliers separated from its bulk
F2     those outliers come from G: Hess's and G's top agree, H has none there
F3     H's bulk carries the Hessian's bulk (the bulk's energy), per epoch
F4     the tails of test H follow a power law (paper: |λ|^-2.7, R² = 0.99)
F5     G's outliers come from A1, its two bulks from B1 and B2, A2 negligible
F6     G's top eigenvalue rises to a peak at an interior epoch, then falls
F7     the B1 and B2 bulks separate with epochs, draw closer with sample size
F8     the estimators against exact eigenvalues (Figure 8)
=====  ======================================================================

A verdict is ``reproduced``, ``not reproduced`` or ``not applicable`` (the results
needed were not computed, e.g. no test split).  Unconverged eigenvalues (subspace
iteration missed its residual tolerance) are never counted as outliers.  The
thresholds are module constants, named in each rule.

:func:`write_findings` writes ``findings.csv`` (columns ``finding, paper, measured,
verdict, where, rule``) and ``findings.md``.

Example
-------
>>> import xarray as xr, hessian_spectrum.findings as hf  # doctest: +SKIP
>>> rows = hf.evaluate(xr.load_dataset("results/spectra.nc"),  # doctest: +SKIP
...                    decomposition=xr.load_dataset("results/decomposition.nc"))
>>> hf.write_findings(rows, "findings.csv", "findings.md")  # doctest: +SKIP
"""

from __future__ import annotations

import csv
import math
import os
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import NamedTuple

import numpy as np
import xarray as xr
from scipy.stats import spearmanr

from .features import ZERO_SPIKE_WIDTHS, bulk_edge, kernel_width, tail_range
from .powerlaw import fit_tail

__all__ = [
    "Finding",
    "Setting",
    "VERDICTS",
    "COLUMNS",
    "evaluate",
    "default_focus",
    "write_findings",
    "findings_markdown",
    "f1_outliers",
    "f2_outliers_from_g",
    "f3_bulk_from_h",
    "f4_power_law",
    "f5_hierarchy",
    "f6_g_peak",
    "f7_bulk_dynamics",
    "f8_selfcheck",
]

VERDICTS = ("reproduced", "not reproduced", "not applicable")
COLUMNS = ("finding", "paper", "measured", "verdict", "where", "rule")

SEPARATION = 1.25
"""An eigenvalue is an outlier when it is at least this many times the bulk edge
(the 99 % mass quantile of the deflated bulk's positive part beyond the zero spike)."""
COUNT_TOLERANCE = 1
"""F1: "about C" outliers means ``|count - C| <= COUNT_TOLERANCE``."""
AGREEMENT = 0.25
"""F2: Hess's and G's top eigenvalues agree when every relative difference is below."""
R2_MIN = 0.98
"""F4: a power law holds when the log-log fit of the tail's complementary CDF has at
least this R² (and beats an exponential tail)."""
A1_REMOVED_MIN = 0.5
"""F5: A1 carries G's outliers when at least this fraction lies above max(G - A1)."""
A2_RATIO_MAX = 0.05
"""F5: A2 is negligible when its top eigenvalue is below this fraction of A1's."""
BULK_GAP_MIN = 0.25
"""F5: the B1 and B2 bulks are two bulks when their centres lie this many decades
apart, B2 to the right of B1 (the paper's Figure 1: the right bulk is B2's)."""
PEAK_FACTOR = 2.0
"""F6: a peak is a rise and a fall by at least this factor."""
G_NEGLIGIBLE = 0.1
"""F3: G's bulk is negligible at an epoch where its energy is below this fraction
of H's."""
SELFCHECK_W1_MAX = {"fig8a": 0.01, "fig8b": 0.02}
"""F8: the largest Wasserstein-1 distance (over the exact spectrum's width) per case."""


class Setting(NamedTuple):
    """One trained network at one checkpoint."""

    dataset: str
    arch: str
    sample_size: int
    epoch: int

    def describe(self, split: str | None = None) -> str:
        where = (
            f"{self.dataset}, {self.arch}, n = {self.sample_size}, epoch {self.epoch}"
        )
        return f"{where}, {split}" if split else where


@dataclass(frozen=True)
class Finding:
    """One row of ``findings.csv``."""

    finding: str
    paper: str
    measured: str
    verdict: str
    where: str
    rule: str

    def __post_init__(self):
        if self.verdict not in VERDICTS:
            raise ValueError(f"verdict must be one of {VERDICTS}, got {self.verdict!r}")


def _verdict(ok: bool) -> str:
    return "reproduced" if ok else "not reproduced"


def _fmt(x: float) -> str:
    return f"{x:.3g}" if np.isfinite(x) else "nan"


def _values(xs) -> str:
    xs = list(xs)
    if len(xs) <= 4:
        return ", ".join(_fmt(x) for x in xs)
    return f"{_fmt(xs[0])}, {_fmt(xs[1])} … {_fmt(xs[-1])}"


# ----------------------------------------------------------------------- selection


class _Point(NamedTuple):
    grid: np.ndarray
    density: np.ndarray
    outliers: np.ndarray
    converged: np.ndarray
    lambda_max: float
    second_moment: float


def _has(ds: xr.Dataset, dim: str, value) -> bool:
    return dim in ds.coords and value in ds[dim].values.tolist()


def _point(
    spectra: xr.Dataset, at: Setting, split: str, operator: str, variant: str
) -> _Point | None:
    """One computed spectrum, or None where it was not computed."""
    keys = dict(at._asdict(), split=split, operator=operator, variant=variant)
    if not all(_has(spectra, k, v) for k, v in keys.items()):
        return None
    p = spectra.sel(keys)
    grid, density = p["grid"].values, p["density"].values
    keep = np.isfinite(grid) & np.isfinite(density)
    if not keep.any():
        return None
    outliers = p["outliers"].values
    found = np.isfinite(outliers)
    if "outlier_converged" in p:
        converged = p["outlier_converged"].values == 1
    else:
        converged = np.ones(outliers.shape, dtype=bool)

    def scalar(name):
        return float(p[name]) if name in p else math.nan

    return _Point(
        grid[keep],
        density[keep],
        outliers[found],
        converged[found],
        scalar("lambda_max"),
        scalar("second_moment"),
    )


def _first(spectra, at, split, operator, variants):
    for variant in variants:
        point = _point(spectra, at, split, operator, variant)
        if point is not None:
            return point, variant
    return None, None


def _num_classes(spectra: xr.Dataset, dataset: str) -> int:
    return int(spectra["num_classes"].sel(dataset=dataset))


def default_focus(spectra: xr.Dataset) -> Setting:
    """The first data set and arch, the largest sample size and then the last epoch
    at which the deflated train Hessian was computed."""
    dataset = str(spectra["dataset"].values[0])
    arch = str(spectra["arch"].values[0])
    for n in sorted(spectra["sample_size"].values.tolist(), reverse=True):
        for epoch in sorted(spectra["epoch"].values.tolist(), reverse=True):
            at = Setting(dataset, arch, int(n), int(epoch))
            if _point(spectra, at, "train", "hess", "deflated") is not None:
                return at
    n, e = spectra["sample_size"].values.max(), spectra["epoch"].values.max()
    return Setting(dataset, arch, int(n), int(e))


def _edge(point: _Point, attrs) -> float:
    width = kernel_width(attrs, point.grid)
    return bulk_edge(
        point.grid, point.density, mass=0.99, min_abs=ZERO_SPIKE_WIDTHS * width
    )


def _separated(point: _Point, attrs) -> tuple[np.ndarray, float, int]:
    """Converged deflated eigenvalues >= SEPARATION x bulk edge (descending), the edge,
    and how many more would qualify but did not converge."""
    edge = _edge(point, attrs)
    above = point.outliers >= SEPARATION * edge
    values = np.sort(point.outliers[above & point.converged])[::-1]
    return values, edge, int((above & ~point.converged).sum())


def _not_applicable(code, paper, rule, why, where="") -> Finding:
    return Finding(code, paper, f"not computed: {why}", "not applicable", where, rule)


# ------------------------------------------------------------------------ findings

F1_PAPER = "the train Hessian has about C outliers separated from its bulk (C)"
F1_RULE = (
    f"count the converged deflated eigenvalues of train Hess that are >= {SEPARATION}"
    " x the bulk edge (99 % mass quantile of the deflated bulk beyond the zero "
    f"spike); reproduced iff |count - C| <= {COUNT_TOLERANCE}"
)


def f1_outliers(spectra: xr.Dataset, at: Setting) -> Finding:
    where = at.describe("train")
    point = _point(spectra, at, "train", "hess", "deflated")
    if point is None:
        return _not_applicable("F1", F1_PAPER, F1_RULE, "deflated train Hess", where)
    C = _num_classes(spectra, at.dataset)
    values, edge, unconverged = _separated(point, spectra.attrs)
    measured = (
        f"{values.size} outliers (C = {C}) >= {SEPARATION} x bulk edge {_fmt(edge)}"
        + (f": {_values(values)}" if values.size else "")
    )
    if unconverged:
        measured += f"; {unconverged} unconverged not counted"
    ok = abs(values.size - C) <= COUNT_TOLERANCE
    return Finding("F1", F1_PAPER, measured, _verdict(ok), where, F1_RULE)


F2_PAPER = (
    "the outliers come from G: Hess's and G's top eigenvalues agree, H has no outliers"
)
F2_RULE = (
    "K = the F1 outliers of Hess; reproduced iff K >= 1, the top K converged "
    f"eigenvalues of train G differ from them by < {AGREEMENT:.0%} each, and "
    "max(H) < the smallest of them"
)


def f2_outliers_from_g(spectra: xr.Dataset, at: Setting) -> Finding:
    where = at.describe("train")
    hess = _point(spectra, at, "train", "hess", "deflated")
    g = _point(spectra, at, "train", "G", "deflated")
    h, _ = _first(spectra, at, "train", "H", ("plain", "deflated"))
    if hess is None or g is None or h is None:
        return _not_applicable(
            "F2", F2_PAPER, F2_RULE, "deflated train Hess and G, train H", where
        )
    top, _, _ = _separated(hess, spectra.attrs)
    if top.size == 0:
        return Finding(
            "F2",
            F2_PAPER,
            "the Hessian has no outliers",
            "not reproduced",
            where,
            F2_RULE,
        )
    g_top = np.sort(g.outliers[g.converged])[::-1][: top.size]
    if g_top.size < top.size:
        diff = math.inf
    else:
        diff = float(np.max(np.abs(top - g_top) / np.abs(top)))
    h_max = max(h.lambda_max, float(np.max(h.outliers, initial=-np.inf)))
    ratio = h_max / float(top[-1])
    ok = diff < AGREEMENT and ratio < 1.0
    measured = (
        f"max relative difference of the top {top.size} of Hess and G "
        f"{_fmt(diff)}; max(H) / smallest Hess outlier = {_fmt(ratio)} "
        f"(max H {_fmt(h_max)})"
    )
    return Finding("F2", F2_PAPER, measured, _verdict(ok), where, F2_RULE)


F3_PAPER = (
    "most of the energy of the Hessian's bulk comes from H; G is never negligible "
    "against H, sometimes the opposite"
)
F3_RULE = (
    "energy = (1/p) sum of squared bulk eigenvalues (deflated Hess and G, whole H); "
    "reproduced iff at the focus epoch H's share of the train Hessian bulk's energy "
    "exceeds G's; per epoch, G is negligible where its energy is below "
    f"{G_NEGLIGIBLE} x H's"
)


def _bulk_energy(spectra, at) -> dict[str, float] | None:
    parts = {}
    for op, variants in (
        ("hess", ("deflated",)),
        ("G", ("deflated",)),
        ("H", ("plain", "deflated")),
    ):
        point, _ = _first(spectra, at, "train", op, variants)
        if point is None or not np.isfinite(point.second_moment):
            return None
        parts[op] = point.second_moment
    return parts


def f3_bulk_from_h(spectra: xr.Dataset, at: Setting) -> Finding:
    where = at.describe("train")
    energy = _bulk_energy(spectra, at)
    if energy is None:
        return _not_applicable(
            "F3", F3_PAPER, F3_RULE, "deflated train Hess and G, train H", where
        )
    share_h, share_g = energy["H"] / energy["hess"], energy["G"] / energy["hess"]
    by_epoch = []
    for epoch in sorted(spectra["epoch"].values.tolist()):
        e = _bulk_energy(spectra, at._replace(epoch=int(epoch)))
        if e is not None and e["H"] > 0:
            by_epoch.append((int(epoch), e["G"] / e["H"]))
    negligible = [e for e, r in by_epoch if r < G_NEGLIGIBLE]
    measured = (
        f"bulk energy share H {_fmt(share_h)}, G {_fmt(share_g)}; G/H by epoch: "
        + ", ".join(f"e{e} {_fmt(r)}" for e, r in by_epoch)
        + f"; G negligible at epochs {negligible or 'none'}"
    )
    return Finding(
        "F3", F3_PAPER, measured, _verdict(share_h > share_g), where, F3_RULE
    )


F4_PAPER = "the tails of test H follow a power law (|λ|^-2.7, R² = 0.99)"
F4_RULE = (
    "fit the positive tail of test H (plain), from the median of its mass beyond the "
    "zero spike to where 1 % is left, through its complementary CDF (density "
    "exponent = slope - 1); reproduced iff the log-log R² >= "
    f"{R2_MIN} and exceeds the R² of an exponential tail over the same range"
)


def _tail_fit(grid, density, attrs, side):
    spike = ZERO_SPIKE_WIDTHS * kernel_width(attrs, grid)
    lo, hi = tail_range(grid, density, side=side, min_abs=spike)
    if not (np.isfinite(lo) and np.isfinite(hi) and 0 < lo < hi):
        return None
    try:
        return fit_tail(grid, density, lo=lo, hi=hi, side=side, min_abs=spike)
    except ValueError:
        return None


def f4_power_law(spectra: xr.Dataset, at: Setting) -> Finding:
    where = at.describe("test")
    h, _ = _first(spectra, at, "test", "H", ("plain", "deflated"))
    if h is None:
        return _not_applicable("F4", F4_PAPER, F4_RULE, "test H", where)
    fits = {
        side: _tail_fit(h.grid, h.density, spectra.attrs, side)
        for side in ("positive", "negative")
    }
    pos = fits["positive"]
    if pos is None:
        return Finding(
            "F4", F4_PAPER, "no positive tail to fit", "not reproduced", where, F4_RULE
        )

    def describe(fit):
        return (
            f"|λ|^{fit.exponent:.2f}, R² = {fit.r2:.3f} (exponential tail "
            f"{fit.r2_exponential:.3f}) on {_fmt(fit.lo)} … {_fmt(fit.hi)}"
        )

    measured = f"positive tail {describe(pos)}"
    if fits["negative"] is not None:
        measured += f"; negative tail {describe(fits['negative'])}"
    ok = pos.r2 >= R2_MIN and pos.power_law_wins
    return Finding("F4", F4_PAPER, measured, _verdict(ok), where, F4_RULE)


F5_PAPER = (
    "G's outliers come from A1 (gone in G - A1), its two bulks from B1 (left) and "
    "B2 (right), A2 is negligible"
)
F5_RULE = (
    f"reproduced iff A1 removes >= {A1_REMOVED_MIN:.0%} of G's outliers (as in F1: "
    "converged, >= "
    f"{SEPARATION} x G's bulk edge; G - A1's counted the same way from its deflated "
    "log spectrum, else those of G above max(G - A1)), top(A2) / top(A1) <= "
    f"{A2_RATIO_MAX}, and the B2 bulk (median of log10 Tr(B2,c)/n) lies >= "
    f"{BULK_GAP_MIN} decades right of the B1 bulk (median log10 of A1+A2+B1's "
    "eigenvalues attributed to B1)"
)


def _bulk_centres(point: xr.Dataset) -> tuple[float, float]:
    """(log10 centre of B1's eigenvalues, log10 centre of the Tr(B2,c)/n)."""
    eigs = point["a1a2b1_eigenvalues"].values
    source = point["a1a2b1_source"].values
    b1 = eigs[(source == 1) & np.isfinite(eigs) & (eigs > 0)]
    b2 = point["b2_trace_per_class"].values
    b2 = b2[np.isfinite(b2) & (b2 > 0)]
    if b1.size == 0 or b2.size == 0:
        return math.nan, math.nan
    return float(np.median(np.log10(b1))), float(np.median(np.log10(b2)))


def _decomposition_point(decomposition, at: Setting) -> xr.Dataset | None:
    if decomposition is None:
        return None
    keys = at._asdict()
    if not all(_has(decomposition, k, v) for k, v in keys.items()):
        return None
    point = decomposition.sel(keys)
    if not np.isfinite(point["a1a2b1_eigenvalues"].values).any():
        return None
    return point


def f5_hierarchy(
    spectra: xr.Dataset, decomposition: xr.Dataset | None, at: Setting
) -> Finding:
    where = at.describe("train")
    g = _point(spectra, at, "train", "G", "deflated")
    g_a1, _ = _first(spectra, at, "train", "G-A1", ("log", "plain", "deflated"))
    dec = _decomposition_point(decomposition, at)
    if g is None or g_a1 is None or dec is None:
        return _not_applicable(
            "F5",
            F5_PAPER,
            F5_RULE,
            "deflated train G, a spectrum of G - A1 and the decomposition",
            where,
        )
    outliers, edge, _ = _separated(g, spectra.attrs)
    kept_values = g_a1.outliers[g_a1.converged]
    if kept_values.size:  # G - A1 deflated: count its outliers as G's are counted
        kept = int((kept_values >= SEPARATION * edge).sum())
        rest = f"G - A1 keeps {kept} (its top {_fmt(float(kept_values.max()))})"
    else:
        top_rest = max(g_a1.lambda_max, float(np.max(g_a1.outliers, initial=-np.inf)))
        kept = int((outliers <= top_rest).sum())
        rest = f"{kept} not above max(G - A1) = {_fmt(top_rest)}"
    removed = max(outliers.size - kept, 0)
    fraction = removed / outliers.size if outliers.size else 0.0
    energy = math.nan
    if kept_values.size and outliers.size:
        top = np.sort(g.outliers[g.converged])[::-1]
        energy = 1.0 - float(
            np.sum(np.sort(kept_values)[::-1][: top.size] ** 2)
        ) / float(np.sum(top**2))
    a1 = dec["a1_eigenvalues"].values if "a1_eigenvalues" in dec else np.array([])
    a2 = dec["a2_eigenvalues"].values if "a2_eigenvalues" in dec else np.array([])
    a2_ratio = (
        float(np.nanmax(np.abs(a2)) / np.nanmax(np.abs(a1)))
        if np.isfinite(a1).any() and np.isfinite(a2).any()
        else math.nan
    )
    b1, b2 = _bulk_centres(dec)
    gap = b2 - b1
    ok = (
        outliers.size > 0
        and fraction >= A1_REMOVED_MIN
        and a2_ratio <= A2_RATIO_MAX
        and gap >= BULK_GAP_MIN
    )
    measured = (
        f"A1 removes {removed} of G's {outliers.size} outliers ({rest}"
        + (
            f"; A1 carries {energy:.0%} of the top-C energy"
            if np.isfinite(energy)
            else ""
        )
        + f"); top(A2)/top(A1) = {_fmt(a2_ratio)}; B2 bulk at 10^{b2:.2f}, B1 bulk "
        f"at 10^{b1:.2f} (B2 - B1 = {gap:+.2f} decades)"
    )
    return Finding("F5", F5_PAPER, measured, _verdict(ok), where, F5_RULE)


F6_PAPER = "G's top eigenvalue rises to a peak at an interior epoch, then falls"
F6_RULE = (
    "per sample size, the largest converged eigenvalue of train G at each checkpoint "
    "epoch; reproduced iff for every n with >= 3 epochs the maximum is at an interior "
    f"epoch and is >= {PEAK_FACTOR} x both the first and the last epoch's"
)


def g_top_series(
    spectra: xr.Dataset, decomposition: xr.Dataset | None, dataset: str, arch: str
) -> dict[int, dict[int, float]]:
    """``{n: {epoch: top converged eigenvalue of train G}}`` from decomposition.nc
    (``g_top_eigenvalues``) where present, else from the deflated G spectra."""
    series: dict[int, dict[int, float]] = {}
    for n in spectra["sample_size"].values.tolist():
        for epoch in spectra["epoch"].values.tolist():
            at = Setting(dataset, arch, int(n), int(epoch))
            values = None
            dec = _decomposition_point(decomposition, at)
            if dec is not None and np.isfinite(dec["g_top_eigenvalues"].values).any():
                values = dec["g_top_eigenvalues"].values
                if "g_top_converged" in dec:
                    flags = dec["g_top_converged"].values
                    values = values[flags != 0]
            else:
                g = _point(spectra, at, "train", "G", "deflated")
                if g is not None:
                    values = g.outliers[g.converged]
            if values is not None:
                values = values[np.isfinite(values)]
                if values.size:
                    series.setdefault(int(n), {})[int(epoch)] = float(values.max())
    return series


def f6_g_peak(
    spectra: xr.Dataset, decomposition: xr.Dataset | None, at: Setting
) -> Finding:
    where = f"{at.dataset}, {at.arch}, train, every n and epoch"
    series = {
        n: s
        for n, s in g_top_series(spectra, decomposition, at.dataset, at.arch).items()
        if len(s) >= 3
    }
    if not series:
        return _not_applicable(
            "F6", F6_PAPER, F6_RULE, "G's top eigenvalue at >= 3 epochs", where
        )
    ok, parts = True, []
    for n, s in sorted(series.items()):
        epochs = sorted(s)
        values = np.array([s[e] for e in epochs])
        k = int(np.argmax(values))
        interior = 0 < k < len(epochs) - 1
        rise, fall = values[k] / values[0], values[k] / values[-1]
        ok &= bool(interior and rise >= PEAK_FACTOR and fall >= PEAK_FACTOR)
        parts.append(
            f"n={n}: "
            + " → ".join(
                f"{_fmt(v)} (e{e})" for e, v in zip(epochs, values, strict=True)
            )
            + f", peak at e{epochs[k]}"
        )
    return Finding("F6", F6_PAPER, "; ".join(parts), _verdict(ok), where, F6_RULE)


F7_PAPER = (
    "the B1 and B2 bulks of G separate with epochs and draw closer with sample size"
)
F7_RULE = (
    "separation s = (median log10 Tr(B2,c)/n) - (median log10 of the B1 eigenvalues); "
    "reproduced iff s rises with epoch for every n (Spearman rho > 0) and, at the last "
    "epoch, falls with n (rho < 0; needs >= 2 sample sizes)"
)


def f7_bulk_dynamics(decomposition: xr.Dataset | None, at: Setting) -> Finding:
    where = f"{at.dataset}, {at.arch}, train, every n and epoch"
    if decomposition is None or not (
        _has(decomposition, "dataset", at.dataset)
        and _has(decomposition, "arch", at.arch)
    ):
        return _not_applicable("F7", F7_PAPER, F7_RULE, "the decomposition", where)
    sep: dict[int, dict[int, float]] = {}
    for n in decomposition["sample_size"].values.tolist():
        for epoch in decomposition["epoch"].values.tolist():
            point = _decomposition_point(
                decomposition, Setting(at.dataset, at.arch, int(n), int(epoch))
            )
            if point is None:
                continue
            b1, b2 = _bulk_centres(point)
            if np.isfinite(b1) and np.isfinite(b2):
                sep.setdefault(int(n), {})[int(epoch)] = b2 - b1
    sizes = sorted(n for n, s in sep.items() if len(s) >= 2)
    if not sizes:
        return _not_applicable(
            "F7", F7_PAPER, F7_RULE, "the decomposition at >= 2 epochs", where
        )
    parts, with_epochs = [], True
    for n in sizes:
        epochs = sorted(sep[n])
        values = [sep[n][e] for e in epochs]
        rho = _spearman(epochs, values)
        with_epochs &= rho > 0
        parts.append(
            f"n={n}: s = "
            + ", ".join(f"{v:+.2f} (e{e})" for e, v in zip(epochs, values, strict=True))
            + f", rho {rho:+.2f}"
        )
    last = max(e for n in sizes for e in sep[n])
    at_last = [(n, sep[n][last]) for n in sizes if last in sep[n]]
    with_n = math.nan
    if len(at_last) >= 2:
        with_n = _spearman([n for n, _ in at_last], [v for _, v in at_last])
        parts.append(f"at e{last}: rho over n {with_n:+.2f}")
    ok = bool(with_epochs and np.isfinite(with_n) and with_n < 0)
    return Finding("F7", F7_PAPER, "; ".join(parts), _verdict(ok), where, F7_RULE)


def _spearman(x: Sequence[float], y: Sequence[float]) -> float:
    if len(x) < 2 or np.ptp(y) == 0:
        return 0.0
    if len(x) == 2:
        return float(np.sign((y[1] - y[0]) * (x[1] - x[0])))
    return float(spearmanr(x, y).statistic)


F8_PAPER = (
    "the Lanczos estimates match exact eigenvalues of synthetic matrices (Figure 8)"
)
F8_RULE = (
    "Wasserstein-1 distance over the exact spectrum's width; reproduced iff "
    + " and ".join(f"{c} <= {v}" for c, v in SELFCHECK_W1_MAX.items())
)


def f8_selfcheck(selfcheck: xr.Dataset | None) -> Finding:
    where = "synthetic matrices of Figure 8"
    if selfcheck is None:
        return _not_applicable("F8", F8_PAPER, F8_RULE, "the self-check", where)
    parts, ok, found = [], True, 0
    for case, limit in SELFCHECK_W1_MAX.items():
        if not _has(selfcheck, "case", case):
            continue
        w1 = float(selfcheck["w1_relative"].sel(case=case))
        found += 1
        ok &= w1 <= limit
        parts.append(f"{case}: W1/width = {w1:.4f}")
    if not found:
        return _not_applicable("F8", F8_PAPER, F8_RULE, "the self-check cases", where)
    if found < len(SELFCHECK_W1_MAX):
        parts.append("a case is missing")
        ok = False
    return Finding("F8", F8_PAPER, "; ".join(parts), _verdict(ok), where, F8_RULE)


# ------------------------------------------------------------------------ the table


def evaluate(
    spectra: xr.Dataset,
    *,
    decomposition: xr.Dataset | None = None,
    training: xr.Dataset | None = None,
    selfcheck: xr.Dataset | None = None,
    focus: Setting | Sequence | None = None,
) -> list[Finding]:
    """All eight findings; single-setting ones at ``focus`` (default
    :func:`default_focus`), the dynamics (F6, F7) over every sample size and epoch.

    ``training`` adds the focus run's final train error to F1's row: findings of an
    untrained network are no reproduction, and the row says so.
    """
    at = default_focus(spectra) if focus is None else Setting(*focus)
    at = Setting(str(at.dataset), str(at.arch), int(at.sample_size), int(at.epoch))
    rows = [
        f1_outliers(spectra, at),
        f2_outliers_from_g(spectra, at),
        f3_bulk_from_h(spectra, at),
        f4_power_law(spectra, at),
        f5_hierarchy(spectra, decomposition, at),
        f6_g_peak(spectra, decomposition, at),
        f7_bulk_dynamics(decomposition, at),
        f8_selfcheck(selfcheck),
    ]
    error = _train_error(training, at)
    if np.isfinite(error):
        first = rows[0]
        rows[0] = Finding(
            **{**asdict(first), "where": f"{first.where} (train error {error:.3f})"}
        )
    return rows


def _train_error(training: xr.Dataset | None, at: Setting) -> float:
    """Train error of the focus run (selected learning rate) at the focus epoch."""
    if training is None:
        return math.nan
    keys = dict(dataset=at.dataset, arch=at.arch, sample_size=at.sample_size)
    if not all(_has(training, k, v) for k, v in keys.items()):
        return math.nan
    run = training.sel(keys)
    lr = float(run["selected_lr"])
    if not np.isfinite(lr) or not _has(training, "epoch", at.epoch):
        return math.nan
    return float(run["train_error"].sel(lr=lr, method="nearest").sel(epoch=at.epoch))


def findings_markdown(rows: Sequence[Finding]) -> str:
    """The findings as a Markdown table, followed by the rules."""
    count = sum(r.verdict == "reproduced" for r in rows)
    lines = [
        "# Findings of Papyan (2019) in this run",
        "",
        f"{count} of {len(rows)} findings reproduced.",
        "",
        "| finding | paper | measured | verdict | where |",
        "|---|---|---|---|---|",
    ]
    for r in rows:
        cells = (r.finding, r.paper, r.measured, f"**{r.verdict}**", r.where)
        lines.append("| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |")
    lines += ["", "## Rules", ""]
    lines += [f"- **{r.finding}**: {r.rule}." for r in rows]
    return "\n".join(lines) + "\n"


def write_findings(
    rows: Sequence[Finding],
    csv_path: str | os.PathLike,
    md_path: str | os.PathLike | None = None,
) -> None:
    """``findings.csv`` (columns :data:`COLUMNS`) and, if given, ``findings.md``;
    each written atomically."""
    csv_path = Path(csv_path)
    csv_path.parent.mkdir(parents=True, exist_ok=True)
    tmp = csv_path.with_name(f".{csv_path.name}.tmp")
    with open(tmp, "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=COLUMNS)
        writer.writeheader()
        for row in rows:
            writer.writerow(asdict(row))
    os.replace(tmp, csv_path)
    if md_path is not None:
        md_path = Path(md_path)
        tmp = md_path.with_name(f".{md_path.name}.tmp")
        tmp.write_text(findings_markdown(rows))
        os.replace(tmp, md_path)
