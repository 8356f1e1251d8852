import numpy as np
import pytest
import scipy.sparse.linalg as spla
import torch

import hessian_spectrum as hs
from hessian_spectrum.operators import DeflatedOperator, ProjectedOperator


def _sym(p, seed=0):
    g = torch.Generator().manual_seed(seed)
    A = torch.randn(p, p, generator=g, dtype=torch.float64)
    return A + A.T


def test_as_operator_accepts_tensor_numpy_and_scipy():
    A = _sym(6)
    v = torch.randn(6, dtype=torch.float64)
    expected = A @ v
    for x in (A, A.numpy(), spla.aslinearoperator(A.numpy())):
        op = hs.as_operator(x)
        assert op.shape == (6, 6)
        torch.testing.assert_close(op.matvec(v), expected, rtol=1e-12, atol=1e-12)
    op = hs.as_operator(A)
    assert hs.as_operator(op) is op


def test_matvec_blocks_and_product_count():
    A = _sym(5)
    op = hs.as_operator(A)
    V = torch.randn(5, 3, dtype=torch.float64)
    torch.testing.assert_close(op.matvec(V), A @ V)
    assert op.num_products == 3
    op.matvec(V[:, 0])
    assert op.num_products == 4


def test_composition_sum_difference_scaling():
    A, B = _sym(7, 1), _sym(7, 2)
    a, b = hs.as_operator(A), hs.as_operator(B)
    dense = (2.0 * a - b + (-a) + 0.5 * b).to_dense()
    torch.testing.assert_close(dense, 2 * A - B - A + 0.5 * B)
    torch.testing.assert_close((a + b).to_dense(), A + B)


def test_deflation_and_projection():
    A = _sym(8, 3)
    vals, vecs = torch.linalg.eigh(A)
    top, V = vals[-2:], vecs[:, -2:]
    d = hs.deflate(hs.as_operator(A), top, V)
    assert isinstance(d, DeflatedOperator)
    torch.testing.assert_close(d.to_dense(), A - V @ torch.diag(top) @ V.T)
    expected = sorted(vals[:-2].tolist() + [0.0, 0.0])
    got = torch.linalg.eigvalsh(d.to_dense()).tolist()
    np.testing.assert_allclose(sorted(got), expected, atol=1e-10)
    P = ProjectedOperator(hs.as_operator(A), V)
    dense = P.to_dense()
    torch.testing.assert_close(dense @ V, torch.zeros(8, 2, dtype=torch.float64))
    torch.testing.assert_close(dense, d.to_dense(), atol=1e-10, rtol=1e-10)


@pytest.mark.parametrize(
    "bad, match",
    [
        (torch.zeros(3, 4), "square"),
        (torch.tensor([[1.0, 2.0], [0.0, 1.0]]), "not symmetric"),
        ("matrix", "as_operator expects"),
    ],
)
def test_bad_operators_are_refused(bad, match):
    with pytest.raises((ValueError, TypeError), match=match):
        hs.as_operator(bad)


def test_non_symmetric_scipy_operator_is_refused():
    M = np.triu(np.ones((5, 5)))
    with pytest.raises(ValueError, match="not symmetric"):
        hs.as_operator(spla.aslinearoperator(M))


def test_matvec_shape_errors_name_the_shape():
    op = hs.as_operator(_sym(4))
    with pytest.raises(ValueError, match=r"\(4,\) or \(4, k\).*\(5,\)"):
        op.matvec(torch.ones(5, dtype=torch.float64))
    with pytest.raises(ValueError, match="one eigenvalue per eigenvector"):
        hs.deflate(op, torch.ones(3), torch.ones(4, 2))


class _Duck:
    """The README's operator contract and nothing else."""

    def __init__(self, matrix):
        self.matrix = matrix
        self.shape = tuple(matrix.shape)
        self.dtype = matrix.dtype
        self.device = matrix.device

    def matvec(self, v):
        return self.matrix @ v


class _Custom(hs.LinearOperator):
    def __init__(self, matrix):
        super().__init__(matrix.shape[0], matrix.dtype, matrix.device)
        self.matrix = matrix

    def _matmat(self, V):
        return self.matrix @ V


def test_duck_typed_operator_runs_the_estimators():
    A = torch.diag(torch.arange(1.0, 41.0, dtype=torch.float64))
    duck = _Duck(A)
    op = hs.as_operator(duck)
    V = torch.randn(40, 3, dtype=torch.float64)
    torch.testing.assert_close(op.matvec(V), A @ V, rtol=1e-12, atol=1e-12)
    assert op.num_products == 3  # the symmetry probe is not counted
    sd = hs.lanczos_approx_spec(duck, num_iters=40, num_points=256, seed=0)
    assert sd.extremes == pytest.approx((1.0, 40.0), abs=1e-6)


@pytest.mark.parametrize("wrap", [_Duck, _Custom])
def test_non_symmetric_user_operators_are_refused(wrap):
    A = _sym(8)
    A[0, 1] += 1.0
    with pytest.raises(ValueError, match="not symmetric"):
        hs.as_operator(wrap(A))
    with pytest.raises(ValueError, match="not symmetric"):
        hs.lanczos_approx_spec(wrap(A), num_iters=8)
    ok = wrap(_sym(8))
    assert hs.as_operator(ok).shape == (8, 8)


def test_duck_with_wrong_matvec_shape_is_named():
    class Bad(_Duck):
        def matvec(self, v):
            return (self.matrix @ v).sum()

    with pytest.raises(ValueError, match="Bad.matvec"):
        hs.as_operator(Bad(_sym(4)))
