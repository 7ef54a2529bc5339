"""A breast slice that is not a disk: outline → mesh → fibres → SNIRF data and MRI files → DRI → report.

The outline is a rounded triangle with slightly concave sides (a breast held by a triangular
16-fibre interface, as the reference study's patient interface was), so it is non-convex. Inside:
an irregular fibroglandular region and a malignant-like lesion on adipose tissue. The
measurements are simulated on a finer mesh of the same outline than the one reconstructed on
(no inverse crime), with 1 % amplitude noise and a per-fibre coupling error, and written as
SNIRF files (the data and a homogeneous reference). The MRI is written as a scanner would give
it, as DICOM and as NIfTI: 0.7 × 0.8 mm pixels over a field of view offset from the slice, air
dark around it, 4 % noise. The mesh's coordinates are the patient's x, y in DICOM's frame (LPS);
NIfTI's frame (RAS) is that turned by 180°, undone by registration. The reconstruction reads
everything back: the optodes from the SNIRF probe, the MRI through `ImageSlice` (both files
must agree) resampled onto the image grid; it calibrates against the reference and runs
MRI-guided Gauss-Newton (DRI). It prints the mesh quality, the recovered values per region and
the lesion's HbT against the truth, and writes a figure.

Run: `python examples/breast_slice.py [--mesh-spacing 3] [--out breast_slice]`.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import jax
import nibabel
import nirst_jax as nj
import pydicom
from matplotlib.path import Path as PolygonPath
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, MRImageStorage, generate_uid

jax.config.update("jax_enable_x64", True)
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402

from nirst_jax._atomic import save_figure  # noqa: E402
from nirst_jax.evaluation import region_masks, region_means  # noqa: E402
from nirst_jax.figures import reconstruction_figure  # noqa: E402
from nirst_jax.formats import SnirfData, read_snirf, write_snirf  # noqa: E402
from nirst_jax.mesh import ImageSlice, fibres_on_contour  # noqa: E402
from nirst_jax.phantoms import Coverage, Phantom, Region, StarShape, add_mri_noise  # noqa: E402
from nirst_jax.physics import MeasurementLayout, add_amplitude_noise  # noqa: E402
from nirst_jax.recon import Reconstructor, calibrate, image_grid  # noqa: E402

BACKGROUND = (12.0, 5.0, 25.0)  # adipose: HbO, Hb (µM), water (%)
MRI_SHAPE = (128, 150)  # rows, columns
MRI_AFFINE = np.array([[0.7, 0.0, -47.9], [0.0, 0.8, -55.3], [0.0, 0.0, 1.0]])
"""(column, row, 1) → patient (x, y, 1) in mm (LPS): 0.7 mm between columns, 0.8 mm between
rows, pixel (0, 0) at (−47.9, −55.3) (the field of view is not centred on the slice)."""
MRI_SLOPE = 0.1  # stored integers × slope = grey level, in both files


def breast_outline(points: int = 600) -> np.ndarray:
    """(P, 2) mm: a rounded triangle 84 mm across, its sides slightly concave (non-convex)."""
    theta = np.linspace(0.0, 2 * np.pi, points, endpoint=False) + np.pi / 2
    r = 36.0 * (1 + 0.13 * np.cos(3 * (theta - np.pi / 2)))
    return np.column_stack([r * np.cos(theta), r * np.sin(theta)])


def tissue() -> Phantom:
    return Phantom(
        background=BACKGROUND,
        regions=(
            Region(StarShape((-4.0, 6.0), 17.0, ((3, 0.25, 0.5),)), (16.0, 7.0, 55.0), 65.0, "fibroglandular"),
            Region(StarShape((10.0, -6.0), 7.0, ((5, 0.12, 0.0),)), (27.0, 14.0, 60.0), 85.0, "lesion"),
        ),
        name="breast slice",
    )


def set_up(mesh, fibres, layout):
    """Forward model with the 16 fibres on `mesh` (sources moved one transport length inward)."""
    return nj.SpectralForwardModel.create(mesh, source_positions=fibres, move_sources_inward=True,
                                          detector_positions=fibres, layout=layout)


def write_measurements(folder: Path, outline, fibres, spacing: float) -> None:
    """Simulate the slice on a mesh twice as fine and write data and reference as SNIRF."""
    mesh = nj.polygon_mesh(outline, spacing / 2)
    layout = MeasurementLayout.ring(len(fibres))
    model = set_up(mesh, fibres, layout)
    simulate = jax.jit(lambda c: model(c))
    rng = np.random.default_rng(7)
    coupling = rng.normal(0.0, 0.2, len(fibres))  # each fibre's unknown coupling, in ln A
    coupling = coupling[:, None] + coupling[np.asarray(layout.detector_index)]  # source + detector
    clean = simulate(jnp.asarray(tissue().nodal(Coverage.nodes(mesh))))
    data = add_amplitude_noise(clean, 0.01, rng.normal(size=clean.shape))
    reference = simulate(jnp.asarray(np.repeat(np.asarray(BACKGROUND)[:, None], mesh.n_nodes, 1)))
    for name, values in (("measurement", data), ("reference", reference)):
        write_snirf(folder / f"{name}.snirf", SnirfData(np.asarray(values) + coupling, None, layout, fibres, fibres,
                                                        np.asarray(model.wavelengths_nm)))


def write_mri(folder: Path, outline) -> None:
    """The scanner's MRI of the slice as `mri.dcm` and `mri.nii.gz` (the same pixels)."""
    coverage = Coverage.image(MRI_AFFINE, MRI_SHAPE)
    body = np.asarray(coverage(lambda points: PolygonPath(outline).contains_points(np.asarray(points))))
    grey = tissue().mri(coverage, np.ones(MRI_SHAPE, bool)) * body  # air is dark; the skin partial-volumed
    grey = np.asarray(add_mri_noise(jnp.asarray(grey), 0.04, jax.random.key(0)))
    stored = np.round(grey / MRI_SLOPE).astype(np.uint16)
    write_dicom(folder / "mri.dcm", stored, MRI_AFFINE)
    lps = np.eye(4)
    lps[:2, :2], lps[:2, 3], lps[2, 2:] = MRI_AFFINE[:2, :2], MRI_AFFINE[:2, 2], (3.0, 21.0)  # 3 mm slice at z = 21
    nifti = nibabel.Nifti1Image(stored.T[:, :, None], np.diag([-1.0, -1.0, 1.0, 1.0]) @ lps)  # voxel (i, j) = (column, row)
    nifti.header.set_slope_inter(MRI_SLOPE, 0.0)
    nifti.header.set_xyzt_units("mm")
    nibabel.save(nifti, folder / "mri.nii.gz")


def write_dicom(path: Path, stored, affine) -> None:
    """A minimal axial MR image: `stored` (rows, columns) uint16 placed by the axis-aligned
    `affine` (z = 21 mm)."""
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID, meta.MediaStorageSOPInstanceUID = MRImageStorage, generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID, ds.SOPInstanceUID, ds.Modality = MRImageStorage, meta.MediaStorageSOPInstanceUID, "MR"
    ds.Rows, ds.Columns = stored.shape
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 0
    ds.PixelData = stored.astype("<u2").tobytes()
    ds.ImagePositionPatient = [float(affine[0, 2]), float(affine[1, 2]), 21.0]
    ds.ImageOrientationPatient = [1.0, 0.0, 0.0, 0.0, 1.0, 0.0]  # along a row: +x; down a column: +y
    ds.PixelSpacing = [float(affine[1, 1]), float(affine[0, 0])]  # between rows, between columns
    ds.SliceThickness, ds.RescaleSlope, ds.RescaleIntercept = 3.0, MRI_SLOPE, 0.0
    try:
        pydicom.dcmwrite(path, ds, enforce_file_format=True)
    except TypeError:  # pydicom < 3
        pydicom.dcmwrite(path, ds, write_like_original=False)


def read_mri(folder: Path, grid, mask) -> np.ndarray:
    """The MRI on the image grid, from the NIfTI file (turned from RAS to the mesh's LPS), checked
    against the DICOM file."""
    nifti = ImageSlice.from_nifti(folder / "mri.nii.gz").registered(rotation_deg=180.0)
    dicom = ImageSlice.from_dicom(folder / "mri.dcm")
    image = nifti.on_grid(grid, mask)
    difference = np.abs(dicom.on_grid(grid, mask) - image).max()
    if difference > 1e-4 * image.max():
        raise RuntimeError(f"the NIfTI and DICOM files disagree by {difference:.3g} on the grid")
    return image


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--mesh-spacing", type=float, default=3.0, help="reconstruction mesh, longest edge (mm)")
    parser.add_argument("--out", type=Path, default=Path("breast_slice"))
    args = parser.parse_args()

    outline = breast_outline()
    fibres = fibres_on_contour(outline, 16, first_mm=(0.0, 60.0))
    mesh = nj.polygon_mesh(outline, args.mesh_spacing)
    print("reconstruction mesh:", nj.mesh_quality(mesh, outline).summary())
    write_measurements(args.out, outline, fibres, args.mesh_spacing)
    print(f"wrote {args.out / 'measurement.snirf'} and {args.out / 'reference.snirf'}")
    write_mri(args.out, outline)
    print(f"wrote {args.out / 'mri.dcm'} and {args.out / 'mri.nii.gz'} ({MRI_SHAPE[1]}×{MRI_SHAPE[0]} pixels, 0.7 × 0.8 mm)")

    measured, reference = read_snirf(args.out / "measurement.snirf"), read_snirf(args.out / "reference.snirf")
    model = set_up(mesh, measured.sources, measured.layout)
    calibrated, offsets = calibrate(model, measured.ln_amplitude, reference.ln_amplitude)
    print(f"calibration removed coupling offsets of up to {float(jnp.abs(offsets).max()):.2f} in ln A")

    grid = image_grid(mesh)
    reconstructor = Reconstructor.create(model, mesh, "dri", grid=grid)
    mask = np.asarray(reconstructor.grid.mask)
    pixels = Coverage.pixels(grid)
    phantom = tissue()
    mri = jnp.asarray(read_mri(args.out, grid, mask))
    result = jax.jit(lambda d, m: reconstructor(d, m))(calibrated, mri)
    images, truth = np.asarray(result.images), phantom.images(pixels, mask)
    print(f"DRI: {int(result.steps)} Gauss-Newton steps")
    masks = region_masks(phantom, grid, mask)
    true, recovered = region_means(truth, masks), region_means(images, masks)
    for label in true:
        cells = "  ".join(f"{n} {t:5.1f} → {r:5.1f}" for n, t, r in zip(("HbO", "Hb", "water"), true[label], recovered[label]))
        print(f"{label:15s} {cells}")
    true_hbt, hbt = true["lesion"][:2].sum(), recovered["lesion"][:2].sum()
    print(f"lesion HbT: true {true_hbt:.1f} µM, DRI {hbt:.1f} µM ({100 * (hbt / true_hbt - 1):+.0f} %)")
    figure = reconstruction_figure(images, grid.extent, mask, truth=truth, title="breast slice, DRI")
    save_figure(figure, args.out / "breast_slice.png")
    print(f"wrote {args.out / 'breast_slice.png'}")


if __name__ == "__main__":
    main()
