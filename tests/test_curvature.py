"""Hess, G and H operators against dense torch.func references (float64, tiny nets)."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.func import functional_call, hessian, jacrev

from hessian_spectrum.curvature import Curvature, curvature

C = 3
N = 30
RTOL = 1e-10


def _mlp() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(5, 8), nn.Tanh(), nn.Linear(8, C)).double().eval()


def _cnn() -> nn.Module:
    torch.manual_seed(1)
    model = nn.Sequential(
        nn.Conv2d(1, 3, 3),
        nn.BatchNorm2d(3),
        nn.Tanh(),
        nn.Conv2d(3, 4, 3, stride=2),
        nn.ReLU(),
        nn.Flatten(),
        nn.Linear(4 * 2 * 2, C + 1),
    ).double()
    bn = model[1]
    with torch.no_grad():  # non-trivial running statistics and affine parameters
        bn.running_mean.uniform_(-0.5, 0.5)
        bn.running_var.uniform_(0.5, 2.0)
        bn.weight.uniform_(0.5, 1.5)
        bn.bias.uniform_(-0.3, 0.3)
    return model.eval()


def _data(input_shape, num_classes, n=N, seed=2):
    gen = torch.Generator().manual_seed(seed)
    X = torch.randn(n, *input_shape, generator=gen, dtype=torch.float64)
    Y = torch.randint(0, num_classes, (n,), generator=gen)
    return X, Y


def _inplace_relu() -> nn.Module:
    torch.manual_seed(4)
    return (
        nn.Sequential(nn.Linear(5, 8), nn.ReLU(inplace=True), nn.Linear(8, C))
        .double()
        .eval()
    )


CASES = {
    "mlp": (_mlp, (5,), C),
    "cnn_bn": (_cnn, (1, 7, 7), C + 1),
}
# in-place activations: the cached constants must not be modified by a product
CACHE_CASES = {**CASES, "inplace_relu": (_inplace_relu, (5,), C)}


def _dense_reference(model: nn.Module, X: torch.Tensor, Y: torch.Tensor):
    """Dense Hess, G and H of the mean cross-entropy, built independently."""
    names = [n for n, _ in model.named_parameters()]
    params = [p.detach() for _, p in model.named_parameters()]
    shapes = [p.shape for p in params]
    numels = [p.numel() for p in params]
    buffers = dict(model.named_buffers())
    theta = torch.cat([p.reshape(-1) for p in params])

    def logits(t):
        parts = torch.split(t, numels)
        d = {n: q.view(s) for n, q, s in zip(names, parts, shapes, strict=True)}
        return functional_call(model, (d, buffers), (X,))

    def loss(t):
        return F.cross_entropy(logits(t), Y)

    hess = hessian(loss)(theta)
    z = logits(theta).detach()
    prob = torch.softmax(z, -1)
    J = jacrev(logits)(theta)  # (N, C, p)
    M = torch.diag_embed(prob) - prob[:, :, None] * prob[:, None, :]
    G = torch.einsum("icp,icd,idq->pq", J, M, J) / X.shape[0]
    r = prob - F.one_hot(Y, z.shape[1]).double()  # a constant here, no detach needed
    H = hessian(lambda t: (r * logits(t)).sum() / X.shape[0])(theta)
    return hess, G, H


def _rel(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).norm() / b.norm())


@pytest.fixture(scope="module", params=sorted(CASES))
def case(request):
    make, shape, num_classes = CASES[request.param]
    model = make()
    X, Y = _data(shape, num_classes)
    dense = _dense_reference(model, X, Y)
    cur = curvature(model, (X, Y), num_classes, batch_size=7, device="cpu")
    dense_ops = {
        "hessian": cur.hessian.to_dense(),
        "G": cur.G.to_dense(),
        "H": cur.H.to_dense(),
    }
    return {
        "model": model,
        "X": X,
        "Y": Y,
        "C": num_classes,
        "cur": cur,
        "ref": dict(zip(("hessian", "G", "H"), dense, strict=True)),
        "dense": dense_ops,
    }


OPS = ("hessian", "G", "H")


@pytest.mark.parametrize("op", OPS)
def test_dense_operator_matches_reference(case, op):
    assert case["cur"].p <= 3000
    assert _rel(case["dense"][op], case["ref"][op]) < RTOL


@pytest.mark.parametrize("op", OPS)
def test_products_on_vectors_and_blocks(case, op):
    cur, ref = case["cur"], case["ref"][op]
    gen = torch.Generator().manual_seed(3)
    v = torch.randn(cur.p, generator=gen, dtype=torch.float64)
    V = torch.randn(cur.p, 4, generator=gen, dtype=torch.float64)
    operator = getattr(cur, op)
    out_v = operator.matvec(v)
    out_V = operator.matvec(V)
    assert out_v.shape == (cur.p,) and out_V.shape == (cur.p, 4)
    assert _rel(out_v, ref @ v) < RTOL
    assert _rel(out_V, ref @ V) < RTOL
    # a block is its columns, one at a time
    assert _rel(out_V[:, 1], operator.matvec(V[:, 1])) < 1e-13


@pytest.mark.parametrize("op", OPS)
def test_operators_are_symmetric(case, op):
    A = case["dense"][op]
    assert _rel(A.T, A) < RTOL


def test_reference_decomposition_and_operator_sum(case):
    ref, dense = case["ref"], case["dense"]
    assert _rel(ref["hessian"] - ref["G"], ref["H"]) < RTOL  # H == Hess - G densely
    assert _rel(dense["G"] + dense["H"], dense["hessian"]) < RTOL
    assert float(ref["H"].abs().max()) > 1e-3  # H is not trivially zero here
    cur = case["cur"]
    V = torch.randn(cur.p, 3, dtype=torch.float64)
    assert _rel((cur.G + cur.H).matvec(V), cur.hessian.matvec(V)) < RTOL


def test_G_is_positive_semidefinite(case):
    G = case["dense"]["G"]
    assert float(torch.linalg.eigvalsh(G).min()) > -1e-10 * float(G.norm())


def test_batch_size_does_not_change_products(case):
    model, X, Y, num_classes = case["model"], case["X"], case["Y"], case["C"]
    full = curvature(model, (X, Y), num_classes, batch_size=N, device="cpu")
    V = torch.randn(case["cur"].p, 2, dtype=torch.float64)
    for op in OPS:
        a = getattr(full, op).matvec(V)
        b = getattr(case["cur"], op).matvec(V)
        assert _rel(a, b) < 1e-12


def test_list_of_batches_equals_tensor_pair(case):
    model, X, Y, num_classes = case["model"], case["X"], case["Y"], case["C"]
    sizes = [4, 11, 15]  # uneven batches: each is weighted by its size over N
    batches = list(zip(X.split(sizes), Y.split(sizes), strict=True))
    listed = curvature(model, batches, num_classes, batch_size=8, device="cpu")
    V = torch.randn(case["cur"].p, 2, dtype=torch.float64)
    for op in OPS:
        a = getattr(listed, op).matvec(V)
        b = getattr(case["cur"], op).matvec(V)
        assert _rel(a, b) < 1e-12


def test_products_are_deterministic(case):
    V = torch.randn(case["cur"].p, 2, dtype=torch.float64)
    for op in OPS:
        operator = getattr(case["cur"], op)
        assert torch.equal(operator.matvec(V), operator.matvec(V))


def test_loss_and_gradient(case):
    model, X, Y = case["model"], case["X"], case["Y"]
    model.zero_grad()
    loss = F.cross_entropy(model(X), Y)
    loss.backward()
    g_ref = torch.cat([p.grad.reshape(-1) for p in model.parameters()])
    model.zero_grad()
    loss = loss.detach()
    cur: Curvature = case["cur"]
    assert abs(cur.loss() - float(loss)) < 1e-12 * float(loss)
    assert _rel(cur.gradient(), g_ref) < 1e-12
    value, g = cur.loss_and_gradient()
    assert abs(value - float(loss)) < 1e-12 * float(loss)
    assert _rel(g, g_ref) < 1e-12


def test_weight_decay_enters_the_hessian_only():
    model = _mlp()
    X, Y = _data((5,), C)
    plain = curvature(model, (X, Y), C, batch_size=7, device="cpu")
    wd = 0.3
    decayed = curvature(model, (X, Y), C, batch_size=7, device="cpu", weight_decay=wd)
    V = torch.randn(plain.p, 2, dtype=torch.float64)
    assert _rel(decayed.hessian.matvec(V), plain.hessian.matvec(V) + wd * V) < 1e-13
    assert torch.equal(decayed.G.matvec(V), plain.G.matvec(V))
    assert torch.equal(decayed.H.matvec(V), plain.H.matvec(V))
    theta = plain.flat.theta()
    assert _rel(decayed.gradient(), plain.gradient() + wd * theta) < 1e-13
    expected = plain.loss() + 0.5 * wd * float(theta @ theta)
    assert abs(decayed.loss() - expected) < 1e-12
    with pytest.raises(ValueError, match="weight_decay"):
        curvature(model, (X, Y), C, device="cpu", weight_decay=-1.0)


def test_vectors_are_moved_to_operator_dtype():
    model = _mlp()
    X, Y = _data((5,), C)
    cur = curvature(model, (X, Y), C, device="auto")
    assert cur.hessian.dtype == torch.float64
    v = torch.randn(cur.p, dtype=torch.float32)
    out = cur.hessian.matvec(v)
    assert out.dtype == torch.float64 and out.device == cur.hessian.device
    assert _rel(out, cur.hessian.matvec(v.double())) < 1e-15


def test_float32_inputs_are_cast_to_the_model_dtype():
    model = _mlp()
    X, Y = _data((5,), C)
    a = curvature(model, (X, Y), C, device="cpu")
    b = curvature(model, (X.float(), Y), C, device="cpu")
    V = torch.randn(a.p, 2, dtype=torch.float64)
    assert _rel(b.G.matvec(V), a.G.matvec(V)) < 1e-6


# -- bad input -------------------------------------------------------------------------
def test_refuses_train_mode_batchnorm():
    model = _cnn().train()
    X, Y = _data((1, 7, 7), C + 1)
    with pytest.raises(ValueError, match=r"BatchNorm2d.*train mode.*model\.eval\(\)"):
        curvature(model, (X, Y), C + 1, device="cpu")
    with pytest.raises(ValueError, match="BatchNorm2d"):  # even without data checks
        curvature(model, (X, Y), C + 1, device="cpu", check=False)


def test_refuses_train_mode_dropout():
    model = nn.Sequential(nn.Linear(5, 8), nn.Dropout(0.5), nn.Linear(8, C)).double()
    X, Y = _data((5,), C)
    with pytest.raises(ValueError, match=r"Dropout.*model\.eval\(\)"):
        curvature(model.train(), (X, Y), C, device="cpu")
    curvature(model.eval(), (X, Y), C, device="cpu")  # fine in eval mode


class _Augmented:
    """A re-iterable data set that adds noise on every pass (random augmentation)."""

    def __init__(self, X, Y, flip=False):
        self.X, self.Y, self.flip = X, Y, flip

    def __iter__(self):
        for x, y in zip(self.X.split(10), self.Y.split(10), strict=True):
            if self.flip:  # a random flip keeps sum(x): the checksum must see it
                mask = torch.rand(x.shape[0]) < 0.5
                yield torch.where(mask[:, None, None, None], x.flip(-1), x), y
            else:
                yield x + 0.01 * torch.randn_like(x), y


@pytest.mark.parametrize("flip", [False, True])
def test_refuses_non_deterministic_data(flip):
    model = _cnn()
    X, Y = _data((1, 7, 7), C + 1)
    with pytest.raises(ValueError, match="changed between two passes"):
        curvature(model, _Augmented(X, Y, flip), C + 1, device="cpu")


def test_shuffled_batches_are_accepted():
    class Shuffled:
        def __init__(self, X, Y):
            self.X, self.Y = X, Y

        def __iter__(self):
            perm = torch.randperm(self.X.shape[0])
            yield from zip(self.X[perm].split(8), self.Y[perm].split(8), strict=True)

    model = _mlp()
    X, Y = _data((5,), C)
    cur = curvature(model, Shuffled(X, Y), C, device="cpu")
    ref = curvature(model, (X, Y), C, device="cpu")
    V = torch.randn(cur.p, 2, dtype=torch.float64)
    assert _rel(cur.hessian.matvec(V), ref.hessian.matvec(V)) < 1e-12


def test_refuses_wrong_num_classes():
    X, Y = _data((5,), C)
    with pytest.raises(ValueError, match=r"num_classes=4 does not match"):
        curvature(_mlp(), (X, Y), 4, device="cpu")


def test_refuses_labels_out_of_range():
    X, Y = _data((5,), C)
    Y = Y.clone()
    Y[3] = C
    with pytest.raises(ValueError, match=r"label out of range.*\[0, 3\)"):
        curvature(_mlp(), (X, Y), C, device="cpu")
    Y[3] = -1
    with pytest.raises(ValueError, match="label out of range"):
        curvature(_mlp(), (X, Y), C, device="cpu")


def test_refuses_float_labels():
    X, Y = _data((5,), C)
    with pytest.raises(TypeError, match="integer class indices"):
        curvature(_mlp(), (X, Y.double()), C, device="cpu")


def test_refuses_generator_data():
    X, Y = _data((5,), C)
    gen = ((x, y) for x, y in zip(X.split(7), Y.split(7), strict=True))
    with pytest.raises(TypeError, match="generator"):
        curvature(_mlp(), gen, C, device="cpu")


def test_refuses_empty_data():
    empty = (torch.zeros(0, 5, dtype=torch.float64), torch.zeros(0, dtype=torch.int64))
    with pytest.raises(ValueError, match="empty"):
        curvature(_mlp(), empty, C, device="cpu")
    with pytest.raises(ValueError, match="empty"):
        curvature(_mlp(), [], C, device="cpu")


@pytest.mark.parametrize("op", OPS)
def test_non_finite_product_raises_naming_the_operator(op):
    model = _mlp()
    with torch.no_grad():
        model[0].weight[0, 0] = float("inf")
    X, Y = _data((5,), C)
    cur = curvature(model, (X, Y), C, device="cpu")
    name = {"hessian": "Hess", "G": "G", "H": "H"}[op]
    with pytest.raises(FloatingPointError, match=rf"^{name} product is not finite"):
        getattr(cur, op).matvec(torch.ones(cur.p, dtype=torch.float64))


def test_int32_labels_and_check_false():
    model = _mlp()
    X, Y = _data((5,), C)
    ref = curvature(model, (X, Y), C, device="cpu")
    cur = curvature(model, (X, Y.int()), C, device="cpu", check=False)
    V = torch.randn(ref.p, 2, dtype=torch.float64)
    assert torch.equal(cur.H.matvec(V), ref.H.matvec(V))


def test_docstring_example():
    import doctest
    import importlib

    # ``hessian_spectrum.curvature`` the attribute is the function (hs.curvature);
    # the module of the same name is found through the import system.
    module = importlib.import_module("hessian_spectrum.curvature")
    assert doctest.testmod(module, raise_on_error=True).attempted > 0


# -- the per-batch linearisation cache ------------------------------------------------
def _three_products(operator, V):
    """First product recomputes; the second builds the cache; the third reads it."""
    return [operator.matvec(V) for _ in range(3)]


@pytest.mark.parametrize("name", sorted(CACHE_CASES))
def test_cached_products_match_dense_reference(name):
    make, shape, num_classes = CACHE_CASES[name]
    model = make()
    X, Y = _data(shape, num_classes)
    ref = dict(zip(OPS, _dense_reference(model, X, Y), strict=True))
    cur = curvature(model, (X, Y), num_classes, batch_size=7, device="cpu", cache=True)
    V = torch.randn(cur.p, 3, dtype=torch.float64)
    for op in OPS:
        outs = _three_products(getattr(cur, op), V)
        for out in outs:
            assert _rel(out, ref[op] @ V) < RTOL
    info = cur.cache_info()
    # N = 30 in batches of 7: 5 batches cached for each of the three operators
    assert {op: d["batches"] for op, d in info["operators"].items()} == {
        "Hess": 5,
        "G": 5,
        "H": 5,
    }
    assert info["used_bytes"] > 0 and info["off"] == {}
    assert info["used_bytes"] == sum(d["bytes"] for d in info["operators"].values())
    # traced once per operator and batch shape (four batches of 7, one of 2)
    assert len(cur.cache.templates) == 3 * 2


def test_cache_budget_caches_some_batches_and_recomputes_the_rest():
    model = _cnn()
    X, Y = _data((1, 7, 7), C + 1)
    full = curvature(model, (X, Y), C + 1, batch_size=7, device="cpu", cache=True)
    V = torch.randn(full.p, 2, dtype=torch.float64)
    _three_products(full.hessian, V)
    one_batch = full.cache_info()["operators"]["Hess"]["bytes"] / 5
    # room for two batches of 7 (the fifth batch holds 2 samples)
    budget = int(2.5 * one_batch)
    cur = curvature(model, (X, Y), C + 1, batch_size=7, device="cpu", cache=budget)
    outs = _three_products(cur.hessian, V)
    info = cur.cache_info()
    assert info["budget_bytes"] == budget
    assert 1 <= info["operators"]["Hess"]["batches"] < 5
    assert 0 < info["used_bytes"] <= budget
    ref = full.hessian.matvec(V)
    for out in outs:
        assert _rel(out, ref) < 1e-12
    off = curvature(model, (X, Y), C + 1, batch_size=7, device="cpu", cache=False)
    _three_products(off.hessian, V)
    assert off.cache_info()["operators"] == {} and off.cache_info()["used_bytes"] == 0


def test_single_product_builds_no_cache_and_clear_cache_frees_it():
    model = _mlp()
    X, Y = _data((5,), C)
    cur = curvature(model, (X, Y), C, device="cpu", cache=True)
    v = torch.randn(cur.p, dtype=torch.float64)
    cur.G.matvec(v)
    assert cur.cache_info()["used_bytes"] == 0
    cur.G.matvec(v)
    assert cur.cache_info()["operators"]["G"]["batches"] == 1
    cur.clear_cache()
    assert cur.cache_info()["used_bytes"] == 0 and cur.cache_info()["operators"] == {}


def test_cache_switches_off_when_batches_change_between_passes():
    class Reordered:
        """The same samples each pass, in batches that differ from pass to pass."""

        def __init__(self, X, Y):
            self.X, self.Y, self.calls = X, Y, 0

        def __iter__(self):
            self.calls += 1
            perm = torch.randperm(
                self.X.shape[0], generator=torch.Generator().manual_seed(self.calls)
            )
            yield from zip(self.X[perm].split(8), self.Y[perm].split(8), strict=True)

    model = _mlp()
    X, Y = _data((5,), C)
    ref = _dense_reference(model, X, Y)[0]
    cur = curvature(model, Reordered(X, Y), C, device="cpu", cache=True)
    V = torch.randn(cur.p, 2, dtype=torch.float64)
    cur.hessian.matvec(V)
    cur.hessian.matvec(V)  # builds the cache from this pass's batches
    with pytest.warns(RuntimeWarning, match=r"Hess products: linearisation cache off"):
        out = cur.hessian.matvec(V)
    assert _rel(out, ref @ V) < RTOL
    info = cur.cache_info()
    assert "differs from the one cached" in info["off"]["Hess"]
    assert info["operators"] == {} and info["used_bytes"] == 0
    assert _rel(cur.hessian.matvec(V), ref @ V) < RTOL  # recomputed from now on


def test_untraceable_model_falls_back_to_recomputation():
    class DataDependent(nn.Module):
        """Control flow on a value: fake-tensor tracing cannot follow it."""

        def __init__(self):
            super().__init__()
            self.body = _mlp()

        def forward(self, x):
            z = self.body(x)
            return z if bool(x.sum() > -1e9) else -z

    model = DataDependent().double().eval()
    X, Y = _data((5,), C)
    ref = _dense_reference(model.body, X, Y)[1]
    cur = curvature(model, (X, Y), C, device="cpu", cache=True)
    V = torch.randn(cur.p, 2, dtype=torch.float64)
    cur.G.matvec(V)
    with pytest.warns(RuntimeWarning, match=r"G products: linearisation cache off"):
        out = cur.G.matvec(V)
    assert _rel(out, ref @ V) < RTOL
    assert "differs" not in cur.cache_info()["off"]["G"]  # the tracing failed
    assert _rel(cur.G.matvec(V), ref @ V) < RTOL


@pytest.mark.parametrize("bad", ["big", -1, float("nan"), None])
def test_refuses_bad_cache_value(bad):
    X, Y = _data((5,), C)
    with pytest.raises(ValueError, match=r"cache must be 'auto'.*got"):
        curvature(_mlp(), (X, Y), C, device="cpu", cache=bad)


def test_auto_cache_budget_is_a_quarter_of_available_memory():
    X, Y = _data((5,), C)
    cur = curvature(_mlp(), (X, Y), C, device="cpu")
    with open("/proc/meminfo") as f:
        avail = next(
            int(line.split()[1]) * 1024
            for line in f
            if line.startswith("MemAvailable:")
        )
    budget = cur.cache_info()["budget_bytes"]
    assert 0.15 * avail < budget < 0.35 * avail


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
@pytest.mark.parametrize("cache", [False, True])
def test_cuda_products_match_dense_reference(cache):
    X, Y = _data((1, 7, 7), C + 1)
    ref = dict(zip(OPS, _dense_reference(_cnn(), X, Y), strict=True))
    cur = curvature(_cnn(), (X, Y), C + 1, batch_size=7, device="cuda", cache=cache)
    V = torch.randn(cur.p, 2, dtype=torch.float64)
    for op in OPS:
        for out in _three_products(getattr(cur, op), V.cuda()):
            assert out.device.type == "cuda"
            assert _rel(out.cpu(), ref[op] @ V) < RTOL
    batches = {k: d["batches"] for k, d in cur.cache_info()["operators"].items()}
    assert batches == ({"Hess": 5, "G": 5, "H": 5} if cache else {})
    free = torch.cuda.mem_get_info()[0]
    auto = curvature(_cnn(), (X, Y), C + 1, device="cuda").cache_info()
    assert 0.2 * free < auto["budget_bytes"] <= 0.25 * free * 1.05


def test_dropping_the_curvature_frees_its_cache_at_once():
    import gc
    import weakref

    X, Y = _data((5,), C)
    cur = curvature(_mlp(), (X, Y), C, device="cpu", cache=True)
    v = torch.randn(cur.p, dtype=torch.float64)
    cur.hessian.matvec(v)
    cur.hessian.matvec(v)
    assert cur.cache_info()["operators"]["Hess"]["batches"] == 1
    ref = weakref.ref(cur.cache)
    gc.disable()  # freed by reference counting, not by a later cycle collection
    try:
        del cur
        assert ref() is None
    finally:
        gc.enable()


@pytest.mark.parametrize("arch", ["resnet18", "vgg11", "lenet", "mlp"])
def test_cache_traces_every_model_of_the_library(arch):
    """The networks of the workflow (skip connections, eval-mode BatchNorm, in-place
    ReLU) trace, and their cached products equal the recomputed ones."""
    import warnings

    from hessian_spectrum.models import build_model

    channels = 1 if arch in ("lenet", "mlp") else 3
    size = 28 if arch in ("lenet", "mlp") else 32
    torch.manual_seed(0)
    model = build_model(arch, channels, 10, width=1 / 16, input_size=size)
    model = model.double().eval()
    gen = torch.Generator().manual_seed(1)
    X = torch.randn(12, channels, size, size, generator=gen, dtype=torch.float64)
    Y = torch.randint(0, 10, (12,), generator=gen)
    recomputed = curvature(model, (X, Y), 10, batch_size=8, device="cpu", cache=False)
    cached = curvature(model, (X, Y), 10, batch_size=8, device="cpu", cache=True)
    V = torch.randn(cached.p, 2, generator=gen, dtype=torch.float64)
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)  # no fall-back to recomputing
        for op in OPS:
            ref = getattr(recomputed, op).matvec(V)
            for out in _three_products(getattr(cached, op), V):
                assert _rel(out, ref) < 1e-12
    batches = {k: d["batches"] for k, d in cached.cache_info()["operators"].items()}
    assert batches == {"Hess": 2, "G": 2, "H": 2}
