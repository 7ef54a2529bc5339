"""Meshes of any simple polygon and of mask images: quality, boundary fidelity, FEM
convergence, bad inputs, and `nirst mesh`."""

import dataclasses
import json

import numpy as np
import pytest
from matplotlib.path import Path as PolygonPath

import nirst_jax as nj
from nirst_jax.cli import main
from nirst_jax.formats import NirfastData, write_nirfast_data
from nirst_jax.geometry import MeasurementSetup
from nirst_jax.mesh import closed_contour, fibres_on_contour, mask_contour, mesh_quality, polygon_mesh, read_nirfast
from nirst_jax.mesh._quality import distance_to_polygon


def breast_contour(radius=38.0, vertices=2000, center=(5.0, -3.0)):
    """A non-convex three-lobed outline (r = R(1 + 0.2 cos 3θ); concave between the lobes)."""
    theta = np.linspace(0, 2 * np.pi, vertices + 1)[:-1]
    r = radius * (1 + 0.2 * np.cos(3 * theta))
    return np.column_stack([r * np.cos(theta) + center[0], r * np.sin(theta) + center[1]])


def test_contour_is_non_convex():
    contour = breast_contour()
    edges = np.roll(contour, -1, axis=0) - contour
    turns = edges[:, 0] * np.roll(edges[:, 1], -1) - edges[:, 1] * np.roll(edges[:, 0], -1)
    assert (turns > 0).any() and (turns < 0).any()  # it turns both ways: concave between the lobes


@pytest.mark.parametrize("spacing, boundary_spacing", [(4.0, None), (4.0, 1.5)])
def test_polygon_mesh_quality_and_boundary(spacing, boundary_spacing):
    contour = breast_contour()
    mesh = polygon_mesh(contour, spacing, boundary_spacing_mm=boundary_spacing)
    quality = mesh_quality(mesh, contour)
    assert quality.min_angle_deg >= 25.0, quality.summary()  # measured 36° and 35°
    assert quality.boundary_deviation_mm <= 0.25 * (boundary_spacing or spacing), quality.summary()
    assert quality.edge_max_mm <= spacing * (1 + 1e-9)
    assert quality.edge_mean_mm >= 0.6 * spacing if boundary_spacing is None else True
    # Boundary nodes lie on the contour, and the mesh covers the domain.
    assert distance_to_polygon(mesh.nodes[mesh.boundary_nodes], contour).max() < 1e-9
    area = nj.mesh._contour.polygon_area(closed_contour(contour))
    assert abs(mesh.areas.sum() - area) < 0.005 * area
    boundary_edges = np.linalg.norm(np.diff(mesh.nodes[mesh.boundary_edges], axis=1)[:, 0], axis=1)
    if boundary_spacing is not None:
        assert boundary_edges.max() <= boundary_spacing * (1 + 1e-9)
        interior = np.setdiff1d(np.arange(mesh.n_nodes), mesh.boundary_nodes)
        near_centre = interior[np.linalg.norm(mesh.nodes[interior] - [5.0, -3.0], axis=1) < 15]
        assert near_centre.size and quality.edge_max_mm > 2 * boundary_spacing  # graded: coarse inside


def test_mask_outline_with_anisotropic_offset_pixels():
    truth = breast_contour()
    spacing, origin = np.array([0.3, 0.45]), np.array([-61.0, -63.0])  # (dy, dx); pixel (0, 0) centre
    rows, cols = 400, 280
    jj, ii = np.meshgrid(np.arange(cols), np.arange(rows))
    centres = np.column_stack([origin[0] + jj.ravel() * spacing[1], origin[1] + ii.ravel() * spacing[0]])
    mask = PolygonPath(truth).contains_points(centres).reshape(rows, cols)
    contour = mask_contour(mask, spacing, origin_mm=origin)
    assert distance_to_polygon(contour, truth).max() < 0.5 * spacing.max()  # measured ≈ 0.3 pixel
    mesh = polygon_mesh(contour, 3.0)
    quality = mesh_quality(mesh, truth)
    assert quality.min_angle_deg >= 25.0 and quality.boundary_deviation_mm <= 0.25 * 3.0, quality.summary()


@pytest.mark.parametrize(
    "contour, match",
    [
        ([[0, 0], [1, 0]], "at least 3"),
        ([[0, 0], [10, 10], [10, 0], [0, 10]], "cross"),  # a figure eight
        ([[0, 0], [10, 0], [20, 0]], "cross|no area"),
        ([[0, 0], [10, 0], [10, 0], [0, 10]], "repeat"),
        ([[0, 0], [np.nan, 0], [0, 10]], "not finite"),
        (np.zeros((4, 3)), "shape"),
    ],
)
def test_bad_contours_are_refused(contour, match):
    with pytest.raises(ValueError, match=match):
        polygon_mesh(np.asarray(contour, float), 1.0)


def test_open_contours_are_refused():
    theta = np.linspace(0, 1.5 * np.pi, 200)
    arc = np.column_stack([40 * np.cos(theta), 40 * np.sin(theta)])  # ¾ of a circle: a 57 mm closing chord
    with pytest.raises(ValueError, match=r"looks open: the gap from its last vertex back to its first is 56.6 mm"):
        polygon_mesh(arc, 4.0)
    with pytest.raises(ValueError, match="repeat the first vertex"):
        fibres_on_contour(arc, 8)
    # Repeating the first vertex closes it on purpose, with a straight side.
    closed = polygon_mesh(np.vstack([arc, arc[:1]]), 4.0)
    assert closed.nodes[:, 0].min() < -39 and closed.nodes[:, 1].min() < -39
    # Full outlines (and a slab's four corners) have an ordinary closing edge.
    closed_contour(breast_contour())
    closed_contour([[-40, -20], [40, -20], [40, 20], [-40, 20]])


def test_bad_sizes_and_masks_are_refused():
    contour = breast_contour()
    with pytest.raises(ValueError, match="spacing_mm"):
        polygon_mesh(contour, -1.0)
    with pytest.raises(ValueError, match="boundary_spacing_mm"):
        polygon_mesh(contour, 2.0, boundary_spacing_mm=3.0)
    with pytest.raises(ValueError, match="too coarse"):
        polygon_mesh(contour, 60.0)
    disk = np.hypot(*np.meshgrid(np.arange(40) - 20, np.arange(40) - 20)) < 10
    with pytest.raises(ValueError, match="2 separate regions"):
        mask_contour(disk | (np.hypot(*np.meshgrid(np.arange(40) - 33, np.arange(40) - 33)) < 3), 1.0)
    with pytest.raises(ValueError, match="hole"):
        mask_contour(disk & (np.hypot(*np.meshgrid(np.arange(40) - 20, np.arange(40) - 20)) > 3), 1.0)
    with pytest.raises(ValueError, match="border"):
        mask_contour(np.ones((10, 10)), 1.0)
    with pytest.raises(ValueError, match="binary"):
        mask_contour(disk * 0.5, 1.0)
    with pytest.raises(ValueError, match="count"):
        fibres_on_contour(contour, 1)


def test_fibres_are_evenly_spaced_on_the_contour():
    contour = breast_contour()
    fibres = fibres_on_contour(contour, 16, first_mm=(5.0, 60.0))
    assert distance_to_polygon(fibres, contour).max() < 1e-9
    top = contour[np.argmin(np.linalg.norm(contour - [5.0, 60.0], axis=1))]
    assert np.linalg.norm(fibres[0] - top) < 0.5
    # Equal arcs: the chords between neighbours are nearly equal on this smooth outline.
    chords = np.linalg.norm(np.roll(fibres, -1, axis=0) - fibres, axis=1)
    assert chords.max() / chords.min() < 1.15
    # Counter-clockwise: fibre 1 is to the left of fibre 0 at the top.
    assert fibres[1, 0] < fibres[0, 0]


@pytest.mark.slow
def test_fem_on_a_polygon_mesh_converges_at_second_order():
    contour = breast_contour(radius=20.0, center=(0.0, 0.0))
    detectors = fibres_on_contour(contour, 12, (25.0, 0.0))
    sources = np.array([[5.0, 3.0], [-4.0, -6.0]])

    def ln_fluence(spacing):
        mesh = polygon_mesh(contour, spacing)
        n = mesh.n_nodes
        return np.log(np.abs(np.asarray(nj.point_fluence(mesh, np.full(n, 0.01), np.full(n, 1.0), sources, detectors))))

    reference = ln_fluence(0.5)
    coarse, fine = (np.abs(ln_fluence(h) - reference).max() for h in (4.0, 1.0))
    order = np.log(coarse / fine) / np.log(4.0)
    assert order >= 1.7, (coarse, fine, order)  # measured 2.2 (0.041 → 0.0020)
    assert fine < 0.005


def test_mesh_cli_writes_nirfast_files_with_fibres(tmp_path, capsys):
    contour_file = tmp_path / "outline.csv"
    np.savetxt(contour_file, breast_contour(vertices=400), delimiter=",", header="x_mm,y_mm")
    out = tmp_path / "mesh" / "breast"
    assert main(["mesh", "--contour", str(contour_file), "--spacing", "4", "--fibres", "16",
                 "--first-fibre", "5", "60", "--out", str(out)]) == 0
    assert "min angle" in capsys.readouterr().out
    data = read_nirfast(out)
    assert len(data.sources) == 16 and len(data.link) == 16 * 15 and not data.fixed_sources
    assert distance_to_polygon(data.sources, breast_contour(vertices=400)).max() < 1e-6
    assert data.mesh.n_nodes == polygon_mesh(breast_contour(vertices=400), 4.0).n_nodes

    mask_file = tmp_path / "mask.npy"
    np.save(mask_file, np.hypot(*np.meshgrid(np.arange(60) - 30, np.arange(60) - 30)) < 25)
    assert main(["mesh", "--mask", str(mask_file), "--pixel-spacing", "1", "--spacing", "5", "--out", str(out)]) == 0
    assert read_nirfast(out).mesh.n_nodes > 50
    assert main(["mesh", "--mask", str(mask_file), "--spacing", "5", "--out", str(out)]) == 2
    assert "--pixel-spacing" in capsys.readouterr().err
    bad = tmp_path / "bad.csv"
    bad.write_text("0,0\n10,10\n10,0\n0,10\n")
    assert main(["mesh", "--contour", str(bad), "--spacing", "2", "--out", str(out)]) == 2
    assert "cross" in capsys.readouterr().err


@pytest.mark.parametrize("rotation_deg, flip", [(25.0, 1.0), (0.0, -1.0)])
def test_mesh_cli_places_a_nifti_mask_by_its_affine(rotation_deg, flip, tmp_path, capsys):
    """A disk of radius 20 mm centred at (45, −30) mm, segmented on anisotropic pixels (0.7 × 0.9 mm)
    of a rotated or mirrored slice whose corner is far from the origin."""
    import nibabel

    center, radius = np.array([45.0, -30.0]), 20.0
    a = np.radians(rotation_deg)
    affine = np.eye(4)
    affine[:2, :2] = np.array([[np.cos(a), -np.sin(a)], [np.sin(a), np.cos(a)]]) @ np.diag([0.7 * flip, 0.9])
    affine[:2, 3] = center - affine[:2, :2] @ [35.0, 28.0]  # pixel (column 35, row 28) at the disk's centre
    columns, rows = np.meshgrid(np.arange(70), np.arange(56), indexing="ij")
    world = np.einsum("ab,bij->aij", affine[:2, :2], np.stack([columns, rows])) + affine[:2, 3, None, None]
    mask = (np.hypot(*(world - center[:, None, None])) < radius).astype(np.uint8)
    nibabel.save(nibabel.Nifti1Image(mask[:, :, None], affine), tmp_path / "mask.nii.gz")
    out = tmp_path / "disk"
    assert main(["mesh", "--mask", str(tmp_path / "mask.nii.gz"), "--spacing", "4", "--fibres", "8", "--out", str(out)]) == 0
    nodes = read_nirfast(out).mesh.nodes
    np.testing.assert_allclose(nodes.min(axis=0), center - radius, atol=0.5)  # measured ≤ 0.25 mm
    np.testing.assert_allclose(nodes.max(axis=0), center + radius, atol=0.5)
    assert main(["mesh", "--mask", str(tmp_path / "mask.nii.gz"), "--pixel-spacing", "1", "--spacing", "4",
                 "--out", str(out)]) == 2
    assert "carry their own affine" in capsys.readouterr().err


@pytest.mark.slow
def test_forward_cli_on_a_mesh_file_and_back_through_snirf(tmp_path, capsys):
    """`nirst mesh` → `nirst forward --mesh` (its optodes) → `nirst reconstruct` from the npz with
    --mesh, from the SNIRF file and from the same data as NIRFAST .paa: the same result; the npz
    without --mesh and a .paa with phases are refused."""
    contour_file = tmp_path / "outline.csv"
    np.savetxt(contour_file, breast_contour(radius=34.0, vertices=300, center=(0.0, 0.0)), delimiter=",")
    prefix = tmp_path / "slice"
    assert main(["mesh", "--contour", str(contour_file), "--spacing", "6", "--fibres", "12", "--out", str(prefix)]) == 0
    forward = tmp_path / "forward"
    assert main(["forward", "--mesh", str(prefix), "--inclusion", "8,4,14", "--wavelengths", "690,785,830,910",
                 "--out", str(forward)]) == 0
    data = np.load(forward / "forward.npz")
    assert data["ln_amplitude"].shape == (4, 12, 11) and "detectors_xy" in data and "fibres_xy" not in data
    record = json.loads((forward / "setup.json").read_text())  # the set-up, as the mesh file gives it
    assert MeasurementSetup.from_dict(record["setup"]) == MeasurementSetup.from_nirfast(nj.read_nirfast(prefix))
    assert record["mesh"]["sha256"] == nj.read_nirfast(prefix).mesh.content_hash and record["wavelengths_nm"] == [690, 785, 830, 910]
    args = ["reconstruct", "--method", "tikhonov", "--basis-size", "6", "--iterations", "2"]
    assert main([*args, "--data", str(forward / "forward.snirf"), "--reference", str(forward / "reference.snirf"),
                 "--mesh", str(tmp_path / "nowhere"), "--out", str(tmp_path / "bad")]) == 2  # no such mesh
    capsys.readouterr()
    assert main([*args, "--data", str(forward / "forward.npz"), "--out", str(tmp_path / "bad")]) == 2
    assert "--mesh PREFIX" in capsys.readouterr().err
    assert main([*args, "--data", str(forward / "forward.npz"), "--mesh", str(prefix), "--out", str(tmp_path / "npz")]) == 0
    from_npz = np.load(tmp_path / "npz" / "reconstruction.npz")["chromophores_nodes"]
    # The SNIRF file's probe agrees with the mesh file's optodes; its channels fill the link's slots.
    assert main([*args, "--data", str(forward / "forward.snirf"), "--mesh", str(prefix), "--out", str(tmp_path / "snirf")]) == 0
    from_snirf = np.load(tmp_path / "snirf" / "reconstruction.npz")["chromophores_nodes"]
    np.testing.assert_allclose(from_snirf, from_npz, rtol=1e-9)
    # The same data as NIRFAST's .paa, rows in the mesh file's link order.
    mesh_file = nj.read_nirfast(prefix)
    ln_amplitude = data["ln_amplitude"]
    index = np.asarray(nj.SpectralForwardModel.from_nirfast(mesh_file, wavelengths_nm=(690.0, 785.0, 830.0, 910.0))
                       .layout.detector_index)
    rows = [list(index[s]).index(d) for s, d in mesh_file.link]
    amplitude = np.exp(ln_amplitude[:, np.asarray(mesh_file.link)[:, 0], rows])
    paa = NirfastData(np.asarray(mesh_file.link), np.ones_like(amplitude, bool), amplitude, np.zeros_like(amplitude),
                      data["wavelengths_nm"])
    write_nirfast_data(tmp_path / "data.paa", paa)
    assert main([*args, "--data", str(tmp_path / "data.paa"), "--mesh", str(prefix), "--out", str(tmp_path / "paa")]) == 0
    from_paa = np.load(tmp_path / "paa" / "reconstruction.npz")["chromophores_nodes"]
    np.testing.assert_allclose(from_paa, from_npz, rtol=1e-9)
    write_nirfast_data(tmp_path / "fd.paa", dataclasses.replace(paa, phase_deg=np.full_like(amplitude, 5.0)))
    capsys.readouterr()
    assert main([*args, "--data", str(tmp_path / "fd.paa"), "--mesh", str(prefix), "--out", str(tmp_path / "bad")]) == 2
    assert "does not record its modulation frequency: give --frequency-mhz" in capsys.readouterr().err
