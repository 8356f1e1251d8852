"""Figures from synthetic results with the real NetCDF schemas, and the CLI.

The figures are checked through the matplotlib objects (axes, lines, collections,
legend texts), not pixels; each is also written once to a PNG.
"""

from __future__ import annotations

import importlib.util
import math
import re
from pathlib import Path

import matplotlib
import numpy as np
import pytest
import xarray as xr
from scipy.optimize import brentq
from synthetic_results import (
    synthetic_decomposition,
    synthetic_selfcheck,
    synthetic_spectra,
    synthetic_training,
    write_synthetic_results,
)

from hessian_spectrum import plotting as hp
from hessian_spectrum.density import gaussian_width

matplotlib.use("Agg")
ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def spectra():
    return synthetic_spectra()


@pytest.fixture(scope="module")
def decomposition():
    return synthetic_decomposition()


def _legend_texts(fig) -> list[str]:
    texts = [t.get_text() for leg in fig.legends for t in leg.get_texts()]
    for ax in fig.axes:
        if ax.get_legend() is not None:
            texts += [t.get_text() for t in ax.get_legend().get_texts()]
    return texts


def _says_not_computed(ax) -> bool:
    return any(t.get_text() == hp.NOT_COMPUTED for t in ax.texts)


def _write_png(fig, tmp_path: Path, name: str) -> None:
    path = tmp_path / f"{name}.png"
    fig.savefig(path, dpi=30)
    assert path.stat().st_size > 1000


# ------------------------------------------------------------------- bulk edge etc.


def _semicircle(x: np.ndarray, radius: float) -> np.ndarray:
    return 2 / (np.pi * radius**2) * np.sqrt(np.clip(radius**2 - x**2, 0, None))


def _semicircle_edge(mass: float) -> float:
    """Analytic bulk edge of the unit semicircle: the mass above t is
    (acos t - t sqrt(1 - t^2)) / pi and the positive side holds 1/2, so the edge
    solves that = (1 - mass) / 2."""

    def above(t: float) -> float:
        return (math.acos(t) - t * math.sqrt(1 - t * t)) / math.pi - (1 - mass) / 2

    return brentq(above, 0.0, 1.0)


@pytest.mark.parametrize("mass", [0.9, 0.99])
def test_bulk_edge_semicircle_matches_analytic_quantile(mass):
    radius = 2.0
    grid = np.linspace(-2.2, 2.2, 4001)
    edge = hp.bulk_edge(grid, _semicircle(grid, radius), mass=mass)
    assert edge == pytest.approx(_semicircle_edge(mass) * radius, abs=2e-3)


def test_bulk_edge_uniform_and_degenerate_cases():
    grid = np.linspace(-0.5, 1.5, 2001)
    uniform = ((grid >= 0) & (grid <= 1)).astype(float)
    assert hp.bulk_edge(grid, uniform) == pytest.approx(0.99, abs=2e-3)
    assert hp.bulk_edge(grid, uniform, mass=0.5) == pytest.approx(0.5, abs=2e-3)
    assert math.isnan(hp.bulk_edge(grid, np.where(grid < 0, 1.0, 0.0)))
    assert math.isnan(hp.bulk_edge(-grid[::-1] - 2, uniform))


def test_bulk_edge_is_robust_to_lanczos_smoothing_and_spurious_bumps():
    # A Lanczos estimate is the density blurred by a Gaussian, plus small ghost bumps:
    # the mass quantile moves by a fraction of the blur width only.
    radius, sigma = 1.0, 0.02
    grid = np.linspace(-1.5, 1.5, 3001)
    exact = _semicircle(grid, radius)
    kernel = np.exp(-0.5 * ((grid[:, None] - grid[None, :]) / sigma) ** 2)
    blurred = kernel @ exact
    blurred /= np.trapezoid(blurred, grid)
    ghost = (
        1e-4 * np.exp(-0.5 * ((grid - 1.3) / 0.01) ** 2) / (0.01 * np.sqrt(2 * np.pi))
    )
    edge = hp.bulk_edge(grid, exact)
    assert hp.bulk_edge(grid, blurred + ghost) == pytest.approx(edge, abs=sigma)


def test_bulk_edge_min_abs_leaves_out_a_dominant_spike_at_zero():
    # 99.9 % of the eigenvalues at zero (a smoothed spike): the 0.99 quantile falls in
    # the spike; counted from min_abs on, it is the bulk's own edge again.
    radius, sigma = 1.0, 0.005
    grid = np.linspace(-1.2, 1.2, 4801)
    spike = np.exp(-0.5 * (grid / sigma) ** 2) / (sigma * np.sqrt(2 * np.pi))
    bulk = np.where(grid > 0, 2 * _semicircle(grid, radius), 0.0)  # positive half
    density = 0.999 * spike + 0.001 * bulk
    assert hp.bulk_edge(grid, density) < 5 * sigma
    expected = hp.bulk_edge(grid, bulk, min_abs=5 * sigma)
    assert hp.bulk_edge(grid, density, min_abs=5 * sigma) == pytest.approx(
        expected, 1e-3
    )
    assert expected == pytest.approx(_semicircle_edge(0.99), abs=2e-3)


def test_bulk_range_and_tail_range_are_mass_quantiles():
    grid = np.linspace(-8, 8, 8001)
    gauss = np.exp(-0.5 * grid**2) / np.sqrt(2 * np.pi)
    lo, hi = hp.bulk_range(grid, gauss)
    assert (lo, hi) == pytest.approx((-2.5758, 2.5758), abs=5e-3)
    flat = ((grid > -1) & (grid < 1)).astype(float)
    for side in ("positive", "negative"):
        assert hp.tail_range(grid, flat, side=side) == pytest.approx((0.5, 0.99), 2e-3)
    # min_abs: the quantiles are of the mass beyond it
    assert hp.tail_range(grid, flat, min_abs=0.5, mass=(0.5, 1.0)) == pytest.approx(
        (0.75, 1.0), abs=3e-3
    )


def test_g_peak_epochs_agree_between_decomposition_and_spectra(spectra, decomposition):
    kwargs = {"dataset": "mnist", "arch": "vgg11"}
    from_dec = hp.g_peak_epochs(decomposition=decomposition, **kwargs)
    from_spectra = hp.g_peak_epochs(spectra=spectra, **kwargs)
    assert from_dec == from_spectra == {10: 20, 100: 20}


# ------------------------------------------------------------------------- figures


def test_figure1_panels_and_reference(spectra, tmp_path):
    fig = hp.figure1_g_decomposition(spectra, dataset="mnist", arch="vgg11")
    assert len(fig.axes) == 5
    assert [len(ax.get_lines()) for ax in fig.axes] == [1, 2, 2, 2, 2]
    assert "G (reference)" in _legend_texts(fig)
    assert "n = 100 per class, epoch 20" in fig.get_suptitle()  # largest by default
    assert all(ax.get_yscale() == "log" for ax in fig.axes)
    _write_png(fig, tmp_path, "fig1")


def test_figure1_reference_is_g_with_its_outliers(spectra):
    """A deflated log spectrum of G keeps its top-C apart: the grey reference of every
    G - X panel shows them as sticks, so the panels can be compared with G itself."""
    deflated = spectra.copy(deep=True)
    at = dict(split="train", operator="G", variant="log")
    deflated["outliers"].loc[at] = [5.0, 4.0, 3.0]
    fig = hp.figure1_g_decomposition(deflated, sample_size=100, epoch=20)
    eps = deflated.attrs["log_eps"]
    expected = np.log10(np.array([5.0, 4.0, 3.0]) + eps)
    for ax in fig.axes:
        sticks = [c for c in ax.collections if len(c.get_segments()) == 3]
        assert len(sticks) == 1
        xs = [seg[0][0] for seg in sticks[0].get_segments()]
        np.testing.assert_allclose(sorted(xs), sorted(expected))


def test_unresolved_part_of_a_log_spectrum_is_marked(spectra):
    marked = spectra.copy(deep=True)
    marked["resolved_from"] = xr.full_like(marked["bound_lo"], -2.0)
    fig = hp.figure1_g_decomposition(marked, sample_size=100, epoch=20)
    assert hp.UNRESOLVED_LABEL in _legend_texts(fig)
    line = fig.axes[0].get_lines()[0]  # the resolved part only
    x = line.get_xdata()
    assert np.nanmin(x) >= -2.0


def test_missing_spectrum_panel_says_not_computed(spectra):
    holed = spectra.copy(deep=True)
    holed["density"].loc[{"operator": "G-A2"}] = np.nan
    fig = hp.figure1_g_decomposition(holed, sample_size=10, epoch=5)
    assert [_says_not_computed(ax) for ax in fig.axes] == [0, 0, 1, 0, 0]


def test_absent_coordinate_is_a_clear_error(spectra):
    with pytest.raises(ValueError, match=r"dataset='svhn'.*present: \['mnist'"):
        hp.figure1_g_decomposition(spectra, dataset="svhn")
    with pytest.raises(ValueError, match="epoch=7"):
        hp.figure5_deflation(spectra, epoch=7)


@pytest.mark.parametrize("kind", ["fig2", "fig9"])
def test_figures_2_and_9_train_test_by_dataset(spectra, kind, tmp_path):
    draw = hp.figure2_hessian_deflated if kind == "fig2" else hp.figure9_hessian_plain
    fig = draw(spectra, sample_size=10)
    axes = np.array(fig.axes).reshape(2, 2)  # rows train / test, columns data sets
    assert [ax.get_title().split("\n")[0] for ax in axes[0]] == ["mnist", "cifar10"]
    for ax in axes.ravel():
        assert ax.get_yscale() == "log"
        if kind == "fig2":  # bulk line + outlier markers, outlier sticks
            assert len(ax.get_lines()) == 2 and len(ax.collections) == 1
            assert len(ax.collections[0].get_segments()) == 3
        else:
            assert len(ax.get_lines()) == 1 and not ax.collections
    if kind == "fig2":
        assert "deflated top-C eigenvalues" in _legend_texts(fig)
        _write_png(fig, tmp_path, kind)


def test_figure3_outliers_and_bulk_zoom(spectra, tmp_path):
    fig = hp.figure3_components(spectra)
    assert len(fig.axes) == 12
    panel_a = np.array(fig.subfigs[0].axes).reshape(3, 2)
    panel_b = np.array(fig.subfigs[1].axes).reshape(3, 2)
    for j in range(2):
        # sticks for the deflated Hess and G, none for H
        assert [len(ax.collections) for ax in panel_a[:, j]] == [1, 1, 0]
        assert all(ax.get_yscale() == "log" for ax in panel_a[:, j])
        assert all(ax.get_yscale() == "linear" for ax in panel_b[:, j])
        limits = {ax.get_xlim() for ax in panel_b[:, j]}
        assert len(limits) == 1  # one bulk window per split
        lo, hi = limits.pop()
        for ax in panel_b[:, j]:
            x = ax.get_lines()[0].get_xdata()
            assert x.min() >= lo and x.max() <= hi
    _write_png(fig, tmp_path, "fig3")


def test_figure4_power_law_fits(spectra, tmp_path):
    fig = hp.figure4_h_tails(spectra)
    ax_a, ax_b = fig.axes
    assert len(ax_a.get_lines()) == 4  # two sides, two fits
    assert len(ax_b.get_lines()) == 2
    for ax in (ax_a, ax_b):
        assert ax.get_xscale() == ax.get_yscale() == "log"
    fits = [t for t in _legend_texts(fig) if t.startswith("φ =")]
    assert len(fits) == 3 and all("R²" in t for t in fits)
    # synthetic H has tails |λ|^-2.7
    exponents = [float(re.search(r"\|λ\|\^(-?[\d.]+)", t).group(1)) for t in fits]
    assert exponents == pytest.approx([-2.7] * 3, abs=0.2)
    _write_png(fig, tmp_path, "fig4")


def test_figure5_outliers_aligned(spectra):
    fig = hp.figure5_deflation(spectra, sample_size=10, epoch=20)
    top, bottom = fig.axes
    dotted_top, sticks = top.collections
    (dotted_bottom,) = bottom.collections
    x = [c.get_segments() for c in (dotted_top, sticks, dotted_bottom)]
    xs = [sorted(s[0][0] for s in segs) for segs in x]
    assert xs[0] == xs[1] == xs[2] and len(xs[0]) == 3
    assert top.get_shared_x_axes().joined(top, bottom)


def test_figure6_grid_normalised_by_bulk_edge_of_h(spectra, tmp_path):
    fig = hp.figure6_dynamics(spectra)
    axes = np.array(fig.axes).reshape(2, 2)  # rows epochs, columns sample sizes
    assert [ax.get_title() for ax in axes[0]] == [
        "n = 10 per class",
        "n = 100 per class",
    ]
    assert set(_legend_texts(fig)) == {"Hess", "G", "H"}
    h = spectra.sel(
        dataset="mnist",
        arch="vgg11",
        sample_size=100,
        epoch=20,
        split="train",
        operator="H",
        variant="plain",
    )
    grid = h["grid"].values
    width = gaussian_width(
        spectra.attrs["num_iters"], spectra.attrs["kappa"], grid.size
    )
    min_abs = hp.ZERO_SPIKE_WIDTHS * width * (grid[-1] - grid[0]) / 2
    edge = hp.bulk_edge(grid, h["density"].values, min_abs=min_abs)
    h_line = [ln for ln in axes[1, 1].get_lines() if ln.get_label() == "H"][0]
    np.testing.assert_allclose(h_line.get_xdata(), h["grid"].values / edge)
    colors = {ln.get_label(): ln.get_color() for ln in axes[0, 0].get_lines()}
    assert colors["Hess"] == "tab:red" and colors["H"] == "tab:blue"
    _write_png(fig, tmp_path, "fig6")


def test_figure6_empty_panel(spectra):
    holed = spectra.copy(deep=True)
    holed["density"].loc[{"sample_size": 10, "epoch": 5}] = np.nan
    fig = hp.figure6_dynamics(holed, sample_sizes=[10, 100], epochs=[5, 20])
    flags = [_says_not_computed(ax) for ax in fig.axes]
    assert flags == [True, False, False, False]


def test_figure7_hierarchy_markers(spectra, decomposition, tmp_path):
    fig = hp.figure7_g_hierarchy(spectra, decomposition)
    assert len(fig.axes) == 4
    for ax in fig.axes:
        labels = [ln.get_label() for ln in ax.get_lines()]
        assert labels == [
            "top-C of G",
            "A1+A2+B1: A1 (top C)",
            "A1+A2+B1: B1 (next C²−2C)",
            "A2",
            "Tr(B2,c)/n",
            "log spectrum of G",
        ]
        # The structural zeros of A1 + A2 + B1 (the paper's teal "A2") are not drawn.
        xs = np.concatenate([ln.get_xdata() for ln in ax.get_lines()[:5]])
        assert xs.min() > -9
    # x axis is log10 of the eigenvalues
    point = decomposition.sel(dataset="mnist", arch="vgg11", sample_size=10, epoch=5)
    top = fig.axes[0].get_lines()[0].get_xdata()
    np.testing.assert_allclose(top, np.log10(point["g_top_eigenvalues"].values))
    a2 = fig.axes[0].get_lines()[3].get_xdata()
    np.testing.assert_allclose(a2, np.log10(point["a2_eigenvalues"].values))
    _write_png(fig, tmp_path, "fig7")


def test_figure8_selfcheck(tmp_path):
    fig = hp.figure8_selfcheck(synthetic_selfcheck())
    assert len(fig.axes) == 2
    for ax in fig.axes:
        assert len(ax.patches) == 100
        assert [ln.get_color() for ln in ax.get_lines()] == ["tab:red"]
        assert "W1 / width" in ax.get_title()
    assert fig.axes[0].get_yscale() == "log"
    _write_png(fig, tmp_path, "fig8")


def test_figure10_learning_curves(decomposition, tmp_path):
    fig = hp.figure10_learning_curves(synthetic_training(), decomposition=decomposition)
    train_ax, test_ax = fig.axes
    assert train_ax.get_xscale() == "log"
    # two curves + two peak circles (+ the legend's proxy circle on the first axes)
    assert len(test_ax.get_lines()) == 4 and len(train_ax.get_lines()) == 5
    circles = [ln for ln in test_ax.get_lines() if ln.get_marker() == "o"]
    assert [ln.get_xdata()[0] for ln in circles] == [20, 20]
    assert "epoch of G's peak" in _legend_texts(fig)
    _write_png(fig, tmp_path, "fig10")


# ---------------------------------------------------------------------------- CLI


@pytest.fixture(scope="module")
def make_figures():
    spec = importlib.util.spec_from_file_location(
        "make_figures", ROOT / "scripts" / "make_figures.py"
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def result_files(tmp_path_factory):
    return write_synthetic_results(tmp_path_factory.mktemp("results"))


CLI_CASES = {
    # as the workflow's rules call it (workflow/rules/figures.smk)
    "fig10": ["--training", "training", "--spectra", "spectra", "--dataset", "mnist"],
    # several sample sizes for a grid figure
    "fig7": [
        "--spectra",
        "spectra",
        "--decomposition",
        "decomposition",
        "--dataset",
        "cifar10",
        "--sample-size",
        "10",
        "100",
        "--epoch",
        "20",
    ],
}


@pytest.mark.parametrize("kind", list(CLI_CASES))
def test_cli_writes_png_and_pdf(make_figures, result_files, tmp_path, kind):
    out = tmp_path / "figs" / f"{kind}.png"
    args = [str(result_files.get(a, a)) for a in CLI_CASES[kind]]
    make_figures.main(["--figure", kind, "--out", str(out), "--dpi", "30", *args])
    assert out.stat().st_size > 1000
    assert out.with_suffix(".pdf").read_bytes()[:4] == b"%PDF"


def test_cli_errors_name_the_file_or_value(make_figures, result_files, tmp_path):
    out = str(tmp_path / "f.png")
    missing = tmp_path / "nowhere.nc"
    with pytest.raises(SystemExit, match=re.escape(f"file not found: {missing}")):
        make_figures.main(
            ["--figure", "fig8", "--out", out, "--selfcheck", str(missing)]
        )
    with pytest.raises(SystemExit, match="sample_size=11 is not in the results"):
        make_figures.main(
            [
                "--figure",
                "fig4",
                "--out",
                out,
                "--sample-size",
                "11",
                "--spectra",
                str(result_files["spectra"]),
            ]
        )
    assert not Path(out).exists()
