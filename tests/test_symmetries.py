"""Symmetries of a measurement set-up (`nirst_jax.geometry.Symmetries`): which are found, that
the permuted data are the data of the transformed phantom, and training-time augmentation."""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np
import optax
import pytest

from nirst_jax.geometry import MeasurementSetup, OptodePositions, PolygonDomain, RimFibres, Symmetries
from nirst_jax.models import STUDY_ARCHITECTURE, ModelSpec
from nirst_jax.training import TrainConfig
from nirst_jax.training._steps import Steps, initial_state

SIZE = 24


def test_the_study_disk_has_the_8_symmetries_of_the_square_and_fewer_when_the_fibres_break_them():
    assert len(Symmetries.of(MeasurementSetup.disk(image_size=SIZE))) == 8
    # NIRFAST's circle2000_86 starts at −11.25°: still all 8. Fibre 0 at 5°: rotations only.
    assert len(Symmetries.of(MeasurementSetup.disk(angle_offset_deg=-11.25, image_size=SIZE))) == 8
    rotations = Symmetries.of(MeasurementSetup.disk(angle_offset_deg=5.0, image_size=SIZE))
    assert rotations.names == ("identity", "rotation 90°", "rotation 180°", "rotation 270°")
    # 6 fibres: 60° apart, so only the half turn and the two axis reflections map them onto themselves.
    six = Symmetries.of(MeasurementSetup.disk(n_fibres=6, image_size=SIZE))
    assert six.names == ("identity", "rotation 180°", "reflection y → −y", "reflection x → −x")
    # 8 of 16 fibres in use keep all 8. Fibres 0, 3, 6, 9, 12 (5 of 16) mirror onto each other
    # about the 135° axis only; 0, 5, 10 (3 of 16) about the 112.5° axis, which is not the grid's.
    setup = MeasurementSetup.disk(image_size=SIZE)
    assert len(Symmetries.of(setup, setup.layout(8))) == 8
    assert Symmetries.of(setup, setup.layout(5)).names == ("identity", "reflection in y = −x")
    assert Symmetries.of(setup, setup.layout(3)).names == ("identity",)
    assert Symmetries.nontrivial(setup, setup.layout(5)).names == ("identity", "reflection in y = −x")
    with pytest.raises(ValueError, match="averaging: the set-up has no symmetry besides the identity"):
        Symmetries.nontrivial(setup, setup.layout(3), "averaging")


def test_pixel_and_measurement_permutations_move_what_they_name():
    setup = MeasurementSetup.disk(image_size=SIZE)
    symmetries = Symmetries.of(setup)
    centers = setup.grid().centers()
    # A bright pixel on the +x axis goes to +y under the quarter turn (counter-clockwise), to −x
    # under the half turn, stays under y → −y, and goes to −y under the reflection in y = −x.
    image = np.zeros((1, SIZE, SIZE))
    row, column = SIZE // 2, SIZE - 3
    image[0, row, column] = 1.0
    x, y = centers[row, column]
    expected = {"rotation 90°": (-y, x), "rotation 180°": (-x, -y), "reflection y → −y": (x, -y), "reflection in y = −x": (-y, -x)}
    for name, point in expected.items():
        moved = np.asarray(symmetries.images(image, np.array([symmetries.names.index(name)])))[0]
        np.testing.assert_allclose(centers[moved == 1][0], point, atol=1e-9)
    # Every permutation is one; each has its inverse in the set; the identity leaves data alone.
    for index in (symmetries.pixel_index, symmetries.measurement_index):
        assert all(np.array_equal(np.sort(p), np.arange(index.shape[1])) for p in index)
        for p in index:
            assert any(np.array_equal(p[q], np.arange(index.shape[1])) for q in index)
        np.testing.assert_array_equal(index[0], np.arange(index.shape[1]))
    # Under the quarter turn, source 0 (at 0°) with detector 4 (90°) becomes source 4 with detector 8.
    layout = setup.layout()
    data = np.zeros((1, 1, *layout.shape))
    data[0, 0, 0, layout.slots()[(0, 4)]] = 1.0
    moved = np.asarray(symmetries.signals(data, np.array([1])))[0, 0]
    assert moved[4, layout.slots()[(4, 8)]] == 1.0 and moved.sum() == 1.0


def test_permuted_calibrated_data_are_the_data_of_the_transformed_phantom():
    """On a 3 mm mesh, the reference-calibrated data of a rotated or reflected phantom equal the
    permuted data of the original to the mesh's own asymmetry (measured: max 0.02, mean < 0.002 in
    ln A); the next symmetry's permutation misses by the lesion's whole signal."""
    setup = MeasurementSetup.disk(image_size=SIZE)
    symmetries = Symmetries.of(setup)
    mesh = setup.mesh(3.0)
    model, interpolation = setup.forward_model(mesh), setup.interpolation(mesh)
    centers = setup.grid().centers()
    lesion = np.exp(-((centers[..., 0] - 18) ** 2 + (centers[..., 1] - 8) ** 2) / (2 * 6.0**2))
    background = np.array([20.0, 10.0, 50.0])
    image = background[:, None, None] + np.array([30.0, 5.0, 20.0])[:, None, None] * lesion

    def calibrated(images):
        return np.asarray(model(interpolation.image_to_nodes(jnp.asarray(images)))) - reference

    reference = 0.0
    reference = calibrated(np.broadcast_to(background[:, None, None], image.shape))
    data = calibrated(image)
    for g, name in enumerate(symmetries.names):
        direct = calibrated(np.asarray(symmetries.images(image[None], np.array([g])))[0])
        permuted = np.asarray(symmetries.signals(data[None], np.array([g])))[0]
        wrong = np.asarray(symmetries.signals(data[None], np.array([(g + 1) % len(symmetries)])))[0]
        change = np.abs(data).max()
        assert np.abs(direct - permuted).max() < 0.1 * change, name
        assert np.abs(direct - permuted).mean() < 0.01 * np.abs(data).mean() + 0.002, name
        assert np.abs(direct - wrong).max() > 0.5 * change, name


def _trefoil(roll: int = 0) -> np.ndarray:
    theta = np.linspace(0.0, 2 * np.pi, 240, endpoint=False)
    r = 38.0 * (1 + 0.2 * np.cos(3 * theta))
    return np.roll(np.column_stack([r * np.cos(theta), r * np.sin(theta)]) + [12.0, -7.0], roll, axis=0)


def test_outlines_and_placed_optodes_keep_only_their_own_symmetries():
    # A trefoil about (12, −7) with fibre 0 on its axis: the reflection in that axis only. Started at
    # another vertex, its fibres lose even that.
    assert Symmetries.of(MeasurementSetup(PolygonDomain(_trefoil()), RimFibres(12), image_size=SIZE)).names == (
        "identity", "reflection y → −y")
    assert Symmetries.of(MeasurementSetup(PolygonDomain(_trefoil(7)), RimFibres(12), image_size=SIZE)).names == ("identity",)
    # A square slab, a source at the middle of each side and detectors at the corners, each source
    # measured at the two far corners: all 8. Measuring the near corners of one source only: none.
    square = [(-30, -30), (30, -30), (30, 30), (-30, 30)]
    sources = [(0, -30), (30, 0), (0, 30), (-30, 0)]
    far = [(0, 2), (0, 3), (1, 0), (1, 3), (2, 0), (2, 1), (3, 1), (3, 2)]
    slab = MeasurementSetup(PolygonDomain(square), OptodePositions(sources, square, far), image_size=SIZE)
    assert len(Symmetries.of(slab)) == 8
    lopsided = MeasurementSetup(PolygonDomain(square), OptodePositions(sources, square, far[:-1] + [(3, 0)]), image_size=SIZE)
    assert Symmetries.of(lopsided).names == ("identity",)
    # Eight vertices with all 8 symmetries as a set: ordered as a star, the outline has them too;
    # ordered with the top notch cut off (another simple polygon), it has none.
    corners, inner = [(30, 30), (-30, 30), (-30, -30), (30, -30)], [(0, 10), (-10, 0), (0, -10), (10, 0)]
    probe = OptodePositions(corners, corners, [(s, d) for s in range(4) for d in range(4) if s != d])
    star = [corners[0], inner[0], corners[1], inner[1], corners[2], inner[2], corners[3], inner[3]]
    assert len(Symmetries.of(MeasurementSetup(PolygonDomain(star), probe, image_size=SIZE))) == 8
    notched = [corners[0], corners[1], inner[0], inner[1], corners[2], inner[2], corners[3], inner[3]]
    assert Symmetries.of(MeasurementSetup(PolygonDomain(notched), probe, image_size=SIZE)).names == ("identity",)


def test_augmented_batches_transform_every_field_by_the_same_symmetry_and_replay_by_step():
    setup = MeasurementSetup.disk(image_size=SIZE)
    symmetries = Symmetries.of(setup)
    rng = np.random.default_rng(0)
    batch = {"signals": jnp.asarray(rng.normal(size=(6, 9, 16, 15)), jnp.float32),
             "mri": jnp.asarray(rng.normal(size=(6, SIZE, SIZE)), jnp.float32),
             "targets": jnp.asarray(rng.normal(size=(6, 3, SIZE, SIZE)), jnp.float32)}
    optimiser = optax.adam(1e-3)
    graphdef, _ = initial_state(ModelSpec("znet", image_size=SIZE, width=0.125, **STUDY_ARCHITECTURE).build(0), optimiser)
    from nirst_jax.datasets import Normalisation

    normalisation = Normalisation(jnp.zeros((9, 16, 15)), jnp.zeros(9), jnp.ones(9), jnp.zeros(3), jnp.ones(3))
    steps = Steps(graphdef, optimiser, normalisation, np.ones((SIZE, SIZE), bool), symmetries=symmetries, seed=1)
    out = steps._transformed(batch, jnp.int32(3))
    used = set()
    for i in range(6):
        matches = [g for g in range(8)
                   if np.array_equal(out["signals"][i], symmetries.signals(batch["signals"][i:i + 1], np.array([g]))[0])]
        assert len(matches) == 1
        g = np.array(matches)
        used.add(matches[0])
        for name in ("mri", "targets"):
            np.testing.assert_array_equal(out[name][i], symmetries.images(batch[name][i:i + 1], g)[0])
    assert len(used) > 1  # a draw per phantom
    again = steps._transformed(batch, jnp.int32(3))
    assert all(np.array_equal(out[k], again[k]) for k in batch)
    assert not np.array_equal(out["signals"], steps._transformed(batch, jnp.int32(4))["signals"])
    with pytest.raises(ValueError, match="one symmetry per phantom"):
        symmetries.signals(batch["signals"][0], np.array([1]))  # an unbatched array is not a batch of 9
    with pytest.raises(ValueError, match="symmetry_augmentation must be True or False"):
        TrainConfig(symmetry_augmentation=1)


class _Recorder:
    """A stand-in method: returns `image` for every phantom (or the MRI in all 3 channels scaled
    by the phantom's mean calibrated signal, with `equivariant`), and keeps what it was given."""

    def __init__(self, image_mask, reference, image=None):
        self.image_mask, self.reference, self.image, self.calls = image_mask, reference, image, []

    def __call__(self, ln_amplitude, mri):
        self.calls.append((np.asarray(ln_amplitude), np.asarray(mri)))
        if self.image is not None:
            return np.broadcast_to(self.image, (len(mri), *self.image.shape))
        level = (np.asarray(ln_amplitude) - self.reference).mean((1, 2, 3))
        return np.repeat(np.asarray(mri)[:, None], 3, 1) * level[:, None, None, None]


def test_symmetry_averaging_keeps_an_equivariant_method_and_symmetrises_a_fixed_image():
    from nirst_jax.evaluation import SymmetryAveraged

    setup = MeasurementSetup.disk(image_size=SIZE)
    symmetries = Symmetries.of(setup)
    mask = np.ones((SIZE, SIZE), bool)
    rng = np.random.default_rng(2)
    reference = rng.normal(-10, 1, size=(2, 16, 15))
    ln_amplitude = reference + rng.normal(0, 0.1, size=(3, 2, 16, 15))
    mri = rng.normal(size=(3, SIZE, SIZE))
    equivariant = _Recorder(mask, reference)
    averaged = SymmetryAveraged(equivariant, symmetries, reference)
    np.testing.assert_allclose(averaged(ln_amplitude, mri), equivariant(ln_amplitude, mri), rtol=1e-5, atol=1e-6)
    # It saw each phantom under every symmetry, all in one call (symmetry-major rows): calibrated
    # data permuted, the reference added back.
    assert len(equivariant.calls) == 1 + 1 and len(equivariant.calls[0][0]) == 8 * 3
    g = symmetries.names.index("rotation 90°")
    data, images = equivariant.calls[0]
    np.testing.assert_allclose(data[3 * g + 1], np.asarray(symmetries.signals((ln_amplitude - reference)[1:2], np.array([g])))[0] + reference, atol=1e-5)
    np.testing.assert_array_equal(images[3 * g + 1], symmetries.images(mri[1:2], np.array([g]))[0])
    # Sets larger than one call are split by phantoms, with the same result.
    import nirst_jax.evaluation._symmetry_average as module
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(module, "PHANTOMS_PER_CALL", 2)
        np.testing.assert_allclose(averaged(ln_amplitude, mri), equivariant(ln_amplitude, mri), rtol=1e-5, atol=1e-6)
    assert [len(data) for data, _ in equivariant.calls[2:]] == [16, 8, 3]
    # A method blind to its input: its image is averaged over the orbit of each pixel. On an even
    # grid no pixel centre lies on an axis, so a pixel near the +x axis has an orbit of 8: 1/8 each.
    image = np.zeros((3, SIZE, SIZE))
    image[:, SIZE // 2, SIZE - 3] = 1.0
    result = SymmetryAveraged(_Recorder(mask, reference, image), symmetries, reference)(ln_amplitude[:1], mri[:1])[0, 0]
    centers = setup.grid().centers()
    x, y = centers[SIZE // 2, SIZE - 3]
    orbit = {(x, y), (-y, x), (-x, -y), (y, -x), (x, -y), (y, x), (-x, y), (-y, -x)}
    assert len(orbit) == 8
    for point in orbit:
        row, column = np.argwhere(np.isclose(centers[..., 0], point[0]) & np.isclose(centers[..., 1], point[1]))[0]
        assert result[row, column] == pytest.approx(1 / 8)
    assert result.sum() == pytest.approx(1.0) and np.count_nonzero(result) == 8
    with pytest.raises(ValueError, match="reference must be"):
        SymmetryAveraged(equivariant, symmetries, reference[:, :, :3])
    with pytest.raises(ValueError, match="images, the symmetries act on"):
        SymmetryAveraged(_Recorder(np.ones((16, 16), bool), reference), symmetries, reference)
