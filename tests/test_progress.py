"""Progress reports of the long calls (``progress=``, hessian_spectrum._progress)."""

import subprocess
import sys

import numpy as np
import pytest
import torch

import hessian_spectrum as hs


def _diag(p=60, seed=0):
    vals = torch.cat([torch.tensor([50.0, 40.0]), torch.linspace(-1.0, 1.0, p - 2)])
    return hs.as_operator(torch.diag(vals.double()))


def test_callable_sees_every_step_of_each_stage():
    calls = []
    sd = hs.lanczos_approx_spec(
        _diag(),
        12,
        num_points=64,
        deflate=2,
        seed=0,
        progress=lambda *a: calls.append(a),
    )
    stages = [c[0] for c in calls]
    assert stages[0] == "lanczos_approx_spec / subspace iteration"
    lanczos = [c for c in calls if c[0] == "lanczos_approx_spec / lanczos"]
    assert [c[1] for c in lanczos[:12]] == list(range(1, 13))
    assert all(c[2] == 12 for c in lanczos)
    assert all(c[3] >= 0 for c in calls)
    assert calls[-1][0] == "lanczos_approx_spec" and calls[-1][1] == sd.num_products
    quiet = hs.lanczos_approx_spec(_diag(), 12, num_points=64, deflate=2, seed=0)
    np.testing.assert_array_equal(quiet.density, sd.density)  # progress changes nothing


def test_true_prints_timed_lines_on_stderr_without_logging_setup():
    code = (
        "import torch, hessian_spectrum as hs\n"
        "A = hs.as_operator(torch.diag(torch.linspace(-1, 4, 80).double()))\n"
        "hs.log_spectrum(A, 20, num_points=32, deflate=1, progress=True)\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=300
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout == ""
    lines = out.stderr.splitlines()
    assert any("log_spectrum / lanczos: step 1/20 (5%)" in line for line in lines)
    assert any(
        "log_spectrum / subspace iteration: iteration 0/128" in line for line in lines
    )
    last = lines[-1]
    assert last[:4].isdigit() and "T" in last[:11]  # ISO time stamp
    assert "log_spectrum: done, " in last and "products in" in last
    # throttled: a 20-step run prints its first step and the closing line, not 20
    assert sum("lanczos: step" in line for line in lines) <= 3


def test_decomposition_reports_gram_and_traces():
    torch.manual_seed(0)
    model = torch.nn.Sequential(
        torch.nn.Linear(4, 5), torch.nn.Tanh(), torch.nn.Linear(5, 3)
    ).double()
    X, Y = torch.randn(30, 4, dtype=torch.float64), torch.arange(30) % 3
    dec = hs.decompose_G(model, (X, Y), num_classes=3, batch_size=8, device="cpu")
    calls = []
    dec.gram("passes", block_size=4, progress=lambda *a: calls.append(a[:3]))
    assert calls[0] == ("gram (passes)", 1, 3) and calls[-1][1:] == (3, 3)
    calls.clear()
    dec.b2_class_traces("exact", progress=lambda *a: calls.append(a[:3]))
    assert calls[-1] == ("B2 class traces (exact)", 30, 30)
    calls.clear()
    dec.b2_class_traces(num_probes=8, block_size=3, progress=lambda *a: calls.append(a))
    assert [c[1] for c in calls] == [3, 6, 8, 8]


def test_bad_progress_value_is_named():
    with pytest.raises(TypeError, match="progress must be True, False or a callable"):
        hs.lanczos_approx_spec(_diag(), 8, progress="yes")
