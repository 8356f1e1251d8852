"""Draw one of the paper's figures from the aggregated NetCDF results.

Writes ``--out`` (PNG) and the same stem with ``.pdf``. The figure kinds and the files
they read (docs/CONTRACTS.md):

  fig1  G and G minus A1, A2, B1, B2 (log spectra)       spectra
  fig2  Hessian, deflated, train / test, every data set  spectra
  fig3  Hess, G, H: outliers and bulk zoom               spectra
  fig4  tails of H and power-law fits                    spectra
  fig5  deflation against plain Lanczos                  spectra
  fig6  Hess, G, H over sample size x epoch              spectra
  fig7  hierarchy of G over sample size x epoch          spectra, decomposition
  fig8  self-check on synthetic matrices                 selfcheck
  fig9  Hessian without deflation, every data set        spectra
  fig10 learning curves, G's peak epoch marked           training (+ decomposition
                                                         or spectra for the peaks)

Without --sample-size / --epoch, the largest sample size and epoch with the figure's
spectrum computed are drawn (fig6, fig7: every one present, at most six each; these
two and fig10 accept several values). Without --dataset / --arch, the first present.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import xarray as xr

from hessian_spectrum import plotting
from hessian_spectrum.provenance import JobLog

RESULTS = Path("results")
INPUTS = ("spectra", "decomposition", "training", "selfcheck")
NEEDS = {
    "fig1": ("spectra",),
    "fig2": ("spectra",),
    "fig3": ("spectra",),
    "fig4": ("spectra",),
    "fig5": ("spectra",),
    "fig6": ("spectra",),
    "fig7": ("spectra", "decomposition"),
    "fig8": ("selfcheck",),
    "fig9": ("spectra",),
    "fig10": ("training",),
}
OPTIONAL = {"fig10": ("decomposition", "spectra")}  # G's peak epoch, in this order
GRID_KINDS = ("fig6", "fig7", "fig10")  # kinds taking several sample sizes / epochs


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__.splitlines()[0],
        epilog=__doc__.split("\n\n", 1)[1],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--figure", required=True, choices=list(NEEDS))
    parser.add_argument("--out", type=Path, required=True, help="PATH.png (and .pdf)")
    parser.add_argument("--dataset")
    parser.add_argument("--arch")
    parser.add_argument("--sample-size", type=int, nargs="+", help="per class")
    parser.add_argument("--epoch", type=int, nargs="+")
    for name in INPUTS:
        parser.add_argument(
            f"--{name}", type=Path, help=f"default: {RESULTS / name}.nc"
        )
    parser.add_argument("--dpi", type=int, default=150)
    args = parser.parse_args(argv)
    if args.out.suffix.lower() != ".png":
        parser.error(f"--out must end in .png, got {args.out}")
    if args.figure not in GRID_KINDS:
        for flag in ("sample_size", "epoch"):
            values = getattr(args, flag)
            if values is not None and len(values) > 1:
                parser.error(f"{args.figure} takes one --{flag.replace('_', '-')}")
    return args


def load_inputs(args: argparse.Namespace) -> dict[str, xr.Dataset]:
    """Open what the figure needs (error if missing) and what it may use."""
    loaded = {}
    for name in NEEDS[args.figure]:
        path = getattr(args, name) or RESULTS / f"{name}.nc"
        if not path.is_file():
            raise FileNotFoundError(f"--{name}: file not found: {path}")
        loaded[name] = xr.load_dataset(path)
    for name in OPTIONAL.get(args.figure, ()):
        path = getattr(args, name)
        if path is not None and not path.is_file():
            raise FileNotFoundError(f"--{name}: file not found: {path}")
        if path is not None:
            loaded[name] = xr.load_dataset(path)
    return loaded


def draw(args: argparse.Namespace, data: dict[str, xr.Dataset]):
    """Call the plotting function of ``args.figure`` with the selection given."""
    one = {
        "sample_size": args.sample_size[0] if args.sample_size else None,
        "epoch": args.epoch[0] if args.epoch else None,
    }
    point = {"dataset": args.dataset, "arch": args.arch, **one}
    grid = {
        "dataset": args.dataset,
        "arch": args.arch,
        "sample_sizes": args.sample_size,
        "epochs": args.epoch,
    }
    datasets = [args.dataset] if args.dataset else None
    spectra = data.get("spectra")
    match args.figure:
        case "fig1":
            return plotting.figure1_g_decomposition(spectra, **point)
        case "fig2":
            return plotting.figure2_hessian_deflated(
                spectra, arch=args.arch, datasets=datasets, **one
            )
        case "fig3":
            return plotting.figure3_components(spectra, **point)
        case "fig4":
            return plotting.figure4_h_tails(spectra, **point)
        case "fig5":
            return plotting.figure5_deflation(spectra, **point)
        case "fig6":
            return plotting.figure6_dynamics(spectra, **grid)
        case "fig7":
            return plotting.figure7_g_hierarchy(spectra, data["decomposition"], **grid)
        case "fig8":
            return plotting.figure8_selfcheck(data["selfcheck"])
        case "fig9":
            return plotting.figure9_hessian_plain(
                spectra, arch=args.arch, datasets=datasets, **one
            )
        case "fig10":
            return plotting.figure10_learning_curves(
                data["training"],
                dataset=args.dataset,
                arch=args.arch,
                decomposition=data.get("decomposition"),
                spectra=spectra,
                sample_sizes=args.sample_size,
            )
    raise AssertionError(args.figure)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    with JobLog("make_figures"):
        run(args)


def run(args: argparse.Namespace) -> None:
    try:
        fig = draw(args, load_inputs(args))
    except (FileNotFoundError, ValueError) as err:
        sys.exit(f"make_figures.py {args.figure}: error: {err}")
    png, pdf = plotting.save_figure(fig, args.out, dpi=args.dpi)
    print(f"wrote {png} and {pdf}")


if __name__ == "__main__":
    main()
