"""Packaging: ranges in pyproject.toml, exact pins in constraints.txt, and no
dependency declared without use or used without declaration."""

from __future__ import annotations

import ast
import importlib.metadata
import re
import sys
import tomllib
from pathlib import Path

import yaml
from packaging.requirements import Requirement

ROOT = Path(__file__).resolve().parents[1]
PROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]

# import name -> distribution name, where they differ or the use is indirect
DISTRIBUTION = {"netCDF4": "netCDF4", "yaml": "pyyaml"}
# distributions used without an import statement of their own name
INDIRECT = {
    "netCDF4": 'xarray engine="netcdf4" (results.py)',
    "snakemake-executor-plugin-slurm": "loaded by snakemake from profiles/slurm",
}


def requirements(names: list[str]) -> dict[str, Requirement]:
    out = {}
    for text in names:
        req = Requirement(text)
        out[req.name.lower()] = req
    return out


def imported(paths) -> set[str]:
    found = set()
    for path in paths:
        text = path.read_text()
        if path.suffix == ".smk" or path.name == "Snakefile":  # not plain Python
            found |= set(re.findall(r"^\s*(?:import|from)\s+(\w+)", text, re.M))
            continue
        for node in ast.walk(ast.parse(text)):
            if isinstance(node, ast.Import):
                found |= {alias.name.split(".")[0] for alias in node.names}
            elif isinstance(node, ast.ImportFrom) and node.level == 0:
                found.add(node.module.split(".")[0])
    local = {
        p.stem
        for d in ("tests", "benchmarks", "scripts")
        for p in (ROOT / d).glob("*.py")
    }
    return (
        {m for m in found if m not in sys.stdlib_module_names}
        - local
        - {"hessian_spectrum"}
    )


CORE = requirements(PROJECT["dependencies"])
EXTRAS = {k: requirements(v) for k, v in PROJECT["optional-dependencies"].items()}


def test_the_library_declares_ranges_and_no_workflow_tools():
    for req in CORE.values():
        assert not any(s.operator == "==" for s in req.specifier), req
    assert not {"snakemake", "mlxtend", "pandas", "pyyaml"} & set(CORE)


def test_every_import_is_declared_and_every_declaration_used():
    library = imported((ROOT / "src").rglob("*.py"))
    workflow = imported(
        [ROOT / "Snakefile", *(ROOT / "workflow").rglob("*.smk")]
        + list((ROOT / "scripts").glob("*.py"))
        # the peers' benchmark runs in its own environment (.venv-peers)
        + [p for p in (ROOT / "benchmarks").glob("*.py") if "peers" not in p.name]
    )
    declared_core = set(CORE)
    declared_workflow = declared_core | set(EXTRAS["data"]) | set(EXTRAS["workflow"])
    for module in library:
        dist = DISTRIBUTION.get(module, module).lower()
        assert dist in declared_core | set(EXTRAS["data"]), module
    for module in workflow:
        dist = DISTRIBUTION.get(module, module).lower()
        assert dist in declared_workflow, module
    used = {DISTRIBUTION.get(m, m).lower() for m in library | workflow}
    used |= {d.lower() for d in INDIRECT} | {"hessian-spectrum"}
    for dist in declared_workflow:
        assert dist in used, f"{dist} is declared but never imported"


def test_constraints_pin_every_dependency_inside_its_range():
    pins = {}
    for line in (ROOT / "constraints.txt").read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            name, version = re.fullmatch(r"([A-Za-z0-9_.\-]+)==(\S+)", line).groups()
            pins[name.lower().replace("_", "-")] = version
    everything = dict(CORE)
    for extra in EXTRAS.values():
        everything.update(extra)
    everything.pop("hessian-spectrum")
    for name, req in everything.items():
        key = name.replace("_", "-")
        assert key in pins, f"{name} has no pin in constraints.txt"
        assert req.specifier.contains(pins[key], prereleases=True), (req, pins[key])
    # the environment the tests run in is the pinned one
    for name in ("torch", "numpy", "snakemake"):
        assert importlib.metadata.version(name) == pins[name]


def test_license_and_citation():
    assert PROJECT["license"] == "MIT"
    assert (ROOT / "LICENSE").read_text().startswith("MIT License")
    cff = yaml.safe_load((ROOT / "CITATION.cff").read_text())
    assert cff["cff-version"] == "1.2.0"
    assert cff["version"] == PROJECT["version"]
    assert cff["license"] == PROJECT["license"]
    assert "Papyan" in str(cff["preferred-citation"]["authors"])


def test_conda_environment_pins_what_constraints_pins():
    """workflow/envs/hessian-spectrum.yaml (`--sdm conda`) installs the library's
    core and data dependencies at the versions of constraints.txt, the venv's."""
    env = yaml.safe_load((ROOT / "workflow/envs/hessian-spectrum.yaml").read_text())
    pip = next(d["pip"] for d in env["dependencies"] if isinstance(d, dict))
    pinned = {}
    for line in (ROOT / "constraints.txt").read_text().splitlines():
        if "==" in line and not line.lstrip().startswith("#"):
            name, version = line.split("==")
            pinned[name.strip().lower()] = version.strip()
    in_env = {Requirement(r).name.lower(): Requirement(r) for r in pip}
    needed = {**CORE, **requirements(PROJECT["optional-dependencies"]["data"])}
    assert set(in_env) == set(needed)
    for name, req in in_env.items():
        (spec,) = req.specifier
        assert spec.operator == "==" and spec.version == pinned[name], name
    assert "python=3.11" in env["dependencies"]
    rules = "".join(p.read_text() for p in (ROOT / "workflow/rules").glob("*.smk"))
    conda = re.findall(r"^\s*conda:\s*\n\s*CONDA_ENV\s*$", rules, re.M)
    assert len(conda) == len(re.findall(r"^\s*shell:", rules, re.M)) > 10
