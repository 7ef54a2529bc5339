"""Every trainable reconstructor from its `ModelSpec`: plain networks, or networks holding the
physics of the data they reconstruct."""

from __future__ import annotations

from flax import nnx

from ..datasets import Normalisation, SimulationConfig
from ..mesh import Mesh
from ..models import ModelSpec
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
    mesh = simulation.mesh() if mesh is None else mesh
    reference = simulation.phantoms.tissue.nominal_background()
    physics_loss = PhysicsLoss.create(
        mesh, simulation.grid(), normalisation, reference_chromophores=reference,
        wavelengths_nm=simulation.wavelengths_nm, n_fibres=simulation.n_fibres, scatter=(a[0], b[0]), active=signal_mask,
    )
    physics = UnrolledPhysics.create(physics_loss, mesh, reference, basis_size=spec.basis_size)
    return LearnedGaussNewton(
        physics,
        iterations=spec.iterations,
        width=spec.channels,
        gradients=spec.gradients,
        rngs=nnx.Rngs(seed),
    )
