"""The tiny config on a REAL one-node SLURM cluster through profiles/slurm and the
official executor plugin, compared with a local run.

tests/slurm/install.sh installs slurm-wlm, munge, slurmdbd and mariadb-server (apt),
tests/slurm/start.sh starts the daemons (accounting included, one fake GPU) and
tests/slurm/stop.sh stops them again in the fixture's teardown. Needs root and apt
(Debian); elsewhere the test is skipped with the reason.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml
from test_workflow import (
    REPO,
    SNAKEMAKE,
    TEST_CONFIG,
    compare,
    copy_workflow,
    snakemake,
)

SCRIPTS = REPO / "tests" / "slurm"
CLUSTER = "hstest"
# A slimmer tiny config (tests/test_workflow.py covers every operator and figure):
# each stage once, in a few SLURM jobs (subsample; train; groups of GPU jobs).
SLIM = """\
spectra: {operators: [hess], processes: 2}
decomposition: {operators: [A1, G-A1]}
selfcheck: {enabled: false}
figures: {kinds: [fig2]}
"""
RESULTS = ("spectra", "training", "decomposition")
TARGETS = tuple(f"results/{name}.nc" for name in RESULTS)

pytestmark = pytest.mark.slow


def why_no_cluster() -> str | None:
    if os.geteuid() != 0:
        return "installing and starting SLURM daemons needs root"
    if not shutil.which("apt-get") and not shutil.which("slurmctld"):
        return "no apt-get to install slurm-wlm (Debian/Ubuntu only)"
    conf = Path("/etc/slurm/slurm.conf")
    if conf.exists() and f"ClusterName={CLUSTER}" not in conf.read_text():
        return f"{conf} belongs to another cluster; not overwriting it"
    return None


def run_script(name: str, timeout: float) -> subprocess.CompletedProcess:
    return subprocess.run(
        ["bash", str(SCRIPTS / name)], capture_output=True, text=True, timeout=timeout
    )


@pytest.fixture(scope="module")
def cluster():
    reason = why_no_cluster()
    if reason:
        print(f"SKIP test_slurm: {reason}")
        pytest.skip(reason)
    install = run_script("install.sh", timeout=900)
    if install.returncode != 0:
        reason = f"cannot install the SLURM packages: {install.stderr[-1500:]}"
        print(f"SKIP test_slurm: {reason}")
        pytest.skip(reason)
    try:
        start = run_script("start.sh", timeout=300)
        assert start.returncode == 0, (
            f"start.sh failed:\n{start.stdout}\n{start.stderr}\n"
            + "".join(
                f"--- {log}\n{log.read_text()[-2000:]}"
                for log in Path("/var/log/slurm").glob("*.log")
            )
        )
        yield
    finally:
        run_script("stop.sh", timeout=120)


def test_profile_asks_for_gpus_and_keeps_bookkeeping_local():
    profile = yaml.safe_load((REPO / "profiles/slurm/config.yaml").read_text())
    assert profile["executor"] == "slurm"
    for rule in ("train", "spectrum", "decomposition_spectra", "decomposition"):
        assert profile["set-resources"][rule]["gpu"] == 1
    localrules = (REPO / "Snakefile").read_text().split("localrules:")[1]
    for rule in ("aggregate_spectra", "select_learning_rate", "fig1", "fig10"):
        assert f"    {rule}," in localrules


def parsed(work: Path, *argv: str):
    """The arguments in force for `snakemake *argv` run in `work`, as Snakemake's
    own command-line parsing (profiles and workflow profile included) gives them."""
    from snakemake.cli import parse_args

    before = os.getcwd()
    os.chdir(work)
    try:
        return parse_args(list(argv))[1]
    finally:
        os.chdir(before)


def test_slurm_profile_settings_are_the_ones_in_force(tmp_path):
    """No workflow profile (profiles/default) overrides profiles/slurm; the check
    would fail if one did, as the planted profiles/default shows."""
    work = copy_workflow(tmp_path / "work")
    assert not (work / "profiles" / "default").exists()
    shipped = yaml.safe_load((REPO / "profiles/slurm/config.yaml").read_text())
    args = parsed(work, "--profile", "profiles/slurm", "-n")
    assert args.executor == "slurm"
    assert args.latency_wait == shipped["latency-wait"] == 60
    assert args.keep_going is True and args.retries == 1
    assert args.slurm_efficiency_report is True
    assert (
        str(args.slurm_efficiency_report_path)
        == shipped["slurm-efficiency-report-path"]
    )
    threads = {rule: r.value for rule, r in args.set_threads.items()}
    assert threads == shipped["set-threads"]
    memory = {rule: r["mem_mb"].value for rule, r in args.set_resources.items()}
    assert memory == {r: v["mem_mb"] for r, v in shipped["set-resources"].items()}
    local = parsed(work, "--profile", "profiles/local", "-n")
    assert local.cores == 2 and local.latency_wait == 5
    (work / "profiles" / "default").mkdir()
    shutil.copy(work / "profiles/local/config.yaml", work / "profiles/default")
    overridden = parsed(work, "--profile", "profiles/slurm", "-n")
    assert overridden.latency_wait == 5  # what a profiles/default would do


def test_gpu_and_cpu_jobs_go_to_their_own_partitions():
    profile = yaml.safe_load((REPO / "profiles/slurm/config.yaml").read_text())
    cpu = profile["default-resources"]["slurm_partition"]
    for rule, resources in profile["set-resources"].items():
        partition = resources.get("slurm_partition", cpu)
        if resources.get("gpu"):
            assert partition != cpu and "gpu" in partition, rule
        else:
            assert partition == cpu, rule


def shipped_profile() -> dict:
    return yaml.safe_load((REPO / "profiles/slurm/config.yaml").read_text())


def test_tiny_config_on_slurm_equals_local_run(cluster, tmp_path):
    """profiles/slurm as shipped, not rewritten: the test cluster (start.sh) has its
    placeholder account and partitions and announces the CPUs and memory it asks
    for."""
    remote = copy_workflow(tmp_path / "slurm")
    (remote / "config" / "slim.yaml").write_text(SLIM)
    configs = [TEST_CONFIG, "config/slim.yaml"]
    proc = subprocess.run(
        [
            str(SNAKEMAKE),
            *TARGETS,
            "--profile",
            "profiles/slurm",
            "--configfile",
            *configs,
        ],
        cwd=remote,
        capture_output=True,
        text=True,
        timeout=900,
    )
    log = proc.stdout + proc.stderr
    assert proc.returncode == 0, log[-8000:]
    job_ids = sorted(set(re.findall(r"SLURM jobid (\d+)", log)), key=int)
    assert job_ids, f"no job went through SLURM:\n{log[-4000:]}"
    sacct = subprocess.run(
        ["sacct", "-n", "-X", "-P", "-o", "JobID,State", "-j", ",".join(job_ids)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    states = dict(line.split("|")[:2] for line in sacct.stdout.split())
    assert set(states) == set(job_ids), (sacct.stdout, sacct.stderr)
    assert set(states.values()) == {"COMPLETED"}, states
    folder = remote / shipped_profile()["slurm-efficiency-report-path"]
    reports = list(folder.glob("efficiency_report_*.csv"))
    assert len(reports) == 1, f"no efficiency report in {folder}:\n{log[-3000:]}"
    header, *rows = reports[0].read_text().splitlines()
    assert "CPU Efficiency (%)" in header and len(rows) >= len(job_ids)
    benchmarks = list((remote / "results" / "benchmarks").rglob("*.tsv"))
    assert benchmarks and all(
        b.read_text().startswith("s\th:m:s\tmax_rss") for b in benchmarks
    )

    # The local run with the profile's torch threads: float32 sums over 4 threads
    # differ from 1 thread's at round-off.
    shipped = yaml.safe_load((REPO / "profiles/slurm/config.yaml").read_text())
    threads = [f"{rule}={n}" for rule, n in shipped["set-threads"].items()]
    # ... and one process per spectral job, where the SLURM run's used 2 (torchrun,
    # gloo): the data-parallel products equal the one-process ones
    local = copy_workflow(tmp_path / "local")
    (local / "config" / "slim.yaml").write_text(
        SLIM.replace("processes: 2", "processes: 1")
    )
    snakemake(
        local,
        "--cores",
        "8",
        "--set-threads",
        *threads,
        configs=("config/slim.yaml",),
        targets=TARGETS,
    )
    # spectra from 2 processes against 1: see test_two_processes_per_spectral_job_...
    compare(local, remote, "spectra", tol=1e-3, select={"operator": ["hess"]})
    for name in ("training", "decomposition"):
        compare(local, remote, name)
