"""The measurement set-up: the imaged domain, the optodes, the scattering law, the frequency, the
image grid and the MRI's registration, independent of any one mesh (docs/geometry.md)."""

from ._domain import DiskDomain, Domain, PolygonDomain, domain_from_dict
from ._optodes import OptodePositions, Optodes, RimFibres, optodes_from_dict
from ._registration import RigidRegistration
from ._setup import MeasurementSetup
from ._symmetries import TRANSFORMS, Symmetries

__all__ = [
    "DiskDomain",
    "Domain",
    "MeasurementSetup",
    "OptodePositions",
    "Optodes",
    "PolygonDomain",
    "RigidRegistration",
    "RimFibres",
    "Symmetries",
    "TRANSFORMS",
    "domain_from_dict",
    "optodes_from_dict",
]
