"""The findings' verdict rules on synthetic results whose answers are known."""

import csv

import numpy as np
import pytest
import xarray as xr

from hessian_spectrum import findings as hf
from hessian_spectrum import results
from hessian_spectrum.density import SpectralDensity

C = 10
P = 20_000
FOCUS = hf.Setting("mnist", "lenet", 50, 10)


def _semicircle(radius, num_points=1024, zero_mass=0.5, lo=None, hi=None):
    """Grid and density: a zero spike plus a semicircle of the given radius."""
    lo = -1.2 * radius if lo is None else lo
    hi = 1.2 * radius if hi is None else hi
    grid = np.linspace(lo, hi, num_points)
    semi = np.sqrt(np.clip(radius**2 - grid**2, 0, None))
    semi /= np.trapezoid(semi, grid)
    width = 0.002 * (hi - lo)
    spike = np.exp(-0.5 * (grid / width) ** 2)
    spike /= np.trapezoid(spike, grid)
    return grid, (1 - zero_mass) * semi + zero_mass * spike


def _sd(
    grid,
    density,
    outliers=(),
    converged=None,
    lambda_max=None,
    second_moment=1.0,
    kind="linear",
):
    outliers = np.asarray(outliers, dtype=float)
    if converged is None:
        converged = np.ones(outliers.size, dtype=bool)
    top = float(grid[-1]) if lambda_max is None else lambda_max
    return SpectralDensity(
        grid=np.asarray(grid, float),
        density=np.asarray(density, float),
        outliers=outliers,
        bounds=(float(grid[0]), float(grid[-1])),
        p=P,
        num_products=128,
        settings={"num_iters": 128, "num_points": len(grid), "kappa": 3.0},
        kind=kind,
        eps=1e-5 if kind == "log" else None,
        outlier_residuals=np.full(outliers.size, 1e-6),
        outliers_converged=np.asarray(converged, dtype=bool),
        resolution=1e-4,
        extremes=(float(grid[0]), top),
        second_moment=second_moment,
    )


def _spectra(tmp_path, entries):
    """spectra.nc from {(n, epoch, split, operator, variant): SpectralDensity}."""
    paths = []
    for i, ((n, epoch, split, op, variant), sd) in enumerate(entries.items()):
        ds = results.spectrum_dataset(
            sd,
            dataset=FOCUS.dataset,
            arch=FOCUS.arch,
            sample_size=n,
            epoch=epoch,
            split=split,
            operator=op,
            variant=variant,
            num_classes=C,
            learning_rate=0.05,
        )
        path = tmp_path / f"s{i}.nc"
        results.write_netcdf(ds, path)
        paths.append(path)
    return results.combine(paths, "spectra")


def _outliers(count, top=40.0, bottom=10.0):
    return np.geomspace(top, bottom, count) if count else np.array([])


def _hessian_entries(num_outliers, *, n=50, epoch=10, g_shift=1.0, h_max=3.0):
    """Deflated Hess and G with a semicircle bulk of radius 4, H of radius h_max."""
    out = np.concatenate([_outliers(num_outliers), np.linspace(3, 2, C - num_outliers)])
    grid, dens = _semicircle(4.0)
    h_grid, h_dens = _semicircle(h_max, lo=-h_max * 1.1, hi=h_max * 1.1)
    g_grid, g_dens = _semicircle(1.0)
    return {
        (n, epoch, "train", "hess", "deflated"): _sd(grid, dens, out, second_moment=2),
        (n, epoch, "train", "G", "deflated"): _sd(
            g_grid, g_dens, out * g_shift, second_moment=0.2
        ),
        (n, epoch, "train", "H", "plain"): _sd(h_grid, h_dens, second_moment=1.6),
    }


def test_exactly_c_spikes_beyond_a_semicircle_reproduce_f1_and_f2(tmp_path):
    spectra = _spectra(tmp_path, _hessian_entries(C))
    f1 = hf.f1_outliers(spectra, FOCUS)
    assert f1.verdict == "reproduced"
    assert f1.measured.startswith("10 outliers")
    assert hf.f2_outliers_from_g(spectra, FOCUS).verdict == "reproduced"


def test_too_few_spikes_fail_f1(tmp_path):
    spectra = _spectra(tmp_path, _hessian_entries(6))
    f1 = hf.f1_outliers(spectra, FOCUS)
    assert f1.verdict == "not reproduced" and f1.measured.startswith("6 outliers")


def test_unconverged_outliers_are_never_counted(tmp_path):
    entries = _hessian_entries(C)
    key = (50, 10, "train", "hess", "deflated")
    sd = entries[key]
    converged = np.ones(C, dtype=bool)
    converged[:3] = False
    entries[key] = _sd(sd.grid, sd.density, sd.outliers, converged)
    f1 = hf.f1_outliers(_spectra(tmp_path, entries), FOCUS)
    assert f1.measured.startswith("7 outliers")
    assert "3 unconverged not counted" in f1.measured
    assert f1.verdict == "not reproduced"


def test_f2_fails_when_g_disagrees_or_h_reaches_the_outliers(tmp_path):
    shifted = _spectra(tmp_path, _hessian_entries(C, g_shift=0.5))
    assert hf.f2_outliers_from_g(shifted, FOCUS).verdict == "not reproduced"
    (tmp_path / "b").mkdir()
    wide_h = _spectra(tmp_path / "b", _hessian_entries(C, h_max=12.0))
    f2 = hf.f2_outliers_from_g(wide_h, FOCUS)
    assert f2.verdict == "not reproduced"
    assert "max(H) / smallest Hess outlier = 1." in f2.measured


def test_f3_compares_bulk_energies_and_lists_negligible_epochs(tmp_path):
    entries = _hessian_entries(C)
    entries.update(_hessian_entries(C, epoch=100))
    key = (50, 100, "train", "G", "deflated")
    sd = entries[key]
    entries[key] = _sd(sd.grid, sd.density, sd.outliers, second_moment=0.01)
    spectra = _spectra(tmp_path, entries)
    f3 = hf.f3_bulk_from_h(spectra, FOCUS)
    assert f3.verdict == "reproduced"  # H 1.6 of 2, G 0.2 of 2
    assert "G negligible at epochs [100]" in f3.measured
    entries[(50, 10, "train", "G", "deflated")] = _sd(
        sd.grid, sd.density, sd.outliers, second_moment=1.9
    )
    (tmp_path / "b").mkdir()
    again = hf.f3_bulk_from_h(_spectra(tmp_path / "b", entries), FOCUS)
    assert again.verdict == "not reproduced"


def test_power_law_tails_reproduce_f4_and_gaussian_tails_do_not(tmp_path):
    grid = np.linspace(-10, 10, 4001)
    power = (1 + (grid / 0.05) ** 2) ** -1.35
    gauss = np.exp(-0.5 * (grid / 2.0) ** 2)
    entries = {
        (50, 10, "test", "H", "plain"): _sd(grid, power / np.trapezoid(power, grid)),
        (20, 10, "test", "H", "plain"): _sd(grid, gauss / np.trapezoid(gauss, grid)),
    }
    spectra = _spectra(tmp_path, entries)
    f4 = hf.f4_power_law(spectra, FOCUS)
    assert f4.verdict == "reproduced"
    exponent = float(f4.measured.split("|λ|^")[1].split(",")[0])
    assert exponent == pytest.approx(-2.7, abs=0.15)
    other = hf.f4_power_law(spectra, FOCUS._replace(sample_size=20))
    assert other.verdict == "not reproduced"
    missing = hf.f4_power_law(spectra, FOCUS._replace(epoch=99))
    assert missing.verdict == "not applicable"


def _decomposition(tmp_path, seps, a2_scale=1e-3, name="d"):
    """decomposition.nc with the B2 - B1 separation ``seps[(n, epoch)]`` in decades."""
    paths = []
    for i, ((n, epoch), sep) in enumerate(seps.items()):
        b1 = np.geomspace(1e-4, 1e-2, C * C - 2 * C)  # median 10^-3
        a1 = np.geomspace(40, 10, C)
        eigs = np.concatenate([a1, b1, np.full(C, 1e-12)])
        source = np.repeat(np.array([0, 1, 2], np.int8), [C, C * C - 2 * C, C])
        ds = results.decomposition_dataset(
            dataset=FOCUS.dataset,
            arch=FOCUS.arch,
            sample_size=n,
            epoch=epoch,
            eigenvalues=eigs,
            source=source,
            b2_trace=np.full(C, 10.0 ** (-3 + sep)),
            b2_stderr=np.zeros(C),
            g_top_values=a1 * (1 + 0.1 * epoch),
            g_top_residuals=np.full(C, 1e-6),
            g_top_converged=np.ones(C, np.int8),
            a1_eigenvalues=a1,
            a2_eigenvalues=a1 * a2_scale,
            settings={},
        )
        path = tmp_path / f"{name}{i}.nc"
        results.write_netcdf(ds, path)
        paths.append(path)
    return results.combine(paths, "decomposition")


def test_f7_needs_separation_growing_with_epochs_and_shrinking_with_n(tmp_path):
    good = {(50, 3): 0.1, (50, 10): 0.5, (50, 100): 0.9}
    good |= {(200, 3): 0.0, (200, 10): 0.2, (200, 100): 0.4}
    assert hf.f7_bulk_dynamics(_decomposition(tmp_path, good), FOCUS).verdict == (
        "reproduced"
    )
    bad_n = dict(good) | {(200, 100): 1.5}
    result = hf.f7_bulk_dynamics(_decomposition(tmp_path, bad_n, name="n"), FOCUS)
    assert result.verdict == "not reproduced"
    bad_e = dict(good) | {(50, 100): -0.2}
    result = hf.f7_bulk_dynamics(_decomposition(tmp_path, bad_e, name="e"), FOCUS)
    assert result.verdict == "not reproduced"
    assert hf.f7_bulk_dynamics(None, FOCUS).verdict == "not applicable"


def test_f6_peak_at_an_interior_epoch_and_a_monotone_g(tmp_path):
    def g_at(values):
        entries = {}
        for epoch, top in values.items():
            grid, dens = _semicircle(1.0)
            entries[(50, epoch, "train", "G", "deflated")] = _sd(
                grid, dens, np.geomspace(top, top / 4, C)
            )
        return entries

    peaked = _spectra(tmp_path, g_at({3: 1.0, 10: 40.0, 100: 0.4}))
    f6 = hf.f6_g_peak(peaked, None, FOCUS)
    assert f6.verdict == "reproduced" and "peak at e10" in f6.measured
    (tmp_path / "m").mkdir()
    monotone = _spectra(tmp_path / "m", g_at({3: 1.0, 10: 4.0, 100: 40.0}))
    assert hf.f6_g_peak(monotone, None, FOCUS).verdict == "not reproduced"
    (tmp_path / "f").mkdir()
    flat = _spectra(tmp_path / "f", g_at({3: 1.0, 10: 1.5, 100: 1.0}))
    assert hf.f6_g_peak(flat, None, FOCUS).verdict == "not reproduced"  # rise < 2x


def test_f5_attribution_of_outliers_bulks_and_a2(tmp_path):
    grid, dens = _semicircle(1.0)
    out = _outliers(C)
    entries = {
        (50, 10, "train", "G", "deflated"): _sd(grid, dens, out),
        (50, 10, "train", "G-A1", "log"): _sd(grid, dens, lambda_max=1.2, kind="log"),
    }
    spectra = _spectra(tmp_path, entries)
    dec = _decomposition(tmp_path, {(50, 10): 1.0})
    f5 = hf.f5_hierarchy(spectra, dec, FOCUS)
    assert f5.verdict == "reproduced"
    assert f5.measured.startswith("A1 removes 10 of G's 10 outliers")
    big_a2 = _decomposition(tmp_path, {(50, 10): 1.0}, a2_scale=0.5, name="a2")
    assert hf.f5_hierarchy(spectra, big_a2, FOCUS).verdict == "not reproduced"
    swapped = _decomposition(tmp_path, {(50, 10): -1.0}, name="sw")
    assert hf.f5_hierarchy(spectra, swapped, FOCUS).verdict == "not reproduced"
    entries[(50, 10, "train", "G-A1", "log")] = _sd(
        grid, dens, lambda_max=50.0, kind="log"
    )
    (tmp_path / "b").mkdir()
    kept = hf.f5_hierarchy(_spectra(tmp_path / "b", entries), dec, FOCUS)
    assert kept.verdict == "not reproduced"
    assert hf.f5_hierarchy(spectra, None, FOCUS).verdict == "not applicable"


@pytest.mark.parametrize("kept, verdict", [(2, "reproduced"), (6, "not reproduced")])
def test_f5_counts_the_outliers_g_minus_a1_keeps(tmp_path, kept, verdict):
    """With G - A1's log spectrum deflated, its outliers are counted as G's are."""
    grid, dens = _semicircle(1.0)
    rest = np.concatenate([np.geomspace(5.0, 2.0, kept), np.full(C - kept, 0.5)])
    entries = {
        (50, 10, "train", "G", "deflated"): _sd(grid, dens, _outliers(C)),
        (50, 10, "train", "G-A1", "log"): _sd(grid, dens, rest, kind="log"),
    }
    f5 = hf.f5_hierarchy(
        _spectra(tmp_path, entries), _decomposition(tmp_path, {(50, 10): 1.0}), FOCUS
    )
    assert f5.verdict == verdict
    assert f5.measured.startswith(f"A1 removes {C - kept} of G's {C} outliers")
    assert f"G - A1 keeps {kept}" in f5.measured and "top-C energy" in f5.measured


def test_f8_thresholds():
    def selfcheck(w1a, w1b):
        return xr.Dataset(
            {"w1_relative": (("case",), [w1a, w1b])},
            coords={"case": ["fig8a", "fig8b"]},
        )

    assert hf.f8_selfcheck(selfcheck(0.004, 0.01)).verdict == "reproduced"
    assert hf.f8_selfcheck(selfcheck(0.004, 0.2)).verdict == "not reproduced"
    assert hf.f8_selfcheck(None).verdict == "not applicable"


def test_evaluate_writes_eight_rows_with_valid_verdicts(tmp_path):
    spectra = _spectra(tmp_path, _hessian_entries(C))
    rows = hf.evaluate(spectra, focus=FOCUS)
    assert [r.finding for r in rows] == [f"F{i}" for i in range(1, 9)]
    assert rows[0].verdict == "reproduced"
    assert {r.verdict for r in rows} <= set(hf.VERDICTS)
    assert rows[7].verdict == "not applicable"  # no self-check given
    hf.write_findings(rows, tmp_path / "findings.csv", tmp_path / "findings.md")
    with open(tmp_path / "findings.csv") as handle:
        table = list(csv.DictReader(handle))
    assert list(table[0]) == list(hf.COLUMNS)
    assert [t["verdict"] for t in table] == [r.verdict for r in rows]
    md = (tmp_path / "findings.md").read_text()
    assert "| F1 |" in md and "## Rules" in md
    assert hf.default_focus(spectra) == FOCUS
    with pytest.raises(ValueError, match="verdict must be one of"):
        hf.Finding("F1", "", "", "maybe", "", "")
