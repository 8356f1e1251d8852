"""Decide, finding by finding, which of the paper's results this run reproduces.

Reads the aggregated results and writes ``findings.csv`` (columns finding, paper,
measured, verdict, where, rule) and ``findings.md``; the rules are those of
:mod:`hessian_spectrum.findings`.  Results that are not given make the findings that
need them "not applicable".
"""

from __future__ import annotations

import argparse
from pathlib import Path

import xarray as xr

from hessian_spectrum.findings import Setting, evaluate, write_findings
from hessian_spectrum.provenance import JobLog


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--spectra", type=Path, required=True)
    parser.add_argument("--decomposition", type=Path)
    parser.add_argument("--training", type=Path)
    parser.add_argument("--selfcheck", type=Path)
    parser.add_argument(
        "--focus",
        nargs=4,
        metavar=("DATASET", "ARCH", "N", "EPOCH"),
        help="setting of the single-setting findings (default: largest n, last epoch)",
    )
    parser.add_argument("--csv", type=Path, required=True)
    parser.add_argument("--md", type=Path, required=True)
    return parser.parse_args(argv)


def _load(path: Path | None) -> xr.Dataset | None:
    return None if path is None else xr.load_dataset(path)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    with JobLog("findings"):
        run(args)


def run(args: argparse.Namespace) -> None:
    focus = None
    if args.focus:
        dataset, arch, n, epoch = args.focus
        focus = Setting(dataset, arch, int(n), int(epoch))
    rows = evaluate(
        xr.load_dataset(args.spectra),
        decomposition=_load(args.decomposition),
        training=_load(args.training),
        selfcheck=_load(args.selfcheck),
        focus=focus,
    )
    write_findings(rows, args.csv, args.md)
    for row in rows:
        print(f"{row.finding} {row.verdict}: {row.measured} [{row.where}]", flush=True)
    count = sum(row.verdict == "reproduced" for row in rows)
    print(f"{args.csv}: {count} of {len(rows)} findings reproduced", flush=True)


if __name__ == "__main__":
    main()
