"""NIRFAST's own 2D sample mesh `rect_stnd`: a transmission geometry with fixed optodes.

`rect_stnd` is an 80 × 40 mm slab meshed by NIRFAST (3321 nodes; elements listed in mixed
orientations, read counter-clockwise with a warning), with 13 fixed sources 1 mm inside the top
edge, 13 fixed detectors on the bottom edge and 169 source–detector links. This script
simulates a lesion (HbT contrast 2) on a finer mesh of the same slab with the same optodes (no
inverse crime), adds 1 % amplitude noise, calibrates against a homogeneous reference and
reconstructs on `rect_stnd` itself with Tikhonov and with MRI-guided DRI. It prints the lesion's
recovered HbT for each and writes a figure.

The mesh files are read from the repository's test fixtures (NIRFAST, BSD licence:
tests/fixtures/nirfast/LICENSE-NIRFAST.txt) unless `--mesh PREFIX` names another copy.

Run: `python examples/rect_transmission.py [--data-spacing 1.5] [--out rect_transmission]`.
"""

from __future__ import annotations

import argparse
import warnings
from pathlib import Path

import nirst_jax as nj
import jax

jax.config.update("jax_enable_x64", True)
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402

from nirst_jax._atomic import save_figure  # noqa: E402
from nirst_jax.evaluation import region_masks, region_means  # noqa: E402
from nirst_jax.figures import reconstruction_figure  # noqa: E402
from nirst_jax.mesh import read_nirfast  # noqa: E402
from nirst_jax.phantoms import Circle, Coverage, Phantom, Region, add_mri_noise  # noqa: E402
from nirst_jax.physics import add_amplitude_noise  # noqa: E402
from nirst_jax.recon import Reconstructor, calibrate, image_grid  # noqa: E402

FIXTURE = Path(__file__).resolve().parents[1] / "tests" / "fixtures" / "nirfast" / "rect_stnd"
BACKGROUND = (12.2, 4.8, 28.0)
LESION = (24.4, 9.6, 40.0)  # HbT contrast 2


def tissue() -> Phantom:
    return Phantom(BACKGROUND, (Region(Circle((8.0, -2.0), 7.0), LESION, 80.0, "lesion"),), name="slab")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--mesh", type=Path, default=FIXTURE, help="path prefix of rect_stnd's NIRFAST files")
    parser.add_argument("--data-spacing", type=float, default=1.5, help="longest edge of the data mesh (mm)")
    parser.add_argument("--basis-size", type=int, default=24, help="pixel-basis points per side")
    parser.add_argument("--out", type=Path, default=Path("rect_transmission"))
    args = parser.parse_args()

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        nirfast = read_nirfast(args.mesh)
    for warning in caught:
        print(f"read_nirfast: {warning.message}")
    mesh = nirfast.mesh
    print(f"{args.mesh.name}: {mesh.n_nodes} nodes, {len(nirfast.sources)} fixed sources, "
          f"{len(nirfast.detectors)} fixed detectors, {len(nirfast.link)} links")
    model = nj.SpectralForwardModel.from_nirfast(nirfast)

    # Data on a finer mesh of the same slab, with the same fixed optodes and links.
    low, high = mesh.nodes.min(0), mesh.nodes.max(0)
    corners = np.array([[low[0], low[1]], [high[0], low[1]], [high[0], high[1]], [low[0], high[1]]])
    fine = nj.polygon_mesh(corners, args.data_spacing)
    source_model = nj.SpectralForwardModel.from_optodes(
        fine, nirfast.sources, nirfast.detectors, nirfast.link, link_active=nirfast.link_active,
        fixed_sources=True, fixed_detectors=True,
    )
    simulate = jax.jit(lambda c: source_model(c))
    clean = simulate(jnp.asarray(tissue().nodal(Coverage.nodes(fine))))
    data = add_amplitude_noise(clean, 0.01, np.random.default_rng(3).normal(size=clean.shape))
    reference = simulate(jnp.asarray(np.repeat(np.asarray(BACKGROUND)[:, None], fine.n_nodes, 1)))
    calibrated, _ = calibrate(model, data, reference)
    print(f"data: {fine.n_nodes}-node mesh, 1 % noise; reconstruction on {args.mesh.name}")

    grid = image_grid(mesh)  # the square [−40, 40]² around the slab
    figures, truth = {}, None
    for method in ("tikhonov", "dri"):
        reconstructor = Reconstructor.create(model, mesh, method, basis_size=args.basis_size, grid=grid)
        mask = np.asarray(reconstructor.grid.mask)
        pixels = Coverage.pixels(grid)
        mri = add_mri_noise(jnp.asarray(tissue().mri(pixels, mask)), 0.04, jax.random.key(0))
        result = jax.jit(lambda d, m: reconstructor(d, m))(calibrated, mri if method == "dri" else None)
        images, truth = np.asarray(result.images), tissue().images(pixels, mask)
        masks = region_masks(tissue(), grid, mask)
        true, recovered = region_means(truth, masks), region_means(images, masks)
        true_hbt, hbt = true["lesion"][:2].sum(), recovered["lesion"][:2].sum()
        background_hbt = recovered["background"][:2].sum()
        print(f"{method:8s} {int(result.steps)} steps: lesion HbT {hbt:.1f} µM (true {true_hbt:.1f}, "
              f"{100 * (hbt / true_hbt - 1):+.0f} %), background {background_hbt:.1f} µM (true {sum(BACKGROUND[:2]):.1f})")
        figures[method] = images
    extent = grid.extent
    for method, images in figures.items():
        figure = reconstruction_figure(images, extent, mask, truth=truth, title=f"rect_stnd transmission, {method}")
        save_figure(figure, args.out / f"rect_{method}.png")
    print(f"wrote {args.out / 'rect_tikhonov.png'} and {args.out / 'rect_dri.png'}")


if __name__ == "__main__":
    main()
