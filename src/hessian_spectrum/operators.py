"""Symmetric linear operators: the one currency of the spectral algorithms.

A linear operator here is anything with ``shape == (p, p)``, a torch ``dtype`` and
``device``, and ``matvec(v)`` accepting ``v`` of shape ``(p,)`` or ``(p, k)`` (``k``
vectors at once) and returning the same shape.  :class:`LinearOperator` is the base
class that provides that contract on top of one method, ``_matmat(V)`` on ``(p, k)``
blocks, plus composition (``A + B``, ``A - B``, ``s * A``, ``-A``) and low-rank
deflation ``A - V diag(lam) V^T``.

The spectral modules (:mod:`lanczos`, :mod:`density`, :mod:`subspace`) see only this
protocol; they know nothing of models or data.

SciPy.  ``A.to_scipy()`` views any operator as a ``scipy.sparse.linalg.LinearOperator``
on NumPy arrays (``eigsh(A.to_scipy(), k=3)``).  SciPy cannot take the operators
themselves: it reads ``A.dtype`` as a NumPy dtype and fails on a torch one ("Cannot
interpret 'torch.float32' as a data type").

Example
-------
>>> import numpy as np, torch, hessian_spectrum as hs
>>> A = hs.as_operator(torch.diag(torch.tensor([3.0, 1.0, -2.0], dtype=torch.float64)))
>>> (2 * A - A).matvec(torch.ones(3, dtype=torch.float64))
tensor([ 3.,  1., -2.], dtype=torch.float64)
>>> A.to_scipy() @ np.ones(3)
array([ 3.,  1., -2.])
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

__all__ = [
    "LinearOperator",
    "TensorOperator",
    "ScipyOperator",
    "SumOperator",
    "ScaledOperator",
    "DeflatedOperator",
    "ProjectedOperator",
    "as_operator",
    "deflate",
    "check_symmetric",
]


class LinearOperator:
    """Base class of symmetric ``p x p`` operators acting on torch tensors.

    Subclasses set ``shape``, ``dtype`` and ``device`` and implement ``_matmat`` on
    ``(p, k)`` blocks.  ``num_products`` counts the vectors multiplied so far (a block
    of ``k`` vectors counts ``k``), so that algorithms can report what they spent.
    """

    shape: tuple[int, int]
    dtype: torch.dtype
    device: torch.device

    def __init__(self, size: int, dtype: torch.dtype, device: torch.device | str):
        if int(size) < 1:
            raise ValueError(f"operator size must be positive, got {size}")
        self.shape = (int(size), int(size))
        self.dtype = dtype
        self.device = torch.device(device)
        self.num_products = 0

    @property
    def size(self) -> int:
        """The dimension ``p`` of the space the operator acts on."""
        return self.shape[0]

    def _matmat(self, V: torch.Tensor) -> torch.Tensor:  # pragma: no cover
        raise NotImplementedError

    def matvec(self, v: torch.Tensor) -> torch.Tensor:
        """Return ``A v`` for ``v`` of shape ``(p,)`` or ``A V`` for ``(p, k)``."""
        if not isinstance(v, torch.Tensor):
            raise TypeError(f"matvec expects a torch.Tensor, got {type(v).__name__}")
        if v.ndim not in (1, 2) or v.shape[0] != self.size:
            raise ValueError(
                f"matvec expects shape ({self.size},) or ({self.size}, k); "
                f"got {tuple(v.shape)}"
            )
        single = v.ndim == 1
        V = v.unsqueeze(1) if single else v
        V = V.to(device=self.device, dtype=self.dtype)
        out = self._matmat(V)
        self.num_products += V.shape[1]
        return out.squeeze(1) if single else out

    __matmul__ = matvec

    # -- composition -----------------------------------------------------------------
    def __add__(self, other: LinearOperator) -> LinearOperator:
        return SumOperator([self, other], [1.0, 1.0])

    def __sub__(self, other: LinearOperator) -> LinearOperator:
        return SumOperator([self, other], [1.0, -1.0])

    def __mul__(self, scalar: float) -> LinearOperator:
        return ScaledOperator(self, float(scalar))

    __rmul__ = __mul__

    def __neg__(self) -> LinearOperator:
        return ScaledOperator(self, -1.0)

    def to_dense(self) -> torch.Tensor:
        """The dense ``p x p`` matrix (``p`` products; for tests and small ``p``)."""
        eye = torch.eye(self.size, dtype=self.dtype, device=self.device)
        return self.matvec(eye)

    def to_scipy(self) -> Any:
        """This operator as a ``scipy.sparse.linalg.LinearOperator`` on NumPy arrays.

        Shape ``(p, p)``, the NumPy dtype of the torch dtype (``torch.float32`` ->
        ``np.float32``, ``torch.float64`` -> ``np.float64``).  ``matvec`` and
        ``matmat`` move their input to the operator's device and dtype, apply
        :meth:`matvec` (a ``(p, k)`` block in one torch product) and return a NumPy
        array on the CPU; ``rmatvec`` and ``rmatmat`` are the same maps (the
        operator is symmetric).  A complex input is applied to its real and
        imaginary parts.  Products count in :attr:`num_products`; the view keeps the
        operator as ``.operator``.  SciPy cannot take the operator itself (it reads
        ``dtype`` as a NumPy dtype), hence this view::

            vals = scipy.sparse.linalg.eigsh(op.to_scipy(), k=3,
                                             return_eigenvectors=False)
        """
        return _scipy_view_class()(self)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(p={self.size}, dtype={self.dtype})"


def _numpy_dtype(dtype: torch.dtype) -> np.dtype:
    """The NumPy dtype of a torch dtype; an error for those NumPy lacks (bfloat16)."""
    try:
        return torch.empty((), dtype=dtype).numpy().dtype
    except TypeError:
        raise TypeError(
            f"operator dtype {dtype} has no NumPy counterpart: build the operator "
            "in torch.float32 or torch.float64 to use it from SciPy"
        ) from None


@functools.cache
def _scipy_view_class() -> type:
    """The class of :meth:`LinearOperator.to_scipy`, made on first use (SciPy loads
    only then)."""
    import scipy.sparse.linalg as spla

    class ScipyView(spla.LinearOperator):
        """A :class:`LinearOperator` seen by SciPy: NumPy in, NumPy out."""

        def __init__(self, op: LinearOperator):
            super().__init__(dtype=_numpy_dtype(op.dtype), shape=op.shape)
            self.operator = op

        def _matmat(self, X):
            X = np.asarray(X)
            if np.iscomplexobj(X):
                return self._matmat(X.real) + 1j * self._matmat(X.imag)
            if not X.flags.c_contiguous or not X.flags.writeable:
                X = np.array(X, order="C")  # torch needs neither strides nor copies
            op = self.operator
            V = torch.as_tensor(X).to(device=op.device, dtype=op.dtype)
            return np.asarray(op.matvec(V).detach().cpu().numpy(), dtype=self.dtype)

        def _matvec(self, x):
            return self._matmat(np.asarray(x).reshape(-1, 1))

        _rmatvec = _matvec
        _rmatmat = _matmat

        def _adjoint(self):
            return self

        _transpose = _adjoint

        def __repr__(self) -> str:
            return f"<{self.shape[0]}x{self.shape[1]} scipy view of {self.operator!r}>"

    ScipyView.__qualname__ = "ScipyView"
    return ScipyView


class TensorOperator(LinearOperator):
    """A dense symmetric matrix held as a torch tensor."""

    def __init__(self, matrix: torch.Tensor):
        if matrix.ndim != 2 or matrix.shape[0] != matrix.shape[1]:
            raise ValueError(
                f"operator must be square, got a matrix of shape {tuple(matrix.shape)}"
            )
        super().__init__(matrix.shape[0], matrix.dtype, matrix.device)
        self.matrix = matrix

    def _matmat(self, V: torch.Tensor) -> torch.Tensor:
        return self.matrix @ V


class ScipyOperator(LinearOperator):
    """Adapter for a ``scipy.sparse.linalg.LinearOperator`` (or sparse matrix)."""

    def __init__(self, op: Any, dtype: torch.dtype = torch.float64):
        rows, cols = op.shape
        if rows != cols:
            raise ValueError(f"operator must be square, got shape {op.shape}")
        super().__init__(rows, dtype, "cpu")
        self.op = op

    def _matmat(self, V: torch.Tensor) -> torch.Tensor:
        out = self.op @ V.detach().cpu().numpy()
        return torch.as_tensor(np.asarray(out), dtype=self.dtype)


class SumOperator(LinearOperator):
    """``sum_i w_i A_i`` of operators of one size."""

    def __init__(self, operators: Sequence[LinearOperator], weights: Sequence[float]):
        first = operators[0]
        for op in operators[1:]:
            if op.shape != first.shape:
                raise ValueError(
                    f"cannot combine operators of shapes {first.shape} and {op.shape}"
                )
        super().__init__(first.size, first.dtype, first.device)
        self.operators = list(operators)
        self.weights = [float(w) for w in weights]

    def _matmat(self, V: torch.Tensor) -> torch.Tensor:
        out = None
        for w, op in zip(self.weights, self.operators, strict=True):
            term = w * op.matvec(V)
            out = term if out is None else out + term
        return out


class ScaledOperator(LinearOperator):
    """``s * A``."""

    def __init__(self, op: LinearOperator, scale: float):
        super().__init__(op.size, op.dtype, op.device)
        self.op = op
        self.scale = scale

    def _matmat(self, V: torch.Tensor) -> torch.Tensor:
        return self.scale * self.op.matvec(V)


class DeflatedOperator(LinearOperator):
    """``A - V diag(lam) V^T``: low-rank deflation of known eigenpairs.

    The deflated directions become (near-)zero eigenvalues of the result.  For spectral
    densities, prefer :class:`ProjectedOperator`, which removes those directions
    altogether instead of adding spurious mass at zero.
    """

    def __init__(self, op: LinearOperator, values: torch.Tensor, vectors: torch.Tensor):
        _check_pairs(op, values, vectors)
        super().__init__(op.size, op.dtype, op.device)
        self.op = op
        self.values = values.to(device=op.device, dtype=op.dtype)
        self.vectors = vectors.to(device=op.device, dtype=op.dtype)

    def _matmat(self, V: torch.Tensor) -> torch.Tensor:
        coeff = self.values[:, None] * (self.vectors.T @ V)
        return self.op.matvec(V) - self.vectors @ coeff


class ProjectedOperator(LinearOperator):
    """``P A P`` with ``P = I - Q Q^T`` for orthonormal ``Q`` (``p x r``).

    On the complement of ``span(Q)`` it equals ``A - Q diag(lam) Q^T`` when ``Q``
    holds exact eigenvectors; unlike that deflation it maps ``span(Q)`` to zero *and*
    keeps any vector started in the complement there, so a Lanczos run started in the
    complement sees only the ``p - r`` remaining eigenvalues.
    """

    def __init__(self, op: LinearOperator, basis: torch.Tensor):
        if basis.ndim != 2 or basis.shape[0] != op.size:
            raise ValueError(
                f"basis must have shape ({op.size}, r), got {tuple(basis.shape)}"
            )
        super().__init__(op.size, op.dtype, op.device)
        self.op = op
        self.basis = basis.to(device=op.device, dtype=op.dtype)

    def project(self, V: torch.Tensor) -> torch.Tensor:
        """``(I - Q Q^T) V``."""
        return V - self.basis @ (self.basis.T @ V)

    def _matmat(self, V: torch.Tensor) -> torch.Tensor:
        return self.project(self.op.matvec(self.project(V)))


def _check_pairs(op: LinearOperator, values: torch.Tensor, vectors: torch.Tensor):
    if vectors.ndim != 2 or vectors.shape[0] != op.size:
        raise ValueError(
            f"eigenvectors must have shape ({op.size}, r), got {tuple(vectors.shape)}"
        )
    if values.ndim != 1 or values.shape[0] != vectors.shape[1]:
        raise ValueError(
            f"need one eigenvalue per eigenvector: {tuple(values.shape)} values for "
            f"{vectors.shape[1]} vectors"
        )


def deflate(
    op: LinearOperator, values: torch.Tensor, vectors: torch.Tensor
) -> DeflatedOperator:
    """Return ``A - V diag(values) V^T`` (low-rank deflation)."""
    return DeflatedOperator(op, values, vectors)


class DuckOperator(LinearOperator):
    """Adapter for any object with the README's operator contract: ``shape == (p, p)``,
    a torch ``dtype``, a ``device`` and ``matvec`` on ``(p,)`` or ``(p, k)`` tensors."""

    def __init__(self, op: Any):
        rows, cols = (int(n) for n in op.shape)
        if rows != cols:
            raise ValueError(f"operator must be square, got shape {tuple(op.shape)}")
        super().__init__(rows, op.dtype, op.device)
        self.op = op

    def _matmat(self, V: torch.Tensor) -> torch.Tensor:
        out = self.op.matvec(V)
        if not isinstance(out, torch.Tensor) or tuple(out.shape) != tuple(V.shape):
            got = tuple(out.shape) if isinstance(out, torch.Tensor) else type(out)
            raise ValueError(
                f"{type(self.op).__name__}.matvec on a ({self.size}, {V.shape[1]}) "
                f"block must return a tensor of that shape, got {got}"
            )
        return out


_CHECKED = "_hessian_spectrum_symmetric"  # set on user operators probed once


def _probe_once(op: LinearOperator, owner: Any) -> None:
    """Probe a user-supplied operator for symmetry the first time it is seen (the
    probe's products are not counted in ``num_products``)."""
    if getattr(owner, _CHECKED, False):
        return
    before = op.num_products
    check_symmetric(op)
    op.num_products = before
    try:
        setattr(owner, _CHECKED, True)
    except AttributeError:  # objects with __slots__: probed on every call
        pass


def as_operator(x: Any, *, check_symmetry: bool = True) -> LinearOperator:
    """Wrap a torch tensor, numpy array, scipy LinearOperator or any object with the
    operator contract (``shape``, torch ``dtype``, ``device``, ``matvec``).

    The package's own operators pass through unchanged (symmetric by construction).
    Everything else is checked for symmetry: dense inputs exactly (to a relative
    tolerance of ``1e-6`` of the largest entry in float32, ``1e-12`` in float64),
    operators -- scipy ones, duck-typed ones and subclasses of
    :class:`LinearOperator` defined outside the package -- on random probes
    ``<u, Av>`` against ``<Au, v>`` (:func:`check_symmetric`; once per object where it
    takes an attribute).
    """
    if isinstance(x, LinearOperator):
        if check_symmetry and not type(x).__module__.startswith("hessian_spectrum"):
            _probe_once(x, x)
        return x
    if isinstance(x, np.ndarray):
        x = torch.from_numpy(x)
    if isinstance(x, torch.Tensor):
        if not torch.is_floating_point(x):
            x = x.to(torch.get_default_dtype())
        op = TensorOperator(x)
        if check_symmetry:
            _check_dense_symmetric(x)
        return op
    if (
        hasattr(x, "shape")
        and hasattr(x, "matvec")
        and isinstance(getattr(x, "dtype", None), torch.dtype)
        and hasattr(x, "device")
    ):
        op = DuckOperator(x)
        if check_symmetry:
            _probe_once(op, x)
        return op
    if hasattr(x, "shape") and (hasattr(x, "matvec") or hasattr(x, "__matmul__")):
        op = ScipyOperator(x)
        if check_symmetry:
            check_symmetric(op)
        return op
    raise TypeError(
        "as_operator expects a torch.Tensor, numpy.ndarray, scipy LinearOperator, "
        "hessian_spectrum LinearOperator or an object with shape, a torch dtype, "
        f"device and matvec; got {type(x).__name__}"
    )


def _check_dense_symmetric(x: torch.Tensor) -> None:
    tol = 1e-12 if x.dtype == torch.float64 else 1e-6
    scale = float(x.abs().max()) if x.numel() else 0.0
    err = float((x - x.T).abs().max()) if x.numel() else 0.0
    if err > tol * max(scale, 1e-300):
        raise ValueError(
            f"operator is not symmetric: max |A - A^T| = {err:.3g} "
            f"(largest entry {scale:.3g})"
        )


def check_symmetric(
    op: LinearOperator, num_probes: int = 2, rtol: float | None = None, seed: int = 0
) -> float:
    """Check ``u^T A v == v^T A u`` on random probes; return the worst relative gap.

    Raises ``ValueError`` naming the gap when it exceeds ``rtol`` (default ``1e-4`` in
    float32, ``1e-9`` in float64).
    """
    if rtol is None:
        rtol = 1e-9 if op.dtype == torch.float64 else 1e-4
    gen = torch.Generator(device="cpu").manual_seed(seed)
    U = torch.randn(op.size, 2 * num_probes, generator=gen, dtype=torch.float64)
    U = U.to(device=op.device, dtype=op.dtype)
    AU = op.matvec(U)
    worst = 0.0
    for j in range(num_probes):
        u, v = U[:, 2 * j], U[:, 2 * j + 1]
        a = float(u @ AU[:, 2 * j + 1])
        b = float(v @ AU[:, 2 * j])
        scale = float(AU.norm()) * float(U.norm()) + 1e-300
        worst = max(worst, abs(a - b) / scale)
    if worst > rtol:
        raise ValueError(
            f"operator is not symmetric: |u^T A v - v^T A u| / (|A U| |U|) = "
            f"{worst:.3g} > {rtol:.1g}"
        )
    return worst
