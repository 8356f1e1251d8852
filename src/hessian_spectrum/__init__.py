"""hessian-spectrum: full eigenvalue spectra of deep-network Hessians at scale.

Matrix-free curvature operators (the Hessian, its Gauss-Newton part G, the rest H and
the three-level decomposition of G), Lanczos spectral densities, subspace iteration and
deflation, after Papyan (2019), "The Full Spectrum of Deepnet Hessians at Scale".
"""

from importlib import import_module

from .curvature import Curvature, curvature
from .decomposition import GDecomposition, decompose_G
from .density import (
    SpectralDensity,
    bounds_from_lanczos,
    lanczos_approx_spec,
    log_spectrum,
    spectral_bounds,
)
from .lanczos import LanczosResult, fast_lanczos, slow_lanczos, start_vectors
from .operators import (
    LinearOperator,
    ProjectedOperator,
    as_operator,
    check_symmetric,
    deflate,
)
from .powerlaw import PowerLawFit, fit_power_law
from .subspace import SubspaceResult, subspace_iteration
from .validation import figure8a_matrix, figure8b_matrix, wasserstein1

__version__ = "0.1.0"

# ``hs.curvature`` is the function (imported above, which also shadows the submodule
# of the same name).  Modules with heavier imports (matplotlib, torchvision, xarray)
# load on first use: ``hs.plotting``, ``hs.data``, ...
_SUBMODULES = {
    "data",
    "models",
    "training",
    "results",
    "plotting",
    "features",
    "findings",
    "integrity",
    "provenance",
}


def __getattr__(name):
    if name in _SUBMODULES:
        return import_module(f".{name}", __name__)
    raise AttributeError(f"module 'hessian_spectrum' has no attribute {name!r}")


__all__ = [
    "LinearOperator",
    "ProjectedOperator",
    "as_operator",
    "check_symmetric",
    "deflate",
    "LanczosResult",
    "fast_lanczos",
    "slow_lanczos",
    "start_vectors",
    "SpectralDensity",
    "spectral_bounds",
    "bounds_from_lanczos",
    "lanczos_approx_spec",
    "log_spectrum",
    "subspace_iteration",
    "SubspaceResult",
    "PowerLawFit",
    "fit_power_law",
    "figure8a_matrix",
    "figure8b_matrix",
    "wasserstein1",
    "curvature",
    "Curvature",
    "decompose_G",
    "GDecomposition",
]
