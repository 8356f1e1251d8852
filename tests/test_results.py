"""results.py: per-job NetCDF datasets and their aggregation (CONTRACTS.md)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import xarray as xr

from hessian_spectrum import results
from hessian_spectrum.density import SpectralDensity


def density(num_points=64, outliers=(), p=1000, kind="linear", num_iters=16):
    grid = np.linspace(-1.0, 3.0, num_points)
    dens = np.exp(-0.5 * ((grid - 1.0) / 0.3) ** 2) / (0.3 * np.sqrt(2 * np.pi))
    return SpectralDensity(
        grid=grid,
        density=dens * (1 - len(outliers) / p),
        outliers=np.asarray(outliers, dtype=float),
        bounds=(-1.0, 3.0),
        p=p,
        num_products=num_iters,
        settings=dict(
            num_iters=num_iters,
            num_points=num_points,
            num_vectors=1,
            kappa=3.0,
            seed=0,
            deflate=len(outliers),
            margin=0.05,
            subspace_iters=8,
            start="rademacher",
        ),
        kind=kind,
        eps=1e-5 if kind == "log" else None,
    )


def job(sd, **keys):
    base = dict(
        dataset="mnist_embedded",
        arch="lenet",
        sample_size=10,
        epoch=2,
        split="train",
        operator="hess",
        variant="plain",
        num_classes=10,
        learning_rate=0.05,
    )
    base.update(keys)
    return results.spectrum_dataset(sd, **base)


def test_spectrum_dataset_has_the_contract_dims_and_attrs(tmp_path):
    ds = job(density(outliers=[5.0, 4.0, 3.0]), variant="deflated")
    assert ds["density"].dims == results.KEYS["spectra"] + ("point",)
    assert ds["outliers"].dims == results.KEYS["spectra"] + ("outlier",)
    assert ds["num_params"].dims == ("dataset", "arch")
    assert ds["learning_rate"].dims == ("dataset", "arch", "sample_size")
    for var in ds.data_vars.values():
        assert var.attrs["long_name"]
    path = tmp_path / "hess_deflated.nc"
    results.write_netcdf(ds, path)
    back = xr.open_dataset(path)
    assert back.attrs["num_iters"] == 16 and back.attrs["kappa"] == 3.0
    np.testing.assert_array_equal(back["outliers"].values.ravel(), [5.0, 4.0, 3.0])
    back.close()


def test_combine_fills_missing_combinations_with_nan(tmp_path):
    paths = []
    cases = [
        dict(variant="plain"),
        dict(variant="deflated", outliers=[2.0, 1.5]),
        dict(variant="log", operator="G"),
        dict(variant="plain", split="test", operator="H", sample_size=20),
        dict(variant="plain", operator="G-A1", epoch=6),
    ]
    for i, case in enumerate(cases):
        outliers = case.pop("outliers", [])
        variant = case["variant"]
        sd = density(
            outliers=outliers,
            kind="log" if variant == "log" else "linear",
            num_iters=32 if variant == "log" else 16,
        )
        path = tmp_path / f"{i}.nc"
        results.write_netcdf(job(sd, **case), path)
        paths.append(path)
    out = tmp_path / "spectra.nc"
    results.write_netcdf(results.combine(paths, "spectra"), out)
    ds = xr.open_dataset(out)
    assert list(ds.operator.values) == ["hess", "G", "H", "G-A1"]  # canonical order
    assert list(ds.variant.values) == ["plain", "deflated", "log"]
    assert list(ds.split.values) == ["train", "test"]
    assert list(ds.sample_size.values) == [10, 20]
    assert list(ds.epoch.values) == [2, 6]
    assert ds.sizes["outlier"] == 2 and ds.sizes["point"] == 64
    assert ds.attrs["num_iters"] == 16 and ds.attrs["log_num_iters"] == 32
    assert ds.attrs["log_eps"] == 1e-5 and ds.attrs["subspace_iters"] == 8
    one = dict(dataset="mnist_embedded", arch="lenet", sample_size=10, epoch=2)
    deflated = ds.sel(split="train", operator="hess", variant="deflated", **one)
    np.testing.assert_array_equal(deflated["outliers"].values, [2.0, 1.5])
    integral = np.trapezoid(deflated["density"].values, deflated["grid"].values)
    assert integral == pytest.approx(1 - 2 / 1000, abs=1e-3)
    plain = ds.sel(split="train", operator="hess", variant="plain", **one)
    assert np.isnan(plain["outliers"].values).all()
    missing = ds.sel(split="test", operator="hess", variant="log", **one)
    assert np.isnan(missing["density"].values).all()
    assert float(ds["num_params"].sel(dataset="mnist_embedded", arch="lenet")) == 1000
    ds.close()


def test_decomposition_and_selfcheck_roundtrip(tmp_path):
    C = 3
    paths = []
    for n in (10, 20):
        ds = results.decomposition_dataset(
            dataset="mnist_embedded",
            arch="lenet",
            sample_size=n,
            epoch=2,
            eigenvalues=np.linspace(3, 0, C * C),
            source=np.array([0] * C + [1] * (C * C - 2 * C) + [2] * C),
            b2_trace=np.ones(C),
            b2_stderr=np.zeros(C),
            g_top_values=np.array([3.0, 2.0, 1.0]),
            g_top_residuals=np.zeros(C),
            settings={"subspace_iters": 8, "seed": 0},
        )
        paths.append(tmp_path / f"d{n}.nc")
        results.write_netcdf(ds, paths[-1])
    results.write_netcdf(results.combine(paths, "decomposition"), tmp_path / "d.nc")
    with xr.open_dataset(tmp_path / "d.nc") as ds:
        assert ds["a1a2b1_source"].dtype == np.int8
        assert ds["a1a2b1_source"].attrs["flag_meanings"] == "A1 B1 A2"
        assert ds.sizes == {
            "dataset": 1,
            "arch": 1,
            "sample_size": 2,
            "epoch": 1,
            "eig": 9,
            "class": 3,
            "rank": 3,
        }
    sd = density(kind="log")
    case = results.selfcheck_dataset(
        "fig8b",
        exact_eigenvalues=np.arange(5.0),
        sd=sd,
        w1_relative=0.01,
        settings={"eps": 1e-5},
    )
    results.write_netcdf(case, tmp_path / "s.nc")
    combined = results.combine([tmp_path / "s.nc"], "selfcheck")
    assert combined["w1_relative"].sel(case="fig8b") == 0.01


def test_training_dataset_from_histories(tmp_path):
    runs = []
    for lr, error in ((0.01, 0.5), (0.1, 0.3)):
        run = tmp_path / f"lr{lr}"
        run.mkdir()
        records = [
            {
                "epoch": e,
                "lr": lr,
                "train_loss": 1.0 / e,
                "train_error": 0.5 / e,
                "test_loss": 1.5 / e,
                "test_error": error,
            }
            for e in (1, 2, 3)
        ]
        history = {
            "config": {
                "dataset": "mnist_embedded",
                "arch": "lenet",
                "n_per_class": 10,
                "lr": lr,
            },
            "records": records,
            "diverged": False,
        }
        (run / "history.json").write_text(json.dumps(history))
        runs.append(run)
    selected = tmp_path / "selected.json"
    selected.write_text(json.dumps({"winner": {"lr": 0.1, "run": str(runs[1])}}))
    ds = results.read_training(runs + [selected])
    assert list(ds.lr.values) == [0.01, 0.1] and list(ds.epoch.values) == [1, 2, 3]
    assert ds["train_loss"].dims == ("dataset", "arch", "sample_size", "lr", "epoch")
    assert float(ds["selected_lr"].squeeze()) == 0.1
    assert not ds["diverged"].values.any()
    results.write_netcdf(ds, tmp_path / "training.nc")
    with xr.open_dataset(tmp_path / "training.nc") as back:
        np.testing.assert_allclose(
            back["test_error"].sel(lr=0.01).squeeze().values, [0.5] * 3
        )


def test_combine_refuses_spectra_computed_with_different_settings(tmp_path):
    """One attribute per setting describes the combined file: per-job files that
    disagree (a stale file from an earlier config) are refused by name."""
    a, b = tmp_path / "a.nc", tmp_path / "b.nc"
    results.write_netcdf(job(density(num_iters=16)), a)
    results.write_netcdf(job(density(num_iters=32), operator="G"), b)
    with pytest.raises(
        ValueError,
        match=r"b\.nc was computed with num_iters = 32, "
        r"but .*a\.nc with 16",
    ):
        results.combine([a, b], "spectra")
    results.write_netcdf(job(density(num_iters=16), operator="G"), b)
    assert results.combine([a, b], "spectra").attrs["num_iters"] == 16
