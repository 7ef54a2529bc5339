"""MRI-guided reconstruction (DRI) of your own measurements through the Python API.

Your files: an npz with `ln_amplitude` (wavelengths, 16 sources, 15 detector slots; slot k of
source s is fibre k for k < s and fibre k + 1 otherwise, i.e. the other fibres in ascending
order) and `wavelengths_nm`; the same for a homogeneous reference
phantom measured with the same system (calibration); and the MRI slice as .npy or .png
covering the disk. Without --data, the script first writes a stand-in set of such files
(a simulated lesion, 2 % noise, and a per-measurement coupling error that calibration must
remove) so it runs as is.

Run: `python examples/dri_on_user_data.py [--data m.npz --reference ref.npz --mri mri.npy]
[--mesh-spacing 2.5] [--roi 12,-8,8] [--out dri_user]`.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import nirst_jax as nj
import jax

jax.config.update("jax_enable_x64", True)
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402

from nirst_jax._atomic import save_figure, save_npz  # noqa: E402
from nirst_jax.evaluation import circle_roi, hbt_contrast  # noqa: E402
from nirst_jax.figures import reconstruction_figure  # noqa: E402
from nirst_jax.phantoms import Coverage, add_mri_noise, fixed_phantom  # noqa: E402
from nirst_jax.physics import add_amplitude_noise  # noqa: E402
from nirst_jax.recon import Reconstructor, calibrate, image_grid  # noqa: E402


def write_stand_in_files(folder: Path, mesh_spacing: float) -> tuple[Path, Path, Path]:
    """A malignant-like lesion measured by a system with unknown fibre coupling."""
    mesh = nj.disk_mesh(41.0, mesh_spacing / 2)  # finer than the reconstruction mesh: no inverse crime
    model = nj.SpectralForwardModel.create(mesh)
    simulate = jax.jit(lambda c: model(c))
    phantom = fixed_phantom("malignant")
    rng = np.random.default_rng(0)
    coupling = rng.normal(0, 0.3, model.data_shape)  # the same for every measurement of the system
    measured = simulate(jnp.asarray(phantom.nodal(Coverage.nodes(mesh))))
    homogeneous = simulate(jnp.asarray(np.repeat(np.asarray(phantom.background)[:, None], mesh.n_nodes, 1)))
    noisy = add_amplitude_noise(measured, 0.02, rng.normal(size=model.data_shape))
    wavelengths = np.asarray(model.wavelengths_nm)
    save_npz(folder / "measurement.npz", ln_amplitude=np.asarray(noisy) + coupling, wavelengths_nm=wavelengths)
    save_npz(folder / "reference.npz", ln_amplitude=np.asarray(homogeneous) + coupling, wavelengths_nm=wavelengths)
    grid = image_grid(mesh)
    mask = np.hypot(*np.moveaxis(grid.centers(), -1, 0)) <= 41.0
    mri = add_mri_noise(jnp.asarray(phantom.mri(Coverage.pixels(grid), mask)), 0.04, jax.random.key(0))
    np.save(folder / "mri.npy", np.asarray(mri))
    return folder / "measurement.npz", folder / "reference.npz", folder / "mri.npy"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, help="npz with ln_amplitude and wavelengths_nm")
    parser.add_argument("--reference", type=Path, help="npz of a homogeneous reference phantom")
    parser.add_argument("--mri", type=Path, help="MRI slice (.npy), square, covering the disk")
    parser.add_argument("--mesh-spacing", type=float, default=2.5, help="reconstruction mesh (mm)")
    parser.add_argument("--roi", default="12,-8,8", help="x,y,radius (mm) of the lesion ROI")
    parser.add_argument("--out", type=Path, default=Path("dri_user"))
    args = parser.parse_args()

    if args.data is None:
        args.data, args.reference, args.mri = write_stand_in_files(args.out, args.mesh_spacing)
        print(f"wrote stand-in measurements to {args.out}")
    with np.load(args.data) as archive:
        data, wavelengths = archive["ln_amplitude"], tuple(archive["wavelengths_nm"])
    with np.load(args.reference) as archive:
        reference = archive["ln_amplitude"]
    mri = np.load(args.mri)

    mesh = nj.disk_mesh(41.0, args.mesh_spacing)
    model = nj.SpectralForwardModel.create(mesh, wavelengths_nm=wavelengths)
    calibrated, offsets = calibrate(model, data, reference)  # removes the system's coupling
    print(f"calibration removed offsets of up to {float(jnp.abs(offsets).max()):.2f} in ln A")
    grid = image_grid(mesh, mri.shape[0])
    reconstructor = Reconstructor.create(model, mesh, "dri", grid=grid)
    result = jax.jit(lambda d, m: reconstructor(d, m))(calibrated, jnp.asarray(mri))
    images, mask = np.asarray(result.images), np.asarray(reconstructor.grid.mask)
    print(f"DRI: {int(result.steps)} steps; background HbO {float(result.background[0]):.1f} µM, "
          f"Hb {float(result.background[1]):.1f} µM, water {float(result.background[2]):.1f} %")
    x, y, radius = (float(v) for v in args.roi.split(","))
    print(f"HbT contrast in the ROI: {hbt_contrast(images, circle_roi(grid, x, y, radius), mask):.2f}")
    save_figure(reconstruction_figure(images, grid.extent, mask, title="DRI"), args.out / "dri.png")
    print(f"wrote {args.out / 'dri.png'}")


if __name__ == "__main__":
    main()
