"""Data-parallel products over torch.distributed (gloo, 2 CPU processes, float64).

Each rank holds an unequal shard of one data set; every product, statistic and
density must equal the single-process one on the whole data set (to 1e-12) and be
identical on both ranks.
"""

from __future__ import annotations

import os
import socket

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

import hessian_spectrum as hs

N, D, C = 24, 5, 3
SHARDS = (slice(0, 17), slice(17, N))  # unequal: 17 and 7 samples
MEMBERS = ("G", "A1", "A2", "B1", "B2", "G-A1", "A1+A2+B1")


def _problem():
    torch.manual_seed(0)
    model = torch.nn.Sequential(
        torch.nn.Linear(D, 6), torch.nn.Tanh(), torch.nn.Linear(6, C)
    ).double()
    X = torch.randn(N, D, dtype=torch.float64)
    Y = torch.arange(N) % C
    return model.eval(), X, Y


def _quantities(data, distributed: bool, cache) -> dict:
    model, *_ = _problem()
    cur = hs.curvature(
        model, data, C, batch_size=5, device="cpu", cache=cache, distributed=distributed
    )
    dec = hs.decompose_G(
        model, data, C, batch_size=4, device="cpu", distributed=distributed
    )
    gen = torch.Generator().manual_seed(1)
    V = torch.randn(cur.p, 3, generator=gen, dtype=torch.float64)
    out = {
        "hess": cur.hessian.matvec(V),
        "G": cur.G.matvec(V),
        "H": cur.H.matvec(V),
        "hess_again": cur.hessian.matvec(V),  # from the cache when there is one
        "loss": torch.tensor(cur.loss()),
        "gradient": cur.gradient(),
        "gram": dec.gram("stored"),
        "gram_passes": dec.gram("passes", block_size=4),
        "counts": dec.stats.counts.double(),
        "p_cc": dec.stats.p_cc,
        "b2_exact": torch.as_tensor(dec.b2_class_traces("exact").values),
        "b2_hutch": torch.as_tensor(dec.b2_class_traces(num_probes=6).values),
        "attributed": torch.as_tensor(dec.attributed_eigenvalues().values),
    }
    for name in MEMBERS:
        out[name + "_dec"] = dec.operator(name).matvec(V)
    sd = hs.lanczos_approx_spec(cur.hessian, 12, num_points=64, deflate=2, seed=0)
    out["density"] = torch.as_tensor(sd.density)
    out["outliers"] = torch.as_tensor(sd.outliers)
    out["num_samples"] = torch.tensor(float(cur.num_samples))
    return out


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _worker(rank: int, world: int, port: int, outdir: str, case: str) -> None:
    torch.set_num_threads(1)
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("gloo", rank=rank, world_size=world)
    try:
        _, X, Y = _problem()
        result: dict = {}
        if case == "products":
            shard = SHARDS[rank]
            for cache in (False, True):
                q = _quantities((X[shard], Y[shard]), True, cache)
                result.update({f"{k}/{cache}": v for k, v in q.items()})
        elif case == "empty":
            shard = slice(0, N) if rank == 0 else slice(0, 0)
            for build in (hs.curvature, hs.decompose_G):
                try:
                    build(
                        _problem()[0],
                        (X[shard], Y[shard]),
                        C,
                        device="cpu",
                        distributed=True,
                    )
                    result[build.__name__] = "no error"
                except ValueError as err:
                    result[build.__name__] = str(err)
        elif case == "models":
            model = _problem()[0]
            if rank == 1:
                with torch.no_grad():
                    model[0].weight[0, 0] += 1.0
            try:
                hs.curvature(
                    model,
                    (X[SHARDS[rank]], Y[SHARDS[rank]]),
                    C,
                    device="cpu",
                    distributed=True,
                )
                result["error"] = "no error"
            except ValueError as err:
                result["error"] = str(err)
        torch.save(result, os.path.join(outdir, f"rank{rank}.pt"))
    finally:
        dist.destroy_process_group()


def _run(tmp_path, case: str) -> list[dict]:
    mp.spawn(_worker, args=(2, _free_port(), str(tmp_path), case), nprocs=2)
    return [torch.load(tmp_path / f"rank{r}.pt") for r in range(2)]


def test_products_equal_the_single_process_ones_and_agree_across_ranks(tmp_path):
    ranks = _run(tmp_path, "products")
    _, X, Y = _problem()
    for cache in (False, True):
        ref = _quantities((X, Y), False, cache)
        for key, expected in ref.items():
            a, b = (r[f"{key}/{cache}"] for r in ranks)
            assert torch.equal(a, b), f"{key} differs between ranks"
            torch.testing.assert_close(
                a, expected, rtol=1e-12, atol=1e-12, msg=f"{key} (cache={cache})"
            )
    assert float(ranks[0]["num_samples/False"]) == N


def test_an_empty_shard_is_refused_on_every_rank(tmp_path):
    ranks = _run(tmp_path, "empty")
    for r in ranks:
        for name in ("curvature", "decompose_G"):
            assert "rank(s) [1] of 2 hold an empty shard" in r[name], r[name]


def test_ranks_with_different_models_are_refused(tmp_path):
    ranks = _run(tmp_path, "models")
    assert all("the ranks hold different models" in r["error"] for r in ranks), ranks


def test_distributed_needs_a_process_group():
    model, X, Y = _problem()
    with pytest.raises(RuntimeError, match="initialised torch.distributed process"):
        hs.curvature(model, (X, Y), C, device="cpu", distributed=True)
    with pytest.raises(TypeError, match="distributed must be True or False"):
        hs.decompose_G(model, (X, Y), C, device="cpu", distributed="yes")
