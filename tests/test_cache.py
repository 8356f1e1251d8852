"""hessian_spectrum._cache by its own name: LinearTemplate, ProductCache, budgets.

The operators' products on the cache are checked against dense references in
test_curvature.py and test_decomposition.py; here the cache's own contract: a traced
map equals the function it traces, a batch is cached from its second visit on and
only under the budget, a changed batch switches the cache off with a warning, and
the budget and --cache parsers refuse bad values by name.
"""

from __future__ import annotations

import argparse

import pytest
import torch

from hessian_spectrum._cache import (
    LinearTemplate,
    ProductCache,
    budget_of,
    cache_option,
)

W = torch.randn(4, 3, dtype=torch.float64, generator=torch.Generator().manual_seed(0))


def linear(x, v):
    """Linear in v; x and W are the 'theta-and-batch' part (folded)."""
    return [torch.tanh(x @ W) * (x @ v)[:, None]]


def examples():
    return [torch.zeros(4, dtype=torch.float64)]


def test_template_equals_the_function_it_traces():
    x = torch.randn(5, 4, dtype=torch.float64)
    v = torch.randn(4, dtype=torch.float64)
    template = LinearTemplate(linear, [x], examples())
    bound = template.bind([x])
    torch.testing.assert_close(bound(v)[0], linear(x, v)[0], rtol=1e-14, atol=0)
    other = torch.randn(5, 4, dtype=torch.float64)  # one trace, any batch of the shape
    torch.testing.assert_close(
        template.bind([other])(v)[0], linear(other, v)[0], rtol=1e-14, atol=0
    )
    assert bound.nbytes() > 0


def test_batches_are_cached_from_the_second_visit_under_the_budget():
    xs = [torch.randn(5, 4, dtype=torch.float64) for _ in range(3)]
    cache = ProductCache(None)
    first = [cache.lookup("A", i, [x], linear, examples, ()) for i, x in enumerate(xs)]
    assert first == [None, None, None] and cache.used == 0
    second = [cache.lookup("A", i, [x], linear, examples, ()) for i, x in enumerate(xs)]
    assert all(b is not None for b in second)
    assert cache.info()["operators"]["A"]["batches"] == 3
    per_batch = cache.used // 3
    small = ProductCache(int(1.5 * per_batch))  # room for one batch only
    for _ in range(2):
        got = [
            small.lookup("A", i, [x], linear, examples, ()) for i, x in enumerate(xs)
        ]
    assert sum(b is not None for b in got) == 1 and small.used <= small.budget
    assert ProductCache(0).lookup("A", 0, [xs[0]], linear, examples, ()) is None
    cache.clear()
    assert cache.used == 0 and cache.info()["operators"] == {}


def test_a_changed_batch_switches_the_cache_off_with_a_warning():
    x = torch.randn(5, 4, dtype=torch.float64)
    cache = ProductCache(None)
    for _ in range(2):
        cache.lookup("A", 0, [x], linear, examples, ())
    assert cache.lookup("A", 0, [x.clone()], linear, examples, ()) is not None  # equal
    with pytest.warns(RuntimeWarning, match="A products: linearisation cache off"):
        assert cache.lookup("A", 0, [x + 1], linear, examples, ()) is None
    assert "batch 0 differs" in cache.info()["off"]["A"]
    assert cache.lookup("A", 0, [x], linear, examples, ()) is None  # stays off


def test_untraceable_maps_fall_back_with_the_reason():
    def branchy(x, v):
        if float(x.sum()) > 0:  # data-dependent control flow cannot be traced
            return [x @ v]
        return [-(x @ v)]

    x = torch.ones(5, 4, dtype=torch.float64)
    cache = ProductCache(None)
    cache.lookup("B", 0, [x], branchy, examples, ())
    with pytest.warns(RuntimeWarning, match="B products: linearisation cache off"):
        assert cache.lookup("B", 0, [x], branchy, examples, ()) is None


def test_budgets_and_the_cache_option():
    assert budget_of(True, torch.device("cpu")) is None
    assert budget_of(False, torch.device("cpu")) == 0
    assert budget_of(1024, torch.device("cpu")) == 1024
    assert budget_of("auto", torch.device("cpu")) > 0
    for bad in ("always", -1):
        with pytest.raises(ValueError, match="cache must be 'auto'"):
            budget_of(bad, torch.device("cpu"))
    assert cache_option("auto") == "auto" and cache_option("0.5") == 2**29
    assert cache_option("0") == 0
    for bad in ("-1", "lots", "nan"):
        with pytest.raises(argparse.ArgumentTypeError, match="--cache must be 'auto'"):
            cache_option(bad)
