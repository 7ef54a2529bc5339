"""`nirst reproduce`: the study end to end, resumable, with OUT/report.md."""

from __future__ import annotations

import argparse
from pathlib import Path


def add_parser(commands, name: str) -> None:
    """Register the subcommand."""
    from ..experiments import EXPERIMENTS, SCALES

    parser = commands.add_parser(
        name,
        help="reproduce the study: simulate → train → DRI → evaluate → experiments → report.md",
        description=(
            "Run the whole study (Feng et al., Optica 2022) at a given scale and write OUT/report.md with "
            "every table and figure. Resumes when interrupted (run the same command again). Scales: ci "
            "(seconds per stage, a smoke test), small (≈ 45 min on a 2-core CPU), paper (the study's "
            "size, a GPU job). See docs/reproduction.md."
        ),
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("--scale", choices=[s for s in SCALES if s != "demo"], default="small",
                        help="dataset, network and test-set sizes (docs/reproduction.md)")
    parser.add_argument("--only", type=lambda t: [x.strip() for x in t.split(",") if x.strip()],
                        help=f"comma-separated subset of: {', '.join(EXPERIMENTS)}")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    parser.add_argument("--out", type=Path, default=Path("nirst-reproduce"), help="output folder")


def run(args) -> int:
    """Reproduce; returns the exit status."""
    import jax

    from ..experiments import reproduce

    jax.config.update("jax_enable_x64", True)  # Gauss-Newton in float64; networks stay float32
    report = reproduce(args.out, args.scale, args.only, progress=not args.no_progress)
    print(f"wrote {report}")
    return 0
