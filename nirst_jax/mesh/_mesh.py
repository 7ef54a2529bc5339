"""The `Mesh` type: a validated, immutable 2D triangle mesh in millimetres."""

from __future__ import annotations

import hashlib
from functools import cached_property

import numpy as np

_MAX_LISTED = 5


def _listing(indices) -> str:
    indices = [int(i) for i in indices]
    shown = ", ".join(str(i) for i in indices[:_MAX_LISTED])
    more = len(indices) - _MAX_LISTED
    return shown + (f" (and {more} more)" if more > 0 else "")


def signed_areas(nodes: np.ndarray, elements: np.ndarray) -> np.ndarray:
    """Signed triangle areas (positive for counter-clockwise elements).

    Arguments:
        nodes: (N, 2) coordinates.
        elements: (M, 3) node indices.

    Returns:
        (M,) signed areas.
    """
    p0, p1, p2 = (nodes[elements[:, k]] for k in range(3))
    d1, d2 = p1 - p0, p2 - p0
    return 0.5 * (d1[:, 0] * d2[:, 1] - d1[:, 1] * d2[:, 0])


class Mesh:
    """A linear-triangle mesh of a 2D domain.

    The constructor rejects, with a `ValueError` naming the offending items: non-finite
    coordinates, out-of-range or repeated node indices, degenerate (zero-area), inverted
    (orientation opposite to the rest of the mesh) or duplicate elements, coincident nodes,
    edges shared by more than two elements, overlapping (folded) neighbours and nodes no
    element references.

    A `Mesh` is immutable and hashable by content, so it can be a static argument of
    `jax.jit`; the physics operators built from it are JAX pytrees.

    Arguments:
        nodes: (N, 2) node coordinates in mm.
        elements: (M, 3) zero-based node indices of each triangle.

    Attributes:
        nodes: (N, 2) float64, read-only.
        elements: (M, 3) int32, read-only, counter-clockwise.
        areas: (M,) element areas in mm².
        boundary_edges: (E, 2) node pairs of the boundary, oriented with the domain on the
            left (counter-clockwise around the outer boundary).
        boundary_edge_elements: (E,) the element that owns each boundary edge.
        boundary_nodes: sorted indices of the nodes on the boundary.
    """

    __slots__ = ("nodes", "elements", "areas", "boundary_edges", "boundary_edge_elements", "__dict__")

    def __init__(self, nodes, elements):
        nodes = np.array(nodes, dtype=np.float64, copy=True)
        elements_in = np.asarray(elements)
        if nodes.ndim != 2 or nodes.shape[1] != 2:
            raise ValueError(f"nodes must have shape (N, 2), got {nodes.shape}")
        if elements_in.ndim != 2 or elements_in.shape[1] != 3:
            raise ValueError(f"elements must have shape (M, 3), got {elements_in.shape}")
        if len(nodes) < 3 or len(elements_in) < 1:
            raise ValueError(
                f"a mesh needs at least 3 nodes and 1 element, got {len(nodes)} and {len(elements_in)}"
            )
        bad = np.flatnonzero(~np.isfinite(nodes).all(axis=1))
        if bad.size:
            raise ValueError(f"node coordinates are not finite at nodes {_listing(bad)}")
        if not np.issubdtype(elements_in.dtype, np.integer):
            if not np.all(np.mod(elements_in, 1) == 0):
                raise ValueError("element node indices must be integers")
        elements = elements_in.astype(np.int64)
        out = np.flatnonzero(((elements < 0) | (elements >= len(nodes))).any(axis=1))
        if out.size:
            raise ValueError(
                f"elements {_listing(out)} reference nodes outside 0..{len(nodes) - 1}"
            )
        repeated = np.flatnonzero(
            (elements[:, 0] == elements[:, 1])
            | (elements[:, 1] == elements[:, 2])
            | (elements[:, 0] == elements[:, 2])
        )
        if repeated.size:
            raise ValueError(f"elements {_listing(repeated)} repeat a node (degenerate)")

        area = signed_areas(nodes, elements)
        edge_scale = np.ptp(nodes, axis=0).max()
        degenerate = np.flatnonzero(np.abs(area) <= 1e-12 * edge_scale**2)
        if degenerate.size:
            raise ValueError(f"elements {_listing(degenerate)} are degenerate (zero area)")
        orientation = 1.0 if (area > 0).sum() >= (area < 0).sum() else -1.0
        inverted = np.flatnonzero(area * orientation < 0)
        if inverted.size:
            raise ValueError(
                f"elements {_listing(inverted)} are inverted (their orientation is opposite "
                "to the rest of the mesh)"
            )
        if orientation < 0:  # store counter-clockwise
            elements = elements[:, [0, 2, 1]]

        keys = np.sort(elements, axis=1)
        _, first, counts = np.unique(keys, axis=0, return_index=True, return_counts=True)
        if (counts > 1).any():
            dup_keys = keys[first[counts > 1]]
            dups = np.flatnonzero((keys[:, None, :] == dup_keys[None]).all(-1).any(-1))
            raise ValueError(f"elements {_listing(dups)} are duplicates (same three nodes)")

        referenced = np.zeros(len(nodes), bool)
        referenced[elements.ravel()] = True
        if not referenced.all():
            raise ValueError(
                f"nodes {_listing(np.flatnonzero(~referenced))} are not referenced by any element"
            )
        _, inverse, counts = np.unique(nodes, axis=0, return_inverse=True, return_counts=True)
        if (counts > 1).any():
            coincident = np.flatnonzero(counts[inverse.ravel()] > 1)
            raise ValueError(f"nodes {_listing(coincident)} are coincident")

        directed = np.concatenate([elements[:, [0, 1]], elements[:, [1, 2]], elements[:, [2, 0]]])
        undirected = np.sort(directed, axis=1)
        _, inverse, counts = np.unique(
            undirected, axis=0, return_inverse=True, return_counts=True
        )
        inverse = inverse.ravel()
        if (counts > 2).any():
            shared = undirected[np.flatnonzero(counts[inverse] > 2)[0]]
            raise ValueError(
                f"edge ({shared[0]}, {shared[1]}) is shared by more than two elements"
            )
        # All elements now run counter-clockwise, so the two elements of an interior edge must
        # traverse it in opposite directions; the same direction puts both on one side (a fold).
        _, first, repeats = np.unique(directed, axis=0, return_index=True, return_counts=True)
        if (repeats > 1).any():
            a, b = directed[first[repeats > 1][0]]
            owners = np.sort(np.flatnonzero((directed == (a, b)).all(axis=1)) % len(elements))
            raise ValueError(
                f"elements {_listing(owners)} overlap: both lie on the same side of their shared "
                f"edge ({a}, {b}) (a folded mesh)"
            )

        nodes.setflags(write=False)
        elements = elements.astype(np.int32)
        elements.setflags(write=False)
        areas = np.abs(area)
        areas.setflags(write=False)
        on_boundary = counts[inverse] == 1
        boundary_edges = directed[on_boundary].astype(np.int32)
        boundary_edges.setflags(write=False)
        boundary_edge_elements = np.tile(np.arange(len(elements)), 3)[on_boundary].astype(np.int32)
        boundary_edge_elements.setflags(write=False)
        object.__setattr__(self, "nodes", nodes)
        object.__setattr__(self, "elements", elements)
        object.__setattr__(self, "areas", areas)
        object.__setattr__(self, "boundary_edges", boundary_edges)
        object.__setattr__(self, "boundary_edge_elements", boundary_edge_elements)

    def __setattr__(self, name, value):
        raise AttributeError("Mesh is immutable")

    def __delattr__(self, name):
        raise AttributeError("Mesh is immutable")

    @property
    def n_nodes(self) -> int:
        return len(self.nodes)

    @property
    def n_elements(self) -> int:
        return len(self.elements)

    @cached_property
    def boundary_nodes(self) -> np.ndarray:
        nodes = np.unique(self.boundary_edges)
        nodes.setflags(write=False)
        return nodes

    @cached_property
    def is_boundary_node(self) -> np.ndarray:
        flags = np.zeros(self.n_nodes, bool)
        flags[self.boundary_nodes] = True
        flags.setflags(write=False)
        return flags

    @cached_property
    def content_hash(self) -> str:
        """SHA-256 of the node coordinates and element indices (hex)."""
        digest = hashlib.sha256()
        digest.update(np.ascontiguousarray(self.nodes, dtype="<f8").tobytes())
        digest.update(np.ascontiguousarray(self.elements, dtype="<i4").tobytes())
        return digest.hexdigest()

    def record(self, origin: dict) -> dict:
        """A JSON-ready account of the mesh for a run's records: `origin` (where it came from,
        e.g. {"kind": "nirfast", "prefix": …}) with its node count and `content_hash`."""
        return {**origin, "nodes": self.n_nodes, "sha256": self.content_hash}

    def element_angles_deg(self) -> np.ndarray:
        """(M, 3) interior angles of every element, in degrees."""
        p = self.nodes[self.elements]
        angles = []
        for k in range(3):
            u = p[:, (k + 1) % 3] - p[:, k]
            v = p[:, (k + 2) % 3] - p[:, k]
            cos = (u * v).sum(1) / (np.linalg.norm(u, axis=1) * np.linalg.norm(v, axis=1))
            angles.append(np.degrees(np.arccos(np.clip(cos, -1.0, 1.0))))
        return np.stack(angles, axis=1)

    def min_angle_deg(self) -> float:
        """Smallest interior angle over all elements, in degrees."""
        return float(self.element_angles_deg().min())

    def edge_lengths(self) -> np.ndarray:
        """Lengths of the unique edges of the mesh, in mm."""
        e = self.elements
        edges = np.unique(np.sort(np.concatenate([e[:, [0, 1]], e[:, [1, 2]], e[:, [2, 0]]]), 1), axis=0)
        return np.linalg.norm(self.nodes[edges[:, 1]] - self.nodes[edges[:, 0]], axis=1)

    def __hash__(self) -> int:
        return hash(self.content_hash)

    def __eq__(self, other) -> bool:
        return isinstance(other, Mesh) and self.content_hash == other.content_hash

    def __repr__(self) -> str:
        return (
            f"Mesh(n_nodes={self.n_nodes}, n_elements={self.n_elements}, "
            f"n_boundary_nodes={len(self.boundary_nodes)})"
        )
