"""The library with the scientific Python stack: SciPy, NumPy and xarray.

Checked against dense answers: ``eigsh`` on the SciPy view of G and of a decomposition
member must find the eigenvalues of the dense matrix, NumPy data must give the
products tensor data give.
"""

import numpy as np
import pytest
import scipy.sparse.linalg as spla
import torch
import xarray as xr

import hessian_spectrum as hs


def _problem(seed=0, n=24, d=4, h=5, c=3):
    torch.manual_seed(seed)
    model = torch.nn.Sequential(
        torch.nn.Linear(d, h), torch.nn.Tanh(), torch.nn.Linear(h, c)
    ).double()
    X = torch.randn(n, d, dtype=torch.float64)
    Y = torch.arange(n) % c
    return model, X, Y, c


def _top(op, k=3):
    vals = spla.eigsh(op.to_scipy(), k=k, which="LA", return_eigenvectors=False)
    return np.sort(vals)[::-1]


def test_eigsh_on_the_scipy_view_of_curvature_operators():
    model, X, Y, c = _problem()
    cur = hs.curvature(model, (X, Y), num_classes=c, batch_size=10, device="cpu")
    for op in (cur.hessian, cur.G, cur.H, cur.G - 0.5 * cur.H):
        dense = np.linalg.eigvalsh(op.to_dense().numpy())[::-1]
        np.testing.assert_allclose(_top(op), dense[:3], rtol=1e-9, atol=1e-12)
    view = cur.G.to_scipy()
    assert view.shape == (cur.p, cur.p) and view.dtype == np.float64
    assert view.operator is cur.G and "scipy view" in repr(view)
    block = np.random.default_rng(0).standard_normal((cur.p, 2))
    np.testing.assert_allclose(
        view @ block, cur.G.to_dense().numpy() @ block, atol=1e-12
    )
    np.testing.assert_allclose(view.H @ block[:, 0], view @ block[:, 0], atol=0)


def test_eigsh_on_decomposition_members_and_deflated_operators():
    model, X, Y, c = _problem(1)
    dec = hs.decompose_G(model, (X, Y), num_classes=c, batch_size=7, device="cpu")
    for name in ("A1", "B2"):
        op = dec.operator(name)
        dense = np.linalg.eigvalsh(op.to_dense().numpy())[::-1]
        np.testing.assert_allclose(_top(op, 2), dense[:2], rtol=1e-8, atol=1e-12)
    A = hs.as_operator(torch.diag(torch.arange(1.0, 9.0, dtype=torch.float64)))
    V = torch.eye(8, dtype=torch.float64)[:, -2:]
    deflated = hs.deflate(A, torch.tensor([7.0, 8.0], dtype=torch.float64), V)
    np.testing.assert_allclose(_top(deflated, 2), [6.0, 5.0], rtol=1e-10)


def test_float32_view_and_complex_input():
    A = hs.as_operator(torch.diag(torch.tensor([3.0, 1.0, -2.0])))
    view = A.to_scipy()
    assert view.dtype == np.float32
    out = view @ np.array([1.0, 1j, 2.0])
    np.testing.assert_allclose(out, [3.0, 1j, -4.0], rtol=1e-6)


def test_numpy_data_gives_the_products_of_tensor_data():
    model, X, Y, c = _problem(2)
    ref = hs.curvature(model, (X, Y), num_classes=c, batch_size=10, device="cpu")
    cur = hs.curvature(
        model, (X.numpy(), Y.numpy()), num_classes=c, batch_size=10, device="cpu"
    )
    v = torch.randn(ref.p, 2, dtype=torch.float64)
    for a, b in ((ref.hessian, cur.hessian), (ref.G, cur.G)):
        torch.testing.assert_close(a.matvec(v), b.matvec(v), rtol=0, atol=1e-14)
    # float32 NumPy inputs are cast to the model's dtype, as tensors are
    cur32 = hs.curvature(
        model,
        (X.numpy().astype(np.float32), Y.numpy()),
        num_classes=c,
        batch_size=10,
        device="cpu",
    )
    assert cur32.dtype == torch.float64
    batches = [(X[:12].numpy(), Y[:12].numpy()), (X[12:].numpy(), Y[12:].numpy())]
    dec = hs.decompose_G(model, batches, num_classes=c, batch_size=10, device="cpu")
    torch.testing.assert_close(dec.G.matvec(v), ref.G.matvec(v), rtol=0, atol=1e-13)


@pytest.mark.parametrize(
    "labels, match",
    [
        (
            lambda Y, c: np.eye(c)[Y],
            r"labels must be a 1-d array of class indices, got shape \(24, 3\)",
        ),
        (lambda Y, c: Y.astype(np.float64), "labels must be integer class indices"),
        (lambda Y, c: Y.astype(str), "NumPy data must be numeric"),
    ],
)
def test_bad_numpy_labels_get_the_right_message(labels, match):
    model, X, Y, c = _problem()
    with pytest.raises((TypeError, ValueError), match=match):
        hs.curvature(
            model, (X.numpy(), labels(Y.numpy(), c)), num_classes=c, device="cpu"
        )


def test_density_to_xarray_round_trips_through_netcdf(tmp_path):
    A = hs.as_operator(torch.diag(torch.linspace(-1.0, 4.0, 40, dtype=torch.float64)))
    sd = hs.lanczos_approx_spec(A, 20, num_points=64, deflate=2, seed=0)
    ds = sd.to_xarray()
    assert ds.density.dims == ("grid",) and ds.sizes["outlier"] == 2
    np.testing.assert_array_equal(ds.grid.values, sd.grid)
    np.testing.assert_array_equal(ds.outliers.values, sd.outliers)
    assert ds.attrs["p"] == 40 and ds.attrs["kind"] == "linear"
    assert float(ds.bound_hi) == sd.bounds[1]
    ds.to_netcdf(tmp_path / "sd.nc")
    back = xr.open_dataset(tmp_path / "sd.nc")
    np.testing.assert_array_equal(back.density.values, sd.density)
    assert abs(float(back.density.integrate("grid")) - sd.integral()) < 1e-12
    log = hs.log_spectrum(A, 16, num_points=32, seed=0).to_xarray()
    assert (
        log.attrs["kind"] == "log" and log.sizes["outlier"] == 0 and "eps" in log.attrs
    )


def test_reprs_are_one_readable_line():
    model, X, Y, c = _problem()
    cur = hs.curvature(model, (X, Y), num_classes=c, device="cpu")
    dec = hs.decompose_G(model, (X, Y), num_classes=c, device="cpu")
    sd = hs.lanczos_approx_spec(cur.G, 8, num_points=16, seed=0)
    for obj, head in (
        (cur, "Curvature(p=43, N=24, C=3"),
        (dec, "GDecomposition(p=43, N=24, C=3"),
        (sd, "SpectralDensity(kind='linear', p=43, 16 points"),
    ):
        text = repr(obj)
        assert text.startswith(head), text
        assert "\n" not in text and len(text) < 200 and "array(" not in text


def test_products_raise_no_deprecation_warning():
    """Forward-mode products load torch's jvp decompositions, whose import warns
    ("torch.jit.script is deprecated"); our first product must not show it."""
    import subprocess
    import sys

    code = (
        "import torch, hessian_spectrum as hs\n"
        "m = torch.nn.Sequential(torch.nn.Linear(4, 5), torch.nn.Tanh(),"
        " torch.nn.Linear(5, 3)).double()\n"
        "X, Y = torch.randn(9, 4, dtype=torch.float64), torch.arange(9) % 3\n"
        "cur = hs.curvature(m, (X, Y), num_classes=3, device='cpu')\n"
        "dec = hs.decompose_G(m, (X, Y), num_classes=3, device='cpu')\n"
        "v = torch.randn(cur.p, dtype=torch.float64)\n"
        "for op in (cur.hessian, cur.G, cur.H, dec.B2): op.matvec(v)\n"
        "print('ok')\n"
    )
    out = subprocess.run(
        [
            sys.executable,
            "-W",
            "error::FutureWarning",
            "-W",
            "error::DeprecationWarning",
            "-c",
            code,
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert out.returncode == 0 and out.stdout.strip() == "ok", out.stderr[-2000:]
