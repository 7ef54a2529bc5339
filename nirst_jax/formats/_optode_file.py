"""Optode positions from CSV or JSON files: sources, detectors and (optionally) their pairs.

CSV: a header naming the columns `kind`, `x_mm`, `y_mm` (or `x_cm`, `y_cm`), one optode per
row, `kind` `source` or `detector`; every source is paired with every detector not at its
position (a fibre that is both does not measure itself).

JSON: `{"units": "mm" | "cm", "sources": [[x, y], …], "detectors": [[x, y], …],
"link": [[s, d], …], "fixed": false}`; `link` (one-based, as in NIRFAST and SNIRF) and `fixed`
are optional (default: all pairs as for CSV; optodes not fixed).

Optodes not `fixed` are placed as NIRFAST places them: onto the nearest boundary point, sources
then one transport length inward (`SpectralForwardModel.from_optodes`).
"""

from __future__ import annotations

import csv
import json
import os
from pathlib import Path

import numpy as np

from .._atomic import atomic_path
from ..geometry import OptodePositions

_UNITS_MM = {"mm": 1.0, "cm": 10.0}


def all_pairs(sources: np.ndarray, detectors: np.ndarray) -> np.ndarray:
    """(M, 2) zero-based pairs of every source with every detector not at its position."""
    apart = np.linalg.norm(sources[:, None] - detectors[None], axis=-1) > 1e-6
    return np.argwhere(apart).astype(np.int64)


def _positions(path, what: str, values) -> np.ndarray:
    if not isinstance(values, list) or not all(
        isinstance(v, list) and all(isinstance(c, (int, float)) and not isinstance(c, bool) for c in v) for v in values
    ):
        raise ValueError(f"{path}: {what} must be a list of [x, y] positions (numbers)")
    array = np.asarray(values, float) if len(values) else np.zeros((0, 2))
    if array.ndim != 2 or array.shape[1] != 2:
        raise ValueError(f"{path}: {what} must be a list of [x, y] positions, got shape {array.shape}")
    if not np.isfinite(array).all():
        raise ValueError(f"{path}: {what} has NaN or infinite coordinates")
    if not len(array):
        raise ValueError(f"{path}: no {what}")
    return array


def _read_csv(path: Path) -> OptodePositions:
    with open(path, newline="") as file:
        numbered = [(number, line) for number, line in enumerate(file, start=1)
                    if line.strip() and not line.lstrip().startswith("#")]
    rows = [(number, next(csv.reader([line]))) for number, line in numbered]
    if not rows:
        raise ValueError(f"{path}: empty optode file")
    header = [name.strip().lower() for name in rows[0][1]]
    units = next((u for u in _UNITS_MM if f"x_{u}" in header and f"y_{u}" in header), None)
    if "kind" not in header or units is None:
        raise ValueError(f"{path}: the header must name the columns kind, x_mm, y_mm (or x_cm, y_cm); got {rows[0][1]}")
    kind, x, y = header.index("kind"), header.index(f"x_{units}"), header.index(f"y_{units}")
    found = {"source": [], "detector": []}
    for number, row in rows[1:]:
        try:
            label = row[kind].strip().lower()
            position = [float(row[x]), float(row[y])]
        except (IndexError, ValueError):
            raise ValueError(f"{path}, line {number}: cannot read an optode from {row}") from None
        if label not in found:
            raise ValueError(f"{path}, line {number}: kind must be 'source' or 'detector', got {row[kind]!r}")
        found[label].append(position)
    sources = _positions(path, "sources", found["source"]) * _UNITS_MM[units]
    detectors = _positions(path, "detectors", found["detector"]) * _UNITS_MM[units]
    return OptodePositions(sources, detectors, all_pairs(sources, detectors))


def _read_json(path: Path) -> OptodePositions:
    try:
        content = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise ValueError(f"{path}: not valid JSON ({error})") from None
    if not isinstance(content, dict):
        raise ValueError(f"{path}: expected an object with sources and detectors")
    unknown = set(content) - {"units", "sources", "detectors", "link", "fixed"}
    if unknown:
        raise ValueError(f"{path}: unknown fields {sorted(unknown)}")
    units = content.get("units", "mm")
    if units not in _UNITS_MM:
        raise ValueError(f"{path}: units must be 'mm' or 'cm', got {units!r}")
    for field in ("sources", "detectors"):
        if field not in content:
            raise ValueError(f"{path}: no {field!r} field")
    sources = _positions(path, "sources", content["sources"]) * _UNITS_MM[units]
    detectors = _positions(path, "detectors", content["detectors"]) * _UNITS_MM[units]
    fixed = content.get("fixed", False)
    if not isinstance(fixed, bool):
        raise ValueError(f"{path}: fixed must be true or false, got {fixed!r}")
    if "link" not in content:
        return OptodePositions(sources, detectors, all_pairs(sources, detectors), fixed, fixed)
    link = np.asarray(content["link"])
    if link.ndim != 2 or link.shape[1] != 2 or not len(link) or link.dtype.kind not in "iu":
        raise ValueError(f"{path}: link must be a list of [source, detector] integer pairs (one-based)")
    for column, name, count in ((0, "source", len(sources)), (1, "detector", len(detectors))):
        bad = (link[:, column] < 1) | (link[:, column] > count)
        if bad.any():
            raise ValueError(f"{path}: link {name} {int(link[bad, column][0])} is not in 1…{count}")
    if len(np.unique(link, axis=0)) != len(link):
        raise ValueError(f"{path}: link lists a pair twice")
    return OptodePositions(sources, detectors, link.astype(np.int64) - 1, fixed, fixed)


def read_optodes(path: str | os.PathLike) -> OptodePositions:
    """Read optode positions from a `.csv` or `.json` file (module docstring).

    Arguments:
        path: the file.

    Returns:
        `geometry.OptodePositions` in mm, pairs zero-based, `fixed` for both kinds.

    Raises:
        FileNotFoundError: no such file. ValueError: a malformed file, naming the problem.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"optode file {path} does not exist")
    suffix = path.suffix.lower()
    if suffix not in (".csv", ".json"):
        raise ValueError(f"optode file {path} must be .csv or .json")
    return _read_csv(path) if suffix == ".csv" else _read_json(path)


def write_optodes(path: str | os.PathLike, optodes: OptodePositions) -> None:
    """Write optodes as JSON (mm, one-based link), atomically; `read_optodes` gives them back.

    Raises:
        ValueError: sources fixed and detectors not (or the reverse): the file has one `fixed`.
    """
    if optodes.fixed_sources != optodes.fixed_detectors:
        raise ValueError("an optode file has one `fixed` flag for sources and detectors; these optodes fix "
                         f"{'sources' if optodes.fixed_sources else 'detectors'} only")
    content = {
        "units": "mm",
        "sources": optodes.source_xy.tolist(),
        "detectors": optodes.detector_xy.tolist(),
        "link": (optodes.pairs + 1).tolist(),
        "fixed": optodes.fixed_sources,
    }
    with atomic_path(Path(path)) as temporary:
        temporary.write_text(json.dumps(content, indent=1))
