r"""Three-level decomposition of G into A1, A2, B1, B2 (paper eqs. 4-32), matrix-free.

Notation (Section 1 and Appendix A of the paper).  Sample ``i`` has label ``y_i``,
logits ``z_i = f(x_i; theta)`` with Jacobian ``J_i`` (``C x p``) and softmax
probabilities ``p_i``.  For every class ``c'``

.. math::

    g_{i,c'} = (e_{c'} - p_i)^T J_i,\qquad
    G = \frac1N \sum_i J_i^T(\mathrm{diag}\,p_i - p_i p_i^T) J_i
      = \frac1N \sum_{i,c'} p_{i,c'}\, g_{i,c'} g_{i,c'}^T .

Class statistics (eqs. 17, 26), with ``i`` running over the samples of class ``c``:
``p_{c,c'} = sum_i p_{i,c'}``, ``p_c = sum_{c' != c} p_{c,c'}``, class counts ``n_c``,
and ``N = sum_c n_c``.  The paper divides by ``nC`` (``n`` samples in each of ``C``
classes); we divide by the total sample count ``N``, which equals ``nC`` on balanced
data and keeps every identity below exact on imbalanced data.  Then (eqs. 15-31)

.. math::

    g_{c,c'} = \frac{1}{p_{c,c'}}\sum_{i\in c} p_{i,c'} g_{i,c'},\quad
    g_c = \frac{1}{p_c}\sum_{c'\ne c} p_{c,c'} g_{c,c'},

    \Sigma_{c,c'} = \frac{1}{p_{c,c'}}\sum_{i\in c} p_{i,c'}
        (g_{i,c'}-g_{c,c'})(g_{i,c'}-g_{c,c'})^T,\quad
    \Sigma_c = \frac{1}{p_c}\sum_{c'\ne c} p_{c,c'} (g_{c,c'}-g_c)(g_{c,c'}-g_c)^T,

    G = \underbrace{\tfrac1N\sum_c p_c g_c g_c^T}_{A_1}
      + \underbrace{\tfrac1N\sum_c p_{c,c} g_{c,c} g_{c,c}^T}_{A_2}
      + \underbrace{\tfrac1N\sum_c p_c \Sigma_c}_{B_1}
      + \underbrace{\tfrac1N\sum_{c,c'} p_{c,c'} \Sigma_{c,c'}}_{B_2 = \sum_c B_{2,c}} .

``Sigma_c`` is centred at ``g_c``.  The paper's eq. 25 writes ``g_{c'}``, but only the
centring at ``g_c`` makes eq. 30 an identity (and ``A1 + A2 + B1 + B2 == G``).

How products are computed.  Write ``h_{c,c'} = p_{c,c'} g_{c,c'}
= sum_{i in c} p_{i,c'} g_{i,c'}`` (no division, so a vanishing ``p_{c,c'}`` is
harmless).  Every member is a combination of four "basis" operators

- ``G``;
- ``M = A1 + A2 + B1 = (1/N) sum_{c,c'} h_{c,c'} h_{c,c'}^T / p_{c,c'}``
  (eqs. 23, 27-31);
- ``A2`` (the ``c' = c`` terms of ``M``);
- ``A1 = (1/N) sum_c H_c H_c^T / p_c`` with ``H_c = sum_{c' != c} h_{c,c'} = p_c g_c``;

so that ``B1 = M - A2 - A1`` and ``B2 = G - M``.  With ``s_i = J_i v - (p_i^T J_i v) 1``
(so ``g_{i,c'}^T v = s_{i,c'}``):

- one forward-mode pass over the data gives all ``C^2`` scalars
  ``t_{c,c'} = h_{c,c'}^T v = sum_{i in c} p_{i,c'} s_{i,c'}`` and the per-sample
  vectors ``p_i * s_i`` (``G v = (1/N) sum_i J_i^T (p_i * s_i)``);
- ``sum_{c,c'} beta_{c,c'} h_{c,c'} = sum_i J_i^T u_i`` with
  ``u_i = w_i - p_i (1^T w_i)``, ``w_{i,c'} = beta_{y_i,c'} p_{i,c'}``: one reverse-mode
  pass, with ``beta`` built from ``t``.

A product with ``A1``, ``A2``, ``B1`` or ``M`` is therefore one forward-mode pass plus
one reverse-mode pass, the same work as one ``G`` product.  Members that contain ``G``
(``B2``, ``G - A1``, ...) also need ``p_i * s_i`` in the reverse pass: it is kept from
the forward pass (``N k C`` numbers for ``k`` vectors) when that fits
``memory_budget_bytes``, else recomputed (one more forward-mode pass).  Beyond that a
product holds ``O(p k + C^2 k)`` numbers: no class-gradient vector is ever stored, and
``C = 100`` costs what ``C = 10`` costs.

Example
-------
>>> import torch, hessian_spectrum as hs
>>> from hessian_spectrum.decomposition import decompose_G
>>> torch.manual_seed(0)  # doctest: +ELLIPSIS
<...>
>>> net = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.Tanh(),
...                           torch.nn.Linear(8, 3)).double().eval()
>>> X, Y = torch.randn(30, 4, dtype=torch.float64), torch.arange(30) % 3
>>> dec = decompose_G(net, (X, Y), num_classes=3, device="cpu")
>>> v = torch.randn(dec.p, dtype=torch.float64)
>>> parts = dec.members(v, ["A1", "A2", "B1", "B2", "G"])
>>> bool(torch.allclose(parts["A1"] + parts["A2"] + parts["B1"] + parts["B2"],
...                     parts["G"]))
True
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from functools import partial
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.func import jacrev, jvp, vjp, vmap

from ._cache import ProductCache, budget_of
from ._distributed import Reducer, reducer
from ._functional import Batches, FlatModel, check_eval_mode, resolve_device
from ._progress import Progress
from .operators import LinearOperator

__all__ = [
    "decompose_G",
    "GDecomposition",
    "ClassStatistics",
    "Attribution",
    "ClassTraces",
    "MEMBERS",
    "SOURCE_CODES",
]

#: The four members of eq. 32.
MEMBERS = ("A1", "A2", "B1", "B2")

#: Integer codes of eigenvalue sources, as stored in ``results/decomposition.nc``.
SOURCE_CODES = {"A1": 0, "B1": 1, "A2": 2}

# Coefficients of each named operator on the basis (G, M, A2, A1) described above.
_BASIS = {
    "G": (1.0, 0.0, 0.0, 0.0),
    "A1": (0.0, 0.0, 0.0, 1.0),
    "A2": (0.0, 0.0, 1.0, 0.0),
    "B1": (0.0, 1.0, -1.0, -1.0),
    "B2": (1.0, -1.0, 0.0, 0.0),
}
_TERM = re.compile(r"\s*([+-]?)\s*(G|A1|A2|B1|B2)\s*")


def _parse(expr: str) -> tuple[float, float, float, float]:
    """``"G-A1"``, ``"A1+A2+B1"``, ``"B2"`` -> coefficients on (G, M, A2, A1)."""
    pos, coef = 0, np.zeros(4)
    while pos < len(expr):
        m = _TERM.match(expr, pos)
        if m is None or m.end() == pos or (pos > 0 and not m.group(1)):
            raise ValueError(
                f"cannot parse operator {expr!r}: expected a signed sum of "
                f"{', '.join(_BASIS)} such as 'G-A1' or 'A1+A2+B1'"
            )
        sign = -1.0 if m.group(1) == "-" else 1.0
        coef += sign * np.asarray(_BASIS[m.group(2)])
        pos = m.end()
    if not expr.strip():
        raise ValueError("empty operator name")
    return tuple(float(c) for c in coef)


@dataclass(frozen=True)
class ClassStatistics:
    """Class statistics of a model on a labelled data set (eqs. 17 and 26).

    ``p_cc[c, c'] = sum_{i in c} p_{i,c'}`` (the paper's ``p_{c,c'}``),
    ``p_c[c] = sum_{c' != c} p_cc[c, c']``, ``counts[c] = n_c`` and
    ``num_samples = N``.  Tensors live on the decomposition's device and dtype.
    """

    p_cc: torch.Tensor
    p_c: torch.Tensor
    counts: torch.Tensor
    num_samples: int

    @property
    def num_classes(self) -> int:
        return int(self.counts.shape[0])


@dataclass(frozen=True)
class Attribution:
    """Eigenvalues of ``A1 + A2 + B1`` attributed to their source (Figure 7).

    ``values``: the ``C^2`` eigenvalues, descending (float64).  ``labels``: ``"A1"``
    for the top ``C``, ``"B1"`` for the next ``C^2 - 2C``, ``"A2"`` for the last ``C``
    (the paper's rule).  ``source``: the same as int8 codes (:data:`SOURCE_CODES`).
    ``class_mean_fraction``: for each eigenvector, the fraction of its squared norm
    inside ``span{g_c}`` (the span of ``A1``, which contains that of ``A2``); NaN for
    eigenvalues that are zero to working precision.  ``labels_by_projection``: the
    same counts of labels, assigned by that fraction instead of by order (the ``C``
    largest fractions ``"A1"``, the ``C`` zero eigenvalues ``"A2"``, the rest ``"B1"``);
    where it differs from ``labels``, the top-``C`` rule of the paper mislabels.
    ``method``: how the Gram matrix was obtained (``"stored"`` or ``"passes"``).
    """

    values: np.ndarray
    labels: np.ndarray
    source: np.ndarray
    class_mean_fraction: np.ndarray
    labels_by_projection: np.ndarray
    method: str


@dataclass(frozen=True)
class ClassTraces:
    """``Tr(B_{2,c}) / n_c`` per class (Figure 7, red) and its standard error.

    ``values`` and ``stderr`` are float64 numpy arrays of length ``C``; ``stderr`` is
    zero for ``method == "exact"``.  ``num_probes`` is the number of Hutchinson probe
    vectors (0 for the exact method).
    """

    values: np.ndarray
    stderr: np.ndarray
    method: str
    num_probes: int


def decompose_G(
    model: nn.Module,
    data: Any,
    num_classes: int,
    *,
    batch_size: int = 1024,
    device: str | torch.device = "auto",
    memory_budget_bytes: int = 2**30,
    distributed: bool = False,
    cache: bool | int | str = "auto",
) -> GDecomposition:
    """The three-level decomposition of the Gauss-Newton matrix ``G`` (eq. 32).

    ``model`` must be in eval mode wherever that matters (BatchNorm, Dropout); ``data``
    is a pair ``(X, Y)`` of tensors or a re-iterable of ``(x, y)`` batches that yields
    the same samples in the same order on every pass (no shuffling, no augmentation).
    One forward pass at construction computes the class statistics and validates the
    labels.  ``memory_budget_bytes`` bounds optional extra storage: the per-sample
    scalars kept between the two passes of a product (``N k C`` numbers) and the
    stored vectors ``h_{c,c'}`` (``C^2 p`` numbers) used for the Gram matrix of
    :meth:`GDecomposition.attributed_eigenvalues`; above it, passes over the data
    replace storage.

    The returned object's operators (``.G``, ``.A1``, ``.A2``, ``.B1``, ``.B2``,
    ``.without(name)``, ``.operator(expr)``) are :class:`LinearOperator` s in the
    model's dtype on ``device``.

    ``cache``: the linearisation cache of the two passes of a product
    (:mod:`hessian_spectrum._cache`), as in
    :func:`hessian_spectrum.curvature.curvature`: from a batch's second product on,
    its forward-mode map ``v -> p_i * s_i`` and its reverse-mode map (the pullback
    of the logits with the softmax at theta folded in) are traced once and their
    work at theta kept, so that a member's product costs about what a cached G
    product does.  ``"auto"`` (a quarter of the available memory), bytes, ``True``
    (no limit) or ``False``; results are the same either way.

    ``distributed=True``: data-parallel over the initialised ``torch.distributed``
    process group, as :func:`hessian_spectrum.curvature.curvature`: ``data`` is this
    rank's shard; the class statistics, every product, the Gram matrix and the B2
    traces are over all ranks' samples, identical on every rank.
    """
    if int(num_classes) < 2:
        raise ValueError(f"num_classes must be at least 2, got {num_classes}")
    reduce = reducer(distributed)
    check_eval_mode(model)
    dev = resolve_device(device)
    budget_of(cache, torch.device("cpu"))  # refuse a bad value before any work
    flat = FlatModel(model, dev)
    batches = Batches(data, batch_size, dev, allow_empty=bool(reduce))
    reduce.check(batches.num_samples, flat.theta())
    dec = GDecomposition(
        flat, batches, int(num_classes), int(memory_budget_bytes), reduce
    )
    dec.cache = ProductCache(budget_of(cache, dev))
    return dec


class GDecomposition:
    """A1, A2, B1, B2 (and G) of one model on one labelled data set.

    Build with :func:`decompose_G`.  Attributes: ``stats`` (:class:`ClassStatistics`),
    ``p``, ``num_classes``, ``dtype``, ``device``, ``memory_budget_bytes``.
    """

    def __init__(
        self,
        flat: FlatModel,
        batches: Batches,
        num_classes: int,
        budget: int,
        reduce: Reducer | None = None,
    ):
        self.reduce = reduce if reduce is not None else Reducer()
        self.flat = flat
        self.batches = batches
        self.num_classes = num_classes
        self.p = flat.p
        self.dtype = flat.dtype
        self.device = flat.device
        self.memory_budget_bytes = budget
        self._itemsize = torch.empty((), dtype=self.dtype).element_size()
        self.stats = self._class_statistics()
        P, pc, N = self.stats.p_cc, self.stats.p_c, self.stats.num_samples
        self._inv_P = torch.where(P > 0, 1.0 / P, torch.zeros_like(P))
        self._inv_pc = torch.where(pc > 0, 1.0 / pc, torch.zeros_like(pc))
        self._inv_NP = self._inv_P / N
        C = num_classes
        self._offdiag = 1.0 - torch.eye(C, dtype=self.dtype, device=self.device)
        self._operators: dict[str, LinearOperator] = {}
        self._grams: dict[str, torch.Tensor] = {}
        self.cache = ProductCache(0)  # decompose_G sets the configured one
        self._resident = [
            *flat.params.values(),
            *flat.frozen.values(),
            *flat.buffers.values(),
        ]

    def __repr__(self) -> str:
        return (
            f"GDecomposition(p={self.p}, N={self.stats.num_samples}, "
            f"C={self.num_classes}, dtype={self.dtype}, device={self.device}, "
            f"members=A1 A2 B1 B2)"
        )

    # -- data and class statistics -----------------------------------------------------
    def _batches(self):
        for x, y in self.batches:
            if torch.is_floating_point(x):
                x = x.to(self.dtype)
            yield x, y.reshape(-1).long()

    def _class_statistics(self) -> ClassStatistics:
        C = self.num_classes
        P = torch.zeros(C, C, dtype=self.dtype, device=self.device)
        counts = torch.zeros(C, dtype=torch.long, device=self.device)
        with torch.no_grad():
            for x, y in self._batches():
                bad = (y < 0) | (y >= C)
                if bool(bad.any()):
                    raise ValueError(
                        f"labels must lie in [0, {C}) for num_classes={C}; found "
                        f"{sorted(set(y[bad].tolist()))[:10]}"
                    )
                z = self.flat.logits(self.flat.params, x)
                if z.ndim != 2 or z.shape[1] != C:
                    raise ValueError(
                        f"model outputs logits of shape {tuple(z.shape)} per batch, "
                        f"but num_classes={C}: expected (batch, {C})"
                    )
                P.index_add_(0, y, torch.softmax(z, dim=-1))
                counts += torch.bincount(y, minlength=C)
        self.reduce.sum_(P)
        counts = self.reduce.sum_(counts.double()).round().long()
        empty = torch.nonzero(counts == 0).flatten().tolist()
        if empty:
            raise ValueError(
                f"classes {empty} have no samples in the data set; every class of "
                f"num_classes={C} needs at least one"
            )
        p_c = (P * (1.0 - torch.eye(C, dtype=P.dtype, device=P.device))).sum(1)
        return ClassStatistics(P, p_c, counts, int(counts.sum()))

    # -- the linearisation cache (hessian_spectrum._cache) -----------------------------
    def cache_info(self) -> dict[str, Any]:
        """What the linearisation cache holds (as ``Curvature.cache_info``)."""
        return self.cache.info()

    def clear_cache(self) -> None:
        """Free the linearisation cache (it refills from the next products)."""
        self.cache.clear()

    def _jvp_traceable(self, x: torch.Tensor, *tangents: torch.Tensor):
        """``[p_i * s_i, s_i]`` (``(b, C)`` each) for one tangent, as tensors."""
        flat = self.flat
        t = dict(zip(flat.names, tangents, strict=True))
        z, jv = jvp(partial(flat.logits, x=x), (flat.params,), (t,))
        prob = torch.softmax(z, dim=-1)
        s = jv - (jv * prob).sum(-1, keepdim=True)
        return [prob * s, s]

    def _vjp_traceable(self, x: torch.Tensor, w: torch.Tensor, g: torch.Tensor):
        """The pullback of ``U = w p - p (w^T p) + g`` (``p`` the softmax at theta)
        through the logits, as the list of parameter tensors."""
        flat = self.flat
        z, pullback = vjp(partial(flat.logits, x=x), flat.params)
        prob = torch.softmax(z.detach(), dim=-1)
        wp = w * prob
        (grads,) = pullback(wp - prob * wp.sum(-1, keepdim=True) + g)
        return [grads[n] for n in flat.names]

    def _cached(self, kind: str, index: int, x: torch.Tensor):
        """The bound traced map of batch ``index`` (``kind`` "jvp" or "vjp"), or
        ``None``: recompute."""
        if kind == "jvp":
            fn = self._jvp_traceable

            def examples():
                return [
                    torch.zeros(s, dtype=self.dtype, device=self.device)
                    for s in self.flat.shapes
                ]
        else:

            def fn(x, *cotangents):  # varargs: make_fx counts a method's arguments
                return self._vjp_traceable(x, *cotangents)

            shape = (x.shape[0], self.num_classes)

            def examples():
                zero = torch.zeros(shape, dtype=self.dtype, device=self.device)
                return [zero, zero.clone()]

        return self.cache.lookup(
            f"decomposition {kind}", index, [x], fn, examples, resident=self._resident
        )

    def _scalars(self, index: int, x: torch.Tensor, V: torch.Tensor):
        """``(p_i * s_i, s_i)`` of batch ``index``, cached when it can be."""
        bound = self._cached("jvp", index, x)
        if bound is None:
            return self._tangent_scalars(x, V)
        cols = [
            bound(*self.flat.unflatten(V[:, j]).values()) for j in range(V.shape[1])
        ]
        return torch.stack([c[0] for c in cols]), torch.stack([c[1] for c in cols])

    # -- the two passes ----------------------------------------------------------------
    def _forward(self, V: torch.Tensor, *, keep: bool = False, quad: bool = False):
        """One forward-mode pass: ``t (k, C, C)`` with ``t[j, c, c'] = h_{c,c'}^T V_j``.

        ``keep``: also return the per-batch ``(y, p_i * s_i)`` for the reverse pass.
        ``quad``: also return ``sq (k, C)``, ``sq[j, c] = sum_{i in c} sum_{c'}
        p_{i,c'} s_{i,c'}^2`` (``N V_j^T G_c V_j``).
        """
        C, k = self.num_classes, V.shape[1]
        t = V.new_zeros(k, C, C)
        sq = V.new_zeros(k, C) if quad else None
        kept = [] if keep else None
        for i, (x, y) in enumerate(self._batches()):
            ps, s = self._scalars(i, x, V)
            t.index_add_(1, y, ps)
            if quad:
                sq.index_add_(1, y, (ps * s).sum(-1))
            if keep:
                kept.append((y, ps))
        self.reduce.sum_(t)
        if quad:
            self.reduce.sum_(sq)
        return t, sq, kept

    def _tangent_scalars(self, x: torch.Tensor, V: torch.Tensor):
        """``(p_i * s_i, s_i)``, both ``(k, b, C)``; ``s_i = J_i v - (p_i^T J_i v)``."""
        z, JV = self.flat.jvp_logits(x, V)
        prob = torch.softmax(z, dim=-1)
        s = JV - (JV * prob).sum(-1, keepdim=True)
        return prob * s, s

    def _reverse(
        self,
        betas: torch.Tensor | None,
        g_coef: torch.Tensor,
        V: torch.Tensor,
        kept: list | None = None,
    ) -> torch.Tensor:
        """One reverse-mode pass: ``(p, m, k)`` outputs for ``m`` combinations.

        ``out[:, a, j] = sum_{c,c'} betas[a, j, c, c'] h_{c,c'} + g_coef[a] (G V)_j``
        (``betas`` carry their own ``1/N``).
        """
        m, k = g_coef.shape[0], V.shape[1]
        need_g = bool((g_coef != 0).any())
        out = V.new_zeros(self.p, m * k)
        kept_iter = iter(kept) if kept is not None else None
        N = self.stats.num_samples
        for i, (x, y) in enumerate(self._batches()):
            ps = None
            if need_g:
                if kept_iter is not None:
                    y_kept, ps = next(kept_iter)
                    if y_kept.shape != y.shape or not torch.equal(y_kept, y):
                        raise RuntimeError(
                            "data changed between two passes of one product (labels "
                            "differ batch by batch): iterate the data in a fixed order"
                        )
                else:
                    ps, _ = self._scalars(i, x, V)
            bound = self._cached("vjp", i, x)
            if bound is not None:
                zero = x.new_zeros(x.shape[0], self.num_classes, dtype=self.dtype)
                cols = []
                for a in range(m):
                    for j in range(k):
                        w = betas[a, j][y] if betas is not None else zero
                        g = (g_coef[a] / N) * ps[j] if ps is not None else zero
                        grads = bound(w, g)
                        cols.append(torch.cat([t.reshape(-1) for t in grads]))
                out += torch.stack(cols, dim=1)
                continue
            z, pullback = vjp(partial(self.flat.logits, x=x), self.flat.params)
            prob = torch.softmax(z.detach(), dim=-1)
            U = z.new_zeros(m, k, *z.shape)
            if betas is not None:
                w = betas[:, :, y, :] * prob
                U = w - prob * w.sum(-1, keepdim=True)
            if ps is not None:
                U = U + (g_coef / N)[:, None, None, None] * ps
            (grads,) = vmap(pullback)(U.reshape(m * k, *z.shape))
            out += self.flat.flatten_block(grads)
        self.reduce.sum_(out)
        return out.reshape(self.p, m, k)

    def _betas(self, t: torch.Tensor, coefs: torch.Tensor) -> torch.Tensor:
        """``(m, k, C, C)`` coefficients on ``h_{c,c'}`` for combinations ``coefs``."""
        b_M = t * self._inv_NP
        b_A2 = b_M * (1.0 - self._offdiag)
        T = (t * self._offdiag).sum(-1)  # H_c^T v
        b_A1 = (T * self._inv_pc / self.stats.num_samples)[..., None] * self._offdiag
        basis = torch.stack([b_M, b_A2, b_A1])  # (3, k, C, C)
        return torch.einsum("ab,bkcd->akcd", coefs[:, 1:], basis)

    def _apply(self, coefs: torch.Tensor, V: torch.Tensor) -> torch.Tensor:
        """Products of ``m`` combinations with ``V (p, k)`` from one pair of passes."""
        coefs = coefs.to(device=self.device, dtype=self.dtype)
        g_coef = coefs[:, 0]
        if not bool((coefs[:, 1:] != 0).any()):
            return self._reverse(None, g_coef, V)
        keep_numbers = self.stats.num_samples * V.shape[1] * self.num_classes
        keep = bool((g_coef != 0).any()) and (
            keep_numbers * self._itemsize <= self.memory_budget_bytes
        )
        t, _, kept = self._forward(V, keep=keep)
        return self._reverse(self._betas(t, coefs), g_coef, V, kept)

    # -- operators ---------------------------------------------------------------------
    def operator(self, expr: str) -> LinearOperator:
        """The operator named by ``expr``: a signed sum of ``G``, ``A1``, ``A2``,
        ``B1``, ``B2``, e.g. ``"B2"``, ``"G-A1"``, ``"A1+A2+B1"``.  Any such
        combination costs one forward-mode and one reverse-mode pass per product."""
        key = expr.replace(" ", "")
        if key not in self._operators:
            self._operators[key] = _MemberOperator(self, key, _parse(key))
        return self._operators[key]

    @property
    def G(self) -> LinearOperator:
        """``G = (1/N) sum_i J_i^T (diag p_i - p_i p_i^T) J_i``."""
        return self.operator("G")

    @property
    def A1(self) -> LinearOperator:
        """``A1 = (1/N) sum_c p_c g_c g_c^T`` (rank <= C)."""
        return self.operator("A1")

    @property
    def A2(self) -> LinearOperator:
        """``A2 = (1/N) sum_c p_{c,c} g_{c,c} g_{c,c}^T`` (rank <= C)."""
        return self.operator("A2")

    @property
    def B1(self) -> LinearOperator:
        """``B1 = (1/N) sum_c p_c Sigma_c`` (Sigma_c centred at g_c)."""
        return self.operator("B1")

    @property
    def B2(self) -> LinearOperator:
        """``B2 = (1/N) sum_{c,c'} p_{c,c'} Sigma_{c,c'} = G - A1 - A2 - B1``."""
        return self.operator("B2")

    def without(self, name: str) -> LinearOperator:
        """``G - name`` for ``name`` in A1, A2, B1, B2 (Figure 1), at the cost of one
        ``G`` product."""
        if name not in MEMBERS:
            raise ValueError(f"without() takes one of {MEMBERS}, got {name!r}")
        return self.operator(f"G-{name}")

    def members(
        self, v: torch.Tensor, names: Sequence[str] = MEMBERS
    ) -> dict[str, torch.Tensor]:
        """Products of ``v`` (``(p,)`` or ``(p, k)``) with several operators at once.

        ``names`` are operator expressions as in :meth:`operator`.  All of them come
        from one forward-mode pass and one reverse-mode pass over the data (the
        reverse pass pulls back ``len(names) * k`` cotangents per batch).
        """
        if isinstance(names, str):
            names = [names]
        if v.ndim not in (1, 2) or v.shape[0] != self.p:
            raise ValueError(
                f"members expects shape ({self.p},) or ({self.p}, k); got "
                f"{tuple(v.shape)}"
            )
        V = (v.unsqueeze(1) if v.ndim == 1 else v).to(self.device, self.dtype)
        coefs = torch.tensor([_parse(n.replace(" ", "")) for n in names])
        out = self._apply(coefs, V)
        return {
            n: out[:, a, 0] if v.ndim == 1 else out[:, a, :]
            for a, n in enumerate(names)
        }

    # -- eigenvalues of A1 + A2 + B1 ---------------------------------------------------
    def gram(
        self, method: str = "auto", block_size: int = 32, progress: Any = False
    ) -> torch.Tensor:
        """``K = H^T H`` (``C^2 x C^2``, float64, CPU) of the vectors ``h_{c,c'}``.

        Column ``c C + c'`` is ``h_{c,c'} = p_{c,c'} g_{c,c'}``.  ``"stored"`` computes
        ``H`` (``p x C^2``) by ``C^2 / block_size`` reverse-mode passes, then ``H^T H``.
        ``"passes"`` never holds more than ``block_size`` of the vectors: each block
        ``H E`` comes from a reverse-mode pass and ``H^T (H E)`` from a forward-mode
        pass (``2 C^2 / block_size`` passes in all).  ``"auto"`` stores when ``C^2 p``
        numbers fit ``memory_budget_bytes``.  ``K`` itself holds ``C^4`` numbers
        (800 MB at ``C = 100``).  Cached per method.  ``progress``: ``True`` for a
        line every few seconds on stderr, or a callable (:mod:`._progress`).
        """
        method = self._gram_method(method)
        if method in self._grams:
            return self._grams[method]
        C2 = self.num_classes**2
        K = torch.zeros(C2, C2, dtype=torch.float64)
        H = None
        if method == "stored":
            H = torch.empty(self.p, C2, dtype=self.dtype, device=self.device)
        blocks = -(-C2 // block_size)
        prog = Progress(f"gram ({method})", blocks, progress, unit="block")
        for done, (cols, block) in enumerate(self._h_blocks(block_size), 1):
            if H is not None:
                H[:, cols] = block
            else:
                t, _, _ = self._forward(block)
                K[cols.cpu()] = t.reshape(len(cols), C2).double().cpu()
            prog.update(done)
        prog.finish(blocks)
        if H is not None:
            K = (H.T @ H).double().cpu()
        K = 0.5 * (K + K.T)
        self._grams[method] = K
        return K

    def _h_blocks(self, block_size: int):
        """Yield ``(cols, H[:, cols])``, one reverse-mode pass per block of columns."""
        C, C2 = self.num_classes, self.num_classes**2
        zero = torch.zeros(1, dtype=self.dtype, device=self.device)
        for start in range(0, C2, block_size):
            cols = torch.arange(start, min(start + block_size, C2), device=self.device)
            E = torch.zeros(len(cols), C2, dtype=self.dtype, device=self.device)
            E[torch.arange(len(cols), device=self.device), cols] = 1.0
            shape_only = E.new_empty(self.p, len(cols))
            block = self._reverse(E.reshape(1, len(cols), C, C), zero, shape_only)
            yield cols, block[:, 0, :]

    def _gram_method(self, method: str) -> str:
        if method == "auto":
            need = self.num_classes**2 * self.p * self._itemsize
            return "stored" if need <= self.memory_budget_bytes else "passes"
        if method not in ("stored", "passes"):
            raise ValueError(
                f"method must be 'auto', 'stored' or 'passes', got {method!r}"
            )
        return method

    def attributed_eigenvalues(
        self, method: str = "auto", block_size: int = 32, progress: Any = False
    ) -> Attribution:
        r"""All ``C^2`` eigenvalues of ``A1 + A2 + B1``, exactly, with their source.

        Method.  ``A1 + A2 + B1 = M = H W H^T`` with ``H = [h_{c,c'}]`` (``p x C^2``)
        and ``W = diag(1 / (N p_{c,c'}))`` (eqs. 23 and 27-31), so its nonzero
        eigenvalues are those of the ``C^2 x C^2`` matrix ``W^{1/2} (H^T H) W^{1/2}``
        (see :meth:`gram` for how ``H^T H`` is obtained); computed in float64.

        Attribution follows the paper (Figure 7): sorted descending, the top ``C`` are
        labelled ``A1``, the next ``C^2 - 2C`` ``B1`` and the last ``C`` ``A2``.  Two
        exact identities qualify this.  ``sum_{c'} p_{i,c'} g_{i,c'} = 0`` for every
        sample, hence ``sum_{c'} h_{c,c'} = 0``: ``rank(A1 + A2 + B1) <= C^2 - C``, so
        the last ``C`` eigenvalues (labelled A2) are zero up to round-off, and
        ``g_{c,c} = -(p_c / p_{c,c}) g_c``: ``A2`` lives in ``span{g_c}``, the span of
        ``A1``, and its mass shows up among the top ``C``.  ``span{g_c}`` is not
        orthogonal to the range of ``B1``, so eigenvectors mix and the rule by order
        can mislabel.  As a check, ``class_mean_fraction`` gives for each eigenvector
        ``u`` the fraction ``|P u|^2`` with ``P`` the orthogonal projector on
        ``span{g_c}`` (computed in the Gram space: ``u = H W^{1/2} q / sqrt(lambda)``
        for an eigenvector ``q`` of the small matrix): near 1 for A1/A2 directions,
        near 0 for B1 directions; ``labels_by_projection`` assigns the labels by it.
        """
        K = self.gram(method, block_size, progress)
        C, C2 = self.num_classes, self.num_classes**2
        d = self._inv_NP.reshape(C2).double().cpu().sqrt()
        vals, Q = torch.linalg.eigh(d[:, None] * K * d[None, :])
        vals, Q = vals.flip(0), Q.flip(1)
        # span{g_c} = span{H S}, S[c C + c', c] = 1 for c' != c.
        S = (1.0 - torch.eye(C, dtype=torch.float64)).reshape(C2, 1) * torch.eye(
            C, dtype=torch.float64
        ).repeat_interleave(C, dim=0)
        rtol = 1e-10 if self.dtype == torch.float64 else 1e-5
        nonzero = vals > rtol * max(float(vals.max()), 1e-300)
        R = S.T @ K @ (d[:, None] * Q) / vals.clamp_min(1e-300).sqrt()
        inv = torch.linalg.pinv(S.T @ K @ S, hermitian=True, rtol=rtol)
        frac = torch.einsum("ij,ik,kj->j", R, inv, R)
        frac = torch.where(nonzero, frac, torch.full_like(frac, float("nan")))
        labels = np.array(["A1"] * C + ["B1"] * (C2 - 2 * C) + ["A2"] * C)
        source = np.array([SOURCE_CODES[s] for s in labels], dtype=np.int8)
        frac = frac.numpy()
        rank = np.argsort(-np.nan_to_num(frac, nan=-1.0), kind="stable")
        by_projection = np.empty_like(labels)
        by_projection[rank] = labels
        return Attribution(
            vals.numpy(), labels, source, frac, by_projection, self._gram_method(method)
        )

    def member_eigenvalues(
        self, method: str = "auto", block_size: int = 32, progress: Any = False
    ) -> dict[str, np.ndarray]:
        r"""The ``C`` eigenvalues of ``A1`` and of ``A2`` alone, exactly, descending.

        ``A1 = H S D_1 S^T H^T`` with ``S`` summing the columns ``c' != c`` of class
        ``c`` (``H_c = p_c g_c``) and ``D_1 = diag(1 / (N p_c))``; ``A2 = H E D_2 E^T
        H^T`` with ``E`` picking the columns ``c' = c`` and ``D_2 = diag(1 / (N
        p_{c,c}))``.  Their nonzero eigenvalues are those of the ``C x C`` matrices
        ``D^{1/2} (S^T K S) D^{1/2}`` and ``D_2^{1/2} (E^T K E) D_2^{1/2}`` with ``K``
        the Gram matrix of :meth:`gram` (no further pass).  Because ``g_{c,c} =
        -(p_c / p_{c,c}) g_c``, ``A2``'s are those of ``A1`` reweighted by ``p_c /
        p_{c,c}``: small once the network puts most probability on the true class.
        """
        K = self.gram(method, block_size, progress)
        C = self.num_classes
        eye = torch.eye(C, dtype=torch.float64)
        S = (1.0 - eye).reshape(C * C, 1) * eye.repeat_interleave(C, dim=0)
        E = eye.reshape(C * C, 1) * eye.repeat_interleave(C, dim=0)
        N = float(self.stats.num_samples)
        out = {}
        for name, sel, weights in (
            ("A1", S, self.stats.p_c),
            ("A2", E, torch.diagonal(self.stats.p_cc)),
        ):
            w = weights.double().cpu()
            d = torch.where(w > 0, 1.0 / (N * w), torch.zeros_like(w)).sqrt()
            small = d[:, None] * (sel.T @ K @ sel) * d[None, :]
            vals = torch.linalg.eigvalsh(0.5 * (small + small.T))
            out[name] = vals.flip(0).numpy()
        return out

    # -- per-class traces of B2 --------------------------------------------------------
    def b2_class_traces(
        self,
        method: str = "hutchinson",
        num_probes: int = 64,
        seed: int = 0,
        block_size: int = 32,
        progress: Any = False,
    ) -> ClassTraces:
        r"""``Tr(B_{2,c}) / n_c`` for every class ``c`` (Figure 7, red).

        ``B_{2,c} = (1/N) sum_{c'} p_{c,c'} Sigma_{c,c'}`` is ``B2`` restricted to the
        samples of class ``c``; dividing its trace by the class count ``n_c`` gives the
        paper's ``Tr(B_{2,c}) / n``.  Its quadratic form needs only one forward-mode
        pass (all classes and ``block_size`` probes at once):
        ``v^T B_{2,c} v = (1/N) [sum_{i in c} sum_{c'} p_{i,c'} s_{i,c'}^2
        - sum_{c'} t_{c,c'}^2 / p_{c,c'}]``.

        ``"hutchinson"`` averages it over ``num_probes`` Rademacher vectors drawn from
        a CPU generator seeded by ``seed`` (``num_probes / block_size`` forward-mode
        passes) and reports the standard error ``std / sqrt(num_probes)`` (sample
        standard deviation over probes).

        ``"exact"`` uses ``Tr(B_{2,c}) = (1/N) [sum_{i in c} Tr(Lambda_i J_i J_i^T)
        - sum_{c'} |h_{c,c'}|^2 / p_{c,c'}]`` with ``Lambda_i = diag p_i - p_i p_i^T``
        (``Tr(Lambda_i J_i J_i^T) = sum_{c'} p_{i,c'} |g_{i,c'}|^2``): per-sample
        Jacobians (``C`` backward passes per sample, vmapped over chunks of
        ``memory_budget_bytes / (C p)`` samples) plus the norms ``|h_{c,c'}|^2``
        from the diagonal of :meth:`gram` when already computed, else from
        ``C^2 / block_size`` reverse-mode passes.  Its cost grows with ``N C``, not
        with ``p``; for large data sets prefer ``"hutchinson"``.  ``progress``:
        ``True`` for a line every few seconds on stderr, or a callable
        (:mod:`._progress`).
        """
        C, N = self.num_classes, self.stats.num_samples
        counts = self.stats.counts.double().cpu()
        inv_P = self._inv_P.double().cpu()
        if method == "exact":
            per_sample = self._per_sample_traces(progress).double().cpu()
            if self._grams:
                norms = next(iter(self._grams.values())).diagonal()
            else:
                norms = torch.zeros(C * C, dtype=torch.float64)
                for cols, block in self._h_blocks(block_size):
                    norms[cols.cpu()] = block.pow(2).sum(0).double().cpu()
            values = (per_sample - (norms.reshape(C, C) * inv_P).sum(1)) / N
            stderr = torch.zeros(C, dtype=torch.float64)
            return ClassTraces((values / counts).numpy(), stderr.numpy(), method, 0)
        if method != "hutchinson":
            raise ValueError(f"method must be 'exact' or 'hutchinson', got {method!r}")
        if num_probes < 2:
            raise ValueError(f"hutchinson needs num_probes >= 2, got {num_probes}")
        gen = torch.Generator(device="cpu").manual_seed(seed)
        forms = []
        prog = Progress("B2 class traces", num_probes, progress, unit="probe")
        for start in range(0, num_probes, block_size):
            k = min(block_size, num_probes - start)
            bits = torch.randint(0, 2, (self.p, k), generator=gen, dtype=torch.int64)
            V = (2 * bits - 1).to(device=self.device, dtype=self.dtype)
            t, sq, _ = self._forward(V, quad=True)
            q = sq.double().cpu() - (t.double().cpu() ** 2 * inv_P).sum(-1)
            forms.append(q / N)
            prog.update(start + k)
        prog.finish(num_probes)
        forms = torch.cat(forms)  # (num_probes, C): v^T B_{2,c} v
        values = forms.mean(0)
        stderr = forms.std(0, correction=1) / num_probes**0.5
        return ClassTraces(
            (values / counts).numpy(), (stderr / counts).numpy(), method, num_probes
        )

    def _per_sample_traces(self, progress: Any = False) -> torch.Tensor:
        """``sum_{i in c} Tr(Lambda_i J_i J_i^T)`` per class (per-sample Jacobians)."""
        C, params = self.num_classes, self.flat.params
        chunk = max(1, self.memory_budget_bytes // (C * self.p * self._itemsize))
        out = torch.zeros(C, dtype=self.dtype, device=self.device)

        def one(prm, xi):
            return self.flat.logits(prm, xi.unsqueeze(0))[0]

        jacobians = vmap(jacrev(one), in_dims=(None, 0))
        N = self.stats.num_samples
        prog = Progress("B2 class traces (exact)", N, progress, unit="sample")
        seen = 0
        for x, y in self._batches():
            for start in range(0, len(y), chunk):
                xs, ys = x[start : start + chunk], y[start : start + chunk]
                b = len(ys)
                flat_J = [J.reshape(b, C, -1) for J in jacobians(params, xs).values()]
                JJ = sum(J @ J.transpose(1, 2) for J in flat_J)
                with torch.no_grad():
                    prob = torch.softmax(self.flat.logits(params, xs), dim=-1)
                lam = torch.diag_embed(prob) - prob[:, :, None] * prob[:, None, :]
                out.index_add_(0, ys, (lam * JJ).sum((1, 2)))
                seen += b
                prog.update(seen)
        prog.finish(seen)
        return self.reduce.sum_(out)


class _MemberOperator(LinearOperator):
    """A signed combination of G, A1, A2, B1, B2 as a matrix-free operator."""

    def __init__(self, dec: GDecomposition, name: str, coefs: tuple[float, ...]):
        super().__init__(dec.p, dec.dtype, dec.device)
        self.dec = dec
        self.name = name
        self.coefs = torch.tensor([coefs])

    def _matmat(self, V: torch.Tensor) -> torch.Tensor:
        return self.dec._apply(self.coefs, V)[:, 0, :]

    def __repr__(self) -> str:
        return f"{self.name}(p={self.size}, dtype={self.dtype})"
