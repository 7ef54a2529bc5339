"""A 2D image (an MRI slice) placed in mesh coordinates by an affine: from arrays, NIfTI
(nibabel) and DICOM (pydicom), with rigid registration and sampling at physical points."""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path

import numpy as np

from ._grid import PixelGrid

_NIFTI_MM = {"meter": 1000.0, "micron": 0.001}
"""mm per NIfTI spatial unit other than mm (`get_xyzt_units`; 'unknown' is taken as mm)."""


@dataclasses.dataclass(frozen=True, eq=False)
class ImageSlice:
    """An image whose pixel (row r, column c) has its centre at `affine @ (c, r, 1)` (mm).

    For NIfTI and DICOM slices the mesh coordinates are the scanner's, expressed in the slice's
    plane: for an axial slice the scanner's x and y (NIfTI: RAS, DICOM: LPS); for other planes
    the two scanner axes closest to the plane, made orthonormal within it (an exact rotation,
    no distortion). `registered` then shifts and rotates the image onto the mesh.

    Attributes:
        pixels: (H, W) float64 values.
        affine: (3, 3) float64, (column, row, 1) → (x, y, 1) in mm.
    """

    pixels: np.ndarray
    affine: np.ndarray

    def __post_init__(self):
        pixels = np.array(self.pixels, dtype=np.float64)
        affine = np.array(self.affine, dtype=np.float64)
        if pixels.ndim != 2 or min(pixels.shape) < 2:
            raise ValueError(f"an image slice must be 2D with at least 2 pixels per side, got shape {pixels.shape}")
        if not np.isfinite(pixels).all():
            raise ValueError("the image has NaN or infinite pixels")
        if affine.shape != (3, 3) or not np.isfinite(affine).all() or not np.allclose(affine[2], [0, 0, 1]):
            raise ValueError(f"affine must be a finite 3×3 matrix with last row (0, 0, 1), got {affine.tolist()}")
        if abs(np.linalg.det(affine[:2, :2])) < 1e-12:
            raise ValueError("affine is singular (zero pixel area)")
        for name, value in (("pixels", pixels), ("affine", affine)):
            value.setflags(write=False)
            object.__setattr__(self, name, value)

    @classmethod
    def from_array(cls, image, pixel_spacing_mm, origin_mm=(0.0, 0.0)) -> "ImageSlice":
        """An axis-aligned image: pixel (r, c) at (origin_x + c·dx, origin_y + r·dy) (y grows with the row).

        Arguments:
            image: (H, W) values.
            pixel_spacing_mm: (dy, dx), or one number for square pixels.
            origin_mm: centre of pixel (0, 0).
        """
        dy, dx = np.broadcast_to(np.asarray(pixel_spacing_mm, dtype=np.float64), (2,))
        if not (dx > 0 and dy > 0):
            raise ValueError(f"pixel_spacing_mm must be positive, got {pixel_spacing_mm!r}")
        x0, y0 = np.asarray(origin_mm, dtype=np.float64)
        return cls(image, [[dx, 0.0, x0], [0.0, dy, y0], [0.0, 0.0, 1.0]])

    @classmethod
    def covering(cls, image, grid: PixelGrid) -> "ImageSlice":
        """A square image laid over `grid` (its size must match), as nirst-jax's own images."""
        image = np.asarray(image)
        if image.shape != (grid.size, grid.size):
            raise ValueError(f"an image covering a {grid.size}×{grid.size} grid must have that shape, got {image.shape}")
        return cls.from_array(image, grid.pixel_mm, (grid.axis[0], grid.y_axis[0]))

    @classmethod
    def from_nifti(cls, path: str | os.PathLike, slice_index: int | None = None) -> "ImageSlice":
        """Slice `slice_index` along the third voxel axis of a NIfTI file (default: its only one).

        Positions are converted to mm from the header's spatial unit (metres, microns; mm or
        unknown are taken as mm).

        Arguments:
            path: `.nii` or `.nii.gz`.
            slice_index: required when the volume has more than one slice.
        """
        import nibabel

        path = Path(path)
        def load(file):
            image = nibabel.load(file)
            return image, np.asarray(image.dataobj, dtype=np.float64)

        image, data = _read(path, "NIfTI", load)
        data = data.reshape(data.shape + (1,) * max(0, 3 - data.ndim))
        if data.ndim > 3 and np.prod(data.shape[3:]) != 1:
            raise ValueError(f"{path}: a {data.ndim}D image (shape {data.shape}); give one 3D volume")
        data = data.reshape(data.shape[:3])
        if slice_index is None:
            if data.shape[2] != 1:
                raise ValueError(f"{path} has {data.shape[2]} slices; choose one with slice_index")
            slice_index = 0
        if not 0 <= slice_index < data.shape[2]:
            raise ValueError(f"{path}: slice_index {slice_index} is outside 0..{data.shape[2] - 1}")
        affine = np.asarray(image.affine, dtype=np.float64)
        affine[:3] *= _NIFTI_MM.get(image.header.get_xyzt_units()[0], 1.0)
        per_i, per_j = affine[:3, 0], affine[:3, 1]
        corner = affine[:3, 2] * slice_index + affine[:3, 3]
        # pixels[r, c] = data[c, r]: column c runs along voxel axis i, row r along j.
        return cls(data[:, :, slice_index].T, _in_plane(per_i, per_j, corner, path))

    @classmethod
    def from_dicom(cls, path: str | os.PathLike) -> "ImageSlice":
        """One DICOM image (ImagePositionPatient, ImageOrientationPatient, PixelSpacing; values
        rescaled by RescaleSlope/Intercept when present)."""
        import pydicom

        path = Path(path)
        def load(file):
            dataset = pydicom.dcmread(file)
            return dataset, np.asarray(dataset.pixel_array, dtype=np.float64)

        dataset, pixels = _read(path, "DICOM", load)
        for keyword in ("ImagePositionPatient", "ImageOrientationPatient", "PixelSpacing"):
            if keyword not in dataset:
                raise ValueError(f"DICOM file {path} has no {keyword}: its position in space is unknown")
        if pixels.ndim != 2:
            raise ValueError(f"DICOM file {path} holds a {pixels.ndim}D image (shape {pixels.shape}); give one slice")
        pixels = pixels * float(getattr(dataset, "RescaleSlope", 1.0)) + float(getattr(dataset, "RescaleIntercept", 0.0))
        position = np.asarray(dataset.ImagePositionPatient, dtype=np.float64)
        orientation = np.asarray(dataset.ImageOrientationPatient, dtype=np.float64)
        row_spacing, column_spacing = (float(v) for v in dataset.PixelSpacing)
        # DICOM: the first three direction cosines point along a row (increasing column), the
        # last three down a column (increasing row); PixelSpacing is (between rows, between columns).
        per_column, per_row = orientation[:3] * column_spacing, orientation[3:] * row_spacing
        return cls(pixels, _in_plane(per_column, per_row, position, path))

    @property
    def field_of_view_mm(self) -> tuple[float, float]:
        """(width, height) of the image in mm: columns and rows times their pixel steps."""
        height, width = self.pixels.shape
        steps = np.linalg.norm(self.affine[:2, :2], axis=0)
        return float(width * steps[0]), float(height * steps[1])

    def to_mm(self, pixel_points) -> np.ndarray:
        """(N, 2) positions in mm of (N, 2) (column, row) pixel coordinates (not necessarily whole)."""
        points = np.asarray(pixel_points, dtype=np.float64).reshape(-1, 2)
        return points @ self.affine[:2, :2].T + self.affine[:2, 2]

    def registered(self, shift_mm=(0.0, 0.0), rotation_deg: float = 0.0, center_mm=(0.0, 0.0)) -> "ImageSlice":
        """The image moved rigidly: rotated by `rotation_deg` (counter-clockwise) about
        `center_mm`, then shifted by `shift_mm`."""
        angle = np.radians(float(rotation_deg))
        cos, sin = np.cos(angle), np.sin(angle)
        center = np.asarray(center_mm, dtype=np.float64)
        shift = np.asarray(shift_mm, dtype=np.float64)
        if shift.shape != (2,) or center.shape != (2,) or not (np.isfinite(shift).all() and np.isfinite(angle)):
            raise ValueError(f"shift_mm and center_mm must be (x, y) and rotation_deg finite, got {shift_mm!r}, {rotation_deg!r}")
        rotation = np.array([[cos, -sin], [sin, cos]])
        motion = np.eye(3)
        motion[:2, :2] = rotation
        motion[:2, 2] = center - rotation @ center + shift
        return ImageSlice(self.pixels, motion @ self.affine)

    def sample(self, points, what: str = "point") -> np.ndarray:
        """Bilinear values at points in mm.

        Arguments:
            points: (N, 2) mm.
            what: the name used in errors.

        Returns:
            (N,) values.

        Raises:
            ValueError: points outside the image (beyond its outer pixel centres by more than
                half a pixel), naming how many and the first.
        """
        points = np.asarray(points, dtype=np.float64).reshape(-1, 2)
        inverse = np.linalg.inv(self.affine)
        c, r = (inverse[:2, :2] @ points.T) + inverse[:2, 2:3]
        height, width = self.pixels.shape
        outside = np.flatnonzero((c < -0.5) | (c > width - 0.5) | (r < -0.5) | (r > height - 0.5))
        if outside.size:
            x, y = points[outside[0]]
            raise ValueError(f"the image does not cover {outside.size} {what}(s), e.g. ({x:.1f}, {y:.1f}) mm: "
                             "check its position (affine, registration) against the mesh")
        c, r = np.clip(c, 0, width - 1), np.clip(r, 0, height - 1)
        c0, r0 = np.minimum(np.floor(c).astype(int), width - 2), np.minimum(np.floor(r).astype(int), height - 2)
        tc, tr = c - c0, r - r0
        p = self.pixels
        return ((1 - tr) * ((1 - tc) * p[r0, c0] + tc * p[r0, c0 + 1])
                + tr * ((1 - tc) * p[r0 + 1, c0] + tc * p[r0 + 1, c0 + 1]))

    def on_grid(self, grid: PixelGrid, mask) -> np.ndarray:
        """The image resampled onto a grid's pixel centres inside `mask` (0 outside), e.g. the
        MRI input of DRI or of a network.

        Arguments:
            grid: the target `PixelGrid`.
            mask: (size, size) bool, the pixels that must be covered (the mesh's).

        Returns:
            (size, size) float64 image.
        """
        mask = np.asarray(mask, bool)
        if mask.shape != (grid.size, grid.size):
            raise ValueError(f"mask has shape {mask.shape}, the grid {grid.size}×{grid.size}")
        image = np.zeros(mask.shape)
        image[mask] = self.sample(grid.centers()[mask], "pixel inside the mesh")
        return image


def _read(path: Path, kind: str, read):
    """`read(path)`, with a missing file reported as such and any reader error as a ValueError
    naming the file (nibabel and pydicom raise several types for corrupt files)."""
    if not path.is_file():
        raise FileNotFoundError(f"{kind} file {path} does not exist")
    try:
        return read(path)
    except Exception as error:
        raise ValueError(f"cannot read {kind} file {path}: {error}") from None


def _in_plane(per_column, per_row, corner, path) -> np.ndarray:
    """2D affine (column, row, 1) → in-plane (u, v, 1) for a plane through `corner` spanned by
    the 3D steps `per_column` and `per_row`, with u, v along the two scanner axes closest to
    the plane, orthonormalised within it."""
    normal = np.cross(per_column, per_row)
    if np.linalg.norm(normal) < 1e-12:
        raise ValueError(f"{path}: the image axes are parallel (degenerate orientation)")
    normal /= np.linalg.norm(normal)
    first, second = np.sort(np.argsort(np.abs(normal))[:2])
    axis_u = np.eye(3)[first] - normal[first] * normal
    axis_u /= np.linalg.norm(axis_u)
    axis_v = np.cross(normal, axis_u)
    if axis_v[second] < 0:
        axis_v = -axis_v
    basis = np.stack([axis_u, axis_v])  # (2, 3)
    affine = np.eye(3)
    affine[:2, 0], affine[:2, 1], affine[:2, 2] = basis @ per_column, basis @ per_row, basis @ corner
    return affine
