"""Lanczos, bounds, densities, subspace iteration, power laws: against exact answers."""

import doctest
import math

import numpy as np
import pytest
import torch

import hessian_spectrum as hs
from hessian_spectrum import density, lanczos, operators, powerlaw, subspace
from hessian_spectrum.validation import log_eigenvalues


@pytest.fixture(scope="module")
def fig8a():
    Y = hs.figure8a_matrix(2000, seed=0)
    return Y, np.linalg.eigvalsh(Y.numpy())


def _random_spectrum(eigs, seed=0):
    """A dense symmetric matrix with the given eigenvalues in a random basis."""
    g = torch.Generator().manual_seed(seed)
    Q = torch.linalg.qr(
        torch.randn(len(eigs), len(eigs), generator=g, dtype=torch.float64)
    )[0]
    return Q @ torch.diag(torch.as_tensor(eigs, dtype=torch.float64)) @ Q.T


def test_docstring_examples_run():
    for module in (operators, lanczos, density, subspace, powerlaw):
        assert doctest.testmod(module).failed == 0, module.__name__


# -- Lanczos ---------------------------------------------------------------------------
def test_fast_and_slow_lanczos_agree_before_orthogonality_is_lost():
    A = _random_spectrum(np.linspace(-3, 5, 60), seed=1)
    fast = hs.fast_lanczos(A, 12, seed=3)
    slow = hs.slow_lanczos(A, 12, seed=3)
    a_f, b_f = fast.tridiagonal()
    a_s, b_s = slow.tridiagonal()
    np.testing.assert_allclose(a_f, a_s, rtol=1e-9, atol=1e-9)
    np.testing.assert_allclose(b_f, b_s, rtol=1e-9, atol=1e-9)


def test_slow_lanczos_full_run_gives_exact_spectrum_and_residuals():
    eigs = np.array([-2.0, -0.5, 0.3, 1.0, 2.5, 4.0, 7.0])
    A = _random_spectrum(eigs, seed=2)
    res = hs.slow_lanczos(A, seed=0)
    theta, w = res.ritz()
    np.testing.assert_allclose(theta, eigs, atol=1e-10)
    assert w.sum() == pytest.approx(1.0, abs=1e-12)
    # The residual read off the tridiagonal equals ||A x - theta x||.
    partial = hs.slow_lanczos(A, 4, seed=0)
    theta4, _ = partial.ritz()
    X = partial.ritz_vectors()
    direct = (A @ X - X * torch.as_tensor(theta4)).norm(dim=0).numpy()
    np.testing.assert_allclose(partial.ritz_residuals(), direct, rtol=1e-8, atol=1e-12)


def test_breakdown_on_low_rank_matrix_stops_early_and_quadrature_is_exact():
    eigs = np.zeros(50)
    eigs[:3] = [1.0, 2.0, 5.0]
    A = _random_spectrum(eigs, seed=4)
    res = hs.fast_lanczos(A, 30, seed=1)
    # The Krylov space of a rank-3 matrix from a generic start has dimension 4.
    assert res.lengths[0] == 4
    theta, w = res.ritz()
    v = hs.start_vectors(50, seed=1)[:, 0]
    for f in (lambda x: x, lambda x: x**2, lambda x: x**5):
        exact = float(v @ (_matfun(A, f) @ v))
        assert float(np.sum(w * f(theta))) == pytest.approx(exact, rel=1e-10)
    np.testing.assert_allclose(np.sort(theta)[1:], [1.0, 2.0, 5.0], atol=1e-10)


def _matfun(A, f):
    vals, vecs = torch.linalg.eigh(A)
    return vecs @ torch.diag(torch.as_tensor(f(vals.numpy()))) @ vecs.T


def test_more_iterations_than_dimension():
    eigs = np.array([-1.0, 0.5, 2.0, 3.0, 4.5])
    A = _random_spectrum(eigs, seed=5)
    res = hs.fast_lanczos(A, 40, seed=0)
    assert res.lengths[0] <= 6
    theta, w = res.ritz()
    big = w > 1e-8
    np.testing.assert_allclose(np.unique(np.round(theta[big], 8)), eigs, atol=1e-8)
    # On a diagonal matrix a Rademacher start weighs every eigenvalue exactly 1/p, so
    # the density is exact up to the Gaussian smoothing.
    D = torch.diag(torch.as_tensor(eigs))
    sd = hs.lanczos_approx_spec(D, num_iters=40, num_points=2001)
    assert sd.integral() == pytest.approx(1.0, abs=1e-6)
    width = eigs[-1] - eigs[0]
    assert hs.wasserstein1(sd.grid, sd.density, eigs) / width < 0.01


def test_block_of_starts_equals_separate_runs():
    A = _random_spectrum(np.linspace(0, 1, 40) ** 2, seed=6)
    block = hs.fast_lanczos(A, 10, num_vectors=3, seed=7)
    V = hs.start_vectors(40, 3, seed=7)
    for j in range(3):
        one = hs.fast_lanczos(A, 10, v0=V[:, j])
        np.testing.assert_allclose(block.alpha[j], one.alpha[0], rtol=1e-12)
        np.testing.assert_allclose(block.beta[j], one.beta[0], rtol=1e-12)
    assert block.num_products == 30


def test_lanczos_refuses_bad_input():
    A = hs.as_operator(_random_spectrum(np.arange(5.0)))
    with pytest.raises(ValueError, match="num_iters must be an integer >= 2"):
        hs.fast_lanczos(A, 1)
    with pytest.raises(ValueError, match="start must be"):
        hs.fast_lanczos(A, 3, start="uniform")

    class NaNOp(hs.LinearOperator):
        def _matmat(self, V):
            return torch.full_like(V, float("nan"))

    with pytest.raises(FloatingPointError, match="NaN or Inf at Lanczos step 1"):
        hs.lanczos_approx_spec(NaNOp(10, torch.float64, "cpu"), num_iters=4)
    with pytest.raises(ValueError, match="num_points"):
        hs.lanczos_approx_spec(A, num_iters=4, num_points=1)
    with pytest.raises(ValueError, match="kappa"):
        hs.lanczos_approx_spec(A, num_iters=4, kappa=1.0)
    with pytest.raises(ValueError, match="deflate"):
        hs.lanczos_approx_spec(A, num_iters=4, deflate=5)


# -- bounds and densities ------------------------------------------------------------
def test_spectral_bounds_enclose_the_spectrum_including_negative_eigenvalues():
    eigs = np.concatenate([np.linspace(-4, -1, 30), np.linspace(0, 2, 70)])
    A = _random_spectrum(eigs, seed=8)
    lo, hi = hs.spectral_bounds(A, num_iters=32, margin=0.05)
    assert lo < -4 and hi > 2
    assert lo > -4 - 0.5 and hi < 2 + 0.5  # tight: residual + 5% margin


def test_figure8a_density_matches_exact_eigenvalues(fig8a):
    Y, eigs = fig8a
    sd = hs.lanczos_approx_spec(Y, num_iters=128, num_points=1024, num_vectors=10)
    w1 = hs.wasserstein1(sd.grid, sd.density, eigs) / (eigs[-1] - eigs[0])
    assert w1 <= 0.005
    assert sd.integral() == pytest.approx(1.0, abs=1e-6)
    # Bounds come from the same Krylov space: exactly M * n_vec products.
    assert sd.num_products == 128 * 10
    assert sd.bounds[0] < eigs[0] and sd.bounds[1] > eigs[-1]


def test_figure8a_subspace_iteration_and_deflated_bulk(fig8a):
    Y, eigs = fig8a
    vals, vecs, resid = hs.subspace_iteration(Y, rank=3, num_iters=128, tol=1e-9)
    np.testing.assert_allclose(vals.numpy(), eigs[::-1][:3], rtol=1e-6)
    assert resid.max() < 1e-6
    torch.testing.assert_close(vecs.T @ vecs, torch.eye(3, dtype=torch.float64))
    sd = hs.lanczos_approx_spec(
        Y, num_iters=128, num_vectors=10, deflate=3, subspace_tol=1e-9
    )
    np.testing.assert_allclose(sd.outliers, eigs[::-1][:3], rtol=1e-6)
    # The bulk alone (weight (p-3)/p) matches the exact bulk; no mass at zero added.
    bulk = eigs[:-3]
    assert sd.integral() == pytest.approx(1 - 3 / 2000, abs=1e-6)
    w1 = hs.wasserstein1(sd.grid, sd.density, bulk) / (bulk[-1] - bulk[0])
    assert w1 <= 0.005
    assert sd.bounds[1] < 0.5  # the normalisation range is the bulk's
    full = hs.wasserstein1(sd.grid, sd.density, eigs, point_masses=sd.outliers)
    assert full / (eigs[-1] - eigs[0]) <= 0.005


def test_subspace_iteration_returns_signed_eigenvalues():
    eigs = np.concatenate([[-6.0, 5.0], np.linspace(-0.5, 0.5, 40)])
    A = _random_spectrum(eigs, seed=9)
    vals, _, resid = hs.subspace_iteration(A, rank=2, num_iters=100, tol=None)
    np.testing.assert_allclose(vals.numpy(), [-6.0, 5.0], rtol=1e-8)
    assert resid.max() < 1e-7
    with pytest.raises(ValueError, match="rank must be smaller"):
        hs.subspace_iteration(A, rank=42)


def test_figure8b_log_spectrum_matches_exact_log_eigenvalues():
    Y = hs.figure8b_matrix(seed=0)
    eigs = np.linalg.eigvalsh(Y.numpy())
    eps = 1e-5
    s = log_eigenvalues(eigs, eps)
    sd = hs.log_spectrum(Y, num_iters=1000, num_points=1024, num_vectors=10, eps=eps)
    assert sd.kind == "log"
    assert sd.integral() == pytest.approx(1.0, abs=1e-4)
    w1 = hs.wasserstein1(sd.grid, sd.density, s) / (s.max() - s.min())
    assert w1 <= 0.02
    # Change of measure to |lambda| preserves the mass above eps.
    x, dens = sd.abs_density()
    above = sd.grid >= np.log10(x[0] + eps)
    assert np.trapezoid(dens, x) == pytest.approx(
        np.trapezoid(sd.density[above], sd.grid[above]), rel=2e-2
    )


def test_gaussian_width_is_the_papers_and_never_below_grid_spacing():
    assert density.gaussian_width(128, 3.0) == pytest.approx(
        2 / (127 * math.sqrt(8 * math.log(3.0)))
    )
    assert density.gaussian_width(2048, 3.0, 1024) == pytest.approx(2 / 1023)


# -- W1 metric and power laws ---------------------------------------------------------
def test_wasserstein1_of_a_shift_is_the_shift():
    grid = np.linspace(-1, 2, 30001)
    dens = ((grid >= 0) & (grid <= 1)).astype(float)
    dens /= np.trapezoid(dens, grid)
    eigs = (np.arange(10000) + 0.5) / 10000
    assert hs.wasserstein1(grid, dens, eigs) < 1e-3
    assert hs.wasserstein1(grid, dens, eigs + 0.25) == pytest.approx(0.25, abs=1e-3)


def test_power_law_recovers_exponent_both_sides():
    x = np.linspace(-10, 10, 4001)
    x = x[x != 0]
    y = 1.2e-4 * np.abs(x) ** -2.7
    pos = hs.fit_power_law(x, y, lo=0.5, hi=8)
    neg = hs.fit_power_law(x, 2 * y, lo=0.5, hi=8, side="negative")
    assert pos.exponent == pytest.approx(-2.7, abs=1e-9)
    assert pos.coefficient == pytest.approx(1.2e-4, rel=1e-9)
    assert pos.r2 == pytest.approx(1.0, abs=1e-12)
    assert neg.coefficient == pytest.approx(2.4e-4, rel=1e-9)
    noisy = y * np.exp(np.random.default_rng(0).normal(0, 0.3, x.size))
    fit = hs.fit_power_law(x, noisy, lo=0.5, hi=8)
    assert 0.5 < fit.r2 < 0.999
    with pytest.raises(ValueError, match="lo < hi"):
        hs.fit_power_law(x, y, lo=2, hi=1)
    with pytest.raises(ValueError, match="fewer than 3"):
        hs.fit_power_law(x, y, lo=100, hi=200)


# -- subspace iteration: convergence test ---------------------------------------------
def test_subspace_iteration_stops_at_its_tolerance_and_flags_convergence():
    eigs = np.concatenate([[10.0, 8.0, 6.0], np.linspace(-1, 1, 97)])
    A = _random_spectrum(eigs, seed=11)
    res = hs.subspace_iteration(A, rank=3, num_iters=200, tol=1e-6)
    assert res.all_converged and res.num_iters < 200
    assert res.num_products == (res.num_iters + 1) * 3
    assert (res.relative_residuals() <= 1e-6).all()
    np.testing.assert_allclose(res.values.numpy(), [10, 8, 6], rtol=1e-9)
    # Without the tolerance the paper's fixed T steps run.
    fixed = hs.subspace_iteration(A, rank=3, num_iters=7, tol=None)
    assert fixed.num_iters == 7 and fixed.num_products == 24
    vals, vecs, resid = fixed  # still a (values, vectors, residuals) triple
    assert vals.shape == (3,) and vecs.shape == (100, 3)


def test_subspace_iteration_without_a_gap_is_flagged_unconverged():
    # Ten eigenvalues in a continuum: the top three are not separated from the rest.
    A = _random_spectrum(np.linspace(1.0, 0.9, 60), seed=12)
    res = hs.subspace_iteration(A, rank=3, num_iters=10, tol=1e-6)
    assert res.num_iters == 10 and not res.all_converged
    with pytest.raises(ValueError, match="tol must be"):
        hs.subspace_iteration(A, rank=3, tol=-1.0)
    with pytest.raises(ValueError, match="tol must be"):
        hs.subspace_iteration(A, rank=3, tol=float("nan"))


def test_deflation_can_be_shared_between_estimates(fig8a):
    Y, eigs = fig8a
    found = hs.subspace_iteration(Y, 3, 128, tol=1e-9)
    shared = hs.lanczos_approx_spec(Y, 64, deflate=found)
    own = hs.lanczos_approx_spec(Y, 64, deflate=3, subspace_tol=1e-9)
    np.testing.assert_allclose(shared.outliers, own.outliers)
    np.testing.assert_allclose(shared.density, own.density, rtol=1e-8, atol=1e-10)
    assert shared.outliers_converged.all()
    assert shared.num_products == own.num_products == found.num_products + 64
    log = hs.log_spectrum(Y, 64, deflate=found)
    np.testing.assert_allclose(log.outliers, found.values.numpy())


# -- smoothing of log spectra ---------------------------------------------------------
def _peaks(y, prominence=0.05):
    from scipy.signal import find_peaks

    return len(find_peaks(y, prominence=prominence * np.max(y))[0])


class _Diagonal(hs.LinearOperator):
    """diag(eigs) without forming the matrix (p = 20000 would take 3 GB dense)."""

    def __init__(self, eigs):
        self.eigs = torch.as_tensor(eigs, dtype=torch.float64)
        super().__init__(self.eigs.numel(), torch.float64, "cpu")

    def _matmat(self, V):
        return self.eigs[:, None] * V


def _log_fit(eigs, smoothing, eps=1e-5, num_iters=128):
    """(W1 / range, peaks and total variation in the resolved part, the estimate)."""
    s = log_eigenvalues(eigs, eps)
    sd = hs.log_spectrum(
        _Diagonal(eigs), num_iters, eps=eps, smoothing=smoothing, start="gaussian"
    )
    w1 = hs.wasserstein1(sd.grid, sd.density, s) / (s.max() - s.min())
    y = sd.density[sd.resolved()]
    return w1, _peaks(y), float(np.abs(np.diff(y)).sum()), sd


@pytest.fixture(scope="module")
def two_modes():
    """Two log-normal bulks two decades apart and 20 % zeros (p = 20000)."""
    rng = np.random.default_rng(1)
    return np.concatenate(
        [
            10 ** rng.normal(-3, 0.25, 8000),
            10 ** rng.normal(0, 0.25, 8000),
            np.zeros(4000),
        ]
    )


def test_adaptive_log_spectrum_draws_no_comb_on_a_power_law():
    # 15000 Pareto(1.5) eigenvalues over three decades and 5000 zeros: the exact log
    # spectrum falls off monotonically above its lower edge (one mode).
    rng = np.random.default_rng(2)
    eigs = np.concatenate([(rng.pareto(1.5, 15000) + 1) * 1e-4, np.zeros(5000)])
    w1_p, peaks_p, tv_p, _ = _log_fit(eigs, "paper")
    w1_a, peaks_a, tv_a, sd = _log_fit(eigs, "adaptive")
    assert peaks_p >= 8  # the paper's fixed kernel: one spike per Ritz node
    assert peaks_a <= 3
    assert tv_a < 0.5 * tv_p
    assert w1_a <= 1.1 * w1_p and w1_a < 0.01
    assert sd.integral() == pytest.approx(1.0, abs=1e-3)


def test_adaptive_log_spectrum_keeps_two_separated_modes_apart(two_modes):
    w1, peaks, _, sd = _log_fit(two_modes, "adaptive")
    assert w1 < 0.05
    # The density between the bulks (log10 = -1.5) is far below both of them.
    gap = np.interp(-1.5, sd.grid, sd.density)
    left = np.interp(-3.0, sd.grid, sd.density)
    right = np.interp(0.0, sd.grid, sd.density)
    assert gap < 1e-3 * min(left, right)
    assert peaks <= 4


def test_adaptive_widths_follow_the_node_spacing():
    nodes = np.array([0.0, 0.1, 0.2, 0.3, 1.0, 1.05])
    widths = density.adaptive_widths(nodes, 0.01)
    np.testing.assert_allclose(widths[:4], 0.5 * 0.1)
    # Never below the fixed width; nodes below the floor keep it.
    wide = density.adaptive_widths(nodes, 0.2)
    assert (wide[:4] == 0.2).all() and (wide >= 0.2).all()
    fixed = density.adaptive_widths(nodes, 0.01, fixed_below=0.15)
    np.testing.assert_allclose(fixed[:2], 0.01)
    # A twin (a ghost copy, or the other sign on the |lambda| axis) does not make
    # either node narrow: the pair counts as one node of the evenly spaced row.
    twins = np.array([0.0, 0.1, 0.2, 0.3, 0.3 + 1e-7, 0.4, 0.5])
    np.testing.assert_allclose(density.adaptive_widths(twins, 1e-4), 0.05, rtol=1e-5)
    shuffled = np.random.default_rng(0).permutation(twins)
    np.testing.assert_allclose(density.adaptive_widths(shuffled, 1e-4), 0.05, rtol=1e-5)


def test_resolution_marks_what_m_steps_cannot_resolve():
    # Semi-definite: about 5 lambda_max / M^2; indefinite: about pi lambda_max / M.
    assert density.lanczos_resolution(0.0, 1.0, 100) == pytest.approx(
        0.5 * 0.5 * (math.pi / 100) ** 2
    )
    assert density.lanczos_resolution(-1.0, 1.0, 100) == pytest.approx(
        math.pi / 100 + 0.5 * (math.pi / 100) ** 2
    )
    eigs = np.concatenate([np.geomspace(1e-6, 1.0, 3000), np.zeros(1000)])
    sd = hs.log_spectrum(_Diagonal(eigs), 64, eps=1e-7)
    floor = math.log10(sd.resolution + 1e-7)
    assert sd.resolved_from == pytest.approx(floor)
    assert 1e-5 < sd.resolution < 1e-2
    assert not sd.resolved()[0] and sd.resolved()[-1]
    linear = hs.lanczos_approx_spec(_Diagonal(eigs), 64)
    assert linear.resolved().all()
    with pytest.raises(ValueError, match="smoothing must be one of"):
        hs.log_spectrum(_Diagonal(eigs), 16, smoothing="box")


def test_tail_fit_tells_a_power_law_from_an_exponential_tail():
    x = np.linspace(-10, 10, 4001)
    shapes = {
        "power": (1 + (x / 0.05) ** 2) ** -1.35,  # density tails |x|^-2.7
        "exponential": np.exp(-np.abs(x) / 0.5),
        "gaussian": np.exp(-0.5 * (x / 2.0) ** 2),
    }
    fits = {}
    for name, y in shapes.items():
        y = y / np.trapezoid(y, x)
        fits[name] = powerlaw.fit_tail(x, y, lo=0.5, hi=3.0)
    assert fits["power"].exponent == pytest.approx(-2.7, abs=0.1)
    assert fits["power"].r2 > 0.99 and fits["power"].power_law_wins
    assert not fits["exponential"].power_law_wins
    assert not fits["gaussian"].power_law_wins
    negative = powerlaw.fit_tail(x, shapes["power"], lo=0.5, hi=3.0, side="negative")
    assert negative.exponent == pytest.approx(fits["power"].exponent, abs=1e-9)
    with pytest.raises(ValueError, match="fewer than 3"):
        powerlaw.fit_tail(x, shapes["power"], lo=20, hi=30)


def test_adaptive_log_spectrum_of_a_symmetric_spectrum_is_smooth():
    # +-lambda of an almost symmetric operator (H): on the |lambda| axis the nodes of
    # the two signs interleave; read apart, their widths draw no comb.
    rng = np.random.default_rng(3)
    mags = (rng.pareto(1.7, 10000) + 1) * 1e-3
    eigs = np.concatenate([mags, -mags * rng.uniform(0.9, 1.1, mags.size)])
    w1_p, peaks_p, tv_p, _ = _log_fit(eigs, "paper", num_iters=256)
    w1_a, peaks_a, tv_a, _ = _log_fit(eigs, "adaptive", num_iters=256)
    assert peaks_a < peaks_p
    assert tv_a < 0.25 * tv_p and w1_a <= 1.1 * w1_p
