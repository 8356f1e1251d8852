"""The Snakemake workflow end to end on the tiny config (config/test.yaml), run through
the CLI in a copy of the repository, then its incremental behaviour via dry runs.

The package is installed (editable) into the interpreter running the tests, so the
copied scripts import it; Snakemake is the one beside that interpreter.
"""

from __future__ import annotations

import csv
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import xarray as xr

REPO = Path(__file__).resolve().parents[1]
SNAKEMAKE = Path(sys.executable).parent / "snakemake"
COPIED = ("Snakefile", "workflow", "config", "scripts", "profiles")
TEST_CONFIG = "config/test.yaml"
FIGURES = [f"fig{i}" for i in range(1, 11)]

pytestmark = pytest.mark.slow


def copy_workflow(dst: Path) -> Path:
    """The workflow files of the repository, without results, in `dst`."""
    dst.mkdir(parents=True, exist_ok=True)
    ignore = shutil.ignore_patterns("__pycache__", ".snakemake", "results")
    for name in COPIED:
        src = REPO / name
        if src.is_dir():
            shutil.copytree(src, dst / name, ignore=ignore)
        else:
            shutil.copy2(src, dst / name)
    return dst


def snakemake(
    workdir: Path,
    *args: str,
    configs: tuple[str, ...] = (),
    targets: tuple[str, ...] = (),
    timeout: float = 600,
    check: bool = True,
):
    """Run the Snakemake CLI in `workdir` with the test config, then `configs` on top
    (one --configfile option: a second one would replace the first)."""
    cmd = [str(SNAKEMAKE), *targets, "--profile", "profiles/local", *args]
    cmd += ["--configfile", TEST_CONFIG, *configs]
    proc = subprocess.run(
        cmd, cwd=workdir, capture_output=True, text=True, timeout=timeout
    )
    if check and proc.returncode != 0:
        raise AssertionError(
            f"{' '.join(cmd)} failed ({proc.returncode}):\n{proc.stdout}\n"
            f"{proc.stderr[-6000:]}"
        )
    return proc


def planned_jobs(workdir: Path, **kwargs) -> dict[str, int]:
    """Rule -> number of jobs a dry run would execute ({} when nothing to do)."""
    proc = snakemake(workdir, "--dry-run", "--quiet", "rules", **kwargs)
    text = proc.stdout + proc.stderr
    if "Nothing to be done" in text:
        return {}
    lines = text.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("Job stats"))
    counts = {}
    for line in lines[start + 3 :]:
        parts = line.split()
        if len(parts) != 2 or not parts[1].isdigit():
            break
        counts[parts[0]] = int(parts[1])
    counts.pop("total", None)
    return counts


def compare(
    local: Path, remote: Path, name: str, tol: float = 1e-5, select: dict | None = None
) -> None:
    """Equal up to float32 round-off of multi-threaded sums: 1e-5 relative, and
    1e-5 of the variable's largest magnitude absolute (values near a zero crossing,
    such as grid points, differ there by more than 1e-5 of themselves)."""
    with xr.open_dataset(local / "results" / f"{name}.nc") as a:
        with xr.open_dataset(remote / "results" / f"{name}.nc") as b:
            if select:
                a, b = a.sel(select), b.sel(select)
            assert set(a.data_vars) == set(b.data_vars)
            for var in a.data_vars:
                assert a[var].dims == b[var].dims
                x, y = a[var].values, b[var].values
                if x.dtype.kind == "f":
                    finite = np.abs(y[np.isfinite(y)])
                    scale = float(finite.max()) if finite.size else 0.0
                    np.testing.assert_allclose(
                        x, y, rtol=tol, atol=max(1e-9, tol * scale), equal_nan=True
                    )
                else:
                    np.testing.assert_array_equal(x, y)


def override(workdir: Path, name: str, text: str) -> str:
    """An extra config file (never nested --config values: they arrive as strings)."""
    path = workdir / "config" / f"{name}.yaml"
    path.write_text(text)
    return str(path.relative_to(workdir))


@pytest.fixture(scope="module")
def workdir(tmp_path_factory) -> Path:
    """A finished run of the tiny config."""
    work = copy_workflow(tmp_path_factory.mktemp("workflow"))
    snakemake(work, "--cores", "2")
    return work


def test_every_declared_output_exists(workdir):
    proc = snakemake(workdir, "--summary")
    rows = [line.split("\t") for line in proc.stdout.splitlines()[1:] if line]
    assert rows, proc.stdout
    for row in rows:
        path = workdir / row[0]
        assert path.exists(), f"missing output {row[0]}"
        assert row[-2] == "ok", row
    for kind in FIGURES:
        for ext in ("png", "pdf"):
            assert (workdir / "results" / "figures" / f"{kind}.{ext}").stat().st_size
    for name in ("spectra", "training", "decomposition", "selfcheck"):
        assert (workdir / "results" / f"{name}.nc").is_file()


def test_spectra_netcdf(workdir):
    ds = xr.open_dataset(workdir / "results" / "spectra.nc")
    for name in ("num_iters", "num_points", "kappa", "num_vectors", "seed"):
        assert name in ds.attrs, name
    assert ds.attrs["num_iters"] == 16 and ds.attrs["log_num_iters"] == 24
    assert ds["grid"].attrs["units"] and ds["density"].attrs["long_name"]
    p = int(ds["num_params"].sel(dataset="mnist_embedded", arch="mlp"))
    sel = dict(dataset="mnist_embedded", arch="mlp", sample_size=8, epoch=2)
    computed = 0
    for split in ds.split.values:
        for operator in ds.operator.values:
            for variant in ds.variant.values:
                one = ds.sel(split=split, operator=operator, variant=variant, **sel)
                density, grid = one["density"].values, one["grid"].values
                if np.isnan(density).all():
                    continue
                computed += 1
                assert np.isfinite(density).all() and np.isfinite(grid).all()
                outliers = one["outliers"].values
                rank = int(np.isfinite(outliers).sum())
                if variant == "deflated":
                    assert rank == 10  # C
                integral = np.trapezoid(density, grid)
                assert integral == pytest.approx(1 - rank / p, abs=0.03), (
                    split,
                    operator,
                    variant,
                )
    # train: 3 curvature operators x 3 variants + 8 decomposition members; test: 9
    assert computed == 9 + 8 + 9
    assert float(ds["learning_rate"].sel(**{k: sel[k] for k in sel if k != "epoch"}))
    ds.close()


def test_training_decomposition_selfcheck_netcdf(workdir):
    with xr.open_dataset(workdir / "results" / "training.nc") as tr:
        assert tr.sizes["epoch"] == 2
        curves = tr["test_error"].sel(dataset="mnist_embedded", arch="mlp")
        assert np.isfinite(curves.values).all()
        selected = tr["selected_lr"].sel(dataset="mnist_embedded", arch="mlp")
        assert selected.values.tolist() == [0.05]
    with xr.open_dataset(workdir / "results" / "decomposition.nc") as dec:
        one = dec.sel(dataset="mnist_embedded", arch="mlp", sample_size=8, epoch=2)
        eig = one["a1a2b1_eigenvalues"].values
        assert np.isfinite(eig).sum() == 100  # C^2
        assert set(np.unique(one["a1a2b1_source"].values)) <= {0, 1, 2}
        assert np.isfinite(one["g_top_eigenvalues"].values).all()
        assert np.isfinite(one["b2_trace_per_class"].values).all()
    with xr.open_dataset(workdir / "results" / "selfcheck.nc") as sc:
        assert list(sc.case.values) == ["fig8a", "fig8b"]
        assert np.isfinite(sc["w1_relative"].values).all()


def test_report_builds(workdir):
    snakemake(workdir, "--report", "results/report.html")
    assert (workdir / "results" / "report.html").stat().st_size > 0


def test_findings_table(workdir):
    with open(workdir / "results" / "findings.csv") as handle:
        rows = list(csv.DictReader(handle))
    assert [r["finding"] for r in rows] == [f"F{i}" for i in range(1, 9)]
    assert list(rows[0]) == ["finding", "paper", "measured", "verdict", "where", "rule"]
    verdicts = {"reproduced", "not reproduced", "not applicable"}
    assert all(r["verdict"] in verdicts and r["measured"] for r in rows)
    # The tiny config has two checkpoints: no interior peak to look for.
    assert rows[5]["verdict"] == "not applicable"
    md = (workdir / "results" / "findings.md").read_text()
    assert md.startswith("# Findings") and "| F8 |" in md


def test_focus_only_parts_are_computed_at_the_focus_alone(workdir):
    extra = override(
        workdir,
        "focus",
        "sample_sizes: [8, 12]\nspectra:\n  focus_splits: [test]\n"
        "decomposition:\n  focus_only: true\n",
    )
    proc = snakemake(workdir, "--dry-run", "--printshellcmds", configs=(extra,))
    jobs = planned_jobs(workdir, configs=(extra,))
    # n = 12 is new: its train spectra only (no test split, no members of G there);
    # at the focus (n = 8) nothing is missing.
    assert jobs["spectrum"] == 1
    assert "decomposition_spectra" not in jobs and jobs["decomposition"] == 1
    assert "n12/e2/train" in proc.stdout and "n12/e2/test" not in proc.stdout


def test_second_dry_run_has_nothing_to_do(workdir):
    assert planned_jobs(workdir) == {}


def test_lanczos_iterations_rerun_spectra_not_training(workdir):
    extra = override(workdir, "iters", "spectra:\n  num_iters: 20\n")
    jobs = planned_jobs(workdir, configs=(extra,))
    assert {"spectrum", "decomposition_spectra", "aggregate_spectra"} <= set(jobs)
    assert {f"fig{i}" for i in (1, 2, 3, 4, 5, 6, 7, 9, 10)} <= set(jobs)
    # The decomposition job reads G's top-C eigenpairs from the deflated G spectrum
    # (one subspace iteration for both), so it follows that file.
    assert "decomposition" in jobs and "findings" in jobs
    untouched = {"subsample", "train", "select_learning_rate"}
    untouched |= {"selfcheck", "aggregate_training", "fig8"}
    assert not untouched & set(jobs), jobs


def test_new_sample_size_runs_only_its_chain(workdir):
    extra = override(workdir, "sizes", "sample_sizes: [8, 12]\n")
    jobs = planned_jobs(workdir, configs=(extra,))
    assert jobs["subsample"] == 1 and jobs["train"] == 1
    assert jobs["select_learning_rate"] == 1
    assert jobs["spectrum"] == 2  # 2 splits, Hess, G and H with all variants per job
    assert jobs["decomposition_spectra"] == 1 and jobs["decomposition"] == 1
    assert {
        "aggregate_spectra",
        "aggregate_training",
        "aggregate_decomposition",
    } <= set(jobs)
    assert "selfcheck" not in jobs and "fig8" not in jobs


def test_figure_option_reruns_only_figures(workdir):
    extra = override(workdir, "dpi", "figures:\n  dpi: 61\n")
    jobs = planned_jobs(workdir, configs=(extra,))
    assert set(jobs) == set(FIGURES) | {"all"}, jobs


def test_cache_budget_reruns_nothing(workdir):
    extra = override(workdir, "cache", "spectra:\n  cache: 0.5\n")
    assert planned_jobs(workdir, configs=(extra,)) == {}


@pytest.mark.parametrize(
    "text, key",
    [
        ("spectra:\n  cache: lots\n", "spectra.cache"),
        ("datasets: [svhn]\n", "datasets[0]"),
        ("spectra:\n  operators: [hess, J]\n", "spectra.operators[1]"),
        ("decomposition:\n  operators: [A3]\n", "decomposition.operators[0]"),
        ("sample_sizes: [0]\n", "sample_sizes[0]"),
        ("sample_sizes: [-3]\n", "sample_sizes[0]"),
        ("spectra:\n  num_iters: 1\n", "spectra.num_iters"),
        ("spectra:\n  log_num_iters: 1\n", "spectra.log_num_iters"),
        ("training:\n  learning_rates: [0]\n", "training.learning_rates[0]"),
        ("training:\n  checkpoint_epochs: [1, 3]\n", "training.checkpoint_epochs"),
        ("spectra:\n  epochs: [5]\n", "spectra.epochs"),
        ("spectra:\n  subspace_tol: 0\n", "spectra.subspace_tol"),
        ("spectra:\n  log_smoothing: box\n", "spectra.log_smoothing"),
        ("spectra:\n  focus_splits: [val]\n", "spectra.focus_splits[0]"),
        ("spectra:\n  variants: {hess: [flat]}\n", "spectra.variants.hess[0]"),
        (
            "spectra:\n  focus_splits: [test]\nfigures:\n  focus: {sample_size: 9}\n",
            "figures.focus",
        ),
        ("spectra:\n  kappa: .nan\n", "spectra.kappa"),
        ("spectra:\n  margin: .nan\n", "spectra.margin"),
        ("training:\n  width: .nan\n", "training.width"),
        ("spectra:\n  log_eps: .inf\n", "spectra.log_eps"),
        ("training:\n  learning_rates: [.inf]\n", "training.learning_rates[0]"),
        ("sample_sizes: [401]\n", "sample_sizes"),
    ],
)
def test_bad_config_fails_at_parse_time(tmp_path, text, key):
    work = copy_workflow(tmp_path)
    extra = override(work, "bad", text)
    proc = snakemake(work, "--dry-run", configs=(extra,), check=False, timeout=120)
    assert proc.returncode != 0
    assert f"'{key}'" in proc.stdout + proc.stderr, proc.stderr[-3000:]
    assert not (work / "results").exists()


@pytest.mark.parametrize(
    "text, message",
    [
        (
            "training:\n  max_test: 0\n",
            "0 is not allowed; expected null or an integer >= 1",
        ),
        ("spectra:\n  cache: -1\n", "expected one of auto or a number >= 0"),
    ],
)
def test_choice_errors_say_what_is_allowed(tmp_path, text, message):
    work = copy_workflow(tmp_path)
    extra = override(work, "bad", text)
    proc = snakemake(work, "--dry-run", configs=(extra,), check=False, timeout=120)
    assert proc.returncode != 0 and message in proc.stdout + proc.stderr


def test_interrupted_run_resumes(tmp_path):
    """Kill Snakemake and its job hard while the second of two jobs runs; the rerun
    (profiles/local has rerun-incomplete) keeps the finished job's output."""
    work = copy_workflow(tmp_path)
    cmd = [str(SNAKEMAKE), "results/selfcheck.nc", "--profile", "profiles/local"]
    cmd += ["--cores", "1"]
    cmd += ["--configfile", TEST_CONFIG]
    log = work / "snakemake.log"
    with open(log, "w") as handle:
        proc = subprocess.Popen(
            cmd,
            cwd=work,
            stdout=handle,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    cases = [work / "results" / "selfcheck" / f"{c}.nc" for c in ("fig8a", "fig8b")]
    deadline = time.monotonic() + 300
    try:  # until Snakemake has recorded the first job as finished
        while "1 of 3 steps" not in log.read_text() and time.monotonic() < deadline:
            assert proc.poll() is None, "the run ended before it could be interrupted"
            time.sleep(0.05)
    finally:
        os.killpg(proc.pid, signal.SIGKILL)  # Snakemake and the job it started
        proc.wait()
    finished = [c for c in cases if c.exists()]
    assert len(finished) == 1, "expected exactly one finished job at the kill"
    stamp = finished[0].stat().st_mtime_ns
    snakemake(work, "--unlock")  # a killed Snakemake leaves its lock behind
    remaining = planned_jobs(work, targets=("results/selfcheck.nc",))
    assert remaining == {"selfcheck": 1, "aggregate_selfcheck": 1}, remaining
    snakemake(work, "--cores", "1", targets=("results/selfcheck.nc",))
    assert finished[0].stat().st_mtime_ns == stamp
    assert all(c.exists() for c in cases)
    assert (work / "results" / "selfcheck.nc").exists()


@pytest.mark.parametrize(
    "text",
    [
        "spectra:\n  batch_size: 64\n",  # samples per product chunk
        "download: true\n",
        "data_root: /nowhere/else\n",  # the embedded set ignores it
    ],
)
def test_cost_only_settings_rerun_nothing(workdir, text):
    extra = override(workdir, "cost", text)
    assert planned_jobs(workdir, configs=(extra,)) == {}


def test_training_seed_reruns_training(workdir):
    """The other side of the cost-only test: a setting that changes results does."""
    extra = override(workdir, "seed", "training:\n  seed: 1\n")
    jobs = planned_jobs(workdir, configs=(extra,))
    assert jobs["train"] == 1 and "subsample" not in jobs


def _bytes_of(paths):
    return {p: p.read_bytes() for p in paths}


def test_damaged_files_are_regenerated_without_losing_results(workdir):
    """A truncated checkpoint and a truncated per-job NetCDF are seen by the dry run
    (named, moved aside) and regenerated by the next run; the training resumes from
    its state folder (a checkpoint shares its inode with the state copy, so both are
    damaged: it trains again from the checkpoint before); the results come back
    equal."""
    results = workdir / "results"
    run = next((results / "runs").glob("*/*/n8/lr*"))
    checkpoint = run / "epoch_2.pt"
    spectrum = results / "spectra/mnist_embedded/mlp/n8/e2/test/H_plain.nc"
    with xr.open_dataset(results / "spectra.nc") as ds:
        before = ds.load()
    os.truncate(checkpoint, checkpoint.stat().st_size // 2)
    os.truncate(spectrum, spectrum.stat().st_size - 100)

    proc = snakemake(workdir, "--dry-run", "--quiet", "rules")
    said = proc.stdout + proc.stderr
    assert (
        "damaged" in said and "epoch_2.pt" in said and "H_plain.nc is damaged" in said
    )
    assert (spectrum.parent / "H_plain.nc.corrupt").exists()
    jobs = planned_jobs(workdir)
    assert jobs["train"] == 1 and jobs["spectrum"] == 2, jobs

    snakemake(workdir, "--cores", "2")
    log = (results / "logs/train/mnist_embedded/mlp/n8").glob("lr*.log")
    text = next(log).read_text()
    assert "resuming from epoch 1" in text and "damaged" in text
    with xr.open_dataset(results / "spectra.nc") as ds:
        xr.testing.assert_allclose(ds.load(), before)
    assert planned_jobs(workdir) == {}


def test_aggregate_survives_an_unreadable_input(workdir):
    """An input damaged in a way the cheap checks cannot see (bytes overwritten, size
    kept) fails the aggregation, naming the file; the previous aggregate is restored
    (update()), not deleted."""
    results = workdir / "results"
    aggregate = results / "spectra.nc"
    good = aggregate.read_bytes()
    victim = results / "spectra/mnist_embedded/mlp/n8/e2/train/G_plain.nc"
    original = victim.read_bytes()
    garbled = bytearray(original)
    garbled[2048:4096] = bytes(2048)
    victim.write_bytes(bytes(garbled))
    try:
        proc = snakemake(
            workdir, "--cores", "1", targets=("results/spectra.nc",), check=False
        )
        assert proc.returncode != 0
        log = (results / "logs/aggregate/spectra.log").read_text()
        assert "G_plain.nc" in log, log[-2000:]
        assert aggregate.read_bytes() == good
    finally:
        victim.write_bytes(original)
    snakemake(workdir, "--cores", "1", targets=("results/spectra.nc",))


def test_training_resumes_inside_the_workflow_after_sigkill(tmp_path):
    """SIGKILL Snakemake and its training job in the middle of a run; the rerun's
    training log says "resuming from epoch K" and the final checkpoint holds the
    weights of an uninterrupted run, bit for bit."""
    import torch

    long_run = "training:\n  epochs: 400\n  checkpoint_epochs: [1, 400]\n"
    long_run += "spectra:\n  epochs: [400]\nfigures:\n  focus: {epoch: 400}\n"
    target = "results/runs/mnist_embedded/mlp/n8/lr0.05"
    work = copy_workflow(tmp_path / "killed")
    extra = override(work, "long", long_run)
    cmd = [str(SNAKEMAKE), target, "--profile", "profiles/local", "--cores", "1"]
    cmd += ["--configfile", TEST_CONFIG, extra]
    state = work / "results" / "train_state"
    with open(work / "snakemake.log", "w") as handle:
        proc = subprocess.Popen(
            cmd,
            cwd=work,
            stdout=handle,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    deadline = time.monotonic() + 300
    try:  # until the run has passed its first checkpoint and written last.pt
        while not list(state.glob("**/last.pt")) and time.monotonic() < deadline:
            assert proc.poll() is None, "training ended before it could be killed"
            time.sleep(0.01)
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    assert not (work / target / "epoch_400.pt").exists()
    snakemake(work, "--unlock")
    snakemake(work, "--cores", "1", configs=(extra,), targets=(target,))
    log = (work / "results/logs/train/mnist_embedded/mlp/n8/lr0.05.log").read_text()
    resumed = [line for line in log.splitlines() if "resuming from epoch" in line]
    assert resumed and int(resumed[0].split()[3]) >= 1, log[:2000]

    clean = copy_workflow(tmp_path / "clean")
    extra = override(clean, "long", long_run)
    snakemake(clean, "--cores", "1", configs=(extra,), targets=(target,))
    a = torch.load(work / target / "epoch_400.pt", weights_only=True)
    b = torch.load(clean / target / "epoch_400.pt", weights_only=True)
    assert a["model_state"].keys() == b["model_state"].keys()
    assert all(
        torch.equal(a["model_state"][k], b["model_state"][k]) for k in a["model_state"]
    )


def test_lint_is_clean_and_workflow_files_are_snakefmt_formatted():
    """`snakemake --lint` (conda environment per rule, no mixed rules and functions,
    no variables from outside a rule in shell commands) and snakefmt, as a new user
    or a CI check would run them."""
    lint = subprocess.run(
        [str(SNAKEMAKE), "--lint", "--cores", "1"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert lint.returncode == 0, lint.stdout[-4000:] + lint.stderr[-4000:]
    snakefmt = Path(sys.executable).parent / "snakefmt"
    fmt = subprocess.run(
        [str(snakefmt), "--check", "Snakefile", "workflow/"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert fmt.returncode == 0, fmt.stdout[-4000:] + fmt.stderr[-4000:]


def _check_finished_run(work: Path) -> None:
    """The tiny config's results, figures and benchmark files are all in `work`."""
    results = work / "results"
    for name in ("spectra", "training", "decomposition", "selfcheck"):
        with xr.open_dataset(results / f"{name}.nc") as ds:
            assert ds.attrs["Conventions"] == "CF-1.10"
            assert ds.attrs["config_digest"].startswith("sha256:")
    assert all((results / "figures" / f"{kind}.png").exists() for kind in FIGURES)
    assert (results / "findings.csv").exists()
    benchmarks = sorted(
        p.relative_to(results / "benchmarks").parts[0]
        for p in (results / "benchmarks").rglob("*.tsv")
    )
    assert set(benchmarks) >= {"train", "spectrum", "decomposition", "selfcheck"}
    header = next((results / "benchmarks").rglob("*.tsv")).read_text().split()[:3]
    assert header == ["s", "h:m:s", "max_rss"]


def test_runs_from_another_working_directory(tmp_path):
    """`snakemake -s <repo>/Snakefile -d <elsewhere>`: the scripts, schema, default
    config and library are found from the workflow's own folder (a path with a space
    included); everything the run writes lands in <elsewhere>."""
    work = tmp_path / "else where"
    work.mkdir()
    before = sorted(p.name for p in REPO.iterdir())
    cmd = [
        str(SNAKEMAKE),
        "-s",
        str(REPO / "Snakefile"),
        "-d",
        str(work),
        "--profile",
        str(REPO / "profiles" / "local"),
        "--configfile",
        str(REPO / TEST_CONFIG),
        "--cores",
        "2",
    ]
    proc = subprocess.run(
        cmd, cwd=tmp_path, capture_output=True, text=True, timeout=900
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-6000:]
    _check_finished_run(work)
    assert (work / ".snakemake").is_dir()
    assert sorted(p.name for p in REPO.iterdir()) == before  # nothing new in the repo
    log = next((work / "results/logs/train").rglob("*.log")).read_text()
    head = log.splitlines()[0]
    assert " train start: hessian-spectrum " in head and "device cpu" in head
    assert re.search(r"^epoch\s+2/2 .* \d+\.\d (ms|s)$", log, flags=re.M), log
    assert " train done after " in log.splitlines()[-1]


def test_runs_as_a_module_of_another_workflow(tmp_path):
    """A host workflow imports this one with `module:` and `use rule * from`, with
    its own config; the prefixed rules run the whole tiny config in the host's
    folder."""
    host = tmp_path / "host"
    host.mkdir()
    (host / "Snakefile").write_text(
        f'configfile: "{REPO / TEST_CONFIG}"\n\n\n'
        "module hessian_spectrum:\n"
        f'    snakefile:\n        "{REPO / "Snakefile"}"\n'
        "    config:\n        config\n\n\n"
        "use rule * from hessian_spectrum as hs_*\n\n\n"
        "rule all:\n    default_target: True\n"
        "    input:\n        rules.hs_all.input,\n"
    )
    proc = subprocess.run(
        [str(SNAKEMAKE), "--cores", "2"],
        cwd=host,
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-6000:]
    assert "hs_spectrum" in proc.stdout + proc.stderr
    _check_finished_run(host)


def test_two_processes_per_spectral_job_equal_one(workdir, tmp_path):
    """spectra.processes: 2 launches each spectral job with torchrun (2 gloo ranks,
    each on half of the data); the spectra equal the one-process run's up to float32
    round-off, and rank 0 alone writes them."""
    extra = tmp_path / "two.yaml"
    extra.write_text("spectra:\n  processes: 2\n")
    cmd = [
        str(SNAKEMAKE),
        "-s",
        str(REPO / "Snakefile"),
        "-d",
        str(tmp_path),
        "--profile",
        str(REPO / "profiles" / "local"),
        "--configfile",
        str(REPO / TEST_CONFIG),
        str(extra),
        "--cores",
        "2",
        "results/spectra.nc",
    ]
    proc = subprocess.run(
        cmd, cwd=tmp_path, capture_output=True, text=True, timeout=900
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-6000:]
    assert "torchrun --standalone --nproc-per-node 2" in proc.stdout + proc.stderr
    # float32 products summed in another order (two shards, then the all-reduce):
    # the tiny config's 4 unconverged subspace iterations amplify that in the
    # deflated bounds of Hess to ~3e-5 of the range. G, H and the members hold a
    # null space of dimension ~p - NC, whose Ritz values (lambda_min, the
    # resolution at 0) are float32 noise whatever the number of processes: Hess
    # alone is compared here, every product in float64 to 1e-12 in
    # tests/test_distributed.py.
    compare(workdir, tmp_path, "spectra", tol=1e-3, select={"operator": ["hess"]})
    log = next((tmp_path / "results/logs/spectrum").rglob("spectrum.log")).read_text()
    assert "spectrum rank 0/2 start" in log and "spectrum rank 1/2 start" in log
