"""Aggregate per-job results into one self-describing NetCDF (docs/CONTRACTS.md).

  spectra        per-job spectral .nc files        -> results/spectra.nc
  decomposition  per-job Figure 7 .nc files        -> results/decomposition.nc
  selfcheck      per-case .nc files                -> results/selfcheck.nc
  training       run folders and selected.json     -> results/training.nc

Input paths come as arguments and/or one per line from --inputs-from (a file, or "-"
for stdin: the workflow passes tens of thousands of paths that way).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from hessian_spectrum import results
from hessian_spectrum.provenance import JobLog

KINDS = ("spectra", "decomposition", "selfcheck", "training")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__.splitlines()[0],
        epilog=__doc__.split("\n\n", 1)[1],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("kind", choices=KINDS)
    parser.add_argument("inputs", nargs="*", type=Path)
    parser.add_argument("--inputs-from", help="file with one path per line, - = stdin")
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument(
        "--config-digest",
        help="digest of the workflow configuration, kept as the config_digest "
        "attribute (the workflow passes sha256 of its config)",
    )
    args = parser.parse_args(argv)
    if args.inputs_from:
        stream = (
            sys.stdin if args.inputs_from == "-" else open(args.inputs_from)  # noqa: SIM115
        )
        with stream:
            args.inputs += [Path(line.strip()) for line in stream if line.strip()]
    if not args.inputs:
        parser.error("no inputs given")
    return args


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    with JobLog("aggregate"):
        run(args)


def run(args: argparse.Namespace) -> None:
    if args.kind == "training":
        ds = results.read_training(args.inputs)
    else:
        ds = results.combine(args.inputs, args.kind)
    results.write_netcdf(
        ds, args.out, title=results.TITLES[args.kind], config_digest=args.config_digest
    )
    print(f"{args.out}: {len(args.inputs)} inputs, {dict(ds.sizes)}", flush=True)


if __name__ == "__main__":
    main()
