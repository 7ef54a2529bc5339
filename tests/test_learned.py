"""Learned Gauss-Newton: its physics operators against finite differences and the forward
model, the untrained network as damped DRI steps, and training through the common machinery."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx

from nirst_jax.datasets import Dataset, SimulationConfig, simulate_dataset
from nirst_jax.evaluation import psnr
from nirst_jax.learned import LearnedGaussNewton, PhysicsLoss, UnrolledPhysics, build_network
from nirst_jax.models import ModelSpec, normalise_mri
from nirst_jax.training import Steps, TrainConfig, TrainedNetwork, initial_state, masked_mse, train

SIZE = 32
LGN = ModelSpec("lgn", image_size=SIZE, width=0.125, iterations=2, basis_size=8)


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    """64 phantoms on a 6 mm mesh, 32×32 images."""
    config = SimulationConfig(mesh_spacing_mm=6.0, image_size=SIZE)
    folder = simulate_dataset(tmp_path_factory.mktemp("lgn") / "data", config, 64, seed=11, config_name="tiny", progress=False)
    return Dataset(folder)


@pytest.fixture(scope="module")
def physics(dataset):
    sim = dataset.config
    return UnrolledPhysics.create(
        PhysicsLoss.for_dataset(dataset), dataset.mesh, sim.phantoms.tissue.nominal_background(), basis_size=LGN.basis_size
    )


def batch(dataset, split="validation", count=8):
    indices = dataset.indices(split)[:count]
    return (
        jnp.asarray(dataset.signals(indices)),
        normalise_mri(jnp.asarray(dataset.read("mri", indices)), dataset.image_mask),
        jnp.asarray(dataset.read("targets", indices)),
    )


@pytest.mark.slow
def test_descent_is_minus_the_misfit_gradient(dataset, physics):
    signals, _, targets = batch(dataset, count=1)
    start = physics.physics_loss.normalisation.targets(targets[0]) * 0.5  # halfway between the mean and the truth

    def misfit(t):
        return 0.5 * jnp.sum(jnp.square(physics.residual(t, signals[0])))

    residual, descent = jax.jit(lambda t, s: physics.descent(t, s))(start, signals[0])
    # jit vs eager float32: rounding differs (measured ≤ 4.4e-5 relative).
    np.testing.assert_allclose(residual, physics.residual(start, signals[0]), rtol=2e-4, atol=1e-6)
    for seed in range(2):
        direction = jax.random.normal(jax.random.key(seed), start.shape) * jnp.asarray(dataset.image_mask)
        h = 1e-2
        numeric = (misfit(start + h * direction) - misfit(start - h * direction)) / (2 * h)
        np.testing.assert_allclose(-float(jnp.vdot(descent, direction)), float(numeric), rtol=2e-2)


@pytest.mark.slow
def test_homogeneous_fit_recovers_a_homogeneous_phantom(dataset, physics):
    truth = np.asarray(dataset.config.phantoms.tissue.nominal_background()) * np.array([1.25, 0.8, 1.1])
    signals = physics.physics_loss.normalisation.signals(physics.physics_loss.model.homogeneous(jnp.asarray(truth, jnp.float32)))
    level = physics.physics_loss.normalisation.images(physics.homogeneous(signals, steps=4)[:, None, None])[:, 0, 0]
    np.testing.assert_allclose(level, truth, rtol=0.01)


@pytest.mark.slow
def test_unrolled_physics_asks_for_full_precision_products(dataset, physics, float32_dot_precisions):
    # float32 products default to TensorFloat-32 on recent NVIDIA GPUs (see test_forward).
    signals, mri, _ = batch(dataset, count=1)
    signals, mri = signals[0], mri[0]
    images = jnp.zeros((3, SIZE, SIZE), jnp.float32)
    regulariser = physics.regulariser(mri)
    highest = (jax.lax.Precision.HIGHEST, jax.lax.Precision.HIGHEST)
    for name, fn, args in [
        ("descent", physics.descent, (images, signals)),
        ("linearised", lambda t, s: physics.linearised(physics.residual(t, s), t), (images, signals)),
        ("gauss_newton", lambda r: physics.gauss_newton(r, regulariser, 1.0), (physics.residual(images, signals),)),
        ("homogeneous", physics.homogeneous, (signals,)),
    ]:
        precisions = float32_dot_precisions(fn, *args)
        assert precisions, name
        assert all(p == highest for p in precisions), (name, precisions)


@pytest.mark.extended
def test_untrained_network_is_damped_dri_steps_that_explain_the_data(dataset, physics):
    """Its CNNs start at zero: K = 2 Gauss-Newton steps with the MRI prior, which must lower
    the misfit and beat the homogeneous fit on every chromophore."""
    signals, mri, targets = batch(dataset)
    network = LearnedGaussNewton(physics, iterations=2, width=8, rngs=nnx.Rngs(0))
    images = nnx.jit(lambda n, s, m: n(s, m))(network, signals, mri)
    levels = jax.vmap(physics.homogeneous)(signals)
    flat = jnp.broadcast_to(levels[:, :, None, None], images.shape) * jnp.asarray(dataset.image_mask)
    mask = jnp.asarray(dataset.image_mask)

    def misfit(t):
        return jnp.mean(jnp.square(jax.vmap(physics.residual)(t, signals)))

    assert float(misfit(images)) < 0.5 * float(misfit(flat))
    learned = np.asarray(psnr(physics.physics_loss.normalisation.images(images), targets, mask)).mean(0)
    homogeneous = np.asarray(psnr(physics.physics_loss.normalisation.images(flat), targets, mask)).mean(0)
    assert (learned > homogeneous + 1.0).all(), (learned, homogeneous)


def test_constant_damping_reuses_one_factor_for_k_steps_at_the_middle_damping(dataset, physics):
    """Untrained (zero CNNs, unit step sizes), the constant-damping network is K plain DRI
    Gauss-Newton steps, each with damping ρ^((K−1)/2), computed here one by one."""
    from nirst_jax.learned._lgn import DAMPING_DECAY

    signals, mri, _ = batch(dataset, count=4)
    constant = LearnedGaussNewton(physics, iterations=3, width=8, damping="constant", rngs=nnx.Rngs(0))
    images = np.asarray(nnx.jit(lambda n, s, m: n(s, m))(constant, signals, mri))
    mask = jnp.asarray(dataset.image_mask, signals.dtype)
    expected = jnp.broadcast_to(jax.vmap(physics.homogeneous)(signals)[:, :, None, None], images.shape) * mask
    regularisers = jax.vmap(physics.regulariser)(mri)
    for _ in range(3):
        residual = jax.vmap(physics.residual)(expected, signals)
        step = jax.vmap(lambda r, reg: physics.gauss_newton(r, reg, DAMPING_DECAY))(residual, regularisers)
        expected = (expected + step) * mask
    np.testing.assert_allclose(images, np.asarray(expected), atol=2e-4 * float(np.abs(expected).max()))
    decaying = LearnedGaussNewton(physics, iterations=3, width=8, rngs=nnx.Rngs(0))
    assert np.abs(np.asarray(nnx.jit(lambda n, s, m: n(s, m))(decaying, signals, mri)) - images).max() > 1e-2
    with pytest.raises(ValueError, match="damping must be one of"):
        LearnedGaussNewton(physics, iterations=3, width=8, damping="cosine", rngs=nnx.Rngs(0))


def test_low_rank_gauss_newton_is_the_truncated_jacobians_exact_direction(dataset, physics):
    """The rank-r direction (one K×K factorisation per phantom, an r×r one per iteration) is the
    Levenberg-Marquardt direction of the rank-r Jacobian, solved densely here in float64; at
    full rank it is the exact direction; in the network it replaces the 3K×3K solves."""
    from nirst_jax.learned._lgn import DAMPING_DECAY

    signals, mri, _ = batch(dataset, count=3)
    sim = dataset.config
    a = np.asarray(physics.sensitivity, np.float64)
    u, singular, vt = np.linalg.svd(a, full_matrices=False)
    levels = jax.vmap(physics.homogeneous)(signals)
    flat = jnp.broadcast_to(levels[:, :, None, None], (3, 3, SIZE, SIZE)) * jnp.asarray(dataset.image_mask)
    residuals = jax.vmap(physics.residual)(flat, signals)
    k = physics.basis.n_coefficients
    for rank in (min(a.shape), 40):
        low = UnrolledPhysics.create(PhysicsLoss.for_dataset(dataset), dataset.mesh, sim.phantoms.tissue.nominal_background(),
                                     basis_size=LGN.basis_size, jacobian_rank=rank)
        truncated = (u[:, :rank] * singular[:rank]) @ vt[:rank]
        for i in range(3):
            regulariser = physics.regulariser(mri[i])
            shift = DAMPING_DECAY * physics.dri_weight * float(physics.curvature)
            system = truncated.T @ truncated + shift * np.kron(np.eye(3), np.asarray(regulariser, np.float64))
            coefficients = np.linalg.solve(system, truncated.T @ np.asarray(residuals[i], np.float64).reshape(-1))
            expected = np.asarray(physics._image(jnp.asarray(coefficients, jnp.float32)))
            ours = np.asarray(low.low_rank_direction(residuals[i], low.low_rank_prior(regulariser), DAMPING_DECAY))
            np.testing.assert_allclose(ours, expected, atol=2e-3 * np.abs(expected).max())
            if rank == min(a.shape):
                exact = np.asarray(physics.gauss_newton(residuals[i], regulariser, DAMPING_DECAY))
                np.testing.assert_allclose(ours, exact, atol=2e-3 * np.abs(exact).max())
            else:  # 40 of 3K triplets: a different direction, not the exact one
                exact = np.asarray(physics.gauss_newton(residuals[i], regulariser, DAMPING_DECAY))
                assert np.abs(ours - exact).max() > 1e-2 * np.abs(exact).max()
    assert k * 3 == a.shape[1]
    # In the untrained network (zero CNNs): K damped Gauss-Newton steps, now rank-r ones.
    full = UnrolledPhysics.create(PhysicsLoss.for_dataset(dataset), dataset.mesh, sim.phantoms.tissue.nominal_background(),
                                  basis_size=LGN.basis_size, jacobian_rank=min(a.shape))
    run = nnx.jit(lambda n, s, m: n(s, m))
    exact_images = run(LearnedGaussNewton(physics, iterations=2, width=8, rngs=nnx.Rngs(0)), signals, mri)
    low_images = run(LearnedGaussNewton(full, iterations=2, width=8, rngs=nnx.Rngs(0)), signals, mri)
    np.testing.assert_allclose(np.asarray(low_images), np.asarray(exact_images), atol=2e-3 * float(jnp.abs(exact_images).max()))
    with pytest.raises(ValueError, match="jacobian_rank .* exceeds"):
        UnrolledPhysics.create(PhysicsLoss.for_dataset(dataset), dataset.mesh, sim.phantoms.tissue.nominal_background(),
                               basis_size=LGN.basis_size, jacobian_rank=min(a.shape) + 1)
    with pytest.raises(ValueError, match="jacobian_rank must be"):
        ModelSpec("lgn", jacobian_rank=0)
    with pytest.raises(ValueError, match="a znet has none"):
        ModelSpec("znet", jacobian_rank=400)


@pytest.mark.extended
def test_linearised_gradients_follow_the_exact_ones_and_stopped_do_not(dataset, physics):
    """Iteration 0's CNN changes t₁, which iteration 1's physics partly undoes: the linearised
    backward pass sees that (as the exact one does), stopped gradients do not."""
    signals, mri, targets = batch(dataset, count=2)
    target = physics.physics_loss.normalisation.targets(targets)
    first = {}
    for gradients in ("stopped", "linearised", "exact"):
        network = LearnedGaussNewton(physics, iterations=2, width=8, gradients=gradients, rngs=nnx.Rngs(0))
        # Non-zero last layers, so that every CNN's input matters.
        for kernel in network.updates.kernels:
            kernel[...] = kernel[...] + 0.01 * jax.random.normal(jax.random.key(1), kernel.shape)
        loss = lambda n: jnp.mean(jnp.square(n(signals, mri) - target))  # noqa: E731
        grad = nnx.jit(nnx.grad(loss))(network)
        first[gradients] = jnp.concatenate([leaf[0].ravel() for leaf in jax.tree.leaves(grad.updates)])
        assert bool(jnp.isfinite(first[gradients]).all()), gradients

    def cosine(a, b):
        return float(jnp.vdot(a, b) / (jnp.linalg.norm(a) * jnp.linalg.norm(b)))

    linearised, stopped = cosine(first["linearised"], first["exact"]), cosine(first["stopped"], first["exact"])
    # Measured on two phantoms of this dataset: linearised 0.80, stopped 0.12 (0.93 and −0.01 on
    # the phantoms drawn before the random streams were separated): the pair matters, the digits vary.
    assert linearised > 0.7, (linearised, stopped)
    assert stopped < 0.5 and linearised > stopped + 0.4, (linearised, stopped)


@pytest.mark.extended
def test_exact_gradient_of_one_weight_equals_central_differences(dataset, physics):
    """float64: d(loss)/d(one CNN weight) and d(loss)/d(a step size) through the unrolled
    iterations, the forward and the adjoint solves, against central differences."""
    signals, mri, targets = batch(dataset, count=2)
    target = physics.physics_loss.normalisation.targets(targets)
    network = LearnedGaussNewton(physics, iterations=2, width=4, gradients="exact", rngs=nnx.Rngs(0))
    for kernel in network.updates.kernels:
        kernel[...] = kernel[...] + 0.05 * jax.random.normal(jax.random.key(2), kernel.shape, kernel.dtype)
    graphdef, params = nnx.split(network, nnx.Param)
    assert all(leaf.dtype == jnp.float64 for leaf in jax.tree.leaves(params))

    def loss(params):
        images = nnx.merge(graphdef, params)(signals.astype(jnp.float64), mri.astype(jnp.float64))
        return jnp.mean(jnp.square(images - target))

    grad = jax.jit(jax.grad(loss))(params)
    value = jax.jit(loss)
    picks = [
        (lambda p: p.step_sizes, (1,)),
        (lambda p: p.updates.kernels[0], (0, 1, 1, 2, 3)),  # iteration 0's first layer: feeds iteration 1's physics
    ]
    h = 1e-5
    for where, index in picks:
        def shifted(delta):
            return jax.tree.map(lambda x: x, params) if delta == 0 else _add_at(params, where, index, delta)
        numeric = (float(value(shifted(h))) - float(value(shifted(-h)))) / (2 * h)
        analytic = float(where(grad)[...][index])
        assert abs(numeric) > 1e-6, numeric
        np.testing.assert_allclose(analytic, numeric, rtol=1e-4, err_msg=str(index))


def _add_at(params, where, index, delta):
    """A copy of the `nnx.State` `params` with `delta` added to one entry of the leaf `where` picks."""
    params = jax.tree.map(lambda x: x, params)
    variable = where(params)
    variable[...] = variable[...].at[index].add(delta)
    return params


@pytest.mark.extended
def test_lgn_learns_and_reloads_through_the_common_machinery(dataset, tmp_path):
    """Trained by `Trainer` (checkpoints, validation), it lowers its training loss on a fixed
    batch, and `TrainedNetwork` gives back exactly the trained network's images."""
    config = TrainConfig(model=LGN, epochs=1, batch_size=16, learning_rate=1e-3)
    trainer = train(dataset, tmp_path / "run", config, progress=False)
    trainer.close()
    assert np.isfinite(trainer.records[-1]["val_data"])
    indices = dataset.indices("train")[:16]
    fixed = {
        "signals": jnp.asarray(dataset.signals(indices)),
        "mri": jnp.asarray(dataset.read("mri", indices)),
        "targets": jnp.asarray(dataset.read("targets", indices)),
    }
    mask = jnp.asarray(dataset.image_mask)

    def loss(state, steps=trainer.steps):
        output, _ = steps.predict(state.params, state.batch_stats, fixed["signals"], fixed["mri"])
        return float(masked_mse(output, dataset.normalisation.targets(fixed["targets"]), mask)), output

    _, output = loss(trainer.state)
    network = TrainedNetwork(tmp_path / "run", "last")
    images = network(dataset.read("ln_amplitude", indices), dataset.read("mri", indices))
    expected = np.where(dataset.image_mask, np.asarray(dataset.normalisation.images(output)), 0.0)
    np.testing.assert_allclose(images, expected, rtol=1e-4, atol=1e-3)
    # Fewer phantoms run padded to the same batch (16 on CPU): the same program, the same rows.
    fewer = network(dataset.read("ln_amplitude", indices[:3]), dataset.read("mri", indices[:3]))
    np.testing.assert_allclose(fewer, images[:3], rtol=1e-5, atol=1e-5)
    assert network._predict._cache_size() == 1
    # Gradients point downhill: Adam steps on one batch lower its loss (measured −3.4 % in six
    # steps; with stopped gradients it rises after two, docs/learned.md).
    optimiser = optax.adam(1e-3)
    graphdef, state = initial_state(network.model, optimiser)
    steps = Steps(graphdef, optimiser, dataset.normalisation, mask)
    start = loss(state, steps)[0]
    for _ in range(6):
        state = steps.train(state, fixed, jnp.float32(0))
    assert loss(state, steps)[0] < 0.985 * start, (loss(state, steps)[0], start)


def test_lgn_settings_are_checked():
    with pytest.raises(ValueError, match="build_network"):
        LGN.build(0)
    with pytest.raises(ValueError, match="fibre_dropout"):
        TrainConfig(model=LGN, fibre_dropout=0.3)
    with pytest.raises(ValueError, match="iterations"):
        ModelSpec("lgn", iterations=0)
    with pytest.raises(ValueError, match="damping must be one of"):
        ModelSpec("lgn", damping="linear")
    with pytest.raises(ValueError, match="fixed scatter"):
        from nirst_jax.phantoms import PhantomConfig

        randomised = SimulationConfig(phantoms=PhantomConfig(scatter_amplitude=(0.8, 1.2)), mesh_spacing_mm=6.0, image_size=SIZE)
        build_network(LGN, 0, randomised, None)


@pytest.mark.parametrize("dilation", [1, 2, 4])
def test_update_cnn_convolution_equals_xlas_dilated_convolution(dilation):
    # The update CNNs write each 3×3 convolution as shifted copies times the kernel (faster to
    # differentiate inside the iterations' scan); the reference is XLA's own convolution.
    from nirst_jax.learned._lgn import _shifted_convolution

    x_key, kernel_key = jax.random.split(jax.random.key(dilation))
    x = jax.random.normal(x_key, (2, 9, 11, 4))  # not square, smaller than the dilated window's reach
    kernel = jax.random.normal(kernel_key, (3, 3, 4, 5))
    reference = jax.lax.conv_general_dilated(x, kernel, (1, 1), "SAME", rhs_dilation=(dilation, dilation),
                                             dimension_numbers=("NHWC", "HWIO", "NHWC"),
                                             precision=jax.lax.Precision.HIGHEST)
    shifted = _shifted_convolution(x, kernel, dilation)
    assert shifted.shape == reference.shape
    np.testing.assert_allclose(shifted, reference, rtol=1e-5, atol=1e-5 * float(jnp.abs(reference).max()))
