"""The Figure 7 quantities of train G for one selected run at one epoch.

Writes one NetCDF (per-job schema of results/decomposition.nc, docs/CONTRACTS.md):
the C^2 eigenvalues of A1 + A2 + B1 attributed to A1, B1 or A2, the class traces
Tr(B_{2,c})/n with their standard errors, and the top-C eigenpairs of G from
SubspaceIteration(G, C, T).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from hessian_spectrum import results, subspace_iteration
from hessian_spectrum._functional import resolve_device
from hessian_spectrum.data import load_dataset
from hessian_spectrum.decomposition import decompose_G
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
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--batch-size", type=int, default=1024)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--out", type=Path, required=True)
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    device = resolve_device(args.device)
    selected = load_selected(args.selected, args.epoch, device=device)
    model = selected.model
    with np.load(args.subsample) as subsample:
        indices, n = subsample["indices"], int(subsample["n_per_class"])
    data = load_dataset(args.dataset, args.data_root, "train").subset(indices)
    num_classes = data.num_classes
    dec = decompose_G(
        model, (data.x, data.y), num_classes, batch_size=args.batch_size, device=device
    )
    attribution = dec.attributed_eigenvalues()
    if args.trace_probes:
        traces = dec.b2_class_traces(num_probes=args.trace_probes, seed=args.seed)
    else:
        traces = dec.b2_class_traces(method="exact")
    values, _, residuals = subspace_iteration(
        dec.G, num_classes, args.subspace_iters, seed=args.seed
    )
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
        settings={
            "subspace_iters": args.subspace_iters,
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
