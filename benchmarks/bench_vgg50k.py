"""The paper's main case on one GPU: VGG11 (full width, 28.2M parameters) on 50,000
CIFAR10-shaped images (random tensors: a product costs the same on any data).

Measures, with CUDA synchronisation around every timing:

1. a gradient pass over all N images (the unit of cost);
2. one Hess density, ``lanczos_approx_spec`` with M = 128 and its bounds from the same
   run, ``cache="auto"`` (what fits of the linearisation cache): wall time, products,
   peak memory, what the cache holds; the products' share of the wall time;
3. a log spectrum's cost per Lanczos step (``--log-steps`` steps of
   ``fast_lanczos`` on Hess; one step = one product), extrapolated to M = 2048.

Targets on one H200 (issue 15): the M = 128 density in at most 5 minutes; M = 2048
log steps within an hour.  Under ``torchrun --nproc-per-node P`` each process takes
1/P of the images (``distributed=True``, NCCL).

    python benchmarks/bench_vgg50k.py --out results/vgg50k          # on a GPU
    python benchmarks/bench_vgg50k.py --samples 256 --width 0.125 --device cpu \\
        --num-iters 4 --log-steps 2                                  # smoke test
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch
import torch.nn.functional as F

import hessian_spectrum as hs
from hessian_spectrum._distributed import init_from_env
from hessian_spectrum.models import build_model, count_parameters


def sync(device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


class Timed(hs.LinearOperator):
    """Counts the seconds spent in the wrapped operator's products."""

    def __init__(self, op, device):
        super().__init__(op.size, op.dtype, op.device)
        self.op, self.seconds, self._device = op, 0.0, device

    def _matmat(self, V):
        sync(self._device)
        tic = time.perf_counter()
        out = self.op.matvec(V)
        sync(self._device)
        self.seconds += time.perf_counter() - tic
        return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--samples", type=int, default=50_000)
    ap.add_argument("--width", type=float, default=1.0)
    ap.add_argument("--batch-size", type=int, default=1024)
    ap.add_argument("--num-iters", type=int, default=128)
    ap.add_argument("--log-steps", type=int, default=16)
    ap.add_argument("--device", default="auto")
    ap.add_argument("--out", default="results/vgg50k")
    args = ap.parse_args()
    rank, world, device = init_from_env(args.device)
    torch.manual_seed(0)
    model = build_model("vgg11", in_channels=3, num_classes=10, width=args.width)
    model = model.to(device).eval()
    gen = torch.Generator().manual_seed(1)
    shard = torch.tensor_split(torch.arange(args.samples), world)[rank]
    X = torch.randn(len(shard), 3, 32, 32, generator=gen).to(device)
    Y = (shard % 10).to(device)
    report = {
        "samples": args.samples,
        "processes": world,
        "p": count_parameters(model),
        "device": torch.cuda.get_device_name(device)
        if device.type == "cuda"
        else "cpu",
        "torch": torch.__version__,
    }

    # 1. the unit: a gradient pass over all samples
    def grad_pass():
        model.zero_grad(set_to_none=True)
        for i in range(0, len(Y), args.batch_size):
            loss = F.cross_entropy(
                model(X[i : i + args.batch_size]), Y[i : i + args.batch_size]
            )
            (loss * len(Y[i : i + args.batch_size]) / args.samples).backward()

    grad_pass()
    sync(device)
    tic = time.perf_counter()
    grad_pass()
    sync(device)
    report["gradient_pass_s"] = time.perf_counter() - tic

    # 2. one Hess density with its bounds, cache "auto"
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    cur = hs.curvature(
        model,
        (X, Y),
        10,
        batch_size=args.batch_size,
        device=device,
        cache="auto",
        distributed=world > 1,
        check=False,
    )
    hess = Timed(cur.hessian, device)
    sync(device)
    tic = time.perf_counter()
    sd = hs.lanczos_approx_spec(hess, args.num_iters, seed=0, progress=rank == 0)
    sync(device)
    wall = time.perf_counter() - tic
    report["density"] = {
        "num_iters": args.num_iters,
        "wall_s": wall,
        "products": sd.num_products,
        "products_s": hess.seconds,
        "product_over_gradient_pass": hess.seconds
        / sd.num_products
        / report["gradient_pass_s"],
        "bounds": list(sd.bounds),
        "cache": cur.cache_info(),
        "peak_memory_gib": (
            torch.cuda.max_memory_allocated(device) / 2**30
            if device.type == "cuda"
            else None
        ),
    }

    # 3. a log spectrum's cost per step (the cache as the density left it)
    hess.seconds = 0.0
    sync(device)
    tic = time.perf_counter()
    hs.fast_lanczos(hess, args.log_steps, seed=1)
    sync(device)
    per_step = (time.perf_counter() - tic) / args.log_steps
    report["log_spectrum"] = {
        "steps_timed": args.log_steps,
        "seconds_per_step": per_step,
        "m2048_extrapolated_min": per_step * 2048 / 60,
        "product_share": hess.seconds / (per_step * args.log_steps),
    }
    if rank == 0:
        out = Path(args.out)
        out.mkdir(parents=True, exist_ok=True)
        (out / "vgg50k.json").write_text(json.dumps(report, indent=2, default=str))
        d, g = report["density"], report["log_spectrum"]
        print(
            f"VGG11 p={report['p']:,} N={args.samples:,} on {report['device']}"
            f" x{world}\n"
            f"gradient pass {report['gradient_pass_s']:.2f} s; Hess density M="
            f"{args.num_iters}: {d['wall_s']:.1f} s ({d['products']} products, "
            f"{d['product_over_gradient_pass']:.2f}x a gradient pass each, products "
            f"{100 * d['products_s'] / d['wall_s']:.0f}% of the time), peak "
            f"{d['peak_memory_gib']} GiB; log spectrum "
            f"{g['seconds_per_step']:.2f} s/step"
            f" -> M = 2048 in {g['m2048_extrapolated_min']:.0f} min"
        )
    if world > 1:
        torch.distributed.destroy_process_group()


if __name__ == "__main__":
    main()
