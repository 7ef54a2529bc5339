"""Learned Gauss-Newton: unrolled iterations in which the physics proposes and a CNN corrects.

    t₀ = the homogeneous fit (normalised units, `UnrolledPhysics.homogeneous`)
    for k = 0 … K−1:
        r, g = residual and data-fit descent direction at tₖ      (exact forward and adjoint)
        δ = DRI Gauss-Newton direction from r, damping ρᵏ         (MRI prior, reference Jacobian)
        tₖ₊₁ = tₖ + aₖ·δ + CNNₖ([tₖ, δ, g/rms(g), MRI])

With `damping="constant"` every iteration uses the middle one's damping ρ^((K−1)/2), so one
Cholesky factorisation per phantom serves all K (measured: −28 % per training step; docs/learned.md).
With a Jacobian rank r (`UnrolledPhysics.create(..., jacobian_rank=r)`) the 3K×3K factorisations
give way to one K×K factorisation per phantom and an r×r one per iteration (`_physics.py`).

The CNN of each iteration starts at zero (its last layer is zero-initialised) and aₖ at 1, so
an untrained network is K damped DRI Gauss-Newton steps; training learns what the physics
step gets wrong (Mozumder et al., arXiv 2104.09579; Adler & Öktem 2017).

How training differentiates the physics (`gradients`): "exact" through the forward and
adjoint solves; "linearised" through the residual's linearisation at the reference (the
Jacobian A of the Gauss-Newton direction: exact values, a cheap backward pass); "stopped"
treats the directions as constants. "stopped" is wrong for unrolled Gauss-Newton: a change of
tₖ is partly undone by the next step's direction, which stopped gradients do not see, and
measured training with them raises the loss (docs/learned.md).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import nnx

from ..models import LGN_DAMPINGS, PHYSICS_GRADIENTS
from ._physics import UnrolledPhysics

DEFAULT_ITERATIONS = 5
DAMPING_DECAY = 10**-0.25
"""ρ, as DRI's Gauss-Newton (`nirst_jax.recon.GaussNewton.decay`)."""


class Constant:
    """Holds an object (e.g. `UnrolledPhysics`) as static, identity-hashed data of an NNX module:
    its arrays are inputs of the compiled network, never parameters."""

    def __init__(self, value):
        self.value = value


DILATIONS = (1, 2, 4, 1)
"""Dilations of each update CNN's four 3×3 convolutions (receptive field 17 pixels)."""


class UpdateNetworks(nnx.Module):
    """K small CNNs, one per iteration, with stacked parameters so the iterations run in one
    `lax.scan` (compiled once): four 3×3 convolutions (`DILATIONS`; ReLU between), the last
    zero-initialised so each starts as the zero update.

    Arguments:
        count: K.
        in_channels: input features.
        width: hidden channels.
        rngs: initialisation.
    """

    def __init__(self, count: int, in_channels: int, width: int, *, rngs: nnx.Rngs):
        init = nnx.initializers.variance_scaling(1.0, "fan_in", "truncated_normal", in_axis=-2, out_axis=-1, batch_axis=(0,))
        shapes = [(in_channels, width), (width, width), (width, width), (width, 3)]
        self.kernels = nnx.List([
            nnx.Param(jnp.zeros((count, 3, 3, i, o)) if last else init(rngs.params(), (count, 3, 3, i, o)))
            for (i, o), last in zip(shapes, (False, False, False, True))
        ])
        self.biases = nnx.List([nnx.Param(jnp.zeros((count, o))) for _, o in shapes])

    def weights(self) -> tuple:
        """Stacked (kernels, biases), each with a leading K axis (what `apply` takes one slice of)."""
        return tuple(k[...] for k in self.kernels), tuple(b[...] for b in self.biases)

    @staticmethod
    def apply(weights, x):
        """One iteration's CNN: `weights` a K-slice of `weights()`, x (B, H, W, C) → (B, H, W, 3)."""
        kernels, biases = weights
        for i, (kernel, bias, dilation) in enumerate(zip(kernels, biases, DILATIONS)):
            x = _shifted_convolution(x, kernel.astype(x.dtype), dilation) + bias.astype(x.dtype)
            if i < len(kernels) - 1:
                x = jax.nn.relu(x)
        return x


def _shifted_convolution(x, kernel, dilation: int):
    """A 3×3 "SAME" convolution with `dilation`, x (B, H, W, C), kernel (3, 3, C, O), written as
    the nine shifted copies of x against the kernel in one matrix product.

    The iterations run in a `lax.scan` (a while loop), where XLA:CPU's gradient of
    `conv_general_dilated` is ~5× slower than this form's (measured 2026-12-06: 50 vs 10 ms per
    sample for K = 3 update CNNs, width 16, 32×32); the values agree to float32 rounding.
    """
    height, width = x.shape[1:3]
    padded = jnp.pad(x, ((0, 0), (dilation, dilation), (dilation, dilation), (0, 0)))
    shifts = [padded[:, i * dilation:i * dilation + height, j * dilation:j * dilation + width]
              for i in range(3) for j in range(3)]
    return jnp.einsum("bhwc,co->bhwo", jnp.concatenate(shifts, -1), kernel.reshape(-1, kernel.shape[-1]))


def _unit_rms(direction, mask):
    """Direction divided by its root-mean-square inside the mask (per phantom)."""
    rms = jnp.sqrt(jnp.sum(jnp.square(direction) * mask) / (3 * jnp.sum(mask)))
    return direction / (rms + 1e-12)


class LearnedGaussNewton(nnx.Module):
    """(signals, MRI) → normalised chromophore images by K learned Gauss-Newton iterations.

    Arguments:
        physics: the operators on the reconstruction mesh.
        iterations: K.
        width: channels of each update CNN.
        gradients: "exact", "linearised" or "stopped" (module docstring).
        descent: also give the CNN the data-fit descent direction (one adjoint solve per source
            and iteration); else the Gauss-Newton direction only (one forward solve).
        damping: "decaying" (ρᵏ, DRI's) or "constant" (module docstring).
        rngs: initialisation.
    """

    def __init__(
        self,
        physics: UnrolledPhysics,
        *,
        iterations: int = DEFAULT_ITERATIONS,
        width: int = 32,
        gradients: str = "linearised",
        descent: bool = True,
        damping: str = "decaying",
        rngs: nnx.Rngs,
    ):
        self.physics = Constant(physics)
        self.iterations = int(iterations)
        if gradients not in PHYSICS_GRADIENTS:
            raise ValueError(f"gradients must be one of {PHYSICS_GRADIENTS}, got {gradients!r}")
        self.gradients = gradients
        self.descent = bool(descent)
        if damping not in LGN_DAMPINGS:
            raise ValueError(f"damping must be one of {LGN_DAMPINGS}, got {damping!r}")
        self.damping = damping
        channels = 3 + 3 + (3 if self.descent else 0) + 1
        self.updates = UpdateNetworks(self.iterations, channels, width, rngs=rngs)
        self.step_sizes = nnx.Param(jnp.ones(self.iterations))

    def __call__(self, signals, mri, train: bool = False):
        """Arguments:
            signals: (B, L, S, K) normalised signals.
            mri: (B, H, W) normalised MRI (`normalise_mri`).
            train: unused (no batch statistics).

        Returns:
            (B, 3, H, W) normalised images.
        """
        del train
        physics: UnrolledPhysics = self.physics.value
        mask = jnp.asarray(physics.mask, signals.dtype)
        size = physics.image_size
        levels = jax.vmap(physics.homogeneous)(signals)
        images = (jnp.broadcast_to(levels[:, :, None, None], (len(signals), 3, size, size)) * mask).astype(signals.dtype)
        regularisers = jax.vmap(physics.regulariser)(mri)
        dampings = DAMPING_DECAY ** jnp.arange(self.iterations, dtype=signals.dtype)
        if self.damping == "constant":
            dampings = jnp.full_like(dampings, DAMPING_DECAY ** ((self.iterations - 1) / 2))
        dtype = jnp.result_type(signals.dtype, jnp.float32)  # float64 inputs solve in float64
        if physics.jacobian_rank is not None:
            priors = jax.vmap(lambda reg: physics.low_rank_prior(reg, dtype))(regularisers)

            def gauss_newton(residual, damping):
                return jax.vmap(lambda r, prior: physics.low_rank_direction(r, prior, damping))(residual, priors)
        elif self.damping == "constant":
            factors = jax.vmap(lambda reg: physics.factorise(reg, dampings[0], dtype))(regularisers)

            def gauss_newton(residual, damping):
                del damping  # one factor, at the middle damping, serves every iteration
                return jax.vmap(physics.solve)(residual, factors)
        else:
            def gauss_newton(residual, damping):
                return jax.vmap(lambda r, reg: physics.gauss_newton(r, reg, damping))(residual, regularisers)

        def iteration(images, inputs):
            weights, step_size, damping = inputs
            state = images if self.gradients == "exact" else jax.lax.stop_gradient(images)
            if self.descent:
                residual, descent = jax.vmap(physics.descent)(state, signals)
                directions = [jax.vmap(_unit_rms, (0, None))(descent, mask)]
            else:
                residual, directions = jax.vmap(physics.residual)(state, signals), []
            if self.gradients == "linearised":
                residual = jax.vmap(physics.linearised)(residual, images)
            step = gauss_newton(residual, damping)
            features = jnp.concatenate([images, step, *directions, mri[:, None]], axis=1)
            update = UpdateNetworks.apply(weights, jnp.moveaxis(features, 1, -1))
            images = (images + step_size * step + jnp.moveaxis(update, -1, 1)) * mask
            return images.astype(signals.dtype), None

        images, _ = jax.lax.scan(iteration, images, (self.updates.weights(), self.step_sizes[...], dampings))
        return images
