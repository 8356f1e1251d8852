"""Matrix-free Hess, G and H of the mean cross-entropy of a classifier over a data set.

For ``N`` samples ``(x_i, y_i)``, logits ``z_i = f(x_i; theta)`` in ``R^C``, softmax
probabilities ``p_i`` and the loss ``L(theta) = (1/N) sum_i l(z_i, y_i)`` (paper
eq. 1), the Gauss-Newton decomposition (paper eq. 2, 9) is

.. math::

    \\mathrm{Hess} = \\frac{1}{N} \\sum_i \\frac{\\partial^2 l(f(x_i;\\theta), y_i)}
        {\\partial \\theta^2} = G + H,

    G = \\frac{1}{N} \\sum_i J_i^T (\\mathrm{diag}(p_i) - p_i p_i^T) J_i,
    \\qquad
    H = \\frac{1}{N} \\sum_i \\sum_{c'} (p_{i,c'} - [y_i = c'])
        \\frac{\\partial^2 f_{c'}(x_i; \\theta)}{\\partial \\theta^2},

with ``J_i = df(x_i; theta)/dtheta`` (``C x p``).  Each is a
:class:`~hessian_spectrum.operators.LinearOperator`: a product is one pass over the
data in mini-batches, each batch weighted by its size over ``N``, and ``k`` vectors
share that pass (``torch.func.vmap``).

- ``Hess v``: forward-over-reverse, ``jvp(grad(L_batch))``.  On CPU it costs about
  what double backward does (within +-10% either way, ~3.2x a gradient pass for a
  small VGG with BatchNorm; ``benchmarks/bench_curvature.py`` measures both), and it
  composes with ``vmap`` for ``k`` vectors and with the detached residual of ``H``.
- ``G v``: ``J^T (diag(p) - p p^T) J v``, one forward-mode pass (``J v``) and one
  reverse-mode pass (``J^T u``) per batch; no Hessian of the network is formed.
- ``H v``: the Hessian of the *linearised* loss
  ``L_lin(theta) = (1/N) sum_i r_i^T f(x_i; theta)`` with the residual
  ``r_i = p_i - onehot(y_i)`` held constant (detached inside the differentiated
  function), so ``H v`` costs one Hessian-vector product, not two (``Hess v - G v``).

The linearisation cache (``cache=``, :mod:`hessian_spectrum._cache`): from a batch's
second product on, the work of its product that depends on theta and the batch alone
(the forward and backward pass at theta) is computed once and kept; later products
run only the part that depends on ``v``, 1.7-2x cheaper (Hess about 1.5x a gradient
pass, G about 0.9x on CPU), under a memory budget; batches beyond it are recomputed.

Sources of randomness are refused before any product (paper Section C.3): BatchNorm
and dropout must be in eval mode, and (with ``check=True``) the data must read the same
on two passes (no random augmentation).

Example
-------
>>> import torch
>>> from hessian_spectrum.curvature import curvature
>>> torch.manual_seed(0)  # doctest: +ELLIPSIS
<...>
>>> model = torch.nn.Sequential(torch.nn.Linear(4, 5), torch.nn.Tanh(),
...                             torch.nn.Linear(5, 3)).double()
>>> X, Y = torch.randn(20, 4, dtype=torch.float64), torch.randint(0, 3, (20,))
>>> cur = curvature(model, (X, Y), num_classes=3, batch_size=8, device="cpu")
>>> cur.hessian.shape
(43, 43)
>>> v = torch.randn(43, 2, dtype=torch.float64)
>>> bool(torch.allclose(cur.hessian.matvec(v), cur.G.matvec(v) + cur.H.matvec(v)))
True
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from torch.func import grad, grad_and_value, jvp, vjp, vmap

from ._cache import ProductCache, budget_of
from ._distributed import Reducer, reducer
from ._functional import Batches, FlatModel, check_eval_mode, resolve_device
from .operators import LinearOperator

__all__ = [
    "curvature",
    "Curvature",
    "HessianOperator",
    "GaussNewtonOperator",
    "ResidualOperator",
    "check_eval_mode",
    "check_deterministic",
]


# Modules whose train-mode forward is random (dropout) or couples the samples of a
# batch (BatchNorm's batch statistics): either makes the operator ill-defined.
class Curvature:
    """Hess, G and H of the mean cross-entropy of ``model`` on ``data`` (a snapshot).

    Attributes ``hessian``, ``G`` and ``H`` are symmetric ``p x p`` operators with
    ``Hess = G + H + weight_decay * I``: the weight-decay term
    ``(weight_decay / 2) ||theta||^2`` enters the Hessian (and :meth:`loss`,
    :meth:`gradient`) only; G and H stay the two terms of the paper's eq. (2).  The
    parameters are read once at construction: build a new ``Curvature`` after the
    weights change.  Build it with :func:`curvature`.
    """

    def __init__(
        self,
        flat: FlatModel,
        batches: Batches,
        num_classes: int,
        weight_decay: float = 0.0,
        cache: bool | int | str = "auto",
        reduce: Reducer | None = None,
    ):
        # The operators refer to the problem, not to this object: no reference cycle,
        # so that dropping a Curvature frees its cache at once (GPU memory included).
        problem = _Problem(flat, batches, num_classes, weight_decay, cache, reduce)
        self._problem = problem
        self.flat = flat
        self.batches = batches
        self.num_classes = problem.num_classes
        self.weight_decay = problem.weight_decay
        self.num_samples = problem.num_samples
        self.p = flat.p
        self.dtype = flat.dtype
        self.device = flat.device
        self.cache = problem.cache
        self.hessian = HessianOperator(problem)
        self.G = GaussNewtonOperator(problem)
        self.H = ResidualOperator(problem)

    def iter_batches(self) -> Iterator[tuple[torch.Tensor, torch.Tensor, float]]:
        """``(x, y, b / N)`` for batches of at most ``batch_size`` samples on device.

        Batches given by the caller (a ``DataLoader``, a list) are split further when
        larger than ``batch_size``; inputs are cast to the parameters' dtype, labels
        to int64.
        """
        return self._problem.iter_batches()

    def loss(self) -> float:
        """``L(theta) = (1/N) sum_i l(f(x_i; theta), y_i) + (wd/2) ||theta||^2``."""
        total = torch.zeros((), dtype=torch.float64)
        with torch.no_grad():
            for x, y, w in self.iter_batches():
                z = self.flat.logits(self.flat.params, x)
                total += w * float(F.cross_entropy(z, y))
        total = float(self._problem.reduce.sum_(total))
        theta = self.flat.theta()
        return total + 0.5 * self.weight_decay * float(theta @ theta)

    def gradient(self) -> torch.Tensor:
        """The full-data mean gradient ``dL/dtheta`` (p,), weight decay included."""
        out = torch.zeros(self.p, dtype=self.dtype, device=self.device)
        for x, y, w in self.iter_batches():
            g = grad(_mean_loss(self.flat, x, y))(self.flat.params)
            out += w * self.flat.flatten(g)
        self._problem.reduce.sum_(out)
        if self.weight_decay:
            out += self.weight_decay * self.flat.theta()
        return _finite(out, "gradient")

    def loss_and_gradient(self) -> tuple[float, torch.Tensor]:
        """``(loss(), gradient())`` in one pass over the data."""
        out = torch.zeros(self.p, dtype=self.dtype, device=self.device)
        total = torch.zeros((), dtype=torch.float64)
        for x, y, w in self.iter_batches():
            g, value = grad_and_value(_mean_loss(self.flat, x, y))(self.flat.params)
            out += w * self.flat.flatten(g)
            total += w * float(value)
        self._problem.reduce.sum_(out)
        total = float(self._problem.reduce.sum_(total))
        if self.weight_decay:
            theta = self.flat.theta()
            out += self.weight_decay * theta
            total += 0.5 * self.weight_decay * float(theta @ theta)
        return total, _finite(out, "gradient")

    def cache_info(self) -> dict[str, Any]:
        """The linearisation cache: ``budget_bytes`` (``None``: no limit),
        ``used_bytes``, per operator the ``batches`` cached and their ``bytes``, and
        under ``off`` why caching is off for an operator where it is."""
        return self.cache.info()

    def clear_cache(self) -> None:
        """Free the linearisation cache (it refills from the next products)."""
        self.cache.clear()

    def __repr__(self) -> str:
        return (
            f"Curvature(p={self.p}, N={self.num_samples}, C={self.num_classes}, "
            f"dtype={self.dtype}, device={self.device})"
        )


class _Problem:
    """What the operators of one :class:`Curvature` share: the model as a flat
    function, the data, the settings and the linearisation cache."""

    def __init__(self, flat, batches, num_classes, weight_decay, cache, reduce=None):
        self.flat = flat
        self.batches = batches
        self.num_classes = int(num_classes)
        self.weight_decay = float(weight_decay)
        self.reduce = reduce if reduce is not None else Reducer()
        # N over all ranks: each rank weights its batches by b / N, and the sum over
        # ranks of their partial products is the mean over the whole data set
        self.num_samples = int(
            self.reduce.sum_(
                torch.tensor(float(batches.num_samples), dtype=torch.float64)
            )
        )
        self.p, self.dtype, self.device = flat.p, flat.dtype, flat.device
        self.cache = ProductCache(_cache_budget(cache, flat.device))
        # tensors alive anyway: not charged to the cache
        self.resident = [
            *flat.params.values(),
            *flat.frozen.values(),
            *flat.buffers.values(),
        ]

    def iter_batches(self) -> Iterator[tuple[torch.Tensor, torch.Tensor, float]]:
        size = self.batches.batch_size
        for x, y in self.batches:
            if x.is_floating_point():
                x = x.to(self.dtype)
            y = y.long()
            for xs, ys in zip(x.split(size), y.split(size), strict=True):
                yield xs, ys, ys.shape[0] / self.num_samples


class _CurvatureOperator(LinearOperator):
    """One pass over the data per product: ``sum_batches (b/N) A_batch V``.

    Each subclass gives the per-batch map ``v -> A_batch v`` for one tangent
    (:meth:`_tangent_map`, as parameter dicts).  It runs vmapped over the ``k``
    columns of ``V`` when recomputed, or, once the batch is in the curvature's
    linearisation cache, as the traced map with its theta-only work folded into
    constants (one column at a time: faster than vmap over the folded graph).
    """

    name = "curvature"

    def __init__(self, cur: _Problem):
        super().__init__(cur.p, cur.dtype, cur.device)
        self.cur = cur

    def _tangent_map(self, x: torch.Tensor, y: torch.Tensor) -> Callable[[dict], dict]:
        raise NotImplementedError  # pragma: no cover

    def _batch_matmat(self, x: torch.Tensor, y: torch.Tensor, V: torch.Tensor):
        flat = self.cur.flat
        out = vmap(self._tangent_map(x, y))(flat.unflatten_block(V))
        return flat.flatten_block(out)

    def _traceable(self, x, y, *tangents):
        """The map as a function of the batch and the tangents, as tensors (what
        :class:`~hessian_spectrum._cache.LinearTemplate` traces)."""
        names = self.cur.flat.names
        out = self._tangent_map(x, y)(dict(zip(names, tangents, strict=True)))
        return [out[n] for n in names]

    def _example_tangents(self) -> list[torch.Tensor]:
        flat = self.cur.flat
        return [
            torch.zeros(s, dtype=flat.dtype, device=flat.device) for s in flat.shapes
        ]

    def _matmat(self, V: torch.Tensor) -> torch.Tensor:
        cur = self.cur
        out = torch.zeros_like(V)
        for i, (x, y, w) in enumerate(cur.iter_batches()):
            bound = cur.cache.lookup(
                self.name,
                i,
                [x, y],
                self._traceable,
                self._example_tangents,
                resident=cur.resident,
            )
            if bound is None:
                out += w * self._batch_matmat(x, y, V)
                continue
            for j in range(V.shape[1]):
                parts = bound(*cur.flat.unflatten(V[:, j]).values())
                out[:, j] += w * torch.cat([t.reshape(-1) for t in parts])
        self.cur.reduce.sum_(out)
        return _finite(out, f"{self.name} product")


def _hvp_map(flat: FlatModel, loss: Callable[[dict], torch.Tensor]):
    """``t -> (d^2 loss / dtheta^2) t``: forward-over-reverse, ``jvp(grad(loss))``."""
    grad_loss = grad(loss)

    def one(tangent):
        return jvp(grad_loss, (flat.params,), (tangent,))[1]

    return one


def _mean_loss(flat: FlatModel, x: torch.Tensor, y: torch.Tensor):
    def loss(params):
        return F.cross_entropy(flat.logits(params, x), y)

    return loss


class HessianOperator(_CurvatureOperator):
    """``Hess V = (1/N) sum_i d^2 l(f(x_i; theta), y_i)/dtheta^2 V + wd V`` (eq. 1).

    Per batch: ``jvp(grad(l_batch))`` (forward-over-reverse), vmapped over the ``k``
    columns of ``V``.
    """

    name = "Hess"

    def _tangent_map(self, x, y):
        return _hvp_map(self.cur.flat, _mean_loss(self.cur.flat, x, y))

    def _matmat(self, V: torch.Tensor) -> torch.Tensor:
        out = super()._matmat(V)
        if self.cur.weight_decay:
            out = out + self.cur.weight_decay * V
        return out


class GaussNewtonOperator(_CurvatureOperator):
    """``G V = (1/N) sum_i J_i^T (diag(p_i) - p_i p_i^T) J_i V`` (eq. 2, 9).

    Per batch: ``J v`` by one forward-mode pass, the softmax Hessian applied per
    sample, then ``J^T u`` by one reverse-mode pass; under vmap the forward pass at
    theta is shared by the ``k`` columns.  No Hessian of the network is formed.
    """

    name = "G"

    def _tangent_map(self, x, y):
        flat = self.cur.flat

        def f(params):
            return flat.logits(params, x)

        def one(tangent):
            z, Jv = jvp(f, (flat.params,), (tangent,))  # (b, C), (b, C)
            prob = torch.softmax(z, dim=-1)
            # (diag(p) - p p^T) u = p * (u - <p, u>), per sample.
            U = prob * (Jv - (prob * Jv).sum(-1, keepdim=True))
            _, pullback = vjp(f, flat.params)
            return pullback(U / x.shape[0])[0]

        return one


class ResidualOperator(_CurvatureOperator):
    """``H V = (1/N) sum_i sum_c' r_{i,c'} d^2 f_c'(x_i; theta)/dtheta^2 V`` (eq. 2).

    ``r_i = p_i - onehot(y_i) = dl/dz`` at ``z_i``.  ``H`` is the Hessian of the
    linearised loss ``(1/N) sum_i r_i^T f(x_i; theta)`` with ``r_i`` held constant: it
    is computed (and detached) inside the function that is differentiated, so one
    forward-over-reverse pass gives ``H V`` at the cost of one Hessian product.
    """

    name = "H"

    def _tangent_map(self, x, y):
        flat = self.cur.flat

        def linearised_loss(params):
            z = flat.logits(params, x)
            # one-hot by scatter: F.one_hot checks the labels' values, which tracing
            # with fake tensors cannot follow
            onehot = torch.zeros_like(z).scatter(1, y[:, None], 1.0)
            r = torch.softmax(z, dim=-1) - onehot
            return (r.detach() * z).sum() / z.shape[0]

        return _hvp_map(flat, linearised_loss)


def _finite(out: torch.Tensor, what: str) -> torch.Tensor:
    if not bool(torch.isfinite(out).all()):
        bad = int((~torch.isfinite(out)).sum())
        raise FloatingPointError(
            f"{what} is not finite ({bad} NaN/Inf entries): check the model's weights "
            "and inputs for NaN/Inf or overflow"
        )
    return out


_cache_budget = budget_of  # the name the library used before it moved


# -- checks ----------------------------------------------------------------------------
def check_deterministic(flat: FlatModel, batches: Batches, num_classes: int) -> None:
    """Two passes over the data must read the same samples; labels and the number of
    classes must agree with the model.

    The checksum of a pass is ``sum_i <x_i, w>`` for a fixed random weight ``w`` of
    the input's shape (so that random flips and crops, which keep ``sum x``, change
    it) together with ``sum_i y_i``; it ignores the order of the samples, which does
    not change the mean loss.
    """
    sums = []
    weight = None
    for _ in range(2):
        sx = torch.zeros((), dtype=torch.float64, device=flat.device)
        scale = torch.zeros((), dtype=torch.float64, device=flat.device)
        sy = torch.zeros((), dtype=torch.int64, device=flat.device)
        count = 0
        for x, y in batches:
            if weight is None:
                _check_num_classes(flat, x, num_classes)
                gen = torch.Generator().manual_seed(12345)
                weight = torch.rand(x.shape[1:], generator=gen, dtype=torch.float64)
                weight = weight.to(flat.device)
            _check_labels(y, num_classes)
            weighted = x.to(torch.float64) * weight
            sx += weighted.sum()
            scale += weighted.abs().sum()
            sy += y.sum()
            count += int(y.shape[0])
        sums.append((float(sx), int(sy), count, float(scale)))
    (x1, y1, n1, s1), (x2, y2, n2, s2) = sums
    # the tolerance only absorbs round-off from a different summation order
    if n1 != n2 or y1 != y2 or abs(x1 - x2) > 1e-9 * max(s1, s2, 1e-300):
        raise ValueError(
            "data changed between two passes (checksums "
            f"{x1:.12g}/{y1}/{n1} vs {x2:.12g}/{y2}/{n2}): random augmentation or "
            "sampling makes the curvature operator random; use fixed inputs "
            "(no random flips or crops, no sampling with replacement)"
        )


def _check_num_classes(flat: FlatModel, x: torch.Tensor, num_classes: int) -> None:
    with torch.no_grad():
        x0 = x[:1].to(flat.dtype) if x.is_floating_point() else x[:1]
        z = flat.logits(flat.params, x0)
    if z.ndim != 2 or z.shape[1] != num_classes:
        raise ValueError(
            f"num_classes={num_classes} does not match the model's output of shape "
            f"{tuple(z.shape)}: expected logits of shape (batch, {num_classes})"
        )


def _check_labels(y: torch.Tensor, num_classes: int) -> None:
    if y.is_floating_point() or y.is_complex() or y.dtype == torch.bool:
        raise TypeError(f"labels must be integer class indices, got dtype {y.dtype}")
    if y.ndim != 1:
        raise ValueError(f"labels must be a 1-d tensor per batch, got {tuple(y.shape)}")
    if y.numel() and (int(y.min()) < 0 or int(y.max()) >= num_classes):
        raise ValueError(
            f"label out of range: labels must lie in [0, {num_classes}), got values "
            f"in [{int(y.min())}, {int(y.max())}]"
        )


def curvature(
    model: nn.Module,
    data: Any,
    num_classes: int,
    *,
    batch_size: int = 1024,
    device: str | torch.device = "auto",
    weight_decay: float = 0.0,
    check: bool = True,
    cache: bool | int | str = "auto",
    distributed: bool = False,
) -> Curvature:
    """Matrix-free Hess, G and H of the mean cross-entropy of ``model`` on ``data``.

    Parameters
    ----------
    model:
        A classifier ``x -> logits (b, C)`` in eval mode (BatchNorm uses its running
        statistics; dropout is off).  Moved to ``device``; its parameter dtype is the
        operators' dtype.
    data:
        A pair ``(X, Y)`` of tensors, or a re-iterable of ``(x, y)`` batches (a
        ``DataLoader``, a list); not a generator.  Labels are class indices.
    num_classes:
        ``C``; must match the model's output.
    batch_size:
        Samples per forward pass (1024 as in the paper, Section 5.4); batches of an
        iterable are split further when larger.  It changes cost, not results.
    device:
        ``"auto"`` (CUDA when present, else CPU), or any torch device.
    weight_decay:
        Adds ``weight_decay * I`` to the Hessian (and the matching terms to
        :meth:`Curvature.loss` and :meth:`Curvature.gradient`), not to G or H, so
        that ``Hess = G + H + weight_decay * I``.  The paper's Hessian has none.
    check:
        Before any product, read the data twice and refuse it if it changed between
        passes (random augmentation), if a label lies outside ``[0, C)`` or if the
        model's output is not ``C``-dimensional.  The eval-mode check on the model
        always runs.
    cache:
        The per-batch linearisation cache (:mod:`hessian_spectrum._cache`): from the
        second product on, each batch's product map is traced once, with its
        work at theta (forward and backward pass) computed once and stored, which
        makes later products 1.7-2x cheaper (Hess ~1.5x a gradient pass instead of
        ~2.8x on CPU) at the price of memory (640 MiB per 1,000 MNIST images for a
        207k-parameter CNN's Hessian, 11.4 GiB per 1,024 images for VGG11's).
        ``"auto"`` caches batches while the cache fits in a quarter of the memory
        available when ``curvature`` is called (free GPU memory on CUDA); a number
        is a budget in bytes; ``True`` caches every batch; ``False`` (or 0)
        recomputes every product, using the least memory.  Batches beyond the budget
        are recomputed; results are the same either way.
    distributed:
        Data-parallel products over the initialised ``torch.distributed`` process
        group (:mod:`hessian_spectrum._distributed`): ``data`` is this rank's shard
        (shards may differ in size), every product, :meth:`Curvature.loss` and
        :meth:`Curvature.gradient` is the mean over all ranks' samples, identical on
        every rank.  Every rank must call with the same model and settings and run
        the same products (Lanczos, subspace iteration and the densities do: they
        need no change).  NCCL on GPUs, gloo on CPUs.

    Returns
    -------
    Curvature
        With ``.hessian``, ``.G``, ``.H`` (LinearOperators), ``.loss()`` and
        ``.gradient()``.
    """
    if int(num_classes) < 2:
        raise ValueError(f"num_classes must be at least 2, got {num_classes}")
    if weight_decay < 0:
        raise ValueError(f"weight_decay must be non-negative, got {weight_decay}")
    reduce = reducer(distributed)
    check_eval_mode(model)
    dev = resolve_device(device)
    _cache_budget(cache, torch.device("cpu"))  # refuse a bad value before any work
    flat = FlatModel(model, dev)
    batches = Batches(data, batch_size, dev, allow_empty=bool(reduce))
    reduce.check(batches.num_samples, flat.theta())
    if check:
        check_deterministic(flat, batches, int(num_classes))
    return Curvature(flat, batches, int(num_classes), weight_decay, cache, reduce)
