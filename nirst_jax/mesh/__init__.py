"""Meshes: the `Mesh` type, the disk generator, point location and NIRFAST files."""

from ._disk import disk_mesh
from ._locate import locate_points, project_to_boundary
from ._mesh import Mesh
from ._nirfast import NirfastMesh, read_nirfast, write_nirfast

__all__ = [
    "Mesh",
    "NirfastMesh",
    "disk_mesh",
    "locate_points",
    "project_to_boundary",
    "read_nirfast",
    "write_nirfast",
]
