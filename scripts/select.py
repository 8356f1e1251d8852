"""Pick the learning rate with the best final-epoch test error from a sweep.

Reads the ``history.json`` of every run and writes ``--out`` (selected.json):
``{"winner": {"lr", "run"}, "table": [...]}``, where ``run`` is the directory of
the winning run's ``history.json`` (and checkpoints).  Ties go to the smaller
learning rate; diverged runs never win; if all diverged, nothing is written.
"""

# This file's name shadows the standard library's ``select`` module for every
# script run as ``python scripts/<name>.py`` (scripts/ is then sys.path[0], and
# torch imports ``select`` through ``socket``).  So: no imports at module level
# that could import ``select``, and when imported *as* ``select`` this module
# installs the real one in its place (bottom of the file).

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path


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
    from hessian_spectrum.training import select_best, write_json

    args = parse_args(argv)
    histories = {str(p.parent): json.loads(p.read_text()) for p in args.histories}
    selected = select_best(histories)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    write_json(args.out, selected)


def _install_stdlib_select() -> None:
    """Imported as ``select``: load the standard library's module and hand it out."""
    import importlib.machinery
    import importlib.util
    import os

    here = os.path.dirname(os.path.abspath(__file__))
    path = [p for p in sys.path if os.path.abspath(p or os.curdir) != here]
    spec = importlib.machinery.PathFinder.find_spec("select", path)
    real = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(real)
    sys.modules["select"] = real  # the import system returns sys.modules["select"]


if __name__ == "select":
    _install_stdlib_select()
elif __name__ == "__main__":
    main()
