"""Spectral densities of one selected run at one epoch: a NetCDF per operator, variant.

Reads the winning run from selected.json, loads its checkpoint ``epoch_<E>.pt``, builds
the operators (Hess, G, H, or members of G and G minus one member) on the train
subsample or the test split, and writes ``<outdir>/<operator>_<variant>.nc``
(per-job schema of results/spectra.nc, docs/CONTRACTS.md). Variants (paper C.2):

  plain     LanczosApproxSpec(M, K, n_vec, kappa), normalised by Algorithm 4 with the
            bounds read off the same M-step run (margin tau)
  deflated  the same on the rank-C deflated operator, SubspaceIteration(C, T) stopped
            at the residual tolerance --subspace-tol
  log       density of log10(|lambda| + eps), M_log iterations; deflated (rank C)
            for the operators listed in --log-deflate

The deflated and the deflated log spectrum of one operator share one subspace
iteration.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import torch

from hessian_spectrum import (
    lanczos_approx_spec,
    log_spectrum,
    results,
    subspace_iteration,
)
from hessian_spectrum._cache import cache_option as cache_budget
from hessian_spectrum._distributed import init_from_env, shard
from hessian_spectrum._progress import Progress
from hessian_spectrum.data import load_dataset
from hessian_spectrum.density import SMOOTHINGS
from hessian_spectrum.provenance import JobLog
from hessian_spectrum.training import load_selected

CURVATURE = ("hess", "G", "H")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--selected", type=Path, required=True, help="selected.json")
    parser.add_argument("--epoch", type=int, required=True)
    parser.add_argument("--dataset", required=True)
    parser.add_argument("--data-root", default="data")
    parser.add_argument("--subsample", type=Path, required=True, help="subsample .npz")
    parser.add_argument("--split", choices=results.SPLITS, required=True)
    parser.add_argument("--max-test", type=int, help="cap on test images (default all)")
    parser.add_argument(
        "--operators", nargs="+", choices=results.OPERATORS, required=True
    )
    parser.add_argument(
        "--variants",
        nargs="+",
        choices=results.VARIANTS,
        required=True,
        help="variants of every operator (unless --variants-of names its own)",
    )
    parser.add_argument(
        "--variants-of",
        action="append",
        default=[],
        metavar="OPERATOR=V1,V2",
        help="the variants of one operator, e.g. H=plain,log (repeatable)",
    )
    parser.add_argument("--num-iters", type=int, default=128, help="M")
    parser.add_argument("--num-points", type=int, default=1024, help="K")
    parser.add_argument("--num-vectors", type=int, default=1, help="n_vec")
    parser.add_argument("--kappa", type=float, default=3.0)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--margin", type=float, default=0.05, help="tau")
    parser.add_argument("--subspace-iters", type=int, default=128, help="T (at most)")
    parser.add_argument(
        "--subspace-oversample",
        type=int,
        default=0,
        help="extra columns of subspace iteration (faster convergence)",
    )
    parser.add_argument(
        "--subspace-tol",
        type=float,
        default=1e-3,
        help="stop subspace iteration at ||Ax - lambda x|| <= tol |lambda_1|",
    )
    parser.add_argument("--smoothing", choices=SMOOTHINGS, default="paper")
    parser.add_argument("--log-smoothing", choices=SMOOTHINGS, default="adaptive")
    parser.add_argument("--log-num-iters", type=int, default=2048)
    parser.add_argument("--log-eps", type=float, default=1e-5)
    parser.add_argument("--log-deflate", nargs="*", default=[], metavar="OPERATOR")
    parser.add_argument("--batch-size", type=int, default=1024)
    parser.add_argument(
        "--cache",
        type=cache_budget,
        default="auto",
        help="linearisation cache of Hess/G/H products: 'auto' (a quarter of the "
        "available memory), a budget in GiB, or 0 to recompute every product",
    )
    parser.add_argument("--device", default="auto")
    parser.add_argument("--outdir", type=Path, required=True)
    args = parser.parse_args(argv)
    if args.split == "test" and set(args.operators) - set(CURVATURE):
        parser.error("members of G are computed on the train split only")
    args.rank, args.world = 0, 1  # one process (main() reads torchrun's environment)
    args.variants_by = {}
    for item in args.variants_of:
        operator, _, names = item.partition("=")
        variants = [v for v in names.split(",") if v]
        if (
            operator not in args.operators
            or not variants
            or (set(variants) - set(results.VARIANTS))
        ):
            parser.error(
                f"--variants-of {item!r}: expected OPERATOR=V1,V2 with OPERATOR in "
                f"--operators and variants among {', '.join(results.VARIANTS)}"
            )
        args.variants_by[operator] = variants
    return args


def load_data(args: argparse.Namespace):
    """The train subsample of the run, or the (capped) test split; and n per class."""
    with np.load(args.subsample) as subsample:
        indices, n = subsample["indices"], int(subsample["n_per_class"])
    data = load_dataset(args.dataset, args.data_root, args.split)
    data = data.subset(indices) if args.split == "train" else data.capped(args.max_test)
    return data, n


def spectrum(op, variant: str, deflation, args, name: str = ""):
    """One variant; ``deflation`` is the operator's shared SubspaceResult (or 0);
    progress lines carry ``name`` (the operator)."""
    common = dict(
        progress=Progress(f"{name} {variant}".strip(), 0, args.rank == 0),
        num_points=args.num_points,
        num_vectors=args.num_vectors,
        kappa=args.kappa,
        seed=args.seed,
        margin=args.margin,
        subspace_iters=args.subspace_iters,
        subspace_tol=args.subspace_tol,
    )
    if variant == "plain":
        return lanczos_approx_spec(
            op, args.num_iters, smoothing=args.smoothing, **common
        )
    if variant == "deflated":
        return lanczos_approx_spec(
            op, args.num_iters, deflate=deflation, smoothing=args.smoothing, **common
        )
    return log_spectrum(
        op,
        args.log_num_iters,
        eps=args.log_eps,
        deflate=deflation,
        smoothing=args.log_smoothing,
        **common,
    )


def variants_of(operator: str, args) -> list[str]:
    return args.variants_by.get(operator, args.variants)


def deflation_of(op, operator: str, num_classes: int, args):
    """The top-C eigenpairs shared by the operator's deflated variants, or 0."""
    variants = variants_of(operator, args)
    needs = "deflated" in variants or (
        "log" in variants and operator in args.log_deflate
    )
    if not needs:
        return 0
    torch.manual_seed(args.seed)
    found = subspace_iteration(
        op,
        num_classes,
        args.subspace_iters,
        seed=args.seed,
        tol=args.subspace_tol,
        oversample=args.subspace_oversample,
        progress=Progress(operator, 0, args.rank == 0),
    )
    if args.rank:
        return found
    print(
        f"{operator}: subspace iteration {found.num_iters} steps "
        f"({found.num_products} products), {int(found.converged.sum())}/"
        f"{found.rank} converged, max relative residual "
        f"{found.relative_residuals().max():.2e} (tol {found.tol:g})",
        flush=True,
    )
    return found


def main(argv: list[str] | None = None) -> None:
    """One process, or one rank of a ``torchrun`` launch (data-parallel products:
    each rank holds a shard, rank 0 writes the files)."""
    args = parse_args(argv)
    args.rank, args.world, device = init_from_env(args.device)
    name = "spectrum" if args.world == 1 else f"spectrum rank {args.rank}/{args.world}"
    try:
        with JobLog(name, device):
            run(args, device)
    finally:
        if args.world > 1:
            import torch.distributed as dist

            dist.destroy_process_group()


def run(args: argparse.Namespace, device: torch.device) -> None:
    selected = load_selected(args.selected, args.epoch, device=device)
    model = selected.model
    data, n = load_data(args)
    distributed = args.world > 1
    if distributed:
        data = data.subset(shard(data.num_samples, args.rank, args.world))
    lead = args.rank == 0  # prints, logs progress and writes the files
    num_classes = data.num_classes
    pair = (data.x, data.y)
    operators = {}
    if set(args.operators) & set(CURVATURE):
        from hessian_spectrum.curvature import curvature

        cur = curvature(
            model,
            pair,
            num_classes,
            batch_size=args.batch_size,
            device=device,
            cache=args.cache,
            distributed=distributed,
        )
        operators.update(hess=cur.hessian, G=cur.G, H=cur.H)
    if set(args.operators) - set(CURVATURE):
        from hessian_spectrum.decomposition import decompose_G

        dec = decompose_G(
            model,
            pair,
            num_classes,
            batch_size=args.batch_size,
            device=device,
            cache=args.cache,
            distributed=distributed,
        )
        for name in set(args.operators) - set(CURVATURE):
            operators[name] = dec.operator(name)
    args.outdir.mkdir(parents=True, exist_ok=True)
    for operator in args.operators:
        op = operators[operator]
        deflation = deflation_of(op, operator, num_classes, args)
        for variant in variants_of(operator, args):
            torch.manual_seed(args.seed)
            shared = deflation
            if variant == "log" and operator not in args.log_deflate:
                shared = 0
            sd = spectrum(op, variant, shared, args, operator)
            ds = results.spectrum_dataset(
                sd,
                dataset=args.dataset,
                arch=selected.arch,
                sample_size=n,
                epoch=args.epoch,
                split=args.split,
                operator=operator,
                variant=variant,
                num_classes=num_classes,
                learning_rate=selected.lr,
            )
            out = args.outdir / f"{operator}_{variant}.nc"
            if not lead:
                continue
            results.write_netcdf(ds, out)
            print(
                f"{out}: p={sd.p} products={sd.num_products} "
                f"integral={sd.integral():.4f} bounds={sd.bounds} "
                f"resolution={sd.resolution:.3g}",
                flush=True,
            )
        if operator in CURVATURE:
            if lead:
                print(f"{operator}: linearisation cache {cur.cache_info()}", flush=True)
            cur.clear_cache()  # the next operator gets the whole budget (every rank)


if __name__ == "__main__":
    main()
