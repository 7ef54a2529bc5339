"""`nirst train`: train Z-Net, Y-Net or Z-Net without MRI on a dataset store."""

from __future__ import annotations

import argparse
from pathlib import Path


def add_parser(commands, name: str) -> None:
    """Register the subcommand."""
    from ..models import LGN_DAMPINGS, MODEL_NAMES, PHYSICS_GRADIENTS, ModelSpec
    from ..training import CHECKPOINT_INTERVAL_S, DATA_LOSSES, FINE_TUNING_PHYSICS_WEIGHT, SCHEDULES

    parser = commands.add_parser(
        name,
        help="train a network (Z-Net, Y-Net, Z-Net without MRI, learned Gauss-Newton) with optax",
        description=(
            "Train on a store from `nirst simulate`, data-parallel over all devices. Writes "
            "RUN/config.json, RUN/inputs.npz, RUN/checkpoints/{last,best} (orbax), "
            "RUN/metrics.jsonl and RUN/loss.png; --resume continues an interrupted run exactly. "
            "See docs/training.md."
        ),
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("--model", choices=MODEL_NAMES, default="znet",
                        help="znet, ynet, znet-nomri (Z-Net without the MRI path), lgn (learned Gauss-Newton) or dri-unet "
                             "(DRI followed by a U-Net that sees the MRI; docs/learned.md)")
    parser.add_argument("--data", type=Path, required=True, help="dataset store folder")
    parser.add_argument("--epochs", type=int, default=200, help="passes over the training split (the study's: 200)")
    parser.add_argument("--batch-size", type=int, default=128, help="phantoms per step, over all devices")
    parser.add_argument("--learning-rate", type=float, default=0.005, help="Adam's step size")
    parser.add_argument("--schedule", choices=SCHEDULES, default="constant",
                        help="learning rate: constant (the study's) or cosine decay to 0 over the run")
    parser.add_argument(
        "--physics-weight", type=float,
        help=f"weight of the physics-consistency loss (default: {FINE_TUNING_PHYSICS_WEIGHT:g}, the best measured, with "
             "--physics-from-epoch or --init-from, docs/training.md; else 0, off)",
    )
    parser.add_argument("--physics-from-epoch", type=int, default=0,
                        help="the physics term joins at this epoch (0-based); the epochs before train on the supervised loss "
                             "alone, as without physics (the best schedule measured: the last 5 epochs, docs/training.md)")
    parser.add_argument("--physics-warmup", type=int, default=0, help="epochs over which the physics weight ramps up")
    parser.add_argument("--physics-mesh-spacing", type=float, help="mesh (mm) of the physics loss, and the reconstruction mesh of lgn and dri-unet (default: the dataset's)")
    parser.add_argument("--data-weight", type=float, default=1.0, help="weight of the supervised loss (0: self-supervised)")
    parser.add_argument("--data-loss", choices=DATA_LOSSES, default="mse",
                        help="supervised loss: MSE pooled over the batch (the study's) or the mean of each image's log MSE "
                        "(the mean PSNR's objective)")
    parser.add_argument("--active-fibres", type=int, help="train on this many evenly spaced fibres (default all)")
    parser.add_argument(
        "--fibre-dropout", type=float, default=0.0,
        help="probability that a training phantom loses a random subset of fibres (one network for 16, 8, … fibres)",
    )
    parser.add_argument("--symmetry-augmentation", action="store_true",
                        help="each training phantom, each step, rotated or reflected by a random symmetry of the set-up "
                        "(8 on the study's disk), its data permuted to match")
    parser.add_argument("--width", type=float, default=1.0, help="channel multiplier (1 = the study's network size)")
    parser.add_argument("--margin", type=int, default=ModelSpec.margin,
                        help="zero pixels around the image inside the network (the study's: 0; see docs/training.md)")
    parser.add_argument("--upsampling", choices=("transposed", "resize"), default=ModelSpec.upsampling,
                        help="2x up-sampling: nearest resize + 3x3 conv (default) or transposed convolutions (the study's)")
    parser.add_argument("--iterations", type=int, default=ModelSpec.iterations,
                        help="lgn: unrolled Gauss-Newton iterations")
    parser.add_argument("--basis-size", type=int, default=ModelSpec.basis_size,
                        help="lgn: pixel-basis points per side of the Gauss-Newton direction")
    parser.add_argument("--gradients", choices=PHYSICS_GRADIENTS, default=ModelSpec.gradients,
                        help="lgn: how training differentiates the physics directions (docs/learned.md)")
    parser.add_argument("--damping", choices=LGN_DAMPINGS, default=ModelSpec.damping,
                        help="lgn: damping of the Gauss-Newton steps: DRI's decaying one, or the middle iteration's "
                        "for all (one factorisation per phantom; faster)")
    parser.add_argument("--jacobian-rank", type=int, default=ModelSpec.jacobian_rank, metavar="R",
                        help="lgn: Gauss-Newton directions from the reference Jacobian's R leading singular triplets "
                        "(an RxR factorisation per iteration instead of a 3Kx3K one; default: exact; docs/learned.md)")
    parser.add_argument("--train-phantoms", type=int,
                        help="train on the first N phantoms of the training split (default all; dri-unet reconstructs each once)")
    parser.add_argument("--validation-phantoms", type=int, help="validate on the first N phantoms of the validation split")
    parser.add_argument("--seed", type=int, default=0, help="initialisation and data order")
    parser.add_argument("--init-from", type=Path, metavar="RUN",
                        help="start from RUN's best checkpoint and keep its normalisation (fine-tuning)")
    parser.add_argument("--unlabelled-data", type=Path, metavar="DIR",
                        help="dataset store of measurements whose training split feeds the physics term, its "
                             "targets unread, beside the labelled batches (semi-supervised; docs/training.md)")
    parser.add_argument("--devices", type=int, help="use the first N devices (default all)")
    parser.add_argument("--coordinator", metavar="HOST:PORT",
                        help="multi-process training: address of process 0 (with --num-processes, --process-id)")
    parser.add_argument("--num-processes", type=int, help="multi-process training: how many processes")
    parser.add_argument("--process-id", type=int, help="multi-process training: this process's rank")
    parser.add_argument("--resume", action="store_true", help="continue the run in --out from its last checkpoint")
    parser.add_argument("--checkpoint-interval", type=float, default=CHECKPOINT_INTERVAL_S, metavar="SECONDS",
                        help="write checkpoints at an epoch's end only when the last write is this old (0: every "
                             "epoch); always at the end and on Ctrl-C. A killed run loses at most this much training plus one epoch")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    parser.add_argument("--out", type=Path, required=True, help="run folder")


def physics_weight(args) -> float:
    """--physics-weight, or its default: the best measured weight with --physics-from-epoch or
    --init-from, else 0."""
    from ..training import FINE_TUNING_PHYSICS_WEIGHT

    if args.physics_weight is not None:
        return args.physics_weight
    return FINE_TUNING_PHYSICS_WEIGHT if args.init_from is not None or args.physics_from_epoch > 0 else 0.0


def run(args) -> int:
    """Train and report; returns the exit status."""
    import jax

    from ..datasets import Dataset
    from ..models import ModelSpec
    from ..training import TrainConfig, Trainer, initialize_distributed

    distributed = (args.coordinator, args.num_processes, args.process_id)
    if any(value is not None for value in distributed):
        if any(value is None for value in distributed):
            raise ValueError("multi-process training needs --coordinator, --num-processes and --process-id together")
        initialize_distributed(*distributed)

    if not args.data.is_dir():
        raise FileNotFoundError(f"dataset folder {args.data} does not exist")
    dataset = Dataset(args.data)
    sim = dataset.config
    devices = jax.devices()
    if args.devices is not None:
        if not 1 <= args.devices <= len(devices):
            raise ValueError(f"--devices must be in [1, {len(devices)}], got {args.devices}")
        devices = devices[: args.devices]
    config = TrainConfig(
        model=ModelSpec(args.model, wavelengths=len(sim.wavelengths_nm), image_size=sim.image_size, width=args.width,
                        margin=args.margin, upsampling=args.upsampling, iterations=args.iterations,
                        basis_size=args.basis_size, gradients=args.gradients, damping=args.damping,
                        jacobian_rank=args.jacobian_rank),
        epochs=args.epochs,
        batch_size=args.batch_size,
        learning_rate=args.learning_rate,
        schedule=args.schedule,
        data_weight=args.data_weight,
        data_loss=args.data_loss,
        physics_weight=physics_weight(args),
        physics_warmup_epochs=args.physics_warmup,
        physics_from_epoch=args.physics_from_epoch,
        physics_mesh_spacing_mm=args.physics_mesh_spacing,
        active_fibres=args.active_fibres,
        fibre_dropout=args.fibre_dropout,
        symmetry_augmentation=args.symmetry_augmentation,
        train_phantoms=args.train_phantoms,
        validation_phantoms=args.validation_phantoms,
        seed=args.seed,
        init_from=None if args.init_from is None else str(args.init_from.absolute()),
        unlabelled_data=None if args.unlabelled_data is None else str(args.unlabelled_data.absolute()),
    )
    trainer = Trainer(dataset, args.out, config, devices=devices, resume=args.resume, progress=not args.no_progress,
                      checkpoint_interval_s=args.checkpoint_interval)
    print(
        f"training {args.model} ({trainer.steps_per_epoch} steps/epoch × {config.epochs} epochs, "
        f"batch {config.batch_size} over {len(devices)} device(s)) into {args.out}"
    )
    with trainer:
        trainer.fit()
    if trainer.records:
        last = trainer.records[-1]
        print(
            f"epoch {last['epoch'] + 1}: train MSE {last['train_data']:.4g}, validation MSE "
            f"{last.get('val_data', float('nan')):.4g}; best validation {float(trainer.state.best):.4g}"
        )
    print(f"wrote {args.out}/checkpoints, metrics.jsonl, loss.png")
    return 0
