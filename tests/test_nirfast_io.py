"""Reading and writing NIRFAST mesh files (`nirst_jax.mesh._nirfast`)."""

import dataclasses
import shutil
from pathlib import Path

import numpy as np
import pytest

from nirst_jax.mesh._mesh import signed_areas
from nirst_jax.mesh._nirfast import STND_COLUMNS, NirfastMesh, read_nirfast, write_nirfast

FIXTURES = Path(__file__).parent / "fixtures" / "nirfast"
STND = "circle2000_86_stnd"
SPEC = "circle2000_86_spec"
EXTENSIONS = ("node", "elem", "param", "source", "meas", "link", "region", "excoef")


def _raw_rows(path: Path) -> list[list[str]]:
    """The non-blank lines of a file, split into fields."""
    return [line.split() for line in path.read_text().splitlines() if line.strip()]


def _copy(name: str, folder: Path) -> Path:
    """Copy the fixture files of `name` into `folder`; return the new prefix."""
    for ext in EXTENSIONS:
        source = FIXTURES / f"{name}.{ext}"
        if source.exists():
            shutil.copy(source, folder / source.name)
    return folder / name


def _edit(path: Path, change) -> None:
    """Replace the lines of `path` by `change(lines)` (Latin-1, so "\\xff" is not UTF-8)."""
    lines = path.read_text(encoding="latin-1").splitlines()
    path.write_text("\n".join(change(lines)) + "\n", encoding="latin-1")


def _set_line(number: int, text: str):
    def change(lines):
        lines[number - 1] = text
        return lines

    return change


def _assert_same(a: NirfastMesh, b: NirfastMesh) -> None:
    for field in dataclasses.fields(NirfastMesh):
        x, y = getattr(a, field.name), getattr(b, field.name)
        if field.name == "mesh":
            assert np.array_equal(x.nodes, y.nodes) and np.array_equal(x.elements, y.elements)
        elif field.name == "excoef" and x is not None:
            assert x[0] == y[0]
            assert np.array_equal(x[1], y[1], equal_nan=True)
        elif isinstance(x, np.ndarray):
            assert x.dtype == y.dtype and np.array_equal(x, y), field.name
        else:
            assert x == y, field.name


@pytest.mark.parametrize("name", [STND, SPEC])
def test_fixture_geometry_matches_the_raw_files(name):
    data = read_nirfast(FIXTURES / name)
    node_rows = _raw_rows(FIXTURES / f"{name}.node")
    elem_rows = _raw_rows(FIXTURES / f"{name}.elem")
    assert data.mesh.n_nodes == len(node_rows) == 1785
    assert data.mesh.n_elements == len(elem_rows) == 3418
    np.testing.assert_array_equal(data.mesh.nodes, [[float(r[1]), float(r[2])] for r in node_rows])
    # the fixture's elements are counter-clockwise already, so they are kept as listed
    np.testing.assert_array_equal(data.mesh.elements + 1, [[int(v) for v in r] for r in elem_rows])
    np.testing.assert_array_equal(data.boundary_flags, [int(r[0]) for r in node_rows])
    assert data.boundary_flags.sum() == 150
    np.testing.assert_array_equal(data.boundary_flags.astype(bool), data.mesh.is_boundary_node)
    # the fixtures' .region files label every node 0
    region_rows = _raw_rows(FIXTURES / f"{name}.region")
    np.testing.assert_array_equal(data.region, [int(r[0]) for r in region_rows])
    assert set(data.region.tolist()) == {0}


@pytest.mark.parametrize("name", [STND, SPEC])
def test_fixture_optodes_and_link(name):
    data = read_nirfast(FIXTURES / name)
    headers = ("fixed", "num")
    source_rows = [r for r in _raw_rows(FIXTURES / f"{name}.source") if r[0] not in headers]
    meas_rows = [r for r in _raw_rows(FIXTURES / f"{name}.meas") if r[0] not in headers]
    assert data.sources.shape == (16, 2) and data.detectors.shape == (16, 2)
    np.testing.assert_array_equal(data.sources, [[float(r[1]), float(r[2])] for r in source_rows])
    np.testing.assert_array_equal(data.source_fwhm, [float(r[3]) for r in source_rows])
    np.testing.assert_array_equal(data.detectors, [[float(r[1]), float(r[2])] for r in meas_rows])
    assert data.fixed_sources == (name == STND)
    assert data.fixed_detectors
    link_rows = _raw_rows(FIXTURES / f"{name}.link")[1:]
    assert len(data.link) == len(link_rows) == 240
    np.testing.assert_array_equal(data.link + 1, [[int(r[0]), int(r[1])] for r in link_rows])
    assert data.link_active.all()
    every_pair = {(s, d) for s in range(16) for d in range(16) if s != d}
    assert {tuple(p) for p in data.link.tolist()} == every_pair


def test_stnd_fixture_parameters():
    data = read_nirfast(FIXTURES / STND)
    assert data.kind == "stnd" and data.param_columns == STND_COLUMNS
    assert data.excoef is None
    np.testing.assert_array_equal(data.mua, 0.01)
    np.testing.assert_array_equal(data.kappa, 0.330033)
    np.testing.assert_array_equal(data.ri, 1.33)
    # NIRFAST's second column is kappa = 1 / (3 (mua + musp)): musp = 1/mm here
    np.testing.assert_allclose(data.musp, 1.0, rtol=1e-6)
    np.testing.assert_array_equal(data.column("ri"), data.ri)
    with pytest.raises(KeyError, match="HbO"):
        data.column("HbO")


def test_spec_fixture_parameters():
    data = read_nirfast(FIXTURES / SPEC)
    names = ("HbO", "deoxyHb", "Water", "S-Amplitude", "S-Power")
    assert data.kind == "spec" and data.param_columns == names
    assert data.param.shape == (1785, 5)
    np.testing.assert_array_equal(data.column("Water"), 0.4)
    np.testing.assert_array_equal(data.column("HbO"), 0.01)
    for stnd_only in ("mua", "musp", "kappa", "ri"):
        with pytest.raises(ValueError, match="'stnd' meshes only"):
            getattr(data, stnd_only)
    excoef_names, table = data.excoef
    # NIRFAST lists the scattering names too, but only the chromophores get columns
    assert excoef_names == names
    assert table.shape == (7, 4)
    np.testing.assert_array_equal(table[0], [661, 0.0740741, 0.85, 0.00148])
    np.testing.assert_array_equal(table[:, 0], [661, 735, 761, 785, 808, 826, 849])


def test_spec_values_are_converted_to_our_units_and_back(tmp_path):
    # NIRFAST's spec fixture: HbO and deoxyHb 0.01 mM, Water 0.4 (a fraction), a = b = 1.
    data = read_nirfast(FIXTURES / SPEC)
    raw = np.array([[float(v) for v in r] for r in _raw_rows(FIXTURES / f"{SPEC}.param")[6:]])
    np.testing.assert_allclose(data.chromophores, [raw[:, 0] * 1000, raw[:, 1] * 1000, raw[:, 2] * 100])
    np.testing.assert_allclose(data.chromophores[:, 0], [10.0, 10.0, 40.0])  # µM, µM, %
    np.testing.assert_array_equal(data.scatter[0], raw[:, 3])
    # Back: our units in, NIRFAST's stored; the fixture's own values come back unchanged.
    same = data.with_chromophores(data.chromophores)
    np.testing.assert_allclose(same.param, data.param, rtol=1e-15)
    changed = data.with_chromophores(np.array([[20.0], [6.0], [55.0]]) * np.ones(data.mesh.n_nodes), scatter_power=0.8)
    write_nirfast(tmp_path / "changed", changed)
    back = read_nirfast(tmp_path / "changed")
    np.testing.assert_allclose(back.column("HbO"), 0.02)
    np.testing.assert_allclose(back.column("Water"), 0.55)
    np.testing.assert_allclose(back.chromophores[:, 0], [20.0, 6.0, 55.0])
    np.testing.assert_array_equal(back.scatter[1], 0.8)
    with pytest.raises(ValueError, match="'spec' meshes only"):
        read_nirfast(FIXTURES / STND).chromophores
    with pytest.raises(ValueError, match=r"shape \(3, 1785\)"):
        data.with_chromophores(np.ones((3, 10)))


@pytest.mark.parametrize("column, value, message", [
    ("HbO", 12.0, r"HbO column holds 12, implausible in NIRFAST's unit, mM .* 1000 µM.*written in µM"),
    ("deoxyHb", 1.5, r"deoxyHb column holds 1.5, implausible .* mM"),
    ("Water", 40.0, r"Water column holds 40, implausible in NIRFAST's unit, a volume fraction .*written in %"),
])
def test_spec_values_in_the_wrong_unit_are_refused(column, value, message, tmp_path):
    prefix = _copy(SPEC, tmp_path)
    data = read_nirfast(prefix)
    param = np.array(data.param)
    param[7, data.param_columns.index(column)] = value  # one node, as a file written in µM or %
    write_nirfast(prefix, dataclasses.replace(data, param=param))
    with pytest.raises(ValueError, match=message):
        read_nirfast(prefix).chromophores


@pytest.mark.parametrize("name", [STND, SPEC])
def test_round_trip_is_lossless_and_stable(name, tmp_path):
    original = read_nirfast(FIXTURES / name)
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    write_nirfast(tmp_path / "a" / name, original)
    again = read_nirfast(tmp_path / "a" / name)
    _assert_same(original, again)
    write_nirfast(str(tmp_path / "b" / name), again)
    first = sorted(p.name for p in (tmp_path / "a").iterdir())
    assert first == sorted(p.name for p in (tmp_path / "b").iterdir())
    assert not any(n.endswith(".tmp") for n in first)
    for file_name in first:
        written = (tmp_path / "a" / file_name).read_bytes()
        assert written == (tmp_path / "b" / file_name).read_bytes()


def test_spec_link_gets_one_flag_per_wavelength(tmp_path):
    write_nirfast(tmp_path / "m", read_nirfast(FIXTURES / SPEC))
    rows = _raw_rows(tmp_path / "m.link")
    assert rows[0] == ["source", "detector", "active"]
    assert rows[1] == ["1", "2"] + ["1"] * 7


def test_round_trip_of_unusual_values(tmp_path):
    data = read_nirfast(FIXTURES / STND)
    rng = np.random.default_rng(0)
    odd = dataclasses.replace(
        data,
        param=data.param * rng.uniform(0.5, 2.0, data.param.shape),
        source_fwhm=np.full(16, 1e-300),
        region=rng.integers(-3, 4, data.mesh.n_nodes),
        link_active=np.arange(240) % 3 == 0,
        fixed_sources=False,
        excoef=(("a", "b c"), np.array([[650.0, np.nan, np.inf], [700.0, 0.1, -np.inf]])),
    )
    write_nirfast(tmp_path / "m", odd)
    _assert_same(odd, read_nirfast(tmp_path / "m"))


def test_writing_without_excoef_removes_a_stale_one(tmp_path):
    write_nirfast(tmp_path / "m", read_nirfast(FIXTURES / SPEC))
    write_nirfast(tmp_path / "m", dataclasses.replace(read_nirfast(FIXTURES / SPEC), excoef=None))
    assert not (tmp_path / "m.excoef").exists()
    assert read_nirfast(tmp_path / "m").excoef is None


def test_optional_files_may_be_missing(tmp_path):
    for ext in ("node", "elem", "param"):
        shutil.copy(FIXTURES / f"{STND}.{ext}", tmp_path)
    data = read_nirfast(tmp_path / STND)
    assert data.sources.shape == (0, 2) and data.detectors.shape == (0, 2)
    assert data.source_fwhm.shape == (0,)
    assert data.link.shape == (0, 2) and data.link_active.shape == (0,)
    assert not data.fixed_sources and not data.fixed_detectors
    np.testing.assert_array_equal(data.region, np.zeros(1785))
    assert data.excoef is None
    write_nirfast(tmp_path / "again", data)
    _assert_same(data, read_nirfast(tmp_path / "again"))


@pytest.mark.parametrize("missing", ["node", "elem", "param"])
def test_missing_required_file(missing, tmp_path):
    prefix = _copy(STND, tmp_path)
    (tmp_path / f"{STND}.{missing}").unlink()
    with pytest.raises(FileNotFoundError, match=rf"{STND}\.{missing}"):
        read_nirfast(prefix)


def test_legacy_link_format(tmp_path):
    prefix = _copy(STND, tmp_path)
    (tmp_path / f"{STND}.link").write_text("2 3 0\n0 0 0\n\n16 1 5\n")
    data = read_nirfast(prefix)
    np.testing.assert_array_equal(data.link, [[0, 1], [0, 2], [2, 15], [2, 0], [2, 4]])
    assert data.link_active.all()


def test_inactive_pairs_and_legacy_optode_files(tmp_path):
    prefix = _copy(STND, tmp_path)
    (tmp_path / f"{STND}.link").write_text("source detector active\n1 2 0\n2 4 1\n")
    (tmp_path / f"{STND}.source").write_text("fixed\n10 0 2.5\n0 10 0\n")
    (tmp_path / f"{STND}.meas").write_text("-10 0\n0 -10\n1 1\n4 4\n")
    data = read_nirfast(prefix)
    np.testing.assert_array_equal(data.link_active, [False, True])
    np.testing.assert_array_equal(data.sources, [[10, 0], [0, 10]])
    np.testing.assert_array_equal(data.source_fwhm, [2.5, 0])
    assert data.fixed_sources and not data.fixed_detectors
    assert data.detectors.shape == (4, 2)


def test_flags_that_disagree_with_the_mesh_are_kept(tmp_path):
    prefix = _copy(STND, tmp_path)
    _edit(tmp_path / f"{STND}.node", _set_line(1, "0\t-6.81228\t-42.4341\t0"))
    data = read_nirfast(prefix)
    assert data.boundary_flags[0] == 0 and data.mesh.is_boundary_node[0]
    write_nirfast(tmp_path / "again", data)
    assert read_nirfast(tmp_path / "again").boundary_flags[0] == 0


def test_clockwise_elements_are_reoriented(tmp_path):
    prefix = _copy(STND, tmp_path)
    _edit(tmp_path / f"{STND}.elem", lambda lines: ["\t".join(l.split()[::-1]) for l in lines])
    flipped = read_nirfast(prefix).mesh
    original = read_nirfast(FIXTURES / STND).mesh
    assert (signed_areas(flipped.nodes, flipped.elements) > 0).all()
    np.testing.assert_array_equal(np.sort(flipped.elements, 1), np.sort(original.elements, 1))


def test_mixed_orientations_are_read_counter_clockwise_with_a_warning(tmp_path):
    # NIRFAST keeps no single element orientation; `Mesh` alone refuses a mix.
    prefix = _copy(STND, tmp_path)
    flip = lambda lines: ["\t".join(l.split()[::-1]) if i % 2 else l for i, l in enumerate(lines)]
    _edit(tmp_path / f"{STND}.elem", flip)
    with pytest.warns(UserWarning, match=r"1709 of 3418 elements are listed clockwise"):
        mixed = read_nirfast(prefix).mesh
    original = read_nirfast(FIXTURES / STND).mesh
    np.testing.assert_array_equal(np.sort(mixed.elements, 1), np.sort(original.elements, 1))
    assert (signed_areas(mixed.nodes, mixed.elements) > 0).all()


def test_a_node_pushed_across_an_edge_is_refused_as_a_fold(tmp_path):
    # Reorienting clockwise elements must not hide a genuinely folded mesh: mirror an interior
    # node across the far edge of one of its elements, which flips that element over its neighbour.
    original = read_nirfast(FIXTURES / STND).mesh
    node = int(np.flatnonzero(~original.is_boundary_node)[100])
    element = original.elements[np.flatnonzero((original.elements == node).any(1))[0]]
    a, b = original.nodes[[v for v in element if v != node]]
    p = original.nodes[node]
    foot = a + np.dot(p - a, b - a) / np.dot(b - a, b - a) * (b - a)
    mirrored = 2 * foot - p
    prefix = _copy(STND, tmp_path)
    _edit(tmp_path / f"{STND}.node", _set_line(node + 1, f"0\t{mirrored[0]:.17g}\t{mirrored[1]:.17g}\t0"))
    with pytest.warns(UserWarning, match="listed clockwise"), pytest.raises(ValueError, match="overlap"):
        read_nirfast(prefix)


def test_nirfast_rect_stnd_sample_mesh_reads():
    # NIRFAST's own transmission sample: a rectangle whose elements mix both orientations.
    with pytest.warns(UserWarning, match=r"rect_stnd\.elem: \d+ of 6400 elements are listed clockwise"):
        data = read_nirfast(FIXTURES / "rect_stnd")
    nodes = np.array([[float(v) for v in r[1:3]] for r in _raw_rows(FIXTURES / "rect_stnd.node")])
    assert data.mesh.n_nodes == len(nodes) and data.mesh.n_elements == 6400
    width, height = np.ptp(nodes, axis=0)
    np.testing.assert_allclose(data.mesh.areas.sum(), width * height, rtol=1e-12)  # tiles the rectangle
    assert (signed_areas(data.mesh.nodes, data.mesh.elements) > 0).all()
    assert data.fixed_sources and data.fixed_detectors
    assert len(data.sources) == 13 and len(data.link) == len(_raw_rows(FIXTURES / "rect_stnd.link")) - 1


def test_mesh_errors_name_the_files(tmp_path):
    prefix = _copy(STND, tmp_path)
    _edit(tmp_path / f"{STND}.elem", lambda lines: lines + [lines[0]])
    message = rf"{STND}\.elem \(nodes in .*{STND}\.node\): .*duplicates"
    with pytest.raises(ValueError, match=message):
        read_nirfast(prefix)


CORRUPTIONS = [
    # (file, change, expected message after "<prefix>.<file> ")
    (
        "node",
        _set_line(5, "1\tabc\t-42.7018\t0"),
        r"line 5: expected 4 numbers 'bndvtx x y z', got '1\\tabc",
    ),
    ("node", _set_line(7, "1\tnan\t-42.7018\t0"), r"line 7: non-finite value"),
    ("node", _set_line(9, "1\t1.0\tinf\t0"), r"line 9: non-finite value"),
    ("node", _set_line(3, "1\t-2.94645\t-42.8947"), r"line 3: expected 4 numbers"),
    ("node", _set_line(2, "2\t-4.90523\t-42.7018\t0"), r"line 2: bndvtx must be 0 or 1"),
    ("node", _set_line(4, "1\t-0.984563\t-42.9678\t1"), r"line 4: z = 1, a 2D mesh needs z = 0"),
    ("elem", _set_line(17, "1 2"), r"line 17: expected 3 integers, got '1 2'"),
    ("elem", _set_line(17, "a b c"), r"line 17: expected 3 integers, got 'a b c'"),
    ("elem", _set_line(18, "1 2.5 3"), r"line 18: expected 3 integers"),
    ("elem", _set_line(3, "0 14 13"), r"line 3: node index outside 1\.\.1785"),
    ("elem", _set_line(3418, "1786 14 13"), r"line 3418: node index outside 1\.\.1785"),
    ("param", lambda lines: lines[:-1], r"line 1786: the file ends after 1784 rows, expected 1785"),
    ("param", lambda lines: lines + lines[-1:], r"line 1787: more than 1785 rows"),
    ("param", _set_line(1, "fluor"), r"line 1: unknown parameter type 'fluor'"),
    ("param", _set_line(10, "0.01 0.330033"), r"line 10: expected 3 numbers, got '0.01 0.330033'"),
    ("param", _set_line(11, "0.01 x 1.33"), r"line 11: expected 3 numbers"),
    ("region", lambda lines: lines[:-2], r"line 1784: the file ends after 1783 rows"),
    ("region", _set_line(6, "one"), r"line 6: expected 1 integers"),
    ("source", _set_line(5, "3 23.3 oops 0"), r"line 5: expected 4 numbers 'num    x   y   fwhm'"),
    ("source", _set_line(5, "7 23.3276 -34.9121 0"), r"line 5: num = 7, expected 3"),
    ("source", _set_line(2, "num z fwhm"), r"line 2: expected column names such as 'num x y'"),
    ("meas", _set_line(4, "2 35.7103"), r"line 4: expected 3 numbers"),
    ("link", _set_line(2, "1 17 1"), r"line 2: detector 17 does not exist \(there are 16\)"),
    ("link", _set_line(3, "0 3 1"), r"line 3: source 0 does not exist"),
    ("link", _set_line(4, "1 4 2"), r"line 4: active flags must be 0 or 1"),
    ("link", _set_line(5, "1 2 1"), r"line 5: pair \(1, 2\) listed twice"),
    ("region", _set_line(8, "\xff"), r"line 8: not UTF-8 text"),
    ("link", _set_line(1, "detectors sources"), r"line 1: expected the header 'source detector"),
]


@pytest.mark.parametrize(("ext", "change", "message"), CORRUPTIONS)
def test_malformed_stnd_files(ext, change, message, tmp_path):
    prefix = _copy(STND, tmp_path)
    _edit(tmp_path / f"{STND}.{ext}", change)
    with pytest.raises(ValueError, match=rf"{STND}\.{ext} {message}"):
        read_nirfast(prefix)


@pytest.mark.parametrize(
    ("ext", "change", "message"),
    [
        ("param", _set_line(3, "HbO"), r"line 3: column name 'HbO' repeated"),
        ("param", _set_line(7, "0.01 0.01 0.4 1"), r"line 7: expected 5 numbers"),
        ("param", lambda lines: lines[:1] + lines[6:], r"line 2: expected the column names"),
        ("link", _set_line(2, "1 2 1 1 0 1 1 1 1"), r"line 2: the active flags differ between"),
        ("excoef", _set_line(7, "735 0.09889 0.24"), r"line 7: expected 4 numbers"),
    ],
)
def test_malformed_spec_files(ext, change, message, tmp_path):
    prefix = _copy(SPEC, tmp_path)
    _edit(tmp_path / f"{SPEC}.{ext}", change)
    with pytest.raises(ValueError, match=rf"{SPEC}\.{ext} {message}"):
        read_nirfast(prefix)


def test_nirfast_default_excoef_table_reads(tmp_path):
    """NIRFAST's own excoef.txt: CRLF lines, a trailing space, NaN entries, more names than
    value columns."""
    prefix = _copy(SPEC, tmp_path)
    shutil.copy(FIXTURES / "excoef.txt", tmp_path / f"{SPEC}.excoef")
    names, table = read_nirfast(prefix).excoef
    chromophores = ("HbO", "deoxyHb", "Water", "Lipids", "LuTex", "GdTex")
    assert names == chromophores + ("S-Amplitude", "S-Power")
    assert table.shape[1] == 7
    assert table[0, 0] == 600 and np.isnan(table[0, 5])
    data = read_nirfast(prefix)
    write_nirfast(tmp_path / "again", data)
    _assert_same(data, read_nirfast(tmp_path / "again"))


def test_constructor_rejects_inconsistent_data():
    data = read_nirfast(FIXTURES / STND)
    with pytest.raises(ValueError, match="param must have shape"):
        dataclasses.replace(data, param=data.param[:-1])
    with pytest.raises(ValueError, match="link pairs must index"):
        dataclasses.replace(data, link=data.link + 1)
    with pytest.raises(ValueError, match="kind must be"):
        dataclasses.replace(data, kind="fluor")
    with pytest.raises(ValueError, match="'stnd' mesh has the columns"):
        dataclasses.replace(data, param_columns=("mua", "musp", "ri"))
    assert not data.param.flags.writeable
