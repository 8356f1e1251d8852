"""The layering of the library, read from the modules' top-level imports.

- the linear-algebra modules (operators, Lanczos, densities, subspace iteration,
  power laws) know no models, data, training, curvature, results or plotting;
- the numerical core imports neither matplotlib nor xarray at module level (xarray
  loads lazily inside ``SpectralDensity.to_xarray``);
- plotting reads NetCDF results only: no torch, no checkpoints, no curvature;
- the stdlib-only modules the workflow loads from their file at parse time
  (catalog, integrity) import nothing else.
"""

from __future__ import annotations

import ast
import sys
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "src" / "hessian_spectrum"

LINEAR_ALGEBRA = ("operators", "lanczos", "density", "subspace", "powerlaw")
APPLICATION = {
    "models",
    "data",
    "training",
    "curvature",
    "decomposition",
    "results",
    "plotting",
    "findings",
    "features",
}


def top_level_imports(module: str) -> tuple[set[str], set[str]]:
    """(sibling modules, third-party or stdlib top-level names) imported at module
    level (not inside functions)."""
    tree = ast.parse((PACKAGE / f"{module}.py").read_text())
    siblings, external = set(), set()
    for node in tree.body:
        if isinstance(node, ast.ImportFrom):
            if node.level == 1 and node.module:
                siblings.add(node.module)
            elif node.level == 1:
                siblings |= {alias.name for alias in node.names}
            elif node.module == "hessian_spectrum":
                siblings |= {alias.name for alias in node.names}
            elif node.module.startswith("hessian_spectrum."):
                siblings.add(node.module.split(".")[1])
            else:
                external.add(node.module.split(".")[0])
        elif isinstance(node, ast.Import):
            external |= {alias.name.split(".")[0] for alias in node.names}
    return siblings, external


@pytest.mark.parametrize("module", LINEAR_ALGEBRA)
def test_linear_algebra_knows_no_models_data_or_plotting(module):
    siblings, external = top_level_imports(module)
    assert not siblings & APPLICATION, siblings & APPLICATION
    assert not external & {"matplotlib", "xarray", "torchvision"}, external


def test_plotting_reads_results_only():
    siblings, external = top_level_imports("plotting")
    assert "torch" not in external
    assert not siblings & {"models", "data", "training", "curvature", "decomposition"}


@pytest.mark.parametrize("module", ["catalog", "integrity"])
def test_parse_time_modules_are_stdlib_only(module):
    siblings, external = top_level_imports(module)
    assert not siblings
    assert external <= set(sys.stdlib_module_names) | {"__future__"}, external
