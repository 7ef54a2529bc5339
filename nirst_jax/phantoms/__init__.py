"""Phantoms: analytic inclusion shapes and their coverage of mesh nodes and pixels."""

from ._shapes import Circle, node_coverage, pixel_coverage

__all__ = ["Circle", "node_coverage", "pixel_coverage"]
