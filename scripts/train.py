"""Train one network with SGD as in the paper (Appendix C.1), with checkpoints.

Writes ``<outdir>/epoch_<E>.pt`` for every ``--checkpoint-epochs`` entry and
``<outdir>/history.json``; resumes from the newest checkpoint already in ``outdir``
(a rolling ``last.pt`` exists only while a run is unfinished).  With ``--state-dir``
the run lives there and its checkpoints and history are hard-linked into ``outdir``
when it is done (see ``hessian_spectrum.training.publish_run``).  A diverged run still
writes every declared file (placeholder checkpoints flagged ``diverged``).
"""

from __future__ import annotations

import argparse
import math
from pathlib import Path

import numpy as np
import torch

from hessian_spectrum._functional import resolve_device
from hessian_spectrum.data import DATASETS, load_dataset
from hessian_spectrum.models import MODELS
from hessian_spectrum.provenance import JobLog
from hessian_spectrum.training import publish_run, train


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", required=True, choices=sorted(DATASETS))
    parser.add_argument("--data-root", default="data", help="torchvision data root")
    parser.add_argument(
        "--subset", type=Path, help="subset .npz from subsample.py (default: all)"
    )
    parser.add_argument("--arch", required=True, choices=sorted(MODELS))
    parser.add_argument("--width", type=float, default=1.0, help="width multiplier")
    parser.add_argument("--lr", type=float, required=True, help="initial learning rate")
    parser.add_argument("--epochs", type=int, required=True)
    parser.add_argument(
        "--checkpoint-epochs", type=int, nargs="*", default=[], metavar="E"
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument(
        "--max-test", type=int, help="evaluate on at most this many test samples"
    )
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:1...")
    parser.add_argument(
        "--resume-every",
        type=int,
        default=1,
        help="write the rolling last.pt every this many epochs (0: never)",
    )
    parser.add_argument(
        "--threads", type=int, help="CPU threads for torch (default: torch's choice)"
    )
    parser.add_argument("--outdir", type=Path, required=True)
    parser.add_argument(
        "--state-dir",
        type=Path,
        help="train (and resume) here, then hard-link the checkpoints and history "
        "into --outdir (the workflow: Snakemake deletes --outdir before a rerun)",
    )
    parser.add_argument(
        "--download", action="store_true", help="let torchvision fetch missing files"
    )
    args = parser.parse_args(argv)
    if not (math.isfinite(args.lr) and args.lr > 0):
        parser.error(f"--lr must be a positive number, got {args.lr}")
    if args.epochs < 1:
        parser.error(f"--epochs must be positive, got {args.epochs}")
    bad = [e for e in args.checkpoint_epochs if not 1 <= e <= args.epochs]
    if bad:
        parser.error(f"--checkpoint-epochs {bad} lie outside 1..{args.epochs}")
    if not args.width > 0:
        parser.error(f"--width must be positive, got {args.width}")
    if args.max_test is not None and args.max_test < 1:
        parser.error(f"--max-test must be positive, got {args.max_test}")
    if args.subset is not None and not args.subset.is_file():
        parser.error(f"--subset {args.subset} does not exist")
    return args


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    with JobLog("train", resolve_device(args.device)):
        run(args)


def run(args: argparse.Namespace) -> None:
    train_data = load_dataset(args.dataset, args.data_root, "train", args.download)
    test_data = load_dataset(args.dataset, args.data_root, "test", args.download)
    config = {
        "dataset": args.dataset,
        "arch": args.arch,
        "width": args.width,
        "subset": None,
        "n_per_class": None,
    }
    if args.subset is not None:
        with np.load(args.subset) as subset:
            if str(subset["dataset"]) != args.dataset:
                raise SystemExit(
                    f"--subset {args.subset} was drawn from {subset['dataset']}, "
                    f"not {args.dataset}"
                )
            train_data = train_data.subset(subset["indices"])
            config.update(
                subset=str(args.subset), n_per_class=int(subset["n_per_class"])
            )
    test_data = test_data.capped(args.max_test)
    config["max_test"] = args.max_test
    spec = {
        "arch": args.arch,
        "in_channels": train_data.in_channels,
        "num_classes": train_data.num_classes,
        "width": args.width,
        "input_size": int(train_data.x.shape[-1]),
    }
    train(
        spec,
        train_data,
        test_data,
        lr=args.lr,
        epochs=args.epochs,
        seed=args.seed,
        batch_size=args.batch_size,
        checkpoint_epochs=args.checkpoint_epochs,
        outdir=args.state_dir or args.outdir,
        resume_every=args.resume_every or None,
        device=args.device,
        config=config,
    )
    if args.state_dir is not None:
        publish_run(args.state_dir, args.outdir, [*args.checkpoint_epochs, args.epochs])


if __name__ == "__main__":
    main()
