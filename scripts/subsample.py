"""Choose a balanced training subset: n examples per class, nested across n.

Writes ``--out`` (.npz) with ``indices`` (into the data set's train split),
``dataset``, ``n_per_class`` and ``seed``.  Nothing is written on error.
"""

from __future__ import annotations

import argparse
import os
import tempfile
from pathlib import Path

import numpy as np

from hessian_spectrum.data import DATASETS, load_dataset, subsample_balanced
from hessian_spectrum.provenance import JobLog


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", required=True, choices=sorted(DATASETS))
    parser.add_argument("--data-root", default="data", help="torchvision data root")
    parser.add_argument("--n-per-class", type=int, required=True)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, required=True, help="output .npz")
    parser.add_argument(
        "--download", action="store_true", help="let torchvision fetch missing files"
    )
    args = parser.parse_args(argv)
    if args.n_per_class < 1:
        parser.error(f"--n-per-class must be positive, got {args.n_per_class}")
    if args.out.suffix != ".npz":
        parser.error(f"--out must end in .npz, got {args.out}")
    return args


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    with JobLog("subsample"):
        run(args)


def run(args: argparse.Namespace) -> None:
    labels = load_dataset(args.dataset, args.data_root, "train", args.download).y
    indices = subsample_balanced(labels, args.n_per_class, args.seed)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=args.out.parent, suffix=".npz")
    os.close(fd)
    try:
        np.savez(
            tmp,
            indices=indices,
            dataset=args.dataset,
            n_per_class=args.n_per_class,
            seed=args.seed,
        )
        os.replace(tmp, args.out)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


if __name__ == "__main__":
    main()
