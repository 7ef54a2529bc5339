"""Sizes of a reproduction of the study: from a CI smoke run to the paper's full scale."""

from __future__ import annotations

from dataclasses import asdict, dataclass

from .._config_dict import config_from_dict
from ..training import DATA_LOSSES, FINE_TUNING_PHYSICS_WEIGHT


@dataclass(frozen=True)
class Scale:
    """How big each stage of `nirst reproduce` is.

    Attributes:
        name: the preset's name.
        count: phantoms of the main dataset (split 70/20/10).
        image_size: pixels per side of targets, MRI and reconstructions.
        mesh_spacing_mm: mesh of the main dataset, of DRI and of the physics loss.
        fine_mesh_spacing_mm: the finer mesh of the no-inverse-crime test sets (fine mesh, shapes).
        dri_mesh_spacing_mm: the finer reconstruction mesh of the "DRI fine mesh" rows (DRI at
            its best on data from a finer mesh: `nirst reconstruct`'s default 2 mm where the data
            are finer still); coarser than `fine_mesh_spacing_mm`, so no inverse crime. None:
            the scale runs no experiment with those rows (the demo).
        external_count: phantoms of each extra test set (shape mismatch, finer mesh).
        test_count: test-split phantoms evaluated (None: all).
        width: channel multiplier of the networks (1 = the study's size).
        epochs: training epochs of every network.
        batch_size: training batch size.
        learning_rate: Adam learning rate.
        schedule: "constant" (the study) or "cosine".
        physics_weight: weight of the physics-consistency loss of the hybrid Z-Net, which is
            the Z-Net's run with that loss in its last `physics_epochs` epochs (the best
            schedule, docs/training.md).
        physics_epochs: epochs of that run with the physics term.
        physics_mesh_spacing_mm: mesh of the physics loss (None: the dataset's).
        fibre_dropout: fibre-dropout rate of the "Z-Net fibre dropout" network.
        fibre_dropout_epochs: its training epochs (None: `epochs`): it learns every fibre subset
            with the same network, which takes longer than all 16 fibres alone (docs/training.md).
        refine_steps: DRI Gauss-Newton steps of each network's refined rows ("… + refine").
        lgn_epochs, lgn_iterations, lgn_basis_size, lgn_learning_rate: the learned Gauss-Newton
            network ("LGN", docs/learned.md): its training epochs (cosine schedule), unrolled
            iterations, pixel-basis size and Adam learning rate.
        lgn_width: channel multiplier of LGN's update CNNs (None: `width`); its cost is small
            beside the physics in the loop.
        lgn_jacobian_rank: rank of the Jacobian in LGN's Gauss-Newton directions
            (`ModelSpec.jacobian_rank`; None: exact).
        validation_phantoms: every network but DRI + U-Net validates each epoch on only the
            first this many validation phantoms (None: all). The validation only picks the best
            epoch: at the `small` scale, 400 phantoms cost LGN (the physics in the loop) ≈ 30 s
            an epoch and each Z-Net ≈ 17 s of its 4 min, and 128 rank the epochs as well.
        learned_data_mesh_spacing_mm: the mesh of the learned methods' training data (LGN and
            DRI + U-Net: the main dataset's phantoms, seeds and noise, simulated on this finer
            mesh); they reconstruct on `mesh_spacing_mm`, so training shows them that mesh's
            modelling error, which they learn to undo (docs/learned.md). Between
            `fine_mesh_spacing_mm` and `mesh_spacing_mm`. None: they train on the main dataset.
        learned_loss: the supervised loss of LGN and DRI + U-Net (`TrainConfig.data_loss`).
        dri_unet_phantoms, dri_unet_validation_phantoms: training and validation phantoms of
            the DRI + U-Net reference ("DRI + U-Net": DRI reconstructs each once, so it trains on
            a subset; same epochs and learning rate as the other networks).
        family_count: phantoms of each shape family (ellipses, irregular lesions, three
            inclusions; `nirst_jax.phantoms.shape_family`), simulated on the fine mesh.
        examples: phantoms shown in the comparison figures.
        seed: seed of the dataset (the mismatch, fine-mesh and realistic sets use seed + 1, + 2,
            + 3; the shape families seed + 4).
    """

    name: str
    count: int
    image_size: int
    mesh_spacing_mm: float
    fine_mesh_spacing_mm: float
    external_count: int
    test_count: int | None
    width: float
    epochs: int
    batch_size: int
    learning_rate: float = 0.005
    schedule: str = "constant"
    physics_weight: float = FINE_TUNING_PHYSICS_WEIGHT
    physics_epochs: int = 5
    physics_mesh_spacing_mm: float | None = None
    fibre_dropout: float = 0.4
    fibre_dropout_epochs: int | None = None
    refine_steps: int = 5
    lgn_epochs: int = 5
    lgn_iterations: int = 3
    lgn_basis_size: int = 24
    lgn_learning_rate: float = 0.001
    lgn_width: float | None = None
    lgn_jacobian_rank: int | None = None
    validation_phantoms: int | None = None
    dri_mesh_spacing_mm: float | None = None
    learned_data_mesh_spacing_mm: float | None = None
    learned_loss: str = "mse"
    dri_unet_phantoms: int = 600
    dri_unet_validation_phantoms: int = 64
    family_count: int = 24
    examples: int = 3
    seed: int = 2022

    def __post_init__(self):
        optional = ("test_count", "validation_phantoms", "fibre_dropout_epochs")  # None: all, or the default
        for name in ("count", "image_size", "external_count", "epochs", "batch_size", "examples", "refine_steps",
                     "physics_epochs", "lgn_epochs", "lgn_iterations", "dri_unet_phantoms",
                     "dri_unet_validation_phantoms", "family_count", *optional):
            value = getattr(self, name)
            if value is None and name in optional:
                continue
            if isinstance(value, bool) or int(value) != value or value < 1:
                raise ValueError(f"scale {self.name!r}: {name} must be a positive integer"
                                 f"{' or None' if name in optional else ''}, got {value!r}")
        if self.physics_epochs > self.epochs:
            raise ValueError(f"scale {self.name!r}: physics_epochs ({self.physics_epochs}) must be at most epochs ({self.epochs})")
        if not 0 <= self.fibre_dropout <= 1:
            raise ValueError(f"scale {self.name!r}: fibre_dropout must be in [0, 1], got {self.fibre_dropout!r}")
        if self.dri_mesh_spacing_mm is not None and not self.dri_mesh_spacing_mm > self.fine_mesh_spacing_mm:
            raise ValueError(
                f"scale {self.name!r}: dri_mesh_spacing_mm ({self.dri_mesh_spacing_mm}) must be above "
                f"fine_mesh_spacing_mm ({self.fine_mesh_spacing_mm}): DRI on the data's own mesh is an inverse crime"
            )
        if self.lgn_width is not None and not self.lgn_width > 0:
            raise ValueError(f"scale {self.name!r}: lgn_width must be > 0 or None, got {self.lgn_width!r}")
        if self.learned_loss not in DATA_LOSSES:
            raise ValueError(f"scale {self.name!r}: learned_loss must be one of {DATA_LOSSES}, got {self.learned_loss!r}")
        learned = self.learned_data_mesh_spacing_mm
        if learned is not None and not self.fine_mesh_spacing_mm < learned < self.mesh_spacing_mm:
            raise ValueError(
                f"scale {self.name!r}: learned_data_mesh_spacing_mm ({learned}) must be between fine_mesh_spacing_mm "
                f"({self.fine_mesh_spacing_mm}: the test data's mesh) and mesh_spacing_mm ({self.mesh_spacing_mm}: "
                "the learned methods' reconstruction mesh)"
            )
        if not 0 < self.fine_mesh_spacing_mm < self.mesh_spacing_mm:
            raise ValueError(
                f"scale {self.name!r}: fine_mesh_spacing_mm ({self.fine_mesh_spacing_mm}) must be below "
                f"mesh_spacing_mm ({self.mesh_spacing_mm})"
            )

    @property
    def lgn_network_width(self) -> float:
        """LGN's channel multiplier (`lgn_width`, else `width`)."""
        return self.width if self.lgn_width is None else self.lgn_width

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> "Scale":
        return config_from_dict(cls, data, "scale")


SCALES = {
    # Every stage, seconds each: the reproduction test in CI.
    "ci": Scale("ci", count=160, image_size=32, mesh_spacing_mm=6.0, fine_mesh_spacing_mm=4.0, external_count=6,
                test_count=6, width=0.125, epochs=2, batch_size=32, physics_epochs=1, physics_mesh_spacing_mm=8.0, examples=2,
                refine_steps=2, lgn_epochs=1, lgn_iterations=1, lgn_basis_size=6, dri_mesh_spacing_mm=5.0,
                learned_data_mesh_spacing_mm=5.0, learned_loss="log-mse", lgn_width=0.25, validation_phantoms=12,
                dri_unet_phantoms=32, dri_unet_validation_phantoms=8, family_count=2),
    # The end-to-end demo: one Z-Net, minutes on a laptop CPU.
    "demo": Scale("demo", count=600, image_size=32, mesh_spacing_mm=5.0, fine_mesh_spacing_mm=4.0, external_count=6,
                  test_count=3, width=0.25, epochs=40, batch_size=32, schedule="cosine"),
    # The whole study: 68.0 min from scratch on a 2-core CPU (measured 2026-12-07; docs/reproduction.md), ≈ 2 min
    # more since (the fibre-dropout network's 60 epochs, the fine-mesh section's physics terms; not re-measured).
    "small": Scale("small", count=2000, image_size=32, mesh_spacing_mm=4.0, fine_mesh_spacing_mm=1.5,
                   external_count=48, test_count=64, width=0.25, epochs=40, batch_size=32, schedule="cosine",
                   dri_mesh_spacing_mm=2.0, learned_data_mesh_spacing_mm=2.0, learned_loss="log-mse", lgn_width=0.5,
                   lgn_jacobian_rank=400, validation_phantoms=128, fibre_dropout_epochs=60),
    # The study's size (20 000 phantoms, 100×100 images, full networks, 200 epochs): a GPU job.
    "paper": Scale("paper", count=20000, image_size=100, mesh_spacing_mm=2.0, fine_mesh_spacing_mm=1.0,
                   external_count=500, test_count=None, width=1.0, epochs=200, batch_size=128, dri_mesh_spacing_mm=1.5,
                   dri_unet_phantoms=14000, dri_unet_validation_phantoms=2000),
}
"""The presets of `nirst reproduce --scale`."""
