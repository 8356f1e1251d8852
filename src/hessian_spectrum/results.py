"""NetCDF results: per-job datasets and their aggregation (docs/CONTRACTS.md).

The workflow writes one small NetCDF file per job (a spectral density, the Figure 7
quantities of one run and epoch, one self-check case); these are the source of
truth. :func:`combine` stacks them into the aggregated files ``results/spectra.nc``,
``results/decomposition.nc`` and ``results/selfcheck.nc``; :func:`training_dataset`
builds ``results/training.nc`` from the runs' ``history.json`` and ``selected.json``.
Every file is self-describing (``long_name`` and ``units`` on each variable, estimator
settings as attributes) and opens with ``xarray.open_dataset`` alone.

In a per-job dataset every key of the job (data set, arch, sample size, epoch, ...)
is a dimension of length one, so that combining is filling one slot of the
aggregated arrays per file; missing combinations stay NaN (``-1`` for int8 flags).

Example::

    >>> ds = spectrum_dataset(sd, dataset="mnist", arch="vgg11", sample_size=136,
    ...                       epoch=200, split="train", operator="hess",
    ...                       variant="deflated", num_classes=10, learning_rate=0.05)
    >>> write_netcdf(ds, "results/spectra/.../hess_deflated.nc")
    >>> write_netcdf(combine(paths, "spectra"), "results/spectra.nc")
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import xarray as xr

__all__ = [
    "OPERATORS",
    "VARIANTS",
    "SPLITS",
    "CASES",
    "KEYS",
    "spectrum_dataset",
    "decomposition_dataset",
    "selfcheck_dataset",
    "training_dataset",
    "read_training",
    "combine",
    "write_netcdf",
]

# Canonical order of the string coordinates (CONTRACTS.md).
OPERATORS = ("hess", "G", "H", "A1", "A2", "B1", "B2", "G-A1", "G-A2", "G-B1", "G-B2")
VARIANTS = ("plain", "deflated", "log")
SPLITS = ("train", "test")
CASES = ("fig8a", "fig8b")
ORDER = {"operator": OPERATORS, "variant": VARIANTS, "split": SPLITS, "case": CASES}

#: The key dimensions of each aggregated file, in order.
KEYS = {
    "spectra": (
        "dataset",
        "arch",
        "sample_size",
        "epoch",
        "split",
        "operator",
        "variant",
    ),
    "decomposition": ("dataset", "arch", "sample_size", "epoch"),
    "selfcheck": ("case",),
}

# Estimator settings kept as attributes of results/spectra.nc.
SPECTRA_ATTRS = (
    "num_iters",
    "num_points",
    "kappa",
    "num_vectors",
    "seed",
    "log_num_iters",
    "log_eps",
    "margin",
    "subspace_iters",
    "subspace_tol",
    "smoothing",
    "log_smoothing",
)

# Eigenvalues of the Hessian of the mean cross-entropy (a loss in nats) with respect
# to dimensionless weights: dimensionless numbers, "1" in UDUNITS (which has no
# "nat"); EIGEN_COMMENT, a global attribute, names the loss unit.
_EIGEN_UNITS = "1"
EIGEN_COMMENT = "eigenvalues of second derivatives of the mean cross-entropy (nats)"


def _get(pair, i: int) -> float:
    return np.nan if pair is None else float(pair[i])


def _keyed(keys: Mapping[str, Any]) -> dict[str, list]:
    return {name: [value] for name, value in keys.items()}


def spectrum_dataset(
    sd,
    *,
    dataset: str,
    arch: str,
    sample_size: int,
    epoch: int,
    split: str,
    operator: str,
    variant: str,
    num_classes: int,
    learning_rate: float,
) -> xr.Dataset:
    """One spectral density (:class:`hessian_spectrum.density.SpectralDensity`) as a
    per-job dataset with the dimensions of ``results/spectra.nc``."""
    if operator not in OPERATORS or variant not in VARIANTS or split not in SPLITS:
        raise ValueError(f"unknown operator/variant/split {operator}/{variant}/{split}")
    keys = dict(
        dataset=dataset,
        arch=arch,
        sample_size=int(sample_size),
        epoch=int(epoch),
        split=split,
        operator=operator,
        variant=variant,
    )
    lead = KEYS["spectra"]
    shape = (1,) * len(lead)
    outliers = np.asarray(sd.outliers, dtype=np.float64).reshape(-1)
    rank = outliers.size
    residuals = np.full(rank, np.nan)
    converged = np.full(rank, -1, dtype=np.int8)
    if rank and sd.outlier_residuals is not None:
        residuals = np.asarray(sd.outlier_residuals, dtype=np.float64).reshape(-1)
    if rank and sd.outliers_converged is not None:
        converged = np.asarray(sd.outliers_converged).reshape(-1).astype(np.int8)
    if rank == 0:  # keep a dimension of length >= 1 (NetCDF-friendly)
        outliers, residuals = np.full(1, np.nan), np.full(1, np.nan)
        converged = np.full(1, -1, dtype=np.int8)
    log = variant == "log"
    resolution = np.nan if sd.resolution is None else float(sd.resolution)
    resolved_from = sd.resolved_from if log else np.nan
    ds = xr.Dataset(
        {
            "grid": (
                lead + ("point",),
                np.asarray(sd.grid, dtype=np.float64).reshape(shape + (-1,)),
                {
                    "long_name": "spectral grid: eigenvalue, or log10(|eigenvalue| "
                    "+ eps) for variant 'log'",
                    "units": "1",
                },
            ),
            "density": (
                lead + ("point",),
                np.asarray(sd.density, dtype=np.float64).reshape(shape + (-1,)),
                {
                    "long_name": "spectral density w.r.t. the grid variable "
                    "(deflated: the bulk, integrating to 1 - R/p)",
                    "units": "1",
                    "comment": "per unit eigenvalue; variant log: per decade",
                },
            ),
            "outliers": (
                lead + ("outlier",),
                outliers.reshape(shape + (-1,)),
                {
                    "long_name": "deflated top eigenvalues (point masses of weight "
                    "1/p), NaN-padded",
                    "units": _EIGEN_UNITS,
                },
            ),
            "outlier_residuals": (
                lead + ("outlier",),
                residuals.reshape(shape + (-1,)),
                {
                    "long_name": "residual norms ||A x - lambda x|| of the deflated "
                    "eigenpairs (subspace iteration), NaN-padded",
                    "units": _EIGEN_UNITS,
                },
            ),
            "outlier_converged": (
                lead + ("outlier",),
                converged.reshape(shape + (-1,)),
                {
                    "long_name": "deflated eigenpair met the residual tolerance "
                    "||A x - lambda x|| <= subspace_tol * |lambda_1|",
                    "flag_values": np.array([0, 1], dtype=np.int8),
                    "flag_meanings": "not_converged converged",
                    "comment": "-1: padding (no outlier)",
                },
            ),
            "resolution": (
                lead,
                np.full(shape, resolution, dtype=np.float64),
                {
                    "long_name": "node spacing at lambda = 0 of the M-step Gauss "
                    "rule: eigenvalues below it are not resolved",
                    "units": _EIGEN_UNITS,
                },
            ),
            "resolved_from": (
                lead,
                np.full(shape, resolved_from, dtype=np.float64),
                {
                    "long_name": "log spectra: grid value log10(resolution + eps) "
                    "below which the density is unresolved (NaN: linear variants)",
                    "units": "1",
                },
            ),
            "lambda_min": (
                lead,
                np.full(shape, _get(sd.extremes, 0), dtype=np.float64),
                {
                    "long_name": "smallest eigenvalue of the operator Lanczos ran on "
                    "(deflated: of the bulk): Ritz value minus its residual",
                    "units": _EIGEN_UNITS,
                },
            ),
            "lambda_max": (
                lead,
                np.full(shape, _get(sd.extremes, 1), dtype=np.float64),
                {
                    "long_name": "largest eigenvalue of the operator Lanczos ran on "
                    "(deflated: of the bulk): Ritz value plus its residual",
                    "units": _EIGEN_UNITS,
                },
            ),
            "second_moment": (
                lead,
                np.full(
                    shape,
                    np.nan if sd.second_moment is None else sd.second_moment,
                    dtype=np.float64,
                ),
                {
                    "long_name": "(1/p) sum of squared eigenvalues of that operator "
                    "(Gauss quadrature; deflated: the bulk's)",
                    "units": "1",
                },
            ),
            "bound_lo": (
                lead,
                np.full(shape, sd.bounds[0], dtype=np.float64),
                {
                    "long_name": "lower spectral bound (Algorithm 4)",
                    "units": _EIGEN_UNITS,
                },
            ),
            "bound_hi": (
                lead,
                np.full(shape, sd.bounds[1], dtype=np.float64),
                {
                    "long_name": "upper spectral bound (Algorithm 4)",
                    "units": _EIGEN_UNITS,
                },
            ),
            "num_products": (
                lead,
                np.full(shape, sd.num_products, dtype=np.float64),
                {"long_name": "operator-vector products used", "units": "1"},
            ),
            "num_params": (
                ("dataset", "arch"),
                np.full((1, 1), sd.p, dtype=np.float64),
                {"long_name": "number of parameters p", "units": "1"},
            ),
            "num_classes": (
                ("dataset",),
                np.full(1, num_classes, dtype=np.float64),
                {"long_name": "number of classes C", "units": "1"},
            ),
            "learning_rate": (
                ("dataset", "arch", "sample_size"),
                np.full((1, 1, 1), learning_rate, dtype=np.float64),
                {"long_name": "selected initial learning rate", "units": "1"},
            ),
        },
        coords=_keyed(keys),
    )
    settings = dict(sd.settings)
    ds.attrs.update(
        {
            k: v
            for k, v in settings.items()
            if isinstance(v, (int, float, str)) and not isinstance(v, bool)
        }
    )
    if log:
        ds.attrs["eps"] = float(sd.eps)
    ds.attrs["kind"] = "log" if log else "linear"
    ds.attrs["p"] = int(sd.p)
    ds.attrs["comment"] = EIGEN_COMMENT
    return ds


def decomposition_dataset(
    *,
    dataset: str,
    arch: str,
    sample_size: int,
    epoch: int,
    eigenvalues: np.ndarray,
    source: np.ndarray,
    b2_trace: np.ndarray,
    b2_stderr: np.ndarray,
    g_top_values: np.ndarray,
    g_top_residuals: np.ndarray,
    settings: Mapping[str, Any],
    g_top_converged: np.ndarray | None = None,
    a1_eigenvalues: np.ndarray | None = None,
    a2_eigenvalues: np.ndarray | None = None,
) -> xr.Dataset:
    """The Figure 7 quantities of one run and epoch (``results/decomposition.nc``).

    ``g_top_converged``: per top eigenpair of G, whether subspace iteration met its
    residual tolerance (unknown: -1); ``a1_eigenvalues`` / ``a2_eigenvalues``: the
    ``C`` eigenvalues of A1 and of A2 alone (NaN when not given)."""
    rank = np.size(g_top_values)
    if g_top_converged is None:
        g_top_converged = np.full(rank, -1)
    if a1_eigenvalues is None:
        a1_eigenvalues = np.full(rank, np.nan)
    if a2_eigenvalues is None:
        a2_eigenvalues = np.full(rank, np.nan)
    keys = dict(
        dataset=dataset, arch=arch, sample_size=int(sample_size), epoch=int(epoch)
    )
    lead = KEYS["decomposition"]
    one = (1,) * len(lead)

    def arr(x, dtype=np.float64):
        return np.asarray(x, dtype=dtype).reshape(one + (-1,))

    ds = xr.Dataset(
        {
            "a1a2b1_eigenvalues": (
                lead + ("eig",),
                arr(eigenvalues),
                {
                    "long_name": "eigenvalues of A1 + A2 + B1, descending",
                    "units": _EIGEN_UNITS,
                },
            ),
            "a1a2b1_source": (
                lead + ("eig",),
                arr(source, np.int8),
                {
                    "long_name": "member of A1 + A2 + B1 an eigenvalue is due to",
                    "flag_values": np.array([0, 1, 2], dtype=np.int8),
                    "flag_meanings": "A1 B1 A2",
                    "comment": "-1: padding",
                },
            ),
            "b2_trace_per_class": (
                lead + ("class",),
                arr(b2_trace),
                {"long_name": "Tr(B_{2,c})/n per class c", "units": _EIGEN_UNITS},
            ),
            "b2_trace_stderr": (
                lead + ("class",),
                arr(b2_stderr),
                {"long_name": "standard error of Tr(B_{2,c})/n", "units": _EIGEN_UNITS},
            ),
            "g_top_eigenvalues": (
                lead + ("rank",),
                arr(g_top_values),
                {"long_name": "top-C eigenvalues of train G", "units": _EIGEN_UNITS},
            ),
            "g_top_residuals": (
                lead + ("rank",),
                arr(g_top_residuals),
                {
                    "long_name": "residual norms ||G x - lambda x||",
                    "units": _EIGEN_UNITS,
                },
            ),
            "a1_eigenvalues": (
                lead + ("rank",),
                arr(a1_eigenvalues),
                {
                    "long_name": "eigenvalues of A1 alone, descending",
                    "units": _EIGEN_UNITS,
                },
            ),
            "a2_eigenvalues": (
                lead + ("rank",),
                arr(a2_eigenvalues),
                {
                    "long_name": "eigenvalues of A2 alone, descending",
                    "units": _EIGEN_UNITS,
                },
            ),
            "g_top_converged": (
                lead + ("rank",),
                arr(np.asarray(g_top_converged).astype(np.int8), np.int8),
                {
                    "long_name": "top eigenpair of G met the residual tolerance",
                    "flag_values": np.array([0, 1], dtype=np.int8),
                    "flag_meanings": "not_converged converged",
                    "comment": "-1: unknown or padding",
                },
            ),
        },
        coords=_keyed(keys),
    )
    ds.attrs.update(dict(settings))
    ds.attrs["comment"] = EIGEN_COMMENT
    return ds


def selfcheck_dataset(
    case: str,
    *,
    exact_eigenvalues: np.ndarray,
    sd,
    w1_relative: float,
    settings: Mapping[str, Any],
) -> xr.Dataset:
    """One Figure 8 case: exact eigenvalues, the estimated density, relative W1."""
    if case not in CASES:
        raise ValueError(f"case must be one of {CASES}, got {case!r}")
    ds = xr.Dataset(
        {
            "exact_eigenvalues": (
                ("case", "eig"),
                np.asarray(exact_eigenvalues, dtype=np.float64).reshape(1, -1),
                {"long_name": "exact eigenvalues (eigh), raw", "units": "1"},
            ),
            "grid": (
                ("case", "point"),
                np.asarray(sd.grid, dtype=np.float64).reshape(1, -1),
                {
                    "long_name": "grid: eigenvalue (fig8a), log10(|eigenvalue| + eps) "
                    "(fig8b)",
                    "units": "1",
                },
            ),
            "density": (
                ("case", "point"),
                np.asarray(sd.density, dtype=np.float64).reshape(1, -1),
                {"long_name": "estimated spectral density", "units": "1"},
            ),
            "resolved_from": (
                ("case",),
                np.array(
                    [sd.resolved_from if sd.kind == "log" else np.nan],
                    dtype=np.float64,
                ),
                {
                    "long_name": "log spectra: grid value below which the M steps "
                    "do not resolve the spectrum (NaN: linear)",
                    "units": "1",
                },
            ),
            "w1_relative": (
                ("case",),
                np.array([w1_relative], dtype=np.float64),
                {
                    "long_name": "Wasserstein-1 distance to the exact spectrum over "
                    "the spread of the exact spectrum",
                    "units": "1",
                },
            ),
        },
        coords={"case": [case]},
    )
    ds.attrs.update(dict(settings))
    return ds


# ------------------------------------------------------------------------------------
# Aggregation
# ------------------------------------------------------------------------------------
def _ordered(name: str, values: Iterable) -> list:
    values = set(values)
    if name in ORDER:
        known = [v for v in ORDER[name] if v in values]
        return known + sorted(values - set(known))
    return sorted(values)


def _fill_value(dtype: np.dtype):
    if dtype == np.int8:
        return np.int8(-1)
    if dtype == np.bool_:
        return False
    return np.nan


def _load(path: str | os.PathLike) -> xr.Dataset:
    """``xr.load_dataset`` with an error that names the file."""
    try:
        return xr.load_dataset(path)
    except FileNotFoundError:
        raise
    except Exception as err:  # netCDF4/HDF5 raise OSError, RuntimeError, ValueError
        raise ValueError(
            f"{path} cannot be read ({type(err).__name__}: {err}); it is damaged: "
            f"delete it (or move it aside) and rerun, the workflow regenerates it"
        ) from err


def combine(paths: Sequence[str | os.PathLike], kind: str) -> xr.Dataset:
    """Stack per-job files of ``kind`` ("spectra", "decomposition", "selfcheck") into
    one dataset over the union of their keys (NaN where a combination is missing;
    inner dimensions such as ``outlier`` padded with NaN)."""
    keys = KEYS[kind]
    parts = [_load(p) for p in paths]
    if not parts:
        raise ValueError(f"no per-job files to combine into {kind}")
    coords = {
        k: _ordered(k, {v.item() for ds in parts for v in ds[k].values}) for k in keys
    }
    index = {k: {v: i for i, v in enumerate(values)} for k, values in coords.items()}
    inner: dict[str, int] = {}
    variables: dict[str, tuple[tuple[str, ...], np.dtype, dict]] = {}
    for ds in parts:
        for dim, size in ds.sizes.items():
            if dim not in keys:
                inner[dim] = max(inner.get(dim, 0), size)
        for name, var in ds.data_vars.items():
            variables.setdefault(name, (var.dims, var.dtype, dict(var.attrs)))
    arrays = {}
    for name, (dims, dtype, _) in variables.items():
        shape = tuple(len(coords[d]) if d in keys else inner[d] for d in dims)
        arrays[name] = np.full(shape, _fill_value(dtype), dtype=dtype)
    for ds in parts:
        for name, var in ds.data_vars.items():
            dims = variables[name][0]
            where = tuple(
                index[d][ds[d].values[0].item()]
                if d in keys
                else slice(0, var.sizes[d])
                for d in dims
            )
            arrays[name][where] = _squeeze_keys(var, keys)
    out = xr.Dataset(
        {
            name: (dims, arrays[name], attrs)
            for name, (dims, _, attrs) in variables.items()
        },
        coords={k: np.asarray(v) for k, v in coords.items()},
    )
    for name in ("num_params", "num_classes"):  # counts: int where none is missing
        if name in out and np.isfinite(out[name].values).all():
            out[name] = out[name].astype(np.int64)
    _describe_coords(out)
    out.attrs.update(_combined_attrs(parts, kind, paths))
    return out


def _squeeze_keys(var: xr.DataArray, keys: Sequence[str]) -> np.ndarray:
    """The values of a per-job variable without its length-one key dimensions."""
    return var.isel({d: 0 for d in var.dims if d in keys}).values


def _combined_attrs(
    parts: Sequence[xr.Dataset], kind: str, paths: Sequence[Any] = ()
) -> dict:
    """The estimator settings of the combined file, one value each: per-job files
    computed with different settings are refused (naming both files), since one
    attribute could not describe them."""
    if kind != "spectra":
        return dict(parts[0].attrs)
    attrs: dict[str, Any] = {}
    first: dict[str, Any] = {}
    paths = list(paths) or [f"part {i}" for i in range(len(parts))]

    def agree(name, value, where):
        if value is None:
            return
        if isinstance(value, np.generic):
            value = value.item()
        if name not in attrs:
            attrs[name], first[name] = value, where
        elif not _same_setting(attrs[name], value):
            raise ValueError(
                f"{where} was computed with {name} = {value!r}, but {first[name]} "
                f"with {attrs[name]!r}: the per-job spectra disagree on their "
                "settings; recompute the stale ones with one configuration (delete "
                "them and rerun)"
            )

    for ds, where in zip(parts, paths, strict=True):
        a = ds.attrs
        if a.get("kind") == "log":
            agree("log_num_iters", a.get("num_iters"), where)
            agree("log_eps", a.get("eps"), where)
            agree("log_smoothing", a.get("smoothing"), where)
        else:
            agree("num_iters", a.get("num_iters"), where)
            agree("smoothing", a.get("smoothing"), where)
        if a.get("subspace_iters") and a.get("deflate"):
            agree("subspace_iters", a["subspace_iters"], where)
            agree("subspace_tol", a.get("subspace_tol"), where)
        for name in ("num_points", "kappa", "num_vectors", "seed", "margin"):
            agree(name, a.get(name), where)
    attrs["comment"] = EIGEN_COMMENT
    attrs["estimators"] = (
        "LanczosApproxSpec (Algorithm 3) normalised by Algorithm 4 with the bounds "
        "read off the same M-step Krylov run; SubspaceIteration (Algorithm 5, "
        "stopped at the residual tolerance subspace_tol) for the deflated "
        "variants; log spectra smoothed with log_smoothing; Papyan (2019)"
    )
    return attrs


_COORD_ATTRS = {
    "dataset": {"long_name": "data set"},
    "arch": {"long_name": "network architecture"},
    "sample_size": {"long_name": "training examples per class", "units": "1"},
    "epoch": {"long_name": "training epoch of the checkpoint", "units": "1"},
    "split": {"long_name": "data the operator is computed on"},
    "operator": {
        "long_name": "operator: hess, G, H = hess - G, members of G, G - member"
    },
    "variant": {"long_name": "plain, deflated (rank C), log (log10(|lambda| + eps))"},
    "case": {"long_name": "synthetic self-check case (paper Figure 8)"},
    "lr": {"long_name": "initial learning rate", "units": "1"},
}


def _title_of(ds: xr.Dataset) -> str:
    if "density" in ds:
        return TITLES["spectra" if ds.sizes.get("operator", 1) > 1 else "spectrum"]
    if "train_loss" in ds:
        return TITLES["training"]
    if "case" in ds.dims:
        return TITLES["selfcheck"]
    return TITLES["decomposition"]


def _same_setting(a: Any, b: Any) -> bool:
    try:
        return bool(np.array_equal(np.asarray(a), np.asarray(b)))
    except Exception:  # not comparable as arrays
        return a == b


def _describe_coords(ds: xr.Dataset) -> None:
    for name, attrs in _COORD_ATTRS.items():
        if name in ds.coords:
            ds[name].attrs.update(attrs)


def training_dataset(
    histories: Mapping[str, Mapping], selections: Sequence[Mapping]
) -> xr.Dataset:
    """``results/training.nc`` from ``{run folder: history.json dict}`` and the
    ``selected.json`` dicts (CONTRACTS.md): learning curves per (dataset, arch,
    sample_size, lr, epoch), ``diverged`` and ``selected_lr``."""
    runs = []
    for run, history in histories.items():
        cfg = history["config"]
        runs.append(
            (
                cfg["dataset"],
                cfg["arch"],
                int(cfg["n_per_class"]),
                float(cfg["lr"]),
                history,
                run,
            )
        )
    if not runs:
        raise ValueError("no training histories to aggregate")
    coords = {
        "dataset": sorted({r[0] for r in runs}),
        "arch": sorted({r[1] for r in runs}),
        "sample_size": sorted({r[2] for r in runs}),
        "lr": sorted({r[3] for r in runs}),
    }
    last = (
        max(int(rec["epoch"]) for r in runs for rec in r[4]["records"])
        if any(r[4]["records"] for r in runs)
        else 1
    )
    coords["epoch"] = list(range(1, last + 1))
    idx = {k: {v: i for i, v in enumerate(vals)} for k, vals in coords.items()}
    shape = tuple(len(v) for v in coords.values())
    names = ("train_loss", "test_loss", "train_error", "test_error")
    curves = {name: np.full(shape, np.nan) for name in names}
    diverged = np.zeros(shape[:4], dtype=bool)
    by_run = {}
    for dataset, arch, n, lr, history, run in runs:
        at = (
            idx["dataset"][dataset],
            idx["arch"][arch],
            idx["sample_size"][n],
            idx["lr"][lr],
        )
        by_run[str(Path(run))] = at
        diverged[at] = bool(history["diverged"])
        for rec in history["records"]:
            e = idx["epoch"][int(rec["epoch"])]
            for name in names:
                value = rec.get(name)
                curves[name][at + (e,)] = np.nan if value is None else float(value)
    selected = np.full(shape[:3], np.nan)
    for selection in selections:
        winner = selection["winner"]
        at = by_run.get(str(Path(winner["run"])))
        if at is not None:
            selected[at[:3]] = float(winner["lr"])
    units = {"loss": "1", "error": "1"}  # loss in nats (UDUNITS: dimensionless)
    data = {
        name: (
            tuple(coords),
            curves[name],
            {
                "long_name": name.replace("_", " ") + " at the end of the epoch",
                "units": units[name.split("_")[1]],
            },
        )
        for name in names
    }
    data["diverged"] = (
        ("dataset", "arch", "sample_size", "lr"),
        diverged,
        {"long_name": "run stopped on a non-finite loss"},
    )
    data["selected_lr"] = (
        ("dataset", "arch", "sample_size"),
        selected,
        {"long_name": "learning rate with the best final test error", "units": "1"},
    )
    run_dims = ("dataset", "arch", "sample_size", "lr")
    for name, (long_name, units) in TRAINING_SETTINGS.items():
        values = np.full(shape[:4], np.nan)
        for *_, history, run in runs:
            value = history["config"].get(name)
            values[by_run[str(Path(run))]] = np.nan if value is None else float(value)
        data[name] = (run_dims, values, {"long_name": long_name, "units": units})
    width = max(len(r[4]["config"].get("milestones", [])) for r in runs)
    milestones = np.full(shape[:4] + (max(width, 1),), np.nan)
    for *_, history, run in runs:
        at = by_run[str(Path(run))]
        ms = history["config"].get("milestones", [])
        milestones[at + (slice(0, len(ms)),)] = ms
    data["milestones"] = (
        run_dims + ("milestone",),
        milestones,
        {
            "long_name": "epochs after which the learning rate is multiplied by 0.1 "
            "(NaN-padded)",
            "units": "1",
        },
    )
    ds = xr.Dataset(data, coords=coords)
    _describe_coords(ds)
    # the settings every run shares, also as global attributes
    for name in (*TRAINING_SETTINGS, "milestones"):
        seen = {json.dumps(r[4]["config"].get(name)) for r in runs}
        if len(seen) == 1 and (value := json.loads(seen.pop())) is not None:
            ds.attrs[name] = np.asarray(value) if isinstance(value, list) else value
    ds.attrs["optimizer"] = "SGD with momentum, step decay x0.1 at the milestones"
    return ds


#: Per-run training settings of ``training.nc`` (history.json ``config`` keys).
TRAINING_SETTINGS = {
    "epochs": ("number of training epochs", "1"),
    "batch_size": ("SGD mini-batch size", "1"),
    "momentum": ("SGD momentum", "1"),
    "weight_decay": ("L2 weight decay of SGD", "1"),
    "seed": ("random seed of initialisation and data order", "1"),
    "n_train": ("training examples of the run", "1"),
    "n_test": ("test examples the run is evaluated on", "1"),
}


def read_training(paths: Iterable[str | os.PathLike]) -> xr.Dataset:
    """:func:`training_dataset` from run folders (holding history.json) and
    selected.json files, in any order."""
    histories, selections = {}, []
    for path in map(Path, paths):
        if path.name == "selected.json":
            selections.append(json.loads(path.read_text()))
        else:
            folder = path if path.is_dir() else path.parent
            histories[str(folder)] = json.loads((folder / "history.json").read_text())
    return training_dataset(histories, selections)


#: Titles of the files the workflow writes, by what they hold.
TITLES = {
    "spectra": "Spectral densities of the Hessian, its Gauss-Newton part G, H and "
    "the members of G",
    "spectrum": "Spectral density of one operator at one checkpoint",
    "decomposition": "Three-level structure of G: class-mean Gram eigenvalues and "
    "per-class traces of B2 (paper Figure 7)",
    "selfcheck": "Spectral estimators checked on synthetic spectra (paper Figure 8)",
    "training": "SGD training curves and learning-rate selection",
}


def write_netcdf(
    ds: xr.Dataset,
    path: str | os.PathLike,
    *,
    title: str | None = None,
    config_digest: str | None = None,
) -> None:
    """Write ``ds`` atomically (temporary file, then rename), compressing variables.

    The file gets CF-1.10 global attributes
    (:func:`hessian_spectrum.provenance.cf_attributes`): ``title`` (``title``, else
    the dataset's, else one from its contents), ``source`` (package version, git
    commit, torch), ``history`` (a line for this write above the dataset's own),
    ``references`` and ``config_digest`` when given.
    """
    from .provenance import cf_attributes

    path = Path(path)
    ds = ds.copy(deep=False)
    ds.attrs = dict(ds.attrs)
    ds.attrs.update(
        cf_attributes(
            title or ds.attrs.get("title") or _title_of(ds),
            digest=config_digest or ds.attrs.get("config_digest"),
            history=ds.attrs.get("history"),
        )
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    encoding = {
        name: {"zlib": True, "complevel": 4}
        for name, var in ds.data_vars.items()
        if var.dtype.kind in "fiu" and var.ndim > 0
    }
    ds.to_netcdf(tmp, engine="netcdf4", encoding=encoding)
    os.replace(tmp, path)
