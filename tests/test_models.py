"""Networks: sizes against the study, shapes, input handling, and that a train step learns."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx

from nirst_jax.datasets import Normalisation
from nirst_jax.models import (
    MODEL_NAMES,
    PHYSICS_MODELS,
    STUDY_ARCHITECTURE,
    ModelSpec,
    evenly_spaced_fibres,
    fibre_mask,
    mask_signals,
    normalise_mri,
    parameter_count,
    random_fibre_masks,
)
from nirst_jax.training import LOG_MSE_FLOOR, Steps, TrainConfig, initial_state, masked_log_mse, masked_mse

NETWORKS = tuple(name for name in MODEL_NAMES if name not in PHYSICS_MODELS)
"""The networks without physics inside (`ModelSpec.build`; tests/test_learned.py covers the others)."""
# Feng et al. 2022, Table 1.
STUDY_PARAMETERS = {"znet": 3.48e6, "ynet": 6.09e6}


@pytest.mark.slow
@pytest.mark.parametrize("name", NETWORKS)
def test_full_size_models_have_the_studys_parameter_count_and_output_shape(name):
    model = ModelSpec(name, **STUDY_ARCHITECTURE).build(0)
    count = parameter_count(model)
    if name in STUDY_PARAMETERS:
        assert abs(count / STUDY_PARAMETERS[name] - 1) <= 0.10, count
    else:  # the ablation drops the MRI path and its decoder inputs
        assert count < 0.7 * parameter_count(ModelSpec("znet", **STUDY_ARCHITECTURE).build(0))
    signals = jax.random.normal(jax.random.key(1), (2, 9, 16, 15))
    mri = jax.random.normal(jax.random.key(2), (2, 100, 100))
    out = nnx.jit(lambda m, s, r: m(s, r, train=True))(model, signals, mri)
    assert out.shape == (2, 3, 100, 100)
    assert bool(jnp.isfinite(out).all())


@pytest.mark.slow
def test_built_networks_draw_the_same_parameters_as_eager_construction():
    # `ModelSpec.build` compiles the initialisers as one program; the draws must be those of
    # running the constructors op by op (the same keys and initialisers).
    from nirst_jax.models import ZNet

    spec = ModelSpec("znet", wavelengths=3, image_size=16, width=0.125)
    built = spec.build(seed=3)
    eager = ZNet(wavelengths=3, image_size=16, use_mri=True, width=0.125, rngs=nnx.Rngs(3),
                 margin=spec.margin, upsampling=spec.upsampling)
    ours, theirs = nnx.state(built), nnx.state(eager)
    assert jax.tree.structure(ours) == jax.tree.structure(theirs)
    for a, b in zip(jax.tree.leaves(ours), jax.tree.leaves(theirs)):
        assert a.shape == b.shape and a.dtype == b.dtype
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-6, atol=1e-7)
    assert not np.allclose(jax.tree.leaves(nnx.state(spec.build(seed=4)))[0], jax.tree.leaves(ours)[0])


def test_a_second_build_is_a_fresh_network_with_the_same_draws():
    """Builds share one compiled initialiser; each gets its own arrays (training donates them)."""
    spec = ModelSpec("znet", image_size=16, width=0.125)
    first, second = (jax.tree.leaves(nnx.state(spec.build(0))) for _ in range(2))
    for a, b in zip(first, second):
        assert a is not b and a.unsafe_buffer_pointer() != b.unsafe_buffer_pointer()
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))


def test_mri_path_matters_only_where_there_is_one():
    signals = jax.random.normal(jax.random.key(1), (1, 9, 16, 15))
    mri_a = jax.random.normal(jax.random.key(2), (1, 32, 32))
    mri_b = jax.random.normal(jax.random.key(3), (1, 32, 32))
    for name, depends in (("znet", True), ("znet-nomri", False)):
        model = ModelSpec(name, image_size=32, width=0.125).build(0)
        apply = nnx.jit(lambda m, r: m(signals, r))
        difference = float(jnp.abs(apply(model, mri_a) - apply(model, mri_b)).max())
        assert (difference > 1e-4) == depends, (name, difference)


@pytest.mark.parametrize("size", [16, 25, 64])
def test_odd_and_small_image_sizes_align(size):
    model = ModelSpec("znet", image_size=size, width=0.125).build(0)
    out = nnx.jit(lambda m: m(jnp.zeros((1, 9, 16, 15)), jnp.zeros((1, size, size))))(model)
    assert out.shape == (1, 3, size, size)


def test_bad_inputs_are_rejected():
    with pytest.raises(ValueError, match="model must be one of"):
        ModelSpec("unet")
    with pytest.raises(ValueError, match="image_size"):
        ModelSpec(image_size=8)
    model = ModelSpec("znet", image_size=32, width=0.125).build(0)
    with pytest.raises(ValueError, match="signals must be"):
        model(jnp.zeros((9, 16, 15)), jnp.zeros((1, 32, 32)))
    with pytest.raises(ValueError, match="32×32"):
        model(jnp.zeros((1, 9, 16, 15)), jnp.zeros((1, 40, 40)))


def test_fibre_masks_and_mri_normalisation():
    assert list(evenly_spaced_fibres(16, 8)) == list(range(0, 16, 2))
    mask = fibre_mask(16, 8)
    assert mask.shape == (16, 15) and mask.sum() == 8 * 7  # each active source sees 7 active detectors
    assert fibre_mask(16, None).all()
    signals = jnp.ones((2, 9, 16, 15))
    masked = mask_signals(signals, mask)
    assert float(masked.sum()) == 2 * 9 * 56 and not bool(masked[:, :, 1].any())  # fibre 1 inactive
    disk = np.hypot(*np.meshgrid(np.linspace(-1, 1, 20), np.linspace(-1, 1, 20))) < 1
    mri = np.where(disk, 50.0, 0.0)
    mri[8:11, 8:11] = 80.0
    a, b = normalise_mri(mri, disk), normalise_mri(3 * mri, disk)
    np.testing.assert_allclose(a, b, atol=1e-6)  # independent of the grey scale
    assert abs(float(a[disk].mean())) < 1e-6 and float(jnp.abs(a[~disk]).max()) == 0
    with pytest.raises(ValueError, match="active fibres"):
        fibre_mask(16, 1)


def test_fibre_dropout_masks_are_whole_fibres_at_the_stated_rate():
    masks = np.asarray(jax.jit(random_fibre_masks, static_argnums=(1, 2))(jax.random.key(0), 4000, 16, 0.3))
    assert masks.shape == (4000, 16, 15) and masks.dtype == bool
    # A measurement is kept iff its source and its detector fibre are both kept.
    kept = masks.any(-1)  # (B, 16): fibres still used as sources
    detectors = fibre_mask(16, None)  # all slots
    from nirst_jax.physics import MeasurementLayout

    index = MeasurementLayout.ring(16).detector_index
    np.testing.assert_array_equal(masks, kept[:, :, None] & kept[:, index] & detectors)
    count = kept.sum(1)
    dropped = count < 16
    assert abs(dropped.mean() - 0.3) < 0.03, dropped.mean()
    assert count.min() >= 4 and set(np.unique(count[dropped])) == set(range(4, 16))
    assert (np.asarray(random_fibre_masks(jax.random.key(1), 64, 16, 0.0))).all()
    assert (np.asarray(random_fibre_masks(jax.random.key(1), 64, 16, 1.0)).any(-1).sum(1) < 16).all()


def test_margin_and_resize_upsampling_keep_sizes_and_drop_the_checkerboard():
    from nirst_jax.models._layers import ConvBNReLU

    signals, mri = jnp.ones((2, 9, 16, 15)), jnp.zeros((2, 32, 32))
    plain = ModelSpec("znet", image_size=32, width=0.125, **STUDY_ARCHITECTURE).build(0)
    clean = ModelSpec("znet", image_size=32, width=0.125).build(0)  # the defaults: margin 2, resize
    assert parameter_count(ModelSpec("znet", image_size=32, width=0.125, margin=2, upsampling="transposed").build(0)) == parameter_count(plain)
    assert parameter_count(clean) > parameter_count(plain)  # 3×3 instead of 2×2 up-sampling kernels
    assert jax.jit(lambda s, m: clean(s, m))(signals, mri).shape == (2, 3, 32, 32)
    # A constant feature map up-sampled: the transposed convolution gives a 2-periodic pattern,
    # the resize convolution a constant (away from the border).
    x = jnp.ones((1, 6, 6, 4))
    for up, periodic in (("transposed", True), ("resize", False)):
        layer = ConvBNReLU(4, 8, up=up, rngs=nnx.Rngs(1))
        y = np.asarray(layer.conv(x if up == "transposed" else jax.image.resize(x, (1, 12, 12, 4), "nearest")))[0, 2:-2, 2:-2]
        assert (np.ptp(y, axis=(0, 1)) > 1e-3).any() == periodic, up
    with pytest.raises(ValueError, match="margin"):
        ModelSpec("znet", margin=-1)
    with pytest.raises(ValueError, match="upsampling"):
        ModelSpec("znet", upsampling="bicubic")
    older_run = ModelSpec.from_dict({"name": "znet", "wavelengths": 9, "image_size": 100, "width": 1.0})
    assert (older_run.margin, older_run.upsampling) == (0, "transposed")  # runs from before the fields existed
    assert ModelSpec.from_dict(ModelSpec("ynet").to_dict()) == ModelSpec("ynet")


def _fixed_batch(size: int, batch: int, seed: int):
    """(normalisation, batch) of random signals, MRI and targets for one-batch training tests."""
    keys = jax.random.split(jax.random.key(seed), 3)
    normalisation = Normalisation(
        reference=jnp.zeros((9, 16, 15)),
        signal_mean=jnp.zeros(9),
        signal_std=jnp.ones(9),
        target_mean=jnp.array([15.0, 6.0, 40.0]),
        target_std=jnp.array([5.0, 2.0, 15.0]),
    )
    data = {
        "signals": jax.random.normal(keys[0], (batch, 9, 16, 15)),
        "mri": 50 + 30 * (jax.random.uniform(keys[1], (batch, size, size)) > 0.8),
        "targets": normalisation.images(jax.random.normal(keys[2], (batch, 3, size, size))),
    }
    return normalisation, data


def test_with_reference_changes_the_reference_only():
    normalisation, data = _fixed_batch(8, 2, 0)
    reference = jnp.full((9, 16, 15), -2.0)
    moved = normalisation.with_reference(reference)
    np.testing.assert_array_equal(moved.reference, reference)
    for name in ("signal_mean", "signal_std", "target_mean", "target_std"):
        np.testing.assert_array_equal(getattr(moved, name), getattr(normalisation, name))
    ln_amplitude = normalisation.ln_amplitude(data["signals"])
    np.testing.assert_allclose(moved.signals(ln_amplitude - 2.0), data["signals"], atol=1e-5)
    with pytest.raises(ValueError, match=r"\(9, 16, 15\), got \(9, 16, 14\)"):
        normalisation.with_reference(jnp.zeros((9, 16, 14)))


def _batch_loss(steps, normalisation, data, mask, loss):
    """Jitted state → `loss` of the network's training-mode output on `data`."""
    @jax.jit
    def value(state):
        output, _ = steps.predict(state.params, state.batch_stats, data["signals"], data["mri"], train=True)
        return loss(output, normalisation.targets(data["targets"]), mask)

    return value


def test_a_train_step_decreases_the_loss_on_a_fixed_batch():
    size = 32
    normalisation, data = _fixed_batch(size, 8, 0)
    mask = np.ones((size, size), bool)
    for name in NETWORKS:
        optimiser = optax.adam(5e-3)
        graphdef, state = initial_state(ModelSpec(name, image_size=size, width=0.125).build(0), optimiser)
        steps = Steps(graphdef, optimiser, normalisation, mask)
        loss = _batch_loss(steps, normalisation, data, mask, masked_mse)
        before = float(loss(state))
        for _ in range(5):
            state = steps.train(state, data, jnp.float32(0))
        assert int(state.step) == 5
        assert float(loss(state)) < 0.9 * before, name
    # Fibre dropout zeroes whole fibres of the training inputs, differently at each step.
    steps = Steps(graphdef, optimiser, normalisation, mask, fibre_dropout=1.0, seed=3)
    first, second = (np.asarray(steps._dropped(data["signals"], jnp.int32(k))) for k in (0, 1))
    assert (first == 0).any() and not np.array_equal(first == 0, second == 0)
    assert np.array_equal(first != 0, np.asarray(data["signals"]) * (first != 0) != 0)


def test_log_mse_is_the_mean_of_each_images_log_error_and_trains():
    """`masked_log_mse` against NumPy; unlike the pooled MSE, an easy phantom's error counts as much
    as a hard one's (the mean PSNR's weighting); `Steps(loss="log-mse")` lowers it; bad names refused."""
    rng = np.random.default_rng(0)
    predicted, target = rng.normal(size=(2, 3, 8, 8)), rng.normal(size=(2, 3, 8, 8))
    mask = np.ones((8, 8), bool)
    mask[:2] = False
    per_image = ((predicted - target)[:, :, mask] ** 2).mean(-1)
    np.testing.assert_allclose(masked_log_mse(predicted, target, mask), np.log(per_image + LOG_MSE_FLOOR).mean(), rtol=1e-5)
    np.testing.assert_allclose(masked_mse(predicted, target, mask), per_image.mean(), rtol=1e-5)
    # Halving the error of an easy image (0.1 → 0.05) changes the pooled MSE 400× less than halving a
    # hard one (2 → 1); the log loss moves by the same log 4 / 2 for both (to the floor's 2 %).
    errors = jnp.stack([jnp.full((1, 8, 8), 0.1), jnp.full((1, 8, 8), 2.0)])
    zeros = jnp.zeros_like(errors)
    for halved in (0, 1):
        better = errors.at[halved].multiply(0.5)
        pooled = float(masked_mse(errors, zeros, mask) - masked_mse(better, zeros, mask))
        logged = float(masked_log_mse(errors, zeros, mask) - masked_log_mse(better, zeros, mask))
        np.testing.assert_allclose(logged, np.log(4.0) / 2, rtol=0.03)
        assert (pooled < 0.01) == (halved == 0)
    size = 32
    normalisation, data = _fixed_batch(size, 8, 1)
    full = np.ones((size, size), bool)
    optimiser = optax.adam(5e-3)
    graphdef, state = initial_state(ModelSpec("znet", image_size=size, width=0.125).build(0), optimiser)
    steps = Steps(graphdef, optimiser, normalisation, full, loss="log-mse")
    loss = _batch_loss(steps, normalisation, data, full, masked_log_mse)
    before = float(loss(state))
    for _ in range(5):
        state = steps.train(state, data, jnp.float32(0))
    assert float(loss(state)) < before - 0.1
    expected = jax.vmap(lambda p, t: masked_log_mse(p[None], t[None], full))(
        steps.predict(state.params, state.batch_stats, data["signals"], data["mri"])[0], normalisation.targets(data["targets"]))
    np.testing.assert_allclose(steps.evaluate(state, data)["data"], expected, rtol=1e-5, atol=1e-6)
    with pytest.raises(ValueError, match="data_loss"):
        TrainConfig(data_loss="l1")
    with pytest.raises(ValueError, match="data_loss"):
        Steps(graphdef, optimiser, normalisation, full, loss="l1")


def test_loss_figure_draws_a_log_mse_runs_data_terms_as_geometric_mean_mse():
    from nirst_jax.training._log import loss_figure

    records = [{"epoch": 0, "train_data": -3.0, "val_data": -2.5}, {"epoch": 1, "train_data": -4.0, "val_data": -3.5}]
    lines = {line.get_label(): line.get_ydata() for line in loss_figure(records, "log-mse").axes[0].get_lines()}
    np.testing.assert_allclose(lines["validation geometric-mean MSE"], np.exp([-2.5, -3.5]))
    np.testing.assert_allclose(lines["train geometric-mean MSE"], np.exp([-3.0, -4.0]))
    assert not loss_figure(records).axes[0].get_lines()  # read as MSE, negative values are not drawn
