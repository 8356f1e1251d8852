"""Self-describing results: CF global attributes, UDUNITS units, training settings,
and the job logs' header and footer (hessian_spectrum.provenance)."""

from __future__ import annotations

import io
import json
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
import torch
import xarray as xr
from test_results import density, job

import hessian_spectrum as hs
from hessian_spectrum import provenance, results

REPO = Path(__file__).resolve().parents[1]

# The units this project writes, each valid in UDUNITS-2 ("1": dimensionless).
UDUNITS_OK = {"1"}


def _units(ds: xr.Dataset) -> dict[str, str]:
    return {
        name: var.attrs["units"]
        for name, var in {**ds.data_vars, **ds.coords}.items()
        if "units" in var.attrs
    }


def _history(config: dict | None = None, lr=0.1) -> dict:
    return {
        "config": {
            "dataset": "mnist_embedded",
            "arch": "mlp",
            "n_per_class": 8,
            "lr": lr,
            "epochs": 9,
            "batch_size": 32,
            "momentum": 0.9,
            "weight_decay": 5e-4,
            "seed": 0,
            "milestones": [3, 6],
            "n_train": 80,
            "n_test": 500,
            **(config or {}),
        },
        "records": [
            {
                "epoch": e,
                "lr": lr,
                "train_loss": 1.0,
                "train_error": 0.5,
                "test_loss": 1.0,
                "test_error": 0.5,
            }
            for e in (1, 2)
        ],
        "diverged": False,
    }


def test_written_files_carry_cf_global_attributes(tmp_path):
    path = tmp_path / "one.nc"
    results.write_netcdf(job(density()), path, config_digest="sha256:abc")
    with xr.open_dataset(path) as ds:
        a = ds.attrs
        assert a["Conventions"] == "CF-1.10"
        assert a["title"] == results.TITLES["spectrum"]
        assert a["source"].startswith(f"hessian-spectrum {hs.__version__}")
        assert f"torch {torch.__version__}" in a["source"]
        assert "arXiv:1811.07062" in a["references"]
        assert a["config_digest"] == "sha256:abc"
        assert len(a["history"].splitlines()) == 1 and a["history"][:4].isdigit()
        first = a["history"]
        assert a["kind"] == "linear" and a["num_iters"] == 16  # settings stay
    combined = results.combine([path], "spectra")
    results.write_netcdf(combined, tmp_path / "all.nc", title="all of them")
    with xr.open_dataset(tmp_path / "all.nc") as ds:
        assert ds.attrs["title"] == "all of them"
    # a file rewritten from a read one keeps its history below the new line
    results.write_netcdf(xr.load_dataset(path), tmp_path / "again.nc")
    with xr.open_dataset(tmp_path / "again.nc") as ds:
        lines = ds.attrs["history"].splitlines()
        assert len(lines) == 2 and lines[1] == first


def test_git_commit_is_the_checkout_head():
    if shutil.which("git") is None or not (REPO / ".git").exists():
        pytest.skip("not a git checkout")
    head = subprocess.run(
        ["git", "-C", str(REPO), "rev-parse", "HEAD"], capture_output=True, text=True
    ).stdout.strip()
    commit = provenance.git_commit()
    assert commit is not None and head.startswith(commit.removesuffix("+dirty"))
    dirty = subprocess.run(
        ["git", "-C", str(REPO), "status", "--porcelain", "--untracked-files=no"],
        capture_output=True,
        text=True,
    ).stdout.strip()
    assert commit.endswith("+dirty") == bool(dirty)


def test_config_digest_is_canonical():
    a = provenance.config_digest({"b": 1, "a": [1, 2]})
    assert a == provenance.config_digest({"a": [1, 2], "b": 1})
    assert a != provenance.config_digest({"a": [1, 2], "b": 2})
    assert a.startswith("sha256:") and len(a) == 7 + 64


def test_units_are_udunits_valid_everywhere(tmp_path):
    spectra = job(density(outliers=(5.0,)), variant="deflated")
    log = job(density(kind="log"), variant="log")
    dec = results.decomposition_dataset(
        dataset="mnist_embedded",
        arch="mlp",
        sample_size=8,
        epoch=2,
        eigenvalues=np.linspace(3, 0, 9),
        source=np.array([0] * 3 + [1] * 3 + [2] * 3),
        b2_trace=np.ones(3),
        b2_stderr=np.zeros(3),
        g_top_values=np.ones(3),
        g_top_residuals=np.zeros(3),
        settings={},
    )
    train = results.training_dataset({"run": _history()}, [])
    for ds in (spectra, log, dec, train):
        units = _units(ds)
        assert units, "no units at all"
        bad = {k: u for k, u in units.items() if u not in UDUNITS_OK}
        assert not bad, bad
    assert "nats" in spectra.attrs["comment"]


def test_training_nc_holds_the_hyperparameters(tmp_path):
    histories = {"a": _history(lr=0.1), "b": _history(lr=0.2, config={"seed": 1})}
    ds = results.training_dataset(histories, [])
    results.write_netcdf(ds, tmp_path / "training.nc")
    with xr.open_dataset(tmp_path / "training.nc") as back:
        assert back.attrs["momentum"] == 0.9 and back.attrs["weight_decay"] == 5e-4
        assert list(back.attrs["milestones"]) == [3, 6]
        assert back.attrs["batch_size"] == 32 and back.attrs["epochs"] == 9
        assert "seed" not in back.attrs  # the runs disagree: per run only
        assert back["seed"].sel(lr=0.2).item() == 1
        assert back["momentum"].dims == ("dataset", "arch", "sample_size", "lr")
        np.testing.assert_array_equal(back["milestones"].sel(lr=0.1).squeeze(), [3, 6])
        assert back.attrs["title"] == results.TITLES["training"]


def test_job_log_names_versions_device_and_elapsed_time():
    out = io.StringIO()
    with provenance.JobLog("spectrum", "cpu", stream=out):
        pass
    head, tail = out.getvalue().splitlines()
    assert head[:4].isdigit() and " spectrum start: hessian-spectrum " in head
    assert (
        f"torch {torch.__version__}" in head and "device cpu (torch threads: " in head
    )
    assert tail.endswith(" s") and " spectrum done after " in tail
    out = io.StringIO()
    with pytest.raises(RuntimeError), provenance.JobLog("train", stream=out):
        raise RuntimeError("boom")
    assert " train failed after " in out.getvalue().splitlines()[-1]
    json.dumps(provenance.cf_attributes("t"))  # plain strings, NetCDF-writable
