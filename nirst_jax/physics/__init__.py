"""Physics: spectra, optics, optodes, FEM, the multifrontal solver and the forward model."""

from ._analytic import disk_boundary_fluence
from ._fem import DiffusionFEM
from ._forward import DEFAULT_SCATTER_AMPLITUDE, DEFAULT_SCATTER_POWER, SpectralForwardModel
from ._noise import add_amplitude_noise
from ._optics import (
    SPEED_OF_LIGHT_MM_PER_S,
    absorption,
    boundary_factor,
    diffusion_coefficient,
    reduced_scattering,
)
from ._optodes import (
    MeasurementLayout,
    boundary_detectors,
    inward_normals,
    move_inward,
    point_sources,
    rim_directions,
    rim_positions,
)
from ._point_fluence import point_fluence
from ._spectra import (
    CHROMOPHORE_UNITS,
    CHROMOPHORES,
    PAPER_WAVELENGTHS_NM,
    check_wavelengths,
    extinction_spectra,
)

__all__ = [
    "CHROMOPHORES",
    "CHROMOPHORE_UNITS",
    "DEFAULT_SCATTER_AMPLITUDE",
    "DEFAULT_SCATTER_POWER",
    "DiffusionFEM",
    "MeasurementLayout",
    "PAPER_WAVELENGTHS_NM",
    "SPEED_OF_LIGHT_MM_PER_S",
    "SpectralForwardModel",
    "absorption",
    "add_amplitude_noise",
    "boundary_detectors",
    "boundary_factor",
    "check_wavelengths",
    "diffusion_coefficient",
    "disk_boundary_fluence",
    "extinction_spectra",
    "inward_normals",
    "move_inward",
    "point_fluence",
    "point_sources",
    "reduced_scattering",
    "rim_directions",
    "rim_positions",
]
