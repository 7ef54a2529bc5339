"""SNIRF files: exact round trips (CW and frequency domain), a file written independently with
h5py following the specification, and malformed files refused naming the field."""

import h5py
import numpy as np
import pytest

from nirst_jax.formats import SnirfData, read_snirf, write_snirf
from nirst_jax.physics import MeasurementLayout

WAVELENGTHS = np.array([690.0, 785.0, 830.0])


def _ring_data(frequency_hz=0.0, active_fibres=None, seed=0):
    rng = np.random.default_rng(seed)
    layout = MeasurementLayout.ring(8, active_fibres=active_fibres)
    angles = np.radians(np.arange(8) * 45.0 + 10.0)
    fibres = 41.0 * np.column_stack([np.cos(angles), np.sin(angles)])
    shape = (len(WAVELENGTHS), 8, 7)
    ln_amplitude = np.where(np.asarray(layout.active)[None], rng.normal(-12.0, 3.0, shape), np.nan)
    phase = np.where(np.asarray(layout.active)[None], rng.uniform(0, 3, shape), np.nan) if frequency_hz else None
    return SnirfData(ln_amplitude, phase, layout, fibres, fibres, WAVELENGTHS, frequency_hz)


@pytest.mark.parametrize("frequency_hz", [0.0, 1e8])
def test_round_trip(tmp_path, frequency_hz):
    data = _ring_data(frequency_hz)
    write_snirf(tmp_path / "a.snirf", data)
    back = read_snirf(tmp_path / "a.snirf")
    np.testing.assert_array_equal(np.asarray(back.layout.detector_index), np.asarray(data.layout.detector_index))
    np.testing.assert_allclose(back.ln_amplitude, data.ln_amplitude, rtol=1e-15, atol=1e-14)  # exp then log
    if frequency_hz:
        np.testing.assert_array_equal(back.phase, data.phase)
    else:
        assert back.phase is None
    np.testing.assert_array_equal(back.sources, data.sources)
    np.testing.assert_array_equal(back.detectors, data.detectors)
    np.testing.assert_array_equal(back.wavelengths_nm, WAVELENGTHS)
    assert back.frequency_hz == frequency_hz


def test_masked_fibres_come_back_in_the_original_layout(tmp_path):
    data = _ring_data(active_fibres=[0, 2, 3, 5, 7])
    write_snirf(tmp_path / "a.snirf", data)
    back = read_snirf(tmp_path / "a.snirf")
    assert np.asarray(back.layout.detector_index).shape == (8, 4)  # only measured pairs are listed
    ln_amplitude, phase = back.in_layout(data.layout)
    assert phase is None
    np.testing.assert_allclose(ln_amplitude, data.ln_amplitude, rtol=1e-15, atol=1e-14)
    assert np.array_equal(np.isnan(ln_amplitude), np.isnan(data.ln_amplitude))
    with pytest.raises(ValueError, match="not in the layout"):
        back.in_layout(MeasurementLayout.from_pairs([[0, 2]], 8))


def _independent_file(path, *, phase_unit="deg", length_unit="cm", drop=None, data_type=102):
    """A frequency-domain file written by hand from the specification: indexed /nirs1,
    measurementLists arrays, 3D positions in one plane, fixed-length byte strings, MHz, degrees."""
    sources = np.array([[0.0, 4.0, 5.0], [4.0, 0.0, 5.0]])  # cm
    detectors = np.array([[0.0, -4.0, 5.0], [-4.0, 0.0, 5.0], [2.8, 2.8, 5.0]])
    pairs = [(1, 1), (1, 2), (2, 2), (2, 3)]
    amplitude = np.array([1e-5, 2e-6, 3e-5, 4e-4])
    phase = np.array([30.0, 45.0, 20.0, 10.0])  # degrees
    rows, values = [], []
    for w in (1, 2):
        for (s, d), a, p in zip(pairs, amplitude, phase):
            rows.append((s, d, w, 101)); values.append(a * w)
            rows.append((s, d, w, data_type)); values.append(p * w)
    rows = np.array(rows)
    with h5py.File(path, "w") as f:
        f.create_dataset("formatVersion", data=np.bytes_("1.1"))
        nirs = f.create_group("nirs1")
        tags = nirs.create_group("metaDataTags")
        for key, value in {"SubjectID": "s01", "MeasurementDate": "2026-01-02", "MeasurementTime": "10:00:00Z",
                           "LengthUnit": length_unit, "TimeUnit": "s", "FrequencyUnit": "MHz"}.items():
            tags.create_dataset(key, data=np.bytes_(value))
        block = nirs.create_group("data1")
        block.create_dataset("dataTimeSeries", data=np.vstack([np.array(values) * 0.5, values]))
        block.create_dataset("time", data=np.array([0.0, 0.1]))
        lists = block.create_group("measurementLists")
        for name, column in (("sourceIndex", 0), ("detectorIndex", 1), ("wavelengthIndex", 2), ("dataType", 3)):
            lists.create_dataset(name, data=rows[:, column].astype(np.int32))
        lists.create_dataset("dataTypeIndex", data=np.ones(len(rows), np.int32))
        if phase_unit:
            units = [phase_unit if t == data_type else "V" for t in rows[:, 3]]
            lists.create_dataset("dataUnit", data=np.array(units, dtype="S3"))
        probe = nirs.create_group("probe")
        probe.create_dataset("wavelengths", data=np.array([760.0, 850.0]))
        probe.create_dataset("sourcePos3D", data=sources)
        probe.create_dataset("detectorPos3D", data=detectors)
        probe.create_dataset("frequencies", data=np.array([100.0]))
        if drop:
            del f[drop]
    return sources[:, :2] * 10, detectors[:, :2] * 10, pairs, amplitude, phase


def test_an_independently_written_file_reads_correctly(tmp_path):
    sources, detectors, pairs, amplitude, phase = _independent_file(tmp_path / "x.snirf")
    data = read_snirf(tmp_path / "x.snirf", frame=1)
    np.testing.assert_allclose(data.sources, sources)  # cm → mm, z plane dropped
    np.testing.assert_allclose(data.detectors, detectors)
    assert data.frequency_hz == 1e8
    np.testing.assert_array_equal(data.wavelengths_nm, [760.0, 850.0])
    index = np.asarray(data.layout.detector_index)
    for (s, d), a, p in zip(pairs, amplitude, phase):
        k = list(index[s - 1]).index(d - 1)
        for w in (1, 2):
            assert data.ln_amplitude[w - 1, s - 1, k] == pytest.approx(np.log(a * w), rel=1e-12)
            assert data.phase[w - 1, s - 1, k] == pytest.approx(np.radians(p * w), rel=1e-12)
    first = read_snirf(tmp_path / "x.snirf", frame=0)
    assert first.ln_amplitude[0, 0, 0] == pytest.approx(np.log(0.5 * amplitude[0]))


@pytest.mark.parametrize(
    "change, match",
    [
        (dict(drop="nirs1/probe/wavelengths"), "probe/wavelengths"),
        (dict(drop="nirs1/metaDataTags/LengthUnit"), "LengthUnit"),
        (dict(drop="nirs1/probe/frequencies"), "probe/frequencies"),
        (dict(length_unit="inch"), "LengthUnit 'inch'"),
        (dict(phase_unit=None), "phase_unit"),
        (dict(data_type=99999), "dataType \\[99999\\]"),
    ],
)
def test_malformed_files_name_the_field(tmp_path, change, match):
    _independent_file(tmp_path / "x.snirf", **change)
    with pytest.raises(ValueError, match=match):
        read_snirf(tmp_path / "x.snirf")


def test_bad_values_and_files_are_refused(tmp_path):
    _independent_file(tmp_path / "x.snirf")
    assert read_snirf(tmp_path / "x.snirf", phase_unit="rad").frequency_hz == 1e8
    with h5py.File(tmp_path / "x.snirf", "r+") as f:
        f["nirs1/data1/dataTimeSeries"][1, 0] = -1.0
    with pytest.raises(ValueError, match="channel 1 .* amplitude -1.0"):
        read_snirf(tmp_path / "x.snirf", frame=1)
    with pytest.raises(ValueError, match="frame 2"):
        read_snirf(tmp_path / "x.snirf", frame=2)
    with h5py.File(tmp_path / "x.snirf", "r+") as f:
        f["nirs1/data1/measurementLists/sourceIndex"][0] = 9
    with pytest.raises(ValueError, match="sourceIndex = 9 is outside 1..2"):
        read_snirf(tmp_path / "x.snirf")
    with h5py.File(tmp_path / "x.snirf", "r+") as f:
        f["nirs1/data1/measurementLists/sourceIndex"][0] = 1
        f["nirs1/data1/measurementLists/detectorIndex"][2] = 1  # channel 3 now repeats channel 1
    with pytest.raises(ValueError, match="repeats source 1, detector 1"):
        read_snirf(tmp_path / "x.snirf")
    (tmp_path / "text.snirf").write_text("not hdf5")
    with pytest.raises(ValueError, match="not an HDF5"):
        read_snirf(tmp_path / "text.snirf")
    with pytest.raises(FileNotFoundError):
        read_snirf(tmp_path / "missing.snirf")



def _cw_file(path, channels, series, sources, detectors, wavelengths, *, grouped):
    """A CW file written by hand from the specification: `/nirs` (not indexed), variable-length
    strings, 2D positions in mm; channel k + 1 is `channels[k]` = (wavelength, source, detector),
    1-based. grouped: one `measurementList{k}` group per channel with scalar fields (the classic
    encoding), created in a shuffled order; else the `measurementLists` arrays (SNIRF ≥ 1.1)."""
    text = h5py.string_dtype()
    rows = {"sourceIndex": [c[1] for c in channels], "detectorIndex": [c[2] for c in channels],
            "wavelengthIndex": [c[0] for c in channels], "dataType": [1] * len(channels),
            "dataTypeIndex": [1] * len(channels)}
    with h5py.File(path, "w") as f:
        f.create_dataset("formatVersion", data="1.0", dtype=text)
        nirs = f.create_group("nirs")
        tags = nirs.create_group("metaDataTags")
        for key, value in {"SubjectID": "s02", "MeasurementDate": "2026-02-03", "MeasurementTime": "09:30:00",
                           "LengthUnit": "mm", "TimeUnit": "s", "FrequencyUnit": "Hz"}.items():
            tags.create_dataset(key, data=value, dtype=text)
        block = nirs.create_group("data1")
        block.create_dataset("dataTimeSeries", data=series)  # time × channel
        block.create_dataset("time", data=np.arange(len(series)) * 0.5)
        if grouped:
            for k in np.random.default_rng(1).permutation(len(channels)):
                entry = block.create_group(f"measurementList{k + 1}")
                for name, column in rows.items():
                    entry.create_dataset(name, data=np.int32(column[k]))
        else:
            lists = block.create_group("measurementLists")
            for name, column in rows.items():
                lists.create_dataset(name, data=np.array(column, np.int32))
        probe = nirs.create_group("probe")
        probe.create_dataset("wavelengths", data=wavelengths)
        probe.create_dataset("sourcePos2D", data=sources)
        probe.create_dataset("detectorPos2D", data=detectors)
        probe.create_dataset("sourceLabels", data=[f"S{i + 1}" for i in range(len(sources))], dtype=text)
        probe.create_dataset("detectorLabels", data=[f"D{i + 1}" for i in range(len(detectors))], dtype=text)
        return list(block)


def test_an_independent_file_with_indexed_measurement_list_groups(tmp_path):
    """The classic encoding `/nirs/data1/measurementList{k}`, channels in a shuffled order: neither
    the groups' creation order nor HDF5's alphabetical order (measurementList10 before
    measurementList2) is the channel order; amplitudes land in their (wavelength, source,
    detector) slots."""
    rng = np.random.default_rng(17)
    sources = np.array([[0.0, 30.0], [30.0, 0.0], [-21.0, -21.0]])  # mm
    detectors = np.array([[0.0, -30.0], [-30.0, 0.0], [21.0, 21.0], [21.0, -21.0]])
    pairs = [(1, 1), (1, 2), (1, 4), (2, 2), (2, 3), (3, 3), (3, 4), (3, 1)]  # 1-based; not every pair
    wavelengths = np.array([690.0, 750.0, 830.0])
    expected = {(w, s, d): float(rng.uniform(1e-6, 1e-2)) for w in (1, 2, 3) for s, d in pairs}
    channels = [list(expected)[i] for i in rng.permutation(len(expected))]
    values = np.array([expected[c] for c in channels])
    series = np.vstack([values, 2 * values, 3 * values])
    members = _cw_file(tmp_path / "grouped.snirf", channels, series, sources, detectors, wavelengths, grouped=True)
    assert members[:3] == ["dataTimeSeries", "measurementList1", "measurementList10"]

    for frame in (0, 2):
        data = read_snirf(tmp_path / "grouped.snirf", frame=frame)
        assert data.phase is None and data.frequency_hz == 0.0
        np.testing.assert_array_equal(data.wavelengths_nm, wavelengths)
        np.testing.assert_array_equal(data.sources, sources)
        np.testing.assert_array_equal(data.detectors, detectors)
        index, active = np.asarray(data.layout.detector_index), np.asarray(data.layout.active)
        assert {(s + 1, int(index[s, k]) + 1) for s, k in zip(*np.nonzero(active))} == set(pairs)
        for (w, s, d), amplitude in expected.items():
            k = list(index[s - 1]).index(d - 1)
            assert data.ln_amplitude[w - 1, s - 1, k] == pytest.approx(np.log((frame + 1) * amplitude), rel=1e-13)
        assert np.isnan(data.ln_amplitude[:, ~active]).all()
    # The same channels in the array encoding read the same.
    _cw_file(tmp_path / "arrays.snirf", channels, series, sources, detectors, wavelengths, grouped=False)
    grouped, listed = read_snirf(tmp_path / "grouped.snirf", frame=1), read_snirf(tmp_path / "arrays.snirf", frame=1)
    np.testing.assert_array_equal(np.asarray(grouped.layout.detector_index), np.asarray(listed.layout.detector_index))
    np.testing.assert_array_equal(grouped.ln_amplitude, listed.ln_amplitude)
