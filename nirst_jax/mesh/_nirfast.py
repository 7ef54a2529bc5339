"""Reading and writing 2D meshes in the NIRFAST file format.

NIRFAST (Dartmouth College, Matlab) stores a mesh as a family of text files sharing a
prefix; `read_nirfast` and `write_nirfast` convert between them and a `NirfastMesh`:

- `.node` (required): one row `bndvtx x y z` per node; `bndvtx` is 1 on the boundary and
  0 inside, `z` is 0 in 2D (a row `bndvtx x y` is accepted too).
- `.elem` (required): one row of three 1-based node indices per triangle, in either
  orientation (a file that mixes both is read counter-clockwise, with a warning).
- `.param` (required): the type word on the first line, then one row per node.
  `stnd`: `mua kappa ri` (absorption in 1/mm, diffusion coefficient
  kappa = 1 / (3 (mua + musp)) in mm, refractive index). `spec`: first the column names,
  one per line (for example `HbO`, `deoxyHb`, `Water`, `S-Amplitude`, `S-Power`), then
  rows with one value per name; NIRFAST's units are mM for HbO and deoxyHb and a volume
  fraction for Water (`NirfastMesh.chromophores` converts them to µM and %, refusing values
  above 1 as written in the wrong unit, and `with_chromophores` back).
- `.source` / `.meas` (optional): an optional line `fixed`, then an optional line of
  column names containing `x` and `y` (also recognised: `num`, which must count 1, 2, ...,
  `z`, which must be 0, and, for sources, `fwhm`; other columns are skipped), then one row
  per source or detector. Without column names a row is `x y`, plus `fwhm` for sources
  or `z` for detectors.
- `.link` (optional): the header `source detector active`, then rows
  `source detector active...` with 1-based indices and one 0/1 flag per wavelength for
  spectral meshes (all flags of a row must agree). The legacy format has no header; its
  i-th row lists the 1-based detectors of source i, zeros meaning none, all active.
- `.region` (optional): one integer label per node.
- `.excoef` (optional): names, one per line, then rows `wavelength value...`. NIRFAST
  writes every `.param` name, the scattering ones included, but only the chromophores'
  columns, so names and columns are kept as they are, without matching them.

Blank lines are skipped everywhere. `write_nirfast` writes every number with the
shortest text that reads back exactly, so a write followed by a read is lossless.
"""

from __future__ import annotations

import errno
import math
import os
import dataclasses
import secrets
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ._mesh import Mesh, signed_areas

STND_COLUMNS = ("mua", "kappa", "ri")
SPEC_CHROMOPHORES = {"HbO": 1000.0, "deoxyHb": 1000.0, "Water": 100.0}
"""NIRFAST's `spec` columns of HbO, Hb (mM) and water (a volume fraction), with the factor
to nirst-jax's units (µM, µM, %)."""
_SPEC_UNITS = {"HbO": ("mM", "µM"), "deoxyHb": ("mM", "µM"), "Water": ("a volume fraction", "%")}
"""Each chromophore column's unit in the file and in nirst-jax; a file value above 1 (1000 µM
of haemoglobin, or more water than tissue) means the file was written in nirst-jax's unit."""
SPEC_SCATTER = ("S-Amplitude", "S-Power")
"""The `spec` scattering columns: a (mm⁻¹) and b in µs' = a (λ / 1000 nm)^(−b), as here."""
_KINDS = ("stnd", "spec")
_EXTENSIONS = ("node", "elem", "param", "source", "meas", "link", "region", "excoef")
_LINK_HEADER = "source detector active"


@dataclass(frozen=True, eq=False)
class NirfastMesh:
    """The content of a family of NIRFAST mesh files.

    The arrays are converted to the documented dtypes and made read-only; the constructor
    raises `ValueError` when their shapes or values disagree with each other.

    Attributes:
        mesh: the triangle mesh (elements counter-clockwise, zero-based).
        kind: "stnd" or "spec", the type word of the `.param` file.
        sources: (S, 2) float64 source positions in mm.
        detectors: (D, 2) float64 detector positions in mm.
        link: (L, 2) int64 zero-based (source, detector) pairs, every pair listed.
        link_active: (L,) bool, whether each pair is measured.
        fixed_sources: whether the `.source` file says `fixed` (NIRFAST then leaves the
            sources where they are instead of moving them inside the boundary).
        fixed_detectors: the same for the `.meas` file.
        region: (N,) int64 region label of each node.
        param_columns: names of the `.param` columns; `STND_COLUMNS` for "stnd".
        param: (N, len(param_columns)) float64 values per node.
        source_fwhm: (S,) float64 source beam widths in mm (zeros when not given).
        excoef: (names, table) of the `.excoef` file, `table` (W, C) float64 with the
            wavelength in nm in its first column, or None.
        boundary_flags: (N,) int64 `bndvtx` flags as stored in the `.node` file; they are
            kept even where they disagree with `mesh.is_boundary_node`.
    """

    mesh: Mesh
    kind: str
    sources: np.ndarray
    detectors: np.ndarray
    link: np.ndarray
    link_active: np.ndarray
    fixed_sources: bool
    fixed_detectors: bool
    region: np.ndarray
    param_columns: tuple[str, ...]
    param: np.ndarray
    source_fwhm: np.ndarray
    excoef: tuple[tuple[str, ...], np.ndarray] | None
    boundary_flags: np.ndarray

    def __post_init__(self):
        if not isinstance(self.mesh, Mesh):
            raise ValueError(f"mesh must be a Mesh, got {type(self.mesh).__name__}")
        if self.kind not in _KINDS:
            raise ValueError(f"kind must be 'stnd' or 'spec', got {self.kind!r}")
        n = self.mesh.n_nodes
        columns = _checked_names("param_columns", self.param_columns)
        if self.kind == "stnd" and columns != STND_COLUMNS:
            raise ValueError(f"a 'stnd' mesh has the columns {STND_COLUMNS}, got {columns}")
        if len(set(columns)) != len(columns):
            raise ValueError(f"param_columns repeat a name: {columns}")
        sources = _frozen("sources", self.sources, np.float64, (None, 2))
        detectors = _frozen("detectors", self.detectors, np.float64, (None, 2))
        link = _frozen("link", self.link, np.int64, (None, 2))
        fields = {
            "sources": sources,
            "detectors": detectors,
            "link": link,
            "link_active": _frozen("link_active", self.link_active, bool, (len(link),)),
            "fixed_sources": bool(self.fixed_sources),
            "fixed_detectors": bool(self.fixed_detectors),
            "region": _frozen("region", self.region, np.int64, (n,)),
            "param_columns": columns,
            "param": _frozen("param", self.param, np.float64, (n, len(columns))),
            "source_fwhm": _frozen("source_fwhm", self.source_fwhm, np.float64, (len(sources),)),
            "boundary_flags": _frozen("boundary_flags", self.boundary_flags, np.int64, (n,)),
        }
        if self.excoef is not None:
            names, table = self.excoef
            fields["excoef"] = (
                _checked_names("excoef names", names),
                _frozen("excoef table", table, np.float64, (None, None)),
            )
        for name in ("sources", "detectors", "param", "source_fwhm"):
            if not np.isfinite(fields[name]).all():
                raise ValueError(f"{name} must be finite")
        if not np.isin(fields["boundary_flags"], (0, 1)).all():
            raise ValueError("boundary_flags must be 0 or 1")
        in_range = (link >= 0).all(axis=1) & (link[:, 0] < len(sources)) & (
            link[:, 1] < len(detectors)
        )
        if not in_range.all():
            raise ValueError(
                f"link pairs must index the {len(sources)} sources and {len(detectors)} detectors"
            )
        for name, value in fields.items():
            object.__setattr__(self, name, value)

    def check_optodes(self) -> None:
        """Refuse optodes a forward model cannot use: a missing `.source`, `.meas` or `.link`,
        or Gaussian sources (fwhm > 0; only point sources are modelled).

        Raises:
            ValueError: naming what is missing or the widest source.
        """
        if not (len(self.sources) and len(self.detectors) and len(self.link)):
            raise ValueError(
                f"the NIRFAST mesh has {len(self.sources)} sources, {len(self.detectors)} detectors and "
                f"{len(self.link)} link pairs; optodes need all three (.source, .meas, .link)"
            )
        if (self.source_fwhm > 0).any():
            raise ValueError(
                f"the NIRFAST mesh has Gaussian sources (fwhm up to {self.source_fwhm.max():g} mm); "
                "only point sources (fwhm 0) are modelled"
            )

    def column(self, name: str) -> np.ndarray:
        """The (N,) values of the `.param` column `name`.

        Arguments:
            name: a name from `param_columns`.

        Returns:
            A read-only view of that column.

        Raises:
            KeyError: if there is no such column.
        """
        if name not in self.param_columns:
            raise KeyError(f"no parameter column {name!r}; the columns are {self.param_columns}")
        return self.param[:, self.param_columns.index(name)]

    def _stnd_column(self, name: str) -> np.ndarray:
        if self.kind != "stnd":
            raise ValueError(f"{name} is defined for 'stnd' meshes only, this one is {self.kind!r}")
        return self.column(name)

    @property
    def mua(self) -> np.ndarray:
        """(N,) absorption coefficient in 1/mm ("stnd" meshes only)."""
        return self._stnd_column("mua")

    @property
    def kappa(self) -> np.ndarray:
        """(N,) diffusion coefficient 1 / (3 (mua + musp)) in mm ("stnd" meshes only)."""
        return self._stnd_column("kappa")

    @property
    def musp(self) -> np.ndarray:
        """(N,) reduced scattering coefficient 1 / (3 kappa) - mua in 1/mm ("stnd" only)."""
        return 1.0 / (3.0 * self.kappa) - self.mua

    @property
    def ri(self) -> np.ndarray:
        """(N,) refractive index ("stnd" meshes only)."""
        return self._stnd_column("ri")

    def _spec_columns(self, names) -> list[str]:
        if self.kind != "spec":
            raise ValueError(f"chromophores and scattering are defined for 'spec' meshes only, this one is {self.kind!r}")
        missing = [name for name in names if name not in self.param_columns]
        if missing:
            raise ValueError(f"the spec mesh has no column {missing[0]!r}; its columns are {self.param_columns}")
        return list(names)

    @property
    def chromophores(self) -> np.ndarray:
        """(3, N) HbO (µM), Hb (µM), water (%) of a "spec" mesh, converted from the file's mM
        and volume fraction.

        Raises:
            ValueError: a column with values above 1 in the file's unit (written in µM or %),
                naming the column, the value and the unit expected.
        """
        columns = self._spec_columns(SPEC_CHROMOPHORES)
        for name in columns:
            largest = float(self.column(name).max())
            if largest > 1.0:
                unit, ours = _SPEC_UNITS[name]
                raise ValueError(
                    f"the spec mesh's {name} column holds {largest:g}, implausible in NIRFAST's unit, "
                    f"{unit} (at most 1, i.e. {SPEC_CHROMOPHORES[name]:g} {ours}): was it written in {ours}? "
                    f"Divide it by {SPEC_CHROMOPHORES[name]:g}"
                )
        return np.stack([self.column(name) * SPEC_CHROMOPHORES[name] for name in columns])

    @property
    def scatter(self) -> tuple[np.ndarray, np.ndarray]:
        """((N,) a in mm⁻¹, (N,) b) of a "spec" mesh's µs' = a (λ / 1000 nm)^(−b)."""
        amplitude, power = (self.column(name) for name in self._spec_columns(SPEC_SCATTER))
        return amplitude, power

    def with_chromophores(self, chromophores, scatter_amplitude=None, scatter_power=None) -> "NirfastMesh":
        """This "spec" mesh with new values, given in nirst-jax's units and stored in NIRFAST's.

        Arguments:
            chromophores: (3, N) HbO (µM), Hb (µM), water (%).
            scatter_amplitude, scatter_power: scalars or (N,) (default: unchanged).

        Returns:
            A new `NirfastMesh` (write it with `write_nirfast`).
        """
        chromophores = np.asarray(chromophores, np.float64)
        if chromophores.shape != (3, self.mesh.n_nodes):
            raise ValueError(f"chromophores must have shape (3, {self.mesh.n_nodes}), got {chromophores.shape}")
        param = np.array(self.param)
        for name, values in zip(self._spec_columns(SPEC_CHROMOPHORES), chromophores):
            param[:, self.param_columns.index(name)] = values / SPEC_CHROMOPHORES[name]
        for name, values in zip(self._spec_columns(SPEC_SCATTER), (scatter_amplitude, scatter_power)):
            if values is not None:
                param[:, self.param_columns.index(name)] = np.broadcast_to(np.asarray(values, np.float64), len(param))
        return dataclasses.replace(self, param=param)


def read_nirfast(path_prefix: str | os.PathLike) -> NirfastMesh:
    """Read a 2D NIRFAST mesh.

    Arguments:
        path_prefix: the files' common path without extension, for example
            `"meshes/circle2000_86_stnd"` for `meshes/circle2000_86_stnd.node` etc.

    Returns:
        The `NirfastMesh`. A missing `.source`, `.meas` or `.link` gives no sources,
        detectors or pairs, a missing `.region` all zeros, a missing `.excoef` None.

    Raises:
        FileNotFoundError: if the `.node`, `.elem` or `.param` file is missing.
        ValueError: for a malformed file, naming the file and the 1-based line number, or
            for an invalid mesh (`Mesh` rejects it), naming the `.elem` and `.node` files.
    """
    paths = {ext: Path(f"{os.fspath(path_prefix)}.{ext}") for ext in _EXTENSIONS}
    for ext in ("node", "elem", "param"):
        if not paths[ext].is_file():
            message = "required NIRFAST mesh file is missing"
            raise FileNotFoundError(errno.ENOENT, message, str(paths[ext]))
    boundary_flags, nodes = _read_node(paths["node"])
    elements = _counter_clockwise(paths["elem"], nodes, _read_elem(paths["elem"], len(nodes)))
    try:
        mesh = Mesh(nodes, elements)
    except ValueError as exc:
        raise ValueError(f"{paths['elem']} (nodes in {paths['node']}): {exc}") from exc
    kind, param_columns, param = _read_param(paths["param"], len(nodes))
    sources, source_fwhm, fixed_sources = _read_optodes(paths["source"], "fwhm")
    detectors, _, fixed_detectors = _read_optodes(paths["meas"], "z")
    link, link_active = _read_link(paths["link"], len(sources), len(detectors))
    if paths["region"].is_file():
        region = _read_region(paths["region"], len(nodes))
    else:
        region = np.zeros(len(nodes), np.int64)
    excoef = _read_excoef(paths["excoef"]) if paths["excoef"].is_file() else None
    return NirfastMesh(
        mesh=mesh,
        kind=kind,
        sources=sources,
        detectors=detectors,
        link=link,
        link_active=link_active,
        fixed_sources=fixed_sources,
        fixed_detectors=fixed_detectors,
        region=region,
        param_columns=param_columns,
        param=param,
        source_fwhm=source_fwhm,
        excoef=excoef,
        boundary_flags=boundary_flags,
    )


def write_nirfast(path_prefix: str | os.PathLike, data: NirfastMesh) -> None:
    """Write a `NirfastMesh` as NIRFAST files, each replaced atomically.

    Every file is written, with its header when it has no rows, except `.excoef`, which
    is written when `data.excoef` is set and otherwise removed if present, so that reading
    the files back gives `data` exactly. A spectral mesh with `excoef` gets one `.link`
    flag column per wavelength (NIRFAST's layout), other meshes one.

    Arguments:
        path_prefix: the files' common path without extension; its folder must exist.
        data: what to write.
    """
    prefix = os.fspath(path_prefix)
    n_flags = len(data.excoef[1]) if data.kind == "spec" and data.excoef is not None else 1
    node_rows = ([flag, x, y, 0] for flag, (x, y) in zip(data.boundary_flags, data.mesh.nodes))
    source_rows = (
        [i + 1, x, y, fwhm] for i, ((x, y), fwhm) in enumerate(zip(data.sources, data.source_fwhm))
    )
    detector_rows = ([i + 1, x, y] for i, (x, y) in enumerate(data.detectors))
    link_rows = (
        [s + 1, d + 1] + [int(active)] * n_flags
        for (s, d), active in zip(data.link, data.link_active)
    )
    files = {
        "node": _rows(node_rows, "\t"),
        "elem": _rows(data.mesh.elements.astype(np.int64) + 1, "\t"),
        "param": [data.kind, *(data.param_columns if data.kind == "spec" else ())]
        + _rows(data.param),
        "source": (["fixed"] if data.fixed_sources else []) + ["num x y fwhm"] + _rows(source_rows),
        "meas": (["fixed"] if data.fixed_detectors else []) + ["num x y"] + _rows(detector_rows),
        "link": [_LINK_HEADER] + _rows(link_rows),
        "region": _rows(data.region[:, None]),
    }
    if data.excoef is not None:
        names, table = data.excoef
        files["excoef"] = [*names] + _rows(table)
    for ext, lines in files.items():
        _write_atomically(Path(f"{prefix}.{ext}"), lines)
    if data.excoef is None:
        Path(f"{prefix}.excoef").unlink(missing_ok=True)


@dataclass(frozen=True)
class _Line:
    """A non-blank line of a file: its 1-based number, stripped text and fields."""

    number: int
    text: str
    fields: list[str]


def _read_lines(path: Path) -> list[_Line]:
    """The non-blank lines of a UTF-8 (or ASCII) text file with LF or CRLF line ends."""
    lines = []
    with open(path, "rb") as file:
        for number, raw in enumerate(file, 1):
            try:
                text = raw.decode("utf-8")
            except UnicodeDecodeError:
                raise _error(path, number, "not UTF-8 text") from None
            if text.split():
                lines.append(_Line(number, text.strip(), text.split()))
    return lines


def _error(path: Path, line: _Line | int, message: str) -> ValueError:
    number = line.number if isinstance(line, _Line) else line
    return ValueError(f"{path} line {number}: {message}")


def _is_number(field: str) -> bool:
    try:
        float(field)
    except ValueError:
        return False
    return True


def _is_text(line: _Line) -> bool:
    """Whether `line` is header text (its first field is not a number) rather than a row."""
    return not _is_number(line.fields[0])


def _split_header(lines: list[_Line]) -> tuple[list[_Line], list[_Line]]:
    """Split `lines` into the leading header lines and the rows after them."""
    k = 0
    while k < len(lines) and _is_text(lines[k]):
        k += 1
    return lines[:k], lines[k:]


def _table(
    path: Path, lines: list[_Line], n_columns: int | None = None, *,
    integer: bool = False, finite: bool = True, describe: str = "",
) -> np.ndarray:
    """Parse rows of numbers, naming the line of the first bad one.

    Arguments:
        path: the file, for error messages.
        lines: the rows.
        n_columns: the number of fields per row; by default that of the first row.
        integer: whether the values must be integers (a float text such as "3.0" is
            accepted); the result is then int64.
        finite: whether NaN and infinities are rejected.
        describe: what the columns are, for error messages, e.g. "'x y'".

    Returns:
        (len(lines), n_columns) float64 or int64 array.
    """
    if n_columns is None:
        n_columns = len(lines[0].fields) if lines else 0
    expected = f"expected {n_columns} {'integers' if integer else 'numbers'}"
    expected += f" {describe}" if describe else ""
    rows = []
    for line in lines:
        if len(line.fields) != n_columns or not all(_is_number(f) for f in line.fields):
            raise _error(path, line, f"{expected}, got {line.text!r}")
        values = [float(field) for field in line.fields]
        if finite and not all(math.isfinite(v) for v in values):
            raise _error(path, line, f"non-finite value in {line.text!r}")
        if integer and not all(v.is_integer() for v in values):
            raise _error(path, line, f"{expected}, got {line.text!r}")
        rows.append(values)
    table = np.array(rows, dtype=np.float64).reshape(len(rows), n_columns)
    return table.astype(np.int64) if integer else table


def _check(path: Path, lines: list[_Line], valid: np.ndarray, message) -> None:
    """Raise for the first row of `lines` where `valid` is False; `message(i)` says why."""
    bad = np.flatnonzero(~np.asarray(valid, bool))
    if bad.size:
        raise _error(path, lines[bad[0]], message(bad[0]))


def _check_row_count(
    path: Path, lines: list[_Line], rows: list[_Line], expected: int, what: str
) -> None:
    """Raise unless a file with the non-blank `lines` has `expected` data `rows`."""
    if len(rows) > expected:
        raise _error(path, rows[expected], f"more than {expected} rows ({what})")
    if len(rows) < expected:
        end = lines[-1].number + 1 if lines else 1
        message = f"the file ends after {len(rows)} rows, expected {expected} ({what})"
        raise _error(path, end, message)


def _read_node(path: Path) -> tuple[np.ndarray, np.ndarray]:
    lines = _read_lines(path)
    if not lines:
        raise _error(path, 1, "no nodes")
    n_columns = 3 if len(lines[0].fields) == 3 else 4
    table = _table(path, lines, n_columns, describe="'bndvtx x y z'")
    flags = table[:, 0]
    _check(
        path, lines, np.isin(flags, (0, 1)), lambda i: f"bndvtx must be 0 or 1, got {flags[i]:g}"
    )
    if n_columns == 4:
        z = table[:, 3]
        _check(path, lines, z == 0, lambda i: f"z = {z[i]:g}, a 2D mesh needs z = 0")
    return flags.astype(np.int64), table[:, 1:3]


def _counter_clockwise(path: Path, nodes: np.ndarray, elements: np.ndarray) -> np.ndarray:
    """`elements` with the clockwise ones reordered counter-clockwise, saying so with a
    warning when the file mixes both orientations (NIRFAST does not keep one, e.g. its own
    `rect_stnd`); a file listed all clockwise is reversed by `Mesh` without a word. Zero-area
    elements are left for `Mesh` to refuse."""
    clockwise = signed_areas(nodes, elements) < 0
    if clockwise.any() and not clockwise.all():
        warnings.warn(
            f"{path}: {int(clockwise.sum())} of {len(elements)} elements are listed clockwise and the "
            "rest counter-clockwise; reordered counter-clockwise",
            UserWarning,
            stacklevel=3,
        )
        elements = np.where(clockwise[:, None], elements[:, [0, 2, 1]], elements)
    return elements


def _read_elem(path: Path, n_nodes: int) -> np.ndarray:
    lines = _read_lines(path)
    elements = _table(path, lines, 3, integer=True)
    in_range = ((elements >= 1) & (elements <= n_nodes)).all(axis=1)
    _check(
        path, lines, in_range, lambda i: f"node index outside 1..{n_nodes} in {lines[i].text!r}"
    )
    return elements - 1


def _read_param(path: Path, n_nodes: int) -> tuple[str, tuple[str, ...], np.ndarray]:
    lines = _read_lines(path)
    kind = lines[0].text if lines else ""
    if kind not in _KINDS:
        message = f"unknown parameter type {kind!r}, expected 'stnd' or 'spec'"
        raise _error(path, lines[0] if lines else 1, message)
    header, rows = _split_header(lines[1:])
    if kind == "stnd":
        columns = STND_COLUMNS
        if header:
            message = f"expected 3 numbers 'mua kappa ri', got {header[0].text!r}"
            raise _error(path, header[0], message)
    else:
        columns = tuple(line.text for line in header)
        if not columns:
            raise _error(path, lines[0].number + 1, "expected the column names after 'spec'")
        for k, line in enumerate(header):
            if line.text in columns[:k]:
                raise _error(path, line, f"column name {line.text!r} repeated")
    table = _table(path, rows, len(columns))
    _check_row_count(path, lines, rows, n_nodes, "one per node")
    return kind, columns, table


def _read_optodes(path: Path, third: str) -> tuple[np.ndarray, np.ndarray, bool]:
    """Read a `.source` or `.meas` file.

    Arguments:
        path: the file; missing means none.
        third: the name of the optional third column of a file without column names:
            "fwhm" for sources, "z" for detectors.

    Returns:
        (K, 2) positions, (K,) fwhm (zeros unless given) and whether the file says `fixed`.
    """
    if not path.is_file():
        return np.zeros((0, 2)), np.zeros(0), False
    lines = _read_lines(path)
    header, rows = _split_header(lines)
    fixed = bool(header) and header[0].text == "fixed"
    if fixed:
        header = header[1:]
    if header and header[0].text == "distributed":
        raise _error(path, header[0], "distributed sources are not supported")
    if len(header) > 1:
        raise _error(path, header[1], f"unexpected text {header[1].text!r}")
    if header:
        names = header[0].fields
        if "x" not in names or "y" not in names or len(set(names)) != len(names):
            message = f"expected column names such as 'num x y', got {header[0].text!r}"
            raise _error(path, header[0], message)
        table = _table(path, rows, len(names), describe=repr(header[0].text))
    else:
        table = _table(path, rows, describe=f"'x y [{third}]'")
        if len(rows) and table.shape[1] not in (2, 3):
            message = f"expected 2 or 3 numbers 'x y [{third}]', got {rows[0].text!r}"
            raise _error(path, rows[0], message)
        names = ["x", "y", third][: table.shape[1]]
    columns = dict(zip(names, table.T))
    if "num" in columns:
        num = columns["num"]
        in_sequence = num == np.arange(1, len(num) + 1)
        _check(path, rows, in_sequence, lambda i: f"num = {num[i]:g}, expected {i + 1}")
    if "z" in columns:
        z = columns["z"]
        _check(path, rows, z == 0, lambda i: f"z = {z[i]:g}, a 2D mesh needs z = 0")
    fwhm = columns.get("fwhm", np.zeros(len(rows)))
    return np.stack([columns["x"], columns["y"]], axis=1), fwhm, fixed


def _read_link(path: Path, n_sources: int, n_detectors: int) -> tuple[np.ndarray, np.ndarray]:
    """Read a `.link` file (missing: no pairs) in the current or the legacy format.

    Returns:
        (L, 2) zero-based (source, detector) pairs and their (L,) active flags.
    """
    lines = _read_lines(path) if path.is_file() else []
    if lines and _is_text(lines[0]):
        if lines[0].fields[:2] != ["source", "detector"]:
            message = f"expected the header {_LINK_HEADER!r}, got {lines[0].text!r}"
            raise _error(path, lines[0], message)
        rows = lines[1:]
        n_columns = len(rows[0].fields) if rows else 3
        if n_columns < 3:
            raise _error(path, rows[0], f"expected 'source detector active', got {rows[0].text!r}")
        table = _table(path, rows, n_columns, integer=True)
        flags = table[:, 2:]
        binary = np.isin(flags, (0, 1)).all(axis=1)
        _check(path, rows, binary, lambda i: "active flags must be 0 or 1")
        _check(
            path, rows, (flags == flags[:, :1]).all(axis=1),
            lambda i: "the active flags differ between wavelengths, which is not supported",
        )
        pairs, active = table[:, :2], flags[:, 0] == 1
    else:  # legacy: row i lists the detectors of source i
        rows, pairs = [], []
        for source, line in enumerate(lines, 1):
            detectors = _table(path, [line], integer=True, describe="detector indices")[0]
            if (detectors < 0).any():
                raise _error(path, line, f"negative detector index in {line.text!r}")
            rows += [line] * np.count_nonzero(detectors)
            pairs += [(source, d) for d in detectors if d]
        pairs = np.array(pairs, np.int64).reshape(-1, 2)
        active = np.ones(len(pairs), bool)
    for k, (name, count) in enumerate((("source", n_sources), ("detector", n_detectors))):
        index = pairs[:, k]
        _check(
            path, rows, (index >= 1) & (index <= count),
            lambda i: f"{name} {index[i]} does not exist (there are {count})",
        )
    _, first = np.unique(pairs, axis=0, return_index=True)
    repeated = np.ones(len(pairs), bool)
    repeated[first] = False
    _check(path, rows, ~repeated, lambda i: f"pair ({pairs[i, 0]}, {pairs[i, 1]}) listed twice")
    return pairs - 1, active


def _read_region(path: Path, n_nodes: int) -> np.ndarray:
    lines = _read_lines(path)
    region = _table(path, lines, 1, integer=True)[:, 0]
    _check_row_count(path, lines, lines, n_nodes, "one per node")
    return region


def _read_excoef(path: Path) -> tuple[tuple[str, ...], np.ndarray]:
    lines = _read_lines(path)
    header, rows = _split_header(lines)
    return tuple(line.text for line in header), _table(path, rows, finite=False)


def _checked_names(what: str, names) -> tuple[str, ...]:
    """`names` as a tuple, checked to read back as header lines: one stripped line each,
    not starting with a number."""
    names = tuple(names)
    for name in names:
        if not (
            isinstance(name, str)
            and name == name.strip()
            and len(name.splitlines()) == 1
            and not _is_number(name.split()[0])
        ):
            raise ValueError(
                f"{what} must be one line of text not starting with a number, got {name!r}"
            )
    return names


def _frozen(name: str, value, dtype, shape: tuple[int | None, ...]) -> np.ndarray:
    """A read-only copy of `value` as `dtype`, checked to have `shape` (None: any size)."""
    array = np.array(value, dtype=dtype)
    if array.ndim != len(shape) or any(
        s is not None and s != a for s, a in zip(shape, array.shape)
    ):
        wanted = "(" + ", ".join("any" if s is None else str(s) for s in shape) + ")"
        raise ValueError(f"{name} must have shape {wanted}, got {array.shape}")
    array.setflags(write=False)
    return array


def _format(value) -> str:
    """The shortest text that reads back as exactly `value`, without a trailing ".0"."""
    if isinstance(value, (int, np.integer)):
        return str(int(value))
    value = float(value)
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "Inf" if value > 0 else "-Inf"
    return repr(value).removesuffix(".0")


def _rows(rows, separator: str = " ") -> list[str]:
    return [separator.join(_format(value) for value in row) for row in rows]


def _write_atomically(path: Path, lines: list[str]) -> None:
    """Write `lines` to a new file beside `path`, then move it over `path`."""
    temporary = path.with_name(f".{path.name}.{secrets.token_hex(6)}.tmp")
    try:
        with open(temporary, "x", encoding="utf-8", newline="\n") as file:
            file.write("".join(line + "\n" for line in lines))
            file.flush()
            os.fsync(file.fileno())
        os.replace(temporary, path)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise
