"""hessian_spectrum.integrity on real NetCDF files, torch checkpoints and JSON,
damaged the way a user meets them: truncated, emptied, overwritten."""

from __future__ import annotations

import os

import numpy as np
import pytest
import torch
import xarray as xr

from hessian_spectrum import integrity
from hessian_spectrum.results import write_netcdf


@pytest.fixture
def files(tmp_path):
    nc = tmp_path / "spectrum.nc"
    ds = xr.Dataset({"density": ("grid", np.linspace(0, 1, 5000))})
    write_netcdf(ds, nc)
    pt = tmp_path / "epoch_1.pt"
    torch.save({"model_state": {"w": torch.arange(20000.0)}}, pt)
    js = tmp_path / "history.json"
    js.write_text('{"records": [' + ", ".join(["1.5"] * 100) + "]}")
    return nc, pt, js


def test_intact_files_pass(files, tmp_path):
    for path in files:
        assert integrity.defect(path) is None
        assert integrity.defect(path, deep=True) is None
    assert integrity.defect(tmp_path) is None
    assert integrity.defect(tmp_path / "missing.nc") is None  # to be made


@pytest.mark.parametrize("cut", [1, 100, 0.5])
def test_every_truncation_is_seen(files, cut):
    for path in files:
        size = path.stat().st_size
        keep = int(size * cut) if isinstance(cut, float) else size - cut
        os.truncate(path, keep)
        found = integrity.defect(path)
        assert found is not None, (path, keep)
        if path.suffix == ".nc":
            assert "truncated" in found and str(size) in found


def test_empty_foreign_and_flipped_files(files):
    nc, pt, js = files
    nc.write_bytes(b"")
    assert integrity.defect(nc) == "empty file"
    nc.write_bytes(b"<html>not found</html>")
    assert "signature" in integrity.defect(nc)
    js.write_text('{"records": [1, 2')
    assert "JSON" in integrity.defect(js)
    blob = bytearray(pt.read_bytes())
    blob[len(blob) // 2] ^= 0xFF  # same size, one byte flipped inside the data
    pt.write_bytes(bytes(blob))
    assert integrity.defect(pt) is None  # the cheap check reads the directory only
    assert "CRC" in integrity.defect(pt, deep=True)


def test_directory_names_the_damaged_file(files, tmp_path):
    nc, pt, js = files
    os.truncate(pt, 10)
    assert integrity.defect(tmp_path).startswith("epoch_1.pt: ")


def test_check_files_moves_only_damaged_files_aside(files):
    nc, pt, js = files
    os.truncate(nc, 100)
    lines = []
    moved = integrity.check_files([nc, pt, js], log=lines.append)
    assert [path for path, _ in moved] == [nc]
    assert not nc.exists() and nc.with_name("spectrum.nc.corrupt").stat().st_size == 100
    assert pt.exists() and js.exists()
    assert len(lines) == 1 and "spectrum.nc" in lines[0] and "regenerated" in lines[0]
    # a second damage replaces the first quarantined copy
    write_netcdf(xr.Dataset({"x": ("i", np.arange(3.0))}), nc)
    os.truncate(nc, 50)
    integrity.check_files([nc])
    assert nc.with_name("spectrum.nc.corrupt").stat().st_size == 50
