"""`nirst reconstruct`: chromophore (and scatter) images from CW ln amplitudes, or frequency-domain
ln amplitudes and phases, and an MRI slice."""

from __future__ import annotations

import argparse
import time
import zipfile
from pathlib import Path

import numpy as np

from ._arguments import float_list

METHODS = ("dri", "tikhonov", "softprior", "znet", "lgn", "dri-unet")
NETWORK_METHODS = ("znet", "lgn", "dri-unet")
"""Methods that run a trained network from --checkpoint: znet any network, lgn a learned Gauss-Newton
run, dri-unet a DRI + U-Net run."""


def add_parser(commands, name: str) -> None:
    """Register the subcommand."""
    parser = commands.add_parser(
        name,
        help="reconstruct images: Gauss-Newton (DRI, Tikhonov, soft prior) or a trained network (Z-Net, Y-Net, learned Gauss-Newton, DRI + U-Net)",
        description=(
            "Reconstruct HbO, Hb and water from CW ln amplitudes (npz, e.g. from `nirst forward`) "
            "with an MRI-guided (DRI), Tikhonov or soft-prior regularised Gauss-Newton, or with a "
            "network trained by `nirst train` (--method znet|lgn|dri-unet --checkpoint RUN). Frequency-domain "
            "data are reconstructed from ln amplitude and phase jointly (Gauss-Newton methods; "
            "--fit-scatter adds the scattering amplitude and power as unknowns). Writes "
            "OUT/reconstruction.npz, OUT/reconstruction.png and OUT/convergence.json. File "
            "formats: docs/reconstruction.md."
        ),
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("--method", choices=METHODS, default="dri",
                        help="znet: any network trained by `nirst train`; lgn: a learned Gauss-Newton run (`--model lgn`); "
                             "dri-unet: a DRI + U-Net run (`--model dri-unet`)")
    parser.add_argument("--checkpoint", type=Path, help="--method znet|lgn|dri-unet: the training run folder")
    parser.add_argument("--which", choices=("best", "last"), default="best", help="--method znet|lgn|dri-unet: which checkpoint")
    parser.add_argument(
        "--refine", type=int, default=0, metavar="N",
        help="--method znet|lgn|dri-unet: N Gauss-Newton steps with the DRI prior centred on the network's output (0: none)",
    )
    parser.add_argument("--symmetry-average", action="store_true",
                        help="--method znet|lgn|dri-unet: average the network's images over the rotations and reflections "
                        "that map its set-up onto itself (8 on the study's disk; docs/learned.md)")
    parser.add_argument("--data", type=Path, required=True, help="npz with ln_amplitude (λ, source, detector), a SNIRF file "
                        "(its probe sets the optodes) or a NIRFAST spectral .paa file (rows matched to --mesh's link)")
    parser.add_argument("--mri", type=Path, help="MRI slice: NIfTI (.nii, .nii.gz) or DICOM (.dcm), placed by its "
                        "affine; or .npy/.png, square, over the image grid (or --mri-extent)")
    parser.add_argument("--mri-slice", type=int, help="NIfTI: slice index along the third voxel axis (several slices)")
    parser.add_argument("--mri-extent", type=float, nargs=2, metavar=("LOW", "HIGH"),
                        help=".npy/.png MRI: the square [LOW, HIGH]² mm it covers (default: the image grid)")
    parser.add_argument("--mri-shift", type=float, nargs=2, default=(0.0, 0.0), metavar=("DX", "DY"),
                        help="registration: shift (mm) of the MRI onto the mesh, after --mri-rotation")
    parser.add_argument("--mri-rotation", type=float, default=0.0, metavar="DEG",
                        help="registration: rotation of the MRI about the origin (degrees, counter-clockwise)")
    parser.add_argument("--labels", type=Path, help="soft prior: integer label image (.npy/.png); default Otsu on the MRI")
    parser.add_argument("--mesh", type=str, help="NIRFAST mesh prefix, with its optodes and link pairs when it has them "
                        "(default: the mesh in --data, else a disk)")
    parser.add_argument("--optodes", type=Path, help="CSV/JSON of source and detector positions (mm), for a disk or a "
                        "--mesh without optode files (docs/geometry.md)")
    parser.add_argument("--radius", type=float, default=41.0, help="disk radius (mm) when no mesh is given")
    parser.add_argument("--mesh-spacing", type=float, default=2.0, help="disk mesh spacing (mm) when no mesh is given")
    parser.add_argument("--fibres", type=int, default=16, help="rim fibres when --data has no fibres_xy and --mesh no optodes")
    parser.add_argument("--reference", type=Path, help="the same kind of file measured on a homogeneous reference (calibration)")
    parser.add_argument("--self-calibrate", action="store_true", help="remove a fitted per-wavelength offset")
    parser.add_argument("--weight", type=float, default=None, help="regularisation weight α (default per method)")
    parser.add_argument("--basis-size", type=int, default=24, help="pixel-basis points per side; 0 = nodal")
    parser.add_argument("--iterations", type=int, default=10, help="most Gauss-Newton steps")
    parser.add_argument("--frequency-mhz", type=float, default=None,
                        help="modulation frequency of .paa phase data (.npz and SNIRF files carry their own)")
    parser.add_argument("--fit-scatter", action="store_true",
                        help="frequency-domain data: also reconstruct the scattering amplitude and power")
    parser.add_argument("--factorise-in-float64", action="store_true",
                        help="factorise each Gauss-Newton system in float64 (default: float32, refined in float64)")
    parser.add_argument("--phase-weight", type=float, default=1.0,
                        help="frequency-domain data: weight of phase (rad) against ln A residuals, σ(ln A)/σ(phase)")
    parser.add_argument("--roi", type=float_list(3), help="x,y,radius (mm): report HbT ROI/background contrast")
    parser.add_argument("--out", type=Path, default=Path("nirst-reconstruct"), help="output folder")


# What NumPy, zipfile and Pillow raise on a corrupt or truncated file.
_UNREADABLE = (OSError, ValueError, EOFError, KeyError, SyntaxError, zipfile.BadZipFile)


def _read_image(path: Path, what: str) -> np.ndarray:
    if not path.exists():
        raise FileNotFoundError(f"{what} file {path} does not exist")
    if path.suffix.lower() not in (".npy", ".png"):
        raise ValueError(f"{what} file {path} must be .npy or .png")
    try:
        if path.suffix.lower() == ".npy":
            image = np.load(path, allow_pickle=False)
        else:
            import matplotlib.image

            image = matplotlib.image.imread(path)
            image = image[..., :3].mean(-1) if image.ndim == 3 else image
            image = image[::-1]  # PNG rows run top-down; our images have y growing with the row
    except _UNREADABLE as error:
        raise ValueError(f"cannot read {what} file {path} (corrupt or truncated?): {error}") from None
    image = np.asarray(image, float)
    if image.ndim != 2 or image.shape[0] != image.shape[1]:
        raise ValueError(f"{what} {path} must be a square 2-D image, got shape {image.shape}")
    if not np.isfinite(image).all():
        raise ValueError(f"{what} {path} contains NaN or infinite values")
    return image


def _read_mri(args, mesh, setup):
    """The MRI: an `ImageSlice` placed by its own affine (NIfTI, DICOM, a stated extent or, for
    a registration, laid over the set-up's grid), or a square array over the set-up's image grid
    (the default for .npy/.png). The set-up's `mri_registration` then moves a slice onto the
    mesh (`_on_grid`)."""
    import dataclasses

    from ..mesh import ImageSlice, PixelGrid

    path, name = args.mri, args.mri.name.lower()
    if args.mri_slice is not None and not name.endswith((".nii", ".nii.gz")):
        raise ValueError("--mri-slice goes with a NIfTI --mri")
    if name.endswith((".nii", ".nii.gz", ".dcm")):
        if args.mri_extent is not None:
            raise ValueError("--mri-extent is for .npy/.png MRI; NIfTI and DICOM carry their own affine")
        image = ImageSlice.from_nifti(path, args.mri_slice) if name.endswith((".nii", ".nii.gz")) else ImageSlice.from_dicom(path)
    else:
        array = _read_image(path, "MRI")
        if args.mri_extent is None and setup.mri_registration.is_identity:
            return array
        grid = (dataclasses.replace(setup, image_size=array.shape[0]).grid() if args.mri_extent is None
                else PixelGrid(array.shape[0], *args.mri_extent))
        image = ImageSlice.covering(array, grid)
    _check_scale(image, mesh, path)
    return image


def _registration(args):
    """The `RigidRegistration` of --mri-shift and --mri-rotation (about the origin)."""
    from ..geometry import RigidRegistration

    return RigidRegistration(shift_mm=tuple(args.mri_shift), rotation_deg=args.mri_rotation)


SCALE_RATIO = 5.0
"""A mesh spanning less than 1/SCALE_RATIO of its MRI's field of view (or the reverse) is refused."""


def _check_scale(image, mesh, path: Path) -> None:
    """Refuse an MRI out of scale with the mesh: a breast or phantom fills much of its field of
    view, so one 10× smaller (or larger) is a unit mismatch (cm vs mm), not a small object.

    Arguments:
        image: the MRI as an `ImageSlice`.
        mesh: the reconstruction mesh.
        path: the MRI file, for the message.
    """
    width, height = image.field_of_view_mm
    extent = float(np.ptp(mesh.nodes, axis=0).max())
    if extent < min(width, height) / SCALE_RATIO or max(width, height) < extent / SCALE_RATIO:
        raise ValueError(
            f"the mesh is {extent:.3g} mm across but the field of view of the MRI {path} is {width:.3g} × {height:.3g} mm: "
            f"more than {SCALE_RATIO:g}× apart, a mesh in cm with an MRI in mm (or the reverse)? Both must be in mm"
        )


def _on_grid(setup, image, mesh, size: int):
    """(the set-up with a size × size image grid, the MRI over that grid): an `ImageSlice` is
    registered and resampled (`MeasurementSetup.mri_on_grid`), an array or None kept as given."""
    import dataclasses

    from ..mesh import ImageSlice

    setup = dataclasses.replace(setup, image_size=size)
    return setup, setup.mri_on_grid(image, mesh) if isinstance(image, ImageSlice) else image


def _domain(mesh, mesh_record: dict, optodes):
    """The domain of the set-up: the command's own disk, the disk a ring of rim fibres sits on
    (a disk mesh centred at the origin), or the outline of the mesh (optodes placed by position)."""
    from ..geometry import DiskDomain, PolygonDomain, RimFibres

    if mesh_record.get("kind") == "disk":
        return DiskDomain(mesh_record["radius_mm"])
    if not isinstance(optodes, RimFibres):
        return PolygonDomain.from_mesh(mesh)
    radii = np.hypot(*mesh.nodes[mesh.boundary_nodes].T)
    if np.ptp(radii) > 1e-3 * radii.max():  # a circle's nodes, up to the rounding of a mesh file
        raise ValueError(f"evenly spaced rim fibres need a disk mesh centred at the origin; the boundary of this mesh "
                         f"lies {radii.min():.4g}–{radii.max():.4g} mm from it: give the optodes with --optodes FILE "
                         "or a NIRFAST mesh with its optode files")
    return DiskDomain(float(radii.max()))


def _read_data(path: Path) -> dict:
    if not path.exists():
        raise FileNotFoundError(f"data file {path} does not exist")
    if path.suffix.lower() == ".paa":
        from ..formats import read_nirfast_data

        paa = read_nirfast_data(path)
        if paa.wavelengths_nm is None:
            raise ValueError(f"{path} is a single-wavelength (standard) NIRFAST file; nirst reconstruct needs the "
                             "spectral layout ('source det w661 w785 …')")
        # A .paa file does not record its modulation frequency: `_prepare` asks for --frequency-mhz.
        return {"wavelengths_nm": paa.wavelengths_nm, "paa": paa, **({"phase": None} if paa.has_phase else {})}
    if path.suffix.lower() == ".snirf":
        from ..formats import read_snirf

        snirf = read_snirf(path)
        data = {"ln_amplitude": snirf.ln_amplitude, "wavelengths_nm": snirf.wavelengths_nm,
                "frequency_hz": np.asarray(snirf.frequency_hz), "snirf": snirf}
        if snirf.phase is not None:
            data["phase"] = snirf.phase
        return _checked_data(path, data)
    try:
        with np.load(path, allow_pickle=False) as archive:
            data = {key: archive[key] for key in archive.files}
    except _UNREADABLE as error:
        raise ValueError(f"cannot read data file {path} (corrupt or truncated?): {error}") from None
    for key in ("ln_amplitude", "wavelengths_nm"):
        if key not in data:
            raise ValueError(f"data file {path} has no {key!r} array")
    return _checked_data(path, data)


def _checked_data(path: Path, data: dict) -> dict:
    frequency = np.asarray(data.get("frequency_hz", 0.0), float)
    if frequency.ndim != 0 or not (np.isfinite(frequency) and frequency >= 0):
        raise ValueError(f"data file {path}: frequency_hz must be one finite value ≥ 0, got {frequency.tolist()}")
    if (frequency != 0.0) != ("phase" in data):
        # FD amplitudes differ from CW ones, and the phase is what separates absorption from
        # scatter: either half alone would be reconstructed silently wrong.
        raise ValueError(
            f"data file {path} has frequency_hz = {float(frequency):g} but "
            f"{'no phase' if 'phase' not in data else 'a phase array'}: frequency-domain data need both, CW data neither"
        )
    if "phase" in data and np.shape(data["phase"]) != np.shape(data["ln_amplitude"]):
        raise ValueError(f"{path}: phase has shape {np.shape(data['phase'])}, ln_amplitude {np.shape(data['ln_amplitude'])}")
    if data["ln_amplitude"].ndim != 3:
        raise ValueError(f"{path}: ln_amplitude must be (wavelength, source, detector), got {data['ln_amplitude'].shape}")
    if data["ln_amplitude"].shape[0] != len(data["wavelengths_nm"]):
        raise ValueError(
            f"{path}: ln_amplitude has {data['ln_amplitude'].shape[0]} wavelengths, "
            f"wavelengths_nm {len(data['wavelengths_nm'])}"
        )
    return data


def _measurements(data: dict, model):
    """The data's ln A, or (ln A, phase in radians) for frequency-domain data; a SNIRF or
    NIRFAST `.paa` file's channels are placed in the model's slots."""
    if "paa" in data or "snirf" in data:
        ln_amplitude, phase = data["paa" if "paa" in data else "snirf"].in_layout(model.layout)
    else:
        ln_amplitude, phase = np.asarray(data["ln_amplitude"], float), data.get("phase")
    return ln_amplitude if "phase" not in data else (ln_amplitude, np.asarray(phase, float))


def _frequency_hz(args, data: dict) -> float:
    """The modulation frequency: the file's, or --frequency-mhz for a .paa file with phases."""
    if "paa" in data:
        if "phase" in data and args.frequency_mhz is None:
            raise ValueError(f"{args.data} holds phases but a .paa file does not record its modulation frequency: "
                             "give --frequency-mhz")
        if "phase" not in data and args.frequency_mhz:
            raise ValueError(f"{args.data} has no phases (CW data), so --frequency-mhz {args.frequency_mhz:g} cannot apply")
        return 0.0 if "phase" not in data else float(args.frequency_mhz) * 1e6
    frequency = float(data.get("frequency_hz", 0.0))
    if args.frequency_mhz is not None and abs(args.frequency_mhz * 1e6 - frequency) > 1e-6 * max(frequency, 1.0):
        raise ValueError(f"--frequency-mhz {args.frequency_mhz:g} differs from {args.data}'s {frequency / 1e6:g} MHz")
    return frequency


def _mesh(args, data):
    """(mesh, the NIRFAST file's contents when --mesh names one with optodes, else None, where
    the mesh came from: a JSON-ready dict)."""
    from ..geometry import DiskDomain
    from ..mesh import Mesh, disk_mesh, read_nirfast

    if args.mesh:
        nirfast = read_nirfast(args.mesh)
        # Any optode file counts: `from_nirfast` refuses an incomplete set rather than
        # falling back to rim fibres.
        has_optodes = len(nirfast.sources) or len(nirfast.detectors) or len(nirfast.link)
        return nirfast.mesh, nirfast if has_optodes else None, {"kind": "nirfast", "prefix": str(args.mesh)}
    if "nodes" in data and "elements" in data:
        return Mesh(data["nodes"], data["elements"]), None, {"kind": "data", "file": str(args.data)}
    mesh = disk_mesh(args.radius, args.mesh_spacing)
    return mesh, None, {**DiskDomain(args.radius).to_dict(), "spacing_mm": args.mesh_spacing}


def _pair_positions(model, nodes) -> np.ndarray:
    """(S, K, 2, 2): source and detector position (mm) of each measurement slot of `model`
    (sources at its first wavelength) on a mesh with `nodes`."""
    sources = model.sources.positions(nodes)[0]
    detectors = model.detectors.positions(nodes)[np.asarray(model.layout.detector_index)]
    return np.stack([np.broadcast_to(sources[:, None], detectors.shape), detectors], axis=-2)


def _fibre_set_up(mesh, fibres_xy, count):
    """(n_fibres, angle offset) of evenly spaced rim fibres matching `fibres_xy`."""
    from ..physics import rim_positions

    if fibres_xy is None:
        return count, 0.0
    fibres_xy = np.asarray(fibres_xy, float)
    center = mesh.nodes[mesh.boundary_nodes].mean(0)
    offset = float(np.degrees(np.arctan2(*(fibres_xy[0] - center)[::-1])))
    expected = rim_positions(mesh, len(fibres_xy), angle_offset_deg=offset)
    if np.abs(expected - fibres_xy).max() > 1e-3 * np.ptp(mesh.nodes):
        raise ValueError("fibres_xy are not evenly spaced on the rim; give a NIRFAST mesh with --mesh instead")
    return len(fibres_xy), offset


def _prepare(args):
    """Read and check the inputs shared by every method.

    Returns:
        (mesh, model, ln A calibrated for `model`, MRI, scatter, recalibrate, set-up, record):
        `recalibrate(other)` calibrates the same raw data for another forward model (e.g. a
        network's training set-up), or is None when no calibration was asked for; the set-up is
        the `MeasurementSetup` (its image grid and MRI registration serve every method), the
        record its JSON-ready account (`_set_up_record`).
    """
    import jax

    from ..formats import read_optodes
    from ..geometry import MeasurementSetup, OptodePositions, RimFibres
    from ..recon import calibrate, check_weight

    data = _read_data(args.data)
    if args.method in ("dri", "softprior", *NETWORK_METHODS) and args.mri is None and args.labels is None:
        raise ValueError(f"--method {args.method} needs --mri" + (" or --labels" if args.method == "softprior" else ""))
    if args.basis_size < 0 or args.iterations < 1:
        raise ValueError("--basis-size must be ≥ 0 and --iterations ≥ 1")
    if args.reference is not None and args.self_calibrate:
        raise ValueError("give --reference or --self-calibrate, not both")
    if (args.method in NETWORK_METHODS) != (args.checkpoint is not None):
        raise ValueError("--checkpoint goes with --method znet, lgn or dri-unet (and only with them)")
    if args.weight is not None:
        check_weight(args.weight)
    if args.refine < 0 or (args.refine and args.method not in NETWORK_METHODS):
        raise ValueError(f"--refine N (N ≥ 0) goes with --method znet, lgn or dri-unet, got {args.refine} with {args.method}")
    if args.symmetry_average and args.method not in NETWORK_METHODS:
        raise ValueError(f"--symmetry-average goes with --method znet, lgn or dri-unet, got {args.method}")
    if args.frequency_mhz is not None and not (np.isfinite(args.frequency_mhz) and args.frequency_mhz > 0):
        raise ValueError(f"--frequency-mhz must be finite and > 0, got {args.frequency_mhz}")
    if not (np.isfinite(args.phase_weight) and args.phase_weight > 0):
        raise ValueError(f"--phase-weight must be finite and > 0, got {args.phase_weight}")
    frequency_hz = _frequency_hz(args, data)
    if frequency_hz and args.method in NETWORK_METHODS:
        raise ValueError(f"{args.data} holds frequency-domain data; the networks take CW ln amplitudes: "
                         "use a Gauss-Newton method (dri, tikhonov, softprior)")
    if args.phase_weight != 1.0 and not frequency_hz:
        raise ValueError(f"--phase-weight {args.phase_weight:g} applies to frequency-domain data; {args.data} is CW")
    if args.fit_scatter and not frequency_hz:
        raise ValueError("--fit-scatter needs frequency-domain data (ln A and phase): CW ln amplitudes barely separate "
                         "scatter from absorption (docs/reconstruction.md)")
    if "detectors_xy" in data and not (args.mesh or args.optodes):
        raise ValueError(f"{args.data} was simulated on a mesh file's (or an optode file's) optodes: give that file "
                         "with --mesh PREFIX or --optodes FILE (or reconstruct forward.snirf, which carries the probe)")
    mesh, nirfast, mesh_record = _mesh(args, data)
    if args.optodes is not None and nirfast is not None:
        raise ValueError(f"--optodes {args.optodes}: the mesh file {args.mesh} already sets the optodes")
    optodes = None if args.optodes is None else read_optodes(args.optodes)
    scatter = tuple(float(v) for v in data.get("scatter", (1.0, 1.0)))

    def file_optodes():
        """The mesh file's or the optode file's optodes and their description."""
        if nirfast is not None:
            active = int(np.count_nonzero(nirfast.link_active))
            return OptodePositions.from_nirfast(nirfast), f"the optodes and {active} active link pairs of {args.mesh}"
        return optodes, f"the optodes and {len(optodes.link)} pairs of {args.optodes}"

    if "snirf" in data and (nirfast is not None or optodes is not None):
        # A SNIRF probe has no `fixed` flag: the mesh or optode file that says how to place the
        # optodes must hold the same positions.
        snirf, extent, given = data["snirf"], np.ptp(mesh.nodes), nirfast if nirfast is not None else optodes
        for name in ("sources", "detectors"):
            mine, theirs = np.asarray(getattr(snirf, name)), np.asarray(getattr(given, name))
            if mine.shape != theirs.shape or np.abs(mine - theirs).max() > 1e-3 * extent:
                raise ValueError(f"the {name} of {args.data}'s probe are not those of {args.mesh or args.optodes}")
        optodes, set_up = file_optodes()
    elif "snirf" in data:
        # Placed as optodes not fixed (NIRFAST's rule): on the boundary, sources one transport length inward.
        snirf = data["snirf"]
        slots = sorted(snirf.layout.slots().items(), key=lambda item: (item[0][0], item[1]))
        optodes = OptodePositions(snirf.sources, snirf.detectors, [pair for pair, _ in slots])
        set_up = f"the probe of {args.data} ({len(snirf.sources)} sources, {len(snirf.detectors)} detectors)"
    elif nirfast is not None or optodes is not None:
        optodes, set_up = file_optodes()
    else:
        n_fibres, offset = _fibre_set_up(mesh, data.get("fibres_xy"), args.fibres)
        optodes, set_up = RimFibres(n_fibres, offset), f"{n_fibres} rim fibres"
    setup = MeasurementSetup(_domain(mesh, mesh_record, optodes), optodes, scatter, frequency_hz,
                             mri_registration=_registration(args))
    model = setup.forward_model(mesh, tuple(float(w) for w in data["wavelengths_nm"]))
    fibres = data.get("fibres_xy", data.get("detectors_xy"))
    if isinstance(optodes, OptodePositions) and "snirf" not in data and fibres is not None:
        detectors = setup.detector_positions(mesh)
        if np.shape(fibres) != detectors.shape or np.abs(fibres - detectors).max() > 1e-3 * np.ptp(mesh.nodes):
            raise ValueError(f"{args.data}: its detector positions are not those of {args.mesh or args.optodes}")
    measurements = _measurements(data, model)
    for name, values in zip(("ln_amplitude", "phase"), measurements if frequency_hz else (measurements,)):
        if values.shape != model.data_shape:
            raise ValueError(
                f"{name} has shape {values.shape}, but {set_up} at "
                f"{model.n_wavelengths} wavelengths give {model.data_shape}"
            )
        active = np.broadcast_to(np.asarray(model.layout.active), values.shape)
        if not np.isfinite(values[active]).all():
            raise ValueError(f"{args.data}: {name} has NaN or infinite active measurements")
    for name in ("detector_index", "active"):
        # A file that records its slots (nirst forward) must share the model's: the same shape
        # with other pairs in the slots would be read silently wrong.
        if name in data and not np.array_equal(data[name], np.asarray(getattr(model.layout, name))):
            raise ValueError(f"{args.data}: its measurement slots ({name}) are not those of {set_up}")
    image = None if args.mri is None else _read_mri(args, mesh, setup)
    record = _set_up_record(args, mesh, mesh_record, setup, set_up, model)
    if args.reference is not None or args.self_calibrate:
        reference = None
        if args.reference is not None:
            reference_data = _read_data(args.reference)
            if _frequency_hz(args, reference_data) != frequency_hz:
                raise ValueError(f"--reference {args.reference} and --data {args.data} differ in modulation frequency")
            reference = _measurements(reference_data, model)

        def recalibrate(target_model, target_scatter=scatter):
            calibrated, _ = calibrate(target_model, measurements, reference,
                                      scatter_amplitude=target_scatter[0], scatter_power=target_scatter[1],
                                      fit_scatter=args.fit_scatter, phase_weight=args.phase_weight)
            return jax.tree.map(np.asarray, calibrated)

        return mesh, model, recalibrate(model), image, scatter, recalibrate, setup, record
    return mesh, model, measurements, image, scatter, None, setup, record


def _set_up_record(args, mesh, mesh_record: dict, setup, described: str, model) -> dict:
    """The measurement set-up as convergence.json records it.

    Arguments:
        args: the parsed command line (the MRI file and its registration).
        mesh: the mesh.
        mesh_record: where it came from (`_mesh`).
        setup: the `MeasurementSetup` (domain, the optodes the model was built from, MRI registration).
        described: where the optodes came from, in words.
        model: the forward model.

    Returns:
        A JSON-ready dict: mesh, domain, optodes (`optodes_from_dict` rebuilds them), wavelengths,
        scattering law, frequency and, with --mri, the MRI file and its placement.
    """
    record = {"mesh": mesh.record(mesh_record),
              "domain": setup.domain.to_dict(), "optodes": setup.optodes.to_dict(), "optodes_from": described,
              "wavelengths_nm": list(model.wavelengths_nm), "scatter": [model.scatter_amplitude, model.scatter_power],
              "frequency_hz": model.frequency_hz}
    if args.mri is not None:
        placement = {"slice": args.mri_slice, "extent_mm": None if args.mri_extent is None else list(args.mri_extent)}
        record["mri"] = {"file": str(args.mri), **{k: v for k, v in placement.items() if v is not None},
                         **setup.mri_registration.to_dict()}
    return record


def _reconstructor(args, method, model, mesh, grid, iterations, scatter):
    from ..recon import GaussNewton, Reconstructor

    return Reconstructor.create(
        model,
        mesh,
        method,
        basis_size=args.basis_size or None,
        grid=grid,
        solver=GaussNewton(iterations=iterations, fit_scatter=args.fit_scatter, phase_weight=args.phase_weight,
                           factor_in_float32=not args.factorise_in_float64),
        scatter=scatter,
    )


def _gauss_newton(args, mesh, model, measurements, image, scatter, setup):
    """Returns (images, nodal chromophores, grid, image mask, summary, title, scatter arrays)."""
    import jax

    from ..mesh import ImageSlice
    from ..recon import DEFAULT_WEIGHTS, otsu_threshold, region_memberships

    # 100² pixels (the study's), or an MRI array's own size: it lies over the set-up's grid.
    size = 100 if image is None or isinstance(image, ImageSlice) else image.shape[0]
    setup, image = _on_grid(setup, image, mesh, size)
    grid = setup.grid()
    reconstructor = _reconstructor(args, args.method, model, mesh, grid, args.iterations, scatter)
    structure = None
    if args.method == "dri":
        structure = image
    elif args.method == "softprior":
        if args.labels is not None:
            labels = _read_image(args.labels, "labels")
            if labels.shape != (grid.size, grid.size):
                raise ValueError(f"labels must match the MRI's shape {(grid.size, grid.size)}, got {labels.shape}")
        else:
            labels = (image > otsu_threshold(image, np.asarray(reconstructor.grid.mask))).astype(int)
        structure = region_memberships(labels)
    weight = DEFAULT_WEIGHTS[args.method] if args.weight is None else args.weight
    result = reconstructor(measurements, structure, weight)
    result = jax.tree.map(np.asarray, result)
    status = _succeeded(result.status, args.method)
    summary = {
        "weight": weight,
        "basis_size": args.basis_size,
        "steps": int(result.steps),
        "status": status.name.lower(),
        "misfit": [float(m) for m in result.misfit if np.isfinite(m)],
        "background": dict(zip(("HbO_uM", "Hb_uM", "water_pct"), map(float, result.background))),
    }
    if model.frequency_hz:
        summary.update(frequency_hz=model.frequency_hz, phase_weight=args.phase_weight)
    title = f"{args.method} (α = {weight:g}), {int(result.steps)} Gauss-Newton steps"
    if model.frequency_hz:
        title += f", ln A and phase at {model.frequency_hz / 1e6:g} MHz"
    if result.scatter is not None:
        mask = np.asarray(reconstructor.grid.mask)
        summary["scatter_range"] = {"amplitude_per_mm": [float(result.scatter[0].min()), float(result.scatter[0].max())],
                                    "power": [float(result.scatter[1].min()), float(result.scatter[1].max())]}
        return (result.images, result.chromophores, grid, mask, summary, title,
                {"scatter_nodes": result.scatter, "scatter_images": np.where(mask, result.scatter_images, 0.0)})
    return result.images, result.chromophores, grid, np.asarray(reconstructor.grid.mask), summary, title, {}


def _succeeded(status, what: str):
    """The `GaussNewtonStatus`; ValueError (exit 2) when the run failed, so no failed fit is written as images."""
    from ..recon import GaussNewtonStatus

    status = GaussNewtonStatus(int(status))
    if status.failed:
        raise ValueError(f"{what} Gauss-Newton {status.describe()}; nothing written (check the data and --weight)")
    return status


def _network(args, mesh, model, ln_amplitude, image, scatter, setup, recalibrate=None):
    """Returns (images, nodal chromophores, grid, image mask, summary, title, {}); the misfit re-simulates the images.

    With calibration (`recalibrate`), the network's input is calibrated against the set-up it
    was trained on (its mesh), so no discretisation offset between that mesh and the
    command's stays in its input; the misfit and `--refine` use the command's mesh."""
    import jax.numpy as jnp

    from ..training import TrainedNetwork

    network = TrainedNetwork(args.checkpoint, args.which)
    if args.method != "znet" and network.config.model.name != args.method:
        raise ValueError(f"--method {args.method} needs a run of `nirst train --model {args.method}`; "
                         f"{args.checkpoint} holds a {network.config.model.name}")
    if network.data_shape != model.data_shape:
        raise ValueError(f"the network was trained on data of shape {network.data_shape}, --data has {model.data_shape}")
    training_mesh = network.simulation.mesh()
    trained = network.simulation.forward_model(training_mesh)
    # Slot by slot, so a reordering counts as well as a move (sources differ by up to a
    # transport length between scattering laws; 1 mm allows that and polygon differences).
    moved = np.abs(_pair_positions(trained, training_mesh.nodes) - _pair_positions(model, mesh.nodes)).max()
    if moved > 1.0:
        raise ValueError(
            f"the network was trained with other optodes than this set-up's (a source or detector of "
            f"the same measurement slot {moved:.3g} mm apart): its input would be misread"
        )
    setup, image = _on_grid(setup, image, mesh, network.image_size)
    if image.shape != (network.image_size, network.image_size):
        raise ValueError(f"the network expects a {network.image_size}×{network.image_size} MRI, got {image.shape}")
    network_input = ln_amplitude
    if recalibrate is not None:
        network_input = recalibrate(trained, network.scatter)
    method = network
    if args.symmetry_average:
        from ..evaluation import SymmetryAveraged

        method = SymmetryAveraged.for_network(network)
    images = method(network_input, image)
    grid, interpolation = setup.grid(), setup.interpolation(mesh)
    nodes = np.asarray(interpolation.image_to_nodes(jnp.asarray(images, float)))
    nodes = np.maximum(nodes, 0.0)  # µa > 0 for the misfit's forward solve
    simulated = np.asarray(model(jnp.asarray(nodes), *scatter))
    active = np.broadcast_to(np.asarray(model.layout.active), ln_amplitude.shape)
    misfit = float(np.mean((simulated - ln_amplitude)[active] ** 2))
    name = network.config.model.name
    summary = {"network": name, "checkpoint": str(args.checkpoint), "which": args.which, "step": network.step, "misfit": [misfit]}
    title = f"{name} ({args.which} checkpoint, step {network.step})"
    if args.symmetry_average:
        summary["symmetry_average"] = list(method.symmetries.names)
        title += f", averaged over {len(method.symmetries)} symmetries"
    if args.refine:
        from ..recon import DEFAULT_WEIGHTS

        weight = DEFAULT_WEIGHTS["dri"] if args.weight is None else args.weight
        reconstructor = _reconstructor(args, "dri", model, mesh, grid, args.refine, scatter)
        refined = reconstructor(ln_amplitude, image, weight, start=np.asarray(images, float))
        status = _succeeded(refined.status, "the DRI refinement")
        images, nodes = np.asarray(refined.images), np.asarray(refined.chromophores)
        misfit = [float(m) for m in np.asarray(refined.misfit) if np.isfinite(m)]
        summary.update(misfit=misfit, refine_steps=int(refined.steps), refine_status=status.name.lower(), weight=weight)
        title += f" + {int(refined.steps)} DRI refinement steps (α = {weight:g})"
    return images, nodes, grid, np.asarray(interpolation.mask), summary, title, {}


def run(args) -> int:
    """Reconstruct and write the outputs; returns the exit status."""
    import jax

    jax.config.update("jax_enable_x64", True)

    from .._atomic import save_figure, save_json, save_npz
    from ..evaluation import circle_roi, derived_maps, roi_contrast
    from ..figures import reconstruction_figure

    mesh, model, measurements, image, scatter, recalibrate, setup, set_up = _prepare(args)
    started = time.perf_counter()
    if args.method in NETWORK_METHODS:
        result = _network(args, mesh, model, measurements, image, scatter, setup, recalibrate)
    else:
        result = _gauss_newton(args, mesh, model, measurements, image, scatter, setup)
    images, nodes, grid, mask, summary, title, scatter_arrays = result
    elapsed = time.perf_counter() - started
    images = np.where(mask, np.asarray(images), 0.0)
    maps = derived_maps(images, mask)
    summary = {"method": args.method, "nodes": mesh.n_nodes, **summary, "setup": set_up, "seconds_including_compile": elapsed}
    if args.roi is not None:
        roi = circle_roi(grid, *args.roi)
        if not (roi & mask).any():
            raise ValueError(f"--roi {args.roi} contains no pixel inside the mesh")
        summary["hbt_contrast"] = float(roi_contrast(maps[3], roi, mask))
    out = Path(args.out)
    save_npz(
        out / "reconstruction.npz",
        images=images,
        hbt=maps[3],
        sto2=maps[4],
        image_mask=mask,
        chromophores_nodes=nodes,
        nodes=mesh.nodes,
        elements=mesh.elements,
        misfit=np.asarray(summary["misfit"]),
        **({"background": np.asarray(list(summary["background"].values()))} if "background" in summary else {}),
        **scatter_arrays,
    )
    save_json(out / "convergence.json", summary)
    figure = reconstruction_figure(images, grid.extent, mask, title=title, scatter=scatter_arrays.get("scatter_images"))
    save_figure(figure, out / "reconstruction.png")
    iterative = args.method not in NETWORK_METHODS or args.refine
    for k, value in enumerate(summary["misfit"]):
        print(f"iteration {k}: mean-square misfit {value:.4g}" if iterative else f"mean-square ln A misfit of the re-simulated images: {value:.4g}")
    if "hbt_contrast" in summary:
        print(f"HbT contrast (ROI / background): {summary['hbt_contrast']:.3f}")
    print(f"reconstructed in {elapsed:.1f} s (incl. compile); wrote {out}/reconstruction.npz, .png, convergence.json")
    return 0
