"""Data-parallel products over a ``torch.distributed`` process group.

Every product of :mod:`~hessian_spectrum.curvature` and
:mod:`~hessian_spectrum.decomposition` is a sum over samples.  With
``distributed=True`` each rank holds a shard of the data set (shards may differ in
size); it sums its shard's part, weighted by ``1/N`` with ``N`` the number of samples
over *all* ranks, and one ``all_reduce`` (sum) gives every rank the same product.  The
class statistics, Gram blocks and trace sums of the decomposition are reduced the
same way.

Why the ranks stay identical: an ``all_reduce`` hands every rank the same reduced
buffer (gloo and NCCL reduce each chunk once and broadcast it), the start vectors of
Lanczos and subspace iteration come from seeded CPU generators, and everything after
a product is deterministic arithmetic on identical inputs; so Lanczos, subspace
iteration and the densities run in lockstep with no change and return the same
numbers on every rank (a test checks it).  At construction the ranks check that they
hold the same model (parameter count, dtype and a float64 checksum of the weights)
and that no shard is empty, and refuse otherwise on every rank (no rank is left
waiting in a collective).

NCCL reduces CUDA tensors only: on an NCCL group, CPU tensors are reduced through the
rank's current CUDA device.  gloo reduces CPU tensors (and CUDA ones through the CPU).
"""

from __future__ import annotations

import time

import torch

__all__ = ["Reducer", "reducer"]


class Reducer:
    """Sums tensors over the ranks of a process group (a no-op for one process)."""

    def __init__(self, group=None, enabled: bool = False):
        self.enabled = bool(enabled)
        self.group = group
        self.seconds = 0.0  # wall time inside all_reduce (benchmarks/bench_distributed)
        self.calls = 0
        if self.enabled:
            import torch.distributed as dist

            self._dist = dist
            self.rank = dist.get_rank(group)
            self.world_size = dist.get_world_size(group)
            self._nccl = dist.get_backend(group) == "nccl"
        else:
            self.rank, self.world_size, self._nccl = 0, 1, False

    def __bool__(self) -> bool:
        return self.enabled

    def sum_(self, tensor: torch.Tensor) -> torch.Tensor:
        """``tensor`` summed over the ranks, in place; returned for chaining."""
        if not self.enabled:
            return tensor
        tic = time.perf_counter()
        if self._nccl and tensor.device.type != "cuda":
            staged = tensor.to(f"cuda:{torch.cuda.current_device()}")
            self._dist.all_reduce(staged, group=self.group)
            tensor.copy_(staged)
        else:
            self._dist.all_reduce(tensor, group=self.group)
        if tensor.device.type == "cuda":
            torch.cuda.synchronize(tensor.device)
        self.seconds += time.perf_counter() - tic
        self.calls += 1
        return tensor

    def gather(self, values: list[float]) -> list[list[float]]:
        """Every rank's ``values`` (float64 numbers), in rank order."""
        local = torch.tensor(values, dtype=torch.float64)
        if not self.enabled:
            return [local.tolist()]
        out = torch.zeros(self.world_size, len(values), dtype=torch.float64)
        out[self.rank] = local
        return self.sum_(out).tolist()

    def check(self, num_samples: int, theta: torch.Tensor) -> None:
        """Refuse, on every rank, an empty shard or ranks that hold different models
        (parameter count, dtype, a float64 checksum of the weights ``theta``)."""
        if not self.enabled:
            return
        theta = theta.detach()
        itemsize = theta.element_size()
        flat = theta.double().reshape(-1)
        ramp = torch.arange(flat.numel(), dtype=torch.float64, device=flat.device)
        checksum = float((flat * (1.0 + ramp.remainder(97))).sum())
        rows = self.gather(
            [float(num_samples), float(flat.numel()), float(itemsize), checksum]
        )
        empty = [r for r, row in enumerate(rows) if row[0] == 0]
        if empty:
            raise ValueError(
                f"distributed=True: rank(s) {empty} of {self.world_size} hold an empty "
                "shard of the data set; give every rank at least one sample"
            )
        if len({tuple(row[1:]) for row in rows}) > 1:
            per_rank = [tuple(row[1:]) for row in rows]
            raise ValueError(
                "distributed=True: the ranks hold different models (parameter count, "
                f"dtype size, weight checksum per rank: {per_rank}); load the same "
                "checkpoint on every rank"
            )


def reducer(distributed: bool, group=None) -> Reducer:
    """The :class:`Reducer` of ``distributed`` (checked: a process group must exist)."""
    if not isinstance(distributed, bool):
        raise TypeError(f"distributed must be True or False, got {distributed!r}")
    if not distributed:
        return Reducer()
    import torch.distributed as dist

    if not (dist.is_available() and dist.is_initialized()):
        raise RuntimeError(
            "distributed=True needs an initialised torch.distributed process group: "
            "call torch.distributed.init_process_group (torchrun sets up the "
            "environment for it) before building the operators"
        )
    return Reducer(group, enabled=True)


def init_from_env(device: str = "auto") -> tuple[int, int, torch.device]:
    """``(rank, world_size, device)`` of this process.

    Under ``torchrun`` (``WORLD_SIZE > 1`` in the environment) the default process
    group is initialised here: NCCL when CUDA is present (each process on
    ``cuda:LOCAL_RANK``), gloo otherwise.  A single process gets ``(0, 1, device)``
    with ``"auto"`` resolved as everywhere in the library.
    """
    import os

    from ._functional import resolve_device

    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return 0, 1, resolve_device(device)
    import torch.distributed as dist

    wanted = resolve_device(device)
    if wanted.type == "cuda":
        local = int(os.environ.get("LOCAL_RANK", "0"))
        wanted = torch.device("cuda", local)
        torch.cuda.set_device(wanted)
    if not dist.is_initialized():
        dist.init_process_group("nccl" if wanted.type == "cuda" else "gloo")
    return dist.get_rank(), dist.get_world_size(), wanted


def shard(num_samples: int, rank: int, world_size: int):
    """Positions ``0..num_samples-1`` of rank ``rank``'s shard: contiguous blocks
    whose sizes differ by at most one (``numpy.array_split``)."""
    import numpy as np

    return np.array_split(np.arange(num_samples), world_size)[rank]
