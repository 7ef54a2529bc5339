"""Spectra, optical-property conversions and the boundary factor against published values."""

import numpy as np
import pytest

from nirst_jax.physics import (
    PAPER_WAVELENGTHS_NM,
    absorption,
    boundary_factor,
    diffusion_coefficient,
    extinction_spectra,
    reduced_scattering,
)

# SOURCES.md §4 (Prahl haemoglobin × ln10 × 1e-7, mm⁻¹/µM; Hale & Querry water, mm⁻¹),
# four significant figures.
PUBLISHED = {
    661: (7.295e-5, 7.330e-4, 0.000365),
    735: (9.514e-5, 2.537e-4, 0.002086),
    785: (1.693e-4, 2.250e-4, 0.002211),
    808: (1.971e-4, 1.666e-4, 0.001970),
    826: (2.202e-4, 1.596e-4, 0.002842),
    852: (2.445e-4, 1.591e-4, 0.004409),
    903: (2.772e-4, 1.764e-4, 0.006875),
    912: (2.801e-4, 1.789e-4, 0.007644),
    948: (2.780e-4, 1.431e-4, 0.037143),
}


def test_extinction_matches_published_table():
    table = extinction_spectra(PAPER_WAVELENGTHS_NM)
    for row, wavelength in zip(table, PAPER_WAVELENGTHS_NM):
        hbo, hb, water = PUBLISHED[int(wavelength)]
        np.testing.assert_allclose(row, [hbo, hb, water / 100], rtol=1.5e-3)


def test_nirfast_sample_mesh_absorption():
    # SOURCES.md: 10 µM HbO, 10 µM Hb, 40 % water give µa(785 nm) = 0.00483 mm⁻¹.
    mua = absorption(extinction_spectra([785.0]), np.array([[10.0], [10.0], [40.0]]))
    np.testing.assert_allclose(mua, [[0.00483]], rtol=2e-3)


def test_interpolation_is_linear_between_rows():
    # Prahl HbO2 at 650 and 652 nm is 368 and 356.8 cm⁻¹/M (decadic).
    e = extinction_spectra([650.0, 651.5, 652.0])[:, 0] / (np.log(10) * 1e-7)
    np.testing.assert_allclose(e, [368.0, 368 + 0.75 * (356.8 - 368), 356.8], rtol=1e-12)


@pytest.mark.parametrize("bad", [649.0, 1000.5, np.nan])
def test_wavelength_outside_table_is_rejected(bad):
    with pytest.raises(ValueError, match="wavelength"):
        extinction_spectra([700.0, bad])


def test_boundary_factor_keijzer():
    assert float(boundary_factor(1.33)) == pytest.approx(2.348, abs=1e-3)
    assert float(boundary_factor(1.0)) == pytest.approx(1.0, abs=1e-12)
    # Larger index mismatch → more internal reflection → larger A.
    assert float(boundary_factor(1.4)) > float(boundary_factor(1.33))


def test_scattering_law_and_diffusion_coefficient():
    musp = reduced_scattering([500.0, 1000.0, 2000.0], 1.2, 1.5)
    np.testing.assert_allclose(musp, [1.2 * 0.5**-1.5, 1.2, 1.2 * 2.0**-1.5], rtol=1e-12)
    per_node = reduced_scattering([800.0], np.array([1.0, 2.0]), np.array([0.5, 1.0]))
    np.testing.assert_allclose(per_node, [[0.8**-0.5, 2.0 / 0.8]], rtol=1e-12)
    assert float(diffusion_coefficient(0.01, 1.0)) == pytest.approx(1 / 3.03)
