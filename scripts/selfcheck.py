"""Self-check of the spectral estimators on synthetic matrices (paper Figure 8).

fig8a: LanczosApproxSpec of Y = X + Z Z^T / 20000 (p = 2000, three outliers);
fig8b: the log spectrum of Y = Z^T Z / 1000 with Pareto(1) entries (p = 1000; its
spectrum spans 13 decades, so the quadrature needs M of the order of p: W1 is 25% of
the log range at M = 128, 1% at M = 1000, 0.5% at M = 2048, the paper's setting).
Both against the exact eigenvalues (eigh), with the Wasserstein-1 distance relative
to the spread of the exact spectrum (on the log10(|lambda| + eps) axis for fig8b).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from hessian_spectrum import (
    figure8a_matrix,
    figure8b_matrix,
    lanczos_approx_spec,
    log_spectrum,
    results,
    wasserstein1,
)
from hessian_spectrum.density import SMOOTHINGS
from hessian_spectrum.provenance import JobLog
from hessian_spectrum.validation import log_eigenvalues


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--case", choices=results.CASES, required=True)
    parser.add_argument("--num-iters", type=int, default=128, help="M (fig8a)")
    parser.add_argument(
        "--log-num-iters", type=int, default=1000, help="M of the log spectrum (fig8b)"
    )
    parser.add_argument("--num-points", type=int, default=1024, help="K")
    parser.add_argument("--num-vectors", type=int, default=10, help="n_vec")
    parser.add_argument("--kappa", type=float, default=3.0)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--eps", type=float, default=1e-5, help="log spectrum (fig8b)")
    parser.add_argument("--smoothing", choices=SMOOTHINGS, default="paper")
    parser.add_argument("--log-smoothing", choices=SMOOTHINGS, default="adaptive")
    parser.add_argument("--out", type=Path, required=True)
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    with JobLog("selfcheck"):
        run(args)


def run(args: argparse.Namespace) -> None:
    settings = dict(
        num_points=args.num_points,
        num_vectors=args.num_vectors,
        kappa=args.kappa,
        seed=args.seed,
    )
    if args.case == "fig8a":
        Y = figure8a_matrix(seed=args.seed)
        exact = np.linalg.eigvalsh(Y.numpy())
        sd = lanczos_approx_spec(
            Y, args.num_iters, smoothing=args.smoothing, **settings
        )
        target = exact
    else:
        Y = figure8b_matrix(seed=args.seed)
        exact = np.linalg.eigvalsh(Y.numpy())
        sd = log_spectrum(
            Y,
            args.log_num_iters,
            eps=args.eps,
            smoothing=args.log_smoothing,
            **settings,
        )
        target = log_eigenvalues(exact, args.eps)
    num_iters = args.num_iters if args.case == "fig8a" else args.log_num_iters
    w1 = wasserstein1(sd.grid, sd.density, target, sd.outliers)
    w1_relative = w1 / float(target.max() - target.min())
    ds = results.selfcheck_dataset(
        args.case,
        exact_eigenvalues=exact,
        sd=sd,
        w1_relative=w1_relative,
        settings={
            "num_iters": num_iters,
            "eps": args.eps,
            "smoothing": sd.settings["smoothing"],
            **settings,
        },
    )
    results.write_netcdf(ds, args.out)
    print(f"{args.case}: relative W1 = {w1_relative:.4f}", flush=True)


if __name__ == "__main__":
    main()
