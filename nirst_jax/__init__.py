"""nirst-jax: differentiable physics and deep learning for MRI-guided NIRST, in JAX."""

from ._xla_flags import configure_xla_cpu

configure_xla_cpu()

from ._version import __version__  # noqa: E402
from .mesh import Mesh, NirfastMesh, disk_mesh, mask_contour, mesh_quality, polygon_mesh, read_nirfast, write_nirfast
from .physics import (
    CHROMOPHORES,
    PAPER_WAVELENGTHS_NM,
    DiffusionFEM,
    MeasurementLayout,
    SpectralForwardModel,
    disk_boundary_fluence,
    extinction_spectra,
    point_fluence,
)

__all__ = [
    "CHROMOPHORES",
    "DiffusionFEM",
    "MeasurementLayout",
    "Mesh",
    "NirfastMesh",
    "PAPER_WAVELENGTHS_NM",
    "SpectralForwardModel",
    "__version__",
    "disk_boundary_fluence",
    "disk_mesh",
    "extinction_spectra",
    "mask_contour",
    "mesh_quality",
    "point_fluence",
    "polygon_mesh",
    "read_nirfast",
    "write_nirfast",
]
