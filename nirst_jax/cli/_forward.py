"""`nirst forward`: simulate one phantom and write its data and a figure."""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np

from ._arguments import float_list

DEFAULT_BACKGROUND = (12.2, 4.8, 28.0)
"""Background HbO (µM), Hb (µM), water (%): mid-range breast values (docs/data.md)."""
DEFAULT_LESION = (17.7, 9.5, 34.0)
"""Inclusion HbO (µM), Hb (µM), water (%): a moderately vascular, watery lesion."""


def add_parser(commands, name: str) -> None:
    """Register the subcommand."""
    parser = commands.add_parser(
        name,
        help="simulate one phantom (paper geometry) and write data + figure",
        description=(
            "Simulate boundary measurements of an 82 mm disk phantom with one circular "
            "inclusion at the study's wavelengths, and write OUT/forward.npz, OUT/forward.png, "
            "OUT/mri.npy (the phantom's noise-free MRI slice, for `nirst reconstruct --mri`) and OUT/setup.json "
            "(the measurement set-up, mesh and phantom)."
        ),
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("--out", type=Path, default=Path("nirst-forward"), help="output folder")
    parser.add_argument("--mesh", type=str, default=None,
                        help="NIRFAST mesh prefix (e.g. from `nirst mesh`) with its optodes and link, instead of the disk")
    parser.add_argument("--optodes", type=Path, default=None,
                        help="CSV/JSON of source and detector positions (mm) on the disk, instead of rim fibres")
    parser.add_argument("--radius", type=float, default=41.0, help="disk radius (mm)")
    parser.add_argument("--mesh-spacing", type=float, default=2.0, help="largest mesh edge (mm)")
    parser.add_argument("--fibres", type=int, default=16, help="fibres on the rim")
    parser.add_argument("--angle-offset", type=float, default=0.0, help="angle of fibre 0 (°)")
    parser.add_argument(
        "--wavelengths", type=float_list(), default=None, help="comma-separated nm (default: the study's nine)"
    )
    parser.add_argument("--frequency-mhz", type=float, default=0.0, help="modulation frequency; 0 = CW")
    parser.add_argument(
        "--inclusion", type=float_list(3), default=(15.0, 10.0, 16.0), help="x,y,diameter (mm)"
    )
    parser.add_argument("--background", type=float_list(3), default=DEFAULT_BACKGROUND, help="HbO,Hb,water")
    parser.add_argument("--lesion", type=float_list(3), default=DEFAULT_LESION, help="HbO,Hb,water")
    parser.add_argument("--scatter", type=float_list(2), default=(1.0, 1.0), help="amplitude (1/mm),power")
    parser.add_argument("--lesion-scatter", type=float_list(2), default=None,
                        help="amplitude (1/mm),power inside the inclusion (default: --scatter)")
    parser.add_argument("--noise", type=float, default=0.0, help="relative Gaussian amplitude noise, e.g. 0.02")
    parser.add_argument("--phase-noise", type=float, default=0.0, help="Gaussian phase noise, degrees (frequency domain)")
    parser.add_argument("--seed", type=int, default=0, help="noise seed")
    parser.add_argument("--mri-grey", type=float_list(2), default=(50.0, 80.0),
                        help="MRI grey levels of background,inclusion written to mri.npy")
    parser.add_argument("--float32", action="store_true", help="single precision (default float64)")


def run(args) -> int:
    """Simulate and write the outputs; returns the exit status."""
    import jax

    if not args.float32:
        jax.config.update("jax_enable_x64", True)
    import jax.numpy as jnp

    from .._atomic import save_figure, save_json, save_npy, save_npz
    from ..formats import SnirfData, read_optodes, write_snirf
    from ..figures import forward_figure
    from ..geometry import DiskDomain, MeasurementSetup, RimFibres
    from ..mesh import GridInterpolation, inside_mesh, read_nirfast
    from ..phantoms import Circle, Coverage, Phantom, Region
    from ..physics import PAPER_WAVELENGTHS_NM, add_amplitude_noise

    if args.noise < 0 or not np.isfinite(args.noise):
        raise ValueError(f"--noise must be ≥ 0, got {args.noise}")
    if args.frequency_mhz < 0:
        raise ValueError(f"--frequency-mhz must be ≥ 0, got {args.frequency_mhz}")
    if args.phase_noise < 0 or not np.isfinite(args.phase_noise) or (args.phase_noise and not args.frequency_mhz):
        raise ValueError(f"--phase-noise must be ≥ 0 and goes with --frequency-mhz > 0, got {args.phase_noise}")
    for name in ("scatter", "lesion_scatter"):
        law = getattr(args, name)
        if law is not None and not (np.isfinite(law).all() and law[0] > 0):
            raise ValueError(f"--{name.replace('_', '-')} needs an amplitude > 0 and a finite power, got {law}")
    x, y, diameter = args.inclusion
    inclusion = Circle((x, y), diameter / 2)
    if args.mesh is None and np.hypot(x, y) + diameter / 2 > args.radius:
        raise ValueError(f"--inclusion {args.inclusion} does not fit in a disk of radius {args.radius} mm")
    for name in ("background", "lesion"):
        if min(getattr(args, name)) < 0:
            raise ValueError(f"--{name} concentrations must be ≥ 0, got {getattr(args, name)}")

    started = time.perf_counter()
    wavelengths = PAPER_WAVELENGTHS_NM if args.wavelengths is None else args.wavelengths
    amplitude, power = args.scatter
    settings = dict(scatter=(amplitude, power), frequency_hz=args.frequency_mhz * 1e6)
    if args.mesh is not None and args.optodes is not None:
        raise ValueError("--optodes goes with the disk; a --mesh file carries its own optodes (write them with nirst mesh --optodes)")
    if args.mesh is not None:
        nirfast = read_nirfast(args.mesh)
        mesh = nirfast.mesh
        setup = MeasurementSetup.from_nirfast(nirfast, **settings)
        rim = np.column_stack([np.cos(np.linspace(0, 2 * np.pi, 64)), np.sin(np.linspace(0, 2 * np.pi, 64))])
        if not inside_mesh(mesh, np.array([x, y]) + diameter / 2 * rim).all():
            raise ValueError(f"--inclusion {args.inclusion} does not fit inside the mesh {args.mesh}")
        radius = float(np.abs(mesh.nodes).max())  # the disk around the origin that holds the mesh
    else:
        optodes = RimFibres(args.fibres, args.angle_offset) if args.optodes is None else read_optodes(args.optodes)
        setup = MeasurementSetup(DiskDomain(args.radius), optodes, **settings)
        mesh, radius = setup.mesh(args.mesh_spacing), args.radius
    model = setup.forward_model(mesh, wavelengths)
    grid = setup.grid()
    detectors = setup.detector_positions(mesh)  # where they are read, on the mesh's boundary
    # The probe as given (SNIRF records the optodes' own positions; rim fibres are both).
    probe = (detectors, detectors) if setup.is_ring else (setup.optodes.source_xy, setup.optodes.detector_xy)
    background = np.asarray(args.background, float)[:, None]
    background_grey, inclusion_grey = args.mri_grey
    phantom = Phantom(
        tuple(args.background),
        (Region(inclusion, tuple(args.lesion), inclusion_grey, "inclusion"),),
        background_grey=background_grey,
        scatter=(amplitude, power),
        radius_mm=radius,
    )
    chromophores = phantom.nodal(Coverage.nodes(mesh))
    homogeneous = np.broadcast_to(background, chromophores.shape)
    # The scattering law at the nodes: the set-up's, and --lesion-scatter inside the inclusion.
    inside = np.asarray(Coverage.nodes(mesh)(inclusion.contains))
    lesion_law = args.scatter if args.lesion_scatter is None else args.lesion_scatter
    scatter_nodes = np.stack([a + inside * (b - a) for a, b in zip(args.scatter, lesion_law)])

    # Called eagerly: the model's solves are compiled once per shape (filter_jit), and its
    # input checks see concrete values.
    data = model(jnp.asarray(chromophores), *scatter_nodes)
    reference = model(jnp.asarray(homogeneous), amplitude, power)
    ln_amplitude, phase = (data, None) if model.frequency_hz == 0 else map(np.asarray, data)
    ln_reference = reference if model.frequency_hz == 0 else reference[0]
    ln_amplitude = np.asarray(ln_amplitude)
    clean = ln_amplitude.copy()
    rng = np.random.default_rng(args.seed)
    if args.noise > 0:
        noise = rng.normal(size=ln_amplitude.shape)
        ln_amplitude = np.asarray(add_amplitude_noise(clean, args.noise, noise))
    if args.phase_noise > 0:
        phase = np.mod(phase + np.radians(args.phase_noise) * rng.normal(size=phase.shape), 2 * np.pi)
    elapsed = time.perf_counter() - started

    interpolation = GridInterpolation.build(mesh, grid)
    pixels = Coverage.pixels(grid)
    images = phantom.images(pixels, np.asarray(interpolation.mask))
    mri = phantom.mri(pixels, np.asarray(interpolation.mask))

    out = Path(args.out)
    arrays = dict(
        ln_amplitude=ln_amplitude,
        ln_amplitude_clean=clean,
        ln_amplitude_background=np.asarray(ln_reference),
        wavelengths_nm=np.asarray(model.wavelengths_nm),
        detector_index=np.asarray(model.layout.detector_index),
        active=np.asarray(model.layout.active),
        # A mesh file's optodes are named apart, so `nirst reconstruct` cannot take them for rim fibres.
        **({"sources_xy": probe[0], "detectors_xy": detectors} if args.mesh or args.optodes else {"fibres_xy": detectors}),
        chromophores_nodes=chromophores,
        chromophore_images=images,
        image_mask=np.asarray(interpolation.mask),
        nodes=mesh.nodes,
        elements=mesh.elements,
        frequency_hz=np.asarray(model.frequency_hz),
        scatter=np.asarray([amplitude, power]),
        scatter_nodes=scatter_nodes,
        noise=np.asarray(args.noise),
        phase_noise_deg=np.asarray(args.phase_noise),
    )
    if phase is not None:
        arrays["phase"] = np.asarray(phase)
    save_npz(out / "forward.npz", **arrays)
    save_npy(out / "mri.npy", mri)
    for name, (values, values_phase) in {
        "forward": (ln_amplitude, phase),
        "reference": (ln_reference, None if model.frequency_hz == 0 else reference[1]),
    }.items():
        write_snirf(out / f"{name}.snirf", SnirfData(
            np.asarray(values), None if values_phase is None else np.asarray(values_phase), model.layout, *probe,
            np.asarray(model.wavelengths_nm), float(model.frequency_hz)))
    figure = forward_figure(
        images,
        grid.extent,
        np.asarray(interpolation.mask),
        detectors,
        model.wavelengths_nm,
        ln_amplitude,
        np.asarray(ln_reference),
        None if phase is None else np.asarray(phase),
    )
    save_figure(figure, out / "forward.png")
    mesh_record = {"kind": "nirfast", "prefix": str(args.mesh)} if args.mesh else {"kind": "disk", "spacing_mm": args.mesh_spacing}
    save_json(out / "setup.json", {
        "setup": setup.to_dict(),  # MeasurementSetup.from_dict rebuilds it
        "mesh": mesh.record(mesh_record),
        "wavelengths_nm": list(model.wavelengths_nm),
        "phantom": {"inclusion_xy_diameter_mm": list(args.inclusion), "background": list(args.background),
                    "lesion": list(args.lesion), "lesion_scatter": None if args.lesion_scatter is None else list(args.lesion_scatter)},
        "noise": args.noise, "phase_noise_deg": args.phase_noise, "seed": args.seed,
    })
    print(
        f"mesh {mesh.n_nodes} nodes (min angle {mesh.min_angle_deg():.1f}°), "
        f"{model.n_wavelengths} wavelengths × {model.layout.shape[0]} sources × "
        f"{model.layout.shape[1]} detectors; simulated in {elapsed:.1f} s (incl. compile)"
    )
    print(f"wrote {out / 'forward.npz'}, {out / 'forward.png'}, {out / 'mri.npy'}, {out / 'setup.json'} and the data as SNIRF "
          f"({out / 'forward.snirf'}, homogeneous reference {out / 'reference.snirf'})")
    return 0
