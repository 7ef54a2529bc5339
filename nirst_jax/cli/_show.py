"""`nirst show`: a PNG of one phantom of a dataset store."""

from __future__ import annotations

import argparse
from pathlib import Path


def add_parser(commands, name: str) -> None:
    """Register the subcommand."""
    parser = commands.add_parser(
        name,
        help="plot one phantom of a dataset (chromophores, MRI, data)",
        description="Write a PNG of phantom INDEX of a dataset store: HbO, Hb, water, MRI and its measurements.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("folder", type=Path, help="dataset store")
    parser.add_argument("--index", type=int, default=0, help="phantom index")
    parser.add_argument("--out", type=Path, default=None, help="PNG path (default FOLDER/show-INDEX.png)")


def run(args) -> int:
    """Plot the phantom; returns the exit status."""
    from .._atomic import save_figure
    from ..datasets import Dataset
    from ..figures import forward_figure

    dataset = Dataset(args.folder, verify=False)
    if not 0 <= args.index < dataset.count:
        raise ValueError(f"--index must be in [0, {dataset.count}), got {args.index}")
    sample = dataset.sample(args.index)
    config = dataset.config
    figure = forward_figure(
        sample["targets"],
        config.grid().extent,
        dataset.image_mask,
        config.measurement_setup().detector_positions(dataset.mesh),
        config.wavelengths_nm,
        sample["ln_amplitude"],
        sample["ln_amplitude_background"],
        mri=sample["mri"],
        ln_amplitude_clean=sample["ln_amplitude_clean"],
    )
    n = int(sample["present"].sum())
    figure.suptitle(f"{args.folder} — phantom {args.index}: {n} inclusion{'s' * (n > 1)}")
    out = args.out or Path(args.folder) / f"show-{args.index}.png"
    save_figure(figure, out)
    print(f"wrote {out}")
    return 0
