"""`nirst demo`: the quick end-to-end run (simulate, train a Z-Net, compare with DRI)."""

from __future__ import annotations

import argparse
from pathlib import Path


def add_parser(commands, name: str) -> None:
    """Register the subcommand."""
    parser = commands.add_parser(
        name,
        help="the quick end-to-end demo: simulate, train a Z-Net, compare with DRI (minutes on a CPU)",
        description=(
            "Simulate 600 phantoms, train a small Z-Net, reconstruct unseen test phantoms with DRI and "
            "the Z-Net, and write OUT/report.md and OUT/demo.png. Resumes when interrupted."
        ),
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    parser.add_argument("--out", type=Path, default=Path("nirst-demo"), help="output folder")


def run(args) -> int:
    """Run the demo; returns the exit status."""
    import jax

    from ..experiments import demo

    jax.config.update("jax_enable_x64", True)  # Gauss-Newton in float64; networks stay float32
    report = demo(args.out, progress=not args.no_progress)
    print(report.read_text())
    print(f"wrote {report} and {report.parent / 'demo.png'}")
    return 0
