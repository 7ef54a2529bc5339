"""Element quality of a triangle mesh: angles, aspect ratios, edge lengths."""

from __future__ import annotations

import dataclasses

import numpy as np

from ._contour import closed_contour, project_onto_segments
from ._mesh import Mesh


@dataclasses.dataclass(frozen=True)
class MeshQuality:
    """Quality figures of a mesh (`mesh_quality`).

    Attributes:
        n_nodes, n_elements: sizes.
        min_angle_deg: the smallest interior angle of any element.
        max_aspect_ratio: the largest circumradius / (2 × inradius) (1 for an equilateral triangle).
        edge_min_mm, edge_mean_mm, edge_max_mm: edge lengths.
        boundary_deviation_mm: the largest distance of a boundary edge's points from the
            reference contour (None when no contour was given).
    """

    n_nodes: int
    n_elements: int
    min_angle_deg: float
    max_aspect_ratio: float
    edge_min_mm: float
    edge_mean_mm: float
    edge_max_mm: float
    boundary_deviation_mm: float | None = None

    def summary(self) -> str:
        """One line for a report or the command line."""
        text = (
            f"{self.n_nodes} nodes, {self.n_elements} elements; min angle {self.min_angle_deg:.1f}°, "
            f"max aspect ratio {self.max_aspect_ratio:.2f}; edges {self.edge_min_mm:.2f}/{self.edge_mean_mm:.2f}/"
            f"{self.edge_max_mm:.2f} mm (min/mean/max)"
        )
        if self.boundary_deviation_mm is not None:
            text += f"; boundary within {self.boundary_deviation_mm:.3f} mm of the contour"
        return text


def mesh_quality(mesh: Mesh, contour=None) -> MeshQuality:
    """Measure a mesh's elements, and its boundary against a contour.

    Arguments:
        mesh: the mesh.
        contour: optional (P, 2) closed polygon in mm the boundary should follow; the deviation
            is measured at each boundary edge's ends and midpoint.

    Returns:
        `MeshQuality`.
    """
    corners = mesh.nodes[mesh.elements]  # (M, 3, 2)
    sides = np.linalg.norm(np.roll(corners, -1, axis=1) - corners, axis=-1)
    a, b, c = sides[:, 0], sides[:, 1], sides[:, 2]
    area = mesh.areas
    circumradius = a * b * c / (4 * area)
    inradius = 2 * area / (a + b + c)
    edges = mesh.edge_lengths()
    deviation = None
    if contour is not None:
        polygon = closed_contour(contour)
        ends = mesh.nodes[mesh.boundary_edges]
        probes = np.concatenate([ends[:, 0], ends[:, 1], ends.mean(axis=1)])
        deviation = float(distance_to_polygon(probes, polygon).max())
    return MeshQuality(
        n_nodes=mesh.n_nodes,
        n_elements=len(mesh.elements),
        min_angle_deg=mesh.min_angle_deg(),
        max_aspect_ratio=float((circumradius / (2 * inradius)).max()),
        edge_min_mm=float(edges.min()),
        edge_mean_mm=float(edges.mean()),
        edge_max_mm=float(edges.max()),
        boundary_deviation_mm=deviation,
    )


def distance_to_polygon(points: np.ndarray, polygon: np.ndarray) -> np.ndarray:
    """Distance (mm) of each point to the nearest edge of a closed polygon."""
    a, b = polygon, np.roll(polygon, -1, axis=0)
    best = np.full(len(points), np.inf)
    for start in range(0, len(points), 256):
        p = points[start : start + 256, None]
        best[start : start + 256] = np.linalg.norm(p - project_onto_segments(p, a, b)[1], axis=-1).min(axis=1)
    return best
