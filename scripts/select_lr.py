"""Pick the learning rate with the best final-epoch test error from a sweep.

Reads the ``history.json`` of every run and writes ``--out`` (selected.json):
``{"winner": {"lr", "run"}, "table": [...]}``, where ``run`` is the directory of
the winning run's ``history.json`` (and checkpoints).  Ties go to the smaller
learning rate; diverged runs never win; if all diverged, nothing is written.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from hessian_spectrum.provenance import JobLog
from hessian_spectrum.training import select_best, write_json


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--histories", type=Path, nargs="+", required=True)
    parser.add_argument("--out", type=Path, required=True, help="selected.json")
    args = parser.parse_args(argv)
    missing = [str(p) for p in args.histories if not p.is_file()]
    if missing:
        parser.error(f"history files not found: {', '.join(missing)}")
    return args


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    with JobLog("select_lr"):
        run(args)


def run(args: argparse.Namespace) -> None:
    histories = {str(p.parent): json.loads(p.read_text()) for p in args.histories}
    selected = select_best(histories)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    write_json(args.out, selected)


if __name__ == "__main__":
    main()
