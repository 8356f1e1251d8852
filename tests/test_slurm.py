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

import numpy as np
import pytest
import xarray as xr
import yaml
from test_workflow import REPO, SNAKEMAKE, TEST_CONFIG, copy_workflow, snakemake

SCRIPTS = REPO / "tests" / "slurm"
CLUSTER = "hstest"
# A slimmer tiny config (tests/test_workflow.py covers every operator and figure):
# each stage once, in a few SLURM jobs (subsample; train; groups of GPU jobs).
SLIM = """\
spectra: {operators: [hess]}
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


def slurm_test_profile(work: Path) -> str:
    """profiles/slurm adapted to the one-node test cluster: its account and
    partition, requests that fit 2 cores, fast status polling."""
    profile = yaml.safe_load((REPO / "profiles/slurm/config.yaml").read_text())
    small = {"mem_mb": 500, "cpus_per_task": 1, "runtime": 15}
    profile["default-resources"] = {
        "slurm_account": "root",
        "slurm_partition": "debug",
        **small,
    }
    for resources in profile["set-resources"].values():
        resources.update(small)
    profile["set-threads"] = {rule: 1 for rule in profile["set-threads"]}
    profile.update(
        {
            "jobs": 4,
            "latency-wait": 5,
            "retries": 0,
            "keep-going": False,
            "slurm-init-seconds-before-status-checks": 8,
            "max-status-checks-per-second": 2,
        }
    )
    folder = work / "profiles" / "slurm-test"
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "config.yaml").write_text(yaml.safe_dump(profile))
    return str(folder.relative_to(work))


def compare(local: Path, remote: Path, name: str) -> None:
    with xr.open_dataset(local / "results" / f"{name}.nc") as a:
        with xr.open_dataset(remote / "results" / f"{name}.nc") as b:
            assert set(a.data_vars) == set(b.data_vars)
            for var in a.data_vars:
                assert a[var].dims == b[var].dims
                x, y = a[var].values, b[var].values
                if x.dtype.kind == "f":
                    np.testing.assert_allclose(
                        x, y, rtol=1e-5, atol=1e-9, equal_nan=True
                    )
                else:
                    np.testing.assert_array_equal(x, y)


def test_tiny_config_on_slurm_equals_local_run(cluster, tmp_path):
    remote = copy_workflow(tmp_path / "slurm")
    (remote / "config" / "slim.yaml").write_text(SLIM)
    profile = slurm_test_profile(remote)
    configs = [TEST_CONFIG, "config/slim.yaml"]
    proc = subprocess.run(
        [str(SNAKEMAKE), *TARGETS, "--profile", profile, "--configfile", *configs],
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

    local = copy_workflow(tmp_path / "local")
    (local / "config" / "slim.yaml").write_text(SLIM)
    snakemake(local, "--cores", "2", configs=("config/slim.yaml",), targets=TARGETS)
    for name in RESULTS:
        compare(local, remote, name)
