"""Image metrics against scikit-image and hand-computed cases."""

import numpy as np
import pytest
from skimage.metrics import structural_similarity

from nirst_jax.evaluation import image_metrics, mse, psnr, ssim, ssim_map


@pytest.fixture
def images():
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[:100, :100]
    mask = np.hypot(xx - 49.5, yy - 49.5) < 49
    truth = np.where(mask, 20.0 + 15.0 * (np.hypot(xx - 60, yy - 40) < 10), 0.0)
    prediction = np.where(mask, truth + rng.normal(0, 2.0, truth.shape), 0.0)
    return prediction, truth, mask


def test_ssim_map_equals_scikit_image(images):
    prediction, truth, mask = images
    expected = structural_similarity(prediction, truth, data_range=35.0, full=True)[1]
    np.testing.assert_allclose(ssim_map(prediction, truth, 35.0), expected, rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(ssim(prediction, truth, mask), expected[mask].mean(), rtol=1e-9)


def test_hand_computed_mse_and_psnr(images):
    _, truth, mask = images
    shifted = np.where(mask, truth + 0.5, 0.0)
    np.testing.assert_allclose(mse(shifted, truth, mask), 0.25, rtol=1e-12)
    np.testing.assert_allclose(psnr(shifted, truth, mask), 10 * np.log10(35.0**2 / 0.25), rtol=1e-12)
    np.testing.assert_allclose(ssim(truth, truth, mask), 1.0, rtol=1e-12)


def test_metrics_batch_over_leading_axes(images):
    prediction, truth, mask = images
    batch = np.stack([np.stack([prediction, truth])] * 2)  # (2, 2, H, W)
    metrics = image_metrics(batch, np.broadcast_to(truth, batch.shape), mask)
    assert all(v.shape == (2, 2) for v in metrics.values())
    np.testing.assert_allclose(metrics["mse"][:, 1], 0.0, atol=1e-12)
    np.testing.assert_allclose(metrics["ssim"][0, 0], ssim(prediction, truth, mask), rtol=1e-12)
