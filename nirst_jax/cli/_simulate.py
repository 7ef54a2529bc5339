"""`nirst simulate`: generate a dataset store of random phantoms."""

from __future__ import annotations

import argparse
import time
from pathlib import Path


def add_parser(commands, name: str) -> None:
    """Register the subcommand."""
    from ..phantoms import CONFIGS

    parser = commands.add_parser(
        name,
        help="generate a dataset of random phantoms (truth, MRI, measurements)",
        description=(
            "Simulate COUNT random phantoms of a named distribution and write a sharded, "
            "checksummed dataset store to OUT (docs/data.md). Reproducible from (config, seed) "
            "on any number of devices; --resume continues an interrupted run."
        ),
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("--config", default="paper", choices=sorted(CONFIGS), help="phantom distribution")
    parser.add_argument("--count", type=int, default=20000, help="number of phantoms")
    parser.add_argument("--out", type=Path, required=True, help="store folder")
    parser.add_argument("--seed", type=int, default=0, help="dataset seed")
    parser.add_argument("--mesh-spacing", type=float, default=2.0, help="largest mesh edge (mm)")
    parser.add_argument("--image-size", type=int, default=100,
                        help="pixels per side of the target and MRI images (the study's small scales: 32)")
    domain = parser.add_mutually_exclusive_group()
    domain.add_argument("--mesh", type=Path, default=None,
                        help="NIRFAST mesh PREFIX: its outline is the domain (meshed again at --mesh-spacing) and its "
                        ".source/.meas/.link the optodes (without them: --fibres rim fibres)")
    domain.add_argument("--contour", type=Path, default=None,
                        help="text/CSV of outline vertices x, y (mm): the domain instead of the disk")
    parser.add_argument("--fibres", type=int, default=None,
                        help="rim fibres, each a source and a detector (default 16; on an outline: evenly by arc length "
                        "from its first vertex)")
    parser.add_argument("--optodes", type=Path, default=None,
                        help="CSV/JSON of source and detector positions (mm) and pairs, instead of rim fibres")
    parser.add_argument("--noise", type=float, default=0.02, help="relative Gaussian amplitude noise")
    parser.add_argument("--mri-noise", type=float, default=None, help="relative MRI noise (default: the config's)")
    parser.add_argument("--mri-mismatch", type=float, default=None, help="MRI shape mismatch in mm (default: the config's)")
    parser.add_argument("--precision", choices=("float32", "float64"), default="float32", help="solver precision")
    parser.add_argument("--shard-size", type=int, default=256, help="phantoms per shard file")
    parser.add_argument("--device-batch", type=int, default=None, help="phantoms per device per step")
    parser.add_argument("--resume", action="store_true", help="continue an interrupted store")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    parser.add_argument(
        "--distributed",
        action="store_true",
        help="multi-host: call jax.distributed.initialize() (cluster auto-detection or the three options below)",
    )
    parser.add_argument("--coordinator", default=None, help="HOST:PORT of process 0 (with --distributed)")
    parser.add_argument("--num-processes", type=int, default=None, help="processes in the job (with --distributed)")
    parser.add_argument("--process-id", type=int, default=None, help="this process's id (with --distributed)")


def build_config(args):
    """The `SimulationConfig` for the parsed arguments (validated before any work)."""
    from dataclasses import replace

    from ..datasets import SimulationConfig
    from ..phantoms import phantom_config

    phantoms = phantom_config(args.config)
    mri = phantoms.mri
    if args.mri_noise is not None:
        mri = replace(mri, noise=args.mri_noise)
    if args.mri_mismatch is not None:
        mri = replace(mri, mismatch_mm=args.mri_mismatch)
    domain, optodes = _geometry(args)
    return SimulationConfig(
        phantoms=phantoms.replace(mri=mri),
        n_fibres=16 if args.fibres is None else args.fibres,
        mesh_spacing_mm=args.mesh_spacing,
        image_size=args.image_size,
        noise=args.noise,
        precision=args.precision,
        domain=domain,
        optodes=optodes,
    )


def _geometry(args):
    """(domain, optodes) of `SimulationConfig` from --mesh / --contour / --optodes (None: the study's)."""
    from ..formats import read_optodes
    from ..geometry import OptodePositions, PolygonDomain
    from ..mesh import read_nirfast
    from ._mesh import read_contour

    domain = optodes = None
    if args.mesh is not None:
        nirfast = read_nirfast(args.mesh)
        domain = PolygonDomain.from_mesh(nirfast.mesh)
        if len(nirfast.sources) and len(nirfast.link):
            if args.optodes is not None:
                raise ValueError(f"{args.mesh} has its own optodes; --optodes goes with a mesh without them, a contour or the disk")
            optodes = OptodePositions.from_nirfast(nirfast)
    elif args.contour is not None:
        domain = PolygonDomain(tuple(map(tuple, read_contour(args.contour))))
    if optodes is not None and args.fibres is not None:
        raise ValueError(f"{args.mesh} has its own optodes; --fibres places rim fibres instead of optodes")
    if args.optodes is not None:
        if args.fibres is not None:
            raise ValueError("give --fibres or --optodes, not both")
        optodes = read_optodes(args.optodes)
    return domain, optodes


def run(args) -> int:
    """Generate the store; returns the exit status."""
    import jax

    if args.precision == "float64":
        jax.config.update("jax_enable_x64", True)
    config = build_config(args)
    if args.count < 1:
        raise ValueError(f"--count must be ≥ 1, got {args.count}")
    if args.distributed:
        jax.distributed.initialize(
            coordinator_address=args.coordinator, num_processes=args.num_processes, process_id=args.process_id
        )
    from ..datasets import simulate_dataset

    started = time.perf_counter()
    folder = simulate_dataset(
        args.out,
        config,
        args.count,
        args.seed,
        config_name=args.config,
        shard_size=args.shard_size,
        device_batch=args.device_batch,
        resume=args.resume,
        progress=not args.no_progress,
    )
    elapsed = time.perf_counter() - started
    if jax.process_index() == 0:
        print(f"{args.count} phantoms in {folder} ({elapsed:.1f} s, {args.count / elapsed:.1f} phantoms/s incl. compile)")
    return 0
