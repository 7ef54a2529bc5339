"""MRI slices in their own coordinates: NIfTI and DICOM affines (rotated, anisotropic, offset,
and the libraries' own sample files), registration, and sampling at physical points."""

import os

import nibabel
import numpy as np
import pydicom
import pytest
from nibabel.testing import data_path as nibabel_data
from pydicom.data import get_testdata_file
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, MRImageStorage, generate_uid

from nirst_jax.mesh import ImageSlice, PixelGrid, disk_mesh
from nirst_jax.mesh._grid import GridInterpolation


def linear(u, v):
    """An analytic image: bilinear interpolation reproduces it exactly."""
    return 3.0 + 0.5 * u - 0.2 * v


def _rotation_z(degrees):
    a = np.radians(degrees)
    return np.array([[np.cos(a), -np.sin(a), 0], [np.sin(a), np.cos(a), 0], [0, 0, 1]])


def _nifti(path, linear_axes, rotation):
    """A 60×50×3 volume with anisotropic voxels (0.9, 1.3, 4 mm), rotated, offset; voxel values
    the linear function of two world coordinates (to the float32 rounding of the stored affine)."""
    affine = np.eye(4)
    affine[:3, :3] = rotation @ np.diag([0.9, 1.3, 4.0])
    affine[:3, 3] = [-31.0, 17.0, 5.0]
    i, j, k = np.meshgrid(np.arange(60), np.arange(50), np.arange(3), indexing="ij")
    world = np.einsum("ab,bijk->aijk", affine[:3, :3], np.stack([i, j, k])) + affine[:3, 3, None, None, None]
    data = linear(world[linear_axes[0]], world[linear_axes[1]])
    nibabel.save(nibabel.Nifti1Image(data.astype(np.float64), affine), path)
    return nibabel.load(path).affine  # as stored (NIfTI keeps the affine in float32)


def test_axial_nifti_with_a_rotated_anisotropic_offset_affine(tmp_path):
    affine = _nifti(tmp_path / "axial.nii.gz", (0, 1), _rotation_z(30))
    image = ImageSlice.from_nifti(tmp_path / "axial.nii.gz", slice_index=1)
    # In-plane points: images of random voxel positions of that slice.
    rng = np.random.default_rng(0)
    voxels = np.column_stack([rng.uniform(0, 59, 200), rng.uniform(0, 49, 200), np.ones(200)])
    world = voxels @ affine[:3, :3].T + affine[:3, 3]
    np.testing.assert_allclose(image.sample(world[:, :2]), linear(world[:, 0], world[:, 1]), rtol=0, atol=1e-5)


def test_coronal_nifti_uses_the_in_plane_scanner_axes(tmp_path):
    # Voxel axes i → x, j → z, k → −y: a coronal slice; in-plane coordinates (x, z).
    rotation = np.array([[1.0, 0, 0], [0, 0, -1.0], [0, 1.0, 0]])
    affine = _nifti(tmp_path / "coronal.nii", (0, 2), rotation)
    image = ImageSlice.from_nifti(tmp_path / "coronal.nii", slice_index=2)
    rng = np.random.default_rng(1)
    voxels = np.column_stack([rng.uniform(0, 59, 100), rng.uniform(0, 49, 100), np.full(100, 2.0)])
    world = voxels @ affine[:3, :3].T + affine[:3, 3]
    np.testing.assert_allclose(image.sample(world[:, [0, 2]]), linear(world[:, 0], world[:, 2]), atol=1e-5)


def test_nifti_positions_follow_the_header_spatial_unit(tmp_path):
    affine = _nifti(tmp_path / "unknown.nii", (0, 1), _rotation_z(30))  # unit 'unknown': taken as mm
    reference = ImageSlice.from_nifti(tmp_path / "unknown.nii", slice_index=1)
    data = np.asarray(nibabel.load(tmp_path / "unknown.nii").dataobj)
    voxels = np.column_stack([np.random.default_rng(4).uniform(0, 59, 50), np.random.default_rng(5).uniform(0, 49, 50)])
    points = voxels @ affine[:2, :2].T + affine[:2, 3]
    for unit, per_mm in (("meter", 1e-3), ("micron", 1e3), ("mm", 1.0)):
        scaled = affine.copy()
        scaled[:3] *= per_mm
        image = nibabel.Nifti1Image(data, scaled)
        image.header.set_xyzt_units(unit)
        nibabel.save(image, tmp_path / f"{unit}.nii")
        placed = ImageSlice.from_nifti(tmp_path / f"{unit}.nii", slice_index=1)
        np.testing.assert_allclose(placed.affine, reference.affine, rtol=1e-6, atol=1e-5)
        np.testing.assert_allclose(placed.sample(points), reference.sample(points), rtol=0, atol=1e-4)


def _dicom(path, position, row_direction, column_direction, spacing):
    """A 40×30 DICOM slice, stored values 100 + 3c + 2r, rescaled by 0.5 and −10."""
    rows, columns = 40, 30
    r, c = np.meshgrid(np.arange(rows), np.arange(columns), indexing="ij")
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = MRImageStorage
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID, ds.SOPInstanceUID = MRImageStorage, meta.MediaStorageSOPInstanceUID
    ds.Rows, ds.Columns = rows, columns
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 0
    ds.PixelData = (100 + 3 * c + 2 * r).astype(np.uint16).tobytes()
    ds.ImagePositionPatient = list(position)
    ds.ImageOrientationPatient = [*row_direction, *column_direction]
    ds.PixelSpacing = list(spacing)
    ds.RescaleSlope, ds.RescaleIntercept = 0.5, -10.0
    try:
        pydicom.dcmwrite(path, ds, enforce_file_format=True)
    except TypeError:  # pydicom < 3
        pydicom.dcmwrite(path, ds, write_like_original=False)


def test_dicom_with_rotated_anisotropic_pixels(tmp_path):
    angle = np.radians(20)
    row_direction = np.array([np.cos(angle), np.sin(angle), 0.0])  # along a row: increasing column
    column_direction = np.array([-np.sin(angle), np.cos(angle), 0.0])
    position, spacing = np.array([-40.0, -25.0, 12.0]), (0.8, 1.1)  # (between rows, between columns)
    _dicom(tmp_path / "slice.dcm", position, row_direction, column_direction, spacing)
    image = ImageSlice.from_dicom(tmp_path / "slice.dcm")
    rng = np.random.default_rng(2)
    r, c = rng.uniform(0, 39, 100), rng.uniform(0, 29, 100)
    world = position + c[:, None] * spacing[1] * row_direction + r[:, None] * spacing[0] * column_direction
    np.testing.assert_allclose(image.sample(world[:, :2]), 0.5 * (100 + 3 * c + 2 * r) - 10, atol=1e-9)


def test_the_libraries_own_sample_files():
    volume = nibabel.load(os.path.join(nibabel_data, "anatomical.nii"))
    data = np.asarray(volume.dataobj, dtype=float)
    image = ImageSlice.from_nifti(os.path.join(nibabel_data, "anatomical.nii"), slice_index=12)
    for i, j in [(3, 4), (20, 30), (32, 40)]:
        x, y, _ = nibabel.affines.apply_affine(volume.affine, (i, j, 12))
        assert image.sample([[x, y]])[0] == pytest.approx(data[i, j, 12])
    path = get_testdata_file("CT_small.dcm")
    dataset = pydicom.dcmread(path)
    image = ImageSlice.from_dicom(path)
    position, spacing = np.asarray(dataset.ImagePositionPatient, float), np.asarray(dataset.PixelSpacing, float)
    for r, c in [(0, 0), (64, 10), (127, 127)]:
        x, y = position[:2] + [c * spacing[1], r * spacing[0]]  # axial, identity orientation
        expected = dataset.pixel_array[r, c] * float(dataset.RescaleSlope) + float(dataset.RescaleIntercept)
        assert image.sample([[x, y]])[0] == pytest.approx(expected)


def test_registration_and_resampling_onto_a_grid():
    image = ImageSlice.from_array(np.add.outer(0.1 * np.arange(120), np.arange(100.0)), (0.9, 1.1), (-60.0, -55.0))
    moved = image.registered(shift_mm=(3.0, -2.0), rotation_deg=15.0, center_mm=(5.0, 5.0))
    points = np.random.default_rng(3).uniform(-30, 30, (50, 2))
    a = np.radians(15.0)
    rotated = (points - 5.0) @ np.array([[np.cos(a), np.sin(a)], [-np.sin(a), np.cos(a)]]) + 5.0 + [3.0, -2.0]
    np.testing.assert_allclose(moved.sample(rotated), image.sample(points), atol=1e-9)
    # 100 columns of 1.1 mm by 120 rows of 0.9 mm, whatever the rotation.
    assert moved.field_of_view_mm == pytest.approx((110.0, 108.0)) == image.field_of_view_mm
    mesh = disk_mesh(41.0, 6.0)
    grid = PixelGrid(32, -41.0, 41.0)
    mask = np.asarray(GridInterpolation.build(mesh, grid).mask)
    resampled = image.on_grid(grid, mask)
    np.testing.assert_allclose(resampled[mask], image.sample(grid.centers()[mask]))
    assert (resampled[~mask] == 0).all()
    # A square array over [low, high]², as nirst-jax's own grids, maps to the same pixel centres.
    square = ImageSlice.covering(resampled, PixelGrid(resampled.shape[0], -41.0, 41.0))
    np.testing.assert_allclose(square.sample(grid.centers()[mask]), resampled[mask], atol=1e-12)


def test_bad_slices_are_refused(tmp_path):
    small = ImageSlice.from_array(np.zeros((10, 10)), 1.0)
    with pytest.raises(ValueError, match="does not cover 1 point"):
        small.sample([[4.0, 4.0], [20.0, 3.0]])
    _nifti(tmp_path / "v.nii", (0, 1), np.eye(3))
    with pytest.raises(ValueError, match="3 slices; choose one"):
        ImageSlice.from_nifti(tmp_path / "v.nii")
    with pytest.raises(ValueError, match="slice_index 5"):
        ImageSlice.from_nifti(tmp_path / "v.nii", slice_index=5)
    (tmp_path / "bad.nii").write_bytes(b"not a nifti file")
    with pytest.raises(ValueError, match="cannot read NIfTI"):
        ImageSlice.from_nifti(tmp_path / "bad.nii")
    _dicom(tmp_path / "s.dcm", [0, 0, 0], [1, 0, 0], [0, 1, 0], (1, 1))
    dataset = pydicom.dcmread(tmp_path / "s.dcm")
    del dataset.ImagePositionPatient
    dataset.save_as(tmp_path / "s.dcm")
    with pytest.raises(ValueError, match="ImagePositionPatient"):
        ImageSlice.from_dicom(tmp_path / "s.dcm")
    with pytest.raises(ValueError, match="NaN"):
        ImageSlice(np.full((3, 3), np.nan), np.eye(3))
    with pytest.raises(ValueError, match="singular"):
        ImageSlice(np.zeros((3, 3)), np.diag([1.0, 0.0, 1.0]))


def test_the_dri_prior_at_the_mesh_nodes_equals_the_analytic_image(tmp_path):
    """NIfTI (rotated −25°, 0.7 × 1.2 × 3 mm voxels, offset, slice 2 of 4) → the DRI prior's grey
    levels per node, along `nirst reconstruct --method dri`'s path: `ImageSlice.from_nifti` →
    `on_grid(image_grid(mesh, 100), mask)` (`MeasurementSetup.mri_on_grid`, `_on_grid`) → `GridInterpolation.image_to_nodes`
    → `ReconstructionBasis.average` (`Reconstructor.regulariser`). The image is a linear ramp f,
    which both bilinear resamplings reproduce exactly (voxels → grid pixel centres, then grid
    pixel centres → nodes), so at every node whose four neighbouring grid pixels lie in the
    mesh's mask the prior equals f to float64 rounding: values ≈ 100, tolerance 1e-9 (measured
    ≈ 4e-14), far below the ≈ 0.1 error of any non-linear step such as nearest-pixel lookup.
    At the rim `image_to_nodes` drops the neighbours outside the mask (or beyond the grid) and
    renormalises the rest: a convex combination of f at pixel centres within √2·Δ of the node,
    so there the error is at most |∇f|·√2·Δ (Δ = grid pixel, 0.44 mm here; measured 0.31 of
    the 0.59 bound)."""
    from argparse import Namespace

    from nirst_jax.cli._reconstruct import _on_grid, _read_mri
    from nirst_jax.geometry import MeasurementSetup, OptodePositions, PolygonDomain
    from nirst_jax.recon import ReconstructionBasis, image_grid

    def f(x, y):
        return 40.0 + 0.8 * x - 0.5 * y

    affine = np.eye(4)
    affine[:3, :3] = _rotation_z(-25) @ np.diag([0.7, 1.2, 3.0])
    affine[:3, 3] = [12.5, -48.0, -7.0]
    affine = affine.astype(np.float32).astype(np.float64)  # as NIfTI stores it: f is linear in the stored affine
    i, j, k = np.meshgrid(np.arange(70), np.arange(45), np.arange(4), indexing="ij")
    world = np.einsum("ab,bijk->aijk", affine[:3, :3], np.stack([i, j, k])) + affine[:3, 3, None, None, None]
    nibabel.save(nibabel.Nifti1Image(f(world[0], world[1]), affine), tmp_path / "mri.nii.gz")
    np.testing.assert_array_equal(nibabel.load(tmp_path / "mri.nii.gz").affine, affine)
    image = ImageSlice.from_nifti(tmp_path / "mri.nii.gz", slice_index=2)

    center = affine[:2, :2] @ [34.5, 22.0] + affine[:2, 3]  # the slice's centre: 49 × 54 mm around it
    mesh = disk_mesh(22.0, 2.5, center=center)
    grid = image_grid(mesh, 100)
    interpolation = GridInterpolation.build(mesh, grid)
    on_grid = image.on_grid(grid, np.asarray(interpolation.mask))
    args = Namespace(mri=tmp_path / "mri.nii.gz", mri_slice=2, mri_extent=None, mri_shift=(0.0, 0.0), mri_rotation=0.0)
    # The CLI's own path, on the set-up it builds for a mesh with optodes placed by position.
    outline = PolygonDomain.from_mesh(mesh)
    setup = MeasurementSetup(outline, OptodePositions(outline.points[:1], outline.points[1:2], [(0, 0)]))
    setup, cli_on_grid = _on_grid(setup, _read_mri(args, mesh, setup), mesh, 100)
    assert setup.grid() == grid
    np.testing.assert_array_equal(cli_on_grid, on_grid)
    grey = np.asarray(ReconstructionBasis.nodal(mesh).average(interpolation.image_to_nodes(on_grid)))
    exact = f(mesh.nodes[:, 0], mesh.nodes[:, 1])

    # Nodes whose four neighbouring pixel centres (the bilinear stencil) exist and are all inside
    # the mask (rim nodes on the grid's edge lie beyond its outer pixel centres).
    mask = np.asarray(interpolation.mask)
    ix, iy = np.floor((mesh.nodes - [grid.low, grid.bottom]) / grid.pixel_mm - 0.5).astype(int).T
    interior = (ix >= 0) & (iy >= 0) & (ix + 1 < grid.size) & (iy + 1 < grid.size)
    for dy in (0, 1):
        for dx in (0, 1):
            interior &= mask[np.clip(iy + dy, 0, grid.size - 1), np.clip(ix + dx, 0, grid.size - 1)]
    assert 0.8 * mesh.n_nodes < interior.sum() < mesh.n_nodes  # most nodes, and some rim nodes remain
    np.testing.assert_allclose(grey[interior], exact[interior], rtol=0, atol=1e-9)
    bound = np.hypot(0.8, 0.5) * np.sqrt(2) * grid.pixel_mm
    assert np.abs(grey - exact).max() <= bound
