"""Strong scaling of one spectral density over torch.distributed processes.

One Hessian density (``lanczos_approx_spec``, M steps, bounds from the same run) of a
LeNet on N MNIST-shaped images, the data split into P shards (``distributed=True``),
for P = 1, 2, ... processes: wall time, speed-up, and the share of the time spent in
the all-reduce of the products (``Reducer.seconds``).  gloo on CPUs (one torch thread
per process), NCCL on GPUs (one GPU per process; P up to the GPU count).

    .venv/bin/python benchmarks/bench_distributed.py                 # P = 1, 2 (CPU)
    .venv/bin/python benchmarks/bench_distributed.py --procs 1 2 4 8 --device cuda

On a 2-core CPU the two processes share the machine's memory bandwidth and the
all-reduce of each p-vector goes through shared memory: it shows the overhead
honestly rather than a speed-up a cluster would see.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import tempfile
import time
from pathlib import Path

import torch
import torch.distributed as dist
import torch.multiprocessing as mp

import hessian_spectrum as hs
from hessian_spectrum.models import build_model


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _worker(rank, world, port, args, out):
    torch.set_num_threads(args.threads)
    cuda = args.device == "cuda"
    device = torch.device("cuda", rank) if cuda else torch.device("cpu")
    if world > 1:
        os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
        dist.init_process_group("nccl" if cuda else "gloo", rank=rank, world_size=world)
    torch.manual_seed(0)
    model = build_model(args.arch, in_channels=1, num_classes=10, input_size=28).eval()
    gen = torch.Generator().manual_seed(1)
    X = torch.randn(args.samples, 1, 28, 28, generator=gen)
    Y = torch.arange(args.samples) % 10
    shard = torch.tensor_split(torch.arange(args.samples), world)[rank]
    cur = hs.curvature(
        model,
        (X[shard], Y[shard]),
        10,
        batch_size=args.batch_size,
        device=device,
        cache="auto" if args.cache == "auto" else False,
        distributed=world > 1,
        check=False,
    )
    reduce = cur._problem.reduce
    if world > 1:
        dist.barrier()
    tic = time.perf_counter()
    sd = hs.lanczos_approx_spec(cur.hessian, args.num_iters, seed=0)
    if cuda:
        torch.cuda.synchronize()
    wall = time.perf_counter() - tic
    if rank == 0:
        result = {
            "processes": world,
            "wall_s": wall,
            "allreduce_s": reduce.seconds,
            "allreduce_calls": reduce.calls,
            "products": sd.num_products,
            "p": cur.p,
            "lambda_max": float(sd.bounds[1]),
        }
        Path(out).write_text(json.dumps(result))
    if world > 1:
        dist.destroy_process_group()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--procs", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--samples", type=int, default=1024)
    parser.add_argument("--num-iters", type=int, default=32)
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--arch", default="lenet")
    parser.add_argument("--threads", type=int, default=1, help="torch threads/process")
    parser.add_argument(
        "--cache", choices=["off", "auto"], default="off", help="linearisation cache"
    )
    parser.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    args = parser.parse_args()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for world in args.procs:
            out = str(Path(tmp) / f"p{world}.json")
            mp.spawn(_worker, args=(world, _free_port(), args, out), nprocs=world)
            rows.append(json.loads(Path(out).read_text()))
    base = rows[0]["wall_s"]
    print(
        f"{args.arch}, N = {args.samples}, M = {args.num_iters}, device {args.device}, "
        f"{args.threads} thread(s)/process, p = {rows[0]['p']}"
    )
    print("| processes | wall (s) | speed-up | all-reduce (s) | share | lambda_max |")
    print("|---|---|---|---|---|---|")
    for r in rows:
        share = r["allreduce_s"] / r["wall_s"]
        print(
            f"| {r['processes']} | {r['wall_s']:.2f} | {base / r['wall_s']:.2f}x | "
            f"{r['allreduce_s']:.3f} ({r['allreduce_calls']} calls) | "
            f"{100 * share:.1f}% | {r['lambda_max']:.6g} |"
        )


if __name__ == "__main__":
    main()
