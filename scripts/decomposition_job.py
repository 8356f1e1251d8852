"""The Figure 7 quantities of train G for one selected run at one epoch.

Writes one NetCDF (per-job schema of results/decomposition.nc, docs/CONTRACTS.md):
the C^2 eigenvalues of A1 + A2 + B1 attributed to A1, B1 or A2, the eigenvalues of
A1 and A2 alone, the class traces Tr(B_{2,c})/n with their standard errors, and the
top-C eigenpairs of G from SubspaceIteration(G, C, T) -- read from the deflated G
spectrum of the same run and epoch when ``--g-top-from`` names it (the workflow
computes it there anyway), else computed here.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import xarray as xr

from hessian_spectrum import results, subspace_iteration
from hessian_spectrum._cache import cache_option as cache_budget
from hessian_spectrum._functional import resolve_device
from hessian_spectrum.data import load_dataset
from hessian_spectrum.decomposition import decompose_G
from hessian_spectrum.provenance import JobLog
from hessian_spectrum.training import load_selected


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--selected", type=Path, required=True, help="selected.json")
    parser.add_argument("--epoch", type=int, required=True)
    parser.add_argument("--dataset", required=True)
    parser.add_argument("--data-root", default="data")
    parser.add_argument("--subsample", type=Path, required=True, help="subsample .npz")
    parser.add_argument("--subspace-iters", type=int, default=128, help="T")
    parser.add_argument(
        "--trace-probes",
        type=int,
        default=64,
        help="Hutchinson probes for Tr(B_2c) (0: exact, p/32 passes)",
    )
    parser.add_argument(
        "--subspace-tol", type=float, default=1e-3, help="residual tolerance"
    )
    parser.add_argument("--subspace-oversample", type=int, default=0)
    parser.add_argument(
        "--g-top-from",
        type=Path,
        help="deflated train G spectrum (.nc) whose outliers are G's top-C pairs",
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--batch-size", type=int, default=1024)
    parser.add_argument(
        "--cache",
        type=cache_budget,
        default="auto",
        help="linearisation cache of the products: 'auto', a budget in GiB, or 0",
    )
    parser.add_argument("--device", default="auto")
    parser.add_argument("--out", type=Path, required=True)
    return parser.parse_args(argv)


def g_top(dec, num_classes: int, args: argparse.Namespace):
    """G's top-C eigenvalues, residuals and convergence flags."""
    if args.g_top_from is not None:
        with xr.open_dataset(args.g_top_from) as ds:
            keys = {d: 0 for d in results.KEYS["spectra"]}
            point = ds.isel(keys)
            values = point["outliers"].values
            residuals = point["outlier_residuals"].values
            converged = point["outlier_converged"].values
        if values.size != num_classes or not np.isfinite(values).all():
            raise SystemExit(
                f"{args.g_top_from}: expected {num_classes} deflated eigenvalues of "
                f"G, found {values.size}"
            )
        return values, residuals, converged
    found = subspace_iteration(
        dec.G,
        num_classes,
        args.subspace_iters,
        seed=args.seed,
        tol=args.subspace_tol,
        oversample=args.subspace_oversample,
        progress=True,
    )
    values, _, residuals = found
    return values.numpy(), residuals.numpy(), found.converged


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    with JobLog("decomposition_job", resolve_device(args.device)):
        run(args)


def run(args: argparse.Namespace) -> None:
    device = resolve_device(args.device)
    selected = load_selected(args.selected, args.epoch, device=device)
    model = selected.model
    with np.load(args.subsample) as subsample:
        indices, n = subsample["indices"], int(subsample["n_per_class"])
    data = load_dataset(args.dataset, args.data_root, "train").subset(indices)
    num_classes = data.num_classes
    dec = decompose_G(
        model,
        (data.x, data.y),
        num_classes,
        batch_size=args.batch_size,
        device=device,
        cache=args.cache,
    )
    attribution = dec.attributed_eigenvalues(progress=True)
    if args.trace_probes:
        traces = dec.b2_class_traces(
            num_probes=args.trace_probes, seed=args.seed, progress=True
        )
    else:
        traces = dec.b2_class_traces(method="exact", progress=True)
    members = dec.member_eigenvalues()
    values, residuals, converged = g_top(dec, num_classes, args)
    ds = results.decomposition_dataset(
        dataset=args.dataset,
        arch=selected.arch,
        sample_size=n,
        epoch=args.epoch,
        eigenvalues=attribution.values,
        source=attribution.source,
        b2_trace=traces.values,
        b2_stderr=traces.stderr,
        g_top_values=np.asarray(values),
        g_top_residuals=np.asarray(residuals),
        g_top_converged=np.asarray(converged),
        a1_eigenvalues=members["A1"],
        a2_eigenvalues=members["A2"],
        settings={
            "subspace_iters": args.subspace_iters,
            "subspace_tol": args.subspace_tol,
            "g_top_source": str(args.g_top_from) if args.g_top_from else "computed",
            "seed": args.seed,
            "trace_method": traces.method,
            "trace_probes": traces.num_probes,
            "gram_method": attribution.method,
        },
    )
    results.write_netcdf(ds, args.out)
    print(f"{args.out}: top eigenvalue of G {float(values[0]):.4g}", flush=True)


if __name__ == "__main__":
    main()
