"""A1, A2, B1, B2 of G against dense matrices built straight from the definitions.

The reference builds every per-sample vector ``g_{i,c,c'} = (e_{c'} - p_i)^T J_i`` from
per-sample Jacobians (``torch.func.jacrev``), then ``g_{c,c'}``, ``g_c``,
``Sigma_{c,c'}``, ``Sigma_c`` (centred at ``g_c``) and eq. 32 with ``1/N``, in float64.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pytest
import torch
from torch import nn
from torch.func import functional_call, jacrev, vmap

from hessian_spectrum._functional import FlatModel
from hessian_spectrum.decomposition import MEMBERS, decompose_G

DT = torch.float64


def _mlp(C: int) -> nn.Module:
    torch.manual_seed(1)
    net = nn.Sequential(
        nn.Linear(6, 20), nn.Tanh(), nn.Linear(20, 12), nn.Tanh(), nn.Linear(12, C)
    )
    return net.to(DT).eval()


def _cnn(C: int) -> nn.Module:
    torch.manual_seed(2)
    net = nn.Sequential(
        nn.Conv2d(1, 4, 3, padding=1),
        nn.BatchNorm2d(4),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Conv2d(4, 6, 3, padding=1),
        nn.Softplus(),
        nn.AdaptiveAvgPool2d(2),
        nn.Flatten(),
        nn.Linear(24, 16),
        nn.Tanh(),
        nn.Linear(16, C),
    ).to(DT)
    bn = net[1]
    bn.running_mean.uniform_(-0.2, 0.2)
    bn.running_var.uniform_(0.5, 1.5)
    return net.eval()


def _scale_up(net: nn.Module, factor: float) -> nn.Module:
    """Sharpen the softmax so that the classes' statistics differ visibly."""
    last = [m for m in net.modules() if isinstance(m, nn.Linear)][-1]
    with torch.no_grad():
        last.weight.mul_(factor)
    return net


def _data(kind: str, counts: list[int], seed: int):
    gen = torch.Generator().manual_seed(seed)
    Y = torch.cat([torch.full((n,), c) for c, n in enumerate(counts)])
    Y = Y[torch.randperm(len(Y), generator=gen)]
    shape = (6,) if kind == "mlp" else (1, 8, 8)
    X = torch.randn(len(Y), *shape, generator=gen, dtype=DT)
    X = X + 0.5 * Y.to(DT).reshape(-1, *([1] * len(shape)))  # class-dependent inputs
    return X, Y


@dataclass
class Dense:
    model: nn.Module
    X: torch.Tensor
    Y: torch.Tensor
    C: int
    mats: dict  # name -> (p, p)
    B2c: list  # per-class (p, p)
    G_jac: torch.Tensor  # J^T (diag p - p p^T) J / N


def _dense(model: nn.Module, X: torch.Tensor, Y: torch.Tensor, C: int) -> Dense:
    flat = FlatModel(model, torch.device("cpu"))
    theta = flat.theta()

    def f(th, x):
        return functional_call(model, (flat.unflatten(th), flat.buffers), (x[None],))[0]

    J = vmap(jacrev(f), in_dims=(None, 0))(theta, X)  # (N, C, p)
    z = vmap(f, in_dims=(None, 0))(theta, X)
    P = torch.softmax(z, -1)  # (N, C)
    N = len(Y)
    g = J - torch.einsum("ic,icp->ip", P, J)[:, None, :]  # g[i, c'] (N, C, p)
    Lam = torch.diag_embed(P) - P[:, :, None] * P[:, None, :]
    G_jac = torch.einsum("iap,iab,ibq->pq", J, Lam, J) / N
    p = J.shape[-1]
    Pcc = torch.zeros(C, C, dtype=DT)
    gcc = torch.zeros(C, C, p, dtype=DT)
    mats = {k: torch.zeros(p, p, dtype=DT) for k in ("A1", "A2", "B1", "B2", "G")}
    B2c = []
    for c in range(C):
        idx = Y == c
        for d in range(C):
            w = P[idx, d]
            Pcc[c, d] = w.sum()
            gcc[c, d] = (w[:, None] * g[idx, d]).sum(0) / Pcc[c, d]
    pc = torch.tensor([sum(Pcc[c, d] for d in range(C) if d != c) for c in range(C)])
    for c in range(C):
        idx = Y == c
        others = [d for d in range(C) if d != c]
        g_c = sum(Pcc[c, d] * gcc[c, d] for d in others) / pc[c]
        Sig_c = (
            sum(
                Pcc[c, d] * torch.outer(gcc[c, d] - g_c, gcc[c, d] - g_c)
                for d in others
            )
            / pc[c]
        )
        mats["A1"] += pc[c] * torch.outer(g_c, g_c) / N
        mats["B1"] += pc[c] * Sig_c / N
        mats["A2"] += Pcc[c, c] * torch.outer(gcc[c, c], gcc[c, c]) / N
        B2_c = torch.zeros(p, p, dtype=DT)
        for d in range(C):
            w, dev = P[idx, d], g[idx, d] - gcc[c, d]
            Sig_cd = (w[:, None] * dev).T @ dev / Pcc[c, d]
            B2_c += Pcc[c, d] * Sig_cd / N
            mats["G"] += (w[:, None] * g[idx, d]).T @ g[idx, d] / N  # eq. 13
        B2c.append(B2_c)
        mats["B2"] += B2_c
    return Dense(model, X, Y, C, mats, B2c, G_jac)


CASES = {
    "mlp-balanced": ("mlp", 3, [10, 10, 10]),
    "mlp-imbalanced": ("mlp", 4, [4, 13, 2, 7]),
    "cnn": ("cnn", 4, [6, 5, 7, 6]),
}


@pytest.fixture(scope="module", params=list(CASES))
def case(request) -> Dense:
    kind, C, counts = CASES[request.param]
    model = _scale_up(_mlp(C) if kind == "mlp" else _cnn(C), 4.0)
    X, Y = _data(kind, counts, seed=len(counts))
    return _dense(model, X, Y, C)


def _dec(case: Dense, **kw):
    kw.setdefault("batch_size", 7)  # several batches, a ragged last one
    return decompose_G(case.model, (case.X, case.Y), case.C, device="cpu", **kw)


def _rel(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).norm() / b.norm().clamp_min(1e-300))


def _probes(p: int, k: int, seed: int = 0) -> torch.Tensor:
    return torch.randn(p, k, generator=torch.Generator().manual_seed(seed), dtype=DT)


# -- products --------------------------------------------------------------------------
def test_definitions_add_up_to_G(case):
    m = case.mats
    total = m["A1"] + m["A2"] + m["B1"] + m["B2"]
    assert _rel(total, m["G"]) < 1e-10
    assert _rel(m["G"], case.G_jac) < 1e-10
    assert float(m["A1"].norm()) > 1e-3 * float(m["G"].norm())
    assert float(m["B1"].norm()) > 1e-3 * float(m["G"].norm())


@pytest.mark.parametrize("name", ["G", *MEMBERS])
def test_member_products_match_dense(case, name):
    dec = _dec(case)
    op = getattr(dec, name)
    V = _probes(dec.p, 5)
    assert _rel(op.matvec(V), case.mats[name] @ V) < 1e-10
    assert _rel(op.matvec(V[:, 2]), case.mats[name] @ V[:, 2]) < 1e-10


def test_sum_of_operators_is_G(case):
    dec = _dec(case)
    V = _probes(dec.p, 3, seed=1)
    parts = [getattr(dec, n).matvec(V) for n in MEMBERS]
    assert _rel(sum(parts), case.G_jac @ V) < 1e-10
    assert _rel(dec.G.matvec(V), case.G_jac @ V) < 1e-10


@pytest.mark.parametrize("name", MEMBERS)
def test_without_matches_G_minus_member(case, name):
    dec = _dec(case)
    V = _probes(dec.p, 4, seed=2)
    want = (case.mats["G"] - case.mats[name]) @ V
    assert _rel(dec.without(name).matvec(V), want) < 1e-10


def test_members_from_one_pass(case):
    dec = _dec(case)
    V = _probes(dec.p, 3, seed=3)
    names = ["A1", "A2", "B1", "B2", "G", "G-A1", "G-B2", "A1+A2+B1"]
    out = dec.members(V, names)
    for n in names:
        want = (
            sum(
                (-1 if t.startswith("-") else 1) * case.mats[t.lstrip("+-")]
                for t in n.replace("-", " -").replace("+", " +").split()
            )
            @ V
        )
        assert _rel(out[n], want) < 1e-10, n
    one = dec.members(V[:, 0], ["B1"])["B1"]
    assert one.shape == (dec.p,) and _rel(one, case.mats["B1"] @ V[:, 0]) < 1e-10


def test_recomputing_instead_of_keeping_gives_the_same(case):
    """With no memory budget, members containing G recompute the per-sample scalars."""
    kept, recomputed = _dec(case), _dec(case, memory_budget_bytes=0)
    V = _probes(kept.p, 2, seed=4)
    for n in ("B2", "G-A1"):
        got, want = recomputed.operator(n).matvec(V), kept.operator(n).matvec(V)
        assert _rel(got, want) < 1e-12


def test_ranks_of_A1_and_A2(case):
    C = case.C
    for name in ("A1", "A2"):
        rank = int(torch.linalg.matrix_rank(case.mats[name], rtol=1e-10))
        assert rank <= C
        dense = _dec(case).operator(name).to_dense()
        assert int(torch.linalg.matrix_rank(dense, rtol=1e-10)) == rank
    # g_{c,c} = -(p_c / p_{c,c}) g_c: A2 lives in the span of A1.
    both = torch.cat([case.mats["A1"], case.mats["A2"]], dim=1)
    assert int(torch.linalg.matrix_rank(both, rtol=1e-10)) <= C


def test_class_statistics(case):
    dec = _dec(case)
    st = dec.stats
    assert st.num_samples == len(case.Y)
    assert st.counts.tolist() == torch.bincount(case.Y, minlength=case.C).tolist()
    with torch.no_grad():
        P = torch.softmax(case.model(case.X), -1)
    want = torch.stack([P[case.Y == c].sum(0) for c in range(case.C)])
    assert torch.allclose(st.p_cc, want, rtol=1e-12)
    assert torch.allclose(st.p_c, want.sum(1) - want.diagonal(), rtol=1e-12)


# -- eigenvalues of A1 + A2 + B1 -------------------------------------------------------
@pytest.mark.parametrize("method", ["stored", "passes"])
def test_attributed_eigenvalues(case, method):
    dec = _dec(case)
    C = case.C
    att = dec.attributed_eigenvalues(method=method, block_size=5)
    M = case.mats["A1"] + case.mats["A2"] + case.mats["B1"]
    want = torch.linalg.eigvalsh(M).flip(0)[: C * C].numpy()
    scale = want[0]
    assert att.values.shape == (C * C,) and att.method == method
    assert np.all(np.diff(att.values) <= 1e-12 * scale)
    np.testing.assert_allclose(att.values, want, rtol=0, atol=1e-10 * scale)
    assert list(att.labels) == ["A1"] * C + ["B1"] * (C * C - 2 * C) + ["A2"] * C
    assert att.source.dtype == np.int8 and set(att.source.tolist()) <= {0, 1, 2}
    # rank(A1 + A2 + B1) <= C^2 - C: the last C ("A2") vanish.
    assert np.all(np.abs(att.values[-C:]) < 1e-10 * scale)
    frac = att.class_mean_fraction
    assert np.all(np.isnan(frac[-C:]))
    live = frac[~np.isnan(frac)]
    assert np.all((live > -1e-8) & (live < 1 + 1e-8))
    # The fractions sum to dim span{g_c} = C over the eigenbasis of the range.
    assert abs(live.sum() - C) < 1e-6
    assert sorted(att.labels_by_projection) == sorted(att.labels)
    top = np.argsort(-np.nan_to_num(frac, nan=-1))[:C]
    assert set(att.labels_by_projection[top]) == {"A1"}


def test_gram_matches_dense(case):
    dec = _dec(case)
    stored, passes = dec.gram("stored", block_size=4), dec.gram("passes", block_size=7)
    scale = float(stored.abs().max())
    assert torch.allclose(stored, passes, rtol=0, atol=1e-10 * scale)


# -- per-class traces of B2 ------------------------------------------------------------
def test_b2_class_traces_exact(case):
    dec = _dec(case)
    res = dec.b2_class_traces(method="exact", block_size=5)
    counts = torch.bincount(case.Y, minlength=case.C).numpy()
    want = np.array([float(torch.trace(B)) for B in case.B2c]) / counts
    np.testing.assert_allclose(res.values, want, rtol=1e-10)
    assert np.all(res.stderr == 0) and res.num_probes == 0
    # Per-sample chunks of one sample, and the norms |h_{c,c'}|^2 from a cached Gram.
    small = _dec(case, memory_budget_bytes=1)
    small.gram("passes")
    np.testing.assert_allclose(small.b2_class_traces("exact").values, want, rtol=1e-10)


def test_b2_class_traces_hutchinson(case):
    dec = _dec(case)
    exact = dec.b2_class_traces(method="exact", block_size=256).values
    est = dec.b2_class_traces(method="hutchinson", num_probes=96, seed=3)
    assert est.num_probes == 96 and np.all(est.stderr > 0)
    assert np.all(np.abs(est.values - exact) <= 3 * est.stderr)
    again = dec.b2_class_traces(method="hutchinson", num_probes=96, seed=3)
    # the same probes; the second call runs on the linearisation cache (one column
    # at a time instead of vmapped): equal up to round-off
    np.testing.assert_allclose(again.values, est.values, rtol=1e-12)


# -- data forms, dtypes, devices -------------------------------------------------------
def test_list_of_batches_and_float32():
    model = _scale_up(_mlp(3), 4.0)
    X, Y = _data("mlp", [5, 6, 4], seed=9)
    batches = [(X[i : i + 4], Y[i : i + 4]) for i in range(0, len(Y), 4)]
    dec64 = decompose_G(model, batches, 3, device="cpu")
    V = _probes(dec64.p, 2, seed=5)
    ref = dec64.members(V, ["A1", "B1", "B2"])
    dec32 = decompose_G(_scale_up(_mlp(3), 4.0).float(), batches, 3, device="cpu")
    assert dec32.dtype == torch.float32
    got = dec32.members(V.float(), ["A1", "B1", "B2"])
    for n in ref:
        assert got[n].dtype == torch.float32
        assert _rel(got[n].double(), ref[n]) < 1e-4
    att = dec32.attributed_eigenvalues()
    np.testing.assert_allclose(
        att.values, dec64.attributed_eigenvalues().values, atol=1e-4 * att.values[0]
    )


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_cuda(dtype):
    model = _scale_up(_cnn(4), 4.0)
    X, Y = _data("cnn", [5, 6, 4, 5], seed=11)
    ref = decompose_G(model, (X, Y), 4, device="cpu")
    V = _probes(ref.p, 2)
    want = ref.members(V, ["A1", "A2", "B1", "B2"])
    dec = decompose_G(model.to(dtype), (X.to(dtype), Y), 4, device="cuda")
    got = dec.members(V.to(dtype), ["A1", "A2", "B1", "B2"])
    tol = 1e-10 if dtype == torch.float64 else 1e-3
    for n in want:
        assert got[n].device.type == "cuda"
        assert _rel(got[n].double().cpu(), want[n]) < tol
    tr = dec.b2_class_traces(num_probes=8)
    assert np.all(np.isfinite(tr.values))


# -- bad input -------------------------------------------------------------------------
def test_bad_inputs():
    model = _mlp(3)
    X, Y = _data("mlp", [4, 4, 4], seed=0)
    with pytest.raises(ValueError, match=r"labels must lie in \[0, 3\).*\[3\]"):
        decompose_G(model, (X, torch.where(Y == 0, 3, Y)), 3, device="cpu")
    with pytest.raises(ValueError, match=r"labels must lie.*\[-1\]"):
        decompose_G(model, (X, torch.where(Y == 0, -1, Y)), 3, device="cpu")
    with pytest.raises(ValueError, match=r"classes \[1\] have no samples"):
        decompose_G(model, (X, torch.where(Y == 1, 0, Y)), 3, device="cpu")
    with pytest.raises(ValueError, match=r"num_classes=4.*expected \(batch, 4\)"):
        decompose_G(model, (X, Y), 4, device="cpu")
    with pytest.raises(ValueError, match="empty"):
        decompose_G(model, (X[:0], Y[:0]), 3, device="cpu")
    with pytest.raises(ValueError, match="num_classes must be at least 2"):
        decompose_G(model, (X, Y), 1, device="cpu")
    cnn = _cnn(3)
    Xc, Yc = _data("cnn", [4, 4, 4], seed=0)
    with pytest.raises(ValueError, match=r"training mode: 1 \(BatchNorm2d\)"):
        decompose_G(cnn.train(), (Xc, Yc), 3, device="cpu")
    drop = nn.Sequential(nn.Linear(6, 8), nn.Dropout(0.1), nn.Linear(8, 3)).to(DT)
    with pytest.raises(ValueError, match=r"training mode: 1 \(Dropout\)"):
        decompose_G(drop, (X, Y), 3, device="cpu")
    dec = decompose_G(model, (X, Y), 3, device="cpu")
    with pytest.raises(ValueError, match="without"):
        dec.without("G")
    with pytest.raises(ValueError, match="cannot parse"):
        dec.operator("A1 B1")
    with pytest.raises(ValueError, match="exact' or 'hutchinson"):
        dec.b2_class_traces(method="dense")


def test_reordered_data_is_refused():
    """Members containing G keep per-sample scalars between passes: order must hold."""

    class Shuffled:
        def __init__(self, X, Y):
            self.X, self.Y, self.gen = X, Y, torch.Generator().manual_seed(0)

        def __iter__(self):
            perm = torch.randperm(len(self.Y), generator=self.gen)
            for i in range(0, len(perm), 5):
                yield self.X[perm[i : i + 5]], self.Y[perm[i : i + 5]]

    X, Y = _data("mlp", [6, 6, 6], seed=0)
    dec = decompose_G(_mlp(3), Shuffled(X, Y), 3, device="cpu")
    with pytest.raises(RuntimeError, match="fixed order"):
        dec.B2.matvec(_probes(dec.p, 1)[:, 0])


def test_cached_products_equal_recomputed_ones_and_dense(case):
    """The linearisation cache of the two passes (from a batch's second product on)
    changes speed, not results: every member, the Gram matrix and the B2 traces."""
    cached, plain = _dec(case, cache=True), _dec(case, cache=False)
    V = _probes(cached.p, 3, seed=5)
    for _ in range(3):  # first product recomputes and counts, later ones are cached
        for name in ("G", *MEMBERS, "G-A1", "A1+A2+B1"):
            a = cached.operator(name).matvec(V)
            b = plain.operator(name).matvec(V)
            assert _rel(a, b) < 1e-12, name
            dense = case.mats["G"] - case.mats["A1"] if name == "G-A1" else None
            if name in case.mats:
                assert _rel(a, case.mats[name] @ V) < 1e-10, name
            elif dense is not None:
                assert _rel(a, dense @ V) < 1e-10
    info = cached.cache_info()["operators"]
    assert set(info) == {"decomposition jvp", "decomposition vjp"}, cached.cache_info()
    assert all(v["batches"] > 0 and v["bytes"] > 0 for v in info.values())
    assert plain.cache_info()["operators"] == {}
    torch.testing.assert_close(
        cached.gram("passes", block_size=4),
        plain.gram("passes", block_size=4),
        rtol=1e-12,
        atol=1e-14,
    )
    np.testing.assert_allclose(
        cached.b2_class_traces(num_probes=6).values,
        plain.b2_class_traces(num_probes=6).values,
        rtol=1e-12,
    )
    cached.clear_cache()
    assert cached.cache_info()["used_bytes"] == 0
