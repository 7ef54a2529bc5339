"""`nirst experiment NAME`: one experiment of the study (and whatever it needs)."""

from __future__ import annotations

import argparse
from pathlib import Path


def add_parser(commands, name: str) -> None:
    """Register the subcommand."""
    from ..experiments import EXPERIMENTS, SCALES

    parser = commands.add_parser(
        name,
        help="run one experiment of the study (and whatever it needs)",
        description="Run one experiment of `nirst reproduce` in OUT (reusing what is there) and print its section.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("name", choices=list(EXPERIMENTS), help="the experiment (docs/reproduction.md)")
    parser.add_argument("--scale", choices=[s for s in SCALES if s != "demo"], default="small",
                        help="dataset, network and test-set sizes (docs/reproduction.md)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    parser.add_argument("--out", type=Path, default=Path("nirst-reproduce"), help="study folder")


def run(args) -> int:
    """Run the experiment; returns the exit status."""
    import jax

    from ..experiments import SCALES, Study, run_experiment

    jax.config.update("jax_enable_x64", True)  # Gauss-Newton in float64; networks stay float32
    section = run_experiment(Study(args.out, SCALES[args.scale], progress=not args.no_progress), args.name)
    print(section.markdown())
    print(f"wrote {args.out / args.name}")
    return 0
