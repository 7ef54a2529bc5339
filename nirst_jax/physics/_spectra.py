"""Chromophore absorption spectra (package data) at any wavelength in 650–1000 nm.

Sources (see `nirst_jax/data/spectra/SOURCES.md`): oxy- and deoxy-haemoglobin from S. Prahl's
OMLC compilation (decadic molar extinction, cm⁻¹/M); pure-water absorption from Hale & Querry,
Appl. Opt. 12, 555 (1973), as tabulated by NIRFAST (mm⁻¹). Values between the 1 nm table rows
are linearly interpolated (as NIRFAST does for the 2 nm haemoglobin table).
"""

from __future__ import annotations

import csv
import functools
from importlib import resources

import numpy as np

PAPER_WAVELENGTHS_NM: tuple[float, ...] = (661.0, 735.0, 785.0, 808.0, 826.0, 852.0, 903.0, 912.0, 948.0)
"""The nine wavelengths of the reference study (Feng et al., Optica 9, 264 (2022))."""

CHROMOPHORES: tuple[str, ...] = ("HbO", "Hb", "water")
CHROMOPHORE_UNITS: tuple[str, ...] = ("µM", "µM", "%")

WAVELENGTH_RANGE_NM = (650.0, 1000.0)


@functools.cache
def _spectra_table() -> dict[str, np.ndarray]:
    path = resources.files("nirst_jax.data") / "spectra" / "spectra_1nm_650_1000.csv"
    with path.open() as handle:
        rows = list(csv.DictReader(handle))
    column = lambda name: np.array([float(r[name]) for r in rows])  # noqa: E731
    return {
        "wavelength_nm": column("wavelength_nm"),
        "hbo2_decadic": column("hbo2_cm-1_per_M_decadic"),
        "hb_decadic": column("hb_cm-1_per_M_decadic"),
        "water_mua_per_mm": column("water_mua_per_mm_100pct"),
    }


def check_wavelengths(wavelengths_nm) -> np.ndarray:
    """Validate wavelengths (nm) against the tabulated range.

    Arguments:
        wavelengths_nm: scalar or sequence of wavelengths in nm.

    Returns:
        (L,) float64 array of the wavelengths.
    """
    wavelengths = np.atleast_1d(np.asarray(wavelengths_nm, dtype=np.float64))
    if wavelengths.ndim != 1 or wavelengths.size == 0:
        raise ValueError(f"wavelengths must be a non-empty 1-D sequence, got shape {wavelengths.shape}")
    low, high = WAVELENGTH_RANGE_NM
    bad = wavelengths[~((wavelengths >= low) & (wavelengths <= high))]
    if bad.size:
        raise ValueError(
            f"wavelength {float(bad[0]):g} nm is outside the tabulated range {low:g}–{high:g} nm"
        )
    return wavelengths


def extinction_spectra(wavelengths_nm) -> np.ndarray:
    """Absorption per unit concentration of (HbO, Hb, water) at the given wavelengths.

    µa(λ) = E[λ, 0]·HbO[µM] + E[λ, 1]·Hb[µM] + E[λ, 2]·water[%], in mm⁻¹, with
    E_Hb(λ) = ln(10)·1e-7·ε(λ) (ε decadic, cm⁻¹/M) and E_water(λ) = µa_water(λ)/100.

    Arguments:
        wavelengths_nm: (L,) wavelengths in nm, within 650–1000 nm.

    Returns:
        (L, 3) float64 array in mm⁻¹ per µM, µM and % respectively.
    """
    wavelengths = check_wavelengths(wavelengths_nm)
    table = _spectra_table()
    grid = table["wavelength_nm"]
    interp = lambda name: np.interp(wavelengths, grid, table[name])  # noqa: E731
    to_natural_per_micromolar = np.log(10.0) * 1e-7
    return np.stack(
        [
            interp("hbo2_decadic") * to_natural_per_micromolar,
            interp("hb_decadic") * to_natural_per_micromolar,
            interp("water_mua_per_mm") / 100.0,
        ],
        axis=1,
    )
