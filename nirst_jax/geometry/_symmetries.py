"""The symmetries of a measurement set-up, as permutations of its pixels and measurements.

A rotation or reflection of the plane that maps the domain, the image grid, the sources and
the detectors (and so the measured pairs) onto themselves maps every phantom's data onto the
data of the transformed phantom: the measurement (s, d) of the transformed phantom is the
measurement (T⁻¹s, T⁻¹d) of the original. The study's disk with 16 evenly spaced fibres has
all 8 symmetries of the square pixel grid (rotations by multiples of 90°, reflections in the
axes and diagonals). Training on randomly transformed phantoms (`TrainConfig.symmetry_augmentation`)
shows a network 8 phantoms for each one simulated.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

import jax.numpy as jnp
import numpy as np

from ..physics import MeasurementLayout, rim_directions
from ._domain import DiskDomain, PolygonDomain
from ._optodes import OptodePositions, RimFibres

_ROTATION = np.array([[0, -1], [1, 0]])
_REFLECTION = np.array([[1, 0], [0, -1]])
TRANSFORMS = {
    "identity": np.eye(2, dtype=int),
    "rotation 90°": _ROTATION,
    "rotation 180°": _ROTATION @ _ROTATION,
    "rotation 270°": _ROTATION @ _ROTATION @ _ROTATION,
    "reflection y → −y": _REFLECTION,
    "reflection in y = x": _ROTATION @ _REFLECTION,
    "reflection x → −x": _ROTATION @ _ROTATION @ _REFLECTION,
    "reflection in y = −x": _ROTATION @ _ROTATION @ _ROTATION @ _REFLECTION,
}
"""The 8 orthogonal maps of a square grid onto itself, about its centre (x, y counter-clockwise)."""


def _match(points: np.ndarray, targets: np.ndarray, tolerance: float) -> np.ndarray | None:
    """The permutation taking each point to the target it coincides with (within `tolerance`),
    or None where a point has no such target or two points share one."""
    if len(points) != len(targets) or len(targets) == 0:
        return None
    distance = np.linalg.norm(points[:, None, :] - targets[None, :, :], axis=-1)
    nearest = distance.argmin(1)
    if (distance[np.arange(len(points)), nearest] > tolerance).any() or len(np.unique(nearest)) != len(points):
        return None
    return nearest


def _keeps_outline(outline: np.ndarray, moved: np.ndarray, tolerance: float) -> bool:
    """Whether the moved outline is the same closed polygon: its vertices the original's, in the
    same cyclic order (either direction; a reflection reverses it)."""
    order = _match(moved, outline, tolerance)
    if order is None:
        return False
    steps = np.diff(np.append(order, order[0])) % len(outline)
    return bool((steps == 1).all() or (steps == len(outline) - 1).all())


@dataclass(frozen=True)
class Symmetries:
    """The symmetries of one set-up, each as gather indices of its pixels and measurements.

    Attributes:
        names: the symmetries' names (keys of `TRANSFORMS`; the identity first).
        pixel_index: (G, H·W) the transformed image's pixel q is the original's pixel
            `pixel_index[g, q]` (row-major (y, x) pixels of the set-up's grid).
        measurement_index: (G, S·K) likewise for the (source, slot) measurements.
    """

    names: tuple[str, ...]
    pixel_index: np.ndarray
    measurement_index: np.ndarray

    @classmethod
    def of(cls, setup, layout: MeasurementLayout | None = None, tolerance: float = 1e-3) -> "Symmetries":
        """The symmetries of `setup` (a `MeasurementSetup`) that keep its measured pairs.

        A symmetry must map the domain onto itself (a disk: any about its centre; a polygon:
        its vertices onto its vertices in the same cyclic order), the grid's pixels onto pixels, sources onto sources,
        detectors onto detectors and active pairs onto active pairs. Set-ups without any give
        the identity only.

        Arguments:
            setup: the set-up.
            layout: its measurement layout (default `setup.layout()`; e.g. with active fibres).
            tolerance: how far positions may differ and still coincide, relative to the
                domain's width.

        Returns:
            The symmetries.
        """
        layout = setup.layout() if layout is None else layout
        grid = setup.grid()
        tolerance = tolerance * setup.domain.width_mm
        center = np.array([(grid.low + grid.high) / 2, grid.bottom + (grid.high - grid.low) / 2])
        sources, detectors = _nominal_optodes(setup)
        outline = setup.domain.points if isinstance(setup.domain, PolygonDomain) else None  # a disk's grid is centred on it
        slots = layout.slots()
        index, active = np.asarray(layout.detector_index), np.asarray(layout.active)
        names, pixels, measurements = [], [], []
        for name, transform in TRANSFORMS.items():
            inverse = transform.T
            back = lambda points: center + (np.asarray(points, float) - center) @ inverse.T  # noqa: E731
            if outline is not None and not _keeps_outline(outline, back(outline), tolerance):
                continue
            source_of = _match(back(sources), sources, tolerance)
            detector_of = _match(back(detectors), detectors, tolerance)
            if source_of is None or detector_of is None:
                continue
            gathered = np.arange(index.size).reshape(index.shape)
            kept = True
            for s, k in zip(*np.nonzero(active)):
                old = slots.get((int(source_of[s]), int(detector_of[index[s, k]])))
                if old is None:
                    kept = False
                    break
                gathered[s, k] = source_of[s] * index.shape[1] + old
            if kept:
                names.append(name)
                pixels.append(_pixel_gather(grid, inverse))
                measurements.append(gathered.reshape(-1))
        return cls(tuple(names), np.stack(pixels).astype(np.int32), np.stack(measurements).astype(np.int32))

    @classmethod
    def nontrivial(cls, setup, layout: MeasurementLayout | None = None, purpose: str = "") -> "Symmetries":
        """`of(setup, layout)`, refusing a set-up whose only symmetry is the identity (what
        augmentation and averaging need at least one other for).

        Arguments:
            setup, layout: as `of`.
            purpose: what the symmetries are for, the start of the error message.

        Raises:
            ValueError: no symmetry besides the identity.
        """
        symmetries = cls.of(setup, layout)
        if len(symmetries) == 1:
            raise ValueError(f"{purpose + ': ' if purpose else ''}the set-up has no symmetry besides the identity "
                             "(domain, image grid, optodes and measured pairs are not mapped onto themselves by "
                             "any rotation or reflection)")
        return symmetries

    @classmethod
    def identity(cls, image_size: int, layout: MeasurementLayout) -> "Symmetries":
        """The identity alone."""
        return cls(("identity",), np.arange(image_size**2, dtype=np.int32)[None],
                   np.arange(np.asarray(layout.detector_index).size, dtype=np.int32)[None])

    def __len__(self) -> int:
        return len(self.names)

    @property
    def fingerprint(self) -> str:
        """SHA-256 of the permutations (what a cached averaged image was computed with)."""
        digest = hashlib.sha256()
        for array in (self.pixel_index, self.measurement_index):
            digest.update(np.ascontiguousarray(array, np.int32).tobytes() + str(array.shape).encode())
        return digest.hexdigest()

    @property
    def inverses(self) -> np.ndarray:
        """(G,) the index of each symmetry's inverse."""
        identity = np.arange(self.pixel_index.shape[1])
        return np.array([next(h for h, q in enumerate(self.pixel_index) if np.array_equal(p[q], identity))
                         for p in self.pixel_index])

    def signals(self, signals, which):
        """Transform data.

        Arguments:
            signals: (B, ..., S, K) per-measurement data (ln A, normalised signals, masks).
            which: (B,) index of each phantom's symmetry.

        Returns:
            The data of the transformed phantoms, same shape.
        """
        return _gather(signals, self._rows(self.measurement_index, which, signals), 2)

    def images(self, images, which):
        """Transform (B, ..., H, W) images (targets, MRI, first-stage images) by each phantom's
        symmetry `which` (B,)."""
        return _gather(images, self._rows(self.pixel_index, which, images), 2)

    @staticmethod
    def _rows(index, which, array):
        which = jnp.asarray(which)
        if which.shape != (np.shape(array)[0],):
            raise ValueError(f"which must hold one symmetry per phantom ({np.shape(array)[0]},), got {which.shape}")
        return jnp.asarray(index)[which]


def _gather(array, rows, trailing: int):
    """Per-batch-row gather over the last `trailing` axes flattened: rows (B, n)."""
    array = jnp.asarray(array)
    shape = array.shape
    flat = array.reshape(shape[0], -1, int(np.prod(shape[-trailing:])))
    return jnp.take_along_axis(flat, rows[:, None, :], axis=-1).reshape(shape)


def _pixel_gather(grid, inverse: np.ndarray) -> np.ndarray:
    """(H·W,) the pixel of `grid` each pixel comes from under the map whose inverse is `inverse`."""
    n = grid.size
    offsets = np.arange(n) - (n - 1) / 2  # pixel centres about the grid's centre, in pixels
    x, y = np.meshgrid(offsets, offsets)  # [iy, ix]
    source = np.stack([x.ravel(), y.ravel()], 1) @ inverse.T
    column, row = np.rint(source + (n - 1) / 2).astype(int).T
    return row * n + column


def _nominal_optodes(setup) -> tuple[np.ndarray, np.ndarray]:
    """(sources, detectors) positions independent of any mesh, mm."""
    optodes = setup.optodes
    if isinstance(optodes, OptodePositions):
        return optodes.source_xy, optodes.detector_xy
    if isinstance(setup.domain, DiskDomain):
        assert isinstance(optodes, RimFibres)
        fibres = setup.domain.radius_mm * rim_directions(optodes.count, optodes.angle_offset_deg)
    else:
        fibres = setup.domain.fibre_positions(optodes.count)
    return fibres, fibres
