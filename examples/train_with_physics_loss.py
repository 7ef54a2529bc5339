"""Train a small Z-Net with and without the physics-consistency loss and compare on test phantoms.

Usage: python examples/train_with_physics_loss.py [--count 320] [--epochs 12] [--width 0.25]
       [--image-size 32] [--spacing 5] [--physics-weight 0.1] [--out example-runs]

Simulates a small dataset of the study's phantom distribution (coarse mesh, small images so
it runs on a laptop CPU in a few minutes), trains the same Z-Net twice — data MSE only, and
data MSE + w · physics — and prints the test RMSE per chromophore, the physics term, and the
mean predictor for reference. Full-size: --count 20000 --image-size 100 --spacing 2 --width 1
--epochs 200 on a GPU.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from nirst_jax.datasets import Dataset, SimulationConfig, simulate_dataset
from nirst_jax.models import ModelSpec
from nirst_jax.training import PhysicsLoss, Steps, TrainConfig, evaluate_batches, train


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--count", type=int, default=320)
    parser.add_argument("--epochs", type=int, default=12)
    parser.add_argument("--width", type=float, default=0.25)
    parser.add_argument("--image-size", type=int, default=32)
    parser.add_argument("--spacing", type=float, default=5.0, help="mesh spacing (mm)")
    parser.add_argument("--physics-weight", type=float, default=0.1)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--out", type=Path, default=Path("example-runs"))
    args = parser.parse_args()

    data = args.out / "data"
    if not (data / "manifest.json").exists():
        config = SimulationConfig(mesh_spacing_mm=args.spacing, image_size=args.image_size)
        simulate_dataset(data, config, args.count, seed=0, config_name="example", resume=data.exists())
    dataset = Dataset(data)
    test = dataset.indices("test")
    truth = dataset.read("targets", test)[:, :, dataset.image_mask]
    mean = np.asarray(dataset.normalisation.target_mean)[None, :, None]
    print(f"{'run':<22}{'RMSE HbO µM':>13}{'Hb µM':>8}{'water %':>9}{'physics':>10}")
    print(f"{'mean predictor':<22}" + "".join(f"{v:>{w}.2f}" for v, w in zip(np.sqrt(((truth - mean) ** 2).mean((0, 2))), (13, 8, 9))))
    for name, weight in (("data only", 0.0), (f"hybrid (w = {args.physics_weight:g})", args.physics_weight)):
        config = TrainConfig(
            model=ModelSpec("znet", image_size=args.image_size, width=args.width),
            epochs=args.epochs,
            batch_size=args.batch_size,
            physics_weight=weight,
        )
        run = args.out / ("data-only" if weight == 0 else "hybrid")
        trainer = train(dataset, run, config, resume=run.exists())
        best = trainer.checkpoints.restore("best", trainer.state)
        trainer.close()
        if weight == 0:  # report the physics term of the data-only network too
            steps = Steps(trainer.steps.graphdef, trainer.optimiser, dataset.normalisation, dataset.image_mask,
                          physics=PhysicsLoss.for_dataset(dataset))
            metrics = evaluate_batches(steps, best, trainer.loader, test, config.batch_size)
        else:
            metrics = trainer.evaluate(test, best)
        rmse = np.sqrt(metrics["mse"].mean(0))
        print(f"{name:<22}{rmse[0]:>13.2f}{rmse[1]:>8.2f}{rmse[2]:>9.2f}{metrics['physics'].mean():>10.4f}")


if __name__ == "__main__":
    main()
