"""`nirst evaluate`: DRI and trained networks on the same phantoms → table, box plots, CSV."""

from __future__ import annotations

import argparse
from pathlib import Path


def _named_run(text: str) -> tuple[str, Path]:
    name, separator, path = text.partition("=")
    if not separator or not name.strip() or not path.strip():
        raise argparse.ArgumentTypeError(f"expected NAME=RUN_FOLDER (e.g. Z-Net=runs/znet), got {text!r}")
    return name.strip(), Path(path.strip())


def add_parser(commands, name: str) -> None:
    """Register the subcommand."""
    parser = commands.add_parser(
        name,
        help="compare DRI and trained networks on a dataset's phantoms (table, box plots, CSV)",
        description=(
            "Reconstruct the phantoms of a dataset store with MRI-guided Gauss-Newton (DRI) and each "
            "network given by --run, and score them against the truth inside the disk (MSE, PSNR, SSIM "
            "per chromophore, in µM and %). Writes OUT/metrics.md (mean ± std), OUT/scores.csv (per "
            "phantom), OUT/box_plots.png and OUT/examples.png."
        ),
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("--data", type=Path, required=True, help="dataset store (nirst simulate)")
    parser.add_argument("--run", type=_named_run, action="append", default=[], metavar="NAME=RUN",
                        help="a network to evaluate (repeatable), e.g. Z-Net=runs/znet")
    parser.add_argument("--which", choices=("best", "last"), default="best", help="checkpoint of each run")
    parser.add_argument("--no-dri", action="store_true", help="leave out DRI")
    parser.add_argument("--refine", type=int, default=0, metavar="N",
                        help="also score each network refined by N DRI Gauss-Newton steps centred on its output "
                             "(rows 'NAME + refine')")
    parser.add_argument("--symmetry-average", action="store_true",
                        help="also score each network averaged over the rotations and reflections of its set-up "
                             "(rows 'NAME symmetrised'; docs/learned.md)")
    parser.add_argument("--split", choices=("train", "validation", "test", "all"), default="test",
                        help="which phantoms of --data to evaluate")
    parser.add_argument("--count", type=int, help="evaluate only the first N phantoms of the split")
    parser.add_argument("--active-fibres", type=int, help="use only this many evenly spaced fibres")
    parser.add_argument("--training-data", type=Path,
                        help="the networks' training store: --data is calibrated to its reference and DRI "
                             "reconstructs on its mesh (for test sets from another mesh or simulator)")
    parser.add_argument("--examples", type=int, default=3, help="phantoms shown in examples.png")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    parser.add_argument("--out", type=Path, default=Path("nirst-evaluate"), help="output folder")


def run(args) -> int:
    """Evaluate and write the outputs; returns the exit status."""
    import jax
    import numpy as np

    jax.config.update("jax_enable_x64", True)

    from ..datasets import Dataset
    from ..evaluation import GaussNewtonMethod, RefinedNetwork, SymmetryAveraged
    from ..experiments import TestSet, write_scores
    from ..training import TrainedNetwork

    if args.no_dri and not args.run:
        raise ValueError("nothing to evaluate: give --run NAME=RUN and/or drop --no-dri")
    if args.refine < 0:
        raise ValueError(f"--refine must be ≥ 0, got {args.refine}")
    if args.refine and not args.run:
        raise ValueError("--refine refines networks: give them with --run NAME=RUN")
    if args.symmetry_average and not args.run:
        raise ValueError("--symmetry-average averages networks: give them with --run NAME=RUN")
    if args.count is not None and args.count < 1:
        raise ValueError(f"--count must be ≥ 1, got {args.count}")
    if args.examples < 1:  # before any reconstruction: the figure is drawn last
        raise ValueError(f"--examples must be ≥ 1, got {args.examples}")
    names = [name for name, _ in args.run]
    if len(set(names)) != len(names) or (not args.no_dri and "DRI" in names):
        raise ValueError(f"method names must be unique (DRI is taken), got {names}")
    for path in [args.data, *(run for _, run in args.run), *([args.training_data] if args.training_data else [])]:
        if not path.is_dir():
            raise FileNotFoundError(f"folder {path} does not exist")
    data = Dataset(args.data)
    training = Dataset(args.training_data) if args.training_data else data
    ids = np.arange(data.count) if args.split == "all" else data.indices(args.split)
    ids = ids[: args.count]
    if len(ids) == 0:
        raise ValueError(f"{args.data} has no {args.split} phantoms")
    ln_amplitude = data.read("ln_amplitude", ids).astype(float) - data.reference + training.reference
    test = TestSet(args.split, ids, ln_amplitude, data.read("mri", ids), data.read("targets", ids), data.image_mask)
    methods = {}
    if not args.no_dri:
        methods["DRI"] = GaussNewtonMethod.for_dataset(training, "dri", active_fibres=args.active_fibres,
                                                       progress=not args.no_progress)
    refinement = None
    if args.refine:
        refinement = GaussNewtonMethod.for_dataset(training, "dri", active_fibres=args.active_fibres,
                                                   iterations=args.refine, progress=not args.no_progress)
    for name, folder in args.run:
        methods[name] = TrainedNetwork(folder, args.which, args.active_fibres)
        if refinement is not None:
            methods[f"{name} + refine"] = RefinedNetwork(methods[name], refinement)
        if args.symmetry_average:
            methods[f"{name} symmetrised"] = SymmetryAveraged.for_network(methods[name])
    for name, method in methods.items():
        if method.image_mask.shape != test.mask.shape:
            raise ValueError(f"{name} reconstructs {method.image_mask.shape} images; {args.data} has {test.mask.shape}")
    images = {}
    for name, method in methods.items():
        print(f"reconstructing {len(ids)} phantoms with {name}", flush=True)
        images[name] = method(test.ln_amplitude, test.mri)
    grid = data.config.grid()
    scores, _ = write_scores(images, test, args.out, f"{args.split} phantoms of {args.data}", args.examples,
                             grid.extent)
    print(scores.table())
    print(f"wrote {args.out}/metrics.md, scores.csv, box_plots.png, examples.png")
    return 0
