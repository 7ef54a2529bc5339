"""`nirst mesh`: a triangle mesh of a contour or a mask image, written as NIRFAST files."""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np


def add_parser(commands, name: str) -> None:
    """Register the subcommand."""
    parser = commands.add_parser(
        name,
        help="mesh a contour or a mask image (NIRFAST files)",
        description="Triangulate the inside of a closed contour (text/CSV of x, y in mm) or of a binary mask "
        "image (NPY with y growing with the row, or PNG as displayed, with --pixel-spacing; or a NIfTI/DICOM "
        "segmentation slice placed by its own affine), optionally place fibres on the boundary by arc length, "
        "print the mesh quality and write NIRFAST files PREFIX.node/.elem/.param/.region/.source/.meas/.link.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--contour", type=Path, help="text/CSV file of contour vertices x, y (mm), in order")
    source.add_argument("--mask", type=Path, help="binary mask image, one region: .png or .npy (with --pixel-spacing), "
                        "or a NIfTI (.nii, .nii.gz) or DICOM (.dcm) slice placed by its affine")
    parser.add_argument("--pixel-spacing", type=float, nargs="+", metavar="MM",
                        help=".png/.npy mask pixel size: one value, or dy dx")
    parser.add_argument("--origin", type=float, nargs=2, default=None, metavar=("X", "Y"),
                        help=".png/.npy mask: centre of pixel (0, 0) in mm; not given: 0 0")
    parser.add_argument("--mask-slice", type=int, default=None, metavar="K",
                        help="NIfTI mask: slice index along the third voxel axis (several slices)")
    parser.add_argument("--spacing", type=float, required=True, help="longest element edge (mm)")
    parser.add_argument("--boundary-spacing", type=float, default=None, help="longest edge along the boundary (mm)")
    parser.add_argument("--fibres", type=int, default=0, help="fibres evenly spaced by arc length (0: none)")
    parser.add_argument("--first-fibre", type=float, nargs=2, default=None, metavar=("X", "Y"),
                        help="fibre 0 sits at the boundary point nearest to this (default: the contour's first vertex)")
    parser.add_argument("--optodes", type=Path, default=None,
                        help="CSV/JSON of source and detector positions (mm) and pairs, instead of --fibres")
    parser.add_argument("--out", type=Path, required=True, help="path prefix of the NIRFAST files")


def run(args) -> int:
    """Mesh, report and write; returns the exit status."""
    from ..mesh import (
        STND_COLUMNS,
        NirfastMesh,
        fibres_on_contour,
        mesh_quality,
        polygon_mesh,
        write_nirfast,
    )
    from ..formats import read_optodes
    from ..formats._optode_file import all_pairs

    if args.contour is not None:
        if args.pixel_spacing is not None or args.origin is not None or args.mask_slice is not None:
            raise ValueError("--pixel-spacing, --origin and --mask-slice apply to --mask only")
        contour = read_contour(args.contour)
    else:
        contour = _mask_outline(args)
    if args.optodes is not None and (args.fibres or args.first_fibre is not None):
        raise ValueError("give --fibres or --optodes, not both")
    mesh = polygon_mesh(contour, args.spacing, boundary_spacing_mm=args.boundary_spacing)
    print(mesh_quality(mesh, contour).summary())
    if args.optodes is not None:
        optodes = read_optodes(args.optodes)
        # Checked as every later use will place them (on the boundary, within 3 mm unless fixed).
        optodes.forward_model(None, mesh)
        sources, detectors, pairs, fixed = optodes.source_xy, optodes.detector_xy, optodes.pairs, optodes.fixed_sources
    else:
        sources = detectors = fibres_on_contour(contour, args.fibres, args.first_fibre) if args.fibres else np.zeros((0, 2))
        pairs = all_pairs(sources, detectors).reshape(-1, 2)
        fixed = False
    mua, musp, ri = 0.01, 1.0, 1.33  # NIRFAST's usual homogeneous start (mm⁻¹)
    data = NirfastMesh(
        mesh=mesh, kind="stnd", sources=sources, detectors=detectors, link=pairs, link_active=np.ones(len(pairs), bool),
        fixed_sources=fixed, fixed_detectors=fixed, region=np.zeros(mesh.n_nodes, np.int64),
        param_columns=STND_COLUMNS,
        param=np.tile([mua, 1.0 / (3.0 * (mua + musp)), ri], (mesh.n_nodes, 1)),
        source_fwhm=np.zeros(len(sources)), excoef=None, boundary_flags=mesh.is_boundary_node.astype(np.int64),
    )
    args.out.parent.mkdir(parents=True, exist_ok=True)
    write_nirfast(args.out, data)
    print(f"wrote {args.out}.node/.elem/.param/.region/.source/.meas/.link "
          f"({len(sources)} sources, {len(detectors)} detectors, {len(pairs)} pairs)")
    return 0


def read_contour(path: Path) -> np.ndarray:
    """x, y columns of a text/CSV file (comma or white space; '#' comments)."""
    if not path.is_file():
        raise FileNotFoundError(f"contour file {path} does not exist")
    text = path.read_text().replace(",", " ")
    try:
        points = np.loadtxt(text.splitlines(), comments="#", ndmin=2)
    except ValueError as error:
        raise ValueError(f"{path}: not a table of numbers x, y ({error})") from None
    if points.shape[1] != 2:
        raise ValueError(f"{path}: expected two columns (x, y in mm), got {points.shape[1]}")
    return points


def _mask_outline(args) -> np.ndarray:
    """The --mask's outline in mm: a NIfTI/DICOM slice traced in pixels and placed by its affine
    (any spacing, offset, rotation), or a .png/.npy array with --pixel-spacing and --origin."""
    from ..mesh import ImageSlice, closed_contour, mask_contour

    name = args.mask.name.lower()
    if name.endswith((".nii", ".nii.gz", ".dcm")):
        if args.pixel_spacing is not None or args.origin is not None:
            raise ValueError("--pixel-spacing and --origin are for .png/.npy masks; NIfTI and DICOM carry their own affine")
        if args.mask_slice is not None and name.endswith(".dcm"):
            raise ValueError("--mask-slice goes with a NIfTI --mask")
        image = ImageSlice.from_nifti(args.mask, args.mask_slice) if name.endswith((".nii", ".nii.gz")) \
            else ImageSlice.from_dicom(args.mask)
        # Traced in (column, row) pixel coordinates, then placed; the affine may flip the orientation.
        return closed_contour(image.to_mm(mask_contour(image.pixels, 1.0)), "mask outline")
    if args.mask_slice is not None:
        raise ValueError("--mask-slice goes with a NIfTI --mask")
    if args.pixel_spacing is None or len(args.pixel_spacing) not in (1, 2):
        raise ValueError("--mask needs --pixel-spacing MM (or DY DX)")
    return mask_contour(_read_mask(args.mask), args.pixel_spacing, origin_mm=args.origin or (0.0, 0.0))


def _read_mask(path: Path) -> np.ndarray:
    """A binary image from .npy or .png (the first channel of a colour PNG)."""
    if not path.is_file():
        raise FileNotFoundError(f"mask file {path} does not exist")
    if path.suffix.lower() == ".npy":
        return np.load(path, allow_pickle=False)
    if path.suffix.lower() == ".png":
        import matplotlib.image

        image = matplotlib.image.imread(path)
        image = image[..., 0] if image.ndim == 3 else image
        return image[::-1]  # PNG rows run top-down; our images have y growing with the row
    raise ValueError(f"{path}: mask must be .png, .npy, .nii, .nii.gz or .dcm")
