"""Training throughput (images/s) on this machine: SGD steps at batch 128 on
MNIST-shaped 1x32x32 inputs, for VGG11 at width 1/8 and 1 and the LeNet-style CNN.

Each model gets one warm-up step (allocation, oneDNN kernel selection) and then
``--iters`` timed steps of forward, backward and SGD update (momentum 0.9, weight
decay 5e-4, as in training).  Run: ``python benchmarks/bench_training.py``.
"""

from __future__ import annotations

import argparse
import time

import torch
import torch.nn.functional as F

from hessian_spectrum._functional import resolve_device
from hessian_spectrum.models import build_model, count_parameters

CASES = [("lenet", 1.0), ("vgg11", 1 / 8), ("vgg11", 1.0)]


def throughput(arch: str, width: float, iters: int, batch: int, device) -> float:
    torch.manual_seed(0)
    model = build_model(arch, in_channels=1, num_classes=10, width=width).to(device)
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9, weight_decay=5e-4)
    x = torch.randn(batch, 1, 32, 32, device=device)
    y = torch.randint(0, 10, (batch,), device=device)

    def step() -> None:
        opt.zero_grad(set_to_none=True)
        F.cross_entropy(model(x), y).backward()
        opt.step()

    step()
    if device.type == "cuda":
        torch.cuda.synchronize()
    tic = time.perf_counter()
    for _ in range(iters):
        step()
    if device.type == "cuda":
        torch.cuda.synchronize()
    return iters * batch / (time.perf_counter() - tic)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--iters", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, help="torch CPU threads")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    device = resolve_device(args.device)
    print(
        f"device {device}, torch threads {torch.get_num_threads()}, "
        f"batch {args.batch_size}, {args.iters} timed steps"
    )
    print(f"{'model':<16}{'params':>12}{'images/s':>12}{'s/epoch@50k':>14}")
    for arch, width in CASES:
        p = count_parameters(build_model(arch, 1, 10, width=width))
        ips = throughput(arch, width, args.iters, args.batch_size, device)
        name = f"{arch} w={width:g}"
        print(f"{name:<16}{p:>12,}{ips:>12.1f}{50_000 / ips:>14.1f}", flush=True)


if __name__ == "__main__":
    main()
