"""The outline of a mesh: its boundary as one closed polygon."""

from __future__ import annotations

import numpy as np

from ._mesh import Mesh


def mesh_outline(mesh: Mesh) -> np.ndarray:
    """The mesh boundary as a counter-clockwise polygon (the domain on its left).

    Arguments:
        mesh: a mesh of a simply connected domain.

    Returns:
        (P, 2) boundary node positions in order, mm (not repeating the first).

    Raises:
        ValueError: the boundary is not one closed loop (holes, several pieces, or nodes where
            the boundary touches itself).
    """
    edges = np.asarray(mesh.boundary_edges)
    following = {}
    for start, end in edges.tolist():
        if start in following:
            raise ValueError(f"the mesh boundary touches itself at node {start}: it is not one closed loop")
        following[start] = end
    loop = [int(edges[0, 0])]
    while len(loop) <= len(edges):
        nxt = following.get(loop[-1])
        if nxt is None:
            raise ValueError(f"the mesh boundary is open at node {loop[-1]}")
        if nxt == loop[0]:
            break
        loop.append(nxt)
    if len(loop) != len(edges):
        raise ValueError(
            f"the mesh boundary is {len(edges)} edges but its loop through node {loop[0]} has {len(loop)}: "
            "the mesh has holes or several pieces, and a domain here is one simply connected region"
        )
    return np.asarray(mesh.nodes)[loop]
