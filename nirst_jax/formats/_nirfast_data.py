"""NIRFAST boundary-data files (`.paa`): amplitude and phase per source–detector link.

Two layouts are read, as NIRFAST writes them:
- spectral: a header `source det w661 w785 …` and rows `s d (active amplitude phase) × λ`;
- standard (one wavelength): a header `source det active amplitude phase` and rows of those.
Amplitudes are linear, phases in degrees (NIRFAST's convention); indices one-based in the file.
"""

from __future__ import annotations

import dataclasses
import os
import re
from pathlib import Path

import numpy as np

from .._atomic import atomic_path
from ..physics import MeasurementLayout


@dataclasses.dataclass(frozen=True)
class NirfastData:
    """The content of a `.paa` file.

    Attributes:
        link: (M, 2) zero-based (source, detector) of each row.
        active: (W, M) bool, whether each row is measured at each wavelength.
        amplitude: (W, M) linear amplitudes.
        phase_deg: (W, M) phases in degrees (0 for continuous-wave data).
        wavelengths_nm: (W,) wavelengths, or None for a standard (single-wavelength) file.
    """

    link: np.ndarray
    active: np.ndarray
    amplitude: np.ndarray
    phase_deg: np.ndarray
    wavelengths_nm: np.ndarray | None

    @property
    def has_phase(self) -> bool:
        """Whether any active measurement has a non-zero phase (frequency-domain data)."""
        return bool(np.any(self.phase_deg[self.active] != 0))

    def in_layout(self, layout: MeasurementLayout) -> tuple[np.ndarray, np.ndarray]:
        """(ln_amplitude, phase in radians), each (W, S, K) in `layout`'s slots, NaN where the
        file has no active row; refuses rows whose pair the layout lacks."""
        where = layout.slots()
        shape = (len(self.amplitude), *layout.shape)
        ln_amplitude, phase = np.full(shape, np.nan), np.full(shape, np.nan)
        for row, (s, d) in enumerate(self.link):
            if (int(s), int(d)) not in where:
                raise ValueError(f"link row {row + 1} (source {s + 1}, detector {d + 1}) is not in the layout")
            k = where[(int(s), int(d))]
            on = self.active[:, row]
            ln_amplitude[on, s, k] = np.log(self.amplitude[on, row])
            phase[on, s, k] = np.radians(self.phase_deg[on, row])
        return ln_amplitude, phase


def read_nirfast_data(path: str | os.PathLike) -> NirfastData:
    """Read a NIRFAST `.paa` file (module docstring).

    Raises:
        ValueError: naming the line, for a missing header, rows of the wrong length,
            non-numeric fields, indices below 1, or non-positive active amplitudes.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"NIRFAST data file {path} does not exist")
    lines = [line for line in path.read_text(errors="replace").splitlines() if line.strip()]
    if not lines or not lines[0].split()[0].lower().startswith("source"):
        raise ValueError(f"{path}: line 1 must be the header 'source det …' of a NIRFAST data file")
    header = lines[0].split()
    wavelengths = [float(m.group(1)) for word in header if (m := re.fullmatch(r"w([0-9.eE+-]+)", word))]
    spectral = bool(wavelengths)
    if not spectral and [w.lower() for w in header[:5]] != ["source", "det", "active", "amplitude", "phase"]:
        raise ValueError(f"{path}: header {' '.join(header)!r} is neither 'source det w… w…' nor "
                         "'source det active amplitude phase'")
    width = 2 + 3 * len(wavelengths) if spectral else 5
    rows = []
    for number, line in enumerate(lines[1:], start=2):
        fields = line.split()
        if len(fields) != width:
            raise ValueError(f"{path}, line {number}: {len(fields)} fields, expected {width}")
        try:
            rows.append([float(f) for f in fields])
        except ValueError:
            raise ValueError(f"{path}, line {number}: a field is not a number: {line.strip()!r}") from None
    if not rows:
        raise ValueError(f"{path}: no data rows")
    table = np.asarray(rows)
    pairs = table[:, :2]
    if (pairs < 1).any() or (pairs != np.round(pairs)).any():
        row = int(np.argmax(((pairs < 1) | (pairs != np.round(pairs))).any(1)))
        raise ValueError(f"{path}, line {row + 2}: source and detector must be integers ≥ 1, got {pairs[row].tolist()}")
    values = table[:, 2:].reshape(len(table), -1, 3)  # (M, W, active/amplitude/phase)
    active, amplitude, phase = (values[..., i].T for i in range(3))
    active = active != 0
    bad = np.argwhere(active & ~(np.isfinite(amplitude) & (amplitude > 0)))
    if bad.size:
        w, row = bad[0]
        raise ValueError(f"{path}, line {row + 2}: active amplitude {float(amplitude[w, row])!r} must be positive and finite")
    return NirfastData(pairs.astype(np.int64) - 1, active, amplitude, np.nan_to_num(phase),
                       np.asarray(wavelengths) if spectral else None)


def write_nirfast_data(path: str | os.PathLike, data: NirfastData) -> None:
    """Write a `.paa` file in NIRFAST's spectral layout (standard when `wavelengths_nm` is None), atomically."""
    if data.wavelengths_nm is None and len(data.amplitude) != 1:
        raise ValueError("a standard (single-wavelength) file holds one wavelength")
    header = ["source", "det", *(f"w{w:g}\t\t" for w in data.wavelengths_nm)] if data.wavelengths_nm is not None \
        else ["source", "det", "active", "amplitude", "phase"]
    lines = ["\t".join(header)]
    for row, (s, d) in enumerate(np.asarray(data.link)):
        fields = [f"{s + 1}", f"{d + 1}"]
        for w in range(len(data.amplitude)):
            fields += [f"{int(data.active[w, row])}", f"{data.amplitude[w, row]:.17g}", f"{data.phase_deg[w, row]:.17g}"]
        lines.append("\t".join(fields))
    with atomic_path(Path(path)) as temporary:
        temporary.write_text("\n".join(lines) + "\n")
