"""The fixed test phantoms: truth on the mesh and the image grid, MRI, and their measurements.

Renders `three-inclusions`, `malignant`, `benign` and `breast`, prints each region's mean
values and the HbT lesion/background contrast, simulates the boundary data, and writes a
figure (truth HbT, MRI and the noise-free ΔlnA against the homogeneous background).

Run: `python examples/fixed_phantoms.py [--mesh-spacing 2.5] [--out fixed_phantoms.png]`.
"""

from __future__ import annotations

import argparse

import nirst_jax as nj
import jax
import jax.numpy as jnp
import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from nirst_jax._atomic import save_figure  # noqa: E402
from nirst_jax.mesh import GridInterpolation, PixelGrid  # noqa: E402
from nirst_jax.phantoms import FIXED_PHANTOMS, Coverage, fixed_phantom  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--mesh-spacing", type=float, default=2.5, help="largest mesh edge (mm)")
    parser.add_argument("--out", default="fixed_phantoms.png", help="figure path")
    args = parser.parse_args()

    mesh = nj.disk_mesh(41.0, args.mesh_spacing)
    grid = PixelGrid()
    nodes, pixels = Coverage.nodes(mesh), Coverage.pixels(grid)
    mask = GridInterpolation.build(mesh, grid).mask
    model = nj.SpectralForwardModel.create(mesh)
    simulate = jax.jit(lambda c: model(c))

    figure, axes = plt.subplots(3, len(FIXED_PHANTOMS), figsize=(4.2 * len(FIXED_PHANTOMS), 11))
    for column, name in enumerate(FIXED_PHANTOMS):
        phantom = fixed_phantom(name)
        images, mri = phantom.images(pixels, mask), phantom.mri(pixels, mask)
        nodal = phantom.nodal(nodes)
        homogeneous = np.repeat(np.asarray(phantom.background)[:, None], mesh.n_nodes, 1)
        change = np.asarray(simulate(jnp.asarray(nodal, jnp.float32)) - simulate(jnp.asarray(homogeneous, jnp.float32)))
        masks = phantom.region_masks(pixels, threshold=1.0)
        hbt = images[0] + images[1]
        background_hbt = hbt[masks["background"] & mask].mean()
        print(f"{name}: background HbT {background_hbt:.1f} µM")
        for region in phantom.regions:
            inside = masks[region.label] & mask
            print(f"  {region.label:15s} HbO {images[0][inside].mean():5.1f} µM  Hb {images[1][inside].mean():5.1f} µM  "
                  f"water {images[2][inside].mean():5.1f} %  HbT contrast {hbt[inside].mean() / background_hbt:.2f}")
        print(f"  largest |ΔlnA| {np.abs(change).max():.3f}")

        extent = grid.extent
        handle = axes[0, column].imshow(np.ma.masked_where(~mask, hbt), origin="lower", extent=extent)
        figure.colorbar(handle, ax=axes[0, column], label="HbT (µM)")
        axes[0, column].set_title(name)
        handle = axes[1, column].imshow(np.ma.masked_where(~mask, mri), origin="lower", extent=extent, cmap="gray")
        figure.colorbar(handle, ax=axes[1, column], label="MRI grey")
        bound = np.abs(change).max()
        handle = axes[2, column].imshow(change.reshape(len(change), -1), aspect="auto", cmap="RdBu_r", vmin=-bound, vmax=bound)
        figure.colorbar(handle, ax=axes[2, column], label="ΔlnA")
        axes[2, column].set_xlabel("source × detector")
        axes[2, column].set_ylabel("wavelength index")
    figure.tight_layout()
    save_figure(figure, args.out)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
