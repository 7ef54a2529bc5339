"""Which network, at which size: a small serialisable description that rebuilds a model."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from functools import lru_cache

from flax import nnx

from .._config_dict import config_from_dict
from ._initialise import initialiser
from ._layers import UPSAMPLING
from ._ynet import YNet
from ._znet import ZNet

MODEL_NAMES = ("znet", "ynet", "znet-nomri", "lgn", "dri-unet")
PHYSICS_MODELS = ("lgn", "dri-unet")
"""Networks with the physics inside (`nirst_jax.learned`): built with their operators, not `ModelSpec.build`."""
PHYSICS_GRADIENTS = ("stopped", "linearised", "exact")
"""How an unrolled network's training differentiates its physics directions (docs/learned.md)."""
LGN_DAMPINGS = ("decaying", "constant")
"""Damping schedules of learned Gauss-Newton's steps (`nirst_jax.learned.LearnedGaussNewton`)."""
STUDY_ARCHITECTURE = {"margin": 0, "upsampling": "transposed"}
"""The `ModelSpec` settings of the published networks (Feng et al. 2022): `ModelSpec(name, **STUDY_ARCHITECTURE)`."""


@dataclass(frozen=True)
class ModelSpec:
    """A network architecture and its sizes.

    Attributes:
        name: "znet", "ynet", "znet-nomri" (Z-Net without the MRI path), "lgn" (learned
            Gauss-Newton) or "dri-unet" (DRI followed by a U-Net that sees the MRI; both in
            `nirst_jax.learned`).
        wavelengths: signal channels L.
        image_size: output pixels per side.
        width: channel multiplier (1 = the study's size; small values for tests and demos).
        margin: zero pixels around the image inside the network (`ZNet`, `UNet`), so the disk's rim
            pixels see the same neighbourhood as the others; 0 = the study's.
        upsampling: "resize" (nearest ×2 then a 3×3 convolution: no checkerboard; `ConvBNReLU`)
            or "transposed" (the study's 2×2 stride-2 transposed convolution).
        iterations: unrolled iterations (lgn only).
        basis_size: pixel-basis points per side of the Gauss-Newton direction (lgn only).
        gradients: how training differentiates the physics directions (lgn only):
            "stopped" (constants), "linearised" (through the reference Jacobian: cheap) or
            "exact" (through the forward and adjoint solves); `nirst_jax.learned.GRADIENTS`.
        damping: the damping of its Gauss-Newton steps (lgn only): "decaying" (DRI's ρᵏ, one
            factorisation per iteration) or "constant" (the middle iteration's, one factorisation
            per phantom; `LGN_DAMPINGS`).
        jacobian_rank: rank of the reference Jacobian in its Gauss-Newton directions (lgn only):
            None: exact (a 3K×3K factorisation per phantom and iteration; per phantom with
            constant damping); r: its r leading
            singular triplets (a K×K factorisation per phantom, an r×r one per iteration;
            `nirst_jax.learned.UnrolledPhysics`).

    The defaults give clean images (docs/training.md, "Image artefacts"); `STUDY_ARCHITECTURE`
    (margin 0, transposed) is the published architecture.
    """

    name: str = "znet"
    wavelengths: int = 9
    image_size: int = 100
    width: float = 1.0
    margin: int = 2
    upsampling: str = "resize"
    iterations: int = 5
    basis_size: int = 24
    gradients: str = "linearised"
    damping: str = "decaying"
    jacobian_rank: int | None = None

    def __post_init__(self):
        if self.name not in MODEL_NAMES:
            raise ValueError(f"model must be one of {MODEL_NAMES}, got {self.name!r}")
        if int(self.wavelengths) != self.wavelengths or self.wavelengths < 1:
            raise ValueError(f"wavelengths must be a positive integer, got {self.wavelengths!r}")
        if int(self.image_size) != self.image_size or self.image_size < 16:
            raise ValueError(f"image_size must be an integer ≥ 16, got {self.image_size!r}")
        if not (0 < self.width <= 8):
            raise ValueError(f"width must be in (0, 8], got {self.width!r}")
        if isinstance(self.margin, bool) or int(self.margin) != self.margin or not 0 <= self.margin <= 16:
            raise ValueError(f"margin must be an integer in [0, 16], got {self.margin!r}")
        if self.upsampling not in UPSAMPLING:
            raise ValueError(f"upsampling must be one of {UPSAMPLING}, got {self.upsampling!r}")
        if isinstance(self.iterations, bool) or int(self.iterations) != self.iterations or not 1 <= self.iterations <= 50:
            raise ValueError(f"iterations must be an integer in [1, 50], got {self.iterations!r}")
        if isinstance(self.basis_size, bool) or int(self.basis_size) != self.basis_size or not 2 <= self.basis_size <= 64:
            raise ValueError(f"basis_size must be an integer in [2, 64], got {self.basis_size!r}")
        if self.gradients not in PHYSICS_GRADIENTS:
            raise ValueError(f"gradients must be one of {PHYSICS_GRADIENTS}, got {self.gradients!r}")
        if self.damping not in LGN_DAMPINGS:
            raise ValueError(f"damping must be one of {LGN_DAMPINGS}, got {self.damping!r}")
        rank = self.jacobian_rank
        if rank is not None and (isinstance(rank, bool) or int(rank) != rank or rank < 1):
            raise ValueError(f"jacobian_rank must be a positive integer or None, got {rank!r}")
        if rank is not None:
            if self.name != "lgn":
                raise ValueError(f"jacobian_rank is a setting of lgn's Gauss-Newton directions; a {self.name} has none "
                                 f"(got {rank!r})")
            object.__setattr__(self, "jacobian_rank", int(rank))

    @property
    def uses_mri(self) -> bool:
        return self.name != "znet-nomri"

    @property
    def needs_physics(self) -> bool:
        """Whether the network holds the physics (build it with `nirst_jax.learned.build_network`)."""
        return self.name in PHYSICS_MODELS

    @property
    def channels(self) -> int:
        """Channels of each learned Gauss-Newton update network: 64 × width."""
        return max(4, round(64 * self.width))

    def build(self, seed: int = 0) -> nnx.Module:
        """A freshly initialised network (parameters from `seed`)."""
        if self.needs_physics:
            raise ValueError(f"{self.name!r} holds the physics of its data: build it with nirst_jax.learned.build_network")
        return _initialiser(self, int(seed))()

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> "ModelSpec":
        """The spec of `to_dict`; runs saved before `margin`/`upsampling` existed used the
        study's architecture, so missing keys read as `STUDY_ARCHITECTURE`."""
        return config_from_dict(cls, {**STUDY_ARCHITECTURE, **data}, "model spec")


def parameter_count(model: nnx.Module) -> int:
    """Number of trainable parameters."""
    import jax

    return sum(leaf.size for leaf in jax.tree.leaves(nnx.state(model, nnx.Param)))


@lru_cache(maxsize=16)
def _initialiser(spec: ModelSpec, seed: int):
    """The compiled initialiser of `spec`'s network: a process builds each (spec, seed) network
    with one compilation, however many runs, resumes and checkpoint loads ask for it."""
    shape = dict(margin=int(spec.margin), upsampling=spec.upsampling)
    if spec.name == "ynet":
        return initialiser(lambda: YNet(wavelengths=spec.wavelengths, image_size=spec.image_size, width=spec.width,
                                        rngs=nnx.Rngs(seed), **shape))
    return initialiser(lambda: ZNet(wavelengths=spec.wavelengths, image_size=spec.image_size, use_mri=spec.uses_mri,
                                    width=spec.width, rngs=nnx.Rngs(seed), **shape))
