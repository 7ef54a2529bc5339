"""SNIRF files (the fNIRS community's HDF5 format, https://github.com/fNIRS/snirf) ↔ our
(wavelength, source, detector slot) measurement arrays.

One frame (time point) of continuous-wave amplitudes (dataType 1) or frequency-domain AC
amplitudes and phases (dataTypes 101 and 102, at `probe/frequencies[dataTypeIndex]`), with 2D
probe positions. Both measurement-list encodings are read (`measurementList{k}` groups and the
`measurementLists` arrays); `measurementList{k}` groups are written (SNIRF 1.1).
"""

from __future__ import annotations

import dataclasses
import os
import re
from pathlib import Path

import numpy as np

from .._atomic import atomic_path
from ..physics import MeasurementLayout

CW_AMPLITUDE, FD_AMPLITUDE, FD_PHASE = 1, 101, 102
_LENGTH_TO_MM = {"mm": 1.0, "cm": 10.0, "m": 1000.0, "um": 1e-3, "μm": 1e-3}
_FREQUENCY_TO_HZ = {"Hz": 1.0, "kHz": 1e3, "MHz": 1e6, "GHz": 1e9}
_PHASE_TO_RAD = {"rad": 1.0, "deg": np.pi / 180.0}


@dataclasses.dataclass(frozen=True)
class SnirfData:
    """One frame of tomographic measurements with its probe.

    Attributes:
        ln_amplitude: (L, S, K) ln of the (AC) amplitude per wavelength, source and detector
            slot of `layout`; NaN where the layout's slot is inactive.
        phase: (L, S, K) phase lag in radians (frequency domain), or None (continuous wave).
        layout: which detector each (source, slot) uses, and which slots hold data.
        sources: (S, 2) source positions in mm.
        detectors: (D, 2) detector positions in mm.
        wavelengths_nm: (L,) wavelengths.
        frequency_hz: modulation frequency (0 for continuous wave).
    """

    ln_amplitude: np.ndarray
    phase: np.ndarray | None
    layout: MeasurementLayout
    sources: np.ndarray
    detectors: np.ndarray
    wavelengths_nm: np.ndarray
    frequency_hz: float = 0.0

    def __post_init__(self):
        shape = (len(self.wavelengths_nm), *np.shape(self.layout.detector_index))
        if np.shape(self.ln_amplitude) != shape:
            raise ValueError(f"ln_amplitude has shape {np.shape(self.ln_amplitude)}, expected {shape}")
        if (self.phase is None) != (self.frequency_hz == 0):
            raise ValueError("phase goes with a frequency_hz > 0, and only with it")
        if self.phase is not None and np.shape(self.phase) != shape:
            raise ValueError(f"phase has shape {np.shape(self.phase)}, expected {shape}")
        for name, count in (("sources", shape[1]), ("detectors", None)):
            value = np.asarray(getattr(self, name))
            if value.ndim != 2 or value.shape[1] != 2 or (count is not None and len(value) != count):
                raise ValueError(f"{name} must have shape ({count or 'D'}, 2), got {value.shape}")
        if np.asarray(self.layout.detector_index).max(initial=-1) >= len(self.detectors):
            raise ValueError("the layout uses detectors beyond those given")

    def in_layout(self, layout: MeasurementLayout) -> tuple[np.ndarray, np.ndarray | None]:
        """The data rearranged for another layout of the same optodes (e.g. a forward model's).

        Arguments:
            layout: the target (S, K′) layout.

        Returns:
            (ln_amplitude, phase) of shape (L, S, K′), NaN in slots the file has no data for
            (phase None for continuous-wave data).

        Raises:
            ValueError: the file holds a source–detector pair the target layout lacks.
        """
        if layout.shape[0] != len(self.sources):
            raise ValueError(f"the layout has {layout.shape[0]} sources, the data {len(self.sources)}")
        where = layout.slots()
        shape = (len(self.wavelengths_nm), *layout.shape)
        ln_amplitude = np.full(shape, np.nan)
        phase = None if self.phase is None else np.full(shape, np.nan)
        for (s, d), k in self.layout.slots().items():
            if (s, d) not in where:
                raise ValueError(f"source {s + 1}, detector {d + 1} of the data is not in the layout")
            ln_amplitude[:, s, where[(s, d)]] = self.ln_amplitude[:, s, k]
            if phase is not None:
                phase[:, s, where[(s, d)]] = self.phase[:, s, k]
        return ln_amplitude, phase


def write_snirf(path: str | os.PathLike, data: SnirfData, *, subject_id: str = "unknown") -> None:
    """Write one frame as a SNIRF 1.1 file (atomically), positions in mm.

    Arguments:
        path: the `.snirf` file.
        data: what to write; its active slots become the measurement list, wavelength by
            wavelength (AC amplitude then phase per channel in the frequency domain).
        subject_id: the `SubjectID` metadata tag.
    """
    import h5py

    active = np.asarray(data.layout.active)
    index = np.asarray(data.layout.detector_index)
    sources, slots = np.nonzero(active)
    columns, channels = [], []
    for w in range(len(data.wavelengths_nm)):
        amplitude = np.exp(np.asarray(data.ln_amplitude)[w][sources, slots])
        if data.phase is None:
            columns.append(amplitude)
            channels += [(s, index[s, k], w, CW_AMPLITUDE, None) for s, k in zip(sources, slots)]
        else:
            columns += [amplitude, np.asarray(data.phase)[w][sources, slots]]
            channels += [(s, index[s, k], w, FD_AMPLITUDE, None) for s, k in zip(sources, slots)]
            channels += [(s, index[s, k], w, FD_PHASE, "rad") for s, k in zip(sources, slots)]
    series = np.concatenate(columns)[None, :]
    with atomic_path(Path(path)) as temporary, h5py.File(temporary, "w") as file:
        file["formatVersion"] = "1.1"
        nirs = file.create_group("nirs")
        tags = nirs.create_group("metaDataTags")
        for key, value in {"SubjectID": subject_id, "MeasurementDate": "unknown", "MeasurementTime": "unknown",
                           "LengthUnit": "mm", "TimeUnit": "s", "FrequencyUnit": "Hz"}.items():
            tags[key] = value
        block = nirs.create_group("data1")
        block["dataTimeSeries"] = series
        block["time"] = np.zeros(1)
        for k, (s, d, w, kind, unit) in enumerate(channels, start=1):
            entry = block.create_group(f"measurementList{k}")
            entry["sourceIndex"] = np.int32(s + 1)
            entry["detectorIndex"] = np.int32(d + 1)
            entry["wavelengthIndex"] = np.int32(w + 1)
            entry["dataType"] = np.int32(kind)
            entry["dataTypeIndex"] = np.int32(1)
            if unit:
                entry["dataUnit"] = unit
        probe = nirs.create_group("probe")
        probe["wavelengths"] = np.asarray(data.wavelengths_nm, np.float64)
        probe["sourcePos2D"] = np.asarray(data.sources, np.float64)
        probe["detectorPos2D"] = np.asarray(data.detectors, np.float64)
        if data.phase is not None:
            probe["frequencies"] = np.array([float(data.frequency_hz)])


def read_snirf(path: str | os.PathLike, *, frame: int = 0, phase_unit: str | None = None) -> SnirfData:
    """Read one frame of a SNIRF file's first data block.

    Arguments:
        path: the `.snirf` file.
        frame: the time point to read.
        phase_unit: "rad" or "deg", for phase channels that carry no `dataUnit`.

    Returns:
        `SnirfData` with positions in mm (converted from the file's `LengthUnit`).

    Raises:
        ValueError: naming the field, for a missing required field, an unsupported data type,
            a 3D probe that is not planar, out-of-range indices, repeated channels,
            non-positive amplitudes or mixed CW and frequency-domain channels.
    """
    import h5py

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"SNIRF file {path} does not exist")
    try:
        file = h5py.File(path, "r")
    except OSError as error:
        raise ValueError(f"{path}: not an HDF5 (SNIRF) file ({error})") from None
    with file:
        reader = _Reader(path, file)
        nirs = reader.group(file, _first_indexed(file, "nirs") or "nirs")
        tags = reader.group(nirs, "metaDataTags")
        to_mm = reader.unit(tags, "LengthUnit", _LENGTH_TO_MM)
        block = reader.group(nirs, _first_indexed(nirs, "data") or "data1")
        series = np.asarray(reader.dataset(block, "dataTimeSeries"), np.float64)
        if series.ndim == 1:
            series = series[:, None]
        if series.ndim != 2:
            raise ValueError(f"{path}: {block.name}/dataTimeSeries must be 2D (time × channels), got {series.shape}")
        if not 0 <= frame < series.shape[0]:
            raise ValueError(f"{path}: frame {frame} is outside the file's {series.shape[0]} time points")
        channels = reader.measurement_list(block, series.shape[1])
        probe = reader.group(nirs, "probe")
        wavelengths = np.asarray(reader.dataset(probe, "wavelengths"), np.float64).reshape(-1)
        sources = reader.positions(probe, "source") * to_mm
        detectors = reader.positions(probe, "detector") * to_mm
        kinds = set(channels["dataType"].tolist())
        frequency = 0.0
        if kinds - {CW_AMPLITUDE, FD_AMPLITUDE, FD_PHASE}:
            raise ValueError(
                f"{path}: dataType {sorted(kinds - {CW_AMPLITUDE, FD_AMPLITUDE, FD_PHASE})} is not supported "
                "(nirst-jax reads raw CW amplitude 1, FD AC amplitude 101 and FD phase 102)"
            )
        if CW_AMPLITUDE in kinds and kinds & {FD_AMPLITUDE, FD_PHASE}:
            raise ValueError(f"{path}: the data block mixes CW (1) and frequency-domain (101, 102) channels")
        if kinds & {FD_AMPLITUDE, FD_PHASE}:
            if kinds != {FD_AMPLITUDE, FD_PHASE}:
                raise ValueError(f"{path}: frequency-domain data need both AC amplitude (101) and phase (102) channels")
            frequencies = np.asarray(reader.dataset(probe, "frequencies"), np.float64).reshape(-1)
            used = np.unique(channels["dataTypeIndex"])
            if len(used) != 1 or not 1 <= used[0] <= len(frequencies):
                raise ValueError(f"{path}: measurementList dataTypeIndex {used.tolist()} must name one of the "
                                 f"{len(frequencies)} probe/frequencies")
            frequency = float(frequencies[used[0] - 1]) * reader.unit(tags, "FrequencyUnit", _FREQUENCY_TO_HZ)
    values = series[frame]
    for name, limit in (("sourceIndex", len(sources)), ("detectorIndex", len(detectors)), ("wavelengthIndex", len(wavelengths))):
        bad = np.flatnonzero((channels[name] < 1) | (channels[name] > limit))
        if bad.size:
            raise ValueError(f"{path}: measurementList{bad[0] + 1}/{name} = {channels[name][bad[0]]} is outside 1..{limit}")
    keys = np.stack([channels["sourceIndex"], channels["detectorIndex"], channels["wavelengthIndex"], channels["dataType"]], 1)
    _, first, counts = np.unique(keys, axis=0, return_index=True, return_counts=True)
    if (counts > 1).any():
        k = first[np.argmax(counts > 1)]
        raise ValueError(f"{path}: measurementList{k + 1} repeats source {keys[k, 0]}, detector {keys[k, 1]}, "
                         f"wavelength {keys[k, 2]}, dataType {keys[k, 3]}")
    amplitude_kind = FD_AMPLITUDE if frequency else CW_AMPLITUDE
    is_amplitude = channels["dataType"] == amplitude_kind
    bad = np.flatnonzero(is_amplitude & ~(np.isfinite(values) & (values > 0)))
    if bad.size:
        raise ValueError(f"{path}: channel {bad[0] + 1} (measurementList{bad[0] + 1}) has amplitude {float(values[bad[0]])!r}; "
                         "amplitudes must be positive and finite")
    pairs = np.unique(keys[is_amplitude][:, :2] - 1, axis=0)
    layout = MeasurementLayout.from_pairs(pairs, len(sources))
    index = np.asarray(layout.detector_index)
    shape = (len(wavelengths), *index.shape)
    slot_of = layout.slots()
    ln_amplitude = np.full(shape, np.nan)
    phase = np.full(shape, np.nan) if frequency else None
    filled = np.zeros(shape, bool)
    for c in range(len(values)):
        s, d, w = keys[c, 0] - 1, keys[c, 1] - 1, keys[c, 2] - 1
        k = slot_of[(s, d)]
        if keys[c, 3] == FD_PHASE:
            phase[w, s, k] = values[c] * _phase_scale(path, channels["dataUnit"][c], phase_unit, c)
        else:
            ln_amplitude[w, s, k] = np.log(values[c])
            filled[w, s, k] = True
    missing = np.argwhere(~filled & np.asarray(layout.active)[None])
    if missing.size:
        w, s, k = missing[0]
        raise ValueError(f"{path}: source {s + 1}, detector {index[s, k] + 1} has no amplitude at wavelength {w + 1}")
    if phase is not None and np.isnan(phase[filled]).any():
        w, s, k = np.argwhere(filled & np.isnan(phase))[0]
        raise ValueError(f"{path}: source {s + 1}, detector {index[s, k] + 1} has no phase at wavelength {w + 1}")
    return SnirfData(ln_amplitude, phase, layout, sources, detectors, wavelengths, frequency)


def _phase_scale(path, unit, fallback, channel) -> float:
    unit = unit or fallback
    if unit is None:
        raise ValueError(f"{path}: measurementList{channel + 1} (phase) has no dataUnit; pass phase_unit='rad' or 'deg'")
    aliases = {"radian": "rad", "radians": "rad", "degree": "deg", "degrees": "deg"}
    unit = aliases.get(unit, unit)
    if unit not in _PHASE_TO_RAD:
        raise ValueError(f"{path}: measurementList{channel + 1}/dataUnit {unit!r} is not a phase unit (rad or deg)")
    return _PHASE_TO_RAD[unit]


def _first_indexed(group, name: str) -> str | None:
    """The lowest-numbered `name{i}` member of an HDF5 group, else None."""
    numbered = [(int(m.group(1)), key) for key in group if (m := re.fullmatch(rf"{name}(\d+)", key))]
    return min(numbered)[1] if numbered else None


class _Reader:
    """Field access that names the missing or malformed field."""

    def __init__(self, path: Path, file):
        self.path = path
        self.file = file

    def group(self, parent, name: str):
        import h5py

        item = parent.get(name)
        if not isinstance(item, h5py.Group):
            raise ValueError(f"{self.path}: required group {parent.name.rstrip('/')}/{name} is missing")
        return item

    def dataset(self, parent, name: str):
        import h5py

        item = parent.get(name)
        if not isinstance(item, h5py.Dataset):
            raise ValueError(f"{self.path}: required field {parent.name.rstrip('/')}/{name} is missing")
        return item[()]

    def text(self, parent, name: str) -> str:
        value = self.dataset(parent, name)
        value = np.asarray(value).reshape(-1)[0] if np.ndim(value) else value
        return value.decode() if isinstance(value, bytes) else str(value)

    def unit(self, tags, name: str, table: dict) -> float:
        unit = self.text(tags, name)
        if unit not in table:
            raise ValueError(f"{self.path}: metaDataTags/{name} {unit!r} is not one of {sorted(table)}")
        return table[unit]

    def positions(self, probe, kind: str) -> np.ndarray:
        if f"{kind}Pos2D" in probe:
            value = np.asarray(self.dataset(probe, f"{kind}Pos2D"), np.float64)
        elif f"{kind}Pos3D" in probe:
            value = np.asarray(self.dataset(probe, f"{kind}Pos3D"), np.float64)
            if value.ndim == 2 and value.shape[1] == 3:
                if np.ptp(value[:, 2]) > 1e-9 * max(np.ptp(value[:, :2]), 1.0):
                    raise ValueError(f"{self.path}: probe/{kind}Pos3D is not in one z plane; nirst-jax images 2D slices")
                value = value[:, :2]
        else:
            raise ValueError(f"{self.path}: probe/{kind}Pos2D (or {kind}Pos3D) is missing")
        if value.ndim != 2 or value.shape[1] != 2 or not np.isfinite(value).all():
            raise ValueError(f"{self.path}: probe/{kind} positions must be finite (N, 2), got shape {value.shape}")
        return value

    def measurement_list(self, block, n_channels: int) -> dict:
        """Per-channel fields as arrays, from either encoding."""
        required = ("sourceIndex", "detectorIndex", "wavelengthIndex", "dataType", "dataTypeIndex")
        if "measurementLists" in block:
            lists = self.group(block, "measurementLists")
            fields = {name: np.asarray(self.dataset(lists, name)).reshape(-1).astype(np.int64) for name in required}
            units = list(np.asarray(lists["dataUnit"][()]).reshape(-1)) if "dataUnit" in lists else [None] * n_channels
        else:
            entries = [self.group(block, f"measurementList{k}") for k in range(1, n_channels + 1)]
            extra = _first_indexed_count(block, "measurementList")
            if extra != n_channels:
                raise ValueError(f"{self.path}: {block.name}/dataTimeSeries has {n_channels} channels but "
                                 f"{extra} measurementList groups")
            fields = {name: np.array([int(np.asarray(self.dataset(e, name)).reshape(-1)[0]) for e in entries])
                      for name in required}
            units = [self.text(e, "dataUnit") if "dataUnit" in e else None for e in entries]
        for name, value in fields.items():
            if len(value) != n_channels:
                raise ValueError(f"{self.path}: measurementLists/{name} has {len(value)} entries for {n_channels} channels")
        fields["dataUnit"] = [u.decode() if isinstance(u, bytes) else u for u in units]
        return fields


def _first_indexed_count(group, name: str) -> int:
    return sum(1 for key in group if re.fullmatch(rf"{name}\d+", key))
