"""NIRFAST `.paa` boundary-data files: NIRFAST's own printf layout, round trips, errors."""

import numpy as np
import pytest

from nirst_jax.formats import NirfastData, read_nirfast_data, write_nirfast_data
from nirst_jax.physics import MeasurementLayout


def _nirfast_printf(path, wavelengths, rows):
    """A spectral file as NIRFAST's save_data prints it (%-10g fields, tab-separated)."""
    header = "source\tdet\t" + "".join(f"w{w:<10g}\t{'':<10s}\t{'':<10s}\t" for w in wavelengths)
    body = ["".join(f"{v:<10g}\t" for v in row) for row in rows]
    path.write_text("\n".join([header, *body]) + "\n")


def test_reads_nirfast_spectral_layout(tmp_path):
    rows = [[1, 2, 1, 1.5e-3, 12.5, 1, 2.5e-3, 10.0], [1, 3, 1, 4e-4, 20.0, 0, 0, 0], [2, 1, 1, 1.4e-3, 12.0, 1, 2.4e-3, 9.5]]
    _nirfast_printf(tmp_path / "d.paa", (661, 785), rows)
    data = read_nirfast_data(tmp_path / "d.paa")
    np.testing.assert_array_equal(data.wavelengths_nm, [661, 785])
    np.testing.assert_array_equal(data.link, [[0, 1], [0, 2], [1, 0]])
    np.testing.assert_array_equal(data.active, [[True, True, True], [True, False, True]])
    np.testing.assert_allclose(data.amplitude[:, 0], [1.5e-3, 2.5e-3])
    assert data.has_phase
    layout = MeasurementLayout.from_pairs([[0, 1], [0, 2], [1, 0], [1, 2]], 2)
    ln_amplitude, phase = data.in_layout(layout)
    assert ln_amplitude.shape == (2, 2, 2)
    assert ln_amplitude[0, 0, 0] == pytest.approx(np.log(1.5e-3)) and phase[1, 1, 0] == pytest.approx(np.radians(9.5))
    assert np.isnan(ln_amplitude[1, 0, 1]) and np.isnan(ln_amplitude[:, 1, 1]).all()  # inactive, and not in the file
    with pytest.raises(ValueError, match="link row 3"):
        data.in_layout(MeasurementLayout.from_pairs([[0, 1], [0, 2]], 2))


@pytest.mark.parametrize("wavelengths", [None, np.array([690.0, 830.0, 910.0])])
def test_round_trip(tmp_path, wavelengths):
    rng = np.random.default_rng(0)
    w = 1 if wavelengths is None else len(wavelengths)
    link = np.array([[s, d] for s in range(4) for d in range(4) if s != d])
    data = NirfastData(link, rng.random((w, len(link))) > 0.2, rng.uniform(1e-6, 1e-2, (w, len(link))),
                       rng.uniform(0, 40, (w, len(link))), wavelengths)
    write_nirfast_data(tmp_path / "r.paa", data)
    back = read_nirfast_data(tmp_path / "r.paa")
    for field in ("link", "active", "amplitude", "phase_deg"):
        np.testing.assert_array_equal(getattr(back, field), getattr(data, field))
    if wavelengths is None:
        assert back.wavelengths_nm is None
    else:
        np.testing.assert_array_equal(back.wavelengths_nm, wavelengths)


@pytest.mark.parametrize(
    "text, match",
    [
        ("1 2 1 0.1 0\n", "line 1 must be the header"),
        ("source det foo bar baz\n1 2 1 0.1 0\n", "neither"),
        ("source det active amplitude phase\n1 2 1 0.1\n", "line 2: 4 fields, expected 5"),
        ("source det active amplitude phase\n1 2 1 abc 0\n", "line 2: a field is not a number"),
        ("source det active amplitude phase\n0 2 1 0.1 0\n", "integers ≥ 1"),
        ("source det active amplitude phase\n1 2 1 -0.1 0\n", "amplitude -0.1 must be positive"),
        ("source det active amplitude phase\n", "no data rows"),
    ],
)
def test_malformed_files_are_refused_naming_the_line(tmp_path, text, match):
    (tmp_path / "bad.paa").write_text(text)
    with pytest.raises(ValueError, match=match):
        read_nirfast_data(tmp_path / "bad.paa")

