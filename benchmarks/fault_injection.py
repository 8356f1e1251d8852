"""Fault injection: the tiny configuration killed with SIGKILL at random moments.

    .venv/bin/python benchmarks/fault_injection.py [--kills 10] [--seed 0]

Runs the tiny configuration (config/test.yaml, with a 1,500-epoch training so that
kills land in training too) once uninterrupted; then, in a fresh copy (a *trial*),
starts the same workflow, kills Snakemake and its jobs with SIGKILL (the whole process
group) at a random moment, unlocks and starts it again, until a start finishes before
its kill; a final start completes the trial, and trials follow one another until
``--kills`` kills have landed. It reports

* finished jobs redone: jobs whose outputs were complete at a kill and were written
  again later (target 0);
* training repeated: epochs trained again after a resume, from the training logs
  (a resume from the last complete epoch repeats at most the epoch in flight);
* whether every aggregated NetCDF file (data variables and coordinates) and every
  checkpoint's weights equal those of the uninterrupted run bit for bit (target: yes).

Each kill comes 2 s to half the uninterrupted wall time after its start. Needs
nothing but the project's .venv; takes about 10 minutes on 2 cores.
"""

from __future__ import annotations

import argparse
import os
import random
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from base64 import urlsafe_b64decode
from pathlib import Path

import torch
import xarray as xr

REPO = Path(__file__).resolve().parents[1]
SNAKEMAKE = Path(sys.executable).parent / "snakemake"
COPIED = ("Snakefile", "workflow", "config", "scripts", "profiles")
LONGER = """\
training:
  epochs: 1500
  checkpoint_epochs: [1, 500, 1500]
spectra:
  epochs: [1500]
figures:
  focus: {epoch: 1500}
"""


def copy_workflow(dst: Path) -> Path:
    dst.mkdir(parents=True)
    for name in COPIED:
        src = REPO / name
        if src.is_dir():
            shutil.copytree(src, dst / name, ignore=shutil.ignore_patterns("results"))
        else:
            shutil.copy2(src, dst / name)
    (dst / "config" / "longer.yaml").write_text(LONGER)
    return dst


def command(*extra: str) -> list[str]:
    return [
        str(SNAKEMAKE),
        "--profile",
        "profiles/local",
        "--configfile",
        "config/test.yaml",
        "config/longer.yaml",
        *extra,
    ]


def outputs(work: Path) -> dict[Path, int]:
    """Per-job output files that exist, with their modification times (ns); the
    rolling training state and quarantined files are not job outputs."""
    found = {}
    for path in (work / "results").rglob("*"):
        rel = path.relative_to(work / "results")
        if path.is_file() and rel.parts[0] not in ("logs", "train_state"):
            found[path] = path.stat().st_mtime_ns
    return found


def incomplete(work: Path) -> set[Path]:
    """Outputs Snakemake marks incomplete (their job was running at the kill).

    Read from Snakemake's own records, ``.snakemake/incomplete/``: one file per
    output, named by the output path in URL-safe base64 (split into folders of
    ``@``-prefixed pieces when the name is too long) -- what ``--summary`` reports,
    without starting Snakemake."""
    records = work / ".snakemake" / "incomplete"
    marked = set()
    for record in records.rglob("*") if records.is_dir() else []:
        if not record.is_file() or record.name == "migration_underway":
            continue
        pieces = [part.lstrip("@") for part in record.relative_to(records).parts]
        target = work / urlsafe_b64decode("".join(pieces)).decode()
        marked |= {target} | set(target.rglob("*") if target.is_dir() else [])
    return marked


def rule_of(work: Path, path: Path) -> str:
    """The stage an output belongs to, for the report."""
    rel = path.relative_to(work / "results").parts
    if rel[0] == "runs":
        return "select" if path.name == "selected.json" else "train"
    stages = {"spectra": "spectrum", "figures": "figure"}
    return stages.get(rel[0], rel[0] if len(rel) > 1 else path.name)


def train_logs(work: Path) -> dict[Path, str]:
    return {p: p.read_text() for p in (work / "results/logs/train").rglob("*.log")}


def epochs_reached(text: str) -> int:
    done = [int(m) for m in re.findall(r"^epoch\s+(\d+)/", text, flags=re.M)]
    return max(done, default=0)


def resumed_from(text: str) -> int | None:
    found = re.search(r"resuming from epoch (\d+)", text)
    return int(found.group(1)) if found else None


def same_results(a: Path, b: Path) -> list[str]:
    """What differs between two finished runs (empty: bit-identical)."""
    differ = []
    for name in ("spectra", "training", "decomposition", "selfcheck"):
        with xr.open_dataset(a / f"results/{name}.nc") as x:
            with xr.open_dataset(b / f"results/{name}.nc") as y:
                if set(x.variables) != set(y.variables):
                    differ.append(f"{name}.nc: other variables")
                    continue
                for var in x.variables:
                    if var == "seconds":  # wall time per epoch
                        continue
                    if not x[var].equals(y[var]):
                        differ.append(f"{name}.nc:{var}")
    for ckpt in sorted((a / "results/runs").rglob("epoch_*.pt")):
        other = b / ckpt.relative_to(a)
        s = torch.load(ckpt, weights_only=True)["model_state"]
        t = torch.load(other, weights_only=True)["model_state"]
        if s.keys() != t.keys() or not all(torch.equal(s[k], t[k]) for k in s):
            differ.append(str(ckpt.relative_to(a)))
    return differ


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--kills", type=int, default=10)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--keep", action="store_true", help="keep the work folders")
    args = parser.parse_args(argv)
    rng = random.Random(args.seed)
    root = Path(tempfile.mkdtemp(prefix="fault-injection-"))
    try:
        clean = copy_workflow(root / "clean")
        tic = time.monotonic()
        subprocess.run(
            command(), cwd=clean, check=True, capture_output=True, timeout=1800
        )
        wall = time.monotonic() - tic
        print(f"uninterrupted run: {wall:.0f} s", flush=True)

        redone, repeated, resumes, kills, trials = 0, 0, 0, 0, 0
        differ: list[str] = []
        while kills < args.kills:
            trials += 1
            work = copy_workflow(root / f"killed{trials}")
            finished: dict[Path, int] = {}
            seen: dict[Path, str] = {}  # train log -> the text of the attempt last seen

            def observe(work=work, finished=finished, seen=seen) -> set[Path]:
                """Count redone jobs and repeated epochs since the last look;
                return the outputs of the jobs that were running."""
                nonlocal redone, repeated, resumes
                now = outputs(work)
                for path, stamp in finished.items():
                    if now.get(path, stamp) != stamp:
                        redone += 1
                        print(f"  redone: {path.relative_to(work)}")
                for path, text in train_logs(work).items():
                    old = seen.get(path)
                    if old is not None and not text.startswith(old):  # new attempt
                        start = resumed_from(text)
                        resumes += start is not None
                        repeated += max(0, epochs_reached(old) - (start or 0))
                    seen[path] = text
                running = incomplete(work)
                finished.clear()
                finished.update({p: s for p, s in now.items() if p not in running})
                return running

            print(f"trial {trials}:", flush=True)
            while kills < args.kills:
                moment = rng.uniform(2.0, max(3.0, 0.5 * wall))
                with open(work / f"run{kills}.log", "w") as handle:
                    proc = subprocess.Popen(
                        command(),
                        cwd=work,
                        stdout=handle,
                        stderr=subprocess.STDOUT,
                        start_new_session=True,
                    )
                    try:
                        proc.wait(timeout=moment)
                    except subprocess.TimeoutExpired:
                        os.killpg(proc.pid, signal.SIGKILL)
                        proc.wait()
                        kills += 1
                    else:  # this trial is complete: start a new one
                        print(f"  start finished before the kill at {moment:.0f} s")
                        break
                subprocess.run(
                    command("--unlock"), cwd=work, capture_output=True, timeout=600
                )
                running = observe()
                jobs = sorted({rule_of(work, p) for p in running}) or ["no job"]
                print(
                    f"  kill {kills} at {moment:4.1f} s, during {', '.join(jobs)}: "
                    f"{len(finished)} files finished",
                    flush=True,
                )
            proc = subprocess.run(
                command(), cwd=work, capture_output=True, text=True, timeout=1800
            )
            if proc.returncode != 0:
                raise SystemExit(f"the final start failed:\n{proc.stderr[-3000:]}")
            observe()
            differ += [f"trial {trials}: {d}" for d in same_results(clean, work)]
        print()
        print(f"kills: {kills} in {trials} trials, training resumes: {resumes}")
        print(f"finished jobs redone: {redone} (target 0)")
        print(f"training epochs repeated: {repeated}")
        print(
            "results and checkpoints bit-identical to the uninterrupted run: "
            + ("yes" if not differ else f"no: {', '.join(differ)}")
        )
    finally:
        if args.keep:
            print(f"work folders kept in {root}")
        else:
            shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
