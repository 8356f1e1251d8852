"""Curvature products and densities on a CUDA GPU, with and without the linearisation
cache (a script for a GPU machine, not a test; CPU numbers are in RESULTS.md).

For each problem (a 207k-parameter CNN on 1x28x28 inputs, and VGG11 at full width,
28.2M parameters, on 3x32x32 inputs; random inputs and labels: a product costs the
same on any data) it measures, with CUDA synchronisation around every timing:

- a gradient pass over all samples (the unit of cost);
- Hess, G and H products on one vector, recomputed (``cache=False``) and cached
  (after the cache is built), as ratios to the gradient pass, with the cache's size
  and the time to build it (the second product);
- a Hess and a G density (``lanczos_approx_spec``, M steps, one start vector, bounds
  included) with ``cache="auto"`` and ``cache=False``: wall time and peak CUDA memory;
- a float64 check on a tiny CNN with BatchNorm: cached and recomputed products on
  CUDA against the dense Hess, G and H of ``torch.func`` on the CPU.

    python benchmarks/bench_gpu.py --out results/gpu     # writes gpu.json, gpu.md
    python benchmarks/bench_gpu.py --quick
"""

from __future__ import annotations

import argparse
import gc
import json
import statistics
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

import hessian_spectrum as hs
from hessian_spectrum.curvature import curvature
from hessian_spectrum.models import build_model, count_parameters

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))


def sync():
    torch.cuda.synchronize()


def timed(fn, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        sync()
        t0 = time.perf_counter()
        fn()
        sync()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def grad_pass(model, X, Y, batch_size):
    model.zero_grad(set_to_none=True)
    for x, y in zip(X.split(batch_size), Y.split(batch_size), strict=True):
        (F.cross_entropy(model(x), y) * (len(y) / len(Y))).backward()
    model.zero_grad(set_to_none=True)


def make(name: str, n: int):
    torch.manual_seed(0)
    if name == "cnn":
        model = nn.Sequential(
            nn.Conv2d(1, 16, 3, padding=1),
            nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Conv2d(16, 32, 3, padding=1),
            nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Flatten(),
            nn.Linear(32 * 7 * 7, 128),
            nn.ReLU(),
            nn.Linear(128, 10),
        )
        X = torch.rand(n, 1, 28, 28)
    else:
        model = build_model("vgg11", in_channels=3, num_classes=10, width=1.0)
        X = torch.rand(n, 3, 32, 32)
    Y = torch.randint(0, 10, (n,))
    return model.cuda().eval(), X.cuda(), Y.cuda()


def products(name, n, batch, repeats):
    model, X, Y = make(name, n)
    row = dict(problem=name, p=count_parameters(model), n=n, batch=batch)
    g = timed(lambda: grad_pass(model, X, Y, batch), repeats)
    row["grad_s"] = g
    v = torch.randn(row["p"], device="cuda")
    for cache in (False, True):
        cur = curvature(model, (X, Y), 10, batch_size=batch, device="cuda", cache=cache)
        for op_name in ("hessian", "G", "H"):
            op = getattr(cur, op_name)
            op.matvec(v)  # first product: recomputed (with the cache: visit 1)
            if cache:
                row[f"{op_name}_build_s"] = timed(lambda op=op: op.matvec(v), 1)
            t = timed(lambda op=op: op.matvec(v), repeats)
            row[f"{op_name}_{'cached' if cache else 'recomputed'}_x_grad"] = t / g
        if cache:
            info = cur.cache_info()
            row["cache_bytes"] = {k: d["bytes"] for k, d in info["operators"].items()}
            row["cache_off"] = info["off"]
        del cur
        gc.collect()
        torch.cuda.empty_cache()
    return row


def densities(name, n, batch, M):
    rows = []
    for kind in ("Hess", "G"):
        for cache in ("auto", False):
            model, X, Y = make(name, n)
            gc.collect()
            torch.cuda.empty_cache()
            torch.cuda.reset_peak_memory_stats()
            base = torch.cuda.memory_allocated()
            sync()
            t0 = time.perf_counter()
            cur = curvature(
                model, (X, Y), 10, batch_size=batch, device="cuda", cache=cache
            )
            op = cur.hessian if kind == "Hess" else cur.G
            hs.lanczos_approx_spec(op, num_iters=M, num_vectors=1, seed=0)
            sync()
            wall = time.perf_counter() - t0
            rows.append(
                dict(
                    problem=name,
                    kind=kind,
                    cache=str(cache),
                    M=M,
                    wall_s=wall,
                    products=op.num_products,
                    peak_rise_MiB=(torch.cuda.max_memory_allocated() - base) / 2**20,
                    cached=cur.cache_info()["operators"],
                )
            )
            print(f"  density {name} {kind} cache={cache}: {wall:.2f} s", flush=True)
            del cur, op, model
    return rows


def exactness():
    """Tiny float64 CNN with BatchNorm: CUDA products (recomputed and cached) against
    dense CPU references."""
    sys.path.insert(0, str(HERE.parent / "tests"))
    from test_curvature import _cnn, _data, _dense_reference

    model = _cnn()
    X, Y = _data((1, 7, 7), 4)
    ref = dict(zip(("hessian", "G", "H"), _dense_reference(model, X, Y), strict=True))
    cur = curvature(_cnn(), (X, Y), 4, batch_size=7, device="cuda", cache=True)
    V = torch.randn(cur.p, 3, dtype=torch.float64)
    worst = {}
    for op in ref:
        errs = []
        for _ in range(3):  # recomputed, building, cached
            out = getattr(cur, op).matvec(V.cuda()).cpu()
            errs.append(float((out - ref[op] @ V).norm() / (ref[op] @ V).norm()))
        worst[op] = max(errs)
    info = cur.cache_info()
    return dict(
        max_rel_err=worst,
        cached_batches={k: d["batches"] for k, d in info["operators"].items()},
        budget_bytes=info["budget_bytes"],
    )


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", default="results/gpu")
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--num-iters", type=int, default=64)
    args = ap.parse_args(argv)
    if not torch.cuda.is_available():
        sys.exit("bench_gpu.py needs a CUDA device")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    res = dict(
        torch=torch.__version__,
        gpu=torch.cuda.get_device_name(),
        free_GiB=torch.cuda.mem_get_info()[0] / 2**30,
    )
    print(json.dumps(res), flush=True)
    res["exactness"] = exactness()
    print("exactness", json.dumps(res["exactness"]), flush=True)
    settings = [("cnn", 1000, 1000), ("vgg11", 2048, 1024)]
    if args.quick:
        settings = [("cnn", 200, 200), ("vgg11", 256, 128)]
    reps = 3 if args.quick else 5
    res["products"] = []
    res["densities"] = []
    for name, n, batch in settings:
        row = products(name, n, batch, reps)
        print("products", json.dumps(row), flush=True)
        res["products"].append(row)
        res["densities"] += densities(name, n, batch, args.num_iters)
    (out / "gpu.json").write_text(json.dumps(res, indent=1))
    L = [f"GPU: {res['gpu']}, torch {res['torch']}", ""]
    L.append(
        "| problem | p | n | batch | grad s | Hess x grad recomputed / cached | "
        "G | H | cache MiB (Hess, G, H) | build s (Hess) |"
    )
    L.append("|---|---|---|---|---|---|---|---|---|---|")
    for r in res["products"]:
        mib = ", ".join(
            f"{r['cache_bytes'].get(k, 0) / 2**20:.0f}" for k in ("Hess", "G", "H")
        )
        L.append(
            f"| {r['problem']} | {r['p']:,} | {r['n']} | {r['batch']} | "
            f"{r['grad_s']:.4f} | {r['hessian_recomputed_x_grad']:.2f} / "
            f"{r['hessian_cached_x_grad']:.2f} | {r['G_recomputed_x_grad']:.2f} / "
            f"{r['G_cached_x_grad']:.2f} | {r['H_recomputed_x_grad']:.2f} / "
            f"{r['H_cached_x_grad']:.2f} | {mib} | {r['hessian_build_s']:.3f} |"
        )
    L += [
        "",
        "| problem | operator | cache | M | wall s | products | peak rise MiB |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in res["densities"]:
        L.append(
            f"| {r['problem']} | {r['kind']} | {r['cache']} | {r['M']} | "
            f"{r['wall_s']:.2f} | {r['products']} | {r['peak_rise_MiB']:.0f} |"
        )
    (out / "gpu.md").write_text("\n".join(L) + "\n")
    print("\n".join(L))


if __name__ == "__main__":
    main()
