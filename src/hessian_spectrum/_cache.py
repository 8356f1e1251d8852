"""Per-batch linearisation cache: the work of a product that depends only on theta
and the batch, done once and reused by every later product.

A curvature product over one batch, ``v -> A_batch v``, is linear in ``v``, but
computing it from scratch repeats the forward pass (and, for the Hessian, the backward
pass) of the network at fixed ``theta`` every time.  :class:`LinearTemplate` traces
the map once per operator and batch shape with *fake* tensors
(``make_fx(tracing_mode="fake")``: shapes only, no arithmetic), turns the batch into
graph constants and splits off every node that does not depend on ``v``
(``torch.fx.experimental.const_fold``).  :meth:`LinearTemplate.bind` runs that part for
one batch (about a forward and backward pass) and keeps its results; a product then
runs the tangent part alone.  Measured (``benchmarks/RESULTS.md``,
``benchmarks/bench_gpu.py``): on a 207k-parameter CNN with 1,000 MNIST images, one CPU
thread, a Hessian product drops from ~2.8x to ~1.5x a gradient pass and a
Gauss-Newton product from ~1.9x to ~0.9x; on an H200, VGG11 (28M parameters, batches
of 1,024 CIFAR-sized images) from 2.9x to 1.7x and from 2.1x to 1.25x.  This is what
``torch.func.linearize`` does, except that it traces with real tensors, once per
batch (a full extra product plus Python overhead: ~15 gradient passes of set-up on
that CNN, against ~3 here).

The price is memory: the folded constants (activations and their derivatives at
theta) stay alive while the operator does: 640 MiB per 1,000 MNIST images for that
CNN's Hessian, 11.4 GiB per 1,024 images for VGG11's.  :class:`ProductCache`
therefore caches batch by batch under a byte budget, from a batch's second product on
(a single product never pays the set-up), and recomputes the batches that do not fit.
Anything that cannot be traced (a model with data-dependent control flow, an
unsupported op) or an out-of-memory error while binding switches the cache off for
that operator with a warning; results do not change, only speed.
"""

from __future__ import annotations

import os
import warnings
from argparse import ArgumentTypeError
from collections.abc import Callable, Iterable
from typing import Any

import torch

__all__ = [
    "LinearTemplate",
    "BoundMap",
    "ProductCache",
    "auto_budget",
    "budget_of",
    "cache_option",
]

AUTO_FRACTION = 0.25  # of the memory available when the operator is built


class LinearTemplate:
    """``fn(*batch, *tangents) -> list of tensors``, linear in the tangents, traced
    once for batches of one shape and bound to each batch by :meth:`bind`.

    The batch tensors become graph constants (``get_attr`` nodes) after tracing, so
    that constant folding separates the theta-and-batch work (run by :meth:`bind`, once
    per batch) from the tangent work (run by every product).  Tracing is the slow part
    on a GPU (Python over thousands of ops); it is paid once per operator and batch
    shape, not once per batch.  Raises whatever tracing raises.
    """

    def __init__(
        self,
        fn: Callable[..., list[torch.Tensor]],
        batch: list[torch.Tensor],
        tangents: list[torch.Tensor],
    ):
        with warnings.catch_warnings():
            # torch's tracing machinery warns about its own internals (jit.script
            # deprecation, get_attr nodes it adds itself): nothing a user can act on
            warnings.simplefilter("ignore", UserWarning)
            warnings.simplefilter("ignore", FutureWarning)
            warnings.simplefilter("ignore", DeprecationWarning)
            from torch.fx.experimental import const_fold
            from torch.fx.experimental.proxy_tensor import make_fx

            # Fake tracing: shapes only, no arithmetic.  Closures over real tensors
            # (the parameters) become constants; batch and tangents are placeholders.
            graph = make_fx(fn, tracing_mode="fake", _allow_non_fake_inputs=True)(
                *batch, *tangents
            )
            placeholders = [n for n in graph.graph.nodes if n.op == "placeholder"]
            if len(placeholders) != len(batch) + len(tangents):
                raise RuntimeError(
                    f"traced graph has {len(placeholders)} inputs, expected "
                    f"{len(batch) + len(tangents)}"
                )
            self.batch_names = []
            for i, node in enumerate(placeholders[: len(batch)]):
                name = f"_hs_batch_{i}"
                setattr(graph, name, batch[i])
                with graph.graph.inserting_before(node):
                    attr = graph.graph.get_attr(name)
                attr.meta = node.meta.copy()
                node.replace_all_uses_with(attr)
                graph.graph.erase_node(node)
                self.batch_names.append(name)
            graph.recompile()
            self.module = const_fold.split_const_subgraphs(graph)
        # the template never folds by itself: :meth:`bind` does, per batch
        self.module.has_folding_been_run = True
        self.const = self.module.const_subgraph_module
        self.attrs_name = self.module.fx_const_folded_attrs_name
        self._release()

    def _set_batch(self, module: torch.nn.Module, batch) -> None:
        for name, t in zip(self.batch_names, batch, strict=True):
            setattr(module, name, t)

    def _release(self) -> None:
        """Drop the references to the last batch and its constants."""
        for module in (self.module, self.const):
            if module is not None:
                self._set_batch(module, [None] * len(self.batch_names))
        if self.attrs_name is not None:
            setattr(self.module, self.attrs_name, None)

    def bind(self, batch: list[torch.Tensor]) -> BoundMap:
        """Run the theta-and-batch part for ``batch`` (about a forward and backward
        pass) and keep its results."""
        folded = None
        if self.const is not None and self.attrs_name is not None:
            self._set_batch(self.const, batch)
            try:
                with torch.no_grad():
                    out = self.const()
            finally:
                self._release()
            if isinstance(out, tuple):
                folded = torch.nn.ParameterList(
                    [_param(t) for t in out]  # plain ints are never produced here
                )
            else:
                folded = _param(out)
        return BoundMap(self, list(batch), folded)

    def run(self, bound: BoundMap, tangents) -> list[torch.Tensor]:
        self._set_batch(self.module, bound.batch)
        if self.attrs_name is not None:
            setattr(self.module, self.attrs_name, bound.folded)
        try:
            return self.module(*tangents)
        finally:
            self._release()


def _param(t: torch.Tensor) -> torch.nn.Parameter:
    # a copy, as torch's own run_folding makes: a product can never modify the
    # parameters or the batch through a constant that aliases them
    return torch.nn.Parameter(t.clone(), requires_grad=False)


class BoundMap:
    """A :class:`LinearTemplate` bound to one batch: ``bound(*tangents)``."""

    __slots__ = ("template", "batch", "folded")

    def __init__(self, template: LinearTemplate, batch, folded):
        self.template, self.batch, self.folded = template, batch, folded

    def __call__(self, *tangents: torch.Tensor) -> list[torch.Tensor]:
        return self.template.run(self, tangents)

    def nbytes(self, exclude: Iterable[torch.Tensor] = ()) -> int:
        """Bytes of the distinct storages of the folded constants, not counting
        those shared with ``exclude`` or the batch."""
        if self.folded is None:
            return 0
        tensors = (
            list(self.folded)
            if isinstance(self.folded, torch.nn.ParameterList)
            else [self.folded]
        )
        return _storage_bytes(tensors, exclude=[*self.batch, *exclude])


def _storage_bytes(
    tensors: Iterable[torch.Tensor], exclude: Iterable[torch.Tensor] = ()
) -> int:
    """Bytes of the distinct storages of ``tensors``, not counting those of
    ``exclude``."""
    seen = {t.untyped_storage().data_ptr() for t in exclude if t is not None}
    total = 0
    for t in tensors:
        storage = t.untyped_storage()
        if storage.data_ptr() not in seen:
            seen.add(storage.data_ptr())
            total += storage.nbytes()
    return total


def auto_budget(device: torch.device) -> int:
    """A quarter of the memory available now: free CUDA memory on a GPU,
    ``MemAvailable`` of ``/proc/meminfo`` on the CPU (0 where it cannot be read)."""
    if device.type == "cuda":
        free, _ = torch.cuda.mem_get_info(device)
        return int(AUTO_FRACTION * free)
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(AUTO_FRACTION * int(line.split()[1]) * 1024)
    except OSError:
        pass
    try:  # other Unixes
        pages = os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
        return int(AUTO_FRACTION * pages)
    except (ValueError, OSError, AttributeError):
        return 0


class ProductCache:
    """Traced per-batch product maps of several operators, under one byte budget.

    ``budget``: ``None`` for no limit, else bytes (0 disables the cache).  Batches are
    keyed by ``(operator, position in the pass)``; a cached batch is checked against
    the batch now at that position (same tensors, or equal values), so a data set
    whose order changes between passes switches the cache off instead of mixing
    batches.
    """

    def __init__(self, budget: int | None):
        self.budget = budget
        self.entries: dict[tuple[str, int], tuple[BoundMap, int]] = {}
        self.templates: dict[tuple, LinearTemplate] = {}
        self.visits: dict[tuple[str, int], int] = {}
        self.per_sample: dict[str, float] = {}  # bytes per sample, measured
        self.off: dict[str, str] = {}  # operator -> why caching is off
        self.full: set[str] = set()

    @property
    def used(self) -> int:
        """Bytes held by the cached batches."""
        return sum(nbytes for _, nbytes in self.entries.values())

    @property
    def enabled(self) -> bool:
        return self.budget is None or self.budget > 0

    def info(self) -> dict[str, Any]:
        """What is cached: batches and bytes per operator, the budget, and why caching
        is off where it is."""
        per_op: dict[str, dict[str, int]] = {}
        for (op, _), (_, nbytes) in self.entries.items():
            d = per_op.setdefault(op, {"batches": 0, "bytes": 0})
            d["batches"] += 1
            d["bytes"] += nbytes
        return {
            "budget_bytes": self.budget,
            "used_bytes": self.used,
            "operators": per_op,
            "off": dict(self.off),
        }

    def clear(self) -> None:
        """Drop every cached batch (the traced templates stay: they hold no batch)."""
        self.entries.clear()
        self.visits.clear()
        self.full.clear()

    def lookup(
        self,
        op: str,
        index: int,
        batch: list[torch.Tensor],
        fn: Callable[..., list[torch.Tensor]],
        tangents: Callable[[], list[torch.Tensor]],
        resident: Iterable[torch.Tensor],
    ) -> BoundMap | None:
        """The traced map of batch ``index`` of operator ``op``, bound to ``batch``;
        built on the batch's second visit when the budget allows (``fn(*batch,
        *tangents)`` is traced once per batch shape, with ``tangents()`` as examples).
        ``None`` means: recompute this product."""
        if not self.enabled or op in self.off:
            return None
        key = (op, index)
        entry = self.entries.get(key)
        if entry is not None:
            bound = entry[0]
            if len(bound.batch) == len(batch) and all(
                _same(a, b) for a, b in zip(bound.batch, batch, strict=True)
            ):
                return bound
            self._switch_off(
                op,
                f"batch {index} differs from the one cached at that position (the "
                "data's order or content changes between passes)",
                drop=True,
            )
            return None
        seen = self.visits.get(key, 0) + 1
        self.visits[key] = seen
        if seen < 2 or op in self.full:
            return None
        size = int(batch[0].shape[0])
        estimate = self.per_sample.get(op, 0.0) * size
        if self.budget is not None and self.used + estimate > self.budget:
            self.full.add(op)
            return None
        signature = (op, *((tuple(t.shape), t.dtype, t.device) for t in batch))
        try:
            template = self.templates.get(signature)
            if template is None:
                template = LinearTemplate(fn, batch, tangents())
                self.templates[signature] = template
            bound = template.bind(batch)
        except torch.OutOfMemoryError:
            self.clear()
            if torch.cuda.is_available():
                torch.cuda.empty_cache()
            self._switch_off(op, "out of memory while building it", drop=False)
            return None
        except Exception as err:  # tracing is best effort: fall back, say why
            self._switch_off(op, f"{type(err).__name__}: {err}".split("\n")[0], False)
            return None
        nbytes = bound.nbytes(exclude=resident)
        self.per_sample.setdefault(op, nbytes / max(size, 1))
        if self.budget is not None and self.used + nbytes > self.budget:
            self.full.add(op)  # measured larger than estimated: drop it, stop here
            return None
        self.entries[key] = (bound, nbytes)
        return bound

    def _switch_off(self, op: str, why: str, drop: bool) -> None:
        self.off[op] = why
        if drop:
            for key in [k for k in self.entries if k[0] == op]:
                del self.entries[key]
        warnings.warn(
            f"{op} products: linearisation cache off ({why}); every product is "
            "recomputed from the data (same results, slower)",
            RuntimeWarning,
            stacklevel=4,
        )


def _same(a: torch.Tensor, b: torch.Tensor) -> bool:
    if a is b:
        return True
    if a.shape != b.shape or a.dtype != b.dtype or a.device != b.device:
        return False
    if a.data_ptr() == b.data_ptr() and a.stride() == b.stride():
        return True
    return bool(torch.equal(a, b))


def budget_of(cache: bool | int | str, device: torch.device) -> int | None:
    """The ``cache=`` argument of the operators -> a byte budget (``None``: no
    limit; 0: no cache); ``"auto"``: :func:`auto_budget` of ``device``."""
    if isinstance(cache, str):
        if cache != "auto":
            raise ValueError(
                f"cache must be 'auto', True, False or a number of bytes, got {cache!r}"
            )
        return auto_budget(device)
    if isinstance(cache, bool):
        return None if cache else 0
    if isinstance(cache, (int, float)) and cache >= 0:
        return int(cache)
    raise ValueError(
        f"cache must be 'auto', True, False or a non-negative number of bytes, "
        f"got {cache!r}"
    )


def cache_option(text: str) -> str | int:
    """``--cache``: ``auto``, or GiB (0: no cache) -> what ``curvature`` takes."""
    if text == "auto":
        return "auto"
    try:
        gib = float(text)
    except ValueError:
        gib = -1.0
    if not gib >= 0:
        raise ArgumentTypeError(
            f"--cache must be 'auto' or a non-negative number of GiB, got {text!r}"
        )
    return int(gib * 2**30)
