"""Meshes: the `Mesh` type, the disk and polygon generators, mask outlines, quality, point
location and NIRFAST files."""

from ._contour import closed_contour, fibres_on_contour
from ._disk import disk_mesh
from ._gather import WeightedGather
from ._image_slice import ImageSlice
from ._grid import GridInterpolation, PixelGrid
from ._locate import inside_mesh, locate_points, project_to_boundary
from ._mask_contour import mask_contour
from ._mesh import Mesh
from ._outline import mesh_outline
from ._nirfast import STND_COLUMNS, NirfastMesh, read_nirfast, write_nirfast
from ._polygon_mesh import polygon_mesh
from ._quality import MeshQuality, mesh_quality

__all__ = [
    "STND_COLUMNS",
    "GridInterpolation",
    "ImageSlice",
    "Mesh",
    "MeshQuality",
    "NirfastMesh",
    "PixelGrid",
    "WeightedGather",
    "closed_contour",
    "disk_mesh",
    "fibres_on_contour",
    "inside_mesh",
    "locate_points",
    "mask_contour",
    "mesh_outline",
    "mesh_quality",
    "polygon_mesh",
    "project_to_boundary",
    "read_nirfast",
    "write_nirfast",
]
