"""Meshes: the `Mesh` type, the disk generator, point location and NIRFAST files."""

from ._disk import disk_mesh
from ._gather import WeightedGather
from ._grid import GridInterpolation, PixelGrid
from ._locate import inside_mesh, locate_points, project_to_boundary
from ._mesh import Mesh
from ._nirfast import NirfastMesh, read_nirfast, write_nirfast

__all__ = [
    "GridInterpolation",
    "Mesh",
    "NirfastMesh",
    "PixelGrid",
    "WeightedGather",
    "disk_mesh",
    "inside_mesh",
    "locate_points",
    "project_to_boundary",
    "read_nirfast",
    "write_nirfast",
]
