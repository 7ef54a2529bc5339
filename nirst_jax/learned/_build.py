"""Every trainable reconstructor from its `ModelSpec`: plain networks, or networks holding the
physics of the data they reconstruct."""

from __future__ import annotations

from flax import nnx

import numpy as np

from ..datasets import Normalisation, SimulationConfig
from ..evaluation import GaussNewtonMethod
from ..mesh import Mesh
from ..models import ModelSpec
from ._dri_unet import DRIUNet, dri_stage
from ._lgn import LearnedGaussNewton
from ._physics import UnrolledPhysics
from ._physics_loss import PhysicsLoss


def build_network(
    spec: ModelSpec,
    seed: int,
    simulation: SimulationConfig,
    normalisation: Normalisation,
    signal_mask=None,
    mesh: Mesh | None = None,
) -> nnx.Module:
    """A freshly initialised network for data simulated with `simulation`.

    Arguments:
        spec: the architecture.
        seed: parameter initialisation.
        simulation: the data set-up (mesh, wavelengths, fibres, scattering, image grid).
        normalisation: the training data's normalisation.
        signal_mask: (S, K) measurements present (default all).
        mesh: the reconstruction mesh of a physics network (default: the simulation's).

    Returns:
        The network: `(signals, mri, train) → normalised images`.
    """
    if not spec.needs_physics:
        return spec.build(seed)
    a, b = simulation.phantoms.scatter_amplitude, simulation.phantoms.scatter_power
    if a[0] != a[1] or b[0] != b[1]:
        raise ValueError(f"{spec.name} needs a fixed scatter; the data draw a in {a} and b in {b}")
    if spec.name == "dri-unet":
        return _dri_unet(spec, seed, simulation, normalisation, signal_mask, mesh)
    mesh = simulation.mesh() if mesh is None else mesh
    reference = simulation.phantoms.tissue.nominal_background()
    physics_loss = PhysicsLoss.create(
        mesh, simulation.measurement_setup(), normalisation, reference_chromophores=reference,
        wavelengths_nm=simulation.wavelengths_nm, active=signal_mask,
    )
    physics = UnrolledPhysics.create(physics_loss, mesh, reference, basis_size=spec.basis_size,
                                     jacobian_rank=spec.jacobian_rank)
    return LearnedGaussNewton(
        physics,
        iterations=spec.iterations,
        width=spec.channels,
        gradients=spec.gradients,
        damping=spec.damping,
        rngs=nnx.Rngs(seed),
    )


def _dri_unet(spec, seed, simulation, normalisation, signal_mask, mesh) -> DRIUNet:
    """DRI (the study's settings) on `mesh` (None: the data's) followed by a U-Net."""
    setup = simulation.measurement_setup()
    active = None
    if signal_mask is not None and not np.array_equal(np.asarray(signal_mask), setup.measurement_mask()):
        fibres = np.flatnonzero(np.asarray(signal_mask).any(1))
        active = len(fibres)
        if not (setup.is_ring and np.array_equal(np.asarray(signal_mask), setup.measurement_mask(active))):
            raise ValueError(f"{spec.name} reconstructs from evenly spaced rim fibres; the signal mask keeps sources {fibres.tolist()}")
    mesh = simulation.mesh() if mesh is None else mesh
    method = GaussNewtonMethod(mesh, setup, simulation.wavelengths_nm, "dri", active_fibres=active, progress=False)
    # Signals become ln A calibrated to the reconstruction mesh's own reference, as measurements are.
    stage = dri_stage(method, normalisation, simulation.reference_ln_amplitude(mesh))
    return DRIUNet(stage, width=spec.width, margin=spec.margin, upsampling=spec.upsampling, rngs=nnx.Rngs(seed))
