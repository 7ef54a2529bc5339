"""DRI + U-Net, the post-processing reference: its first stage is the study's DRI, the first
stage is computed once per phantom and resumed after an interruption, and it trains and reloads
through the common machinery."""

import json

import jax.numpy as jnp
import numpy as np
import pytest

from nirst_jax.cli import main
from nirst_jax.datasets import Dataset, SimulationConfig, simulate_dataset
from nirst_jax.evaluation import GaussNewtonMethod
from nirst_jax.learned import DRIUNet, build_network
from nirst_jax.models import ModelSpec, UNet, fibre_mask, mask_signals, normalise_mri
from nirst_jax.training import TrainConfig, TrainedNetwork, train
from nirst_jax.training._first_stage import FIRST_STAGE_PROGRESS, first_stage_images

SIZE = 32
DRI_UNET = ModelSpec("dri-unet", image_size=SIZE, width=0.125)


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    """48 phantoms on a 6 mm mesh, 32×32 images."""
    config = SimulationConfig(mesh_spacing_mm=6.0, image_size=SIZE)
    folder = simulate_dataset(tmp_path_factory.mktemp("dri-unet") / "data", config, 48, seed=5, config_name="tiny", progress=False)
    return Dataset(folder)


def _network_images(network, dataset, indices, signal_mask=None):
    signals = jnp.asarray(dataset.signals(indices))
    if signal_mask is not None:
        signals = mask_signals(signals, signal_mask)
    output = network(signals, normalise_mri(jnp.asarray(dataset.read("mri", indices)), dataset.image_mask))
    return np.where(dataset.image_mask, np.asarray(dataset.normalisation.images(output)), 0.0)


@pytest.mark.parametrize("fibres", [None, 8])
def test_untrained_network_is_the_studys_dri(dataset, fibres):
    """The U-Net starts at a zero correction, so the untrained network returns DRI's images:
    the same as `GaussNewtonMethod` (the study's DRI row) on the data's mesh, with all fibres
    and with 8, although the network sees normalised signals and a normalised MRI."""
    mask = fibre_mask(dataset.config.n_fibres, fibres)
    network = build_network(DRI_UNET, 0, dataset.config, dataset.normalisation, mask, dataset.mesh)
    assert isinstance(network, DRIUNet)
    indices = dataset.indices("test")[:3]
    images = _network_images(network, dataset, indices, mask)
    dri = GaussNewtonMethod.for_dataset(dataset, active_fibres=fibres, progress=False)(
        dataset.read("ln_amplitude", indices), dataset.read("mri", indices))
    scale = np.abs(dri).max(axis=(0, 2, 3))[:, None, None]
    np.testing.assert_allclose(images / scale, dri / scale, atol=1e-4)  # measured ≤ 5e-6


def test_unet_starts_at_zero_and_keeps_shapes():
    from flax import nnx

    unet = UNet(4, width=0.125, rngs=nnx.Rngs(0))
    features = jnp.asarray(np.random.default_rng(0).normal(size=(2, 4, SIZE, SIZE)), jnp.float32)
    out = unet(features, train=False)
    assert out.shape == (2, 3, SIZE, SIZE)
    assert float(jnp.abs(out).max()) == 0.0


def test_first_stage_is_computed_once_and_resumes_after_an_interruption(dataset, tmp_path):
    """Killed after one batch, the cache keeps that batch and the rerun computes only the rest;
    another key recomputes everything; rows of phantoms not asked for stay NaN."""
    indices = dataset.indices("train")[:20]
    calls = []

    def prepare(signals, mri):  # each phantom's own value: a row mix-up or padding error shows
        calls.append(len(signals))
        return np.broadcast_to(np.asarray(signals)[:, :1, :1, :1], (len(signals), 3, SIZE, SIZE))

    def failing(signals, mri):
        if calls:
            raise KeyboardInterrupt
        return prepare(signals, mri)

    with pytest.raises(KeyboardInterrupt):
        first_stage_images(tmp_path, dataset, indices, failing, "a", batch_size=8, progress=False)
    assert json.loads((tmp_path / FIRST_STAGE_PROGRESS).read_text())["done"] == 8
    images = first_stage_images(tmp_path, dataset, indices, prepare, "a", batch_size=8, progress=False)
    assert calls == [8, 8, 8]  # the first batch before the interruption, then the two others (the last padded)
    expected = dataset.signals(indices)[:, 0, 0, 0]
    np.testing.assert_array_equal(images[indices], np.broadcast_to(expected[:, None, None, None], (20, 3, SIZE, SIZE)))
    others = np.setdiff1d(np.arange(dataset.count), indices)
    assert np.isnan(images[others]).all()
    assert images.shape == (dataset.count, 3, SIZE, SIZE)
    first_stage_images(tmp_path, dataset, indices, prepare, "a", batch_size=8, progress=False)
    assert len(calls) == 3  # all cached
    first_stage_images(tmp_path, dataset, indices, prepare, "b", batch_size=8, progress=False)
    assert len(calls) == 6  # another stage: recomputed


@pytest.mark.slow  # ≈ 45–110 s on 2 cores, most of it compilation: CI's slow tier
def test_dri_unet_trains_on_its_cached_first_stage_and_reloads(dataset, tmp_path):
    """A training run computes DRI once for the phantoms it reads (`train_phantoms`,
    `validation_phantoms`), trains the U-Net on it, `TrainedNetwork` (which runs DRI itself)
    gives back the trained network's images, and so does `nirst reconstruct --method dri-unet`."""
    config = TrainConfig(model=DRI_UNET, epochs=1, batch_size=8, learning_rate=1e-3, train_phantoms=16,
                         validation_phantoms=4)
    trainer = train(dataset, tmp_path / "run", config, progress=False)
    trainer.close()
    assert len(trainer.records) == 1 and np.isfinite(trainer.records[-1]["val_data"])
    cached = np.load(tmp_path / "run" / "first_stage.npy")
    read = np.concatenate([dataset.indices("train")[:16], dataset.indices("validation")[:4]])
    assert np.isfinite(cached[read]).all() and np.isnan(np.delete(cached, read, axis=0)).all()
    rows = read[[0, 17]]  # a training and a validation phantom: the cache holds their DRI images
    np.testing.assert_allclose(cached[rows], np.asarray(trainer.steps.prepare(
        trainer.state, jnp.asarray(dataset.signals(rows)), jnp.asarray(dataset.read("mri", rows)))), atol=1e-5)
    with pytest.raises(ValueError, match="cached for the training and validation"):
        trainer.evaluate(dataset.indices("test")[:2])
    indices = dataset.indices("test")[:4]
    network = TrainedNetwork(tmp_path / "run", "last")
    images = network(dataset.read("ln_amplitude", indices), dataset.read("mri", indices))
    from flax import nnx

    model = nnx.merge(trainer.steps.graphdef, trainer.state.params, trainer.state.batch_stats)
    expected = _network_images(model, dataset, indices)
    np.testing.assert_allclose(images, expected, rtol=1e-4, atol=1e-3)
    untrained = _network_images(build_network(DRI_UNET, 0, dataset.config, dataset.normalisation, None, dataset.mesh),
                                dataset, indices)
    assert np.abs(images - untrained).max() > 1e-3  # the U-Net learned a correction
    # DRI's images from the study's DRI row stand in for the network's own first stage.
    # At the network's batch shape, the same compiled DRI program as the model's own call above.
    dri = GaussNewtonMethod.for_dataset(dataset, progress=False, batch_size=len(indices))(
        dataset.read("ln_amplitude", indices), dataset.read("mri", indices))
    np.testing.assert_allclose(network.from_first_stage(dri, dataset.read("mri", indices)), images, rtol=1e-4, atol=1e-3)
    with pytest.raises(ValueError, match="first_stage must be"):
        network.from_first_stage(dri[:, :2], dataset.read("mri", indices))

    sample = dataset.sample(int(indices[0]))
    np.savez(tmp_path / "data.npz", ln_amplitude=sample["ln_amplitude"], wavelengths_nm=np.asarray(dataset.config.wavelengths_nm),
             nodes=dataset.mesh.nodes, elements=dataset.mesh.elements)
    np.save(tmp_path / "mri.npy", sample["mri"])
    args = ["reconstruct", "--checkpoint", str(tmp_path / "run"), "--which", "last", "--data", str(tmp_path / "data.npz"),
            "--mri", str(tmp_path / "mri.npy"), "--out", str(tmp_path / "recon")]
    assert main([*args, "--method", "dri-unet"]) == 0
    with np.load(tmp_path / "recon" / "reconstruction.npz") as result:
        np.testing.assert_allclose(result["images"], images[0], rtol=1e-5, atol=1e-4)
    assert main([*args, "--method", "lgn"]) == 2  # a DRI + U-Net run is not a learned Gauss-Newton


def test_dri_unet_settings_are_checked(dataset):
    with pytest.raises(ValueError, match="build_network"):
        DRI_UNET.build(0)
    with pytest.raises(ValueError, match="fibre_dropout"):
        TrainConfig(model=DRI_UNET, fibre_dropout=0.3)
    with pytest.raises(ValueError, match="train_phantoms"):
        TrainConfig(model=DRI_UNET, train_phantoms=0)
    uneven = np.zeros((16, 15), bool)
    uneven[:3] = True
    with pytest.raises(ValueError, match="evenly spaced"):
        build_network(DRI_UNET, 0, dataset.config, dataset.normalisation, uneven, dataset.mesh)
