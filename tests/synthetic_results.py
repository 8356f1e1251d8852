"""Small synthetic results with the exact NetCDF schemas of docs/CONTRACTS.md.

The densities come from known shapes (Gaussians, a symmetric power law for H,
mixtures in log10 space for the log spectra), so tests of anything that reads
``results/*.nc`` can run in milliseconds without training a network. Every builder
takes the coordinates as arguments; :func:`write_synthetic_results` writes all four
files to a folder.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import xarray as xr

OPERATORS = ("hess", "G", "H", "A1", "A2", "B1", "B2", "G-A1", "G-A2", "G-B1", "G-B2")
VARIANTS = ("plain", "deflated", "log")
SPLITS = ("train", "test")
LOG_EPS = 1e-5
NUM_PARAMS = 10_000

_SPECTRA_DIMS = (
    "dataset",
    "arch",
    "sample_size",
    "epoch",
    "split",
    "operator",
    "variant",
)


def _normalise(grid: np.ndarray, shape: np.ndarray, mass: float = 1.0) -> np.ndarray:
    return shape / np.trapezoid(shape, grid) * mass


def _gauss(x: np.ndarray, mu: float, sd: float) -> np.ndarray:
    return np.exp(-0.5 * ((x - mu) / sd) ** 2)


def _power_law_h(x: np.ndarray, scale: float) -> np.ndarray:
    """Symmetric density with tails |x|^-2.7 (the exponent of the paper's Figure 4a)."""
    return (1.0 + (np.abs(x) / scale) ** 2) ** -1.35


def _log_grid(hi: float, num_points: int) -> np.ndarray:
    return np.linspace(np.log10(LOG_EPS) - 0.3, np.log10(hi) + 0.3, num_points)


def _outlier_values(scale: float, num_outliers: int) -> np.ndarray:
    return scale * np.linspace(1.0, 0.5, num_outliers)


def _g_scale(sample_size: int, epoch: int) -> float:
    """Magnitude of G's outliers: rises, then falls with epoch (earlier for large n)."""
    peak = 4.0 + 20.0 / np.log10(10 * sample_size)
    return 5.0 * np.exp(-0.5 * np.log(epoch / peak) ** 2) + 0.2


def _linear_spectrum(
    operator: str, variant: str, scale: float, num_points: int, num_outliers: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(grid, density, outliers) of hess, G or H in eigenvalue units.

    H: symmetric power law, no outliers. Hess, G: a spike at zero, a bulk up to
    0.15 * scale and ``num_outliers`` outliers; "plain" shows them as bumps (exaggerated
    mass 1/50 each, to be visible), "deflated" returns them apart and the bulk alone.
    """
    if operator == "H":
        grid = np.linspace(-0.4, 0.4, num_points) * scale
        return grid, _normalise(grid, _power_law_h(grid, 0.005 * scale)), np.array([])
    outliers = _outlier_values(scale, num_outliers)
    bulk_hi = 0.15 * scale
    lo = -0.1 * bulk_hi if operator == "hess" else -0.02 * bulk_hi
    hi = bulk_hi * 1.2 if variant == "deflated" else outliers.max() * 1.1
    grid = np.linspace(lo, hi, num_points)
    width = (hi - lo) / num_points
    bulk = 3.0 * _gauss(grid, 0.0, 2 * width) + _gauss(
        grid, 0.4 * bulk_hi, 0.2 * bulk_hi
    )
    if variant == "deflated":
        return grid, _normalise(grid, bulk, 1 - num_outliers / NUM_PARAMS), outliers
    spikes = sum(_gauss(grid, o, 1.5 * width) for o in outliers)
    spike_mass = num_outliers / 50
    density = _normalise(grid, bulk, 1 - spike_mass) + _normalise(
        grid, spikes, spike_mass
    )
    return grid, density, np.array([])


def _log_spectrum(operator: str, scale: float, num_points: int) -> np.ndarray:
    """(grid, density) of log10(|lambda| + eps): a zero spike plus one or two bulks."""
    grid = _log_grid(max(scale, 3.0), num_points)
    zero = _gauss(grid, np.log10(LOG_EPS), 0.1)
    if operator == "H":
        lam = 10.0**grid
        shape = 2 * _power_law_h(lam, 0.005 * scale) * lam * np.log(10.0) + 0.5 * zero
    else:
        # G's two bulks (B1 left, B2 right, as in the paper's Figure 1) and outliers;
        # removing a component drops it.
        left = 0.0 if operator == "G-B1" else _gauss(grid, -3.0, 0.4)
        right = 0.0 if operator == "G-B2" else 0.3 * _gauss(grid, -1.5, 0.3)
        top = 0.0 if operator == "G-A1" else 0.05 * _gauss(grid, np.log10(scale), 0.1)
        shape = zero + left + right + top
    return grid, _normalise(grid, shape)


def synthetic_spectra(
    datasets: tuple[str, ...] = ("mnist", "cifar10"),
    archs: tuple[str, ...] = ("vgg11",),
    sample_sizes: tuple[int, ...] = (10, 100),
    epochs: tuple[int, ...] = (5, 20),
    num_points: int = 64,
    num_outliers: int = 3,
) -> xr.Dataset:
    """``results/spectra.nc`` with Hess/G/H (all splits, variants) and G's pieces (log).

    Hess and G have no "log" variant except G; H has no "deflated" variant; A1 ... G-B2
    exist for train "log" only. Everything not computed is NaN, as in the real file.
    """
    shape = (
        len(datasets),
        len(archs),
        len(sample_sizes),
        len(epochs),
        len(SPLITS),
        len(OPERATORS),
        len(VARIANTS),
    )
    grid = np.full((*shape, num_points), np.nan)
    density = np.full((*shape, num_points), np.nan)
    outliers = np.full((*shape, num_outliers), np.nan)
    for idx in np.ndindex(*shape):
        _, _, i_n, i_e, i_s, i_o, i_v = idx
        split, op, variant = SPLITS[i_s], OPERATORS[i_o], VARIANTS[i_v]
        # G (and Hess) change with n and epoch; H does not, so Figure 6 shows G's rise
        # and fall relative to H's bulk edge.
        g_scale = 1.0 if op == "H" else _g_scale(sample_sizes[i_n], epochs[i_e])
        scale = g_scale * (1.0 if split == "train" else 0.3)
        if op in ("hess", "G") and variant in ("plain", "deflated"):
            scale = scale * (1.2 if op == "hess" else 1.0)
            g, d, out = _linear_spectrum(op, variant, scale, num_points, num_outliers)
            outliers[idx][: out.size] = out if variant == "deflated" else np.nan
        elif op == "H" and variant == "plain":
            g, d, _ = _linear_spectrum(op, variant, scale, num_points, num_outliers)
        elif variant == "log" and (op in ("G", "H") or split == "train"):
            g, d = _log_spectrum(op, scale, num_points)
        else:
            continue
        grid[idx], density[idx] = g, d
    bounds_lo, bounds_hi = grid[..., 0], grid[..., -1]  # grids ascend; NaN if absent
    coords = {
        "dataset": list(datasets),
        "arch": list(archs),
        "sample_size": list(sample_sizes),
        "epoch": list(epochs),
        "split": list(SPLITS),
        "operator": list(OPERATORS),
        "variant": list(VARIANTS),
        "point": np.arange(num_points),
        "outlier": np.arange(num_outliers),
    }
    return xr.Dataset(
        {
            "grid": (_SPECTRA_DIMS + ("point",), grid),
            "density": (_SPECTRA_DIMS + ("point",), density),
            "outliers": (_SPECTRA_DIMS + ("outlier",), outliers),
            "bound_lo": (_SPECTRA_DIMS, bounds_lo),
            "bound_hi": (_SPECTRA_DIMS, bounds_hi),
            "num_products": (
                _SPECTRA_DIMS,
                np.where(np.isnan(bounds_lo), np.nan, 160.0),
            ),
            "num_params": (("dataset", "arch"), np.full(shape[:2], NUM_PARAMS)),
            "num_classes": (("dataset",), np.full(shape[0], num_outliers)),
            "learning_rate": (
                ("dataset", "arch", "sample_size"),
                np.full(shape[:3], 0.05),
            ),
        },
        coords=coords,
        attrs={
            "num_iters": 128,
            "num_points": num_points,
            "kappa": 3.0,
            "num_vectors": 1,
            "seed": 0,
            "log_num_iters": 256,
            "log_eps": LOG_EPS,
            "margin": 0.05,
            "subspace_iters": 64,
        },
    )


def synthetic_decomposition(
    datasets: tuple[str, ...] = ("mnist", "cifar10"),
    archs: tuple[str, ...] = ("vgg11",),
    sample_sizes: tuple[int, ...] = (10, 100),
    epochs: tuple[int, ...] = (5, 20),
    num_classes: int = 3,
) -> xr.Dataset:
    """``results/decomposition.nc``: A1 + A2 + B1 with A1 (C largest), B1 (C^2 - 2C)
    and C structural zeros; A1's and A2's own eigenvalues; converged top-C of G."""
    c = num_classes
    lead = (len(datasets), len(archs), len(sample_sizes), len(epochs))
    eigs = np.full((*lead, c * c), np.nan)
    source = np.full((*lead, c * c), -1, dtype=np.int8)
    traces = np.full((*lead, c), np.nan)
    top = np.full((*lead, c), np.nan)
    own = {name: np.full((*lead, c), np.nan) for name in ("A1", "A2")}
    for idx in np.ndindex(*lead):
        scale = _g_scale(sample_sizes[idx[2]], epochs[idx[3]])
        a1 = _outlier_values(scale, c)
        b1 = np.geomspace(0.1, 0.01, c * c - 2 * c) * scale
        zeros = np.geomspace(1e-12, 1e-14, c)  # structural zeros of A1 + A2 + B1
        eigs[idx] = np.concatenate([a1, b1, zeros])
        own["A1"][idx], own["A2"][idx] = a1 * 0.99, a1 * 1e-3
        source[idx] = np.repeat(
            np.array([0, 1, 2], dtype=np.int8), [c, c * c - 2 * c, c]
        )
        traces[idx] = 1e-3 * np.linspace(0.5, 2.0, c) / np.sqrt(epochs[idx[3]])
        top[idx] = a1 * 1.02
    dims = ("dataset", "arch", "sample_size", "epoch")
    source_attrs = {"flag_values": np.array([0, 1, 2], dtype=np.int8)}
    source_attrs["flag_meanings"] = "A1 B1 A2"
    return xr.Dataset(
        {
            "a1a2b1_eigenvalues": (dims + ("eig",), eigs),
            "a1a2b1_source": (dims + ("eig",), source, source_attrs),
            "b2_trace_per_class": (dims + ("class",), traces),
            "b2_trace_stderr": (dims + ("class",), np.zeros_like(traces)),
            "g_top_eigenvalues": (dims + ("rank",), top),
            "g_top_residuals": (dims + ("rank",), 1e-6 * np.ones_like(top)),
            "g_top_converged": (dims + ("rank",), np.ones(top.shape, np.int8)),
            "a1_eigenvalues": (dims + ("rank",), own["A1"]),
            "a2_eigenvalues": (dims + ("rank",), own["A2"]),
        },
        coords={
            "dataset": list(datasets),
            "arch": list(archs),
            "sample_size": list(sample_sizes),
            "epoch": list(epochs),
            "eig": np.arange(c * c),
            "class": np.arange(c),
            "rank": np.arange(c),
        },
    )


def synthetic_training(
    datasets: tuple[str, ...] = ("mnist", "cifar10"),
    archs: tuple[str, ...] = ("vgg11",),
    sample_sizes: tuple[int, ...] = (10, 100),
    lrs: tuple[float, ...] = (0.01, 0.05),
    num_epochs: int = 20,
    checkpoint_epochs: tuple[int, ...] = (5, 20),
) -> xr.Dataset:
    """``results/training.nc``: errors decaying with epoch, lower for larger n."""
    lead = (len(datasets), len(archs), len(sample_sizes), len(lrs))
    epoch = np.arange(1, num_epochs + 1)
    train_err = np.empty((*lead, num_epochs))
    test_err = np.empty((*lead, num_epochs))
    for idx in np.ndindex(*lead):
        n, lr = sample_sizes[idx[2]], lrs[idx[3]]
        rate = 0.3 + 10 * lr
        train_err[idx] = 0.9 * np.exp(-rate * epoch)
        test_err[idx] = train_err[idx] + 0.5 / np.log10(10 * n)
    dims = ("dataset", "arch", "sample_size", "lr", "epoch")
    return xr.Dataset(
        {
            "train_loss": (dims, 2.3 * train_err),
            "test_loss": (dims, 2.3 * test_err),
            "train_error": (dims, train_err),
            "test_error": (dims, test_err),
            "diverged": (dims[:-1], np.zeros(lead, dtype=bool)),
            "selected_lr": (dims[:3], np.full(lead[:3], lrs[-1])),
        },
        coords={
            "dataset": list(datasets),
            "arch": list(archs),
            "sample_size": list(sample_sizes),
            "lr": list(lrs),
            "epoch": epoch,
        },
        attrs={"checkpoint_epochs": list(checkpoint_epochs)},
    )


def synthetic_selfcheck(num_points: int = 64, seed: int = 0) -> xr.Dataset:
    """``results/selfcheck.nc``: spiked Wishart (fig8a) and heavy-tailed one (fig8b).

    The "estimate" is a Gaussian smoothing of the exact eigenvalues, so it is close to
    the histogram, as a good Lanczos estimate would be.
    """
    rng = np.random.default_rng(seed)
    z = rng.standard_normal((200, 400))
    spiked = np.concatenate([[5.0, 4.0, 3.0], np.linalg.eigvalsh(z @ z.T / 2000)])
    pareto = rng.pareto(1.0, (100, 200)) + 1.0
    heavy = np.linalg.eigvalsh(pareto @ pareto.T / 2000)
    n_eig = max(spiked.size, heavy.size)
    exact = np.full((2, n_eig), np.nan)
    exact[0, : spiked.size], exact[1, : heavy.size] = spiked, heavy
    grids, densities = [], []
    for values in (spiked, np.log10(np.abs(heavy) + LOG_EPS)):
        grid = np.linspace(values.min(), values.max(), num_points)
        width = 2 * (grid[1] - grid[0])
        shape = _gauss(grid[:, None], values[None, :], width).sum(axis=1)
        grids.append(grid)
        densities.append(_normalise(grid, shape))
    return xr.Dataset(
        {
            "exact_eigenvalues": (("case", "eig"), exact),
            "grid": (("case", "point"), np.array(grids)),
            "density": (("case", "point"), np.array(densities)),
            "w1_relative": (("case",), np.array([0.012, 0.034])),
        },
        coords={
            "case": ["fig8a", "fig8b"],
            "eig": np.arange(n_eig),
            "point": np.arange(num_points),
        },
        attrs={"eps": LOG_EPS, "num_iters": 128, "num_vectors": 10, "kappa": 3.0},
    )


def write_synthetic_results(folder: Path, num_points: int = 64) -> dict[str, Path]:
    """Write spectra.nc, decomposition.nc, training.nc, selfcheck.nc to ``folder``."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    datasets = {
        "spectra": synthetic_spectra(num_points=num_points),
        "decomposition": synthetic_decomposition(),
        "training": synthetic_training(),
        "selfcheck": synthetic_selfcheck(num_points=num_points),
    }
    paths = {}
    for name, ds in datasets.items():
        paths[name] = folder / f"{name}.nc"
        ds.to_netcdf(paths[name])
    return paths
