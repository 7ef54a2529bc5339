"""Optode positions from CSV/JSON files: reading, errors that name the problem, placement on a
mesh (`SpectralForwardModel.from_optodes`) and the command-line paths that take them."""

import json

import jax.numpy as jnp
import numpy as np
import pytest

import nirst_jax as nj
from nirst_jax.cli import main
from nirst_jax.formats import read_optodes, write_optodes
from nirst_jax.geometry import DiskDomain, MeasurementSetup, OptodePositions, optodes_from_dict
from nirst_jax.mesh import read_nirfast
from nirst_jax.physics import rim_positions


def _ring_csv(path, mesh, count=16, units="mm"):
    fibres = rim_positions(mesh, count) / (10.0 if units == "cm" else 1.0)
    rows = [f"kind,x_{units},y_{units}"] + [f"{kind},{float(x)!r},{float(y)!r}" for kind in ("source", "detector") for x, y in fibres]
    path.write_text("# a ring of fibres, each a source and a detector\n" + "\n".join(rows) + "\n")
    return path


def test_csv_and_json_read_in_mm_with_pairs(tmp_path):
    mesh = nj.disk_mesh(41, 8.0)
    optodes = read_optodes(_ring_csv(tmp_path / "ring.csv", mesh, 4, units="cm"))
    np.testing.assert_allclose(optodes.source_xy, rim_positions(mesh, 4), atol=1e-12)
    # Every source with every detector not at its own position, in order.
    assert optodes.pairs.tolist() == [[s, d] for s in range(4) for d in range(4) if s != d]
    assert not (optodes.fixed_sources or optodes.fixed_detectors)
    (tmp_path / "probe.json").write_text(json.dumps(
        {"units": "cm", "sources": [[4.1, 0.0]], "detectors": [[-4.1, 0.0], [0.0, 4.1]], "link": [[1, 2]], "fixed": True}))
    probe = read_optodes(tmp_path / "probe.json")
    np.testing.assert_allclose(probe.detector_xy, [[-41.0, 0.0], [0.0, 41.0]])
    assert probe.pairs.tolist() == [[0, 1]] and probe.fixed_sources and probe.fixed_detectors
    write_optodes(tmp_path / "back.json", probe)
    assert read_optodes(tmp_path / "back.json") == probe  # the same optodes, exactly
    half_fixed = OptodePositions(probe.sources, probe.detectors, probe.link, fixed_sources=True)
    with pytest.raises(ValueError, match="one `fixed` flag"):
        write_optodes(tmp_path / "half.json", half_fixed)


@pytest.mark.parametrize("name, content, message", [
    ("a.csv", "x_mm,y_mm\n1,2\n", "header must name the columns kind"),
    ("a.csv", "kind,x_mm,y_mm\nlaser,1,2\n", "line 2: kind must be 'source' or 'detector'"),
    ("a.csv", "kind,x_mm,y_mm\nsource,1,two\n", "line 2: cannot read an optode"),
    ("a.csv", "kind,x_mm,y_mm\nsource,1,2\n", "no detectors"),
    ("a.csv", "kind,x_mm,y_mm\nsource,1,nan\ndetector,0,0\n", "NaN or infinite"),
    ("a.json", "{not json", "not valid JSON"),
    ("a.json", '{"sources": [[0, 0]]}', "no 'detectors' field"),
    ("a.json", '{"sources": [[0, 0]], "detectors": [[1, 1]], "unit": "mm"}', r"unknown fields \['unit'\]"),
    ("a.json", '{"units": "inch", "sources": [[0, 0]], "detectors": [[1, 1]]}', "units must be 'mm' or 'cm'"),
    ("a.json", '{"sources": [[0, 0]], "detectors": [[1, 1]], "link": [[1, 2]]}', "link detector 2 is not in 1…1"),
    ("a.json", '{"sources": [[0, 0]], "detectors": [[1, 1]], "link": [[1, 1], [1, 1]]}', "lists a pair twice"),
    ("a.json", '{"sources": [[0, 0, 0]], "detectors": [[1, 1]]}', "list of \\[x, y\\] positions"),
    ("a.json", '{"sources": 5, "detectors": [[1, 1]]}', "sources must be a list of \\[x, y\\] positions"),
    ("a.json", '{"sources": [["a", 1]], "detectors": [[1, 1]]}', "sources must be a list of \\[x, y\\] positions"),
    ("a.txt", "", "must be .csv or .json"),
])
def test_malformed_files_name_the_problem(tmp_path, name, content, message):
    (tmp_path / name).write_text(content)
    with pytest.raises(ValueError, match=message):
        read_optodes(tmp_path / name)


def test_ring_from_a_file_is_the_ring_model_and_far_optodes_are_refused(tmp_path):
    """16 fibres read from a CSV give the same measurements as the built-in ring (same
    placement, same slot order); an optode 10 mm inside the disk is an error, unless fixed."""
    mesh = nj.disk_mesh(41, 6.0)
    optodes = read_optodes(_ring_csv(tmp_path / "ring.csv", mesh))
    from_file = optodes.forward_model(None, mesh)
    ring = nj.SpectralForwardModel.create(mesh)
    level = jnp.asarray([12.2, 4.8, 28.0])
    np.testing.assert_allclose(from_file.homogeneous(level), ring.homogeneous(level), rtol=0, atol=1e-12)
    inside = optodes.source_xy
    inside[3] *= 31.0 / 41.0
    with pytest.raises(ValueError, match=r"source 4 at .* is 9.9\d mm from the mesh boundary"):
        OptodePositions(inside, optodes.detectors, optodes.link).forward_model(None, mesh)
    fixed = OptodePositions(inside, optodes.detectors, optodes.link, fixed_sources=True).forward_model(None, mesh)
    assert np.isfinite(fixed.homogeneous(level)).all()


def test_forward_reconstruct_and_mesh_take_an_optode_file(tmp_path, capsys):
    """Five sources and six detectors on part of the rim (not a ring): `nirst forward
    --optodes` simulates them, `nirst reconstruct` needs the same file (or the SNIRF), and
    `nirst mesh --optodes` writes them into the NIRFAST files."""
    angles = np.radians(np.arange(11) * 18.0)
    rim = 41.0 * np.column_stack([np.cos(angles), np.sin(angles)])
    sources, detectors = rim[::2][:5], rim[1::2][:5].tolist() + [rim[-1].tolist()]
    (tmp_path / "probe.json").write_text(json.dumps({"sources": sources.tolist(), "detectors": detectors}))
    forward = tmp_path / "fw"
    assert main(["forward", "--out", str(forward), "--mesh-spacing", "8", "--optodes", str(tmp_path / "probe.json"),
                 "--wavelengths", "661,785,913"]) == 0
    data = np.load(forward / "forward.npz")
    assert data["ln_amplitude"].shape == (3, 5, 6) and "detectors_xy" in data
    setup = MeasurementSetup.from_dict(json.loads((forward / "setup.json").read_text())["setup"])
    assert setup.domain == DiskDomain(41.0) and setup.optodes == read_optodes(tmp_path / "probe.json")
    args = ["reconstruct", "--method", "tikhonov", "--mesh-spacing", "8", "--basis-size", "6", "--iterations", "1"]
    capsys.readouterr()
    assert main([*args, "--data", str(forward / "forward.npz"), "--out", str(tmp_path / "bad")]) == 2
    assert "--optodes FILE" in capsys.readouterr().err
    assert main([*args, "--data", str(forward / "forward.npz"), "--optodes", str(tmp_path / "probe.json"),
                 "--out", str(tmp_path / "rec")]) == 0
    setup = json.loads((tmp_path / "rec" / "convergence.json").read_text())["setup"]  # the set-up, recorded
    assert optodes_from_dict(setup["optodes"]) == read_optodes(tmp_path / "probe.json")
    assert setup["mesh"]["kind"] == "data" and setup["mesh"]["file"] == str(forward / "forward.npz")  # its nodes and elements
    assert setup["optodes_from"] == f"the optodes and 30 pairs of {tmp_path / 'probe.json'}"
    assert main([*args, "--data", str(forward / "forward.snirf"), "--optodes", str(tmp_path / "probe.json"),
                 "--out", str(tmp_path / "snirf")]) == 0
    np.testing.assert_allclose(np.load(tmp_path / "snirf" / "reconstruction.npz")["chromophores_nodes"],
                               np.load(tmp_path / "rec" / "reconstruction.npz")["chromophores_nodes"], rtol=1e-9)
    shifted = json.loads((tmp_path / "probe.json").read_text())
    shifted["sources"][0][0] -= 1.0
    (tmp_path / "shifted.json").write_text(json.dumps(shifted))
    capsys.readouterr()
    assert main([*args, "--data", str(forward / "forward.snirf"), "--optodes", str(tmp_path / "shifted.json"),
                 "--out", str(tmp_path / "bad")]) == 2
    assert "probe are not those of" in capsys.readouterr().err
    contour = tmp_path / "disk.csv"
    circle = np.radians(np.arange(0, 360, 6.0))
    np.savetxt(contour, 41.0 * np.column_stack([np.cos(circle), np.sin(circle)]), delimiter=",")
    assert main(["mesh", "--contour", str(contour), "--spacing", "8", "--optodes", str(tmp_path / "probe.json"),
                 "--out", str(tmp_path / "m" / "disk")]) == 0
    written = read_nirfast(tmp_path / "m" / "disk")
    np.testing.assert_allclose(written.sources, sources, atol=1e-6)
    assert len(written.link) == 5 * 6  # no detector shares a source's position
