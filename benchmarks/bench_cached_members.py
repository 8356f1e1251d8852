"""The members of G's decomposition on the linearisation cache, against a cached G.

The CNN of ``bench_decomposition.py`` (about 200k parameters, C = 10) on N images:
median time of one product with G (``hs.curvature(..., cache=True)``: the reference,
a cached Gauss-Newton product) and with each member of the decomposition, cached
(``decompose_G(..., cache=True)``) and recomputed (``cache=False``).  The first
products (tracing and binding the cache) are warm-up; the timed rounds interleave the
operators so that load on a shared machine hits all of them alike.

Target (issue 15): each member's cached product within ~1.3x a cached G product.

    .venv/bin/python benchmarks/bench_cached_members.py [--images 1000] [--rounds 5]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_decomposition import build_cnn, load_images  # noqa: E402

import hessian_spectrum as hs  # noqa: E402

NAMES = ["G", "A1", "A2", "B1", "B2", "G-A1", "G-B2", "A1+A2+B1"]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--images", type=int, default=1000)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--batch-size", type=int, default=250)
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    C = 10
    model = build_cnn(C)
    X = load_images(args.images)
    Y = torch.arange(len(X)) % C
    data = (X, Y)
    kw = dict(batch_size=args.batch_size, device="cpu")
    cur = hs.curvature(model, data, C, cache=True, check=False, **kw)
    cached = hs.decompose_G(model, data, C, cache=True, **kw)
    plain = hs.decompose_G(model, data, C, cache=False, **kw)
    v = torch.randn(cur.p, generator=torch.Generator().manual_seed(0))
    ops = {"curvature G (cached)": cur.G}
    ops |= {f"{n} cached": cached.operator(n) for n in NAMES}
    ops |= {f"{n} recomputed": plain.operator(n) for n in NAMES}
    for op in ops.values():  # warm-up: the cache fills on the second product
        op.matvec(v)
        op.matvec(v)
    times = {name: [] for name in ops}
    for r in range(args.rounds):
        for name in list(ops) if r % 2 == 0 else list(ops)[::-1]:
            tic = time.perf_counter()
            ops[name].matvec(v)
            times[name].append(time.perf_counter() - tic)
    med = {n: statistics.median(t) for n, t in times.items()}
    ref = med["curvature G (cached)"]
    print(
        f"CNN p = {cur.p:,}, N = {len(X)}, C = {C}, batch {args.batch_size}, "
        f"{args.threads} thread(s), median of {args.rounds}"
    )
    print("| operator | cached (s) | x cached G | recomputed (s) | x cached G |")
    print("|---|---|---|---|---|")
    print(f"| curvature G (cached) | {ref:.4f} | 1.00 | | |")
    for n in NAMES:
        c, p = med[f"{n} cached"], med[f"{n} recomputed"]
        print(f"| {n} | {c:.4f} | {c / ref:.2f} | {p:.4f} | {p / ref:.2f} |")
    info = cached.cache_info()
    print(
        f"decomposition cache: {info['used_bytes'] / 2**20:.0f} MiB "
        f"{ {k: v['batches'] for k, v in info['operators'].items()} }; "
        f"curvature cache {cur.cache_info()['used_bytes'] / 2**20:.0f} MiB"
    )


if __name__ == "__main__":
    main()
